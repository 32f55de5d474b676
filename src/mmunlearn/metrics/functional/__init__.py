"""Pure metric functions (tensors in, numbers out); each is tested against a naive reference."""

from .classification import accuracy
from .privacy import (
    auc,
    fixed_negative_infonce,
    ks_statistic,
    loss_threshold_auc,
    svc_mia_efficacy,
    true_label_confidence,
)
from .representation import linear_cka
from .retrieval import chance_recall, gallery_recalls, recall_at_k, recall_at_k_positives, retrieval_recalls

__all__ = [
    "accuracy",
    "auc",
    "chance_recall",
    "fixed_negative_infonce",
    "gallery_recalls",
    "ks_statistic",
    "linear_cka",
    "loss_threshold_auc",
    "recall_at_k",
    "recall_at_k_positives",
    "retrieval_recalls",
    "svc_mia_efficacy",
    "true_label_confidence",
]
