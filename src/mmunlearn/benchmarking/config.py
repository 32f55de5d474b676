"""Bench configs: a YAML file of grids, parsed into frozen dataclasses and checked before any work starts.

```yaml
name: quick                    # names the default store: runs/bench/<name>/results.jsonl
grids:
  - scenario: unlearn          # scenario A: forget the images of a request in an audio-visual classifier
    dataset: av-digits
    size: small
    seeds: [0, 1]
    requests: [random, random@0.05, class]   # random (a share `fraction` of the training samples, default 10%)
                               # | random@F (a share F) | identity (the images of two fonts) | class (one class's images)
    methods: [ccu, finetune]   # retrain and the original are always run (once per dataset, seed, request)
    variants: {"ccu -a": {method: ccu, use_a: false}}   # extra rows: a method with other settings
    overrides: {finetune: {epochs: 1}}                   # config fields per method
    train: {epochs: 5}         # the original's (and retrain's) recipe fields
    metrics: [acc_fused, acc_image, mia_svc]             # kept in the records (default: all)
    tune: {trials: 12, methods: [finetune], request: random, seed: 100}   # extra rows "finetune (tuned)"
  - scenario: protect          # scenario B: protect caption pairs, train victims on them
    dataset: shapes-captions
    size: small
    seeds: [0]
    protectors: [clean, random_noise, mem]
    overrides: {mem: {outer_iters: 2}}
    variants: {"mem grouped": {protector: mem, groups: 10}}     # extra rows: a protector with other settings
    victims: [{}, {image_encoder: resnet}, {defence: jpeg10}]   # VictimConfig fields
    victim_epochs: 4
  - scenario: unlearn          # a dataset on disk: its path (relative to this file's folder) and its layout
    dataset: data/flickr8k
    layout: karpathy           # no size (docs/data-layouts.md, "In a bench grid")
    requests: [random, concept]
    concepts: [a dog, the beach]        # a concept request on disk: the seed picks concepts[seed % 2]
    layout_options: {image_size: 64}   # LayoutOptions fields but seed (default: the layout defaults)
    methods: [finetune]
```

Every name (scenario, dataset, method, protector, metric, config field) is checked against the
registries; an unknown one is a `ConfigError` that lists the known ones.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..configs import make_config
from ..data import DATASETS, LAYOUTS
from ..data.builder import SIZES
from ..data.concepts import normalise_phrase
from ..data.layouts import LayoutOptions
from ..errors import ConfigError, DataError
from ..models.protocols import KINDS, CaptionerModel, Classifier, DualEncoderModel
from ..outputs import read_text_file
from ..protectors import PROTECTORS
from ..recipes import MODEL_RECIPES, RECIPES, Recipe, recipe_for, recipe_for_layout
from ..records.aggregate import TUNED
from ..records.scenarios import (
    CAPTIONER_METRICS,
    SCENARIO_A_METRICS,
    SCENARIO_C_METRICS,
    VICTIM_METRICS,
    ZERO_SHOT_METRICS,
)
from ..train import TrainConfig
from ..unlearn import UNLEARNERS, retrain_config
from ..victim import VictimConfig
from .grid_data import (
    LAYOUT_SIZE,
    LayoutProbe,
    data_identity,
    data_key,
    data_label,
    grid_recipe,
    modalities,
    resolve_path,
)
from .requests import canonical_request, request_fraction, request_kind
from .search_spaces import as_json, check_space, config_defaults, space_for

REQUESTS = ("random", "identity", "class", "concept", "group")
"""Request kinds: ``random`` on any dataset (``random@F``: of its own share ``F``, see `requests.request_kind`),
``identity`` (two fonts; on disk one identity) and ``class`` (the images of the seed's class) on audio-visual
data, ``concept`` and ``group`` on image-caption data (a concept's pairs; an emoji's group)."""
CAPTION_REQUESTS = ("random", "concept", "group")
CLASSIFIER_REQUESTS = ("random", "identity", "class")
LAYOUT_REQUESTS = ("random", "identity", "class", "concept")
"""Request kinds on a dataset on disk: ``identity`` on an audio-visual layout with a group column (one of its
identities), ``class`` on an audio-visual layout (its labels), ``concept`` on an image-caption layout with the
grid's ``concepts`` (phrases: a layout has no built-in concept space); ``group`` needs emoji-captions' groups,
which no layout has."""
OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(LayoutOptions) if f.name != "seed")
"""The `LayoutOptions` a grid's ``layout_options`` may set (the bench loads every dataset with data seed 0)."""
TUNING_PROTOCOL_VERSION = 1
"""Bumped when the tuning protocol (objective, data it sees) changes: the studies and tuned cells are redone."""


@dataclass(frozen=True)
class TuneSpec:
    """The tuning protocol of a grid (see docs/tuning.md): every listed method gets a second row, run with the
    configuration an Optuna study chose on a validation request.

    Attributes:
        trials: trials of every method's study (the same budget for every method).
        methods: the methods tuned (each must have a search space, `search_spaces.SEARCH_SPACES`).
        request: the kind of the validation request (one of the grid's usable kinds; ``random@F`` draws a
            share ``F``, plain ``random`` the grid's ``fraction``).
        seed: the validation request's seed (also the seed of the method in every trial and of the sampler);
            it must not be one of the grid's seeds.
    """

    trials: int = 12
    methods: tuple[str, ...] = ()
    request: str = "random"
    seed: int = 100


@dataclass(frozen=True)
class UnlearnGrid:
    """Scenario A (an audio-visual classifier forgets images) or C (a dual encoder forgets image-caption
    pairs): every method x seed x request on one dataset, next to the original and retrain.

    Attributes:
        dataset: a built-in dataset with a training recipe (audio-visual: scenario A; image-caption: C), or
            with ``layout`` the absolute path of a dataset on disk (the recipe of its kind: `recipe_for_layout`).
        size: ``"small"`` or ``"full"``; ``"full"`` with ``layout`` (a dataset on disk has one size).
        seeds: seeds of the original model, the request and every method.
        requests: ``"random"`` (a seeded share ``fraction`` of the training samples), ``"random@F"`` (a
            seeded share ``F``, in (0, 1); stored as `requests.canonical_request` spells it), ``"identity"``
            (two fonts, audio-visual data; on disk one identity of the layout's group column), ``"class"``
            (the images of class ``seed % num_classes``, audio-visual data), ``"concept"`` (the pairs naming
            one concept; on disk one of ``concepts``) or ``"group"`` (the pairs of one emoji group), the last
            two on image-caption data. Each name is its own request: its own cells, keys and report table.
        methods: `UNLEARNERS` keys (``retrain`` is always run; listing it changes nothing).
        variants: extra rows, label -> ``{"method": key, **config fields}`` (e.g. an ablation).
        overrides: config fields per method key.
        train: recipe fields of the original (and of retrain, which must train the same way).
        metrics: metric names kept in the records (empty: every scenario-A metric).
        fraction: share of the training samples in a plain ``random`` request (``random@F`` has its own).
        model: another model the dataset has a recipe for (``"captioner"`` on the caption sets: a generative
            captioner forgets a concept); None: the dataset's own model.
        tune: the tuning protocol; None: no tuned rows.
        layout: a `LAYOUTS` name: ``dataset`` is a path in that layout; None: a built-in dataset.
        probe: the dataset on disk's kind, video and source fingerprint, taken when the grid was read (None:
            taken when a key needs it).
        concepts: with ``layout``, the phrases a ``concept`` request forgets (the pairs whose caption names
            the phrase on word boundaries; the seed picks ``concepts[seed % len(concepts)]``, as a built-in
            set's seed picks among its most frequent concepts); required by a concept request on disk.
        layout_options: with ``layout``, `LayoutOptions` fields but ``seed`` (``image_size``, ``frames``,
            ``clip_seconds``, ``skip_bad``) the data is decoded with; empty: the layout defaults. They are
            part of the data's identity (cell keys, originals).
    """

    dataset: str = "av-digits"
    size: str = "small"
    seeds: tuple[int, ...] = (0,)
    requests: tuple[str, ...] = ("random",)
    methods: tuple[str, ...] = ("ccu",)
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    fraction: float = 0.1
    model: str | None = None
    tune: TuneSpec | None = None
    layout: str | None = None
    probe: LayoutProbe | None = None
    concepts: tuple[str, ...] = ()
    layout_options: Mapping[str, Any] = field(default_factory=dict)

    scenario = "unlearn"

    def rows(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Row label -> (method key, config overrides), retrain first, each tuned row after its default row
        (a tuned row's overrides are those it starts from, not the tuned values)."""
        tuned = self.tune.methods if self.tune is not None else ()
        rows = {"retrain": ("retrain", dict(self.overrides.get("retrain", {})))}
        for m in self.methods:
            if m != "retrain":
                rows[m] = (m, dict(self.overrides.get(m, {})))
            if m in tuned:
                rows[m + TUNED] = (m, dict(self.overrides.get(m, {})))
        for label, spec in self.variants.items():
            rest = {k: v for k, v in spec.items() if k != "method"}
            rows[label] = (str(spec["method"]), {**self.overrides.get(str(spec["method"]), {}), **rest})
        rows.update({m + TUNED: (m, dict(self.overrides.get(m, {}))) for m in tuned if m not in self.methods})
        return rows

    def tuned_method(self, label: str) -> str | None:
        """The method a tuned row tunes (None for any other row)."""
        if self.tune is None or not label.endswith(TUNED):
            return None
        method = label.removesuffix(TUNED)
        return method if method in self.tune.methods else None

    def tuning_space(self, method: str) -> dict[str, tuple[Any, ...]]:
        """The space a tuned row searches: the method's declared space less the fields the grid's
        ``overrides`` fix (an override holds a field at its value)."""
        fixed = self.overrides.get(method, {})
        return {k: v for k, v in space_for(method).items() if k not in fixed}

    def tuning_protocol(self, method: str) -> dict[str, Any]:
        """Everything that decides a tuned row's study, and nothing of its result: the search space, the
        budget, the validation request and the requests it must avoid, the sampler seed, the original it
        runs on, the fields held fixed and retrain's. It names the study and enters the tuned cells' keys."""
        assert self.tune is not None
        recipe = grid_recipe(self, self.model)
        data = [self.dataset, self.size] if self.layout is None else [data_key(self)]  # no absolute path
        return {
            "version": TUNING_PROTOCOL_VERSION,
            "data": [*data, data_identity(self)],
            "model": [recipe.model, dict(recipe.model_config)],
            "train": self.train_config().replace(seed=self.seeds[0]).identity(),
            "method": method,
            "space": as_json(self.tuning_space(method)),
            "fixed": dict(self.overrides.get(method, {})),
            "retrain": dict(self.overrides.get("retrain", {})),
            "trials": self.tune.trials,
            "request": {
                "kind": self.tune.request,
                "seed": self.tune.seed,
                "fraction": request_fraction(self.tune.request, self.fraction),
            },
            "avoid": {"requests": list(self.requests), "seeds": list(self.seeds)},
            "sampler": {"name": "tpe", "seed": self.tune.seed},
            "original_seed": self.seeds[0],
        }

    def train_config(self) -> TrainConfig:
        """The original's training recipe: the dataset's, with the grid's ``train`` fields."""
        return grid_recipe(self, self.model).train.replace(**self.train)

    @property
    def title(self) -> str:
        """The dataset (``flickr8k [karpathy]`` on disk), and the model where it is not the dataset's own
        (e.g. ``shapes-captions captioner``)."""
        return data_label(self) if self.model is None else f"{data_label(self)} {self.model}"

    def method_config(self, label: str, seed: int) -> tuple[str, dict[str, Any]]:
        """A row's method key and the config fields it runs with (retrain trains like the original)."""
        method, fields = self.rows()[label]
        if method == "retrain":
            return method, retrain_config(self.train_config().replace(seed=seed), **fields)
        return method, {"seed": seed, **fields}


@dataclass(frozen=True)
class ProtectGrid:
    """Scenario B: every protector x seed on one caption dataset, each protection met by every victim.

    Attributes:
        dataset: a built-in image-caption dataset, or with ``layout`` the absolute path of one on disk.
        size: ``"small"`` or ``"full"``; ``"full"`` with ``layout``.
        seeds: protector seeds (each victim trains with seed + 1, never the surrogate's seed).
        protectors: `PROTECTORS` keys (``clean`` is the reference; it is added when missing).
        overrides: config fields per protector key.
        variants: extra rows, label -> ``{"protector": key, **config fields}`` (e.g. grouped MEM:
            ``{"mem grouped": {protector: mem, groups: 10}}``).
        victims: `VictimConfig` fields of each victim (``{}``: the recipe's cnn, no defence).
        victim_epochs: victim training epochs (None: the dataset recipe's).
        metrics: metric names kept in the records (empty: every retrieval metric).
        layout: a `LAYOUTS` name of an image-caption layout: ``dataset`` is a path; None: a built-in dataset.
        probe: the dataset on disk's kind, video and source fingerprint, taken when the grid was read.
    """

    dataset: str = "shapes-captions"
    size: str = "small"
    seeds: tuple[int, ...] = (0,)
    protectors: tuple[str, ...] = ("clean",)
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    victims: tuple[Mapping[str, Any], ...] = ({},)
    victim_epochs: int | None = None
    metrics: tuple[str, ...] = ()
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layout: str | None = None
    probe: LayoutProbe | None = None

    scenario = "protect"

    @property
    def title(self) -> str:
        """The dataset in titles and records (``flickr8k [karpathy]`` on disk)."""
        return data_label(self)

    def rows(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Row label -> (protector key, config fields): ``clean`` first, the protectors, then the variants."""
        rows = {p: (p, dict(self.overrides.get(p, {}))) for p in ("clean", *self.protectors)}
        for label, spec in self.variants.items():
            key = str(spec["protector"])
            rows[label] = (key, {**self.overrides.get(key, {}), **{k: v for k, v in spec.items() if k != "protector"}})
        return rows

    def all_protectors(self) -> tuple[str, ...]:
        """The row labels, ``clean`` first (protector keys, then variant labels)."""
        return tuple(self.rows())

    def protector_key(self, label: str) -> str:
        """The `PROTECTORS` key of a row."""
        return self.rows()[label][0]

    def protector_config(self, label: str, seed: int) -> dict[str, Any]:
        """The config fields a row's protector runs with."""
        return {**self.rows()[label][1], "seed": seed}

    def victim_config(self, victim: Mapping[str, Any], seed: int) -> VictimConfig:
        """The victim of a protection made with ``seed``: trained with ``seed + 1``."""
        return VictimConfig(seed=seed + 1, epochs=self.victim_epochs, progress=False, **victim)


Grid = UnlearnGrid | ProtectGrid


@dataclass(frozen=True)
class BenchConfig:
    """A named list of grids.

    Attributes:
        name: names the default results store and work folder.
        grids: the grids, run in order.
        source: the YAML file it was read from (None when built in code).
    """

    name: str
    grids: tuple[Grid, ...]
    source: str | None = None


# -- parsing -------------------------------------------------------------------------------------------
def _check_keys(what: str, given: Mapping[str, Any], known: list[str]) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {what}; known keys: {', '.join(sorted(known))}")


def _check_names(what: str, given: tuple[str, ...] | list[str], known: list[str] | tuple[str, ...]) -> None:
    unknown = [g for g in given if g not in known]
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; known {what}: {', '.join(known)}")


def _tuple(value: Any, what: str, kind: type) -> tuple[Any, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    bad = [v for v in items if not isinstance(v, kind) or isinstance(v, bool)]
    if bad or not items:
        raise ConfigError(f"{what} must be a non-empty list of {kind.__name__}s, got {value!r}")
    return tuple(items)


def _seeds(value: Any) -> tuple[int, ...]:
    seeds = _tuple(value, "seeds", int)
    negative = [s for s in seeds if s < 0]
    if negative:
        raise ConfigError(f"seeds must be integers >= 0, got {negative[0]!r} in {list(seeds)}")
    return seeds


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _modalities(dataset: str) -> tuple[str, ...]:
    return tuple(getattr(DATASETS.get(dataset), "modalities", ()))


def _dataset(name: Any, needs: str, scenario: str) -> str:
    _check_names("datasets", [str(name)], DATASETS.names())
    if needs not in _modalities(str(name)):
        usable = [d for d in DATASETS.names() if needs in _modalities(d)]
        raise ConfigError(
            f"dataset {name!r} has no {needs} modality, so scenario {scenario!r} cannot use it; use {usable}"
        )
    return str(name)


def _size(value: Any) -> str:
    if value not in SIZES:
        raise ConfigError(f"size must be one of {list(SIZES)}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class _OnDisk:
    """A grid's dataset on disk, checked: its absolute path, layout and probe."""

    path: str
    layout: str
    probe: LayoutProbe


def _on_disk(
    raw: Mapping[str, Any], base: Path | None, phrases: tuple[str, ...] = (), identities: bool = False
) -> _OnDisk | None:
    """The grid's ``dataset`` path and ``layout`` (None without ``layout``: a built-in dataset); its probe
    counts the training pairs naming each of ``phrases`` and, with ``identities``, lists the identities.

    Raises:
        ConfigError: an unknown layout, ``size`` given with a layout (a dataset on disk has one size), no
            ``dataset``, a path that does not exist, or annotations the layout cannot read.
    """
    if raw.get("layout") is None:
        return None
    layout = str(raw["layout"])
    _check_names("layouts", [layout], LAYOUTS.names())
    if "size" in raw:
        raise ConfigError(
            f"size has no meaning with layout {layout!r} (a dataset on disk is loaded whole); remove 'size'"
        )
    if raw.get("dataset") is None:
        raise ConfigError(f"layout {layout!r} needs 'dataset': the path of the dataset on disk")
    path = resolve_path(str(raw["dataset"]), base, layout)
    try:
        probe = LayoutProbe.of(path, layout, phrases, identities)
    except DataError as e:
        raise ConfigError(f"dataset {path} cannot be read as {layout}: {e}") from e
    return _OnDisk(path, layout, probe)


def _layout_requests(requests: tuple[str, ...], disk: _OnDisk, concepts: tuple[str, ...]) -> None:
    """Every request kind can run on the dataset on disk: `LAYOUT_REQUESTS` only; ``identity`` on
    audio-visual data with at least two training identities; ``concept`` on caption data with ``concepts``,
    each naming some but not every training pair."""
    bad = [r for r in requests if r not in LAYOUT_REQUESTS]
    if bad:
        raise ConfigError(
            f"request kind(s) {bad} cannot run on a dataset on disk ({disk.layout}): group needs emoji-captions' "
            f"groups; usable: {list(LAYOUT_REQUESTS)}"
        )
    probe = disk.probe
    if "identity" in requests and len(probe.identities) < 2:
        raise ConfigError(
            f"request kind(s) ['identity'] cannot run on a dataset on disk ({disk.layout}) without a group column "
            f"(speaker, actor) giving at least two identities to its training split; found {list(probe.identities)}"
        )
    if "concept" in requests:
        if probe.kind != "image-caption" or not concepts:
            raise ConfigError(
                f"request kind(s) ['concept'] cannot run on a dataset on disk ({disk.layout}) without captions and "
                "the grid's 'concepts': the phrases to forget (e.g. concepts: [a dog, the beach])"
            )
        for phrase, count in zip(concepts, probe.phrase_pairs, strict=True):
            if count in (0, probe.train_pairs):
                what = "no" if count == 0 else "every"
                raise ConfigError(
                    f"concept {phrase!r} names {what} training pair of {disk.path} ({probe.train_pairs} pairs): "
                    "a concept request must forget some pairs and keep the rest"
                )
    elif concepts:
        raise ConfigError("'concepts' is given but the grid has no concept request: add 'concept' to 'requests'")


def _concepts(raw: Mapping[str, Any], layout: bool) -> tuple[str, ...]:
    """The grid's ``concepts``: non-blank distinct phrases (lower-cased, spaces collapsed), only with a layout."""
    if raw.get("concepts") is None:
        return ()
    if not layout:
        raise ConfigError("'concepts' is for a dataset on disk (with 'layout'); a built-in caption set picks "
                          "among its own most frequent concepts")  # fmt: skip
    phrases = tuple(normalise_phrase(p) for p in _tuple(raw["concepts"], "concepts", str))
    if not all(phrases) or len(set(phrases)) != len(phrases):
        raise ConfigError(f"concepts must be distinct non-blank phrases, got {list(raw['concepts'])}")
    return phrases


def _layout_options(raw: Mapping[str, Any], layout: bool) -> dict[str, Any]:
    """The grid's ``layout_options``: `OPTION_FIELDS` keys, positive ``image_size``/``frames`` (integers),
    positive ``clip_seconds``, boolean ``skip_bad``; only with a layout."""
    given = _mapping(raw.get("layout_options"), "layout_options")
    if given and not layout:
        raise ConfigError("'layout_options' is for a dataset on disk (with 'layout'); built-in sets have none")
    _check_keys("layout_options", given, list(OPTION_FIELDS))
    for key in ("image_size", "frames"):
        v = given.get(key, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"layout_options.{key} must be an integer >= 1, got {v!r}")
    seconds = given.get("clip_seconds", 1.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ConfigError(f"layout_options.clip_seconds must be a positive number, got {seconds!r}")
    if not isinstance(given.get("skip_bad", False), bool):
        raise ConfigError(f"layout_options.skip_bad must be true or false, got {given['skip_bad']!r}")
    return {k: float(v) if k == "clip_seconds" else v for k, v in given.items()}


def _check_method_config(grid: UnlearnGrid, label: str) -> None:
    """Build a row's config now (type- and range-checked), and check that the method can edit the dataset's
    model kind, so that a bad row fails before hours of work."""
    try:
        key, fields = grid.method_config(label, grid.seeds[0])
        method = UNLEARNERS.create(key, **fields)
    except ConfigError as e:
        raise ConfigError(f"row {label!r}: {e}") from e
    kind = model_kind(grid)
    if kind not in method.requires:
        usable = [n for n in UNLEARNERS.names() if kind in getattr(UNLEARNERS.get(n), "requires", ())]
        raise ConfigError(
            f"row {label!r}: {key} cannot edit the {KINDS[kind]} of {grid.dataset}; methods that can: {usable}"
        )


def model_kind(grid: UnlearnGrid) -> type:
    """The protocol of the grid's model: a captioner, a dual encoder (caption sets) or a classifier."""
    if grid.model == "captioner":
        return CaptionerModel
    return DualEncoderModel if "text" in modalities(grid) else Classifier


def _check_protector_config(key: str, fields: Mapping[str, Any]) -> None:
    """Build a protector's config now (type- and range-checked)."""
    try:
        PROTECTORS.create(key, **fields)
    except ConfigError as e:
        raise ConfigError(f"overrides.{key}: {e}") from e


GRID_DECIDES = ("seed", "epochs", "progress")
"""`VictimConfig` fields a grid sets itself (seed + 1, ``victim_epochs``, no bar), not a victim mapping."""


def _check_victim(fields: Mapping[str, Any]) -> None:
    """A victim's `VictimConfig` fields, type- and range-checked."""
    _check_keys("a victim", fields, [f.name for f in dataclasses.fields(VictimConfig) if f.name not in GRID_DECIDES])
    try:
        make_config(VictimConfig, dict(fields))
    except ConfigError as e:
        raise ConfigError(f"victim {dict(fields)}: {e}") from e


def _rows_metrics_overrides(
    raw: dict[str, Any], what: str, known: list[str], default: str, metric_names: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, dict[str, Any]]]:
    """A grid's row names (``methods`` or ``protectors``), kept metrics and per-row overrides, checked."""
    names = _tuple(raw.get(what, [default]), what, str)
    _check_names(what, names, known)
    metrics = _tuple(raw["metrics"], "metrics", str) if "metrics" in raw else ()
    _check_names("metrics", metrics, metric_names)
    overrides = {k: _mapping(v, f"overrides.{k}") for k, v in _mapping(raw.get("overrides"), "overrides").items()}
    _check_names(what, list(overrides), known)
    return names, metrics, overrides


def _unlearn_grid(raw: dict[str, Any], base: Path | None = None) -> UnlearnGrid:
    known = [f.name for f in dataclasses.fields(UnlearnGrid) if f.name != "probe"]
    _check_keys("an unlearn grid", raw, [*known, "scenario"])
    concepts = _concepts(raw, raw.get("layout") is not None)
    options = _layout_options(raw, raw.get("layout") is not None)
    requests = _requests(raw.get("requests", ["random"]))
    disk = _on_disk(raw, base, concepts, "identity" in requests)
    if disk is None:
        dataset = str(raw.get("dataset", "av-digits"))
        _check_names("datasets", [dataset], [d for d in DATASETS.names() if d in RECIPES])
        captions = "text" in _modalities(dataset)
    else:
        dataset, captions = disk.path, disk.probe.kind == "image-caption"
    model = raw.get("model")
    if model is not None:
        _check_names("models", [str(model)], list(MODEL_RECIPES))
    recipe = _recipe(dataset, disk, None if model is None else str(model))
    metric_names = CAPTIONER_METRICS if model else SCENARIO_C_METRICS if captions else SCENARIO_A_METRICS
    methods, metrics, overrides = _rows_metrics_overrides(raw, "methods", UNLEARNERS.names(), "ccu", metric_names)
    kinds = tuple(dict.fromkeys(request_kind(r)[0] for r in requests))
    _check_names("requests", kinds, REQUESTS)
    usable: tuple[str, ...] = CAPTION_REQUESTS if captions else CLASSIFIER_REQUESTS
    if disk is not None:
        _layout_requests(kinds, disk, concepts)
        usable = tuple(r for r in usable if r in LAYOUT_REQUESTS)
    _check_names(f"requests on {dataset}", kinds, usable)
    variants = {k: _mapping(v, f"variants.{k}") for k, v in _mapping(raw.get("variants"), "variants").items()}
    for label, spec in variants.items():
        if "method" not in spec:
            raise ConfigError(f"variant {label!r} needs a 'method' key (one of {', '.join(UNLEARNERS.names())})")
        _check_names("methods", [str(spec["method"])], UNLEARNERS.names())
    train = _mapping(raw.get("train"), "train")
    _check_keys("train", train, [f.name for f in dataclasses.fields(TrainConfig)])
    try:
        recipe.train.replace(**train)
    except ConfigError as e:
        raise ConfigError(f"train: {e}") from e
    fraction = raw.get("fraction", 0.1)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise ConfigError(f"fraction must be a number in (0, 1), got {fraction!r}")
    bad = [label for label in variants if label.endswith(TUNED)]
    if bad:
        raise ConfigError(f"variant labels must not end with {TUNED.strip()!r} (the tuned rows' mark): {bad}")
    seeds = _seeds(raw.get("seeds", [0]))
    tune = _tune(raw.get("tune"), methods, requests, usable, seeds)
    if tune is not None and concepts:
        raise ConfigError("tune: a tuned row cannot yet run beside a concept request on a dataset on disk (the "
                          "tuning's requests do not see the grid's 'concepts'); tune another grid")  # fmt: skip
    size = _size(raw.get("size", "small")) if disk is None else LAYOUT_SIZE
    grid = UnlearnGrid(
        dataset, size, seeds, requests, methods, variants, overrides, train, metrics, fraction,
        None if model is None else str(model), tune, disk.layout if disk else None, disk.probe if disk else None,
        concepts, options,
    )  # fmt: skip
    for method in tune.methods if tune is not None else ():
        if not grid.tuning_space(method):
            raise ConfigError(f"tune: overrides.{method} fixes every field of its search space: nothing to tune")
    for label in grid.rows():
        _check_method_config(grid, label)
    return grid


def _requests(value: Any) -> tuple[str, ...]:
    """The grid's request names, each spelled once (`canonical_request`): a malformed ``random@F`` or a
    request named twice (``random@0.05`` and ``random@5e-2``) is a `ConfigError`."""
    names = tuple(canonical_request(r) for r in _tuple(value, "requests", str))
    twice = sorted({r for r in names if names.count(r) > 1})
    if twice:
        raise ConfigError(f"requests name {twice} twice (after spelling each share one way); list each once")
    return names


def _recipe(dataset: str, disk: _OnDisk | None, model: str | None) -> Recipe:
    """The grid's recipe (a `ConfigError` names the datasets with a recipe of ``model``)."""
    if disk is None:
        return recipe_for(dataset, model)
    return recipe_for_layout(disk.layout, model, disk.probe.video)


def _tune(
    raw: Any, methods: tuple[str, ...], requests: tuple[str, ...], usable: tuple[str, ...], seeds: tuple[int, ...]
) -> TuneSpec | None:
    """The grid's ``tune`` mapping, checked (None when absent): unknown keys, ``trials >= 1``, methods known
    and with a search space whose names are fields of their config, a usable request kind (default: the
    grid's first) and a seed that is not one of the grid's seeds."""
    if raw is None:
        return None
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("tune: tuning needs Optuna, which is not installed: pip install 'mmunlearn[tune]'")
    spec = _mapping(raw, "tune")
    _check_keys("tune", spec, [f.name for f in dataclasses.fields(TuneSpec)])
    trials = spec.get("trials", TuneSpec.trials)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"tune.trials must be an integer >= 1, got {trials!r}")
    default = [m for m in methods if m != "retrain"]
    tuned = _tuple(spec.get("methods", default), "tune.methods", str)
    _check_names("methods", tuned, UNLEARNERS.names())
    for method in tuned:
        try:
            check_space(space_for(method), config_defaults(UNLEARNERS.get(method).Config))  # type: ignore[attr-defined]
        except ConfigError as e:
            raise ConfigError(f"tune.methods: {e}") from e
    request = canonical_request(str(spec.get("request", requests[0])))
    _check_names("tune.request kinds", [request_kind(request)[0]], usable)
    seed = spec.get("seed", TuneSpec.seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or seed in seeds:
        raise ConfigError(f"tune.seed must be an integer >= 0 other than the grid's seeds {list(seeds)}, got {seed!r}")
    return TuneSpec(trials, tuned, request, seed)


def _protect_grid(raw: dict[str, Any], base: Path | None = None) -> ProtectGrid:
    known = [f.name for f in dataclasses.fields(ProtectGrid) if f.name != "probe"]
    _check_keys("a protect grid", raw, [*known, "scenario"])
    disk = _on_disk(raw, base)
    if disk is None:
        dataset = _dataset(raw.get("dataset", "shapes-captions"), "text", "protect")
    elif disk.probe.kind != "image-caption":
        caption_layouts = [n for n in LAYOUTS.names() if LAYOUTS.create(n).kind == "image-caption"]
        raise ConfigError(
            f"layout {disk.layout!r} holds no captions, so scenario 'protect' cannot use it; use {caption_layouts}"
        )
    else:
        dataset = disk.path
    protectors, metrics, overrides = _rows_metrics_overrides(
        raw, "protectors", PROTECTORS.names(), "clean", (*VICTIM_METRICS, *ZERO_SHOT_METRICS)
    )
    for key, fields in overrides.items():
        _check_protector_config(key, fields)
    variants = {k: _mapping(v, f"variants.{k}") for k, v in _mapping(raw.get("variants"), "variants").items()}
    for label, spec in variants.items():
        if "protector" not in spec:
            raise ConfigError(f"variant {label!r} needs a 'protector' key (one of {', '.join(PROTECTORS.names())})")
        _check_names("protectors", [str(spec["protector"])], PROTECTORS.names())
        if label in ("clean", *protectors):
            raise ConfigError(f"variant label {label!r} is already a row of the grid; choose another label")
        _check_protector_config(str(spec["protector"]), {k: v for k, v in spec.items() if k != "protector"})
    victims = tuple(_mapping(v, "a victim") for v in raw.get("victims", [{}]) or [{}])
    for v in victims:
        _check_victim(v)
        if disk is not None and v.get("regime") == "finetune" and v.get("pretrain") is None:
            raise ConfigError(f"victim {v}: a finetune victim of a dataset on disk needs 'pretrain' (a built-in "
                              "caption set to pretrain on: it has no default one)")  # fmt: skip
    epochs = raw.get("victim_epochs")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"victim_epochs must be a positive integer or null, got {epochs!r}")
    size = _size(raw.get("size", "small")) if disk is None else LAYOUT_SIZE
    return ProtectGrid(
        dataset, size, _seeds(raw.get("seeds", [0])), protectors, overrides, victims, epochs, metrics, variants,
        disk.layout if disk else None, disk.probe if disk else None,
    )  # fmt: skip


SCENARIOS: dict[str, Callable[[dict[str, Any], Path | None], Grid]] = {
    "unlearn": _unlearn_grid,
    "protect": _protect_grid,
}


def parse_config(raw: Any, source: str | None = None) -> BenchConfig:
    """A `BenchConfig` from the parsed YAML document; a grid's relative ``dataset`` path (with ``layout``)
    is relative to the folder of the file ``source`` (None: the working folder).

    Raises:
        ConfigError: anything unknown or ill-typed, naming the key and the known values.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a bench config is a mapping with 'name' and 'grids', got {type(raw).__name__}")
    _check_keys("the bench config", raw, ["name", "grids"])
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"'name' must be a non-empty string without '/', got {name!r}")
    grids = raw.get("grids")
    if not isinstance(grids, list) or not grids:
        raise ConfigError("'grids' must be a non-empty list of grids")
    parsed: list[Grid] = []
    base = Path(source).resolve().parent if source is not None else None
    for i, g in enumerate(grids):
        g = _mapping(g, f"grid {i}")
        scenario = g.get("scenario")
        if scenario not in SCENARIOS:
            raise ConfigError(f"grid {i}: unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIOS)}")
        parsed.append(SCENARIOS[scenario](g, base))
    return BenchConfig(name, tuple(parsed), source)


def load_config(path: str | os.PathLike[str]) -> BenchConfig:
    """Read and check a bench YAML file.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: a folder, a file that is not UTF-8 text, malformed YAML (with the line and column) or
            an invalid config.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"bench config {path} not found")
    text = read_text_file(path, "bench config", ConfigError)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}") from e
    return parse_config(raw, str(path))
