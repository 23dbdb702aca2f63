"""Run directory: atomic writes, run.json provenance and stage status, lock, findings merging."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from audit.errors import RunDirError
from audit.findings import Finding
from audit.rundir import RunDir, atomic_write_json


def test_create_writes_provenance(tmp_path):
    run = RunDir.create(tmp_path / "r", command=["audit", "x"], config={"seed": 3})
    info = run.info
    assert info["tool"] == "imgaudit" and info["command"] == ["audit", "x"]
    assert info["config"]["seed"] == 3
    assert "numpy" in info["packages"] and "python" in info["packages"]


def test_stage_records_status_timing_and_errors(tmp_path):
    run = RunDir.create(tmp_path / "r")
    with run.stage("profile") as st:
        st["n"] = 5
    s = run.info["stages"]["profile"]
    assert s["status"] == "ok" and s["n"] == 5 and s["seconds"] >= 0
    with pytest.raises(ValueError):
        with run.stage("train"):
            raise ValueError("boom")
    s = run.info["stages"]["train"]
    assert s["status"] == "failed" and "boom" in s["error"]
    assert run.info["stages"]["profile"]["status"] == "ok"  # earlier stage untouched


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    atomic_write_json(p, {"a": 1})

    def bad_replace(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", bad_replace)
    with pytest.raises(RunDirError, match="No space left"):
        atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]


def test_nan_is_written_as_null(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.write_json("a.json", {"v": float("nan"), "w": [1.0, float("inf")]})
    assert json.loads((tmp_path / "r" / "a.json").read_text()) == {"v": None, "w": [1.0, None]}


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        RunDir.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a run directory"):
        RunDir.open(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    with pytest.raises(RunDirError, match="damaged"):
        RunDir.open(tmp_path / "bad").info


def test_read_only_run_dir_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    with pytest.raises(RunDirError, match="not writable"):
        RunDir.create(d)


def test_lock_refuses_a_second_process(tmp_path):
    run = RunDir.create(tmp_path / "r").lock()
    code = (
        "import sys; from audit.rundir import RunDir; from audit.errors import LockedError\n"
        f"try:\n    RunDir({str(run.path)!r}).lock()\nexcept LockedError as e:\n    print('LOCKED', e); sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 3 and "in use by another audit process" in out.stdout
    run.unlock()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0


def test_lock_in_same_process_is_reentrant(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.lock()
    run.lock()
    other = RunDir(tmp_path / "r").lock()  # same process: shared, counted
    assert other.is_locked()
    other.unlock()
    assert run.is_locked()
    run.unlock()
    assert not run.is_locked()


def test_failed_stage_releases_the_lock_for_this_process(tmp_path):
    from audit.pipeline import _run_stage

    run = RunDir.create(tmp_path / "r")

    def boom(_):
        raise ValueError("x")

    with pytest.raises(ValueError):
        _run_stage(run, "metrics", boom, run)
    assert not run.is_locked()
    _run_stage(RunDir(tmp_path / "r"), "metrics", lambda r: [], run)
    assert run.info["stages"]["metrics"]["status"] == "ok"


def test_findings_merge_per_stage_and_rank(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.set_findings("profile", [Finding(kind="class_imbalance", severity="info", title="a", score=1.0)])
    run.set_findings(
        "metrics",
        [
            Finding(kind="worst_group", severity="warning", title="b", score=0.1),
            Finding(kind="generalization_gap", severity="critical", title="c", score=0.2),
        ],
    )
    assert [f["title"] for f in run.findings()] == ["c", "b", "a"]
    run.set_findings("metrics", [])
    assert [f["title"] for f in run.findings()] == ["a"]


def test_finding_validation():
    with pytest.raises(ValueError, match="unknown finding kind"):
        Finding(kind="nope", severity="info", title="x")
    with pytest.raises(ValueError, match="severity"):
        Finding(kind="class_imbalance", severity="bad", title="x")
    a = Finding(kind="class_imbalance", severity="info", title="x", columns=["label"], groups=["9"])
    b = Finding(kind="class_imbalance", severity="warning", title="y", columns=["label"], groups=["9"])
    assert a.id == b.id  # stable ids for the same kind/columns/groups


def test_tables_round_trip(tmp_path):
    run = RunDir.create(tmp_path / "r")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    run.write_table("profile/t.parquet", df)
    pd.testing.assert_frame_equal(run.read_table("profile/t.parquet"), df)
    assert run.read_table("nope.parquet", required=False) is None
    with pytest.raises(RunDirError, match="run the stage"):
        run.read_table("nope.parquet")


def test_out_path_that_is_a_file_is_a_clear_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunDirError, match="cannot create run directory"):
        RunDir.create(f / "run")


def test_rank_puts_model_harm_before_descriptive_shift_within_a_severity():
    from audit.findings import rank

    fs = [
        Finding(kind="covariate_shift", severity="critical", title="shift", score=4.8).to_dict(),
        Finding(kind="generalization_gap", severity="critical", title="gap", score=0.5).to_dict(),
        Finding(kind="split_leakage", severity="critical", title="leak", score=8.0).to_dict(),
        Finding(kind="generalization_gap", severity="warning", title="small gap", score=0.9).to_dict(),
    ]
    assert [f["title"] for f in rank(fs)] == ["gap", "leak", "shift", "small gap"]


def test_reingesting_a_changed_dataset_clears_stale_outputs(tmp_path):
    from PIL import Image

    from audit.ingest import ingest
    from audit.manifest import Roles
    from audit.readers import ReadOptions

    d = tmp_path / "d"
    d.mkdir()
    for i in range(4):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(d / f"{i}.png")
    (d / "t.csv").write_text("path,label\n0.png,a\n1.png,b\n2.png,a\n3.png,b\n")
    opts = ReadOptions(roles=Roles(filepath="path", label="label"))
    run = ingest(d / "t.csv", out=tmp_path / "r", options=opts, command=["audit", "x"])
    run.write_table("profile/images.parquet", pd.DataFrame({"sample_id": ["0.png"]}))
    run.write_json("findings.json", [])
    run.mark_stage("profile", "ok")
    run.unlock()
    same = ingest(d / "t.csv", out=tmp_path / "r", options=opts, command=["audit", "x"])  # same data: kept
    assert (same.path / "profile" / "images.parquet").exists() and same.finished("profile")
    same.unlock()
    (d / "t.csv").write_text("path,label\n0.png,a\n1.png,b\n2.png,b\n")
    new = ingest(d / "t.csv", out=tmp_path / "r", options=opts, command=["audit", "x"])
    assert not (new.path / "profile").exists() and not (new.path / "findings.json").exists()
    assert set(new.info["stages"]) == {"manifest"}
    assert any("dataset changed" in n for n in new.dataset["notes"])
    new.unlock()


def test_a_stage_left_running_by_a_dead_process_reads_as_interrupted(tmp_path):
    """After a SIGKILL, run.json still says ``running``; readers (dashboard, report, headline) show it as failed
    (interrupted) as soon as the recorded writer is gone, before any command re-locks the run directory."""
    from audit.headline import headline

    run = RunDir.create(tmp_path / "run", command=["test"])
    code = ("import os, sys; from audit.rundir import RunDir; r = RunDir.open(sys.argv[1]); r.lock(); "
            "cm = r.stage('train'); cm.__enter__(); print('started', flush=True); os._exit(0)")  # no end record
    subprocess.run([sys.executable, "-c", code, str(run.path)], check=True, capture_output=True, timeout=60)
    assert run.info["stages"]["train"]["status"] == "running"  # what the dead process left on disk
    st = RunDir.open(run.path).stages()["train"]
    assert st["status"] == "failed" and st["error"].startswith("interrupted")
    assert headline(run)["stages"]["train"] == "failed"
    assert run.info["stages"]["train"]["status"] == "running"  # reading wrote nothing

    # a live writer (here: a sleeping process whose pid is in .lock) keeps "running"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run.path / ".lock").write_text(f"{sleeper.pid}\n")
        assert RunDir.open(run.path).stages()["train"]["status"] == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert RunDir.open(run.path).stage_status("train") == "failed"


def test_outputs_get_ordinary_file_modes(tmp_path):
    """Run files are readable by other users (CI uploaders, web servers): 0666 minus the umask, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        import audit.rundir as rd

        rd._UMASK = None
        run = RunDir.create(tmp_path / "run", command=["test"])
        run.write_json("x.json", {"a": 1})
        run.write_table("t.parquet", pd.DataFrame({"a": [1]}))
        for name in ("x.json", "t.parquet", "run.json"):
            assert (run.path / name).stat().st_mode & 0o777 == 0o644, name
    finally:
        os.umask(old)
        rd._UMASK = None


def test_rerunning_a_stage_marks_the_stages_built_on_it_stale(tmp_path):
    run = RunDir.create(tmp_path / "run", command=["test"])
    for name in ("profile", "train", "metrics", "report"):
        with run.stage(name):
            pass
    with run.stage("train"):
        pass
    st = run.stages()
    assert [st[k]["status"] for k in ("profile", "train", "metrics", "report")] == ["ok", "ok", "stale", "stale"]
    assert "train ran again" in st["metrics"]["reason"] and "audit metrics" in st["metrics"]["reason"]
    assert not run.finished("metrics")
    with run.stage("metrics"):
        pass
    assert run.stage_status("metrics") == "ok" and run.stage_status("report") == "stale"
    with run.stage("profile"):  # a profile re-run touches only the report
        pass
    assert run.stage_status("metrics") == "ok"
