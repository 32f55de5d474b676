"""Operable from scripts: no traceback on a closed pipe, plain progress lines in logs."""

import subprocess
import sys

from mmunlearn.runtime import LineProgress, progress


def test_a_closed_pipe_ends_quietly_with_status_141():
    code = (
        "import sys; from mmunlearn.cli import entry; "
        "sys.argv = ['mmunlearn', 'data', 'ids', 'av-digits', '--size', 'small', '--quiet']; entry()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # builds the set once
    late = "import time; time.sleep(1); " + code  # the reader is gone before the first write
    proc = subprocess.Popen([sys.executable, "-c", late], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    assert proc.stderr.read().decode() == ""


def test_progress_in_a_log_prints_plain_lines_about_every_tenth(capsys):
    bar = progress(total=50, desc="train", unit="step")  # stderr is captured: not a terminal
    assert isinstance(bar, LineProgress)
    for _ in range(50):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 10 and "\r" not in err
    assert lines[0].startswith("train: 5/50 step (10%)") and lines[-1].startswith("train: 50/50 step (100%)")


def test_progress_wraps_iterables_and_can_be_off(capsys):
    assert list(progress(range(20), desc="cells", unit="cell")) == list(range(20))
    assert capsys.readouterr().err.count("cells: ") == 10
    assert list(progress(range(5), enabled=False)) == list(range(5))
    assert capsys.readouterr().err == ""


def test_threads_leave_out_the_cores_other_processes_keep_busy(monkeypatch):
    from mmunlearn import runtime

    monkeypatch.setattr(runtime, "available_cores", lambda: 4)
    for load, want in [(0.0, 4), (0.9, 3), (2.1, 2), (3.9, 1), (12.0, 1)]:
        monkeypatch.setattr(runtime.os, "getloadavg", lambda load=load: (load, load, load))
        assert runtime.idle_cores() == want
