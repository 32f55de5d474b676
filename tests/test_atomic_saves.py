"""Crash-atomic saves: a save killed at *every* step leaves the previous complete state or the new one.

Each save kind (a training checkpoint, the final checkpoint that drops the training state, a forget
run's checkpoint with its receipt and metrics, a protection, a dataset cache, a report folder) is first
run once on top of a previous state to count its low-level file operations (each write and fsync,
rename, replace, unlink, rmdir, and the folder exchange), N of them. Then, for k = 1..N, the same save
is killed at its k-th operation: that operation and every later one raise, as if the process had died
there (no cleanup runs). The folder must then load and equal the previous or the new state bit for bit,
and the save, run again, must complete and leave exactly the files of the new state (`finish_commit`,
which completes a save killed past its commit point, is checked on the way). A last test kills
real processes with SIGKILL in the middle of checkpoint saves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from mmunlearn import fileio
from mmunlearn.checkpoint import load_checkpoint, save_checkpoint, state_sha256
from mmunlearn.data import load_dataset
from mmunlearn.data.builder import DATASETS, BuiltData, DatasetBuilder
from mmunlearn.data.core import SplitData
from mmunlearn.data.store import build_dataset, cache_path, verify_cache
from mmunlearn.fileio import finish_commit, json_bytes, listed_files, sha256_file
from mmunlearn.models import build_model
from mmunlearn.protectors.protected import ProtectedDataset
from mmunlearn.receipts import verify_run
from mmunlearn.reporting import write_report_folder

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
OPERATIONS = ("write", "fsync", "replace", "rename", "unlink", "remove", "rmdir")
"""The ``os`` functions counted as kill points (``Path.unlink`` and ``shutil.rmtree`` go through them)."""
KILL_POINTS: dict[str, int] = {}


class Killed(BaseException):
    """The injected crash (a BaseException, so no ``except Exception`` of the code under test hides it)."""


class Faults:
    """Counts the low-level file operations and kills the process-to-be at the ``kill_at``-th one."""

    def __init__(self, kill_at: int | None = None) -> None:
        self.calls, self.kill_at, self.dead = 0, kill_at, False

    def wrap(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        def operation(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise Killed(f"{name} after the kill")
            self.calls += 1
            if self.calls == self.kill_at:
                self.dead = True
                if name == "write":  # a write cut short: half the bytes reach the file
                    fn(args[0], bytes(args[1])[: len(args[1]) // 2])
                raise Killed(f"killed at operation {self.calls} ({name})")
            return fn(*args, **kwargs)

        return operation


def run_with_faults(monkeypatch: pytest.MonkeyPatch, save: Callable[[], object], kill_at: int | None) -> Faults:
    """Run ``save`` with the operations counted; with ``kill_at``, assert that it was killed there."""
    faults = Faults(kill_at)
    with monkeypatch.context() as m:
        for name in OPERATIONS:
            m.setattr(os, name, faults.wrap(getattr(os, name), name))
        m.setattr(fileio, "_exchange", faults.wrap(fileio._exchange, "exchange"))
        if kill_at is None:
            save()
        else:
            with pytest.raises(Killed):
                save()
    return faults


@dataclass(frozen=True)
class SaveKind:
    """One kind of save: how to write a state, read what the folder holds, and which files it leaves."""

    save: Callable[[Path, str], object]  # (root, "old" | "new")
    read: Callable[[Path], Any]  # what the saved folder under root holds, comparable with ==
    files: Callable[[str], set[str]]  # the names a complete state leaves in the saved folder
    folder: Callable[[Path], Path] = lambda root: root  # the saved folder under root


def kill_at_every_step(kind: SaveKind, root: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Kill the old -> new save at each of its operations; check every outcome. Returns the kill points."""
    kind.save(root / "count", "old")
    old = kind.read(root / "count")
    n = run_with_faults(monkeypatch, lambda: kind.save(root / "count", "new"), None).calls
    new = kind.read(root / "count")
    assert old != new and n > 0
    outcomes = []
    for k in range(1, n + 1):
        here = root / f"k{k}"
        kind.save(here, "old")
        run_with_faults(monkeypatch, lambda r=here: kind.save(r, "new"), k)
        state = kind.read(here)
        assert state in (old, new), f"killed at operation {k} of {n}: the folder holds neither state"
        outcomes.append("new" if state == new else "old")
        finish_commit(kind.folder(here))  # what a later writer may do: every listed file to its plain name
        assert kind.read(here) == state
        listed = listed_files(kind.folder(here))
        assert all(sha256_file(kind.folder(here) / name) == digest for name, digest in listed.items())
        kind.save(here, "new")
        assert kind.read(here) == new
        folder = kind.folder(here)
        assert {p.name for p in folder.iterdir()} == kind.files("new"), f"leftovers after a kill at {k}"
        assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".")], f"leftovers at {k}"
    assert outcomes[0] == "old" and outcomes[-1] == "new", outcomes  # both sides of the commit were hit
    return n


# -- the save kinds ------------------------------------------------------------------------------------
def model(seed: int) -> Any:
    return build_model("multimodal-classifier", seed, **CFG)


def tensors(d: dict[str, torch.Tensor]) -> dict[str, bytes]:
    """Tensors as exact bytes (dtype and shape included), so == is bit-for-bit."""
    return {k: (str(v.dtype), tuple(v.shape), v.contiguous().numpy().tobytes()) for k, v in d.items()}


def train_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"opt.state.0.exp_avg": torch.randn(64, generator=g), "opt.step": torch.tensor([seed])}


def read_checkpoint(folder: Path) -> Any:
    ck = load_checkpoint(folder)
    state = None if ck.train_state is None else tensors(ck.train_state)
    return tensors(ck.model.state_dict()), state, ck.manifest.get("training")


def checkpoint_kind(final: bool) -> SaveKind:
    def save(folder: Path, which: str) -> None:
        seed = 0 if which == "old" else 1
        drop = final and which == "new"
        training = {"epoch": seed + 1, "finished": drop}
        save_checkpoint(
            folder, model(seed), train_state=None if drop else train_state(seed), extra={"training": training}
        )

    names = {"manifest.json", "model.safetensors"}
    return SaveKind(
        save, read_checkpoint, lambda w: names if final and w == "new" else {*names, "train_state.safetensors"}
    )


def forget_run_kind() -> SaveKind:
    """A forget run's checkpoint: the weights, receipt.json and metrics.json in one commit."""

    def save(folder: Path, which: str) -> None:
        m = model(0 if which == "old" else 1)
        metrics = [{"name": "acc", "split": "test", "value": 0.5 if which == "old" else 0.7}]
        receipt = {"model_after": {"sha256": state_sha256(m)}, "metrics": metrics, "request": {"reason": which}}
        files = {"receipt.json": json_bytes(receipt), "metrics.json": json_bytes(metrics)}
        save_checkpoint(folder, m, provenance={"unlearned": {"method": "x"}}, attachments=files)

    def read(folder: Path) -> Any:
        checks = verify_run(folder)
        assert all(c.passed for c in checks), [c for c in checks if not c.passed]
        receipt = json.loads(
            fileio.resolve_file(folder, "receipt.json", fileio.listed_files(folder)["receipt.json"]).read_text()
        )
        return read_checkpoint(folder), receipt

    return SaveKind(save, read, lambda _: {"manifest.json", "model.safetensors", "receipt.json", "metrics.json"})


def protection(which: str) -> ProtectedDataset:
    g = torch.Generator().manual_seed(0 if which == "old" else 1)
    n = 20 if which == "old" else 24
    noise = torch.randint(-8, 9, (n, 1, 4, 4), generator=g).to(torch.int8)
    ids = [f"s{i}" for i in range(n)]
    return ProtectedDataset(ids, noise, None, 8 / 255, "random_noise", {"seed": n}, {"name": "toy", "n": n})


def protection_kind() -> SaveKind:
    def read(folder: Path) -> Any:
        p = ProtectedDataset.load(folder)
        assert p.noise is not None
        return p.ids, tensors({"noise": p.noise}), p.config, p.source

    files = {"manifest.json", "protection.safetensors", "ids.json"}
    return SaveKind(lambda f, w: protection(w).save(f), read, lambda _: files)


class Variant(DatasetBuilder):
    """A tiny builder whose output depends on ``variant`` (the old and the new content of one cache)."""

    name = "test-atomic"
    modalities = ("image", "audio")
    num_classes = 2
    variant = 0
    builds = 0

    def build(self, size: str, seed: int, progress: bool = False) -> BuiltData:
        Variant.builds += 1
        g = torch.Generator().manual_seed(seed + 100 * Variant.variant)
        splits = {}
        for s, n in (("train", 6 + Variant.variant), ("val", 2), ("test", 3)):
            ids = [f"{s}-{i}" for i in range(n)]
            image = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
            splits[s] = SplitData(
                ids, {"image": image, "audio": torch.randn(n, 3, 5, generator=g)}, torch.arange(n) % 2
            )
        return BuiltData(splits, meta={"variant": Variant.variant})


def cache_kind() -> SaveKind:
    """A dataset cache rebuilt (``force``) with other content; the folder is ``<root>/test-atomic/...``."""

    def save(root: Path, which: str) -> None:
        Variant.variant = 0 if which == "old" else 1
        build_dataset("test-atomic", "small", 0, root, force=True)

    def read(root: Path) -> Any:
        path = cache_path("test-atomic", "small", 0, root)
        assert verify_cache(path) is None  # a complete cache: load_dataset will not rebuild it
        builds = Variant.builds
        d = load_dataset("test-atomic", "small", 0, root)
        assert Variant.builds == builds
        return [(s.ids, tensors(s.inputs), tensors({"y": s.labels})) for s in (d.train, d.val, d.test)], d.meta

    files = {
        "manifest.json",
        "meta.json",
        *(f"{s}.{e}" for s in ("train", "val", "test") for e in ("safetensors", "json")),
    }
    return SaveKind(save, read, lambda _: files, lambda root: cache_path("test-atomic", "small", 0, root))


def report_kind() -> SaveKind:
    """A report folder (its files and figures) replaced by a newer report."""

    def contents(which: str) -> dict[str, bytes]:
        n = 2 if which == "old" else 3
        return {
            "report.md": f"# {which}\n".encode(),
            "summary.csv": f"which\n{which}\n".encode(),
            "index.html": f"<p>{which}</p>".encode(),
            **{f"figures/{i:02d}-plot.png": b"\x89PNG" + f"{which}{i}".encode() for i in range(n)},
        }

    def read(folder: Path) -> Any:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    return SaveKind(
        lambda root, w: write_report_folder(root / "report", contents(w)),
        lambda root: read(root / "report"),
        lambda _: {"report.md", "summary.csv", "index.html", "figures"},
        lambda root: root / "report",
    )


KINDS = {
    "checkpoint with train state": lambda: checkpoint_kind(final=False),
    "final checkpoint (train state dropped)": lambda: checkpoint_kind(final=True),
    "forget run (weights + receipt + metrics)": forget_run_kind,
    "protection": protection_kind,
    "dataset cache": cache_kind,
    "report folder": report_kind,
}


@pytest.fixture
def _variant_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATASETS._entries, "test-atomic", Variant)


@pytest.mark.usefixtures("_variant_builder")
@pytest.mark.parametrize("name", list(KINDS))
def test_a_save_killed_at_every_step_leaves_the_old_or_the_new_state(name, tmp_path, monkeypatch):
    if name == "report folder" and not _can_exchange(tmp_path):
        pytest.skip("this file system cannot exchange two folders atomically (renameat2)")
    n = kill_at_every_step(KINDS[name](), tmp_path, monkeypatch)
    KILL_POINTS[name] = n
    print(f"{name}: {n} kill points, each recovered")
    assert n >= 8


def _can_exchange(tmp: Path) -> bool:
    (tmp / "x").mkdir()
    (tmp / "y").mkdir()
    try:
        return fileio._exchange(tmp / "x", tmp / "y")
    finally:
        (tmp / "x").rmdir()
        (tmp / "y").rmdir()


def test_the_fault_counter_sees_every_kind_of_operation(tmp_path, monkeypatch):
    """The kill points are not vacuous: each operation the saves use is counted once."""
    f = tmp_path / "f"

    def each() -> None:
        fd = os.open(f, os.O_CREAT | os.O_WRONLY)
        os.write(fd, b"x")
        os.fsync(fd)
        os.close(fd)
        os.replace(f, tmp_path / "g")
        os.rename(tmp_path / "g", f)
        f.unlink()

    assert run_with_faults(monkeypatch, each, None).calls == 5


def test_files_and_folders_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        save_checkpoint(tmp_path / "ck", model(0))
        write_report_folder(tmp_path / "report", {"report.md": b"#\n", "figures/01-a.png": b"\x89PNG"})
    finally:
        os.umask(old)
    assert (tmp_path / "ck" / "model.safetensors").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "ck" / "manifest.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "report").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "report" / "figures" / "01-a.png").stat().st_mode & 0o777 == 0o640


def test_a_folder_with_other_files_is_written_file_by_file_and_they_stay(tmp_path):
    out = tmp_path / "docs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    write_report_folder(out, {"report.md": b"#\n", "figures/01-a.png": b"\x89PNG"})
    assert (out / "notes.txt").read_text() == "mine" and (out / "report.md").read_bytes() == b"#\n"


def test_an_old_format_checkpoint_still_loads(tmp_path):
    """Folders saved before the commit protocol (files under their plain names only) load unchanged."""
    m = model(0)
    save_checkpoint(tmp_path / "ck", m)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["manifest.json", "model.safetensors"]
    assert state_sha256(load_checkpoint(tmp_path / "ck").model) == state_sha256(m)


# -- real kills ----------------------------------------------------------------------------------------
SAVER = textwrap.dedent(
    """
    import sys, torch
    from mmunlearn.checkpoint import save_checkpoint
    from mmunlearn.models import build_model
    cfg = {cfg}
    m = build_model("multimodal-classifier", 0, **cfg)
    for i in range(1, 10**6):
        with torch.no_grad():
            for p in m.parameters():
                p.fill_(float(i))
        state = {{"step": torch.full((4096,), float(i))}}
        save_checkpoint(sys.argv[1], m, train_state=state if i % 3 else None, extra={{"training": {{"epoch": i}}}})
        if i == 1:
            print("saved", flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_during_checkpoint_saves_leaves_a_consistent_checkpoint(tmp_path):
    """A process saving checkpoints in a loop, SIGKILLed at random moments: each time it loads, consistent."""
    folder, seen = tmp_path / "ck", set()
    for attempt in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVER.format(cfg=CFG), str(folder)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "saved"
        time.sleep(0.05 + 0.07 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = load_checkpoint(folder)
        epoch = ck.manifest["training"]["epoch"]
        assert all(bool((p == float(epoch)).all()) for p in ck.model.parameters()), "weights of another save"
        if epoch % 3:
            assert ck.train_state is not None and bool((ck.train_state["step"] == float(epoch)).all())
        else:
            assert ck.train_state is None
        seen.add(epoch)
    assert len(seen) >= 2  # the kills landed in different saves
