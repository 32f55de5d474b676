"""Reading, storing and aggregating result records (no model or method code is imported here)."""

from .aggregate import Row, Table, aggregate
from .scenarios import (
    HEADLINE,
    HEADLINE_C,
    HEADLINES,
    SCENARIO_A_METRICS,
    SCENARIO_C_METRICS,
    VICTIM_METRICS,
    gap_to_retrain,
)
from .store import ResultStore, StoreLockedError, latest_by_cell, read_records

__all__ = [
    "HEADLINE",
    "HEADLINES",
    "HEADLINE_C",
    "SCENARIO_A_METRICS",
    "SCENARIO_C_METRICS",
    "VICTIM_METRICS",
    "ResultStore",
    "Row",
    "StoreLockedError",
    "Table",
    "aggregate",
    "gap_to_retrain",
    "latest_by_cell",
    "read_records",
]
