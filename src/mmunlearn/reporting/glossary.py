"""What every column of a report means, which way is better, and what it should reach.

`METRIC_MEANINGS` is the one place a metric's description lives: add a line for a new metric name. A
metric without a line is still listed, by its name and the direction its records carry.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records.aggregate import Column, Table
from ..records.scenarios import VICTIM_METRICS, ZERO_SHOT_METRICS
from ..records.summary import reference_label

# metric name -> one-line meaning (the split it was measured on is described by SPLIT_MEANINGS)
METRIC_MEANINGS: dict[str, str] = {
    # scenario A: an image+audio classifier forgets the images of a request
    "acc_fused": "accuracy of the model's fused prediction (every modality present)",
    "acc_image": "accuracy from the image alone (the forgotten modality)",
    "acc_video": "accuracy from the video alone (the forgotten modality of a video request)",
    "acc_audio": "accuracy from the audio alone (the kept modality)",
    "mia_svc": "membership attack on the forgotten modality (SalUn's SVC on confidences; retain = members, "
    "test = non-members): share of the samples judged members",
    "mia_svc_val": "the same membership attack with the validation split as non-members (same fonts and voices "
    "as training)",
    "mia_loss_auc": "loss-threshold membership attack: AUC of these samples' losses against test's (0.5 = "
    "indistinguishable)",
    "retain_cka_image": "linear CKA between the original's and this model's image features on retain samples "
    "(1 = unchanged)",
    "retain_cka_video": "linear CKA between the original's and this model's video features on retain samples "
    "(1 = unchanged)",
    "relearn_acc_video": "video accuracy on half of U after a short fine-tune on the other half (relearning "
    "attack on a video request)",
    "relearn_acc_image": "image accuracy on half of U after a short fine-tune on the other half (relearning "
    "attack): how fast forgotten knowledge comes back",
    # scenario B: the victim's retrieval on clean test pairs, after training on protected data
    # (scenario C: the unlearned dual encoder's, in galleries of the test split's size)
    "i2t_r1": "image-to-text Recall@1: share of images whose own caption ranks first",
    "i2t_r5": "image-to-text Recall@5: share of images whose own caption is in the top 5",
    "i2t_r10": "image-to-text Recall@10: share of images whose own caption is in the top 10",
    "t2i_r1": "text-to-image Recall@1: share of captions whose own image ranks first",
    "t2i_r5": "text-to-image Recall@5: share of captions whose own image is in the top 5",
    "t2i_r10": "text-to-image Recall@10: share of captions whose own image is in the top 10",
    "mean_recall": "mean of the six recalls (image-to-text and text-to-image at 1, 5 and 10), in a gallery of "
    "the test split's size",
    # scenario C: a dual encoder forgets image-caption pairs (a random share, a concept's, a group's)
    "pair_sim_mean": "mean cosine similarity of each image with its own caption",
    "pair_sim_ks": "Kolmogorov-Smirnov distance between the forgotten pairs' true-pair similarities and the "
    "validation split's (0 = they look like pairs never seen)",
    "zs_concept": "zero-shot recognition of the forgotten concept: share of images naming it whose concept "
    "prompt outranks every prompt of a concept the image does not show",
    "zs_retained": "zero-shot recognition of the other concepts on images that do not show the forgotten one",
    "relearn_mean_recall": "mean recall of half of the forgotten pairs after a short fine-tune on the other "
    "half (relearning attack)",
    "retain_cka_text": "linear CKA between the original's and this model's text embeddings on retained pairs "
    "(1 = unchanged)",
    # the captioner forgets a concept (generated captions, greedy decoding)
    "mention_concept": "share of generated captions that name the forgotten concept (on its images: U, "
    "test_concept; on the others: retain, test)",
    "bleu4": "BLEU-4 of the generated captions against the true ones (torchmetrics)",
    "cider": "CIDEr of the generated captions against the true ones (pycocoevalcap's scorer, 0-10)",
    "mention_retained": "share of the images' other (retained) concepts that their generated captions still name",
    "mention_retained_ratio": "mention_retained / the original's (1 = no over-suppression)",
    "latency_per_token": "seconds per generated token on a fixed batch of test images",
    "latency_ratio": "latency_per_token / the original's (decoding-time overhead)",
    "relearn_mention": "mention rate of the concept on half of U after a short fine-tune on the other half "
    "(relearning attack)",
    "relearn_bleu4": "BLEU-4 on half of U after a short fine-tune on the other half (relearning attack)",
    # costs and the gap, every scenario
    "tuning_seconds": "seconds of the tuned row's study (every trial and the validation request's retrain), "
    "once per row; beside the method's own seconds",
    "gap_to_retrain": "mean absolute difference to retrain over the headline metrics, seed by seed (SalUn's Avg. Gap)",
    "seconds": "wall-clock seconds of the run (unlearning; the victim's training; the original's training)",
    "protect_seconds": "seconds spent computing the protection of the training images",
    "seconds_ratio": "seconds / the reference's seconds, seed by seed (retrain's; a clean victim training's)",
}

METRIC_MEANINGS |= {
    name: f"a finetune victim's pretrained model before fine-tuning (the zero-shot reference): {METRIC_MEANINGS[m]}"
    for m, name in zip(VICTIM_METRICS, ZERO_SHOT_METRICS, strict=True)
}

SPLIT_MEANINGS: dict[str, str] = {
    "retain": "the retain set R (training data that stays)",
    "unlearn": "the unlearn set U (the data of the forget request)",
    "test": "the held-out test split",
    "val": "the validation split",
    "test_concept": "the test images that show the forgotten concept",
    "validation": "the validation split",
    "cost": "the whole study, on a validation request (not the evaluated one)",
}

UNKNOWN = "no description yet"  # shown for a metric name METRIC_MEANINGS lacks


@dataclass(frozen=True)
class Entry:
    """One glossary line: a column of a table, its meaning, which way is better, and its target."""

    column: str
    meaning: str
    direction: str
    target: str


def meaning(name: str, split: str = "") -> str:
    """The one-line meaning of a metric (and of its split), or a placeholder for an unknown name."""
    text = METRIC_MEANINGS.get(name, UNKNOWN)
    return f"{text}; on {SPLIT_MEANINGS.get(split, split)}" if split else text


def direction(table: Table, column: Column) -> str:
    """Which way is better for a metric column of ``table``."""
    if table.scenario == "protect":
        return "lower is better for the protector (the victim wants it higher)"
    better = table.higher_is_better.get(column)
    if better is None:
        return f"target = {reference_label(table.scenario)}'s value"
    return "higher is better" if better else "lower is better"


def target(table: Table, column: Column) -> str:
    """What a method should reach on a metric column: the reference's value, chance, or an extreme."""
    ref_label = reference_label(table.scenario)
    ref = table.row(ref_label)
    value = ref.metrics[column].mean if ref is not None and column in ref.metrics else None
    ref_text = f"{ref_label}: {value:.3f}" if value is not None else f"no {ref_label} row"
    if table.scenario == "protect":
        chance = table.chance.get(column)
        return f"chance, {chance:.3f} ({ref_text})" if chance is not None else f"below the {ref_text}"
    better = table.higher_is_better.get(column)
    if better is None:
        return f"{ref_label}'s value, {value:.3f}" if value is not None else f"{ref_label}'s value ({ref_text})"
    return f"{'as high' if better else 'as low'} as possible ({ref_text})"


def key_entries(table: Table) -> list[Entry]:
    """The glossary lines of the cost (and gap) columns that come first in a table."""
    if table.scenario == "protect":
        return [
            Entry("protect s", meaning("protect_seconds"), "lower is better", "-"),
            Entry("victim s", "seconds to train one victim on the (protected) training data", "-", "-"),
            Entry(
                "protection time / clean victim's",
                "protection seconds / one clean victim training's seconds",
                "lower is better",
                "well under 1×",
            ),
        ]
    ref = reference_label(table.scenario)
    return [
        Entry("gap to retrain", meaning("gap_to_retrain"), "lower is better", f"0 (= {ref})"),
        Entry("seconds", "wall-clock seconds of the unlearning (the original's: its training)", "lower is better", "-"),
        Entry(
            f"share of {ref}'s time", f"seconds / {ref}'s seconds, seed by seed", "lower is better", "well under 100%"
        ),
    ]


def entries(table: Table, columns: list[Column] | None = None, lead: int = 0) -> list[Entry]:
    """Every glossary line of a table in the order its columns are shown.

    Args:
        table: the table.
        columns: its metric columns as shown (every column by default).
        lead: how many of ``columns`` come before the costs (a protection table's key metric).
    """
    shown = table.columns if columns is None else columns
    lines = [Entry(f"{n} ({s})", meaning(n, s), direction(table, (n, s)), target(table, (n, s))) for n, s in shown]
    seeds = Entry("seeds", "how many seeds the row's mean ± std is over", "-", "-")
    return [*lines[:lead], *key_entries(table), seeds, *lines[lead:]]
