"""The library's verbs: ``mmunlearn.forget``, ``mmunlearn.protect``, ``mmunlearn.bench``, ``mmunlearn.report``.

Each takes in-memory objects (a model, a dataset, a config) or the paths the CLI takes, and calls the
same code as the command of the same name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .benchmarking import BenchConfig, BenchOutcome, load_config, parse_config, run_bench
from .data import DatasetSplits, ForgetRequest, MultimodalDataset
from .errors import ConfigError
from .forgetting import RequestSpec
from .forgetting import forget as forget_checkpoint
from .pipeline import ForgetResult, run_request
from .protectors import PROTECTORS, ProtectedDataset
from .records import ResultStore
from .reporting import write_report
from .unlearn import UNLEARNERS

Splits = DatasetSplits | Mapping[str, MultimodalDataset] | MultimodalDataset


def _splits(dataset: Splits) -> tuple[MultimodalDataset, MultimodalDataset | None, MultimodalDataset | None]:
    """(train, validation, test) of a `DatasetSplits`, a ``{"train", "val", "test"}`` mapping or a lone training set."""
    if isinstance(dataset, DatasetSplits):
        return dataset.train, dataset.val, dataset.test
    if isinstance(dataset, MultimodalDataset):
        return dataset, None, None
    if "train" not in dataset:
        raise ConfigError(f"a dataset mapping needs a 'train' split; it has {sorted(dataset)}")
    return dataset["train"], dataset.get("val"), dataset.get("test")


def forget(
    model: Any,
    dataset: Splits | None = None,
    request: ForgetRequest | RequestSpec | None = None,
    *,
    method: str = "ccu",
    out_dir: str | os.PathLike[str] | None = None,
    original_metrics: bool = False,
    **config: Any,
) -> ForgetResult:
    """Make ``model`` forget ``request`` with ``method``; measure the result against the request.

    Args:
        model: a trained model with the capabilities ``method`` needs (any `torch.nn.Module` adapted as
            in docs/own-model.md, or a built-in one), or the path of a checkpoint folder (then ``dataset``
            is the one its provenance names and ``request`` a `RequestSpec`).
        dataset: the training data: a `DatasetSplits`, a mapping with ``"train"`` (and ``"val"``,
            ``"test"``), or the training set alone (then no metrics are computed).
        request: what to forget (`ForgetRequest`; a `RequestSpec` for a checkpoint folder).
        method: an `UNLEARNERS` name (``mmunlearn list``).
        out_dir: write the new model (built-in models), ``metrics.json`` and ``receipt.json`` there.
        original_metrics: also measure the original on the request.
        config: the method's config fields (``epochs=2``, ``lr=1e-4``...).

    Returns:
        A `ForgetResult`: the new model, its metrics, the seconds it took and the receipt.

    Example:
        >>> import mmunlearn
        >>> splits = mmunlearn.load_dataset("av-digits", "small")
        >>> request = mmunlearn.ForgetRequest.random_fraction(splits.train, 0.1, seed=0)
        >>> result = mmunlearn.forget(model, splits, request, method="ccu")  # doctest: +SKIP
    """
    if isinstance(model, str | os.PathLike):
        if out_dir is None:
            raise ConfigError("forget on a checkpoint folder writes a new one: give out_dir")
        if not isinstance(request, RequestSpec):
            raise ConfigError(
                "forget on a checkpoint folder takes a RequestSpec (the dataset comes from its provenance)"
            )
        seed = config.pop("seed", 0)
        return forget_checkpoint(
            model, method, request, out_dir, seed=seed, overrides=config, original_metrics=original_metrics
        )
    if dataset is None or not isinstance(request, ForgetRequest):
        raise ConfigError("forget on a model needs its training data and a ForgetRequest")
    train, val, test = _splits(dataset)
    unlearner = UNLEARNERS.create(method, **config)
    return run_request(
        model, train, request, unlearner,
        validation=val, test=test, original_metrics=original_metrics, out_dir=out_dir,
    )  # fmt: skip


def protect(
    dataset: MultimodalDataset,
    method: str = "mem",
    *,
    surrogate: Any = None,
    out_dir: str | os.PathLike[str] | None = None,
    **config: Any,
) -> ProtectedDataset:
    """Compute ``method``'s protection of every pair of an image-caption dataset.

    Args:
        dataset: image-caption pairs (``image`` and ``text`` inputs).
        method: a `PROTECTORS` name.
        surrogate: a dual encoder to start from (default: a fresh one, as the method's paper does).
        out_dir: save the protection there.
        config: the protector's config fields.

    Returns:
        The `ProtectedDataset`; ``.apply(dataset)`` gives the protected pairs.
    """
    protected = PROTECTORS.create(method, **config).protect(dataset, surrogate)
    if out_dir is not None:
        protected.save(Path(out_dir))
    return protected


def bench(
    config: BenchConfig | Mapping[str, Any] | str | os.PathLike[str],
    store: str | os.PathLike[str] = "runs/bench/results.jsonl",
    work: str | os.PathLike[str] = "runs/bench",
    **options: Any,
) -> BenchOutcome:
    """Run a benchmark grid (a YAML path, its parsed mapping, or a `BenchConfig`) into a results store.

    ``options`` go to `mmunlearn.benchmarking.run_bench` (``data_dir``, ``retry_failed``, ``progress``).
    """
    if isinstance(config, str | os.PathLike):
        config = load_config(config)
    elif not isinstance(config, BenchConfig):
        config = parse_config(config)
    return run_bench(config, ResultStore(Path(store)), work, **options)


def report(
    results: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    **options: Any,
) -> dict[str, Path]:
    """Write the Markdown, CSV, figures and offline HTML report of one or more results stores."""
    return write_report(results, out_dir, **options)
