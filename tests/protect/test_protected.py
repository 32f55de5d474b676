"""`ProtectedDataset`: storage, application as a dataset view, save/load and their errors."""

from __future__ import annotations

import json

import pytest
import torch
from caption_toy import make_captions
from hypothesis import given, settings
from hypothesis import strategies as st

from mmunlearn.errors import CheckpointError, DataError
from mmunlearn.protectors import ProtectedDataset, prepend_triggers, quantize_noise, trigger_budget
from mmunlearn.protectors.protected import dataset_source, noise_dtype, noise_units


def protection(data, eps=8 / 255, k=2, seed=0, method="test"):
    g = torch.Generator().manual_seed(seed)
    units = noise_units(eps)
    noise = torch.randint(-units, units + 1, data.inputs["image"].shape, generator=g).to(noise_dtype(eps))
    trig = torch.randint(2, len(data.vocab), (len(data), k), generator=g) if k else None
    return ProtectedDataset(list(data.ids), noise, trig, eps, method, {"seed": seed}, dataset_source(data))


@settings(max_examples=40, deadline=None)
@given(
    eps_units=st.integers(1, 255),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.0, 3.0),
)
def test_noise_within_epsilon_and_images_in_range(eps_units, seed, scale):
    data = make_captions(n=6, seed=seed % 7)
    eps = eps_units / 255
    g = torch.Generator().manual_seed(seed)
    raw = (torch.rand(data.inputs["image"].shape, generator=g) * 2 - 1) * eps * scale  # may exceed the budget
    noise = quantize_noise(raw, eps)
    assert noise.dtype == noise_dtype(eps)
    assert int(noise.abs().max()) <= noise_units(eps)
    p = ProtectedDataset(list(data.ids), noise, None, eps, "prop", source=dataset_source(data))
    out = p.apply(data).inputs["image"]
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float((out - data.inputs["image"]).abs().max()) <= eps + 1e-6


def test_apply_shifts_caption_and_prepends_trigger(toy):
    p = protection(toy, k=3)
    out = p.apply(toy)
    text, trig = out.inputs["text"], p.triggers
    assert torch.equal(text[:, :3], trig)
    assert torch.equal(text[:, 3:7], toy.inputs["text"][:, :4])
    assert (text[:, 7:] == 0).all()
    assert out.captions[0].split()[:3] == [toy.vocab[i] for i in trig[0].tolist()]
    assert out.ids == toy.ids and len(out) == len(toy)
    expected = (toy.inputs["image"] + p.noise.float() / 255).clamp(0, 1)
    assert torch.equal(out.inputs["image"], expected)


def test_apply_matches_rows_by_id_not_order(toy):
    p = protection(toy, k=1)
    reordered = toy.take(torch.arange(len(toy)).flip(0))
    a, b = p.apply(toy), p.apply(reordered)
    assert torch.equal(a.subset(reordered.ids).inputs["image"], b.inputs["image"])
    assert torch.equal(a.subset(reordered.ids).inputs["text"], b.inputs["text"])


def test_trigger_longer_than_budget_is_an_error(toy):
    assert trigger_budget(toy.inputs["text"]) == 4
    with pytest.raises(DataError, match="does not fit"):
        prepend_triggers(toy.inputs["text"], torch.full((len(toy), 5), 2))
    with pytest.raises(DataError, match="does not fit"):
        protection(toy, k=5).apply(toy)


def test_save_load_round_trip_is_bit_exact(toy, tmp_path):
    p = protection(toy, k=3)
    p.stats = {"seconds": 1.5}
    p.save(tmp_path / "prot")
    q = ProtectedDataset.load(tmp_path / "prot")
    assert q.ids == p.ids and q.method == p.method and q.epsilon == p.epsilon
    assert q.noise.dtype == torch.int8 and torch.equal(q.noise, p.noise)
    assert torch.equal(q.triggers, p.triggers)
    assert q.source == p.source and q.config == p.config and q.stats == p.stats
    assert torch.equal(q.apply(toy).inputs["image"], p.apply(toy).inputs["image"])


def test_noise_only_and_trigger_only_round_trip(toy, tmp_path):
    for noise, trig in ((True, False), (False, True)):
        p = protection(toy, k=2)
        p = ProtectedDataset(p.ids, p.noise if noise else None, p.triggers if trig else None,
                             p.epsilon if noise else None, "x", source=p.source)  # fmt: skip
        p.save(tmp_path / str(noise))
        q = ProtectedDataset.load(tmp_path / str(noise))
        assert (q.noise is None) != noise and (q.triggers is None) != trig


def test_storage_is_compact(toy, tmp_path):
    p = protection(make_captions(n=300, side=32), k=3)
    assert p.noise.dtype == torch.int8
    p.save(tmp_path / "p")
    per_pair = (tmp_path / "p" / "protection.safetensors").stat().st_size / 300
    assert per_pair * 30_000 < 100e6  # 30,000 RGB 32x32 pairs under 100 MB
    assert noise_dtype(200 / 255) == torch.int16


def test_corrupted_noise_file_is_detected(toy, tmp_path):
    protection(toy).save(tmp_path / "p")
    f = tmp_path / "p" / "protection.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        ProtectedDataset.load(tmp_path / "p")
    f.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="truncated"):
        ProtectedDataset.load(tmp_path / "p")


def test_edited_manifest_and_missing_files_are_detected(toy, tmp_path):
    protection(toy).save(tmp_path / "p")
    m = tmp_path / "p" / "manifest.json"
    manifest = json.loads(m.read_text())
    manifest["source"]["n"] = 3
    m.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="edited"):
        ProtectedDataset.load(tmp_path / "p")
    with pytest.raises(CheckpointError, match="not a protected dataset"):
        ProtectedDataset.load(tmp_path / "nowhere")


def test_tampered_noise_over_budget_is_rejected_on_load(toy, tmp_path):
    p = protection(toy, eps=4 / 255)
    p.save(tmp_path / "p")
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    manifest["epsilon"] = 2 / 255  # claims a smaller budget than the stored noise
    (tmp_path / "p" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="over its budget"):
        ProtectedDataset.load(tmp_path / "p")


def test_protection_of_other_data_is_rejected(toy):
    p = protection(toy)
    with pytest.raises(DataError, match="ids differ"):
        p.apply(make_captions(n=10))
    other = make_captions(seed=1)  # same ids, other pixels
    with pytest.raises(DataError, match="other data"):
        p.apply(other)


def test_invalid_trigger_ids_are_rejected(toy):
    p = protection(toy)
    with pytest.raises(DataError, match="real words"):
        ProtectedDataset(p.ids, None, torch.zeros(len(toy), 2, dtype=torch.long), None, "x", source=p.source)
    with pytest.raises(DataError, match="real words"):
        ProtectedDataset(p.ids, None, torch.full((len(toy), 2), 99), None, "x", source=p.source)
