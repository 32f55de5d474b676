"""Victim regimes: scratch unchanged, finetune (vocabulary transfer, zero-shot figures, one pretraining per
bench seed), hf-clip (a CLIPModel that trains and sees the protected ids unchanged)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mmunlearn.benchmarking import protect_cell
from mmunlearn.benchmarking.cells import grid_cells
from mmunlearn.benchmarking.config import ProtectGrid
from mmunlearn.benchmarking.protect_cell import ProtectCells
from mmunlearn.data import DatasetRef, DatasetSplits, load_dataset
from mmunlearn.errors import ConfigError
from mmunlearn.evaluate import evaluate_dual_encoder
from mmunlearn.models import DualEncoder, build_model
from mmunlearn.protectors import PROTECTORS
from mmunlearn.recipes import new_model, recipe_for
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.victim import VictimConfig, train_victim, victim_recipe
from mmunlearn.victim_models import hf_clip_model, pretrain_set, transfer_vocabulary


def tiny_encoder(vocab: list[str], seed: int, text_len: int = 6, **changes: object) -> DualEncoder:
    config = {"image_shape": [3, 8, 8], "vocab": vocab, "text_len": text_len, "embed_dim": 8, "width": 4,
              "text_dim": 8, "text_layers": 1, **changes}  # fmt: skip
    model = build_model("dual-encoder", seed, **config)
    assert isinstance(model, DualEncoder)
    return model


def small(splits, n: int = 128):  # type: ignore[no-untyped-def]
    """The first ``n`` pairs of each split (a seconds-long victim)."""
    return dataclasses.replace(
        splits, **{s: getattr(splits, s).take(torch.arange(n)) for s in ("train", "val", "test")}
    )


@pytest.fixture(scope="module")
def emoji_small():  # type: ignore[no-untyped-def]
    return load_dataset("emoji-captions", "small", 0)


def test_regime_validation():
    with pytest.raises(ConfigError, match="regime"):
        VictimConfig(regime="imagenet")
    with pytest.raises(ConfigError, match="finetune regime"):
        VictimConfig(pretrain="emoji-captions")
    with pytest.raises(ConfigError, match="ViT"):
        VictimConfig(regime="hf-clip", image_encoder="resnet")
    with pytest.raises(ConfigError, match="lr"):
        VictimConfig(lr=0.0)
    assert VictimConfig(regime="finetune", image_encoder="resnet").image_encoder == "resnet"
    assert pretrain_set("shapes-captions", None) == "scenes-captions"
    assert pretrain_set("scenes-captions", None) == "shapes-captions"
    with pytest.raises(ConfigError, match="pretrain_data_seed"):
        pretrain_set("shapes-captions", "shapes-captions")
    with pytest.raises(ConfigError, match="pretrain_data_seed"):
        pretrain_set("shapes-captions", "shapes-captions", data_seed=2, target_seed=2)
    assert pretrain_set("shapes-captions", "shapes-captions", data_seed=7, target_seed=0) == "shapes-captions"
    with pytest.raises(ConfigError, match="finetune regime"):
        VictimConfig(pretrain_data_seed=7)
    with pytest.raises(ConfigError, match="pretrain_data_seed must be"):
        VictimConfig(regime="finetune", pretrain_data_seed=-1)
    same = VictimConfig(regime="finetune", pretrain="shapes-captions", pretrain_data_seed=7)
    assert same.pretraining_data("shapes-captions", 0) == ("shapes-captions", 7)
    assert VictimConfig(regime="finetune").pretraining_data("emoji-captions", 0) == ("shapes-captions", 0)
    with pytest.raises(ConfigError, match="pretrain_data_seed"):
        same.pretraining_data("shapes-captions", 7)


def test_transfer_copies_exactly_the_shared_words_rows():
    old_vocab = ["[PAD]", "[UNK]", "red", "circle", "blue", "old"]
    new_vocab = ["[PAD]", "[UNK]", "blue", "new", "red", "square", "circle"]
    pretrained, fresh = tiny_encoder(old_vocab, 0), tiny_encoder(new_vocab, 1, text_len=8)
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    init = {k: v.clone() for k, v in fresh.state_dict().items()}
    out = transfer_vocabulary(pretrained, fresh).state_dict()
    table, old_table = out["text_encoder.token.weight"], before["text_encoder.token.weight"]
    assert table.shape == (len(new_vocab), 8)
    for j, word in enumerate(new_vocab):  # naive reference
        expected = old_table[old_vocab.index(word)] if word in old_vocab else init["text_encoder.token.weight"][j]
        assert torch.equal(table[j], expected), word
    assert torch.equal(out["text_encoder.pos"][:6], before["text_encoder.pos"])
    assert torch.equal(out["text_encoder.pos"][6:], init["text_encoder.pos"][6:])  # positions it never had
    for key, value in out.items():
        if key not in ("text_encoder.token.weight", "text_encoder.pos"):
            assert torch.equal(value, before[key]), key
    assert all(torch.equal(v, before[k]) for k, v in pretrained.state_dict().items())  # the source is not changed


def test_transfer_refuses_other_architectures():
    with pytest.raises(ConfigError, match="width"):
        transfer_vocabulary(tiny_encoder(["[PAD]", "[UNK]", "a"], 0), tiny_encoder(["[PAD]", "[UNK]", "a"], 1, width=8))


def test_scratch_is_the_recipe_model_trained_as_before(shapes_small):
    splits = small(shapes_small)
    result = train_victim(splits, None, VictimConfig(epochs=1, progress=False))
    recipe = recipe_for("shapes-captions")
    reference = train_model(new_model(splits, 1), splits.train, recipe.train.replace(seed=1, epochs=1, progress=False))
    for (k, a), b in zip(result.model.state_dict().items(), reference.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert [m.name for m in result.metrics] == ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10",
                                                 "mean_recall"]  # fmt: skip
    assert result.record().config["regime"] == "scratch" and result.record().config["pretrain"] is None


def test_finetune_records_the_transferred_models_zero_shot_figures(shapes_small, emoji_small):
    splits = small(shapes_small)
    pretrained = new_model(small(emoji_small), 7)
    assert isinstance(pretrained, DualEncoder)
    kept = {k: v.clone() for k, v in pretrained.state_dict().items()}
    config = VictimConfig(regime="finetune", pretrain="emoji-captions", epochs=1, progress=False)
    result = train_victim(splits, None, config, pretrained=pretrained)
    fresh = new_model(splits, 1)
    assert isinstance(fresh, DualEncoder)
    expected = evaluate_dual_encoder(transfer_vocabulary(pretrained, fresh), {"test": splits.test})
    zero = {m.name: m.value for m in result.metrics if m.name.startswith("zero_shot_")}
    assert zero == {f"zero_shot_{m.name}": m.value for m in expected} and len(zero) == 7
    assert all(torch.equal(v, kept[k]) for k, v in pretrained.state_dict().items())
    record = result.record()
    assert record.config["regime"] == "finetune" and record.config["pretrain"] == "emoji-captions"
    assert victim_recipe(recipe_for("shapes-captions"), config, 1).lr == pytest.approx(3e-4)


def test_hf_clip_loss_decreases(shapes_small):
    data = shapes_small.train.take(torch.arange(64))
    model = hf_clip_model(shapes_small, 0)
    batch = data.batch(torch.arange(64))
    with torch.no_grad():
        before = float(model.loss(batch))
    train_model(model, data, TrainConfig(epochs=6, batch_size=32, lr=3e-3, warmup_epochs=0, progress=False, seed=0))
    with torch.no_grad():
        after = float(model.loss(batch))
    assert after < before - 0.1


def test_hf_clip_is_seeded(shapes_small):
    a, b, c = (hf_clip_model(shapes_small, s).state_dict() for s in (0, 0, 1))
    key = "hf.vision_model.embeddings.patch_embedding.weight"
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a[key], c[key])


def test_hf_clip_victim_trains_and_evaluates(shapes_small):
    result = train_victim(small(shapes_small), None, VictimConfig(regime="hf-clip", epochs=1, progress=False))
    assert result.model.kind == "hf-dual-encoder" and len(result.metrics) == 7
    assert all(m.split == "test" and m.chance is not None for m in result.metrics)
    assert result.record().config["regime"] == "hf-clip"


def test_hf_clip_sees_protected_trigger_ids_unchanged(shapes_small):
    data = shapes_small.train.take(torch.arange(32))
    protected = PROTECTORS.create("random_trigger", seed=0).protect(data).apply(data)
    rows = protected.inputs["text"]
    assert not torch.equal(rows, data.inputs["text"])  # the trigger is there
    model = hf_clip_model(shapes_small, 0)
    seen: list[torch.Tensor] = []
    table = model.hf.text_model.embeddings.token_embedding
    handle = table.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    with torch.no_grad():
        model.encode_text(rows)
    handle.remove()
    ids = seen[0]
    used = int((rows != 0).sum(1).max())
    body = ids[:, 1 : 1 + used]
    assert torch.equal(torch.where(rows[:, :used] != 0, body, 0), rows[:, :used])
    assert (ids[:, 0] == len(shapes_small.vocab)).all()  # begin-of-text, after the vocabulary


def test_bench_trains_one_pretrained_model_for_every_protector(tmp_path, shapes_small, emoji_small, monkeypatch):
    sets = {"shapes-captions": small(shapes_small), "emoji-captions": small(emoji_small)}
    calls: list[str] = []
    real = protect_cell.victim_models.pretrain_model

    def counted(splits, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(splits.name)
        return real(splits, *args, **kwargs)

    monkeypatch.setattr(protect_cell.victim_models, "pretrain_model", counted)
    grid = ProtectGrid(protectors=("clean", "random_noise"), victim_epochs=1,
                       victims=({"regime": "finetune", "pretrain": "emoji-captions", "pretrain_epochs": 1},))  # fmt: skip
    cells = grid_cells(grid)
    assert len(cells) == 2
    runner = ProtectCells(tmp_path, lambda ref: sets[ref.name])
    records = [runner.run(c) for c in cells]
    assert calls == ["emoji-captions"]
    again = ProtectCells(tmp_path, lambda ref: sets[ref.name]).run(cells[1])  # a resumed bench: from disk
    assert calls == ["emoji-captions"]
    for record in [*records, again]:
        names = {m.name for m in record.metrics}
        assert {"i2t_r1", "zero_shot_i2t_r1", "zero_shot_mean_recall"} <= names
        assert record.config["victim"]["pretrain"] == "emoji-captions" and record.extras["pretrain_seconds"] > 0
    zero = [{m.name: m.value for m in r.metrics if m.name.startswith("zero_shot")} for r in records]
    assert zero[0] == zero[1]  # the same pretrained model met both protections (clean test split)


def test_bench_pretrains_on_the_target_set_at_another_data_seed(tmp_path, shapes_small):
    loaded: list[DatasetRef] = []

    def load(ref: DatasetRef) -> DatasetSplits:
        loaded.append(ref)
        return small(shapes_small)  # stands in for every build: what is asked for is what is tested

    victim = {"regime": "finetune", "pretrain": "shapes-captions", "pretrain_data_seed": 5, "pretrain_epochs": 1}
    grid = ProtectGrid(protectors=("clean",), victim_epochs=1, victims=(victim,))
    (cell,) = grid_cells(grid)
    assert cell.setting == "finetune<-shapes-captions@data5"
    record = ProtectCells(tmp_path, load).run(cell)
    assert DatasetRef("shapes-captions", "small", 5) in loaded and DatasetRef("shapes-captions", "small", 0) in loaded
    assert [p.name.split("-seed")[0] for p in (tmp_path / "pretrained").iterdir()] == ["shapes-captions-data5-small"]
    assert record.config["victim"]["pretrain_data_seed"] == 5
    default = ProtectGrid(protectors=("clean",), victims=({"regime": "finetune"},))
    assert "pretrain_data_seed" not in grid_cells(default)[0].settings()["victim"]  # earlier keys unchanged


def test_a_clip_model_is_mems_surrogate_and_its_victim(shapes_small):
    """Scenario B end to end with transformers' CLIPModel on both sides (MEM's from-scratch setting)."""
    splits = small(shapes_small, 32)
    surrogate = hf_clip_model(splits, 0)
    before = {k: v.clone() for k, v in surrogate.state_dict().items()}
    mem = PROTECTORS.create("mem", outer_iters=1, surrogate_steps=2, pgd_steps=1, trigger_iters=1, batch_size=16,
                            hotflip_candidates=2, progress=False)  # fmt: skip
    protected = mem.protect(splits.train, surrogate=surrogate)
    assert all(torch.equal(v, before[k]) for k, v in surrogate.state_dict().items())  # crafted on a copy
    noise = protected.noise.float()
    assert 0 < float(noise.abs().max()) <= 8 and protected.triggers.shape == (len(splits.train), 3)
    assert int(protected.triggers.min()) >= 2 and int(protected.triggers.max()) < len(splits.vocab)
    victim = train_victim(splits, protected, VictimConfig(seed=1, regime="hf-clip", epochs=1, progress=False))
    assert 0 <= victim.value("i2t_r1") <= 1 and victim.record().config["regime"] == "hf-clip"
