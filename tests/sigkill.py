"""Run a script in a subprocess and SIGKILL it once its saved progress reaches a point (for resume tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def kill_after(script: str, work: Path, progress: Callable[[Path], int], at: int, timeout: float = 120) -> int:
    """Start ``python -c script work``, SIGKILL it once ``progress(work) >= at``; returns the progress then."""
    proc = subprocess.Popen([sys.executable, "-c", script, str(work)], env={**os.environ, "PYTHONHASHSEED": "0"})
    deadline = time.time() + timeout
    while time.time() < deadline and progress(work) < at and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return progress(work)
