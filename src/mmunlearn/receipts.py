"""Receipts bound to their model: the files of a forget run, the optional keyed signature, `verify_run`.

A forget run's folder is one crash-atomic save (`mmunlearn.fileio.commit_folder`) of the new weights,
``receipt.json`` and ``metrics.json``, under one ``manifest.json`` that lists the SHA-256 of each:
a registered model's checkpoint (``mmunlearn-checkpoint/1``), or for a user's model the weights as
safetensors with a run manifest (``mmunlearn-run/1``). The receipt names the hash of the weights it
describes (``model_after.sha256``), so a receipt next to other weights is detected; an HMAC-SHA256 of
the canonical receipt JSON, keyed with a file the user keeps, detects an edited receipt even when the
manifest was re-hashed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import FORMAT as CHECKPOINT_FORMAT
from .checkpoint import WEIGHTS, load_checkpoint, read_manifest, state_sha256
from .errors import CheckpointError, ConfigError
from .fileio import MANIFEST, canonical_json, commit_folder, listed_files, resolve_file, sha256_file
from .versions import versions

RECEIPT = "receipt.json"
METRICS = "metrics.json"
RUN_FORMAT = "mmunlearn-run/1"
SIGNATURE = "signature"
ALGORITHM = "hmac-sha256"
OK, FAILED, UNVERIFIED = "ok", "FAILED", "unverified"


# -- signing -------------------------------------------------------------------------------------------
def read_key(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a signing key file.

    Raises:
        ConfigError: a missing file, a folder, an unreadable or an empty file.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"key file {path} is a folder, not a file")
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"key file {path} not found") from None
    except OSError as e:
        raise ConfigError(f"cannot read key file {path}: {e.strerror}") from e
    if not key:
        raise ConfigError(f"key file {path} is empty")
    return key


def key_id(key: bytes) -> str:
    """A short public name of a key (tells a wrong key from an edited receipt)."""
    return hashlib.sha256(b"mmunlearn receipt key id\0" + key).hexdigest()[:16]


def receipt_hmac(receipt: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of the canonical JSON of ``receipt`` without its signature."""
    unsigned = {k: v for k, v in receipt.items() if k != SIGNATURE}
    return hmac.new(key, canonical_json(unsigned).encode(), hashlib.sha256).hexdigest()


def sign_receipt(receipt: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """``receipt`` with a ``signature`` field: the algorithm, the key id and the HMAC."""
    unsigned = {k: v for k, v in receipt.items() if k != SIGNATURE}
    return {**unsigned, SIGNATURE: {"algorithm": ALGORITHM, "key_id": key_id(key), "hmac": receipt_hmac(unsigned, key)}}


def read_receipt(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The receipt of a forget run, as its manifest lists it (also right after a save killed past its commit).

    Raises:
        CheckpointError: no receipt, or one that is not a JSON object.
    """
    receipt, problem = _read_receipt(Path(folder), listed_files(Path(folder)))
    if receipt is None:
        raise CheckpointError(f"{folder}: {problem}")
    return receipt


# -- saving a user's model -----------------------------------------------------------------------------
def save_run(folder: str | os.PathLike[str], weights: bytes, attachments: Mapping[str, bytes]) -> dict[str, Any]:
    """Save a user's (unregistered) model's weights and the run's files in one crash-atomic commit.

    Args:
        folder: the run folder.
        weights: the model's state dict as safetensors bytes.
        attachments: file name -> bytes (``receipt.json``, ``metrics.json``).

    Returns:
        The ``mmunlearn-run/1`` manifest written.
    """
    manifest = {"format": RUN_FORMAT, "versions": versions()}
    return commit_folder(folder, [(WEIGHTS, weights), *attachments.items()], manifest, owned=(WEIGHTS,))


# -- verification --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One check of `verify_run`.

    Attributes:
        name: what was checked (``"file model.safetensors"``, ``"receipt binds the weights"``...).
        status: ``ok``, ``FAILED``, or ``unverified`` (a signature with no key to check it).
        detail: one line about what was compared.
    """

    name: str
    status: str
    detail: str

    @property
    def passed(self) -> bool:
        """Anything but FAILED."""
        return self.status != FAILED

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"name": self.name, "status": self.status, "detail": self.detail}


def verify_run(folder: str | os.PathLike[str], key: bytes | None = None) -> list[Check]:
    """Check a forget run's weights, manifest and receipt against each other.

    Checks the manifest, the SHA-256 of every file it lists, that it covers the weights, the receipt
    and the metrics, that a registered checkpoint loads, that ``receipt.model_after.sha256`` is the hash
    of the weights there, that the receipt's metrics equal ``metrics.json``, and the signature.

    Args:
        folder: the ``--out`` folder of ``mmunlearn forget`` (or of `mmunlearn.forget`).
        key: the signing key's bytes (without it a signature is reported as unverified).

    Returns:
        The checks, in order; the run is intact when every check `Check.passed`.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no run folder at {folder}")
    manifest, first = _manifest_check(folder)
    if manifest is None:
        return [first]
    files: dict[str, str] = manifest["files"]
    actual = {name: _actual_hash(folder, name, digest) for name, digest in sorted(files.items())}
    checks = [first, *(_file_check(name, files[name], actual[name]) for name in actual), _coverage_check(files)]
    receipt, problem = _read_receipt(folder, files)
    if receipt is None:
        return [*checks, Check("receipt", FAILED, problem)]
    if manifest.get("format") == CHECKPOINT_FORMAT:
        checks.append(_model_check(folder, receipt))
    checks += [_binding_check(receipt, actual.get(WEIGHTS)), _metrics_check(folder, files, receipt)]
    return [*checks, _signature_check(receipt, key)]


def _manifest_check(folder: Path) -> tuple[dict[str, Any] | None, Check]:
    path = folder / MANIFEST
    name = "manifest"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, Check(name, FAILED, f"no {MANIFEST} in {folder}: not the folder of a forget run")
    except (OSError, ValueError) as e:
        return None, Check(name, FAILED, f"unreadable {path}: {e}")
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt not in (CHECKPOINT_FORMAT, RUN_FORMAT) or not isinstance(manifest.get("files"), dict):
        return None, Check(name, FAILED, f"{path} is neither a checkpoint nor a run manifest (format {fmt!r})")
    if fmt == CHECKPOINT_FORMAT:
        try:
            read_manifest(folder)
        except CheckpointError as e:
            return None, Check(name, FAILED, str(e))
    return manifest, Check(name, OK, f"{MANIFEST}: {fmt}, {len(manifest['files'])} files listed")


def _actual_hash(folder: Path, name: str, digest: str) -> str | None:
    path = resolve_file(folder, name, str(digest))
    return sha256_file(path) if path.is_file() else None


def _file_check(name: str, listed: str, actual: str | None) -> Check:
    if actual is None:
        return Check(f"file {name}", FAILED, "missing")
    if actual != listed:
        return Check(f"file {name}", FAILED, f"SHA-256 {actual[:16]}... is not the manifest's {str(listed)[:16]}...")
    return Check(f"file {name}", OK, f"SHA-256 {actual[:16]}... as in the manifest")


def _coverage_check(files: Mapping[str, str]) -> Check:
    missing = [n for n in (WEIGHTS, RECEIPT, METRICS) if n not in files]
    if missing:
        return Check("coverage", FAILED, f"the manifest does not list {', '.join(missing)}: not saved with the model")
    return Check("coverage", OK, f"the manifest covers {WEIGHTS}, {RECEIPT} and {METRICS}")


def _read_json(folder: Path, name: str, files: Mapping[str, str]) -> Any:
    return json.loads(resolve_file(folder, name, str(files.get(name, ""))).read_text(encoding="utf-8"))


def _read_receipt(folder: Path, files: Mapping[str, str]) -> tuple[dict[str, Any] | None, str]:
    try:
        receipt = _read_json(folder, RECEIPT, files)
    except FileNotFoundError:
        return None, f"no {RECEIPT}"
    except (OSError, ValueError) as e:
        return None, f"unreadable {RECEIPT}: {e}"
    if not isinstance(receipt, dict):
        return None, f"{RECEIPT} is not a JSON object"
    return receipt, ""


def _claimed(receipt: Mapping[str, Any]) -> str | None:
    after = receipt.get("model_after")
    return str(after.get("sha256")) if isinstance(after, dict) and after.get("sha256") else None


def _model_check(folder: Path, receipt: Mapping[str, Any]) -> Check:
    try:
        ckpt = load_checkpoint(folder)
    except CheckpointError as e:
        return Check("model", FAILED, str(e))
    state = state_sha256(ckpt.model)
    if state != _claimed(receipt):
        return Check("model", FAILED, f"loads as {ckpt.model.kind}, but its weights hash to {state[:16]}...")
    return Check("model", OK, f"loads as {ckpt.model.kind}; its state hashes to receipt.model_after.sha256")


def _binding_check(receipt: Mapping[str, Any], weights: str | None) -> Check:
    name, claimed = "receipt binds the weights", _claimed(receipt)
    if claimed is None:
        return Check(name, FAILED, f"{RECEIPT} names no model_after.sha256")
    if weights is None:
        return Check(name, FAILED, f"no {WEIGHTS} to compare with")
    if claimed != weights:
        return Check(
            name, FAILED, f"receipt.model_after.sha256 {claimed[:16]}... is not the weights' {weights[:16]}...: "
            "the receipt describes another model"
        )  # fmt: skip
    return Check(name, OK, f"receipt.model_after.sha256 = SHA-256 of {WEIGHTS} ({weights[:16]}...)")


def _metrics_check(folder: Path, files: Mapping[str, str], receipt: Mapping[str, Any]) -> Check:
    name = "receipt metrics"
    try:
        stored = _read_json(folder, METRICS, files)
    except (OSError, ValueError) as e:
        return Check(name, FAILED, f"cannot read {METRICS}: {e}")
    claimed = receipt.get("metrics")
    if canonical_json(claimed) == canonical_json(stored):
        return Check(name, OK, f"the receipt's {len(stored)} metrics equal {METRICS}")
    return Check(name, FAILED, f"the receipt's metrics differ from {METRICS}: {_first_difference(claimed, stored)}")


def _first_difference(claimed: Any, stored: Any) -> str:
    if not isinstance(claimed, list) or not isinstance(stored, list) or len(claimed) != len(stored):
        return "not the same list of metrics"
    for a, b in zip(claimed, stored, strict=True):
        if canonical_json(a) != canonical_json(b):
            label = f"{b.get('name')}/{b.get('split')}" if isinstance(b, dict) else "an entry"
            return f"{label} is {_value(a)} in the receipt, {_value(b)} in {METRICS}"
    return "not the same list of metrics"


def _value(metric: Any) -> Any:
    return metric.get("value") if isinstance(metric, dict) else metric


def _signature_check(receipt: Mapping[str, Any], key: bytes | None) -> Check:
    name, sig = "signature", receipt.get(SIGNATURE)
    if not isinstance(sig, dict):
        if key is not None:
            return Check(name, FAILED, "the receipt is not signed, but a key was given")
        return Check(name, OK, "the receipt is not signed (sign it with `mmunlearn forget --sign-key FILE`)")
    if key is None:
        return Check(
            name, UNVERIFIED, f"signed ({sig.get('algorithm')}, key id {sig.get('key_id')}); give --key to check"
        )
    if sig.get("algorithm") != ALGORITHM:
        return Check(name, FAILED, f"unknown signature algorithm {sig.get('algorithm')!r}")
    if sig.get("key_id") != key_id(key):
        return Check(name, FAILED, f"signed with another key (key id {sig.get('key_id')}, given {key_id(key)})")
    if not hmac.compare_digest(str(sig.get("hmac")), receipt_hmac(receipt, key)):
        return Check(name, FAILED, "the HMAC does not match: the receipt was changed after it was signed")
    return Check(name, OK, f"HMAC-SHA256 matches (key id {key_id(key)})")
