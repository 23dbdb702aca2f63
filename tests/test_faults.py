"""Faults: a run killed with SIGKILL resumes and ends with the same tables as an uninterrupted run; two processes
never write one run directory (every writing command takes the lock, and gives it back when it ends); a full disk
or a read-only output folder is a one-line error (exit 2) that leaves earlier outputs intact; run.json always says
which stages finished."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.cli import app
from audit.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from badcorpus import make_plain_dataset  # noqa: E402

ENV = {**os.environ, "AUDIT_NO_PROGRESS": "1", "PYTHONWARNINGS": "ignore"}
TRAIN = ["--epochs", "4", "--model", "small_cnn", "--device", "cpu", "--workers", "1"]


def cli(*args, code: int | None = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    if code is not None:
        assert res.exit_code == code, (args, res.exit_code, res.output, res.exception)
    return res


def audit_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "audit", "-q", *map(str, args)]


def run_audit(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(audit_cmd(*args), capture_output=True, text=True, env=ENV, timeout=timeout)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` is true; False if it ended first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(Exception):
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the process never reached the point to kill it")


def stage_status(path: Path, stage: str) -> str | None:
    try:
        return json.loads((path / "run.json").read_text())["stages"].get(stage, {}).get("status")
    except (OSError, ValueError, KeyError):
        return None


def digest(path: Path) -> dict[str, str]:
    """Content hash of every file under a run directory (lock and temp files excluded)."""
    return {str(p.relative_to(path)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lock" and not p.name.endswith(".tmp")}


def profile_tables(path: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_parquet(p) for p in sorted((path / "profile").glob("*.parquet"))}


def canon_findings(path: Path) -> list:
    return sorted((f["id"], f["severity"], f["title"], json.dumps(f["evidence"], sort_keys=True))
                  for f in json.loads((path / "findings.json").read_text()))


def canon_predictions(path: Path) -> pd.DataFrame:
    p = pd.read_parquet(path / "predictions.parquet")
    return p.sort_values(["fold", "seed", "role", "sample_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_plain_dataset(tmp_path_factory.mktemp("plain") / "data", 400)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted profile + train, run as subprocesses like the interrupted ones."""
    out = tmp_path_factory.mktemp("ref") / "run"
    r = run_audit("profile", data, "--label", "label", "--domain", "site", "--out", out, "--workers", "1")
    assert r.returncode == 0, r.stderr
    r = run_audit("train", out, *TRAIN)
    assert r.returncode == 0, r.stderr
    return out


# ------------------------------------------------------------------------------------------- SIGKILL and resume
def test_sigkill_during_profiling_then_rerun_equals_uninterrupted(data, reference, tmp_path):
    out = tmp_path / "run"
    args = ["profile", data, "--label", "label", "--domain", "site", "--out", out, "--workers", "1"]
    proc = subprocess.Popen(audit_cmd(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = kill_when(proc, lambda: stage_status(out, "profile") == "running")
    assert killed and stage_status(out, "profile") == "running"  # died mid-stage
    assert not (out / "findings.json").exists() or stage_status(out, "profile") != "ok"
    r = run_audit(*args)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["stages"]["profile"]["status"] == "ok" and "error" not in info["stages"]["profile"]
    a, b = profile_tables(reference), profile_tables(out)
    assert a.keys() == b.keys() and len(a) >= 5
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    assert canon_findings(reference) == canon_findings(out)


def test_sigkill_during_training_resumes_and_equals_uninterrupted(data, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out, ignore=shutil.ignore_patterns("train", "predictions.parquet", "metrics", ".lock"))
    info = json.loads((out / "run.json").read_text())
    info["stages"].pop("train")
    (out / "run.json").write_text(json.dumps(info))
    proc = subprocess.Popen(audit_cmd("train", out, *TRAIN), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed = kill_when(proc, lambda: any((out / "train" / "ckpt").glob("*.pt")))
    assert killed and stage_status(out, "train") == "running"
    assert not (out / "predictions.parquet").exists()
    # the next writer sees the lock free (the kernel dropped it with the process) and records the interruption
    with RunDir(out) as run:
        st = run.info["stages"]["train"]
        assert st["status"] == "failed" and st["error"].startswith("interrupted")
        assert run.info["stages"]["profile"]["status"] == "ok"
    r = run_audit("train", out, *TRAIN)
    assert r.returncode == 0, r.stderr
    st = json.loads((out / "run.json").read_text())["stages"]["train"]
    assert st["status"] == "ok"
    statuses = [f["status"] for f in st["folds"]]
    assert "resumed" in statuses or "reused" in statuses, statuses
    pd.testing.assert_frame_equal(canon_predictions(reference), canon_predictions(out), check_exact=False, atol=1e-6)


# ------------------------------------------------------------------------------------------- the lock
@contextlib.contextmanager
def held_by_another_process(path: Path):
    """A second process holding the run directory's lock (as a running `audit train` would)."""
    code = ("import sys; from audit.rundir import RunDir\n"
            f"r = RunDir({str(path)!r}).lock(); print('locked', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=ENV)
    try:
        assert p.stdout.readline().strip() == "locked"
        yield p
    finally:
        p.stdin.close()
        p.wait(timeout=30)


def lock_is_free(path: Path) -> bool:
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.fixture
def small_run(tmp_path):
    data = make_plain_dataset(tmp_path / "data", 40, side=16)
    out = tmp_path / "run"
    cli("profile", data, "--label", "label", "--domain", "site", "--out", out, "--workers", "1")
    cli("train", out, "--epochs", "1", "--model", "small_cnn", "--device", "cpu", "--workers", "1")
    cli("metrics", out, "--n-boot", "40")
    assert lock_is_free(out)
    return data, out


def test_every_writing_command_is_refused_while_another_process_writes(small_run, tmp_path):
    data, out = small_run
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\ncheck = "no_unreadable_files"\n')
    before = digest(out)
    commands = {
        "profile": ["profile", data, "--label", "label", "--domain", "site", "--out", out, "--workers", "1"],
        "run": ["run", data, "--label", "label", "--domain", "site", "--out", out, "--epochs", "1", "--device", "cpu"],
        "train": ["train", out, "--epochs", "1", "--device", "cpu"],
        "metrics": ["metrics", out, "--n-boot", "20"],
        "report": ["report", out],
    }
    with held_by_another_process(out):
        assert not lock_is_free(out)
        for name, args in commands.items():
            res = cli(*args, code=None)
            assert res.exit_code == 2, (name, res.output)
            assert "in use by another audit process" in " ".join(res.output.split()), (name, res.output)
        res = cli("check", out, "--policy", policy, code=None)  # the verdict is given, the files are not written
        assert res.exit_code in (0, 1) and "in use" in " ".join(res.output.split()), res.output
        assert digest(out) == before  # nothing was written, run.json included
    assert lock_is_free(out)
    cli("report", out)
    cli("check", out, "--policy", policy, code=None)
    assert (out / "check" / "result.json").exists() and (out / "report.html").exists()


def test_lock_is_released_when_a_command_ends_or_fails(small_run):
    from audit import rundir

    data, out = small_run
    cli("report", out)
    assert lock_is_free(out) and not rundir._HELD_LOCKS
    res = cli("train", out, "--model", "no_such_model", code=None)
    assert res.exit_code == 2 and lock_is_free(out) and not rundir._HELD_LOCKS
    assert json.loads((out / "run.json").read_text())["stages"]["train"]["status"] == "failed"


def test_concurrent_real_processes_one_is_refused(small_run):
    data, out = small_run
    slow = subprocess.Popen(audit_cmd("train", out, "--epochs", "30", "--model", "small_cnn", "--device", "cpu",
                                      "--workers", "1", "--seed", "5"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while lock_is_free(out) and time.monotonic() - t0 < 60 and slow.poll() is None:
            time.sleep(0.01)
        r = run_audit("metrics", out, "--n-boot", "20")
        assert r.returncode == 2 and "in use by another audit process" in " ".join(r.stderr.split()), r.stderr
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait()
    assert lock_is_free(out)


# ------------------------------------------------------------------------------------------- disk full, read-only
def _mount(*args) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only_view(src: Path, dst: Path):
    dst.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _mount("--bind", str(src), str(dst)):
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        assert _mount("-o", "remount,ro,bind", str(dst))
        yield dst
    finally:
        subprocess.run(["umount", "-l", str(dst)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free the space)."""
    f = folder / "filler.bin"
    with open(f, "wb") as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    with contextlib.suppress(OSError):  # the last partial block
        with open(f, "ab") as fh:
            for _ in range(64):
                fh.write(b"\0" * 1024)
                fh.flush()
    return f


def test_full_disk_is_a_one_line_error_and_keeps_earlier_outputs(tmp_path):
    data = make_plain_dataset(tmp_path / "data", 40, side=16)
    with tmpfs(tmp_path / "disk", "24m") as disk:
        out = disk / "run"
        cli("profile", data, "--label", "label", "--domain", "site", "--out", out, "--workers", "1")
        before = digest(out)
        filler = fill(disk)
        for args in (["train", out, "--epochs", "1", "--model", "small_cnn", "--device", "cpu", "--workers", "1"],
                     ["report", out],
                     ["profile", data, "--label", "label", "--domain", "site", "--out", out, "--workers", "1"]):
            res = cli(*args, code=None)
            lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
            assert res.exit_code == 2 and len(lines) == 1, (args[0], res.output)
            assert "No space left on device" in " ".join(res.output.split()), res.output
            assert "Traceback" not in res.output
            assert digest(out) == before, args[0]  # earlier outputs intact, run.json unchanged
            assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.tmp"))  # no partial temp files left
        info = json.loads((out / "run.json").read_text())
        assert info["stages"]["profile"]["status"] == "ok" and "train" not in info["stages"]
        filler.unlink()
        cli("train", out, "--epochs", "1", "--model", "small_cnn", "--device", "cpu", "--workers", "1")
        assert json.loads((out / "run.json").read_text())["stages"]["train"]["status"] == "ok"


def test_read_only_run_directory_is_a_one_line_error_and_reads_still_work(small_run, tmp_path):
    data, out = small_run
    cli("report", out)
    before = digest(out)
    with read_only_view(out, tmp_path / "ro") as ro:
        for args in (["metrics", ro, "--n-boot", "20"], ["report", ro],
                     ["train", ro, "--epochs", "1", "--device", "cpu"],
                     ["profile", data, "--label", "label", "--out", ro]):
            res = cli(*args, code=None)
            assert res.exit_code == 2, (args[0], res.output)
            assert [ln for ln in res.output.splitlines() if ln.startswith("error:")], res.output
            text = " ".join(res.output.split())
            assert "Read-only file system" in text or "not writable" in text, text
        # reading a read-only run still works: the views the dashboard uses, and a check verdict (files not written)
        from audit import views

        run = RunDir.open(ro)
        assert len(run.manifest()) == 40 and run.read_table("metrics/groups.parquet") is not None
        assert views.read(run, "profile/images.parquet", columns=["sample_id"]) is not None
        policy = tmp_path / "p.toml"
        policy.write_text('[[rule]]\ncheck = "no_unreadable_files"\n')
        res = cli("check", ro, "--policy", policy, code=None)
        assert res.exit_code == 0, res.output
    assert digest(out) == before


def test_run_json_lists_finished_stages_after_a_failed_stage(small_run):
    data, out = small_run
    res = cli("train", out, "--model", "no_such_model", code=None)
    assert res.exit_code == 2
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert {k: v["status"] for k, v in stages.items()} == {
        "manifest": "ok", "profile": "ok", "train": "failed", "metrics": "ok"}
    assert stages["train"]["error"] and stages["profile"]["finished"]
    assert RunDir.open(out).finished("metrics") and not RunDir.open(out).finished("train")
