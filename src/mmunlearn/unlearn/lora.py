"""LoRA-constrained unlearning: an unlearning loss trains only low-rank adapters (`peft`), with an L1 penalty
on them (CLEAR's finding), and the adapters are merged into the weights at the end.

The base weights never move: `peft` wraps the targeted Linear / Conv2d layers, every base parameter is frozen
for the run, so the shared loop's optimizer (built from the trainable parameters) holds the adapters alone.
The update of a targeted layer is therefore ``(lora_alpha / r) * B @ A`` of rank at most ``r``, and removing
the adapters gives back the original weights bit for bit.

Besides the method, this module offers the adapter as an object of its own: `adapter_state`, `save_adapter`
(a safetensors file with the LoRA config as metadata), `load_adapter`, `merge_adapter` and `remove_adapter`.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import peft
import torch
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ..train import WorkFolder
from .base import UNLEARNERS, Run, Step, UnlearnConfig, UnlearnData, Unlearner
from .objectives import MODEL_KINDS, task_loss

OBJECTIVES = ("neggrad_plus", "grad_ascent")
HEAD_NAMES = frozenset({"head", "classifier", "proj", "projection", "visual_projection", "text_projection"})
"""Leaf module names that ``target="head"`` adapts: the layers that map features to the output space (a
classifier's head and its encoders' projections, a dual encoder's projections into the joint space)."""
ADAPTER_FORMAT = "mmunlearn-lora/1"
ADAPTER_NAME = "default"
_LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "bias", "use_rslora", "init_lora_weights")
"""The `peft.LoraConfig` fields this module sets, saved with an adapter and used to re-apply it."""


@dataclass(frozen=True)
class LoRAUnlearnConfig(UnlearnConfig):
    """Defaults (see docs/methods/lora.md): NegGrad+ (beta 0.95) on adapters of rank 4 (alpha 8, the
    alpha / r = 2 of ULD's r 16 / alpha 32) on every Linear and Conv2d layer (CLEAR and ULD adapt every
    linear layer), L1 1e-4 on the adapters' A and B entries, lr 1e-3 (ULD's LoRA lr), 5 epochs, merged.

    Attributes:
        objective: ``"neggrad_plus"`` (beta * retain loss - (1 - beta) * forget loss, paired batches) or
            ``"grad_ascent"`` (- forget loss, passes over U alone; the retain set is then not needed).
        beta: NegGrad+'s weight of the retain term.
        target: ``"all"`` (every Linear and Conv2d layer a forward pass calls), ``"head"`` (those of them
            whose own name is one of `HEAD_NAMES`), or module-name glob patterns (a tuple, or one string
            with commas), e.g. ``"encoders.image.*,head"``.
        r: the adapters' rank.
        lora_alpha: the adapters' scale numerator (update = lora_alpha / r * B @ A).
        l1: weight of the sum of |entries| of every adapter matrix (A and B), added to the loss.
        merge: merge the adapters into the weights (the result has the input's class and state_dict
            keys); False keeps them separate (see `remove_adapter`, `save_adapter`).
    """

    epochs: int = 5
    lr: float = 1e-3
    objective: str = "neggrad_plus"
    beta: float = 0.95
    target: str | tuple[str, ...] = "all"
    r: int = 4
    lora_alpha: int = 8
    l1: float = 1e-4
    merge: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {list(OBJECTIVES)}, got {self.objective!r}")
        if not 0 <= self.beta <= 1:
            raise ConfigError(f"beta must be in [0, 1], got {self.beta}")
        if not target_patterns(self.target):
            raise ConfigError(f"target must be 'all', 'head' or module-name patterns, got {self.target!r}")
        if self.r < 1:
            raise ConfigError(f"r must be >= 1, got {self.r}")
        if self.lora_alpha < 1:
            raise ConfigError(f"lora_alpha must be >= 1, got {self.lora_alpha}")
        if not self.l1 >= 0:
            raise ConfigError(f"l1 must be >= 0, got {self.l1}")


# -- which layers get adapters ------------------------------------------------------------------------


def target_patterns(target: str | tuple[str, ...]) -> tuple[str, ...]:
    """The patterns of a ``target`` knob: a tuple as is, a string split at commas (blanks dropped)."""
    items = target.split(",") if isinstance(target, str) else target
    return tuple(p.strip() for p in items if p.strip())


def adaptable_modules(model: nn.Module) -> list[str]:
    """Names of the Linear and Conv2d layers an adapter can wrap, in module order.

    Left out: the ``out_proj`` of an `nn.MultiheadAttention`, whose weight attention reads directly (an
    adapter on it would never be called; its fused ``in_proj_weight`` is no layer at all), and the
    layers inside adapters already present.
    """
    skip: list[str] = []
    out = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{s}.") for s in skip):
            continue
        if isinstance(module, nn.MultiheadAttention | BaseTunerLayer):
            skip.append(name)
        elif isinstance(module, nn.Linear | nn.Conv2d) and name:
            out.append(name)
    return out


def target_modules(model: nn.Module, target: str | tuple[str, ...]) -> list[str]:
    """The layers ``target`` adapts on ``model`` (see `LoRAUnlearnConfig.target`).

    Raises:
        ConfigError: nothing to adapt, or a pattern that matches no adaptable layer (the message lists them).
    """
    names = adaptable_modules(model)
    patterns = target_patterns(target)
    if patterns == ("all",):
        chosen = names
    elif patterns == ("head",):
        chosen = [n for n in names if n.rpartition(".")[2] in HEAD_NAMES]
    else:
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unmatched:
            raise ConfigError(f"lora target pattern(s) {unmatched} match no Linear/Conv2d layer; layers: {names}")
        chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise ConfigError(f"lora target {target!r} selects no Linear/Conv2d layer of the model; layers: {names}")
    return chosen


def exact_names(modules: list[str]) -> str:
    """A regex that peft full-matches against module names: exactly ``modules``, nothing else (a list would
    also match every module whose name merely ends with ``.<name>``)."""
    return "|".join(re.escape(m) for m in modules)


def lora_config(modules: list[str], r: int, lora_alpha: int) -> peft.LoraConfig:
    """The `peft.LoraConfig` of the method: exactly the given layers, dropout 0, no bias, standard init
    (Kaiming-uniform A, zero B: the adapted model starts equal to the base)."""
    return peft.LoraConfig(
        r=r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=exact_names(modules), bias="none", use_rslora=False
    )


def inject(model: nn.Module, config: peft.LoraConfig) -> nn.Module:
    """Wrap ``model``'s target layers with adapters, in place (A is drawn from the global RNG); returns it.

    An adapter inside an `nn.TransformerEncoderLayer` gets a no-op forward pre-hook (`keep_unfused`): in eval
    mode without gradients PyTorch runs that layer through a fused kernel that reads ``linear1.weight`` and
    ``linear2.weight`` directly, which would skip their adapters; a hook on any submodule turns that path off.
    The hook goes away with the wrapper when the adapter is merged or removed.
    """
    peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    for layer in model.modules():
        if isinstance(layer, nn.TransformerEncoderLayer):
            for sub in layer.modules():
                if isinstance(sub, BaseTunerLayer) and isinstance(sub, nn.Module):
                    sub.register_forward_pre_hook(keep_unfused)
    return model


def keep_unfused(module: nn.Module, args: Any) -> None:
    """A forward pre-hook that changes nothing; its presence keeps a Transformer layer off the fused path."""
    return None


# -- the adapter's tensors ----------------------------------------------------------------------------


def is_adapter_key(name: str) -> bool:
    """Whether a parameter / state_dict key belongs to a LoRA adapter (``...lora_A.default.weight``...)."""
    parts = name.split(".")
    return any(part in LoraLayer.adapter_layer_names for part in parts)


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The adapters' parameters of ``model`` by name (empty without adapters)."""
    return {n: p for n, p in model.named_parameters() if is_adapter_key(n)}


def adapter_state(model: nn.Module) -> dict[str, Tensor]:
    """Only the LoRA tensors of ``model``'s state_dict (detached; keys as in the state_dict)."""
    return {k: v.detach() for k, v in model.state_dict().items() if is_adapter_key(k)}


def l1_penalty(model: nn.Module) -> Tensor:
    """Sum of |entries| of every adapter matrix (CLEAR's L1 on the trainable LoRA tensors A and B)."""
    params = list(adapter_parameters(model).values())
    if not params:
        raise ConfigError("the model has no LoRA adapter to penalise")
    return torch.stack([p.abs().sum() for p in params]).sum()


def freeze_base(model: nn.Module) -> None:
    """Make the adapters the only trainable parameters (what the shared loop's optimizer then holds)."""
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter_key(name))


def has_adapter(model: nn.Module) -> bool:
    """Whether any layer of ``model`` is wrapped by an adapter."""
    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


# -- merging, removing, saving, loading -----------------------------------------------------------------


def unwrap(model: nn.Module, merge: bool) -> nn.Module:
    """Replace every adapter-wrapped layer of ``model`` by its base layer, IN PLACE; with ``merge`` the
    adapter's update ``scale * B @ A`` is first added to the base weights (peft's merge). Returns ``model``."""
    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    outer = [(n, m) for n, m in wrapped if not any(n.startswith(f"{o}.") for o, _ in wrapped)]
    for name, layer in outer:
        if merge:
            layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model


def merge_adapter(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with its adapters merged into the weights: the plain class and state_dict keys."""
    return unwrap(copy.deepcopy(model), merge=True)


def remove_adapter(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its adapters: exactly the base model they were added to."""
    return unwrap(copy.deepcopy(model), merge=False)


def saved_lora_config(model: nn.Module) -> peft.LoraConfig:
    """The `peft.LoraConfig` of ``model``'s adapter (peft keeps it on the model as ``peft_config``).

    Raises:
        ConfigError: the model has no adapter.
    """
    configs = getattr(model, "peft_config", None)
    if not has_adapter(model) or not isinstance(configs, dict) or ADAPTER_NAME not in configs:
        raise ConfigError("the model has no LoRA adapter (run lora with merge=False, or load_adapter one)")
    config: peft.LoraConfig = configs[ADAPTER_NAME]
    return config


def config_json(config: peft.LoraConfig) -> str:
    """The fields of a `peft.LoraConfig` that re-apply it (`_LORA_KEYS`), as JSON (a set of target modules
    as a sorted list; this module's own configs hold a regex string)."""
    fields = {k: getattr(config, k) for k in _LORA_KEYS}
    if isinstance(fields["target_modules"], set | list | tuple):
        fields["target_modules"] = sorted(fields["target_modules"])
    return json.dumps(fields, sort_keys=True)


def save_adapter(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s adapter tensors (`adapter_state`) as one safetensors file, with the LoRA config
    as JSON metadata (``lora_config``) and the format tag (``format``)."""
    tensors = {k: v.contiguous().cpu() for k, v in adapter_state(model).items()}
    meta = {"format": ADAPTER_FORMAT, "lora_config": config_json(saved_lora_config(model)), "peft": peft.__version__}
    save_file(tensors, str(path), metadata=meta)


def read_adapter(path: str | os.PathLike[str]) -> tuple[peft.LoraConfig, dict[str, Tensor]]:
    """The LoRA config and tensors of a file written by `save_adapter`.

    Raises:
        CheckpointError: not such a file.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read the adapter file {path}: {e}") from e
    if meta.get("format") != ADAPTER_FORMAT or "lora_config" not in meta:
        raise CheckpointError(f"{path} is not an {ADAPTER_FORMAT} adapter file")
    return peft.LoraConfig(**json.loads(meta["lora_config"])), tensors


def load_adapter(base_model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """A copy of the plain ``base_model`` with the adapter saved at ``path`` re-applied (``base_model`` is
    left untouched).

    Raises:
        CheckpointError: not an adapter file, or one made for another architecture (keys or shapes differ).
    """
    config, tensors = read_adapter(path)
    model = copy.deepcopy(base_model)
    try:
        with torch.random.fork_rng(devices=[]):  # the fresh A draws are overwritten: leave the caller's RNG alone
            inject(model, config)
    except ValueError as e:  # peft: a target module that the model lacks
        raise CheckpointError(f"the adapter {path} does not fit {type(base_model).__name__}: {e}") from e
    expected = adapter_state(model)
    shapes = {k: tuple(v.shape) for k, v in expected.items()}
    if shapes != {k: tuple(v.shape) for k, v in tensors.items()}:
        raise CheckpointError(f"the adapter {path} does not fit {type(base_model).__name__}: its tensors differ")
    device = next(iter(expected.values())).device
    model.load_state_dict({k: v.to(device) for k, v in tensors.items()}, strict=False)
    return model.train(base_model.training)


# -- the method -----------------------------------------------------------------------------------------


@UNLEARNERS.register("lora")
class LoRAUnlearn(Unlearner[LoRAUnlearnConfig, None]):
    """Loss = unlearning objective (NegGrad+ or gradient ascent) + l1 * sum |adapter entries|, trained on
    LoRA adapters only; the adapters are merged at the end (unless ``merge=False``)."""

    name = "lora"
    paper = (
        "Hu et al., LoRA (ICLR 2022) as the constraint; CLEAR (Dontsov et al., arXiv 2410.18057) L1 on the "
        "LoRA adapters; objective: NegGrad+ (Kurmanji et al., NeurIPS 2023)"
    )
    stage = "architecture-constrained"
    requires = MODEL_KINDS
    Config = LoRAUnlearnConfig

    def phases_of(self, epoch: int) -> tuple[str, ...]:
        """NegGrad+ pairs each forget batch with a retain batch; gradient ascent passes over U alone."""
        return ("paired",) if self.config.objective == "neggrad_plus" else ("unlearn",)

    def validate(self, model: Any, data: UnlearnData) -> type:
        """The base checks (the retain set only for NegGrad+), then the target layers, before any work."""
        if self.config.objective == "grad_ascent":  # never reads the gold-standard set
            data = dataclasses.replace(data, gold_standard=data.unlearn)
        kind = super().validate(model, data)
        if has_adapter(model):
            raise ConfigError("lora: the model already carries LoRA adapters; merge_adapter or remove_adapter first")
        target_modules(model, self.config.target)
        return kind

    def run(self, model: nn.Module, run: Run[None], work: WorkFolder | None = None) -> None:
        """Inject the adapters (inside the seeded region: A's draws are the seed's), freeze the base, run
        the shared loop (a work folder saves and resumes the adapted model's state_dict), then merge."""
        c = self.config
        inject(model, lora_config(target_modules(model, c.target), c.r, c.lora_alpha))
        freeze_base(model)
        super().run(model, run, work)
        model.requires_grad_(True)
        if c.merge:
            unwrap(model, merge=True)

    def loss(self, model: Any, run: Run[None], step: Step) -> Tensor:
        assert step.unlearn is not None
        forget = task_loss(model, run, step.unlearn)
        if self.config.objective == "grad_ascent":
            objective = -forget
        else:
            assert step.retain is not None
            beta = self.config.beta
            objective = beta * model.loss(step.retain) - (1 - beta) * forget
        if self.config.l1 == 0:
            return objective
        return objective + self.config.l1 * l1_penalty(model)
