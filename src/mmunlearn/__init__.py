"""mmunlearn: multimodal machine unlearning, unlearnable examples, and one evaluation harness.

The library API (see the README's "Python API")::

    import mmunlearn
    splits = mmunlearn.load_dataset("av-digits", "small")
    request = mmunlearn.ForgetRequest.random_fraction(splits.train, 0.1, seed=0)
    result = mmunlearn.forget(model, splits, request, method="ccu", epochs=2)

Names are imported on first use, so that ``import mmunlearn.reporting`` (which only reads records) does
not load torch models and methods.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .versions import __version__

# public name -> module that defines it
_EXPORTS = {
    "forget": "api",
    "protect": "api",
    "bench": "api",
    "report": "api",
    "ForgetResult": "pipeline",
    "UnlearnData": "unlearn.base",
    "UNLEARNERS": "unlearn",
    "PROTECTORS": "protectors",
    "DATASETS": "data",
    "MODELS": "models",
    "ForgetRequest": "data",
    "MultimodalDataset": "data",
    "DatasetSplits": "data",
    "Sample": "data",
    "load_dataset": "data",
    "Classifier": "models.protocols",
    "DualEncoderModel": "models.protocols",
    "CaptionerModel": "models.protocols",
    "Captioner": "models",
    "ClassifierAdapter": "models.adapter",
    "DualEncoder": "models",
    "MultimodalClassifier": "models",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "evaluate": "evaluate",
    "MetricResult": "results",
    "RunRecord": "results",
    "Registry": "registry",
    "TrainConfig": "train",
    "train_model": "train",
}

__all__ = [  # noqa: RUF022 (the version first, then the names of _EXPORTS)
    "__version__",
    "DATASETS",
    "MODELS",
    "PROTECTORS",
    "UNLEARNERS",
    "Captioner",
    "CaptionerModel",
    "Classifier",
    "ClassifierAdapter",
    "DatasetSplits",
    "DualEncoder",
    "DualEncoderModel",
    "ForgetRequest",
    "ForgetResult",
    "MetricResult",
    "MultimodalClassifier",
    "MultimodalDataset",
    "Registry",
    "RunRecord",
    "Sample",
    "TrainConfig",
    "UnlearnData",
    "bench",
    "evaluate",
    "forget",
    "load_checkpoint",
    "load_dataset",
    "protect",
    "report",
    "save_checkpoint",
    "train_model",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mmunlearn' has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    value = module if name == _EXPORTS[name] and not hasattr(module, name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from .api import bench, forget, protect, report
    from .checkpoint import load_checkpoint, save_checkpoint
    from .data import DATASETS, DatasetSplits, ForgetRequest, MultimodalDataset, Sample, load_dataset
    from .evaluate import evaluate
    from .models import MODELS, Captioner, DualEncoder, MultimodalClassifier
    from .models.adapter import ClassifierAdapter
    from .models.protocols import CaptionerModel, Classifier, DualEncoderModel
    from .pipeline import ForgetResult
    from .protectors import PROTECTORS
    from .registry import Registry
    from .results import MetricResult, RunRecord
    from .train import TrainConfig, train_model
    from .unlearn import UNLEARNERS
    from .unlearn.base import UnlearnData
