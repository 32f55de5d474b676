"""The bench's tuning protocol (docs/tuning.md): one Optuna study per (dataset, size, model, method, protocol).

A study searches the method's declared space (`search_spaces`) on a **validation request**: a request of the
grid's ``tune.request`` kind, drawn with ``tune.seed``, disjoint from every evaluation request of the grid's
seeds where the kind allows it. Each trial runs the method (`run_request`) on the original of the grid's first
seed and is scored by `gap_to_retrain` against a model retrained without the validation request (computed
once per study, kept in the study). The evaluation test split is never read: the trial's metrics take the
validation split's two halves as their validation and test data. The first trial is the row's default
configuration; the others are drawn by a TPE sampler seeded per trial, so a study resumed after a kill draws
what an uninterrupted one would have drawn from the same history.

The study lives in its own SQLite file under the bench's work folder (``work/tuning/<study>.sqlite3``): a
killed tuning started again keeps its finished trials, marks the one that was running as failed (and redoes
it), and reruns nothing else. A lock file keeps two processes off one study.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import random
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import DatasetSplits, ForgetRequest
from ..data.core import MultimodalDataset
from ..errors import ConfigError, DivergenceError
from ..fileio import canonical_json
from ..pipeline import run_request
from ..records.scenarios import gap_to_retrain
from ..results import MetricResult
from ..unlearn import UNLEARNERS
from .config import UnlearnGrid
from .grid_data import data_slug
from .requests import exclusive, request_for, request_kind
from .search_spaces import Space, config_defaults, suggest

log = logging.getLogger(__name__)

OPTUNA_MISSING = "tuning needs Optuna, which is not installed: pip install 'mmunlearn[tune]' (or optuna>=3.6)"
CANDIDATES = 64
"""Seeds tried (from ``tune.seed`` on) for a validation request disjoint from the evaluation requests."""
HALVES_SEED = 0
"""Seed of the fixed shuffle that cuts the validation split into the trials' validation and test halves."""


@dataclass(frozen=True)
class TuningJob:
    """Everything one study needs, built from a grid by `tuning_job` (values only: no hidden state).

    Attributes:
        name: the study's name (and its SQLite file's stem).
        storage: the SQLite file.
        model: the original the trials unlearn from (the grid's first seed's).
        train: the training set.
        request: the validation request.
        validation: the trials' validation data (half of the validation split).
        held_out: the trials' test data (the other half); the evaluation test split is never given.
        method: the method key.
        fixed: config fields held fixed (the grid's overrides of the method).
        space: the searched fields.
        trials: the budget (finished trials, failed ones included).
        seed: the method's seed in every trial, and the sampler's seed.
        retrain: retrain's config fields (it trains like the original).
        overlap: samples the validation request shares with the evaluation requests.
    """

    name: str
    storage: Path
    model: Any
    train: MultimodalDataset
    request: ForgetRequest
    validation: MultimodalDataset
    held_out: MultimodalDataset
    method: str
    fixed: Mapping[str, Any]
    space: Space
    trials: int
    seed: int
    retrain: Mapping[str, Any]
    overlap: int = 0


@dataclass(frozen=True)
class TuningResult:
    """What a finished study chose, and what it cost.

    Attributes:
        study: the study's name.
        best: the chosen values of the searched fields.
        value: their gap to retrain on the validation request.
        default_value: the default configuration's gap (its first trial; None if that trial failed).
        seconds: wall seconds of every counted trial (unlearning and metrics) plus retrain's on the
            validation request.
        trials: trials counted against the budget.
        failed: trials that failed (a divergence, a configuration the method refused).
        overlap: samples the validation request shares with the evaluation requests.
    """

    study: str
    best: dict[str, Any]
    value: float
    default_value: float | None
    seconds: float
    trials: int
    failed: int
    overlap: int

    def to_extras(self) -> dict[str, Any]:
        """The tuned row's record extras."""
        return {
            "tuned": True,
            "tuning_seconds": self.seconds,
            "tuned_config": dict(self.best),
            "tuning_study": self.study,
            "tuning_trials": self.trials,
            "tuning_failed": self.failed,
            "tuning_value": self.value,
            "tuning_default_value": self.default_value,
            "tuning_overlap": self.overlap,
        }


def import_optuna() -> Any:
    """The ``optuna`` module, or a `ConfigError` that says how to install it."""
    try:
        import optuna
    except ImportError as e:
        raise ConfigError(OPTUNA_MISSING) from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# -- naming ----------------------------------------------------------------------------------------------
def study_name(grid: UnlearnGrid, method: str) -> str:
    """``<dataset>-<size>-<model>-<method>-<hash of the protocol>`` (``<name>-<layout>-...`` for a dataset
    on disk, whose fingerprint is in the protocol): one study per protocol."""
    protocol = grid.tuning_protocol(method)
    tag = hashlib.sha256(canonical_json(protocol).encode()).hexdigest()[:10]
    return f"{data_slug(grid)}-{protocol['model'][0]}-{method}-{tag}"


def study_path(work: Path, name: str) -> Path:
    """The study's SQLite file under the bench's work folder."""
    return work / "tuning" / f"{name}.sqlite3"


# -- the data a study sees -------------------------------------------------------------------------------
def held_out_halves(val: MultimodalDataset) -> tuple[MultimodalDataset, MultimodalDataset]:
    """The validation split cut in two by a fixed seeded shuffle: (the trials' validation, their test)."""
    order = np.random.default_rng(HALVES_SEED).permutation(len(val))
    half = len(val) // 2
    if half < 1:
        raise ConfigError(f"the validation split of {val.name!r} has {len(val)} samples: too few to halve")
    first, second = sorted(order[:half].tolist()), sorted(order[half:].tolist())
    name = val.name
    return val.subset([val.ids[i] for i in first], f"{name}/tune-val"), val.subset(
        [val.ids[i] for i in second], f"{name}/tune-test"
    )


def evaluation_requests(grid: UnlearnGrid, splits: DatasetSplits) -> dict[str, list[ForgetRequest]]:
    """Request name -> the grid's evaluation requests of that name (``random@F`` of its own share), one per seed."""
    return {kind: [request_for(kind, splits, s, grid.fraction) for s in grid.seeds] for kind in grid.requests}


def validation_request(
    kind: str, splits: DatasetSplits, seed: int, fraction: float, avoid: Mapping[str, list[ForgetRequest]]
) -> tuple[ForgetRequest, int]:
    """The validation request and how many samples it shares with the evaluation requests ``avoid``.

    ``random`` (``random@F``): ``fraction`` (``F``) of the training samples (as many as an evaluation request of
    that name), drawn with ``seed`` among the samples of no evaluation request of any kind (so the overlap is 0
    unless too few are left: then the seeded draw from all of them, with a warning).
    Other kinds (two fonts, a concept, a group): the request ``request_for`` gives for ``seed``, ``seed + 1``,
    ... whose samples no evaluation request of the same kind touches (for identities: two other fonts); when
    none of `CANDIDATES` seeds gives one, the one that overlaps least, with a warning.
    """
    train = splits.train
    taken = {sid for reqs in avoid.values() for r in reqs for sid in r.ids}
    if request_kind(kind)[0] == "random":
        template = request_for(kind, splits, seed, fraction)
        free = [i for i, sid in enumerate(train.ids) if sid not in taken]
        n = len(template.ids)
        if len(free) < n:
            log.warning("only %d training samples lie outside the evaluation requests: the validation request "
                        "(%d samples) is drawn from all of them", len(free), n)  # fmt: skip
            return template, len(set(template.ids) & taken)
        pick = np.sort(np.random.default_rng(seed).choice(np.asarray(free), size=n, replace=False))
        return dataclasses.replace(template, ids=tuple(train.ids[i] for i in pick)), 0
    same = {sid for r in avoid.get(kind, []) for sid in r.ids}
    best: tuple[int, ForgetRequest] | None = None
    for s in range(seed, seed + CANDIDATES):
        candidate = request_for(kind, splits, s, fraction)
        shared = len(set(candidate.ids) & same)
        if best is None or shared < best[0]:
            best = (shared, candidate)
        if shared == 0:
            break
    assert best is not None
    if best[0]:
        log.warning("no %s request disjoint from the evaluation requests: the validation request shares %d "
                    "samples with them", kind, best[0])  # fmt: skip
    return best[1], len(set(best[1].ids) & taken)


def tuning_job(grid: UnlearnGrid, method: str, splits: DatasetSplits, model: Any, work: Path) -> TuningJob:
    """The study of ``method`` on ``grid``: its validation request, data halves, space and budget."""
    assert grid.tune is not None
    tune = grid.tune
    request, overlap = validation_request(
        tune.request, splits, tune.seed, grid.fraction, evaluation_requests(grid, splits)
    )
    validation, held_out = held_out_halves(splits.val)
    _, retrain = grid.method_config("retrain", grid.seeds[0])
    name = study_name(grid, method)
    return TuningJob(
        name, study_path(work, name), model, splits.train, request, validation, held_out, method,
        dict(grid.overrides.get(method, {})), grid.tuning_space(method), tune.trials, tune.seed, retrain, overlap,
    )  # fmt: skip


# -- the study -------------------------------------------------------------------------------------------
def tune_method(job: TuningJob) -> TuningResult:
    """Run (or resume, or just read) the study of ``job`` until it has ``job.trials`` finished trials.

    Returns:
        The best configuration (lowest gap to retrain on the validation request) and the tuning seconds.

    Raises:
        ConfigError: Optuna is missing.
        RuntimeError: every trial failed.
    """
    optuna = import_optuna()
    with exclusive(job.storage.with_suffix(".lock")):
        storage = optuna.storages.RDBStorage(f"sqlite:///{job.storage}")
        study = optuna.create_study(study_name=job.name, storage=storage, direction="minimize", load_if_exists=True)
        fail_stale(storage, study)
        retrain = retrain_metrics(study, job)
        states = optuna.trial.TrialState
        while (done := len(counted(study))) < job.trials:
            if done == 0 and not study.get_trials(deepcopy=False, states=(states.WAITING,)):
                study.enqueue_trial(default_params(job), user_attrs={"default": True})
            study.sampler = sampler(optuna, job.seed, len(study.trials), job.trials)
            study.optimize(
                lambda trial: objective(trial, job, retrain), n_trials=1, catch=(DivergenceError, ConfigError)
            )
        return result(study, job)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with the global torch, NumPy and `random` generators seeded by ``seed``, restoring them
    afterwards: a trial's numbers depend on its seed only, and the cell that ran the study continues with
    the same generators as a cell that read the finished study back."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def sampler(optuna: Any, seed: int, number: int, trials: int) -> Any:
    """A TPE sampler seeded by (study seed, trial number): the draw of trial ``number`` depends only on
    the study's history, not on how many processes the study took. The first third of the budget (at least
    one trial, the default configuration included) is drawn at random."""
    trial_seed = int.from_bytes(hashlib.sha256(f"{seed}/{number}".encode()).digest()[:4], "little")
    return optuna.samplers.TPESampler(seed=trial_seed, n_startup_trials=max(1, trials // 3))


def default_params(job: TuningJob) -> dict[str, Any]:
    """The row's default configuration restricted to the searched fields (its first trial)."""
    defaults = config_defaults(UNLEARNERS.get(job.method).Config)  # type: ignore[attr-defined]
    return {name: job.fixed.get(name, defaults[name]) for name in job.space}


def objective(trial: Any, job: TuningJob, retrain: list[MetricResult]) -> float:
    """One trial: the method with the trial's fields on the validation request; its gap to retrain."""
    params = suggest(trial, job.space)
    t0 = time.perf_counter()
    try:
        unlearner = UNLEARNERS.create(job.method, **{**job.fixed, **params, "seed": job.seed, "progress": False})
        with isolated_rng(job.seed):
            out = run_request(job.model, job.train, job.request, unlearner, validation=job.validation,
                              test=job.held_out)  # fmt: skip
        trial.set_user_attr("unlearn_seconds", out.seconds)
        return gap_to_retrain(out.metrics, retrain)
    finally:
        trial.set_user_attr("seconds", time.perf_counter() - t0)


def retrain_metrics(study: Any, job: TuningJob) -> list[MetricResult]:
    """Retrain's metrics on the validation request: computed once, then read from the study's storage
    (retrain checkpoints every epoch next to the study, so a killed retrain resumes)."""
    if "retrain_metrics" not in study.user_attrs:
        work = job.storage.with_name(f"{job.name}-retrain")
        unlearner = UNLEARNERS.create("retrain", **{**job.retrain, "progress": False})
        t0 = time.perf_counter()
        with isolated_rng(job.seed):
            out = run_request(job.model, job.train, job.request, unlearner, validation=job.validation,
                              test=job.held_out, work_dir=work)  # fmt: skip
        study.set_user_attr("retrain_seconds", time.perf_counter() - t0)
        study.set_user_attr("retrain_metrics", [m.to_dict() for m in out.metrics])
        shutil.rmtree(work, ignore_errors=True)
    return [MetricResult(**m) for m in study.user_attrs["retrain_metrics"]]


def fail_stale(storage: Any, study: Any) -> None:
    """Mark the trials a killed process left running as failed and stale (they do not count: redone).

    Only called with the study's lock held, so no other process is running them."""
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "stale", True)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)


def counted(study: Any) -> list[Any]:
    """The trials counted against the budget: finished ones and those that failed by themselves."""
    from optuna.trial import TrialState

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
    return [t for t in finished if not t.user_attrs.get("stale")]


def result(study: Any, job: TuningJob) -> TuningResult:
    """The study's best trial and its total cost."""
    from optuna.trial import TrialState

    trials = counted(study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {job.name}: all {len(trials)} trials failed; see the study's failed trials")
    best = min(complete, key=lambda t: (t.value, t.number))
    default = [t.value for t in complete if t.user_attrs.get("default")]
    seconds = sum(float(t.user_attrs.get("seconds", 0.0)) for t in trials)
    return TuningResult(
        job.name, {k: best.params[k] for k in job.space}, float(best.value), default[0] if default else None,
        seconds + float(study.user_attrs["retrain_seconds"]), len(trials), len(trials) - len(complete), job.overlap,
    )  # fmt: skip
