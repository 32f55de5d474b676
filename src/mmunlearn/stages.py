"""The intervention stages of the survey the project implements, in order.

Every method declares one as its ``stage``: protectors are data-side, unlearners one of the others.
``"reference"`` is the gold standard (retrain); the bench's ``original`` row is its own stage.
"""

from __future__ import annotations

STAGES = ("data-side", "training-time", "architecture-constrained", "training-free", "decoding-time", "reference")


def stage_rank(stage: str) -> int:
    """Position of ``stage`` in `STAGES` (unknown stages after every known one), for sorting rows."""
    return STAGES.index(stage) if stage in STAGES else len(STAGES)
