"""Decoding-time methods (token_suppression, logit_difference, concept_guard) on a tiny captioner: the
wrapped weights never change, bans hold, the ULD formula against a hand computation, the guard's gate,
the detector and threshold rules against naive references, metrics, and refusals."""

import math

import pytest
import torch
from transformers import LogitsProcessorList

import mmunlearn.unlearn.concept_guard as cg
import mmunlearn.unlearn.logit_difference as ld
import mmunlearn.unlearn.token_suppression  # noqa: F401
from mmunlearn.checkpoint import save_checkpoint
from mmunlearn.data.request import ForgetRequest
from mmunlearn.errors import CheckpointError, ConfigError, DataError
from mmunlearn.metrics.captioning import captioner_metrics
from mmunlearn.models import MultimodalModel, build_model
from mmunlearn.models.protocols import CaptionerModel, missing_members
from mmunlearn.records import CAPTIONER_METRICS
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS, UnlearnData
from mmunlearn.unlearn.decoding import DecodingEdit, DecodingRule, ban_processor, frequent_forget_words
from toy import make_av, make_pairs, tiny_captioner

CONCEPT = "red circle"
METHODS = ("token_suppression", "logit_difference", "concept_guard")
FAST = {"token_suppression": {}, "logit_difference": {"epochs": 2, "lr": 3e-3, "batch_size": 8}, "concept_guard": {}}


@pytest.fixture(scope="module")
def setup():
    train = make_pairs(64)
    config = TrainConfig(epochs=3, batch_size=16, lr=3e-3, seed=0, warmup_epochs=0, progress=False)
    model = train_model(tiny_captioner(train), train, config).model.eval()
    data = UnlearnData.from_request(ForgetRequest.concept_pairs(train, CONCEPT), train)
    return model, data, train


def create(name: str, **over):
    return UNLEARNERS.create(name, **{**FAST[name], "progress": False, **over})


def states_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def word_id(model, word: str) -> int:
    return int(model.encode_captions([word])[0, 0])


# -- the wrapper ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", METHODS)
def test_the_edit_wraps_bit_identical_weights_and_is_a_captioner(setup, name) -> None:
    model, data, _ = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    edit = create(name).unlearn(model, data)
    assert isinstance(edit, DecodingEdit) and edit.weight_edit is False and edit.method == name
    assert UNLEARNERS.get(name).stage == "decoding-time" and UNLEARNERS.get(name).requires == (CaptionerModel,)
    assert states_equal(edit.captioner, model)  # the deployed weights, bit for bit
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched
    assert edit.captioner is not model and not edit.training and missing_members(edit, CaptionerModel) == []
    assert edit.kind == "captioner" and edit.modalities == ("image", "text")
    assert create(name).unlearn(model.train(), data).training and model.eval() is model


@pytest.mark.parametrize("name", METHODS)
def test_a_decoding_edit_is_not_a_weight_edit(setup, name, tmp_path) -> None:
    model, data, _ = setup
    edit = create(name).unlearn(model, data)
    assert not isinstance(edit, MultimodalModel)
    with pytest.raises(CheckpointError, match="decoding-time edit"):
        save_checkpoint(tmp_path / "ckpt", edit)


@pytest.mark.parametrize("name", METHODS)
def test_captioner_metrics_run_on_each_edit(setup, name) -> None:
    model, data, _ = setup
    out = captioner_metrics(create(name).unlearn(model, data), model, data, make_pairs(16, seed=5, split="test"))
    names = {m.name for m in out}
    assert names <= set(CAPTIONER_METRICS) and {"mention_concept", "bleu4", "latency_ratio", "relearn_mention"} <= names
    assert all(math.isfinite(m.value) for m in out)


@pytest.mark.parametrize("name", METHODS)
def test_each_method_is_deterministic(setup, name) -> None:
    model, data, _ = setup
    assert states_equal(create(name).unlearn(model, data), create(name).unlearn(model, data))


def test_generic_teacher_forced_edit_is_the_processor_step_by_step(setup) -> None:
    model, data, _ = setup
    edit = create("logit_difference").unlearn(model, data)
    batch = data.unlearn.batch(torch.arange(5))
    with torch.no_grad():
        fast = edit.caption_logits(batch)
        slow = DecodingRule.edit_logits(
            edit.rule, model, batch, model.caption_logits(batch), edit.prefix(batch["text"])
        )
    assert torch.allclose(fast, slow, atol=1e-5)
    assert torch.equal(edit.caption_targets(batch), model.caption_targets(batch))
    assert torch.equal(edit.loss(batch), model.loss(batch))  # the weights' own objective


# -- token_suppression ---------------------------------------------------------------------------------
def test_token_suppression_never_emits_a_banned_id(setup) -> None:
    model, data, train = setup
    edit = create("token_suppression", scope="words").unlearn(model, data)
    banned = {word_id(model, w) for w in CONCEPT.split()}
    assert edit.rule.sequences == [[word_id(model, "red")], [word_id(model, "circle")]]
    images = train.inputs["image"]
    assert any(i in banned for i in model.generate(images).flatten().tolist())  # the test can fail
    for kwargs in ({}, {"num_beams": 3}):
        assert not any(i in banned for i in edit.generate(images, **kwargs).flatten().tolist())


def test_phrase_scope_bans_the_last_word_only_after_the_others(setup) -> None:
    model, data, _ = setup
    edit = create("token_suppression").unlearn(model, data)
    red, circle = word_id(model, "red"), word_id(model, "circle")
    assert edit.rule.sequences == [[red, circle]]
    proc = edit.rule.processor(model, torch.zeros(2, 3, 8, 8))
    scores = torch.zeros(2, model.eos_id + 1)
    out = proc(torch.tensor([[model.bos_id, red], [model.bos_id, circle]]), scores.clone())
    assert out[0, circle] == -math.inf and torch.equal(out[1], scores[1]) and out[0, red] == 0
    ids = edit.generate(data.unlearn.inputs["image"]).tolist()
    assert not any(row[i : i + 2] == [red, circle] for row in ids for i in range(len(row)))


def test_extra_phrases_and_unknown_words(setup) -> None:
    model, data, _ = setup
    edit = create("token_suppression", extra_phrases=("red square", "purple blob")).unlearn(model, data)
    assert edit.rule.sequences == [[word_id(model, "red"), word_id(model, w)] for w in ("circle", "square")]
    unknown = UnlearnData(data.unlearn, data.gold_standard, data.modalities, data.retain, None, "purple elephant")
    with pytest.raises(DataError, match="vocabulary"):
        create("token_suppression").unlearn(model, unknown)


def test_without_a_concept_the_frequent_forget_words_are_banned(setup) -> None:
    model, data, _ = setup
    u, r = data.unlearn, data.retain

    def rate(ds, w):  # naive: share of captions containing word id w
        return sum(w in row for row in ds.inputs["text"].tolist()) / len(ds)

    words = range(2, len(u.vocab))
    ok = [w for w in words if rate(u, w) >= 0.5 and rate(r, w) <= 0.4]
    expected = sorted(ok, key=lambda w: (-(rate(u, w) - rate(r, w)), w))[:3]
    assert expected and frequent_forget_words(u, r, 0.5, 0.4, 3) == [[w] for w in expected]
    request = UnlearnData(u, data.gold_standard, data.modalities, r)
    edit = create("token_suppression", max_retain_rate=0.4, max_words=3).unlearn(model, request)
    assert edit.rule.sequences == [[w] for w in expected]
    with pytest.raises(DataError, match="nothing to suppress"):
        frequent_forget_words(u, r, 1.0, 0.0, 3)


# -- logit_difference ----------------------------------------------------------------------------------
def test_logit_difference_processor_is_the_uld_formula_by_hand(setup) -> None:
    model, data, _ = setup
    alpha, r = 0.7, 0.2
    edit = create("logit_difference", alpha=alpha, relative_top=r).unlearn(model, data)
    expert = edit.rule.expert
    batch = data.unlearn.batch(torch.arange(3))
    for t in (0, 2):  # after BOS alone, and after two words of the true caption
        prefix = edit.prefix(batch["text"])[:, : t + 1]
        images = batch["image"]
        with torch.no_grad():
            scores = model.caption_logits(batch)[:, t]
            a = expert.caption_logits(batch)[:, t]  # teacher forcing is causal: position t sees the prefix only
        out = edit.rule.processor(model, images)(prefix, scores.clone())
        for i in range(len(scores)):  # naive: one row at a time
            logp = torch.log_softmax(scores[i].double(), 0)
            ranked = sorted(logp.tolist(), reverse=True)
            k = max(1, int(r * len(ranked)))
            thr = min(ranked[k - 1], max(ranked) + math.log(r))
            want = [float(scores[i, v]) - alpha * (0.0 if logp[v] < thr else float(a[i, v])) for v in range(len(logp))]
            assert torch.allclose(out[i].double(), torch.tensor(want, dtype=torch.float64), atol=1e-5)


def test_logit_difference_with_alpha_zero_decodes_as_the_original(setup) -> None:
    model, data, _ = setup
    edit = create("logit_difference", alpha=0.0, epochs=1).unlearn(model, data)
    images = data.retain.inputs["image"][:16]
    assert torch.equal(edit.generate(images), model.generate(images))


def test_logit_difference_expert_learns_u(setup) -> None:
    model, data, _ = setup
    edit = create("logit_difference", epochs=3, retain_weight=0.0).unlearn(model, data)
    u = data.unlearn.full_batch()
    with torch.no_grad():
        assert float(edit.rule.expert.loss(u)) < float(model.loss(u))
    assert not any(p.requires_grad for p in edit.rule.expert.parameters())


def test_uniform_kl_against_the_definition(setup) -> None:
    model, data, _ = setup
    batch = data.retain.batch(torch.arange(4))
    with torch.no_grad():
        got = float(ld.uniform_kl(model, batch))
        logits, targets = model.caption_logits(batch), model.caption_targets(batch)
    terms = []
    for i, j in (targets != -100).nonzero().tolist():
        p = torch.softmax(logits[i, j].double(), 0)
        v = len(p)
        terms.append(sum((1 / v) * math.log((1 / v) / float(q)) for q in p))
    assert math.isclose(got, sum(terms) / len(terms), rel_tol=1e-4)


def test_small_expert_and_bad_configs(setup) -> None:
    model, data, _ = setup
    edit = create("logit_difference", expert="small", expert_dim=8, epochs=1).unlearn(model, data)
    assert edit.rule.expert.config.dec_dim == 8 and states_equal(edit.captioner, model)
    for bad in ({"alpha": -1.0}, {"relative_top": 1.0}, {"expert": "big"}, {"expert_dim": 9, "expert_heads": 2}):
        with pytest.raises(ConfigError):
            create("logit_difference", **bad)


# -- concept_guard -------------------------------------------------------------------------------------
def test_gate_leaves_unflagged_rows_bit_identical_and_bans_flagged_ones(setup) -> None:
    model, _, train = setup
    images = train.inputs["image"][:24]
    original = model.generate(images)
    word = int(original[:, 1].mode().values)  # a word the original emits (the tiny model's captions are alike)
    flags = torch.arange(len(images)) % 2 == 0
    assert any(word in row for row in original[flags].tolist())
    gate = cg.GatedProcessor(ban_processor([[word]], model.eos_id, None), flags)
    out = model.generate(images, logits_processor=LogitsProcessorList([gate]))
    assert torch.equal(out[~flags], original[~flags]) and (~flags).any()
    assert word not in out[flags].flatten().tolist() and not torch.equal(out[flags], original[flags])


def test_concept_guard_edit_keeps_unflagged_captions_and_suppresses_flagged(setup) -> None:
    model, data, train = setup
    edit = create("concept_guard", scope="words").unlearn(model, data)
    images = train.inputs["image"]
    scores = edit.rule.detector.score(model.image_features(images).detach())
    edit.rule.detector.threshold.fill_(float(scores.median()))  # flag about half of the images
    flags = edit.rule.flags(edit.captioner, images)
    assert flags.any() and not flags.all()
    out, original = edit.generate(images), model.generate(images)
    assert torch.equal(out[~flags], original[~flags])
    banned = (word_id(model, "red"), word_id(model, "circle"))
    assert not any(i in banned for i in out[flags].flatten().tolist())
    assert any(i in banned for i in original[flags].flatten().tolist())


def test_centroid_detector_against_distances() -> None:
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(12, 5, generator=g) + 1.0, torch.randn(20, 5, generator=g)
    w, b = cg.fit_linear(pos, neg, "centroid", 0)
    x = torch.cat([pos, neg]).double()
    mu, sd = x.mean(0), x.std(0, unbiased=False)
    z = lambda f: (f.double() - mu) / sd  # noqa: E731
    mp, mn = z(pos).mean(0), z(neg).mean(0)
    probe = torch.randn(7, 5, generator=g)
    naive = [float(((z(f) - mn) ** 2).sum() - ((z(f) - mp) ** 2).sum()) for f in probe]
    assert torch.allclose(probe @ w + b, torch.tensor(naive, dtype=torch.float32), atol=1e-4)


def test_logistic_detector_folds_the_standardisation() -> None:
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(15, 4, generator=g) * 2 + 0.5, torch.randn(25, 4, generator=g) * 3
    w, b = cg.fit_linear(pos, neg, "logistic", 0)
    x = torch.cat([pos, neg]).double()
    mu, sd = x.mean(0), x.std(0, unbiased=False)
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(
        ((x - mu) / sd).numpy(), [1] * 15 + [0] * 25
    )
    probe = torch.randn(6, 4, generator=g)
    ref = clf.decision_function(((probe.double() - mu) / sd).numpy())
    assert torch.allclose(probe @ w + b, torch.tensor(ref, dtype=torch.float32), atol=1e-4)


def test_threshold_rules_against_naive_counts() -> None:
    pos, neg = torch.tensor([0.2, 0.9, 1.5, 2.0, 3.0]), torch.tensor([-1.0, 0.0, 0.5, 1.0, 1.2, 2.5])
    tau = cg.choose_threshold(pos, neg, "recall", 0.8)
    assert float((pos > tau).float().mean()) >= 0.8 and float((pos > tau + 1e-3).float().mean()) < 0.79
    assert cg.choose_threshold(pos, neg, "fpr", 0.5) == pytest.approx(float(neg.median() + neg.sort().values[3]) / 2)
    best = max(float((pos > t).float().mean() - (neg > t).float().mean()) for t in torch.linspace(-2, 4, 601))
    tau = cg.choose_threshold(pos, neg, "youden", 0.5)
    assert float((pos > tau).float().mean() - (neg > tau).float().mean()) == pytest.approx(best)


def test_guard_threshold_uses_validation_with_the_concept(setup) -> None:
    model, data, _ = setup
    val = make_pairs(48, seed=3, split="val")
    with_val = UnlearnData(data.unlearn, data.gold_standard, data.modalities, data.retain, val, data.concept)
    edit = create("concept_guard", threshold_rule="fpr", target=0.9).unlearn(model, with_val)
    named = cg.concept_rows(val, CONCEPT)
    assert named.any() and not named.all()
    scores = edit.rule.detector.score(model.image_features(val.inputs["image"]).detach())
    assert float(edit.rule.detector.threshold) == pytest.approx(
        float(torch.quantile(scores[~named].double(), 0.9)), abs=1e-4
    )


def test_bad_inputs_are_refused(setup) -> None:
    model, data, _ = setup
    av = make_av(16)
    classifier = build_model(
        "multimodal-classifier",
        0,
        input_shapes={"image": [1, 16, 16], "audio": [8, 16]},
        num_classes=4,
        feat_dim=8,
        width=4,
    )
    for name in METHODS:
        with pytest.raises(ConfigError, match=f"unlearner '{name}' cannot use MultimodalClassifier"):
            create(name).unlearn(classifier, UnlearnData(av.take(torch.arange(4)), av))
    for bad in ({"detector": "svm"}, {"threshold_rule": "max"}, {"target": 1.0}, {"penalty": -1.0}, {"scope": "x"}):
        with pytest.raises(ConfigError):
            create("concept_guard", **bad)
    no_keep = UnlearnData(data.unlearn, data.gold_standard.take(torch.tensor([], dtype=torch.long)), data.modalities,
                          None, None, CONCEPT)  # fmt: skip
    with pytest.raises(DataError, match="needs data to keep"):
        create("concept_guard").unlearn(model, no_keep)
