"""``mmunlearn forget`` on a checkpoint folder: how the CLI names a request, and the call behind the command."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import WEIGHTS, load_checkpoint, read_manifest
from .data import DATASETS, DatasetRef, DatasetSplits, ForgetRequest, MultimodalDataset
from .errors import CheckpointError, ConfigError, DataError, MMUnlearnError
from .models.factory import build_from_factory, load_weights
from .models.hf import HFDualEncoder, splits_for_model
from .outputs import WORK_DIR, read_text_file
from .pipeline import ForgetResult, run_request
from .receipts import read_key, read_receipt
from .recipes import recipe_for_data
from .unlearn import UNLEARNERS, Unlearner, retrain_config


@dataclass(frozen=True)
class RequestSpec:
    """How the CLI names a request; exactly one selector is set.

    Attributes:
        fraction: a seeded random share of the training samples.
        ids_file: a text file with one sample id per line.
        identities: group names (fonts, writers, voices; the emoji of emoji-captions).
        label: one class.
        concept: every image-caption pair whose caption names this concept.
        modalities: what to forget of them (``("all",)``: every modality of the training set; None: the
            images of a classifier's samples, both modalities of image-caption pairs).
        reason: recorded in the receipt.
        seed: seed of the random selection.
    """

    fraction: float | None = None
    ids_file: str | None = None
    identities: tuple[str, ...] = ()
    label: int | None = None
    concept: str | None = None
    modalities: tuple[str, ...] | None = None
    reason: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        """Check the spec before any model or data is loaded (the ids file is read here too)."""
        if self.fraction is not None and not 0 < self.fraction < 1:
            raise DataError(f"forget fraction must be in (0, 1), got {self.fraction}")
        if self.seed < 0:
            raise DataError(f"--request-seed must be >= 0, got {self.seed}")
        if self.label is not None and self.label < 0:
            raise DataError(f"--forget-class must be >= 0, got {self.label}")
        if self.concept is not None and not self.concept.strip():
            raise DataError("--concept is empty: name a concept, e.g. 'red circle'")
        if self.ids_file is not None:
            read_ids(Path(self.ids_file))

    def build(self, train: MultimodalDataset) -> ForgetRequest:
        """Resolve the spec against a training set."""
        selectors = (self.fraction, self.ids_file, self.identities or None, self.label, self.concept)
        if sum(s is not None for s in selectors) != 1:
            raise DataError(
                "give exactly one of --forget-fraction, --forget-ids, --forget-identity/--group, --forget-class, "
                "--concept"
            )
        mods = default_modalities(train) if self.modalities is None else self.modalities
        mods = tuple(train.modalities) if mods == ("all",) else mods
        if self.concept is not None:
            return ForgetRequest.concept_pairs(train, self.concept, mods, self.reason)
        if self.fraction is not None:
            return ForgetRequest.random_fraction(train, self.fraction, self.seed, mods, self.reason)
        if self.identities:
            return ForgetRequest.identities(train, self.identities, mods, self.reason)
        if self.label is not None:
            return ForgetRequest.one_class(train, self.label, mods, self.reason)
        return ForgetRequest(tuple(read_ids(Path(self.ids_file or ""))), frozenset(mods), self.reason)


def default_modalities(train: MultimodalDataset) -> tuple[str, ...]:
    """What a request forgets when it does not say: a classifier's visual modality, its images or else its
    video (visual unlearning), or both modalities of image-caption pairs (the association itself)."""
    if train.captions is not None:
        return tuple(train.modalities)
    return ("video",) if "video" in train.modalities and "image" not in train.modalities else ("image",)


def read_ids(path: Path) -> list[str]:
    """Sample ids from a UTF-8 text file, one per line (blank lines and ``#`` comments ignored).

    Raises:
        DataError: no such file, a folder, or a file that is not UTF-8 text.
    """
    text = read_text_file(path, "ids file")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def splits_of(manifest: dict[str, Any], data_dir: str | os.PathLike[str] | None) -> DatasetSplits:
    """The dataset a checkpoint was trained on, from its provenance (checked against the model first)."""
    return dataset_of(manifest).load(data_dir)


def splits_for(model: Any, splits: DatasetSplits) -> DatasetSplits:
    """``splits`` as ``model`` reads them: re-encoded in its own vocabulary when it has its own tokenizer
    (a Hugging Face model), unchanged otherwise."""
    return splits_for_model(splits, model) if isinstance(model, HFDualEncoder) else splits


def dataset_of(manifest: dict[str, Any]) -> DatasetRef:
    """The dataset a checkpoint's provenance names, checked before anything is built or decoded.

    Raises:
        CheckpointError: no dataset recorded, an unknown one, or a built-in one the model cannot have been
            trained on (other modalities or another number of classes).
    """
    prov = manifest.get("provenance", {})
    if "dataset" not in prov:
        raise CheckpointError(
            "the checkpoint records no dataset in its provenance; cannot tell what it was trained on "
            "(name it with --dataset)"
        )
    try:
        ref = DatasetRef.from_provenance(prov)
    except (MMUnlearnError, TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint's provenance names an unusable dataset: {e}") from e
    if ref.layout is None:
        check_fits(manifest, ref.name)
    return ref


def check_fits(manifest: dict[str, Any], name: str) -> None:
    """Refuse a built-in dataset the checkpoint's registered model cannot have been trained on.

    Raises:
        CheckpointError: other modalities or another number of classes than the model's.
    """
    builder = DATASETS.get(name)
    config = manifest.get("config") or {}
    needs = set(config.get("input_shapes") or {}) or ({"image", "text"} if "vocab" in config else set())
    classes = config.get("num_classes")
    if not needs <= set(getattr(builder, "modalities", ())) or classes not in (
        None,
        getattr(builder, "num_classes", None),
    ):
        model = f"{manifest.get('model')} of {'+'.join(sorted(needs))}" + (f", {classes} classes" if classes else "")
        raise CheckpointError(
            f"the checkpoint's provenance names dataset {name!r}, but its model ({model}) cannot have been "
            "trained on it: the provenance was edited or the folder holds another model"
        )


def original_of(
    model_path: str | os.PathLike[str],
    *,
    factory: str | None = None,
    dataset: DatasetRef | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    replace: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """The original model and its manifest: a checkpoint folder (ours or a Hugging Face ``save_pretrained``
    one), or with ``factory`` (``package.module:function``) the user's module with the safetensors weights
    at ``model_path``. ``dataset`` names the training data when the model records none (a factory model
    or a Hugging Face folder); then the dataset's recipe stands in for the training recipe (retrain).
    ``replace``: ``dataset`` replaces the data the model records (evaluation on other data) instead of
    having to agree with it.

    Raises:
        CheckpointError: unreadable weights, or no dataset named anywhere.
        ConfigError: a factory that cannot be imported or built.
    """
    if factory is not None:
        model: Any = load_weights(build_from_factory(factory), model_path).to(device)
        manifest: dict[str, Any] = {"model": factory, "config": {}, "provenance": {}}
    else:
        ckpt = load_checkpoint(model_path, map_location=device)
        model, manifest = ckpt.model, ckpt.manifest
    if dataset is not None:
        recorded = manifest.get("provenance", {})
        if replace:
            recorded = {k: v for k, v in recorded.items() if k not in ("dataset", "size", "data_seed", "layout")}
        if "dataset" in recorded and DatasetRef.from_provenance(recorded) != dataset:
            raise CheckpointError(
                f"{model_path} records its training data ({recorded['dataset']}); --dataset names another one"
            )
        train = recorded.get("train") or recipe_for_data(dataset.load(data_dir)).train.identity()
        manifest = {**manifest, "provenance": {**dataset.provenance(), "train": train, **recorded}}
    dataset_of(manifest)
    return model, manifest


def make_unlearner(
    method: str, manifest: dict[str, Any], seed: int, overrides: dict[str, Any], progress: bool
) -> Unlearner[Any, Any]:
    """Instantiate a method; ``retrain`` trains with the original's recipe, read from the checkpoint."""
    stage = getattr(UNLEARNERS.get(method), "stage", "")
    if stage == "decoding-time":
        raise ConfigError(
            f"{method} is a decoding-time method: it changes no weight, it steers generation, and a folder "
            "cannot hold such an edit yet; run it from Python (mmunlearn.forget, which returns the edit) or "
            "in a bench grid"
        )
    base: dict[str, Any] = {"seed": seed, "progress": progress}
    if method == "retrain":
        base = retrain_config(manifest.get("provenance", {}).get("train", {}), progress=progress)
    return UNLEARNERS.create(method, **{**base, **overrides})


def forget(
    model_dir: str | os.PathLike[str],
    method: str,
    spec: RequestSpec,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
    original_metrics: bool = False,
    sign_key: str | os.PathLike[str] | None = None,
    factory: str | None = None,
    dataset: DatasetRef | None = None,
) -> ForgetResult:
    """Apply a forget request to a trained model and write the new checkpoint, metrics and receipt.

    ``sign_key``: a key file; the receipt then carries an HMAC-SHA256 keyed with its bytes. ``factory`` and
    ``dataset``: see `original_of` (a user's module, and the data of a model that records none).

    Everything is validated (request, method, config keys, modalities) before any work starts.

    Returns:
        The `ForgetResult`; ``out_dir`` holds the checkpoint, ``metrics.json`` and ``receipt.json``.
    """
    key = read_key(sign_key) if sign_key is not None else None
    model, manifest = original_of(model_dir, factory=factory, dataset=dataset, data_dir=data_dir, device=device)
    splits = splits_for(model, splits_of(manifest, data_dir))
    request = spec.build(splits.train)
    unlearner = make_unlearner(method, manifest, seed, overrides or {}, progress)
    work = Path(out_dir) / WORK_DIR  # per-epoch checkpoints: a killed run resumes; deleted once saved
    result = run_request(
        model, splits.train, request, unlearner,
        validation=splits.val, test=splits.test, original_metrics=original_metrics,
        out_dir=out_dir, provenance=manifest.get("provenance", {}), model_path=model_dir, sign_key=key,
        work_dir=work,
    )  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return result


def load_receipt(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the receipt of a forget run."""
    return read_receipt(folder)


def completed_forget(
    out_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    method: str,
    spec: RequestSpec,
    *,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any] | None:
    """The receipt in ``out_dir`` when it holds this very forget run, finished; else None.

    "This run" means the same original weights, method, full config and resolved request; the receipt
    must also describe the weights saved next to it. Nothing is trained; the dataset is loaded (from the
    cache) to resolve the request.
    """
    try:
        receipt = read_receipt(out_dir)  # as the manifest lists it, also after a save killed past its commit
        saved = read_manifest(out_dir)["files"][WEIGHTS]
        manifest = read_manifest(model_dir)
        original = manifest["files"][WEIGHTS]
    except (OSError, ValueError, KeyError, TypeError, CheckpointError):
        return None
    config = dataclasses.asdict(make_unlearner(method, manifest, seed, overrides or {}, False).config)
    config.pop("progress", None)
    same = (
        isinstance(receipt, dict)
        and receipt.get("method", {}).get("name") == method
        and receipt["method"].get("config") == json.loads(json.dumps(config))
        and receipt.get("model_before", {}).get("sha256") == original
        and receipt.get("model_after", {}).get("sha256") == saved
    )
    if not same:
        return None
    request = spec.build(splits_of(manifest, data_dir).train)
    return receipt if receipt.get("request") == request.to_dict() else None
