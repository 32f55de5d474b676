import pytest
import torch

from mmunlearn.data.core import MultimodalDataset
from mmunlearn.errors import DataError, UnknownIdError
from toy import make_av


def test_sample_view_and_batch(tiny_av):
    s = tiny_av[3]
    assert s.id == tiny_av.ids[3] and s.label == int(tiny_av.labels[3])
    assert s.present == {"image": True, "audio": True}
    assert s.groups == {"font": "font0", "voice": "voice1"}
    b = tiny_av.batch(torch.tensor([0, 5]))
    assert b["image"].shape == (2, 1, 16, 16) and b["present_audio"].all()
    assert b["index"].tolist() == [0, 5]


def test_subset_keeps_order_and_everything(tiny_av):
    ids = [tiny_av.ids[7], tiny_av.ids[2]]
    sub = tiny_av.subset(ids)
    assert sub.ids == ids
    assert torch.equal(sub.inputs["audio"][0], tiny_av.inputs["audio"][7])
    assert sub.groups["font"] == [tiny_av.groups["font"][7], tiny_av.groups["font"][2]]
    rest = tiny_av.without(ids)
    assert len(rest) == len(tiny_av) - 2 and not set(ids) & set(rest.ids)


def test_missing_view_zeroes_input_and_masks(tiny_av):
    ids = tiny_av.ids[:5]
    view = tiny_av.with_missing(ids, ["image"])
    assert not view.present["image"][:5].any() and view.present["image"][5:].all()
    assert view.present["audio"].all()
    assert (view.inputs["image"][:5] == 0).all()
    assert torch.equal(view.inputs["image"][5:], tiny_av.inputs["image"][5:])
    assert torch.equal(view.inputs["audio"], tiny_av.inputs["audio"])
    # the original is untouched
    assert tiny_av.present["image"].all() and (tiny_av.inputs["image"][:5] != 0).any()
    assert view[0].present == {"image": False, "audio": True}


def test_unknown_ids_and_modalities_are_clear_errors(tiny_av):
    with pytest.raises(UnknownIdError, match="1 id\\(s\\) not in dataset 'tiny-av': 'nope'"):
        tiny_av.subset(["nope"])
    with pytest.raises(DataError, match="has no modality 'text'"):
        tiny_av.with_missing(tiny_av.ids[:1], ["text"])


def test_invalid_construction():
    with pytest.raises(DataError, match="duplicate"):
        MultimodalDataset(["a", "a"], {"image": torch.zeros(2, 1, 2, 2)})
    with pytest.raises(DataError, match="NaN"):
        MultimodalDataset(["a"], {"audio": torch.tensor([[float("nan")]])})
    with pytest.raises(DataError, match="rows"):
        MultimodalDataset(["a", "b"], {"audio": torch.zeros(3, 1)})


def test_uint8_images_become_unit_floats():
    d = MultimodalDataset(["a"], {"image": torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)})
    assert d.inputs["image"].dtype == torch.float32 and d.inputs["image"].max() == 1.0


def test_concat_round_trip():
    d = make_av(10)
    a, b = d.take(torch.arange(4)), d.take(torch.arange(4, 10))
    both = MultimodalDataset.concat([a, b])
    assert both.ids == d.ids and torch.equal(both.inputs["image"], d.inputs["image"])
