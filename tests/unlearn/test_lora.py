"""LoRA-constrained unlearning: only the adapters train, the L1 term is the plain sum, removing the adapter is
exact, a saved adapter re-applied and merged is the method's merged result, resume works; on both model kinds."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from safetensors import safe_open
from torch.testing import assert_close

import mmunlearn.unlearn.base as B
from mmunlearn.data import ForgetRequest
from mmunlearn.errors import CheckpointError, ConfigError, DataError
from mmunlearn.models import build_model
from mmunlearn.models.protocols import Classifier, DualEncoderModel
from mmunlearn.unlearn import UNLEARNERS, Run, Step, UnlearnData
from mmunlearn.unlearn.lora import (
    adaptable_modules,
    adapter_state,
    inject,
    l1_penalty,
    load_adapter,
    lora_config,
    merge_adapter,
    remove_adapter,
    save_adapter,
    target_modules,
)
from mmunlearn.unlearn.objectives import task_loss
from toy import make_av, make_pairs, tiny_dual_encoder

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
METHOD = {"epochs": 2, "lr": 3e-3, "batch_size": 8, "retain_batch_size": 16, "progress": False}
KINDS = ["classifier", "dual-encoder"]


def setup_of(kind: str) -> tuple[torch.nn.Module, UnlearnData]:
    """A tiny random-initialised model of ``kind`` (eval mode) and a request on toy data."""
    if kind == "classifier":
        train = make_av(48)
        request = ForgetRequest.random_fraction(train, 0.25, seed=0)
        return build_model("multimodal-classifier", 0, **CFG).eval(), UnlearnData.from_request(request, train)
    pairs = make_pairs(48)
    request = ForgetRequest.random_fraction(pairs, 0.25, seed=0, modalities=("image", "text"))
    return tiny_dual_encoder(pairs, 0).eval(), UnlearnData.from_request(request, pairs)


def outputs(model: torch.nn.Module, data: UnlearnData) -> torch.Tensor:
    """The model's logits on U: class logits, or the image-caption similarities."""
    batch = data.unlearn.full_batch()
    with torch.no_grad():
        if isinstance(model, DualEncoderModel) and "text" in batch:
            return model.encode_image(batch["image"]) @ model.encode_text(batch["text"]).T
        return model(batch)


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def adapted(model: torch.nn.Module, target: str = "all", seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` with adapters whose B is random too (so that every adapter acts)."""
    out = copy.deepcopy(model)
    torch.manual_seed(seed)
    inject(out, lora_config(target_modules(out, target), 2, 4))
    with torch.no_grad():
        for name, p in out.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.1)
    return out


# -- the L1 term ------------------------------------------------------------------------------------------


def naive_l1(model: torch.nn.Module) -> float:
    """Sum of |x| over every entry of every lora_A / lora_B weight, one number at a time."""
    total = 0.0
    for module in model.modules():
        for part in ("lora_A", "lora_B"):
            holder = getattr(module, part, None)
            if isinstance(holder, torch.nn.ModuleDict):
                for layer in holder.values():
                    total += sum(abs(x) for x in layer.weight.detach().flatten().tolist())
    return total


@pytest.mark.parametrize("kind", KINDS)
def test_l1_penalty_matches_a_naive_sum_and_enters_the_loss_with_its_weight(kind):
    model, data = setup_of(kind)
    work = adapted(model)
    expected = naive_l1(work)
    assert expected > 0
    assert float(l1_penalty(work).detach()) == pytest.approx(expected, rel=1e-5)
    kind_type = DualEncoderModel if kind == "dual-encoder" else Classifier
    run = Run(data, None, None, kind_type)
    step = Step(data.unlearn.batch(torch.arange(8)), data.gold_standard.batch(torch.arange(16)), 0)
    torch.manual_seed(1)
    with_l1 = UNLEARNERS.create("lora", l1=0.5).loss(work, run, step)
    torch.manual_seed(1)
    without = UNLEARNERS.create("lora", l1=0.0).loss(work, run, step)
    assert float((with_l1 - without).detach()) == pytest.approx(0.5 * expected, rel=1e-4)
    # the objective itself: NegGrad+ with beta, and gradient ascent
    beta = 0.9  # model.loss draws the classifier's modality dropout: the same draws for both
    torch.manual_seed(1)
    neggrad = UNLEARNERS.create("lora", l1=0.0, beta=beta).loss(work, run, step)
    torch.manual_seed(1)
    manual = beta * work.loss(step.retain) - (1 - beta) * task_loss(work, run, step.unlearn)
    assert_close(neggrad.detach(), manual.detach())
    ascent = UNLEARNERS.create("lora", l1=0.0, objective="grad_ascent").loss(work, run, step)
    assert_close(ascent.detach(), -task_loss(work, run, step.unlearn).detach())


# -- only the adapters train; removal is exact ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_adapters_change_and_removing_them_is_exact(kind, monkeypatch):
    model, data = setup_of(kind)
    before = copy.deepcopy(model.state_dict())
    seen: list[set[str]] = []
    real = B.optimizer_step

    def spy(m, opt, loss, clip):  # what the loop optimises, and what is trainable, at every step
        names = {id(p): n for n, p in m.named_parameters()}
        optimised = {names[id(p)] for g in opt.param_groups for p in g["params"]}
        trainable = {n for n, p in m.named_parameters() if p.requires_grad}
        seen.append(optimised | {f"trainable:{n}" for n in trainable})
        return real(m, opt, loss, clip)

    monkeypatch.setattr(B, "optimizer_step", spy)
    new = UNLEARNERS.create("lora", **METHOD, merge=False).unlearn(model, data)
    assert seen, "the loop never stepped"
    for names in seen:
        assert names and all(".lora_A." in n or ".lora_B." in n for n in names), sorted(names)[:5]
    # the input is untouched: weights, module types, trainability, no peft attribute
    assert states_equal(model.state_dict(), before)
    assert not any("lora" in type(m).__module__ for m in model.modules()) and not hasattr(model, "peft_config")
    assert all(p.requires_grad for p in model.parameters())
    # the adapters moved, the base layers did not (bit-identical)
    adapters = adapter_state(new)
    assert adapters and any(float(v.abs().max()) > 0 for k, v in adapters.items() if ".lora_B." in k)
    base = {k.replace(".base_layer.", "."): v for k, v in new.state_dict().items() if k not in adapters}
    assert states_equal(base, before)
    assert not torch.equal(outputs(new, data), outputs(model, data)), "the adapters change nothing"
    plain = remove_adapter(new)
    assert type(plain) is type(model) and not hasattr(plain, "peft_config")
    assert not any(m._forward_pre_hooks for m in plain.modules()), "a hook of the adapter was left behind"
    assert states_equal(plain.state_dict(), before)
    assert torch.equal(outputs(plain, data), outputs(model, data))
    assert adapter_state(new).keys() == adapters.keys(), "remove_adapter must not change its argument"


# -- merge, save, load ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_merged_result_equals_the_saved_adapter_reloaded_and_merged(kind, tmp_path):
    model, data = setup_of(kind)
    merged = UNLEARNERS.create("lora", **METHOD).unlearn(model, data)
    assert type(merged) is type(model) and not merged.training
    assert merged.state_dict().keys() == model.state_dict().keys()
    assert all(p.requires_grad for p in merged.parameters())
    separate = UNLEARNERS.create("lora", **METHOD, merge=False).unlearn(model, data)  # same seed, same adapter
    # (outputs() runs in eval mode without gradients: for the dual encoder this is where PyTorch's fused
    # Transformer path would skip the text MLP's adapters if inject() did not keep it off)
    assert_close(outputs(separate, data), outputs(merged, data), rtol=1e-5, atol=1e-5)
    path = tmp_path / "adapter.safetensors"
    save_adapter(separate, path)
    with safe_open(str(path), framework="pt") as f:
        meta, keys = f.metadata(), set(f.keys())
    assert keys == set(adapter_state(separate)) and all(".lora_" in k for k in keys)
    config = json.loads(meta["lora_config"])
    assert config["r"] == 4 and config["lora_dropout"] == 0.0
    wrapped = sorted({k.split(".lora_")[0] for k in keys})
    assert wrapped == sorted(adaptable_modules(model))
    assert all(re.fullmatch(config["target_modules"], n) for n in wrapped)
    loaded = load_adapter(model, path)
    assert states_equal(adapter_state(loaded), adapter_state(separate))
    again = merge_adapter(loaded)
    assert type(again) is type(model)
    # float32 tolerance (torch's defaults for float32: rtol 1.3e-6, atol 1e-5); the same merge arithmetic
    for k, v in merged.state_dict().items():
        assert_close(again.state_dict()[k], v, rtol=1.3e-6, atol=1e-5)
    assert states_equal(remove_adapter(loaded).state_dict(), model.state_dict())


def test_load_adapter_refuses_another_architecture_and_other_files(tmp_path):
    model, _ = setup_of("classifier")
    path = tmp_path / "a.safetensors"
    save_adapter(adapted(model, "head"), path)
    other, _ = setup_of("dual-encoder")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_adapter(other, path)
    bigger = build_model("multimodal-classifier", 0, **{**CFG, "feat_dim": 12})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_adapter(bigger, path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_adapter(model, tmp_path / "junk.safetensors")
    with pytest.raises(ConfigError, match="no LoRA adapter"):
        save_adapter(model, tmp_path / "b.safetensors")


# -- targets, config, determinism ---------------------------------------------------------------------------


def test_targets():
    model, _ = setup_of("classifier")
    everything = adaptable_modules(model)
    assert len(everything) == 2 * 7 + 1  # 6 convs + proj per encoder, the head
    assert target_modules(model, "head") == ["encoders.image.proj", "encoders.audio.proj", "head"]
    assert target_modules(model, "encoders.image.*") == [n for n in everything if n.startswith("encoders.image.")]
    assert target_modules(model, ("head", "*.proj")) == target_modules(model, "head")
    with pytest.raises(ConfigError, match=r"\['nothing'\] match no"):
        target_modules(model, "head,nothing")
    dual, _ = setup_of("dual-encoder")
    names = adaptable_modules(dual)
    assert "text_encoder.transformer.layers.0.linear1" in names and not any("self_attn" in n for n in names)
    assert target_modules(dual, "head") == ["image_encoder.proj", "text_encoder.proj"]


def test_adapters_go_on_exactly_the_chosen_layers_not_on_names_ending_alike():
    """peft matches a list of names by suffix too ("head" would also take "aux.head"): the config must not."""

    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head, self.aux = torch.nn.Linear(3, 3), torch.nn.Sequential()
            self.aux.add_module("head", torch.nn.Linear(3, 3))

    model = Two()
    assert target_modules(model, "head") == ["head", "aux.head"]  # the keyword: every layer named head
    assert target_modules(model, "h?ad") == ["head"]  # a glob is matched against the full name
    inject(model, lora_config(["head"], 2, 4))
    assert {k.split(".lora_")[0] for k in adapter_state(model)} == {"head"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objective": "npo"}, "objective must be one of"),
        ({"r": 0}, "r must be >= 1"),
        ({"lora_alpha": 0}, "lora_alpha must be >= 1"),
        ({"l1": -1.0}, "l1 must be >= 0"),
        ({"beta": 2.0}, r"beta must be in \[0, 1\]"),
        ({"target": " , "}, "target must be"),
    ],
)
def test_config_checks(overrides, message):
    with pytest.raises(ConfigError, match=message):
        UNLEARNERS.create("lora", **overrides)


def test_bad_targets_and_adapted_inputs_fail_before_any_work():
    model, data = setup_of("classifier")
    with pytest.raises(ConfigError, match="match no"):
        UNLEARNERS.create("lora", target="decoder.*", progress=False).unlearn(model, data)
    with pytest.raises(ConfigError, match="already carries LoRA adapters"):
        UNLEARNERS.create("lora", progress=False).unlearn(adapted(model), data)


def test_grad_ascent_needs_no_retain_set_and_targets_only_the_head():
    model, data = setup_of("classifier")
    empty = UnlearnData(data.unlearn, data.unlearn.take(torch.tensor([], dtype=torch.long)))
    with pytest.raises(DataError, match="lora needs data to keep"):
        UNLEARNERS.create("lora", **METHOD).unlearn(model, empty)
    new = UNLEARNERS.create("lora", **METHOD, objective="grad_ascent", target="head", merge=False).unlearn(model, empty)
    wrapped = {k.split(".lora_")[0] for k in adapter_state(new)}
    assert wrapped == {"encoders.image.proj", "encoders.audio.proj", "head"}


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_seed_gives_the_same_adapter_and_another_seed_another(kind):
    model, data = setup_of(kind)
    runs = [UNLEARNERS.create("lora", **METHOD, merge=False, seed=s).unlearn(model, data) for s in (0, 0, 1)]
    assert states_equal(adapter_state(runs[0]), adapter_state(runs[1]))
    assert not states_equal(adapter_state(runs[0]), adapter_state(runs[2]))


# -- resume -----------------------------------------------------------------------------------------------------


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("merge", [True, False])
def test_an_interrupted_lora_run_resumes_to_the_same_weights(tmp_path, monkeypatch, merge):
    """The work folder holds the adapted model's state_dict; a resumed run re-injects (same seed) and loads it."""
    model, data = setup_of("classifier")
    config = {**METHOD, "epochs": 4, "merge": merge}
    straight = UNLEARNERS.create("lora", **config).unlearn(model, data)
    calls, real = {"n": 0}, B.optimizer_step

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # mid-run: 12 samples to forget at batch 8 are one step per epoch
            raise Interrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(B, "optimizer_step", interrupted)
    with pytest.raises(Interrupt):
        UNLEARNERS.create("lora", **config).unlearn(model, data, work_dir=tmp_path)
    monkeypatch.setattr(B, "optimizer_step", real)
    assert json.loads((tmp_path / "manifest.json").read_text())["progress"] == 2
    resumed = UNLEARNERS.create("lora", **config).unlearn(model, data, work_dir=tmp_path)
    assert states_equal(resumed.state_dict(), straight.state_dict())
    finished = UNLEARNERS.create("lora", **config).unlearn(model, data, work_dir=tmp_path)  # nothing left to do
    assert states_equal(finished.state_dict(), straight.state_dict())
