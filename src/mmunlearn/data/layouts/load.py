"""`load_layout`: a dataset on disk in a published layout, as the `DatasetSplits` of the built-in sets."""

from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from .. import audio
from ..av_digits import F_MAX, F_MIN, HOP, N_FFT, N_MELS
from ..builder import SPLITS
from ..captioned import TRIGGER_RESERVE
from ..core import SplitData, from_split
from ..store import DatasetSplits
from ..tokenizer import WordTokenizer
from .cache import (
    MEDIA,
    MediaTable,
    build_cache,
    cache_dir,
    cache_problem,
    decoding_options,
    evict,
    expected_bytes,
    read_media,
    read_rows,
    source_fingerprint,
    touch,
)
from .decode import clip_samples
from .spec import LAYOUTS, Item, LayoutOptions, Plan
from .splitting import assign_splits

log = logging.getLogger(__name__)
_SHOWN = 20  # skipped files named in the warning (all are in meta["skipped"])


def load_layout(
    path: str | os.PathLike[str],
    layout: str,
    *,
    seed: int = 0,
    image_size: int = 32,
    frames: int = 4,
    clip_seconds: float = 1.0,
    data_dir: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    progress: bool = False,
) -> DatasetSplits:
    """Load a dataset stored on disk in a published layout (nothing is downloaded).

    The first load decodes every image, frame folder and sound into a checksummed cache under
    ``<data dir>/layouts/``; later loads read it back after verifying it (see `mmunlearn.data.layouts.cache`).

    Args:
        path: the dataset's folder or annotation file (see ``docs/data-layouts.md`` per layout).
        layout: a name of `LAYOUTS`: ``karpathy``, ``coco``, ``imagefolder``, ``csv``, ``av-frames``, ``av-csv``.
        seed: seed of the splits the files do not give (``coco``'s val/test, layouts without splits).
        image_size: side of the square images and video frames.
        frames: frames per clip of the ``video`` modality (audio-visual layouts with frame folders).
        clip_seconds: seconds of sound kept from the centre of each clip (zero-padded when shorter).
        data_dir: cache root (default: ``$MMUNLEARN_DATA`` or the user cache folder).
        skip_bad: skip samples whose media file is missing or unreadable (listed in ``meta["skipped"]``).
        progress: show a progress bar while decoding.

    Returns:
        `DatasetSplits` with ``name`` = the absolute dataset path, ``size`` = ``"full"``, ``seed``,
        ``meta["layout"]`` and the provenance in ``meta``; ``path`` = the cache folder.

    Raises:
        UnknownNameError: an unknown layout (the message lists them).
        DataError: a missing or malformed annotation file, a bad media file (without ``skip_bad``), or bad options.
    """
    options = _options(seed, image_size, frames, clip_seconds, skip_bad)
    p = _prepare(Path(path).expanduser(), layout, options, data_dir, progress)
    return _assemble(p.folder, p.plan, options, layout, p.how, p.fingerprint, p.kind, p.source)


@dataclass(frozen=True)
class _Prepared:
    source: Path
    kind: str
    plan: Plan
    how: str
    fingerprint: str
    folder: Path


def prepare_layout(
    path: str | os.PathLike[str],
    layout: str,
    *,
    image_size: int = 32,
    frames: int = 4,
    clip_seconds: float = 1.0,
    data_dir: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    progress: bool = False,
) -> Path:
    """Decode a layout into its cache (or verify the cache there) without loading it; returns the cache folder.

    The arguments are those of `load_layout` (the seed plays no part in the cache). Memory stays flat in
    the number of files: the tensors are streamed to disk.
    """
    options = _options(0, image_size, frames, clip_seconds, skip_bad)
    return _prepare(Path(path).expanduser(), layout, options, data_dir, progress).folder


def _prepare(
    source: Path, layout: str, options: LayoutOptions, data_dir: str | os.PathLike[str] | None, progress: bool
) -> _Prepared:
    """Parse, split, and make sure a verified, current cache is there."""
    parser = LAYOUTS.create(layout)
    plan = parser.parse(source, options)
    if not plan.items:
        raise DataError(f"{source}: the {layout} annotations list no sample")
    plan.items, how = assign_splits(plan.items, options.seed)
    table = MediaTable.of(plan)
    folder = cache_dir(source, layout, options, data_dir)
    fingerprint = source_fingerprint(plan)
    _ensure_cache(folder, plan, table, options, layout, fingerprint, progress)
    return _Prepared(source, parser.kind, plan, how, fingerprint, folder)


def _options(seed: int, image_size: int, frames: int, clip_seconds: float, skip_bad: bool) -> LayoutOptions:
    """Checked options.

    Raises:
        DataError: a negative seed, an image size below 1, no frame, or a clip too short for the log-mel.
    """
    if isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be non-negative, got {seed}")
    if image_size < 1 or frames < 1:
        raise DataError(f"image_size and frames must be positive, got {image_size} and {frames}")
    if clip_samples(clip_seconds) <= N_FFT // 2:
        raise DataError(f"clip_seconds={clip_seconds} is too short; at least {N_FFT / audio.SAMPLE_RATE:.3f} s")
    return LayoutOptions(seed, image_size, frames, float(clip_seconds), skip_bad)


def _ensure_cache(
    folder: Path, plan: Plan, table: MediaTable, options: LayoutOptions, layout: str, fingerprint: str, progress: bool
) -> None:
    """Build the cache at ``folder`` unless a verified, current one is there."""
    problem = cache_problem(folder, fingerprint, table)
    if problem is None:
        touch(folder)
        return
    if folder.exists():
        log.warning("layout cache %s cannot be used: %s; rebuilding it", folder, problem)
    evict(folder.parent, keep=folder, reserve=expected_bytes(table, options))
    ident: dict[str, object] = {
        "layout": layout,
        "source": str(plan.root.resolve()),
        "options": decoding_options(options),
        "source_fingerprint": fingerprint,
    }
    build_cache(folder, plan, table, options, ident, progress)
    evict(folder.parent, keep=folder)


def _assemble(
    folder: Path, plan: Plan, options: LayoutOptions, layout: str, how: str, fingerprint: str, kind: str, source: Path
) -> DatasetSplits:
    """The `DatasetSplits` of a verified cache."""
    files, rows, skipped = read_media(folder)
    if skipped and not options.skip_bad:
        raise DataError(
            f"{next(iter(skipped.values()))} (--skip-bad or skip_bad=True skips the {len(skipped)} bad file(s))"
        )
    kept = [it for it in plan.items if not any(r in skipped for r in _media_of(it))]
    if skipped:
        _warn_skipped(source, skipped)
    classes, labels = _labels(plan, kept, source)
    tokenizer = (
        WordTokenizer.build([it.caption or "" for it in kept], TRIGGER_RESERVE) if kind == "image-caption" else None
    )
    positions = {m: {rel: i for i, rel in enumerate(rows.get(m, []))} for m in MEDIA}
    datasets = {}
    for split in SPLITS:
        part = [it for it in kept if it.split == split]
        if not part:
            raise DataError(
                f"{source}: split {split!r} has no sample" + (" left after skipping bad files" if skipped else "")
            )
        data = _split_data(part, files, positions, labels, tokenizer)
        num_classes = len(classes) if classes else (max(labels.values()) + 1 if labels else None)
        datasets[split] = from_split(data, num_classes=num_classes, vocab=tokenizer.vocab if tokenizer else None,
                                     name=f"{layout}:{source.name}/{split}")  # fmt: skip
    meta = _meta(plan, options, layout, how, fingerprint, kind, source, skipped, classes, datasets, folder)
    return DatasetSplits(
        name=str(source.resolve()),
        size="full",
        seed=options.seed,
        vocab=tokenizer.vocab if tokenizer else None,
        text_len=tokenizer.max_len if tokenizer else None,
        meta=meta,
        path=folder,
        **datasets,
    )


def _media_of(it: Item) -> list[str]:
    return [r for r in (it.image, it.video, it.audio) if r is not None]


def _warn_skipped(source: Path, skipped: dict[str, str]) -> None:
    shown = list(skipped.values())[:_SHOWN]
    more = f" and {len(skipped) - _SHOWN} more" if len(skipped) > _SHOWN else ""
    log.warning("%s: skipped %d bad file(s) and their samples: %s%s", source, len(skipped), "; ".join(shown), more)


def _labels(plan: Plan, kept: list[Item], source: Path) -> tuple[list[str] | None, dict[str, int]]:
    """Class names (None when labels are integers) and sample id -> label, for layouts with labels.

    Class names are the sorted distinct labels of every listed sample (skipped ones included), so the
    class ids do not depend on which files could be read.
    """
    raw = [it.label for it in plan.items]
    if all(r is None for r in raw):
        return None, {}
    for it in plan.items:
        if not it.label:
            raise DataError(f"{source}: sample {it.id!r} has an empty label")
    texts = [str(r) for r in raw]
    if all(t.isdigit() for t in texts):
        return None, {it.id: int(str(it.label)) for it in kept}
    classes = sorted(set(texts))
    index = {c: i for i, c in enumerate(classes)}
    return classes, {it.id: index[str(it.label)] for it in kept}


def _split_data(
    part: list[Item],
    files: dict[str, Path],
    positions: dict[str, dict[str, int]],
    labels: dict[str, int],
    tokenizer: WordTokenizer | None,
) -> SplitData:
    """One split's tensors (read from the cache files), labels, captions and groups."""
    tensors = {}
    for m, file in files.items():
        refs = [getattr(it, m) for it in part]
        if all(r is not None for r in refs):
            idx = np.fromiter((positions[m][r] for r in refs), dtype=np.int64, count=len(refs))
            tensors[m] = torch.from_numpy(read_rows(file, idx))
    groups: dict[str, list[str]] = {}
    if tokenizer is not None:
        captions = [it.caption or "" for it in part]
        tensors["text"] = tokenizer.encode(captions)
        groups["image"] = [it.image for it in part]
    if any(it.group for it in part):
        groups["identity"] = [it.group or "" for it in part]
    return SplitData(
        ids=[it.id for it in part],
        tensors=tensors,
        labels=torch.tensor([labels[it.id] for it in part], dtype=torch.long) if labels else None,
        captions=[it.caption or "" for it in part] if tokenizer is not None else None,
        groups=groups,
    )


def _meta(
    plan: Plan,
    options: LayoutOptions,
    layout: str,
    how: str,
    fingerprint: str,
    kind: str,
    source: Path,
    skipped: dict[str, str],
    classes: list[str] | None,
    datasets: dict,
    folder: Path,
) -> dict[str, object]:
    """The JSON-ready provenance of a loaded layout."""
    meta: dict[str, object] = {
        "layout": layout,
        "kind": kind,
        "source": str(source.resolve()),
        "options": asdict(options),
        "cache_key": folder.name,
        "source_fingerprint": fingerprint,
        "splits": how,
        "counts": {s: len(d) for s, d in datasets.items()},
        "classes": classes,
        "skipped": [str((plan.root / rel).resolve()) for rel in skipped],
        "skip_reasons": {str((plan.root / rel).resolve()): why for rel, why in skipped.items()},
        "image": {"size": options.image_size, "channels": "RGB",
                  "resize": "centre crop to square, bicubic resize (PIL.ImageOps.fit)"},
        "notes": plan.notes,
        "versions": _versions(),
    }  # fmt: skip
    if kind == "audio-visual":
        meta["audio"] = {"sample_rate": audio.SAMPLE_RATE, "clip_samples": clip_samples(options.clip_seconds),
                         "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS, "f_min": F_MIN, "f_max": F_MAX,
                         "log": "ln(mel + 1e-6)", "mono": "mean of channels",
                         "resampler": "scipy.signal.resample_poly", "clip": "centre, zero-padded"}  # fmt: skip
        meta["video"] = {"frames": options.frames, "sampling": "centres of equal segments", "image": "middle frame"}
    return meta


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("Pillow", "soundfile", "scipy", "numpy", "torch"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out
