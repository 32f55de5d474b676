"""A min-min protection checkpoints every outer iteration and resumes bit-identically after a kill."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from caption_toy import make_captions

from mmunlearn.errors import CheckpointError
from mmunlearn.protectors import PROTECTORS, ProtectedDataset
from sigkill import kill_after

HERE = Path(__file__).resolve().parent
# 16 pairs at batch 8: 2 surrogate steps and 2 PGD/HotFlip batches per outer iteration
MEM = {"outer_iters": 6, "trigger_iters": 2, "trigger_len": 2, "surrogate_steps": 2, "pgd_steps": 1,
       "hotflip_candidates": 2, "batch_size": 8, "progress": False}  # fmt: skip


def _progress(work: Path) -> int:
    try:
        return int(json.loads((work / "manifest.json").read_text())["progress"])
    except (OSError, ValueError, KeyError):
        return 0


def _same(a: ProtectedDataset, b: ProtectedDataset) -> bool:
    """Same noise, triggers and per-iteration history (NaN figures compare equal)."""
    tensors = all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in ((a.noise, b.noise), (a.triggers, b.triggers))
    )
    return tensors and json.dumps(a.stats["history"], sort_keys=True) == json.dumps(b.stats["history"], sort_keys=True)


KILL_SCRIPT = textwrap.dedent(
    """
    import importlib, sys, time
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {here!r})
    from caption_toy import make_captions
    from mmunlearn.protectors import PROTECTORS
    M = importlib.import_module("mmunlearn.protectors.minmin")
    fast_step = M.optimizer_step
    def slow_step(*a, **k):
        time.sleep(0.1)  # slow enough to be killed mid-run
        return fast_step(*a, **k)
    M.optimizer_step = slow_step
    PROTECTORS.create("mem", **{mem!r}).protect(make_captions(), work_dir=sys.argv[1])
    """
)


def test_a_killed_mem_protection_resumes_to_the_same_result(tmp_path):
    work = tmp_path / "work"
    script = KILL_SCRIPT.format(here=str(HERE), mem=MEM)
    killed_at = kill_after(script, work, _progress, 2)
    assert 2 <= killed_at < MEM["outer_iters"], f"killed after iteration {killed_at}: not interrupted mid-way"
    resumed = PROTECTORS.create("mem", **MEM).protect(make_captions(), work_dir=work)
    assert _progress(work) == MEM["outer_iters"]
    straight = PROTECTORS.create("mem", **MEM).protect(make_captions())
    assert _same(resumed, straight)
    assert [h["iter"] for h in resumed.stats["history"]] == list(range(1, MEM["outer_iters"] + 1))


class Interrupt(Exception):
    pass


@pytest.mark.parametrize(("name", "config"), [
    ("em", {k: v for k, v in MEM.items() if k not in ("trigger_iters", "trigger_len", "hotflip_candidates")}),
    ("trigger_only", {**{k: v for k, v in MEM.items() if k != "pgd_steps"}, "trigger_iters": 6}),
])  # fmt: skip
def test_an_interrupted_protection_resumes_to_the_same_result(tmp_path, monkeypatch, name, config):
    import mmunlearn.protectors.minmin as M

    config = {**config, "stop_accuracy": None} if name == "em" else config
    straight = PROTECTORS.create(name, **config).protect(make_captions())
    calls, real = {"n": 0}, M.inner_pass

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Interrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(M, "inner_pass", interrupted)
    with pytest.raises(Interrupt):
        PROTECTORS.create(name, **config).protect(make_captions(), work_dir=tmp_path)
    monkeypatch.setattr(M, "inner_pass", real)
    assert _progress(tmp_path) == 3
    assert _same(PROTECTORS.create(name, **config).protect(make_captions(), work_dir=tmp_path), straight)


def test_an_early_stop_is_remembered(tmp_path, monkeypatch):
    import mmunlearn.protectors.minmin as M

    config = {k: v for k, v in MEM.items() if k not in ("trigger_iters", "trigger_len", "hotflip_candidates")}
    config["stop_accuracy"] = 1e-6  # stops after the first outer iteration
    first = PROTECTORS.create("em", **config).protect(make_captions(), work_dir=tmp_path)
    assert len(first.stats["history"]) == 1 and _progress(tmp_path) == 1
    monkeypatch.setattr(M, "inner_pass", lambda *a, **k: pytest.fail("a stopped run must not run again"))
    assert _same(PROTECTORS.create("em", **config).protect(make_captions(), work_dir=tmp_path), first)


def test_another_runs_work_is_replaced_not_resumed(tmp_path, caplog):
    config = {**MEM, "outer_iters": 1, "trigger_iters": 1}
    PROTECTORS.create("mem", **config).protect(make_captions(), work_dir=tmp_path)
    with caplog.at_level("WARNING"):
        other = PROTECTORS.create("mem", **{**config, "seed": 1}).protect(make_captions(), work_dir=tmp_path)
    assert "unfinished work of another protect run; starting over" in caplog.text
    assert _same(other, PROTECTORS.create("mem", **{**config, "seed": 1}).protect(make_captions()))
    (tmp_path / "state.safetensors").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match="missing or damaged"):
        PROTECTORS.create("mem", **{**config, "seed": 1}).protect(make_captions(), work_dir=tmp_path)
