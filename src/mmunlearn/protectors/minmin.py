"""The error-minimising (min-min) machinery shared by MEM, EM and trigger-only protection.

Outer loop: a few surrogate training steps on the currently protected pairs, then one pass over the
data in which each batch gets (a) a HotFlip update of its text triggers (in the first outer iterations
only) and (b) PGD steps that *descend* the CLIP loss on its image noise. Noise is kept on the 1/255
grid between batches, so the surrogate always trains on exactly the data that will be released.

HotFlip here: candidates for each trigger position are ranked by the first-order change of the loss
(gradient with respect to the token embedding dotted with every real word's embedding); the top few per
pair are re-scored *exactly*: for every pair and candidate, the batch loss with that one pair's trigger
changed and the others kept (`swap_losses`, closed form, one text forward per candidate). Each pair
takes its best candidate if it lowers the loss; the joint change is then checked and halved (largest
gains kept) until the batch loss does not rise. The authors' code instead shares the candidate *rank*
across the batch; per-pair scoring gives each pair its own best token at the same forward cost.

Resumable: with a work folder (`run_min_min`'s ``work_dir``, or `checkpointing` around a protector's
``protect``) the whole state is saved after every outer iteration (noise, triggers, surrogate weights
and AdamW state, the random generators, the position in the surrogate's batch stream, the history),
and a run of the same settings, data and surrogate found there resumes with bit-identical results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor

from ..checkpoint import state_sha256
from ..data.core import MultimodalDataset, data_fingerprint
from ..errors import DivergenceError
from ..models import DualEncoder, clip_loss
from ..optim import divergence_hint, load_optimizer_tensors, optimizer_step, optimizer_tensors, weights_finite
from ..runtime import progress
from ..train import WorkFolder, global_rng_tensors, restore_global_rng
from .grouping import group_stats, row_leaders, tie_batch_first, tie_batch_mean, tie_to_leaders
from .protected import FIRST_WORD_ID, add_noise, caption_lengths, noise_units, prepend_triggers

log = logging.getLogger(__name__)
GRAD_CLIP = 5.0
"""Gradient-norm clip of the surrogate steps (the library's training recipe uses the same)."""


@dataclass(frozen=True)
class MinMinSettings:
    """One min-min run (built by a protector from its config).

    Attributes:
        epsilon: L-inf noise budget, or None for no image noise.
        step: PGD step size.
        pgd_steps: PGD steps per batch per pass.
        outer_iters: outer iterations (surrogate steps + one pass over the data).
        surrogate_steps: surrogate training steps per outer iteration.
        trigger_len: tokens per trigger (0 = no trigger).
        hotflip_candidates: candidates per trigger position re-scored exactly.
        trigger_iters: HotFlip runs in the first this many outer iterations.
        batch_size: pairs per batch (surrogate steps, PGD and HotFlip).
        lr: surrogate AdamW learning rate (constant, as in the authors' code).
        shuffle_captions: permute caption bodies within the batch at every PGD step (triggers stay).
        stop_accuracy: stop after an outer iteration whose surrogate in-batch retrieval accuracy on the
            protected pairs reaches this (None = never stop early).
        groups: None = one noise/trigger per image (per pair when each image has one caption); k = one
            per k-means group of images (`mmunlearn.protectors.grouping.group_leaders`, on the surrogate
            as passed to `run_min_min`, before any training step).
        seed: seeds the trigger initialisation, the data order and the shuffles.
        progress: progress bar.
    """

    epsilon: float | None
    step: float = 1 / 255
    pgd_steps: int = 8
    outer_iters: int = 10
    surrogate_steps: int = 50
    trigger_len: int = 0
    hotflip_candidates: int = 16
    trigger_iters: int = 0
    batch_size: int = 128
    lr: float = 1e-3
    shuffle_captions: bool = False
    stop_accuracy: float | None = None
    groups: int | None = None
    seed: int = 0
    progress: bool = True


def settings_from(config: object, **fixed: Any) -> MinMinSettings:
    """The `MinMinSettings` of a protector config: every field the two share, plus ``fixed`` ones.

    Args:
        config: a protector's config dataclass.
        fixed: settings the protector pins (e.g. ``epsilon=None`` for a trigger-only run).
    """
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(MinMinSettings) if hasattr(config, f.name)}
    return MinMinSettings(**{**shared, **fixed})


@dataclass
class MinMinState:
    """The protection being optimised.

    Attributes:
        noise: int16 (N, C, H, W) in units of 1/255, or None.
        triggers: int64 (N, k), or None.
        history: per outer iteration figures.
        leaders: the rows sharing a noise and trigger (`mmunlearn.protectors.grouping`): ``leaders[i]``
            is the first row of row i's group; None = every row on its own.
    """

    noise: Tensor | None
    triggers: Tensor | None
    history: list[dict[str, float]] = field(default_factory=list)
    leaders: Tensor | None = None


def grouping_stats(config: object, state: MinMinState) -> dict[str, Any]:
    """``{"groups": group_stats(...)}`` for a grouped run (config ``groups`` set), else nothing (stats unchanged)."""
    if getattr(config, "groups", None) is None or state.leaders is None:
        return {}
    return {"groups": group_stats(state.leaders)}


# -- small pieces -----------------------------------------------------------------------------------
@contextlib.contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Evaluation mode with parameters excluded from autograd (inputs still get gradients)."""
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval().requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def cover_batches(n: int, batch_size: int, gen: torch.Generator) -> list[Tensor]:
    """A shuffled split of ``range(n)`` in which every index appears once.

    A last batch of a single pair (no negative for the contrastive loss) is merged into the previous one.
    """
    batches = list(torch.randperm(n, generator=gen).split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        last = batches.pop()
        batches[-1] = torch.cat([batches[-1], last])
    return batches


@dataclass
class BatchStream:
    """Shuffled full batches forever (a new permutation each pass), for the surrogate steps.

    An iterator whose position (the current permutation and how many of its batches were taken) can be
    saved and restored; it draws a permutation from ``gen`` only when the previous one is used up.
    """

    n: int
    batch_size: int
    gen: torch.Generator
    perm: Tensor | None = None
    taken: int = 0

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Tensor:
        per_pass = 1 if self.n < self.batch_size else self.n // self.batch_size
        if self.perm is None or self.taken >= per_pass:
            self.perm, self.taken = torch.randperm(self.n, generator=self.gen), 0
        self.taken += 1
        if self.n < self.batch_size:
            return self.perm
        return self.perm[(self.taken - 1) * self.batch_size : self.taken * self.batch_size]


def endless_batches(n: int, batch_size: int, gen: torch.Generator) -> BatchStream:
    """Shuffled full batches forever (a new permutation each pass), for the surrogate steps."""
    return BatchStream(n, batch_size, gen)


def protected_inputs(dataset: MultimodalDataset, state: MinMinState, idx: Tensor) -> tuple[Tensor, Tensor]:
    """The current protected images and texts of the rows ``idx``.

    Returns:
        float (B, C, H, W) images in [0, 1] and int64 (B, L) token ids.
    """
    images, text = dataset.inputs["image"][idx], dataset.inputs["text"][idx]
    if state.noise is not None:
        images = add_noise(images, state.noise[idx])
    if state.triggers is not None:
        text = prepend_triggers(text, state.triggers[idx])
    return images, text


def with_trigger(captions: Tensor, triggers: Tensor | None) -> Tensor:
    """Triggered caption ids with all-padding trailing columns cut (the encoder masks them anyway).

    Returns:
        int64 (B, L') ids, ``L'`` = the longest triggered caption of the batch.
    """
    ids = captions if triggers is None else prepend_triggers(captions, triggers)
    return ids[:, : max(1, int(caption_lengths(ids).max()))]


def batch_accuracy(image_emb: Tensor, text_emb: Tensor) -> float:
    """Mean of in-batch image-to-text and text-to-image top-1 accuracy of matched pairs."""
    sim = image_emb @ text_emb.T
    target = torch.arange(len(sim))
    return float(((sim.argmax(1) == target).double().mean() + (sim.argmax(0) == target).double().mean()) / 2)


# -- outer step: the surrogate ----------------------------------------------------------------------
def surrogate_steps(
    model: DualEncoder,
    opt: torch.optim.Optimizer,
    dataset: MultimodalDataset,
    state: MinMinState,
    batches: Iterator[Tensor],
    steps: int,
) -> float:
    """Train the surrogate ``steps`` AdamW steps on the currently protected pairs.

    Returns:
        Mean training loss over the steps (nan when ``steps`` is 0).

    Raises:
        DivergenceError: the loss before a step or the weights after it became NaN/inf (nothing has
            been written; the message says whether the data or the lr is to blame).
    """
    model.train()
    total = 0.0
    for _ in range(steps):
        images, text = protected_inputs(dataset, state, next(batches))
        loss = model.loss({"image": images, "text": text})
        if not torch.isfinite(loss):
            _surrogate_diverged(f"loss became {float(loss.detach())}", images)
        optimizer_step(model, opt, loss, GRAD_CLIP)
        if not weights_finite(model):
            _surrogate_diverged("weights became NaN/inf", images)
        total += float(loss.detach())
    return total / steps if steps else math.nan


def _surrogate_diverged(what: str, images: Tensor) -> NoReturn:
    raise DivergenceError(
        f"the surrogate's {what}; no protection was produced ({divergence_hint(bool(torch.isfinite(images).all()))})"
    )


# -- inner step 1: PGD on the image noise -----------------------------------------------------------
def pgd_noise(
    model: DualEncoder,
    images: Tensor,
    captions: Tensor,
    triggers: Tensor | None,
    delta: Tensor,
    settings: MinMinSettings,
    gen: torch.Generator,
) -> Tensor:
    """Error-minimising PGD on one batch's noise (call inside `frozen`).

    Each step: ``x' <- x' - step * sign(grad)``, then ``delta = clip(x' - x, -eps, eps)`` and
    ``x' = clip(x + delta, 0, 1)``. With ``shuffle_captions`` the caption bodies are permuted within the
    batch at every step while each image keeps its own trigger, so the noise binds to the trigger.

    Args:
        model: the surrogate.
        images: float (B, C, H, W) clean images.
        captions: int64 (B, L) clean caption ids.
        triggers: int64 (B, k) current triggers, or None.
        delta: float (B, C, H, W) starting noise.
        settings: epsilon, step, pgd_steps, shuffle_captions.
        gen: random generator of the shuffles.

    Returns:
        float (B, C, H, W) new noise, within epsilon and keeping ``images + noise`` in [0, 1].
    """
    eps = noise_units(settings.epsilon or 0.0) / 255
    scale = model.logit_scale()
    text_emb = None if settings.shuffle_captions else _text_emb(model, captions, triggers)
    x_adv = (images + delta).clamp(0, 1)
    for _ in range(settings.pgd_steps):
        if settings.shuffle_captions:
            perm = torch.randperm(len(captions), generator=gen)
            text_emb = _text_emb(model, captions[perm], triggers)
        x_adv.requires_grad_(True)
        loss = clip_loss(model.encode_image(x_adv), text_emb, scale)  # type: ignore[arg-type]
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv - settings.step * grad.sign()
            x_adv = (images + (x_adv - images).clamp(-eps, eps)).clamp(0, 1)
    return (x_adv - images).detach()


def _text_emb(model: DualEncoder, captions: Tensor, triggers: Tensor | None) -> Tensor:
    with torch.no_grad():
        return model.encode_text(with_trigger(captions, triggers))


# -- inner step 2: HotFlip on the triggers ----------------------------------------------------------
def hotflip_candidates(
    model: DualEncoder, image_emb: Tensor, captions: Tensor, triggers: Tensor, count: int, vocab: int
) -> Tensor:
    """Rank replacement tokens for every trigger position by the first-order change of the batch loss.

    Args:
        model: the surrogate (call inside `frozen`).
        image_emb: (B, D) fixed image embeddings.
        captions: int64 (B, L) clean caption ids.
        triggers: int64 (B, k) current triggers.
        count: candidates kept per position.
        vocab: vocabulary size (ids ``FIRST_WORD_ID .. vocab - 1`` are eligible).

    Returns:
        int64 (B, k, min(count, vocab - FIRST_WORD_ID)) candidate ids, best first.
    """
    k = triggers.shape[1]
    ids = with_trigger(captions, triggers)
    emb = model.token_embedding()(ids).detach().requires_grad_(True)
    loss = clip_loss(image_emb, model.encode_text(ids, emb), model.logit_scale())
    (grad,) = torch.autograd.grad(loss, emb)
    table = model.token_embedding().weight[FIRST_WORD_ID:vocab]  # (V', dim), special tokens excluded
    score = -(grad[:, :k] @ table.T)  # first-order loss decrease of swapping in each word
    return score.topk(min(count, len(table)), dim=-1).indices + FIRST_WORD_ID


def swap_losses(image_emb: Tensor, text_emb: Tensor, alt_emb: Tensor, scale: Tensor) -> Tensor:
    """Exact batch CLIP loss when one pair's text embedding is replaced, for every pair and alternative.

    Args:
        image_emb: (B, D) image embeddings.
        text_emb: (B, D) current text embeddings.
        alt_emb: (B, M, D) alternative text embeddings: ``alt_emb[i, r]`` replaces ``text_emb[i]``.
        scale: logit scale.

    Returns:
        (B, M): ``clip_loss`` of the batch with row i's text replaced by ``alt_emb[i, r]``.
    """
    b = len(image_emb)
    sim = scale * image_emb @ text_emb.T  # (image a, text t)
    diag = sim.diagonal()
    masked = sim.unsqueeze(0).repeat(b, 1, 1)  # (i, a, t), column i removed below
    masked[torch.arange(b), :, torch.arange(b)] = -math.inf
    row_without = masked.logsumexp(-1)  # (i, a): image a's log-partition without text i
    alt = scale * torch.einsum("ad,ird->ira", image_emb, alt_emb)  # (i, r, a)
    own = alt[torch.arange(b), :, torch.arange(b)]  # (i, r): image i against its new text
    i2t = torch.logaddexp(row_without.unsqueeze(1), alt).mean(-1) - (diag.sum() - diag.unsqueeze(1) + own) / b
    col = sim.logsumexp(0) - diag  # (t,): text-to-image loss of each text
    t2i = (col.sum() - col.unsqueeze(1) + alt.logsumexp(-1) - own) / b
    return (i2t + t2i) / 2


def hotflip_position(
    model: DualEncoder, image_emb: Tensor, captions: Tensor, triggers: Tensor, position: int, candidates: Tensor
) -> Tensor:
    """Update one trigger position of every pair: each pair's best candidate by exact re-scoring.

    Args:
        model: the surrogate (call inside `frozen`).
        image_emb: (B, D) fixed image embeddings.
        captions: int64 (B, L) clean caption ids.
        triggers: int64 (B, k) current triggers.
        position: the trigger position to update.
        candidates: int64 (B, M) candidate ids for that position.

    Returns:
        int64 (B, k) triggers whose batch loss is not higher than that of ``triggers``.
    """
    b, m = candidates.shape
    scale = model.logit_scale()
    with torch.no_grad():
        text_emb = model.encode_text(with_trigger(captions, triggers))
        alt = triggers.repeat_interleave(m, 0)
        alt[:, position] = candidates.reshape(-1)
        alt_emb = model.encode_text(with_trigger(captions.repeat_interleave(m, 0), alt)).view(b, m, -1)
        losses = swap_losses(image_emb, text_emb, alt_emb, scale)
        base = clip_loss(image_emb, text_emb, scale)
        best_loss, best = losses.min(1)
        gain = base - best_loss
        order = gain.argsort(descending=True)
        take = int((gain > 1e-7).sum())
        while take > 0:  # joint check: keep the largest gains until the batch loss does not rise
            rows = order[:take]
            trial = triggers.clone()
            trial[rows, position] = candidates[rows, best[rows]]
            if clip_loss(image_emb, model.encode_text(with_trigger(captions, trial)), scale) <= base:
                return trial
            take //= 2
    return triggers


def hotflip(model: DualEncoder, images: Tensor, captions: Tensor, triggers: Tensor, count: int, vocab: int) -> Tensor:
    """One HotFlip round on a batch: rank candidates, then update positions left to right.

    Args:
        model: the surrogate (call inside `frozen`).
        images: float (B, C, H, W) protected images (current noise applied).
        captions: int64 (B, L) clean caption ids.
        triggers: int64 (B, k) current triggers.
        count: candidates per position.
        vocab: vocabulary size.

    Returns:
        int64 (B, k) updated triggers.
    """
    with torch.no_grad():
        image_emb = model.encode_image(images)
    candidates = hotflip_candidates(model, image_emb, captions, triggers, count, vocab)
    for j in range(triggers.shape[1]):
        triggers = hotflip_position(model, image_emb, captions, triggers, j, candidates[:, j])
    return triggers


# -- the loop ---------------------------------------------------------------------------------------
def init_state(
    dataset: MultimodalDataset, settings: MinMinSettings, vocab: int, gen: torch.Generator, leaders: Tensor | None
) -> MinMinState:
    """Zero noise (as in the paper) and uniformly random real-word triggers, one per group of ``leaders``.

    The trigger of a group is the one drawn for its first row (`tie_to_leaders`), so the draws are those
    of the sample-wise run whatever the grouping.
    """
    n = len(dataset)
    noise = torch.zeros(dataset.inputs["image"].shape, dtype=torch.int16) if settings.epsilon is not None else None
    triggers = None
    if settings.trigger_len:
        drawn = torch.randint(FIRST_WORD_ID, vocab, (n, settings.trigger_len), generator=gen)
        triggers = tie_to_leaders(drawn, leaders)
    return MinMinState(noise, triggers, leaders=leaders)


_WORK_DIR: ContextVar[Path | None] = ContextVar("mmunlearn_minmin_work_dir", default=None)


@contextlib.contextmanager
def checkpointing(work_dir: str | os.PathLike[str] | None) -> Iterator[None]:
    """Within the block, `run_min_min` calls without their own ``work_dir`` save to and resume from ``work_dir``.

    This is how `Protector.protect` hands its work folder to the min-min protectors' ``generate``.
    """
    token = _WORK_DIR.set(None if work_dir is None else Path(work_dir))
    try:
        yield
    finally:
        _WORK_DIR.reset(token)


def run_min_min(
    dataset: MultimodalDataset,
    model: DualEncoder,
    settings: MinMinSettings,
    vocab: int,
    desc: str = "protect",
    work_dir: str | os.PathLike[str] | None = None,
) -> MinMinState:
    """Optimise noise and/or triggers of every pair against ``model`` (trained in place).

    Args:
        dataset: clean pairs.
        model: the surrogate (a private copy; it is trained).
        settings: the run.
        vocab: vocabulary size (trigger ids are drawn from ``FIRST_WORD_ID .. vocab - 1``).
        desc: progress-bar label.
        work_dir: save the state after every outer iteration there, and resume a run of the same
            settings, data and surrogate found there (another run's work is replaced); default: the
            folder of `checkpointing`, if any.

    Returns:
        The final `MinMinState` (noise in 1/255 units, triggers, per-iteration history).

    Raises:
        DivergenceError: the surrogate diverged.
        CheckpointError: ``work_dir`` holds something other than this kind of work, or a damaged state.
    """
    folder = Path(work_dir) if work_dir is not None else _WORK_DIR.get()
    work = None if folder is None else WorkFolder(folder, "protect", _identity(dataset, model, settings, vocab))
    gen = torch.Generator().manual_seed(settings.seed)
    leaders = row_leaders(dataset, model, settings.groups, settings.seed)  # before any training or resume
    state = init_state(dataset, settings, vocab, gen, leaders)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    stream = BatchStream(len(dataset), settings.batch_size, gen)
    start, stopped = _resume(work, model, opt, state, stream)
    end = start if stopped else settings.outer_iters
    per_iter = settings.surrogate_steps + len(cover_batches(len(dataset), settings.batch_size, torch.Generator()))
    total = settings.outer_iters * per_iter
    bar = progress(total=total, initial=start * per_iter, desc=desc, unit="step", enabled=settings.progress)
    try:
        for it in range(start, end):
            stopped = _outer_iteration(dataset, model, opt, state, stream, settings, it, vocab, bar, desc)
            if work is not None:
                _save(work, model, opt, state, stream, it + 1, stopped)
            if stopped:
                break
    finally:
        bar.close()
    return state


def _outer_iteration(
    dataset: MultimodalDataset,
    model: DualEncoder,
    opt: torch.optim.Optimizer,
    state: MinMinState,
    stream: BatchStream,
    settings: MinMinSettings,
    it: int,
    vocab: int,
    bar: Any,
    desc: str,
) -> bool:
    """Surrogate steps, then one pass of HotFlip/PGD; True when the early stop is reached."""
    train_loss = surrogate_steps(model, opt, dataset, state, stream, settings.surrogate_steps)
    bar.update(settings.surrogate_steps)
    flip = it < settings.trigger_iters
    figures = inner_pass(dataset, model, state, settings, flip, vocab, stream.gen, bar, leaders=state.leaders)
    state.history.append({"iter": it + 1, "surrogate_loss": train_loss, **figures})
    bar.set_postfix(loss=f"{figures['loss']:.3f}", acc=f"{figures['accuracy']:.2f}")
    log.info("%s iteration %d: %s", desc, it + 1, state.history[-1])
    if settings.stop_accuracy is not None and figures["accuracy"] >= settings.stop_accuracy:
        log.info("%s stops: surrogate accuracy %.3f >= %.3f", desc, figures["accuracy"], settings.stop_accuracy)
        return True
    return False


def _identity(dataset: MultimodalDataset, model: DualEncoder, settings: MinMinSettings, vocab: int) -> dict[str, Any]:
    """What decides a min-min run's result (a work folder resumes only the same run)."""
    config = dataclasses.asdict(settings)
    config.pop("progress")
    if config["groups"] is None:  # sample-wise runs keep the identity they had before grouping existed
        config.pop("groups")
    return {"settings": config, "data": data_fingerprint(dataset), "vocab": vocab, "surrogate": state_sha256(model)}


def _save(
    work: WorkFolder,
    model: DualEncoder,
    opt: torch.optim.Optimizer,
    state: MinMinState,
    stream: BatchStream,
    done: int,
    stopped: bool,
) -> None:
    """Everything the loop carries from one outer iteration to the next, after ``done`` iterations."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | optimizer_tensors(opt)
    tensors |= {"rng.gen": stream.gen.get_state(), **global_rng_tensors(torch.device("cpu"))}
    optional = {"noise": state.noise, "triggers": state.triggers, "stream.perm": stream.perm}
    tensors |= {k: v for k, v in optional.items() if v is not None}
    work.save(done, tensors, {"history": state.history, "stream_taken": stream.taken, "stopped": stopped})


def _resume(
    work: WorkFolder | None, model: DualEncoder, opt: torch.optim.Optimizer, state: MinMinState, stream: BatchStream
) -> tuple[int, bool]:
    """Restore the last saved outer iteration: (iterations done, whether the run had stopped early)."""
    if work is None or (saved := work.load()) is None:
        return 0, False
    t = saved.tensors
    model.load_state_dict({k[len("model.") :]: v for k, v in t.items() if k.startswith("model.")})
    load_optimizer_tensors(opt, t)
    stream.gen.set_state(t["rng.gen"])
    restore_global_rng(t, torch.device("cpu"))
    state.noise, state.triggers = t.get("noise"), t.get("triggers")
    stream.perm, stream.taken = t.get("stream.perm"), int(saved.info["stream_taken"])
    state.history = list(saved.info["history"])
    log.info("resuming the protection in %s after outer iteration %d", work.path, saved.progress)
    return saved.progress, bool(saved.info.get("stopped", False))


def inner_pass(
    dataset: MultimodalDataset,
    model: DualEncoder,
    state: MinMinState,
    settings: MinMinSettings,
    flip: bool,
    vocab: int,
    gen: torch.Generator,
    bar: Any,
    leaders: Tensor | None = None,
) -> dict[str, float]:
    """One pass over the data: HotFlip (when ``flip``) then PGD on every batch.

    With ``leaders`` (`mmunlearn.protectors.grouping.row_leaders`) the rows of one group (the captions of
    one image, or a k-means group of images) share one noise (the mean of their PGD updates in the batch)
    and one trigger (that of the group's first row in the batch), written to every row of the group,
    including the rows outside the batch.

    Returns:
        The surrogate's mean batch loss and in-batch accuracy on the updated protected pairs; with noise
        also ``loss_without_noise`` and ``accuracy_without_noise``, the same with the noise removed (the
        trigger kept): their gap to ``loss``/``accuracy`` says how much the surrogate relies on the noise.
    """
    sums = dict.fromkeys(("loss", "accuracy", "loss_without_noise", "accuracy_without_noise"), 0.0)
    count = 0
    with frozen(model):
        for idx in cover_batches(len(dataset), settings.batch_size, gen):
            images, captions = dataset.inputs["image"][idx], dataset.inputs["text"][idx]
            if flip and state.triggers is not None:
                noisy = add_noise(images, state.noise[idx]) if state.noise is not None else images
                state.triggers[idx] = hotflip(
                    model, noisy, captions, state.triggers[idx], settings.hotflip_candidates, vocab
                )
                if leaders is not None:
                    tie_batch_first(state.triggers, idx, leaders)
            if state.noise is not None:
                trig = state.triggers[idx] if state.triggers is not None else None
                delta = pgd_noise(model, images, captions, trig, state.noise[idx].float() / 255, settings, gen)
                if leaders is None:
                    state.noise[idx] = (delta * 255).round().to(torch.int16)
                else:
                    tie_batch_mean(state.noise, idx, delta, leaders, noise_units(settings.epsilon or 0.0))
            for name, value in batch_figures(model, dataset, state, idx).items():
                sums[name] += value * len(idx)
            count += len(idx)
            bar.update(1)
    if not math.isfinite(sums["loss"]):
        raise DivergenceError("the surrogate's loss on the protected pairs became NaN/inf; no protection was produced")
    keys = list(sums) if state.noise is not None else ["loss", "accuracy"]
    return {k: sums[k] / count for k in keys}


def batch_figures(model: DualEncoder, dataset: MultimodalDataset, state: MinMinState, idx: Tensor) -> dict[str, float]:
    """The surrogate's loss and in-batch accuracy on the protected rows ``idx``, and without their noise.

    Returns:
        ``loss``, ``accuracy``; with noise also ``loss_without_noise``, ``accuracy_without_noise``
        (clean images, the triggers kept).
    """
    scale = model.logit_scale()
    with torch.no_grad():
        img, txt = protected_inputs(dataset, state, idx)
        ie, te = model.encode_image(img), model.encode_text(txt)
        out = {"loss": float(clip_loss(ie, te, scale)), "accuracy": batch_accuracy(ie, te)}
        if state.noise is not None:
            clean = model.encode_image(dataset.inputs["image"][idx])
            out["loss_without_noise"] = float(clip_loss(clean, te, scale))
            out["accuracy_without_noise"] = batch_accuracy(clean, te)
    return out


__all__ = [
    "BatchStream",
    "MinMinSettings",
    "MinMinState",
    "batch_accuracy",
    "batch_figures",
    "checkpointing",
    "cover_batches",
    "grouping_stats",
    "hotflip",
    "hotflip_candidates",
    "hotflip_position",
    "pgd_noise",
    "run_min_min",
    "swap_losses",
]
