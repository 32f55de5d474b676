import pytest
import torch

from mmunlearn.data import ForgetRequest
from mmunlearn.errors import DataError, UnknownIdError
from toy import make_av, make_pairs


def test_random_fraction_is_seeded(tiny_av):
    a = ForgetRequest.random_fraction(tiny_av, 0.25, seed=1)
    b = ForgetRequest.random_fraction(tiny_av, 0.25, seed=1)
    c = ForgetRequest.random_fraction(tiny_av, 0.25, seed=2)
    assert a == b and a != c and len(a.ids) == 16


def test_splits_and_gold_standard_visual_only(tiny_av):
    req = ForgetRequest.random_fraction(tiny_av, 0.25, seed=0)
    u, r = req.unlearn_set(tiny_av), req.retain_set(tiny_av)
    assert set(u.ids) == set(req.ids) and len(u) + len(r) == len(tiny_av)
    assert u.present["image"].all()  # the unlearner sees what it must forget
    gold = req.gold_standard_set(tiny_av)
    assert len(gold) == len(tiny_av)
    pos = tiny_av.positions(req.ids)
    assert not gold.present["image"][pos].any() and gold.present["audio"][pos].all()
    assert (gold.inputs["image"][pos] == 0).all()
    keep = torch.ones(len(tiny_av), dtype=torch.bool)
    keep[pos] = False
    assert gold.present["image"][keep].all()


def test_full_deletion_gold_standard_is_retain_only(tiny_av):
    req = ForgetRequest(tuple(tiny_av.ids[:8]), frozenset({"image", "audio"}))
    assert req.is_full_deletion(tiny_av)
    assert req.gold_standard_set(tiny_av).ids == tiny_av.ids[8:]


def test_identity_and_class_requests(tiny_av):
    req = ForgetRequest.identities(tiny_av, ["font1"])
    assert all(tiny_av[tiny_av.ids.index(i)].groups["font"] == "font1" for i in req.ids)
    assert len(req.ids) == sum(g == "font1" for g in tiny_av.groups["font"])
    cls = ForgetRequest.one_class(tiny_av, 2)
    assert len(cls.ids) == 16
    with pytest.raises(DataError, match="unknown identity"):
        ForgetRequest.identities(tiny_av, ["nobody"])
    with pytest.raises(DataError, match="class 7"):
        ForgetRequest.one_class(tiny_av, 7)


def test_validation_errors(tiny_av):
    with pytest.raises(DataError, match="empty"):
        ForgetRequest(()).validate(tiny_av)
    with pytest.raises(UnknownIdError, match="not in dataset"):
        ForgetRequest(("ghost",)).validate(tiny_av)
    with pytest.raises(DataError, match="cannot forget modality \\['text'\\]"):
        ForgetRequest(tuple(tiny_av.ids[:2]), frozenset({"text"})).validate(tiny_av)
    with pytest.raises(DataError, match="cannot forget modality \\['audio'\\]"):
        ForgetRequest(tuple(tiny_av.ids[:2]), frozenset({"audio"})).validate(tiny_av, model_modalities=["image"])
    with pytest.raises(DataError, match="fraction"):
        ForgetRequest.random_fraction(tiny_av, 1.5, seed=0)
    ForgetRequest(tuple(tiny_av.ids[:2])).validate(tiny_av)


def test_receipt_summary_hashes_ids(tiny_av):
    req = ForgetRequest(tuple(tiny_av.ids[:3]), reason="test")
    d = req.to_dict()
    assert d["n_ids"] == 3 and len(d["ids_sha256"]) == 64 and "ids" not in d
    assert ForgetRequest(tuple(reversed(tiny_av.ids[:3]))).ids_sha256() == req.ids_sha256()


def test_concept_requests_take_every_pair_naming_the_concept():
    from mmunlearn.data.concepts import caption_concepts

    data = make_pairs(80)
    req = ForgetRequest.concept_pairs(data, "  Red   Circle ")
    # naive reference: the caption mentions "a red circle" as one of its two objects
    expected = [sid for sid, c in zip(data.ids, data.captions, strict=True) if "a red circle" in c]
    assert list(req.ids) == expected and req.ids
    assert req.modalities == {"image", "text"} and req.concept == "red circle"
    assert req.to_dict()["concept"] == "red circle"
    assert all("red circle" in cs for cs in (caption_concepts(data)[data.ids.index(i)] for i in req.ids))
    with pytest.raises(DataError, match="names the concept 'pink circle'; concepts of this dataset include"):
        ForgetRequest.concept_pairs(data, "pink circle")
    with pytest.raises(DataError, match="has no captions"):
        ForgetRequest.concept_pairs(make_av(16), "red circle")


def test_phrase_requests_on_captions_without_a_concept_space():
    data = make_pairs(40)
    data.name = "my-captions/train"
    req = ForgetRequest.concept_pairs(data, "circle")
    assert list(req.ids) == [sid for sid, c in zip(data.ids, data.captions, strict=True) if "circle" in c.split()]
