"""Reading, storing and aggregating result records (no model or method code is imported here)."""

from .aggregate import Row, Table, aggregate
from .scenarios import (
    CAPTIONER_METRICS,
    HEADLINE,
    HEADLINE_C,
    HEADLINE_CAPTION,
    HEADLINES,
    SCENARIO_A_METRICS,
    SCENARIO_C_METRICS,
    VICTIM_METRICS,
    ZERO_SHOT_METRICS,
    gap_to_retrain,
)
from .store import ResultStore, StoreLockedError, latest_by_cell, read_records

__all__ = [
    "CAPTIONER_METRICS",
    "HEADLINE",
    "HEADLINES",
    "HEADLINE_C",
    "HEADLINE_CAPTION",
    "SCENARIO_A_METRICS",
    "SCENARIO_C_METRICS",
    "VICTIM_METRICS",
    "ZERO_SHOT_METRICS",
    "ResultStore",
    "Row",
    "StoreLockedError",
    "Table",
    "aggregate",
    "gap_to_retrain",
    "latest_by_cell",
    "read_records",
]
