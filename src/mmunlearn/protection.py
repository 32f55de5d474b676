"""The library calls behind ``mmunlearn protect`` and ``mmunlearn victim``."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .data import DATASETS, DatasetRef
from .data.store import DatasetSplits
from .errors import CheckpointError, ConfigError, DataError
from .outputs import WORK_DIR
from .protectors import PROTECTORS
from .protectors.protected import ProtectedDataset, dataset_source
from .victim import VictimConfig, VictimResult, train_victim

log = logging.getLogger(__name__)


def protect_builtin(
    dataset: str,
    method: str,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    size: str = "small",
    data_seed: int = 0,
    overrides: dict[str, Any] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    layout: str | None = None,
) -> ProtectedDataset:
    """Protect the training split of a caption dataset (built-in, or on disk) and (optionally) save it.

    Args:
        dataset: built-in dataset name (``shapes-captions``, ``emoji-captions``), or with ``layout`` the
            path of an image-caption dataset on disk.
        method: `PROTECTORS` name.
        out_dir: folder to save the protection in (None: do not save). Until it is saved, a min-min run
            checkpoints in ``<out_dir>/.work`` after every outer iteration; a killed run resumes from it.
        size: ``"small"`` or ``"full"``.
        data_seed: dataset generation seed.
        overrides: protector config fields (unknown keys are a `ConfigError`).
        data_dir: dataset cache root.
        progress: progress bars.
        layout: the published layout of a dataset on disk (karpathy, coco, imagefolder, csv).

    Returns:
        The protection, whose ``source`` names the dataset, size, seed (and layout) and split it belongs to.

    Raises:
        ConfigError: an unknown method or config key, or an invalid config value.
        DataError: an unknown dataset, or one the method cannot protect.
    """
    if method not in PROTECTORS:
        raise ConfigError(f"unknown protector {method!r}; known protectors: {', '.join(PROTECTORS.names())}")
    if layout is None and dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; built-in datasets: {', '.join(DATASETS.names())}")
    ref = DatasetRef.of(dataset, size, data_seed, layout)
    protector = PROTECTORS.create(method, **{"progress": progress, **(overrides or {})})
    splits = ref.load(data_dir, progress=progress)
    work = Path(out_dir) / WORK_DIR if out_dir is not None else None  # per outer iteration: a kill resumes
    protected = protector.protect(splits.train, work_dir=work)
    protected.source = dataset_source(splits.train, **ref.provenance(), split="train")
    if out_dir is not None:
        protected.save(out_dir)
        log.info("saved the %s protection of %s/%s to %s", method, dataset, size, out_dir)
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    return protected


def splits_for(protected: ProtectedDataset, data_dir: str | os.PathLike[str] | None = None) -> DatasetSplits:
    """Load the dataset a protection was computed for (from its recorded source: built-in or on disk).

    Raises:
        CheckpointError: the protection does not record its dataset.
    """
    src = protected.source
    if not {"dataset", "size", "data_seed"} <= set(src):
        raise CheckpointError(
            f"the protection of {src.get('name')!r} records no built-in dataset (dataset, size, data_seed); "
            "use mmunlearn.victim.train_victim with the dataset itself"
        )
    return DatasetRef.from_provenance(src).load(data_dir)


def victim_from_dir(
    folder: str | os.PathLike[str],
    config: VictimConfig | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[ProtectedDataset, VictimResult]:
    """Load a saved protection, check it against its dataset, train and evaluate a victim.

    Raises:
        CheckpointError: a missing, corrupted or tampered-with protection.
        DataError: the dataset in the cache is not the data the protection was made for.
    """
    protected = ProtectedDataset.load(Path(folder))
    splits = splits_for(protected, data_dir)
    return protected, train_victim(splits, protected, config, data_dir=data_dir)  # it checks the data before training
