"""Captioning metrics: each figure against a short naive reference, on scripted and tiny real captioners."""

import math
from collections import Counter

import pytest
import torch
from torch import Tensor, nn

from mmunlearn.data.concepts import concept_space
from mmunlearn.data.request import ForgetRequest
from mmunlearn.data.tokenizer import WordTokenizer
from mmunlearn.errors import DataError
from mmunlearn.metrics.captioning import (
    bleu4,
    captioner_metrics,
    cider,
    generated_tokens,
    mentions,
    relearn_split,
    retain_sample,
    retained_rate,
)
from mmunlearn.metrics.scenario_a import RelearnConfig
from mmunlearn.records import CAPTIONER_METRICS
from mmunlearn.unlearn import UnlearnData
from toy import make_pairs, tiny_captioner

SHAPES = concept_space(make_pairs(2))
CONCEPT = "red circle"


# -- naive references ---------------------------------------------------------------------------------
def ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def naive_bleu4(hyps: list[str], refs: list[list[str]]) -> float:
    """Corpus BLEU-4 (Papineni et al.): clipped n-gram precisions, geometric mean, brevity penalty."""
    matched, total = [0] * 4, [0] * 4
    c = r = 0
    for h, rs in zip(hyps, refs, strict=True):
        hw = h.split()
        c += len(hw)
        r += min((len(x.split()) for x in rs), key=lambda n: (abs(n - len(hw)), n))
        for n in range(1, 5):
            hc = ngrams(hw, n)
            best: Counter = Counter()
            for x in rs:
                best |= ngrams(x.split(), n)
            matched[n - 1] += sum(min(k, best[g]) for g, k in hc.items())
            total[n - 1] += sum(hc.values())
    if min(matched) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matched, total, strict=True)) / 4
    return (1.0 if c > r else math.exp(1 - r / c)) * math.exp(log_p)


def naive_cider(hyps: list[str], refs: list[list[str]], sigma: float = 6.0) -> float:
    """CIDEr-D (Vedantam et al.): tf-idf n-gram vectors, clipped cosine, Gaussian length penalty, x10."""
    n_docs = len(refs)
    df: Counter = Counter()
    for rs in refs:
        df.update({g for x in rs for n in range(1, 5) for g in ngrams(x.split(), n)})

    def vec(words: list[str], n: int) -> dict:
        return {g: k * (math.log(n_docs) - math.log(max(1.0, df[g]))) for g, k in ngrams(words, n).items()}

    scores = []
    for h, rs in zip(hyps, refs, strict=True):
        hw = h.split()
        per_n = []
        for n in range(1, 5):
            vh = vec(hw, n)
            total = 0.0
            for x in rs:
                xw = x.split()
                vr = vec(xw, n)
                dot = sum(min(v, vr.get(g, 0.0)) * vr.get(g, 0.0) for g, v in vh.items())
                norm = math.sqrt(sum(v * v for v in vh.values())) * math.sqrt(sum(v * v for v in vr.values()))
                cos = dot / norm if norm else dot
                total += cos * math.exp(-((len(hw) - len(xw)) ** 2) / (2 * sigma**2))
            per_n.append(total / len(rs))
        scores.append(10 * sum(per_n) / 4)
    return sum(scores) / len(scores)


# -- a scripted captioner -----------------------------------------------------------------------------
class Scripted(nn.Module):
    """A `CaptionerModel` whose caption of an image is ``edit(true caption)``: exact figures are known."""

    def __init__(self, sets, edit=lambda c: c) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.vocab = list(sets[0].vocab)
        self.tok = WordTokenizer(self.vocab, 16)
        self.eos = len(self.vocab) + 1
        self.table = {
            self.key(img): edit(cap) for ds in sets for img, cap in zip(ds.inputs["image"], ds.captions, strict=True)
        }

    @staticmethod
    def key(image: Tensor) -> int:
        return hash(image.mul(255).round().to(torch.uint8).numpy().tobytes())

    def loss(self, batch):
        return (self.w - 1).pow(2).sum()

    def caption_logits(self, batch):
        return torch.zeros(len(batch["text"]), 1, self.eos + 1) + self.w

    def caption_targets(self, batch):
        return torch.full((len(batch["text"]), 1), self.eos)

    def image_features(self, images):
        return images.flatten(1)

    def generate(self, images, max_new_tokens=None, logits_processor=None, **kwargs):
        ids = self.tok.encode([self.table[self.key(img)] for img in images.cpu()])
        n = (ids != 0).sum(1)
        out = torch.cat([ids, torch.zeros(len(ids), 1, dtype=torch.long)], 1)
        out[torch.arange(len(ids)), n] = self.eos
        return out

    def decode(self, ids):
        return [" ".join(self.vocab[i] for i in row if 0 < i < len(self.vocab)) for row in ids.tolist()]


@pytest.fixture(scope="module")
def request_data():
    train, test = make_pairs(96, seed=0), make_pairs(40, seed=1, split="test")
    request = ForgetRequest.concept_pairs(train, CONCEPT)
    return UnlearnData.from_request(request, train), test


def value(metrics, name, split):
    return next(m.value for m in metrics if m.name == name and m.split == split)


# -- tests ----------------------------------------------------------------------------------------------
def test_mentions_reuse_the_concept_parser() -> None:
    known = {"red circle", "blue square", "red square"}
    assert mentions("a red circle left of a blue square", CONCEPT, SHAPES, known)
    assert mentions("a blue square above a red circle", CONCEPT, SHAPES, known)
    assert not mentions("a red square left of a blue circle", CONCEPT, SHAPES, known)
    assert mentions("a red circle red circle above", CONCEPT, SHAPES, known)  # malformed still counts
    assert not mentions("", CONCEPT, SHAPES, known)
    emoji = concept_space(make_pairs(2).subset([], name="emoji-captions/x"))
    assert not mentions("cat face left of dog", "cat", emoji, {"cat face", "dog", "cat"})
    assert mentions("cat left of dog", "cat", emoji, {"cat face", "dog", "cat"})
    assert mentions("a big red circle", CONCEPT, None) and not mentions("a redcircle", CONCEPT, None)


def test_bleu4_and_cider_match_naive_references() -> None:
    refs = [
        ["a red circle left of a blue square"],
        ["a green star above a white cross"],
        ["a cyan cross above a red star"],
    ]
    hyps = ["a red circle left of a blue cross", "a green star above a white cross", "a cyan cross left of a red"]
    assert math.isclose(bleu4(hyps, refs), naive_bleu4(hyps, refs), rel_tol=1e-5)
    assert math.isclose(cider(hyps, refs), naive_cider(hyps, refs), rel_tol=1e-6)
    assert bleu4([r[0] for r in refs], refs) == pytest.approx(1.0)
    assert bleu4(["x y"], [["a red circle left of a blue square"]]) == 0.0


def test_retained_rate_against_a_loop() -> None:
    truth = [("red circle", "blue square"), ("green star", "red circle"), ("red circle",)]
    caps = ["a red circle left of a blue square", "a white cross above a blue square", "a red circle"]
    known = {c for t in truth for c in t}
    # image 0: blue square kept (1/1); image 1: green star lost (0/1); image 2: nothing but the concept
    assert retained_rate(caps, truth, CONCEPT, SHAPES, known) == pytest.approx(0.5)
    assert retained_rate(caps, truth, None, SHAPES, known) == pytest.approx((1 + 0 + 1) / 3)


def test_an_oracle_captioner_mentions_the_concept_exactly_where_it_is(request_data) -> None:
    data, test = request_data
    oracle = Scripted([data.unlearn, data.retain, test])
    out = captioner_metrics(oracle, oracle, data, test, RelearnConfig(steps=1))
    assert {m.name for m in out} <= set(CAPTIONER_METRICS)
    assert value(out, "mention_concept", "unlearn") == 1.0
    assert value(out, "mention_concept", "retain") == 0.0 and value(out, "mention_concept", "test") == 0.0
    assert value(out, "bleu4", "test") == pytest.approx(1.0) and value(out, "bleu4", "retain") == pytest.approx(1.0)
    assert value(out, "mention_retained", "test") == 1.0 and value(out, "mention_retained_ratio", "test") == 1.0
    assert value(out, "latency_ratio", "test") == 1.0 and value(out, "latency_per_token", "test") > 0
    assert value(out, "relearn_mention", "unlearn") == 1.0
    refs = [[c] for c in test.captions]
    assert value(out, "cider", "test") == pytest.approx(naive_cider(test.captions, refs), rel=1e-6)


def test_a_suppressing_captioner_loses_the_concept_and_its_neighbours(request_data) -> None:
    data, test = request_data
    sets = [data.unlearn, data.retain, test]
    oracle = Scripted(sets)
    # forgets "red circle" by saying "blue circle" and, over-suppressing, also drops every "green" concept
    edit = lambda c: c.replace("red circle", "blue circle").replace("green", "red")  # noqa: E731
    model = Scripted(sets, edit)
    out = captioner_metrics(model, oracle, data, test, RelearnConfig(steps=1))
    assert value(out, "mention_concept", "unlearn") == 0.0
    named = [CONCEPT in SHAPES.parse(c) for c in test.captions]
    if any(named):
        assert value(out, "mention_concept", "test_concept") == 0.0
    # over-suppression, naive: per test image, share of its non-forgotten concepts still named
    rates = []
    for cap in test.captions:
        wanted = [c for c in set(SHAPES.parse(cap)) if c != CONCEPT]
        if wanted:
            rates.append(sum(c in SHAPES.parse(edit(cap)) for c in wanted) / len(wanted))
    assert value(out, "mention_retained", "test") == pytest.approx(sum(rates) / len(rates))
    assert value(out, "mention_retained_ratio", "test") == pytest.approx(sum(rates) / len(rates))
    hyps = [edit(c) for c in test.captions]
    assert value(out, "bleu4", "test") == pytest.approx(naive_bleu4(hyps, [[c] for c in test.captions]), rel=1e-5)


def test_on_a_tiny_real_captioner_the_mention_rate_is_the_naive_loop(request_data) -> None:
    data, test = request_data
    m = tiny_captioner(test).eval()
    out = captioner_metrics(m, m, data, test, RelearnConfig(steps=2, batch_size=8))
    naive = [
        CONCEPT in SHAPES.parse(c) for c in (m.decode(m.generate(img[None]))[0] for img in data.unlearn.inputs["image"])
    ]
    assert value(out, "mention_concept", "unlearn") == pytest.approx(sum(naive) / len(naive))
    assert value(out, "latency_ratio", "test") == 1.0
    assert "relearn_mention" in {x.name for x in out}


def test_helpers_and_errors(request_data) -> None:
    data, test = request_data
    assert generated_tokens(torch.tensor([[3, 4, 9, 0], [9, 0, 0, 0]])) == 4
    part, rest = relearn_split(20, RelearnConfig(fraction=0.5))
    assert len(part) == 10 and sorted(torch.cat([part, rest]).tolist()) == list(range(20))
    sample = retain_sample(data.retain, 10)
    assert len(sample) == 10 and retain_sample(data.retain, 10).ids == sample.ids
    with pytest.raises(DataError, match="non-empty"):
        captioner_metrics(Scripted([test]), Scripted([test]), data, test.subset([]))
