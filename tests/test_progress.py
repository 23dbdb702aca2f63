"""Progress is never silent: plain lines with done/total, rate and ETA when stderr is not a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from audit import progress


def test_plain_lines_start_end_and_heartbeat_without_advances(monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_PROGRESS", "plain")
    monkeypatch.setenv("AUDIT_PROGRESS_INTERVAL", "0.1")
    seen: list[str] = []
    with progress.Bar(4, "train  m holdout=a", unit="epoch") as bar:
        bar.advance(1, info="val 0.5")
        # the work reports nothing more: the heartbeat must still print (wait for it, no fixed sleep decides)
        deadline = time.monotonic() + 30
        while not any("1/4 epoch" in ln and "eta" in ln for ln in seen):
            assert time.monotonic() < deadline, seen
            seen += capsys.readouterr().err.splitlines()
            time.sleep(0.02)
    seen += capsys.readouterr().err.splitlines()
    assert seen[0] == "train  m holdout=a  start  0/4 epoch"
    assert any(re.fullmatch(r"train  m holdout=a  1/4 epoch  [\d.e+-]+ epoch/s  eta \S+  val 0.5", ln) for ln in seen)
    assert re.fullmatch(r"train  m holdout=a  done  1/4 epoch in \d+s", seen[-1])


def test_modes_from_flag_env_and_quiet(monkeypatch):
    monkeypatch.delenv("AUDIT_PROGRESS", raising=False)
    monkeypatch.setenv("AUDIT_NO_PROGRESS", "1")
    assert progress.mode() == "none"
    monkeypatch.setenv("AUDIT_PROGRESS", "plain")
    assert progress.mode() == "plain"
    progress.set_mode("none")
    try:
        assert progress.mode() == "none"
    finally:
        progress.set_mode(None)
    monkeypatch.setenv("AUDIT_PROGRESS", "auto")
    assert progress.mode() == "plain"  # pytest's stderr is not a terminal
    progress.set_quiet(True)
    try:
        assert progress.mode() == "none"
    finally:
        progress.set_quiet(False)
    with pytest.raises(ValueError, match="progress must be one of"):
        progress.set_mode("fancy")


_FLAGS = ["--path-col", "path", "--label", "digit", "--domain", "site", "--workers", "1"]


def test_profile_to_a_log_file_prints_plain_progress_lines(demo_classify, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("AUDIT_NO_PROGRESS", "AUDIT_PROGRESS")}
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "audit", "profile", str(demo_classify.table), "--root",
                             str(demo_classify.root), *_FLAGS, "--out", str(tmp_path / "run")],
                            stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    text = log.read_text()
    assert rc == 0, text
    assert re.search(r"scanning images  start  0/\d+", text), text
    assert re.search(r"scanning images  done  \d+/\d+ \w+ in \d+s", text), text
    quiet = subprocess.run([sys.executable, "-m", "audit", "--progress", "none", "profile", str(demo_classify.table),
                            "--root", str(demo_classify.root), *_FLAGS, "--out", str(tmp_path / "q")],
                           capture_output=True, text=True, env=env)
    assert quiet.returncode == 0 and "scanning images" not in quiet.stderr, quiet.stderr
