"""Stopping a run with a signal: the stage is written ``interrupted`` at once and the process exits 128 + signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from waiting import wait_for  # noqa: E402


def _stage(run, name):
    try:
        return json.loads((run / "run.json").read_text()).get("stages", {}).get(name, {})
    except (OSError, json.JSONDecodeError):
        return {}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_during_training_records_interrupted_at_once_and_exits_128_plus_signal(classify_run, tmp_path, sig):
    run = classify_run.path
    log = open(tmp_path / "log.txt", "w")
    env = {**os.environ, "AUDIT_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "audit", "train", str(run), "--model", "small_cnn",
                             "--epochs", "200", "--image-size", "32", "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: _stage(run, "train").get("status") == "running", 120, "train to start", proc, exited="raise")
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    out = (tmp_path / "log.txt").read_text()
    assert rc == 128 + int(sig), out
    st = _stage(run, "train")
    assert st["status"] == "interrupted", st
    assert st["signal"] == signal.Signals(sig).name and st["interrupted_at"]
    from audit.views import stage_note

    assert stage_note("train", st).startswith(f"interrupted by {signal.Signals(sig).name} at ")  # report, dashboard
    assert "re-run the same command to resume" in out
    assert "Traceback" not in out
    assert not (run / "predictions.parquet").exists()  # nothing partial looks complete
