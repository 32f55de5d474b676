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
    ("acc_video", "unlearn"),
    ("acc_fused", "unlearn"),
    ("acc_audio", "unlearn"),
    ("mia_svc", "unlearn"),
)

# Every metric name the scenario-A suite can produce for an audio-visual classifier forgetting its images
# or its video (the bench config checks its ``metrics:`` list against these; a test keeps the two in step).
SCENARIO_A_METRICS = (
    "acc_fused",
    "acc_image",
    "acc_video",
    "acc_audio",
    "mia_svc",
    "mia_svc_val",
    "mia_loss_auc",
    "retain_cka_image",
    "retain_cka_video",
    "relearn_acc_image",
    "relearn_acc_video",
)

# The clean-test retrieval figures of every scenario-B victim (names of `retrieval_recalls`).
VICTIM_METRICS = ("i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5", "i2t_r10", "t2i_r10", "mean_recall")
ZERO_SHOT = "zero_shot_"
"""Prefix of a ``finetune`` victim's metrics of its pretrained model before fine-tuning."""
ZERO_SHOT_METRICS = tuple(ZERO_SHOT + m for m in VICTIM_METRICS)
"""A ``finetune`` victim's pretrained model on the same clean test pairs before fine-tuning (its reference)."""


# Every metric name the scenario-C suite can produce for a dual encoder forgetting image-caption pairs
# (retrieval recalls on U, R, val and test; the true-pair similarity of U; membership; zero-shot
# recognition of a forgotten concept; relearning; retain-set structure).
SCENARIO_C_METRICS = (
    "i2t_r1",
    "i2t_r5",
    "i2t_r10",
    "t2i_r1",
    "t2i_r5",
    "t2i_r10",
    "mean_recall",
    "pair_sim_mean",
    "pair_sim_ks",
    "mia_svc",
    "mia_loss_auc",
    "zs_concept",
    "zs_retained",
    "relearn_mean_recall",
    "retain_cka_image",
    "retain_cka_text",
)

# Scenario C's headline metrics for `gap_to_retrain` (the zero-shot ones exist only for concept requests;
# the gap averages the keys present in both records).
HEADLINE_C = (
    ("mean_recall", "retain"),
    ("mean_recall", "test"),
    ("mean_recall", "unlearn"),
    ("mia_svc", "unlearn"),
    ("pair_sim_mean", "unlearn"),
    ("zs_concept", "unlearn"),
    ("zs_retained", "test"),
)


# Every metric name the captioning suite can produce for a generative captioner forgetting a concept
# (mention rates, caption quality, over-suppression of retained concepts, latency, relearning).
CAPTIONER_METRICS = (
    "mention_concept",
    "bleu4",
    "cider",
    "mention_retained",
    "mention_retained_ratio",
    "latency_per_token",
    "latency_ratio",
    "relearn_mention",
    "relearn_bleu4",
)

# The captioner's headline metrics for `gap_to_retrain`: how often the forgotten concept is still named
# (on its images, train and test) and how often it is named wrongly elsewhere, caption quality (BLEU-4, in
# [0, 1] like the others; CIDEr's 0-10 scale would outweigh them) and retained concepts still named.
HEADLINE_CAPTION = (
    ("mention_concept", "unlearn"),
    ("mention_concept", "test_concept"),
    ("mention_concept", "test"),
    ("bleu4", "retain"),
    ("bleu4", "test"),
    ("mention_retained", "test"),
)


HEADLINES = tuple(dict.fromkeys(HEADLINE + HEADLINE_C + HEADLINE_CAPTION))
"""Every scenario's headline keys: a scenario-A record has none of C's retrieval keys, a scenario-C record
none of A's accuracies (``mia_svc`` is a headline of both) and a captioner's record only its own, so the gap of
each is over its own headline."""


def gap_to_retrain(
    metrics: Sequence[MetricResult], retrain: Sequence[MetricResult], headline: Sequence[tuple[str, str]] = HEADLINES
) -> float:
    """Mean absolute difference from the retrained model over the headline metrics present in both."""
    mine = {(r.name, r.split): r.value for r in metrics}
    ref = {(r.name, r.split): r.value for r in retrain}
    keys = [k for k in headline if k in mine and k in ref]
    if not keys:
        raise ValueError("no headline metric is present in both records")
    return sum(abs(mine[k] - ref[k]) for k in keys) / len(keys)
