"""mmunlearn: multimodal machine unlearning, unlearnable examples, and one evaluation harness.

The small public API::

    from mmunlearn import load_dataset, ForgetRequest, train, TrainConfig, evaluate
"""

__version__ = "0.1.0"

from .checkpoint import load_checkpoint, save_checkpoint
from .data import DATASETS, ForgetRequest, MultimodalDataset, Sample, load_dataset
from .evaluate import evaluate
from .models import MODELS, DualEncoder, MultimodalClassifier
from .registry import Registry
from .results import MetricResult, RunRecord
from .train import TrainConfig, train

__all__ = [
    "DATASETS",
    "MODELS",
    "DualEncoder",
    "ForgetRequest",
    "MetricResult",
    "MultimodalClassifier",
    "MultimodalDataset",
    "Registry",
    "RunRecord",
    "Sample",
    "TrainConfig",
    "__version__",
    "evaluate",
    "load_checkpoint",
    "load_dataset",
    "save_checkpoint",
    "train",
]
