"""Zero-shot concept metrics on a caption set without a built-in concept space: the phrases of the request
(a bench grid's ``concepts``) are its concepts, each its own prompt."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.test_bench_layout_requests import QUICK, run, unlearn
from data.layout_fixtures import make_caption_csv
from mmunlearn.data.concepts import concept_space, naming, phrase_space
from mmunlearn.data.core import MultimodalDataset
from mmunlearn.errors import ConfigError
from mmunlearn.metrics.scenario_c import ScenarioCData, draw, zero_shot
from toy import make_pairs, tiny_dual_encoder

ZS_RETAIN = 7  # scenario_c's stream of the retain sample (its private constant, restated)
PHRASES = ("Red  Circle", "orange triangle", "yellow", "circle", "star above")


def renamed(data: MultimodalDataset, name: str) -> MultimodalDataset:
    """A copy of ``data`` under a name that is no built-in dataset's (so it has no concept space)."""
    return data.take(torch.arange(len(data)), name=name)


def request(on_disk: bool, phrases: tuple[str, ...] = PHRASES) -> ScenarioCData:
    """Forget the pairs naming "red circle" of a toy shapes-captions set (renamed: a set 'on disk')."""
    train, val, test = make_pairs(96, 0), make_pairs(40, 1, "val"), make_pairs(32, 2, "test")
    if on_disk:
        train, val, test = (renamed(x, f"mine/{s}") for x, s in ((train, "train"), (val, "val"), (test, "test")))
    u = train.take(torch.tensor(naming(train, "red circle")))
    return ScenarioCData(u, train.without(u.ids), test, val, "red circle", phrases)


def naive_names(caption: str, phrases: list[str]) -> list[str]:
    """The phrases whose words appear, consecutively, among the caption's words (by loops)."""
    words = caption.lower().split()
    out = []
    for p in phrases:
        pw = p.split()
        if any(words[i : i + len(pw)] == pw for i in range(len(words) - len(pw) + 1)):
            out.append(p)
    return out


# -- the phrase space ----------------------------------------------------------------------------------------
def test_a_phrase_space_parses_the_named_phrases_in_order_and_prompts_the_phrase():
    space = phrase_space(("A  Dog", "the beach", "dog", "a dog"))  # "a dog" repeats "A  Dog" once normalised
    assert space.parse("A dog ran on the beach.") == ("a dog", "the beach", "dog")
    assert space.parse("The BEACH, at dusk") == ("the beach",)
    assert space.parse("a hotdog on the beaches") == ()  # word boundaries: no part of a word
    assert space.parse("two dogs") == ()
    assert space.prompt("a dog") == "a dog" and space.prompt("The  Beach") == "the beach"
    with pytest.raises(ConfigError, match="phrases must be non-blank"):
        phrase_space(("dog", "  "))


# -- zero_shot with phrases ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def disk():
    d = request(on_disk=True)
    assert concept_space(d.retain) is None  # the renamed copy has no built-in concept space
    return d, tiny_dual_encoder(d.retain, 0)


def test_zero_shot_on_phrases_matches_naive(disk):
    d, model = disk
    got = {(r.name, r.split): r for r in zero_shot(model, d)}
    phrases = [" ".join(p.lower().split()) for p in PHRASES]
    names = {key: [naive_names(c, phrases) for c in x.captions] for key, x in (("u", d.unlearn), ("r", d.retain),
                                                                               ("t", d.test))}  # fmt: skip
    prompts = sorted({p for cs in names["u"] + names["r"] for p in cs})
    assert prompts == sorted(phrases)  # every phrase names some training caption
    model.eval()
    with torch.no_grad():
        p_emb = model.encode_captions(prompts).numpy()  # the model's own tokenizer, the phrase as the prompt

    def check(x, cs, rows, name, split, scored):
        img = model.encode_image(x.inputs["image"]).detach().numpy()
        values, chances = [], []
        for i in rows:
            s = {c: float(np.dot(img[i], p_emb[j])) for j, c in enumerate(prompts)}
            rivals = [c for c in prompts if c not in cs[i]]
            values.append(np.mean([all(s[c] > s[o] for o in rivals) for c in scored(cs[i])]))
            chances.append(1 / (1 + len(rivals)))
        assert got[(name, split)].value == pytest.approx(np.mean(values), abs=1e-9), (name, split)
        assert got[(name, split)].chance == pytest.approx(np.mean(chances), abs=1e-9), (name, split)

    c = "red circle"
    assert all(c in cs for cs in names["u"])
    check(d.unlearn, names["u"], range(len(d.unlearn)), "zs_concept", "unlearn", lambda cs: [c])
    t_concept = [i for i, cs in enumerate(names["t"]) if c in cs]
    check(d.test, names["t"], t_concept, "zs_concept", "test_concept", lambda cs: [c])
    r_rows = [i for i, cs in enumerate(names["r"]) if c not in cs and cs]
    r_rows = [r_rows[i] for i in draw(len(r_rows), len(d.test), ZS_RETAIN).tolist()]
    check(d.retain, names["r"], r_rows, "zs_retained", "retain", lambda cs: cs)
    t_rows = [i for i, cs in enumerate(names["t"]) if c not in cs and cs]
    check(d.test, names["t"], t_rows, "zs_retained", "test", lambda cs: cs)
    assert set(got) == {("zs_concept", "unlearn"), ("zs_concept", "test_concept"), ("zs_retained", "retain"),
                        ("zs_retained", "test")}  # fmt: skip


def test_fewer_than_two_phrases_give_no_zero_shot_figures(disk):
    d, model = disk
    assert zero_shot(model, dataclasses.replace(d, phrases=())) == []
    assert zero_shot(model, dataclasses.replace(d, phrases=("red circle",))) == []
    assert zero_shot(model, dataclasses.replace(d, phrases=("red circle", "Red  circle"))) == []  # one, normalised
    assert zero_shot(model, dataclasses.replace(d, phrases=("red circle", "green")))  # two: figures


def test_a_built_in_dataset_ignores_the_phrases(disk):
    built_in = request(on_disk=False)
    model = disk[1]
    own = zero_shot(model, dataclasses.replace(built_in, phrases=()))
    assert own and zero_shot(model, built_in) == own  # its own concept space wins over PHRASES
    on_disk = zero_shot(model, disk[0])  # the same pairs and model, the phrases as concepts: other figures
    assert [(r.name, r.split) for r in on_disk] == [(r.name, r.split) for r in own]
    assert [r.chance for r in on_disk] != [r.chance for r in own]


# -- a bench grid on disk ------------------------------------------------------------------------------------
def test_a_concept_grid_on_disk_records_the_zero_shot_metrics_in_every_row(tmp_path: Path) -> None:
    csv = make_caption_csv(tmp_path / "mydata")
    raw = unlearn(csv, "csv", requests=["concept"], concepts=["picture 3", "picture 5"],
                  layout_options={"image_size": 16}, **QUICK)  # fmt: skip
    records = run(raw, tmp_path)
    assert sorted(r.method for r in records) == ["finetune", "original", "retrain"]
    for r in records:
        zs = {(m.name, m.split): m for m in r.metrics if m.name.startswith("zs_")}
        # U: picture 3's two pairs; the retained images: picture 5's (val and test name neither phrase)
        assert set(zs) == {("zs_concept", "unlearn"), ("zs_retained", "retain")}, (r.method, zs)
        assert all(0.0 <= m.value <= 1.0 and m.chance == pytest.approx(0.5) for m in zs.values())
