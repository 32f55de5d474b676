"""Models: encoders, `MultimodalClassifier`, `DualEncoder`, the word tokenizer and the model registry."""

from .base import MODELS, MultimodalModel
from .classifier import ClassifierConfig, MultimodalClassifier
from .dual_encoder import DualEncoder, DualEncoderConfig, clip_loss
from .tokenizer import WordTokenizer

__all__ = [
    "MODELS",
    "ClassifierConfig",
    "DualEncoder",
    "DualEncoderConfig",
    "MultimodalClassifier",
    "MultimodalModel",
    "WordTokenizer",
    "clip_loss",
]
