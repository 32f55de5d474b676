"""The JSON-lines results store: round trip, torn last line recovered (not lost), corruption, lock."""

import json

import pytest

from mmunlearn.benchmarking import ResultStore, StoreLockedError, read_records
from mmunlearn.errors import CheckpointError
from mmunlearn.results import MetricResult, RunRecord


def record(i: int) -> RunRecord:
    return RunRecord(
        "unlearn", "ccu", {"epochs": i}, i, [MetricResult("acc_fused", "test", 0.5 + i / 100, True, 0.1)], 1.5 * i,
        {"torch": "x"}, {"cell": f"c{i}", "row": "ccu", "status": "ok"},
    )  # fmt: skip


def test_round_trip(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    for i in range(3):
        store.append(record(i))
    assert store.read() == [record(i) for i in range(3)]
    assert RunRecord.from_dict(json.loads(json.dumps(record(2).to_dict()))) == record(2)
    assert read_records(tmp_path / "absent.jsonl") == []


def test_torn_last_line_is_recovered_not_lost(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultStore(path)
    store.append(record(0))
    store.append(record(1))
    torn = json.dumps(record(2).to_dict())[:57]
    with open(path, "a") as f:
        f.write(torn)  # a bench killed in the middle of a write
    assert read_records(path, repair=False) == [record(0), record(1)]
    assert path.read_text().endswith(torn)  # reading without repair changes nothing
    assert store.read() == [record(0), record(1)]
    assert path.read_text().endswith("\n")
    assert (tmp_path / "r.jsonl.torn").read_text() == torn + "\n"  # the bytes are kept
    store.append(record(2))  # the next append starts on its own line
    assert store.read() == [record(0), record(1), record(2)]


def test_a_file_that_is_only_a_torn_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"scenario": "unl')
    assert read_records(path) == []
    assert path.read_text() == ""


def test_a_damaged_complete_line_is_an_error_naming_it(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultStore(path)
    store.append(record(0))
    with open(path, "a") as f:
        f.write('{"not": "a record"}\n')
    store.append(record(1))
    with pytest.raises(CheckpointError, match=r"r\.jsonl, line 2: not a run record"):
        store.read()


def test_one_writer_at_a_time(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    with (
        store.locked(),
        pytest.raises(StoreLockedError, match="another bench is writing"),
        ResultStore(store.path).locked(),
    ):
        pass
    with store.locked():  # released
        pass
