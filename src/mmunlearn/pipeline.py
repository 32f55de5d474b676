"""The one pipeline that runs a forget request on a model.

`run_request` builds U, the gold-standard set and R once, runs the unlearner, computes every metric
(each set of logits once) for the new model and, when asked, for the original, and writes the new
checkpoint, its metrics and the receipt once. The ``forget`` command, the library's
`mmunlearn.forget`, the bench, the benchmark scripts and the demo all call it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import save_checkpoint, state_sha256
from .data import ForgetRequest, MultimodalDataset
from .data.core import data_fingerprint
from .errors import CheckpointError, DataError
from .fileio import json_bytes
from .metrics.captioning import captioner_metrics
from .metrics.scenario_a import DEFAULT_RELEARN, RelearnConfig, ScenarioAData, scenario_a_metrics
from .metrics.scenario_c import ScenarioCData, scenario_c_metrics
from .models import MultimodalModel
from .models.protocols import CaptionerModel, Classifier, DualEncoderModel, require
from .receipts import METRICS, RECEIPT, save_run, sign_receipt
from .results import MetricResult
from .tensorio import tensors_to_bytes
from .unlearn import UnlearnData, Unlearner
from .versions import versions


@dataclass
class ForgetResult:
    """What a forget run returns (and, with an output folder, writes).

    Attributes:
        model: the new model.
        metrics: its metrics on the request (empty when there is no test split to measure against).
        original_metrics: the original's metrics on the same request (when asked for).
        seconds: wall time of the unlearning itself.
        receipt: what was forgotten, how, and the hashes of the models before and after.
        data: the request's data (U, gold-standard set, R, validation).
    """

    model: Any
    metrics: list[MetricResult]
    original_metrics: list[MetricResult] | None
    seconds: float
    receipt: dict[str, Any]
    data: UnlearnData


def request_metrics(
    model: Any,
    original: Any,
    data: UnlearnData,
    test: MultimodalDataset | None,
    relearn: RelearnConfig = DEFAULT_RELEARN,
    *,
    phrases: tuple[str, ...] = (),
) -> list[MetricResult]:
    """The metrics of ``model`` on a request's data: scenario A's for a classifier, scenario C's for a
    dual encoder, the captioning suite (`captioner_metrics`) for a captioner (empty without a test split).

    ``phrases``: the phrases a concept request on a caption set without a built-in concept space chose
    among (a bench grid's ``concepts``); a dual encoder's zero-shot metrics recognise them (`ScenarioCData`).
    """
    if test is None or data.retain is None:
        return []
    kind = require(model, (Classifier, DualEncoderModel, CaptionerModel), "the forgetting metrics")
    if kind is CaptionerModel:
        return captioner_metrics(model, original, data, test, relearn)
    if kind is DualEncoderModel:
        pairs = ScenarioCData(data.unlearn, data.retain, test, data.validation, data.concept, tuple(phrases))
        return scenario_c_metrics(model, original, pairs, relearn)
    scenario = ScenarioAData(data.unlearn, data.retain, test, data.validation, data.forget_modality)
    return scenario_a_metrics(model, original, scenario, relearn)


def run_request(
    model: Any,
    train: MultimodalDataset,
    request: ForgetRequest,
    unlearner: Unlearner[Any, Any],
    *,
    validation: MultimodalDataset | None = None,
    test: MultimodalDataset | None = None,
    original_metrics: bool = False,
    relearn: RelearnConfig = DEFAULT_RELEARN,
    out_dir: str | os.PathLike[str] | None = None,
    provenance: dict[str, Any] | None = None,
    model_path: str | os.PathLike[str] | None = None,
    sign_key: bytes | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    phrases: tuple[str, ...] = (),
) -> ForgetResult:
    """Apply ``request`` to ``model`` with ``unlearner``; measure; optionally write the result.

    Args:
        model: the trained model (left untouched).
        train: the training set the model was trained on.
        request: what to forget.
        unlearner: the method, configured.
        validation: data of the training distribution never trained on (CCU calibrates against it).
        test: the test split (the metrics need it; without it none are computed).
        original_metrics: also measure the original on the same request.
        relearn: the relearning attack of the metrics.
        out_dir: if given, write the new checkpoint (registered models), ``metrics.json`` and ``receipt.json``.
        provenance: the original checkpoint's provenance, carried into the new one.
        model_path: where the original came from (recorded in the receipt).
        sign_key: if given, the receipt carries an HMAC-SHA256 keyed with these bytes.
        work_dir: the unlearner checkpoints there every epoch and resumes the same run found there
            (see `Unlearner.unlearn`); the caller deletes it once the result is saved.
        phrases: the phrases a concept request on a dataset without a built-in concept space chose among,
            for the zero-shot metrics (see `request_metrics`).

    Returns:
        The `ForgetResult`.
    """
    started = time.perf_counter()
    request.validate(train, getattr(model, "modalities", None))
    if isinstance(model, DualEncoderModel) and not request.is_full_deletion(train):
        raise DataError(
            f"a dual encoder forgets image-caption pairs whole: the request forgets only "
            f"{'+'.join(sorted(request.modalities))}; forget {'+'.join(train.modalities)} (the default)"
        )
    data = UnlearnData.from_request(request, train, validation)
    unlearner.validate(model, data)
    t0 = time.perf_counter()
    new = unlearner.unlearn(model, data, original=model, work_dir=work_dir)
    seconds = time.perf_counter() - t0
    metrics = request_metrics(new, model, data, test, relearn, phrases=phrases)
    before = request_metrics(model, model, data, test, relearn, phrases=phrases) if original_metrics else None
    receipt = make_receipt(
        request, unlearner, model, new, metrics, seconds, model_path,
        dataset=train, provenance=provenance, wall_seconds=time.perf_counter() - started,
    )  # fmt: skip
    if sign_key is not None:
        receipt = sign_receipt(receipt, sign_key)
    if out_dir is not None:
        write_run(Path(out_dir), new, provenance or {}, metrics, receipt)
    return ForgetResult(new, metrics, before, seconds, receipt, data)


def make_receipt(
    request: ForgetRequest,
    unlearner: Unlearner[Any, Any],
    before: Any,
    after: Any,
    metrics: list[MetricResult],
    seconds: float,
    model_path: str | os.PathLike[str] | None,
    *,
    dataset: MultimodalDataset,
    provenance: dict[str, Any] | None = None,
    wall_seconds: float | None = None,
) -> dict[str, Any]:
    """The receipt of a forget run: the request, the method and its config, both models' hashes, metrics.

    Args:
        request, unlearner, before, after, metrics, model_path: what was run, on what, with what result.
        seconds: wall time of the unlearning itself.
        dataset: the training set the request was made against (its identity and fingerprint are recorded).
        provenance: the original checkpoint's provenance (names the built-in dataset, size and seed).
        wall_seconds: wall time of the whole run (request checks, unlearning, metrics).
    """
    config = dataclasses.asdict(unlearner.config)
    config.pop("progress", None)
    prov = provenance or {}
    return {
        "request": request.to_dict(),
        "method": {"name": unlearner.name, "paper": unlearner.paper, "config": config},
        "dataset": {
            "name": prov.get("dataset", dataset.name),
            "size": prov.get("size"),
            "seed": prov.get("data_seed"),
            "split": "train",
            "n": len(dataset),
            "fingerprint": data_fingerprint(dataset),
        },
        "model_before": {"path": None if model_path is None else str(model_path), "sha256": state_sha256(before)},
        "model_after": {"sha256": state_sha256(after)},
        "metrics": [m.to_dict() for m in metrics],
        "seconds": seconds,
        "wall_seconds": wall_seconds,
        "created_unix": time.time(),
        "versions": versions(),
    }


def write_run(
    out: Path, model: Any, provenance: dict[str, Any], metrics: list[MetricResult], receipt: dict[str, Any]
) -> None:
    """Write the new model, ``metrics.json`` and ``receipt.json`` as one crash-atomic save.

    A registered model becomes a checkpoint whose manifest also lists the receipt and the metrics; a
    user's model is saved as ``model.safetensors`` with a run manifest covering the three files
    (`mmunlearn.receipts.save_run`). Either way ``mmunlearn verify`` checks them against each other.
    """
    if getattr(model, "weight_edit", True) is False:
        raise CheckpointError(
            f"{type(model).__name__} is a decoding-time edit (the weights are the original's, the edit is the "
            "decoding rule): it cannot be saved as a model folder"
        )
    files = {METRICS: json_bytes([m.to_dict() for m in metrics]), RECEIPT: json_bytes(receipt)}
    if isinstance(model, MultimodalModel):
        unlearned = {"method": receipt["method"]["name"], "request": receipt["request"]}
        save_checkpoint(out, model, provenance={**provenance, "unlearned": unlearned}, attachments=files)
    else:
        save_run(out, tensors_to_bytes(dict(model.state_dict())), files)
