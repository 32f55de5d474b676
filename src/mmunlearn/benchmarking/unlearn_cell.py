"""Scenario A and C cells: the original, retrain and every method on one request, with the scenario's metrics."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_checkpoint, read_manifest
from ..data import DatasetRef, DatasetSplits
from ..data.core import MultimodalDataset
from ..fileio import atomic_write_json, canonical_json, sha256_bytes
from ..models import MultimodalModel
from ..models.protocols import CaptionerModel, DualEncoderModel
from ..pipeline import request_metrics, run_request
from ..recipes import train_on_ref
from ..results import MetricResult, RunRecord
from ..runtime import eval_mode
from ..unlearn import UNLEARNERS, UnlearnData
from ..versions import versions
from .cells import Cell, keep, resolved
from .config import UnlearnGrid
from .grid_data import data_identity, data_ref, data_slug, grid_recipe
from .requests import exclusive, request_for
from .tuning import TuningResult, study_name, tune_method, tuning_job


def feature_projection(model: Any, data: MultimodalDataset, limit: int = 300) -> dict[str, list[Any]]:
    """A 2-D PCA of the first ``limit`` image features (a dual encoder's image embeddings) of ``data``
    (for the report's scatter plot).

    Returns:
        ``{"x": [...], "y": [...], "label": [...]}``, coordinates rounded to 4 decimals.
    """
    idx = torch.arange(min(limit, len(data)))
    batch = data.batch(idx)
    with eval_mode(model), torch.no_grad():
        if isinstance(model, DualEncoderModel):
            image = model.encode_image(batch["image"])
        elif isinstance(model, CaptionerModel):
            image = model.image_features(batch["image"])
        else:
            image = model.embed(batch, "image")
        feats = image.double()
    centred = feats - feats.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    xy = centred @ v[:2].T
    xy = torch.nn.functional.pad(xy, (0, 2 - xy.shape[1]))  # one sample has one component: the other is 0
    xy = xy * torch.sign(xy[xy.abs().argmax(0), torch.arange(2)])  # a fixed sign: same data, same picture
    labels = batch["label"].tolist() if "label" in batch else [0] * len(idx)
    return {"x": [round(float(a), 4) for a in xy[:, 0]], "y": [round(float(b), 4) for b in xy[:, 1]], "label": labels}


@dataclass
class UnlearnCells:
    """Runs scenario-A cells; trains each original once (cached on disk under ``work``)."""

    work: Path
    data: Callable[[DatasetRef], DatasetSplits]  # the grid's data -> its splits, loaded once per bench
    originals: dict[str, tuple[MultimodalModel, float]] = field(default_factory=dict)
    data_dir: str | os.PathLike[str] | None = None  # where the originals' training loads the data from

    def original(self, grid: UnlearnGrid, seed: int) -> tuple[MultimodalModel, float]:
        """The original model of (dataset, size, seed, recipe overrides) and its training seconds.

        The seconds are those of every epoch, however many times the training was killed and resumed.
        """
        recipe = grid_recipe(grid, grid.model)
        folder = self.work / "models" / self.shared_key(grid, seed)
        if folder.name not in self.originals:
            timing = folder / "bench-timing.json"
            # a tuned row's study needs the first seed's original too, and may run beside that original's first
            # cell on another worker: whoever comes second waits here, then loads what the first saved
            with exclusive(self.work / "locks" / f"{folder.name}.lock"):  # not in models/: one entry per model
                if not timing.is_file() or not read_manifest(folder).get("metrics"):
                    ref = data_ref(grid)
                    result, _ = train_on_ref(ref, folder, seed=seed, data_dir=self.data_dir,
                                             overrides=dict(grid.train), progress=False, model=grid.model)  # fmt: skip
                    # the whole training time, across resumes (from the checkpoint), not only this process's epochs
                    atomic_write_json(timing, {"seconds": result.total_seconds, "resumed_from": result.resumed_from})
            model = load_checkpoint(folder).model  # always from disk: a resumed bench sees the same weights
            if not isinstance(model, MultimodalModel) or model.kind != recipe.model:
                raise TypeError(f"{folder} does not hold a {recipe.model}")
            self.originals[folder.name] = (model, float(json.loads(timing.read_text())["seconds"]))
        return self.originals[folder.name]

    @staticmethod
    def shared_key(grid: UnlearnGrid, seed: int) -> str:
        """The name of the original's folder: what the cells of (dataset, size, seed, recipe) share; on disk
        the data's fingerprint is in the tag too, so changed files train a new original."""
        recipe = grid_recipe(grid, grid.model)
        identity = [grid.train_config().replace(seed=seed).identity(), recipe.model, dict(recipe.model_config)]
        if grid.layout is not None:
            identity.append(data_identity(grid))
        tag = sha256_bytes(canonical_json(identity).encode())[:8]
        return f"{data_slug(grid)}-seed{seed}-{tag}"

    def shared(self, cell: Cell) -> str:
        """What ``cell`` shares with other cells, computed by the first that runs: its original, or for a
        tuned row its study (tuned once, before the row's other cells run; the original it also needs is
        guarded by a lock in `original`)."""
        grid = cell.grid
        assert isinstance(grid, UnlearnGrid)
        method = grid.tuned_method(cell.label)
        if method is not None:
            return f"study:{study_name(grid, method)}"
        return f"model:{self.shared_key(grid, cell.seed)}"

    def tuning(self, grid: UnlearnGrid, method: str) -> TuningResult:
        """The study of ``method`` on ``grid`` (run, resumed, or read back): on the grid's first seed's
        original, a validation request and the validation split's halves (never the test split)."""
        model, _ = self.original(grid, grid.seeds[0])
        return tune_method(tuning_job(grid, method, self.data(data_ref(grid)), model, self.work))

    def run(self, cell: Cell) -> RunRecord:
        """One cell: the original's figures, or one method's unlearning of the cell's request."""
        grid = cell.grid
        assert isinstance(grid, UnlearnGrid) and cell.request is not None
        splits = self.data(data_ref(grid))
        model, train_seconds = self.original(grid, cell.seed)
        req = request_for(cell.request, splits, cell.seed, grid.fraction, grid.concepts)
        tuning: TuningResult | None = None
        phrases = grid.concepts if req.concept is not None else ()  # every row of a table: the same zero-shot
        if cell.label == "original":
            data = UnlearnData.from_request(req, splits.train, splits.val)
            metrics, new = request_metrics(model, model, data, splits.test, phrases=phrases), model
            method, config, seconds = "original", grid.train_config().replace(seed=cell.seed).identity(), train_seconds
        else:
            method, fields = grid.method_config(cell.label, cell.seed)
            tuned = grid.tuned_method(cell.label)
            tuning = self.tuning(grid, tuned) if tuned is not None else None
            if tuning is not None:  # the study's choice, frozen, with the cell's seed
                fields = {**fields, **tuning.best}
            unlearner = UNLEARNERS.create(method, **fields, progress=False)
            result = run_request(model, splits.train, req, unlearner, validation=splits.val, test=splits.test,
                                 phrases=phrases)  # fmt: skip
            metrics, new, data = result.metrics, result.model, result.data
            config, seconds = resolved(unlearner.config), result.seconds
        extras: dict[str, Any] = {
            "stage": getattr(UNLEARNERS.get(method), "stage", "") if method in UNLEARNERS else method,
            "request_size": len(data.unlearn),
            "projection": feature_projection(new, data.unlearn),
            **(tuning.to_extras() if tuning is not None else {"tuned": False}),
        }
        if req.concept is not None:
            extras["concept"] = req.concept
        kept = keep(metrics, grid.metrics)
        if tuning is not None:  # the study's cost, beside the method's own seconds in the report's tables
            kept = [*kept, MetricResult("tuning_seconds", "cost", tuning.seconds, False)]
        return RunRecord("unlearn", method, config, cell.seed, kept, seconds, versions(), extras)
