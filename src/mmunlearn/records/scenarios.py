"""What each scenario's records hold: metric names, the headline metrics, and the gap to retrain.

Pure data and arithmetic over `MetricResult` records, so that reading and reporting results never
imports the models or the methods.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..results import MetricResult

# Headline metrics averaged by the gap to retrain (SalUn's Avg. Gap, extended to the cross-modal ones).
HEADLINE = (
    ("acc_fused", "retain"),
    ("acc_fused", "test"),
    ("acc_image", "unlearn"),
    ("acc_fused", "unlearn"),
    ("acc_audio", "unlearn"),
    ("mia_svc", "unlearn"),
)

# Every metric name the scenario-A suite can produce for an image+audio classifier forgetting images
# (the bench config checks its ``metrics:`` list against these; a test keeps the two in step).
SCENARIO_A_METRICS = (
    "acc_fused",
    "acc_image",
    "acc_audio",
    "mia_svc",
    "mia_svc_val",
    "mia_loss_auc",
    "retain_cka_image",
    "relearn_acc_image",
)

# The clean-test retrieval figures of every scenario-B victim (names of `retrieval_recalls`).
VICTIM_METRICS = ("i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5", "i2t_r10", "t2i_r10", "mean_recall")


def gap_to_retrain(
    metrics: Sequence[MetricResult], retrain: Sequence[MetricResult], headline: Sequence[tuple[str, str]] = HEADLINE
) -> float:
    """Mean absolute difference from the retrained model over the headline metrics present in both."""
    mine = {(r.name, r.split): r.value for r in metrics}
    ref = {(r.name, r.split): r.value for r in retrain}
    keys = [k for k in headline if k in mine and k in ref]
    if not keys:
        raise ValueError("no headline metric is present in both records")
    return sum(abs(mine[k] - ref[k]) for k in keys) / len(keys)
