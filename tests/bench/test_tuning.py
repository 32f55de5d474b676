"""The tuning protocol: declared spaces, the ``tune`` grid key, tuned cells' keys, the validation request, and a
tiny real study (av-digits small, one training epoch, finetune's lr over 2 trials) that resumes without rerunning
a trial, never reads the test split, and hands its choice and cost to the tuned row's record."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import pytest

from mmunlearn.benchmarking import parse_config
from mmunlearn.benchmarking.cells import Cell, grid_cells
from mmunlearn.benchmarking.config import UnlearnGrid
from mmunlearn.benchmarking.search_spaces import NOT_TUNED, SEARCH_SPACES, check_space, config_defaults, contains
from mmunlearn.benchmarking.tuning import evaluation_requests, study_path, validation_request
from mmunlearn.benchmarking.unlearn_cell import UnlearnCells
from mmunlearn.data import DatasetSplits, load_dataset
from mmunlearn.errors import ConfigError
from mmunlearn.unlearn import UNLEARNERS

optuna = pytest.importorskip("optuna")  # the 'tune' extra


def grid(**tune: Any) -> UnlearnGrid:
    raw = {
        "scenario": "unlearn", "dataset": "av-digits", "size": "small", "seeds": [0], "requests": ["random"],
        "methods": ["finetune"], "overrides": {"finetune": {"epochs": 1}}, "train": {"epochs": 1},
        "tune": {"trials": 2, "seed": 100, **tune},
    }  # fmt: skip
    g = parse_config({"name": "t", "grids": [raw]}).grids[0]
    assert isinstance(g, UnlearnGrid)
    return g


def bad(**raw: Any) -> str:
    base = {"scenario": "unlearn", "dataset": "av-digits", "methods": ["finetune", "neggrad_plus"], **raw}
    with pytest.raises(ConfigError) as e:
        parse_config({"name": "t", "grids": [base]})
    return str(e.value)


# -- search spaces ---------------------------------------------------------------------------------------
def test_every_registered_method_has_a_space_of_its_config_fields_holding_its_defaults():
    for name in UNLEARNERS.names():
        if name in NOT_TUNED:
            continue
        assert name in SEARCH_SPACES, f"{name} has no search space (add one, or list it in NOT_TUNED)"
        check_space(SEARCH_SPACES[name], config_defaults(UNLEARNERS.get(name).Config))
    for name, space in SEARCH_SPACES.items():  # spaces of methods not wired into the package yet
        if name not in UNLEARNERS.names():
            importlib.import_module(f"mmunlearn.unlearn.{name}")
        check_space(space, config_defaults(UNLEARNERS.get(name).Config))


def test_check_space_names_unknown_fields_and_defaults_outside():
    fields = {"lr": 1e-3, "epochs": 2, "scope": "phrase"}
    with pytest.raises(ConfigError, match="not a config field"):
        check_space({"lrr": ("log", 1e-4, 1e-2)}, fields)
    with pytest.raises(ConfigError, match="outside"):
        check_space({"lr": ("log", 1e-2, 1e-1)}, fields)
    with pytest.raises(ConfigError, match="starts with one of"):
        check_space({"lr": ("uniform", 1e-4, 1e-2)}, fields)
    assert not contains(("int", 1, 5), 2.5) and not contains(("log", 0, 1), 0.5) and contains(("int", 1, 5), 5)
    assert contains(("categorical", ("phrase", "words")), "phrase") and not contains(("float", 0, 1), True)


# -- the tune key ----------------------------------------------------------------------------------------
def test_tune_key_is_checked():
    assert "unknown key(s) ['trails']" in bad(tune={"trails": 3})
    assert "tune.trials must be an integer >= 1" in bad(tune={"trials": 0})
    assert "unknown methods ['nope']" in bad(tune={"methods": ["nope"]})
    assert "'retrain' has no search space" in bad(tune={"methods": ["retrain"]})
    assert "tune.request kinds" in bad(tune={"request": "concept"})
    assert "other than the grid's seeds" in bad(seeds=[0, 1], tune={"seed": 1})
    assert "nothing to tune" in bad(tune={"methods": ["finetune"]}, overrides={"finetune": {"lr": 1e-4, "epochs": 1}})
    assert "must not end with" in bad(variants={"x (tuned)": {"method": "finetune"}})


def test_a_method_without_a_space_is_a_config_error(monkeypatch):
    monkeypatch.delitem(SEARCH_SPACES, "neggrad_plus")
    message = bad(tune={"trials": 3})  # methods default to every method of the grid
    assert "'neggrad_plus' has no search space" in message and "search_spaces.py" in message


def test_tuned_rows_sit_next_to_their_default_rows():
    g = parse_config({"name": "t", "grids": [{
        "scenario": "unlearn", "dataset": "av-digits", "methods": ["finetune", "neggrad_plus"],
        "variants": {"ng 0.5": {"method": "neggrad_plus", "beta": 0.5}}, "tune": {"methods": ["neggrad_plus", "scrub"]},
    }]}).grids[0]  # fmt: skip
    assert isinstance(g, UnlearnGrid) and g.tune is not None
    assert list(g.rows()) == ["retrain", "finetune", "neggrad_plus", "neggrad_plus (tuned)", "ng 0.5", "scrub (tuned)"]
    assert (g.tune.trials, g.tune.request, g.tune.seed) == (12, "random", 100)
    assert g.tuned_method("neggrad_plus (tuned)") == "neggrad_plus" and g.tuned_method("neggrad_plus") is None


def test_a_tuned_cell_key_covers_the_protocol_and_its_shared_key_is_the_study(tmp_path):
    g = grid()
    key = Cell(g, 0, "finetune (tuned)", request="random").key
    assert key == Cell(grid(), 0, "finetune (tuned)", request="random").key
    assert key != Cell(grid(trials=3), 0, "finetune (tuned)", request="random").key
    assert key != Cell(grid(seed=7), 0, "finetune (tuned)", request="random").key
    default = Cell(g, 0, "finetune", request="random")
    assert default.key == Cell(grid(trials=3), 0, "finetune", request="random").key  # default rows untouched
    assert "tuning" in Cell(g, 0, "finetune (tuned)", request="random").settings()
    assert grid().tuning_space("finetune") == {"lr": ("log", 5e-5, 1e-3)}  # the override holds epochs at 1
    two = dataclasses.replace(g, seeds=(0, 1), requests=("random", "identity"))
    cells = UnlearnCells(tmp_path, lambda ref: None)  # type: ignore[arg-type, return-value]
    tuned = {cells.shared(c) for c in grid_cells(two) if c.label == "finetune (tuned)"}
    assert len(tuned) == 1 and next(iter(tuned)).startswith("study:av-digits-small-")
    assert cells.shared(Cell(two, 1, "finetune", request="random")).startswith("model:")


# -- the validation request ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def splits(data_cache: Path) -> DatasetSplits:
    return load_dataset("av-digits", "small", 0, data_cache)


def test_the_validation_request_avoids_every_evaluation_request(splits):
    g = dataclasses.replace(grid(), seeds=(0, 1, 2), requests=("random", "identity"))
    avoid = evaluation_requests(g, splits)
    taken = {sid for reqs in avoid.values() for r in reqs for sid in r.ids}
    rand, overlap = validation_request("random", splits, 100, g.fraction, avoid)
    assert overlap == 0 and not set(rand.ids) & taken and len(rand.ids) == len(avoid["random"][0].ids)
    assert rand.modalities == avoid["random"][0].modalities
    ident, _ = validation_request("identity", splits, 100, g.fraction, avoid)
    eval_ids = {sid for r in avoid["identity"] for sid in r.ids}
    assert ident.ids and not set(ident.ids) & eval_ids  # two other fonts than the seeds' requests


# -- a real study ----------------------------------------------------------------------------------------
class Poisoned:
    """Stands for the test split: any use of it fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the tuning read the test split ({name})")

    def __len__(self) -> int:
        raise AssertionError("the tuning read the test split (len)")


def test_a_study_resumes_never_reads_the_test_split_and_feeds_the_tuned_row(splits, tmp_path):
    g = grid()
    poisoned = dataclasses.replace(splits, test=Poisoned())
    blind = UnlearnCells(tmp_path, lambda ref: poisoned)  # type: ignore[arg-type, return-value]
    first = blind.tuning(g, "finetune")
    assert first.trials == 2 and first.failed == 0 and set(first.best) == {"lr"} and first.default_value is not None
    assert first.seconds > 0 and first.value <= first.default_value

    storage = f"sqlite:///{study_path(tmp_path, first.study)}"
    study = optuna.load_study(study_name=first.study, storage=storage)
    assert study.trials[0].params == {"lr": 2e-4}  # the default configuration is the first trial
    study.ask()  # a trial a killed process left running: marked stale, not counted, nothing rerun
    again = blind.tuning(g, "finetune")
    assert again == first
    states = [t.state for t in optuna.load_study(study_name=first.study, storage=storage).trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2 and len(states) == 3

    cells = UnlearnCells(tmp_path, lambda ref: splits)  # type: ignore[arg-type, return-value]
    record = cells.run(Cell(g, 0, "finetune (tuned)", request="random"))
    assert record.extras["tuned"] is True and record.extras["tuned_config"] == first.best
    assert record.extras["tuning_seconds"] == first.seconds and record.extras["tuning_trials"] == 2
    assert record.config["lr"] == first.best["lr"] and record.config["epochs"] == 1 and record.config["seed"] == 0
    assert len(optuna.load_study(study_name=first.study, storage=storage).trials) == 3  # no new trial
