"""Models: encoders, `MultimodalClassifier`, `DualEncoder`, the word tokenizer and the model registry."""

from ..data.tokenizer import WordTokenizer
from .base import MODELS, MultimodalModel, build_model, fresh_copy
from .classifier import ClassifierConfig, MultimodalClassifier
from .dual_encoder import DualEncoder, DualEncoderConfig, clip_loss

__all__ = [
    "MODELS",
    "ClassifierConfig",
    "DualEncoder",
    "DualEncoderConfig",
    "MultimodalClassifier",
    "MultimodalModel",
    "WordTokenizer",
    "build_model",
    "clip_loss",
    "fresh_copy",
]
