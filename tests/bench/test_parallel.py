"""Bench cells on Ray workers: the scheduling rule (shared work first, once), and a real two-worker run that
gives the serial run's records."""

from __future__ import annotations

import sys
from collections import Counter
from types import SimpleNamespace

import pytest
from test_runner import RESUME_YAML, values

from bench_tiny import run_tiny, write_config
from mmunlearn.benchmarking import ResultStore, load_config, read_records, run_bench
from mmunlearn.benchmarking.parallel import _dispatch, release_order
from mmunlearn.errors import ConfigError
from mmunlearn.results import RunRecord


def test_release_order_starts_the_first_cell_of_each_shared_key():
    ready, waiting = release_order(["m0", "m0", "p0", "m1", "p0", "m0"])
    assert list(ready) == [0, 2, 3]
    assert {k: list(v) for k, v in waiting.items()} == {"m0": [1, 5], "p0": [4], "m1": []}


class Ref:
    """A submitted call's result (hashable by identity, as Ray's object refs are)."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record


class FakeRay:
    """Runs each submitted call at once; `wait` returns the oldest; records who ran what, in order."""

    exceptions = SimpleNamespace(RayError=RuntimeError)

    def __init__(self, fail: set[int]) -> None:
        self.fail, self.started = fail, []

    def actor(self):
        def remote(cell, command):
            self.started.append(cell)
            status = "failed" if cell in self.fail and cell not in self.started[:-1] else "ok"
            return Ref(RunRecord("unlearn", str(cell), {}, 0, [], 0.0, {}, {"status": status}))

        return SimpleNamespace(run=SimpleNamespace(remote=remote))

    def wait(self, refs, num_returns):
        return [refs[0]], refs[1:]

    def get(self, ref):
        return ref.record


def dispatch(keys, workers, fail=()):
    ray = FakeRay(set(fail))
    cells = list(range(len(keys)))
    done = [c for c, _ in _dispatch(ray, [ray.actor() for _ in range(workers)], ray.actor, cells, keys, None)]
    return ray.started, done


def test_cells_that_share_work_wait_for_the_first_and_all_run_once():
    started, done = dispatch(["m0", "m0", "m0", "m1", "m1"], workers=2)
    assert sorted(done) == [0, 1, 2, 3, 4] and Counter(started) == Counter(done)
    assert started.index(0) < min(started.index(1), started.index(2))
    assert started.index(3) < started.index(4)
    assert started[:2] == [0, 3]  # two workers: the first cell of each original, side by side


def test_after_a_failed_first_cell_the_next_one_computes_the_shared_work_alone():
    started, done = dispatch(["m0", "m0", "m0"], workers=3, fail={0})
    assert started == [0, 1, 2] and sorted(done) == [0, 1, 2]


def test_workers_need_ray_and_sane_counts(tmp_path, monkeypatch):
    config = load_config(write_config(tmp_path, RESUME_YAML))
    store = ResultStore(tmp_path / "r.jsonl")
    with pytest.raises(ConfigError, match="--workers must be >= 0"):
        run_bench(config, store, tmp_path / "w", workers=-1, progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'mmunlearn\[scale\]'"):
        run_bench(config, store, tmp_path / "w", workers=2, progress=False)
    assert not store.path.exists()


@pytest.mark.slow
def test_two_ray_workers_give_the_serial_records(tmp_path, data_cache):
    pytest.importorskip("ray")
    reference = read_records(run_tiny(tmp_path / "serial", data_cache, RESUME_YAML))
    folder = tmp_path / "ray"
    store = ResultStore(folder / "results.jsonl")
    config = load_config(write_config(folder, RESUME_YAML))
    outcome = run_bench(config, store, folder / "work", data_dir=data_cache, progress=False, workers=2, threads=1)
    assert outcome.failed == ()
    records = read_records(store.path)
    assert Counter(r.extras["cell"] for r in records) == Counter(r.extras["cell"] for r in reference)
    assert values(records) == values(reference)  # bit-identical: each cell is seeded by its key, one thread
    assert len(list((folder / "work" / "models").iterdir())) == 1  # the shared original trained once
    again = run_bench(config, store, folder / "work", data_dir=data_cache, progress=False, workers=2)
    assert again.ran == 0  # a second run resumes from the one store
