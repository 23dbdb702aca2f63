"""Never silent in a log: ``audit profile`` and ``audit metrics`` with stdout/stderr to a file print plain lines (start,
end, and in between at least every interval) with stage, done/total, rate and ETA; ``--quiet``, ``--progress none``
and ``AUDIT_PROGRESS=none`` silence them. The interval is made small with ``AUDIT_PROGRESS_INTERVAL``: the test waits
on the log's content, never on a fixed sleep."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit import progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
from waiting import wait_for  # noqa: E402

ETA = re.compile(r"^(?P<stage>\S.*?)  (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+)  [\d.e+-]+ (?P=unit)/s  eta \S+")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("AUDIT_NO_PROGRESS", "AUDIT_PROGRESS")}
    return {**env, "AUDIT_PROGRESS_INTERVAL": "0.05", **extra}


def _run_logged(args: list[str], log, env: dict, *, until=None) -> tuple[int, str]:
    """Run ``python -m audit ARGS`` with stdout and stderr to ``log`` (a file: not a terminal); with ``until``, wait
    until the log satisfies it while the command runs (or has ended), then for the end."""
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "audit", *args], stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            if until is not None:
                wait_for(lambda: until(log.read_text()), 240, "a progress line", proc)
            rc = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    return rc, log.read_text()


def _eta_lines(text: str, stage: str) -> list[re.Match]:
    return [m for m in (ETA.match(ln) for ln in text.splitlines()) if m and m["stage"].startswith(stage)]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path_factory.mktemp("plain") / "run", n=150)
    return run.path


def test_profile_in_a_log_prints_start_end_and_eta_lines_for_its_steps(fake_run, tmp_path):
    from audit.rundir import RunDir

    src = RunDir(fake_run)
    table = tmp_path / "table.csv"
    src.manifest().drop(columns=["sample_id"]).to_csv(table, index=False)
    args = ["profile", str(table), "--root", str(src.root), "--path-col", "filepath", "--label", "label", "--domain",
            "domain", "--split", "split", "--workers", "1", "--n-boot", "20", "--out", str(tmp_path / "run")]
    rc, text = _run_logged(args, tmp_path / "log.txt", _env(), until=lambda t: _eta_lines(t, "profile"))
    assert rc == 0, text
    assert re.search(r"^profile  start  0/9 check$", text, re.M), text
    assert re.search(r"^profile: scanning images  start  0/150 img$", text, re.M), text
    assert re.search(r"^profile: scanning images  done  150/150 img in \d+s$", text, re.M), text
    assert re.search(r"^profile: near duplicates of \d+ images  (start|done)", text, re.M), text
    assert re.search(r"^profile  done  9/9 check in \d+s$", text, re.M), text
    lines = _eta_lines(text, "profile")
    assert lines and all(int(m["done"]) <= int(m["total"]) for m in lines), text


def test_metrics_in_a_log_prints_eta_lines_and_quiet_silences_them(fake_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(fake_run, run)
    rc, text = _run_logged(["metrics", str(run), "--n-boot", "200"], tmp_path / "log.txt", _env(),
                           until=lambda t: _eta_lines(t, "metrics"))
    assert rc == 0, text
    assert re.search(r"^metrics: bootstrap intervals  start  0/\d+ part$", text, re.M), text
    assert re.search(r"^metrics: bootstrap intervals  done  (\d+)/\1 part in \d+s$", text, re.M), text
    assert _eta_lines(text, "metrics: bootstrap intervals"), text
    for how, env in ((["--quiet"], _env()), (["--progress", "none"], _env()), ([], _env(AUDIT_PROGRESS="none"))):
        rc, text = _run_logged(["metrics", str(run), "--n-boot", "50", *how], tmp_path / "q.txt", env)
        assert rc == 0, text
        assert "bootstrap intervals" not in text, (how, text)
    rc, text = _run_logged(["metrics", str(run), "--n-boot", "50", "--progress", "plain"], tmp_path / "p.txt",
                           _env(AUDIT_PROGRESS="none"))
    assert rc == 0 and "metrics: bootstrap intervals  start" in text, text  # the flag wins over the variable


def test_nested_plain_bars_heartbeat_from_the_innermost_only(monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_PROGRESS", "plain")
    monkeypatch.setenv("AUDIT_PROGRESS_INTERVAL", "0.05")
    seen: list[str] = []
    with progress.Bar(3, "outer", unit="check") as outer:
        outer.advance(1)
        with progress.Bar(10, "outer: inner", unit="img") as inner:
            inner.advance(4)
            wait_for(lambda: (seen.extend(capsys.readouterr().err.splitlines()) or
                               sum(ln.startswith("outer: inner  4/10 img") for ln in seen) >= 3), 30, "heartbeats")
        outer.advance(1)
    seen += capsys.readouterr().err.splitlines()
    inner_at = [i for i, ln in enumerate(seen) if ln.startswith("outer: inner")]
    # between the inner bar's start and end the outer one says nothing
    assert not [ln for ln in seen[inner_at[0]:inner_at[-1]] if ln.startswith("outer  ")], seen
    assert re.fullmatch(r"outer: inner  4/10 img  [\d.e+-]+ img/s  eta \S+", seen[inner_at[1]]), seen
    assert seen[-1].startswith("outer  done  2/3 check"), seen


def test_nested_bars_on_a_terminal_share_one_display(monkeypatch):
    progress.set_mode("bar")
    try:
        with progress.Bar(2, "outer") as outer, progress.Bar(5, "inner") as inner:
            inner.update(3, total=6)
            assert inner._prog is outer._prog  # one live display, two rows (rich refuses two live displays)
            outer.advance(1)
    finally:
        progress.set_mode(None)


def test_a_bar_without_a_total_gets_one_later(monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_PROGRESS", "plain")
    monkeypatch.setenv("AUDIT_PROGRESS_INTERVAL", "0.05")
    err: list[str] = []
    line = re.compile(r"pairs  5/20 pair  [\d.e+-]+ pair/s  eta \S+")

    def heartbeat_with_total() -> bool:  # the lines so far, read as they come (the heartbeat is a thread)
        err.extend(capsys.readouterr().err.splitlines())
        return any(line.fullmatch(ln) for ln in err)

    with progress.Bar(0, "pairs", unit="pair") as bar:
        t0 = time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 0.06, 5, "the interval")
        bar.update(5, total=20)
        wait_for(heartbeat_with_total, 10, "a heartbeat line with the total")
    err.extend(capsys.readouterr().err.splitlines())
    assert err[0] == "pairs  start"
    assert err[-1].startswith("pairs  done  5/20 pair in ")


def test_rows_from_a_cache_count_as_done_but_not_in_the_rate():
    """A resumed feature pass: 56,448 of 100,000 images come from the cache at once. Counted in the rate they made
    the ETA of the work left 6x too short (195 img/s shown for a 30 img/s pass); skipped, the rate starts after."""
    bar = progress.Bar(100, "features", unit="img")
    bar.skip(60, info="60 from the cache")
    line = bar.line()
    assert "60/100 img" in line and "img/s" not in line and "60 from the cache" in line
    bar.advance(4)
    t, done = bar._r0
    assert done == 60 and bar.done == 64  # the rate is (64 - 60) / (now - t): the work of this run only
