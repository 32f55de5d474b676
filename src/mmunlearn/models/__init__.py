"""Models: encoders, `MultimodalClassifier`, `DualEncoder`, `Captioner`, Hugging Face dual encoders, the word
tokenizer and the model registry."""

from ..data.tokenizer import WordTokenizer
from .base import MODELS, MultimodalModel, build_model, fresh_copy
from .captioner import Captioner, CaptionerConfig, load_captioner
from .classifier import ClassifierConfig, MultimodalClassifier
from .dual_encoder import DualEncoder, DualEncoderConfig, clip_loss
from .hf import (
    HFDualEncoder,
    HFDualEncoderConfig,
    check_text_for_model,
    load_hf_model,
    splits_for_model,
    text_for_model,
)

__all__ = [
    "MODELS",
    "Captioner",
    "CaptionerConfig",
    "ClassifierConfig",
    "DualEncoder",
    "DualEncoderConfig",
    "HFDualEncoder",
    "HFDualEncoderConfig",
    "MultimodalClassifier",
    "MultimodalModel",
    "WordTokenizer",
    "build_model",
    "check_text_for_model",
    "clip_loss",
    "fresh_copy",
    "load_captioner",
    "load_hf_model",
    "splits_for_model",
    "text_for_model",
]
