"""Benchmark grids: configs, the resumable runner, the results store and the aggregation of records."""

from ..records import ResultStore, Row, StoreLockedError, Table, aggregate, read_records
from .config import BenchConfig, ProtectGrid, UnlearnGrid, load_config, parse_config
from .runner import BenchOutcome, run_bench

__all__ = [
    "BenchConfig",
    "BenchOutcome",
    "ProtectGrid",
    "ResultStore",
    "Row",
    "StoreLockedError",
    "Table",
    "UnlearnGrid",
    "aggregate",
    "load_config",
    "parse_config",
    "read_records",
    "run_bench",
]
