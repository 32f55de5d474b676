"""The grid runner on real (tiny) grids: every cell once, shared models, failures recorded, resume after a kill."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from bench_tiny import run_tiny, write_config
from mmunlearn.benchmarking import ResultStore, aggregate, load_config, parse_config, read_records, run_bench
from mmunlearn.benchmarking.cells import bench_cells
from mmunlearn.benchmarking.unlearn_cell import UnlearnCells
from mmunlearn.records import SCENARIO_A_METRICS, SCENARIO_C_METRICS

RESUME_YAML = """\
name: resume
grids:
  - scenario: unlearn
    dataset: av-digits
    size: small
    seeds: [0]
    methods: [finetune, grad_ascent, neggrad_plus, random_label]
    overrides: {finetune: {epochs: 1}, random_label: {epochs: 1}}
    train: {epochs: 2}
  - scenario: protect
    dataset: shapes-captions
    size: small
    seeds: [0]
    protectors: [random_noise]
    victim_epochs: 1
"""

FLAKY_YAML = """\
name: flaky
grids:
  - scenario: unlearn
    dataset: av-digits
    size: small
    seeds: [0, 1]
    methods: [finetune]
    overrides: {finetune: {epochs: 1}}
    train: {epochs: 1}
"""


def values(records):
    """Cell -> (metric values, status): what must not depend on interruptions."""
    return {r.extras["cell"]: ([(m.name, m.split, m.value) for m in r.metrics], r.extras["status"]) for r in records}


def test_every_cell_once_with_its_coordinates(tiny_store):
    records = read_records(tiny_store, repair=False)
    config = load_config(tiny_store.parent / "bench.yaml")
    cells = Counter(r.extras["cell"] for r in records)
    assert set(cells) == {c.key for c in bench_cells(config)}
    assert set(cells.values()) == {1}
    assert all(r.extras["status"] == "ok" and r.extras["command"] == "mmunlearn bench bench.yaml" for r in records)
    unlearn = [r for r in records if r.scenario == "unlearn"]
    av = [r for r in unlearn if r.extras["dataset"] == "av-digits"]
    pairs = [r for r in unlearn if r.extras["dataset"] == "shapes-captions"]
    assert {r.extras["row"] for r in av} == {"original", "retrain", "ccu", "finetune", "ccu -a"}
    assert {r.extras["row"] for r in pairs} == {"original", "retrain", "finetune"}
    assert {r.method for r in unlearn if r.extras["row"] == "ccu -a"} == {"ccu"}
    assert all(len(r.extras["projection"]["x"]) == r.extras["request_size"] for r in unlearn)
    # the names configs are checked against
    assert {m.name for r in av for m in r.metrics} == {n for n in SCENARIO_A_METRICS if "video" not in n}
    assert {m.name for r in pairs for m in r.metrics} == set(SCENARIO_C_METRICS)
    assert {r.extras["concept"] for r in pairs} == {pairs[0].extras["concept"]} and pairs[0].extras["concept"]
    protect = [r for r in records if r.scenario == "protect"]
    assert {(r.extras["row"], r.extras["setting"]) for r in protect} == {
        (p, v) for p in ("clean", "random_noise") for v in ("cnn", "cnn+jpeg10")
    }
    assert all(r.config["victim"]["seed"] == 1 and r.config["protector"]["seed"] == r.seed == 0 for r in protect)
    ccu = next(r for r in unlearn if r.extras["row"] == "ccu")
    assert ccu.config["epochs"] == 1 and ccu.config["lambda_a"] == 1.0  # the resolved config, defaults included


def test_a_changed_default_changes_the_key(monkeypatch):
    from mmunlearn.unlearn.ccu import CCUConfig

    config = parse_config({"name": "t", "grids": [{"scenario": "unlearn", "methods": ["ccu", "finetune"]}]})
    before = {c.label: c.key for c in bench_cells(config)}
    monkeypatch.setattr(CCUConfig, "__init__", functools.partialmethod(CCUConfig.__init__, lambda_a=0.5))
    after = {c.label: c.key for c in bench_cells(config)}
    assert before["ccu"] != after["ccu"]  # a store never passes off the old default's result as the new one's
    assert before["finetune"] == after["finetune"] and before["original"] == after["original"]


def test_the_original_and_each_protection_are_made_once(tiny_store):
    work = tiny_store.parent / "work"
    assert len(list((work / "models").iterdir())) == 3  # one original per dataset and seed, shared by its rows
    assert len(list((work / "protections").iterdir())) == 2  # clean and random_noise, each met by 2 victims


def test_a_second_run_skips_every_finished_cell(tiny_store, tmp_path):
    store = ResultStore(tmp_path / "copy.jsonl")
    store.path.write_bytes(tiny_store.read_bytes())
    config = load_config(tiny_store.parent / "bench.yaml")
    outcome = run_bench(config, store, tiny_store.parent / "work", progress=False)
    assert (outcome.ran, outcome.failed) == (0, ())
    assert store.path.read_bytes() == tiny_store.read_bytes()


def test_a_failed_cell_is_recorded_and_the_grid_goes_on(tmp_path, monkeypatch, data_cache):
    data_dir = data_cache
    real = UnlearnCells.run

    def flaky(self, cell):
        if cell.label == "finetune" and cell.seed == 1:
            raise RuntimeError("simulated crash")
        return real(self, cell)

    monkeypatch.setattr(UnlearnCells, "run", flaky)
    path = run_tiny(tmp_path / "b", data_dir, FLAKY_YAML)
    records = read_records(path)
    failed = [r for r in records if r.extras["status"] == "failed"]
    assert len(failed) == 1 and failed[0].extras["error"] == "RuntimeError: simulated crash"
    assert "simulated crash" in failed[0].extras["traceback"]
    assert len(records) == len(bench_cells(load_config(tmp_path / "b" / "bench.yaml")))  # nothing else skipped
    (table, *_) = aggregate(records)
    assert table.failed and table.row("finetune").seeds == (0,)

    monkeypatch.setattr(UnlearnCells, "run", real)
    config = load_config(tmp_path / "b" / "bench.yaml")
    store = ResultStore(path)
    assert run_bench(config, store, tmp_path / "b" / "work", progress=False).ran == 0  # failures are not retried...
    outcome = run_bench(config, store, tmp_path / "b" / "work", retry_failed=True, progress=False, data_dir=data_dir)
    assert (outcome.ran, outcome.failed) == (1, ())  # ...unless asked
    (table, *_) = aggregate(read_records(path))
    assert not table.failed and table.row("finetune").seeds == (0, 1)


def bench_process(folder, data_dir):
    env = {**os.environ, "MMUNLEARN_DATA": str(data_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mmunlearn", "bench", str(folder / "bench.yaml"), "--store",
           str(folder / "results.jsonl"), "--work", str(folder / "work"), "--threads", "1", "--quiet", "--json"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_resume_after_kill_gives_every_cell_once_with_the_same_values(tmp_path, data_cache):
    data_dir = data_cache
    reference = run_tiny(tmp_path / "whole", data_dir, RESUME_YAML)  # uninterrupted, in-process
    folder = tmp_path / "killed"
    write_config(folder, RESUME_YAML)
    proc = bench_process(folder, data_dir)
    store = folder / "results.jsonl"
    deadline = time.monotonic() + 120
    while (not store.is_file() or store.read_text().count("\n") < 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-grid: 3 cells done, the 4th running
    proc.wait()
    total = len(bench_cells(load_config(folder / "bench.yaml")))
    done_before = store.read_text().count("\n")
    assert 3 <= done_before < total
    proc = bench_process(folder, data_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["skipped"] == done_before and summary["ran"] == total - done_before
    resumed = read_records(store)
    assert Counter(r.extras["cell"] for r in resumed) == Counter(r.extras["cell"] for r in read_records(reference))
    assert values(resumed) == values(read_records(reference))
