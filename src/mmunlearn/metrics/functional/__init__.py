"""Pure metric functions (tensors in, numbers out); each is tested against a naive reference."""

from .classification import accuracy
from .retrieval import chance_recall, recall_at_k, retrieval_recalls

__all__ = ["accuracy", "chance_recall", "recall_at_k", "retrieval_recalls"]
