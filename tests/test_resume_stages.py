"""Profile resumes per check, metrics per part: after an interruption the same command reuses what finished (one line
says how many), computes the rest, and ends with the same tables and findings as an uninterrupted run."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from audit import pipeline
from audit.rundir import RunDir


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    from audit.testing import make_fake_run

    return make_fake_run(tmp_path_factory.mktemp("resume") / "run", n=150).path


def _copy(src, dst) -> RunDir:
    shutil.copytree(src, dst)
    return RunDir(dst)


def _same_outputs(a: RunDir, b: RunDir, folder: str, stage: str) -> None:
    names = sorted(p.name for p in (a.path / folder).glob("*.parquet"))
    assert names == sorted(p.name for p in (b.path / folder).glob("*.parquet"))
    for name in names:
        pd.testing.assert_frame_equal(pd.read_parquet(a.path / folder / name), pd.read_parquet(b.path / folder / name))
    fa = [f for f in json.loads((a.path / "findings.json").read_text()) if f["stage"] == stage]
    fb = [f for f in json.loads((b.path / "findings.json").read_text()) if f["stage"] == stage]
    assert fa == fb and fa


def _interrupt_on(monkeypatch, cls, method: str, at: int = 1) -> list[int]:
    """Make ``cls.method`` raise KeyboardInterrupt (what SIGTERM/SIGINT/SIGHUP raise) on call number ``at``; returns the
    call counter (restored methods keep counting)."""
    orig = getattr(cls, method)
    calls = [0]

    def wrapped(self, *a, **k):
        calls[0] += 1
        if calls[0] == at:
            raise KeyboardInterrupt
        return orig(self, *a, **k)

    monkeypatch.setattr(cls, method, wrapped)
    return calls


def test_profile_reuses_the_checks_that_finished_before_an_interruption(fake, tmp_path, monkeypatch, capsys):
    from audit.profile.duplicates import Duplicates
    from audit.profile.scan import ImageScan

    monkeypatch.setenv("AUDIT_PROGRESS", "plain")
    kw = {"workers": 1, "n_boot": 30}
    whole = _copy(fake, tmp_path / "whole")
    pipeline.profile_stage(whole, **kw)
    run = _copy(fake, tmp_path / "run")
    with monkeypatch.context() as m:
        # after images, manifest, integrity, distribution, associations, image_stats
        _interrupt_on(m, Duplicates, "run")
        with pytest.raises(KeyboardInterrupt):
            pipeline.profile_stage(run, **kw)
    assert run.stage_status("profile") == "interrupted"
    assert sorted(p.name for p in (run.path / ".partial" / "profile").glob("*.json"))[0] == "associations.json"
    capsys.readouterr()
    scans = _interrupt_on(monkeypatch, ImageScan, "run", at=-1)  # counts only
    pipeline.profile_stage(run, **kw)
    err = capsys.readouterr().err
    assert "resuming profile: 6 of 9 checks reused (images, manifest, integrity, distribution, associations, " \
           "image_stats)" in err, err
    assert scans[0] == 0  # the scan was not run again
    st = run.stages()["profile"]
    assert st["status"] == "ok" and st["resumed"]["reused"][0] == "images"
    assert st["checks"]["images"]["reused"] and not st["checks"]["duplicates"].get("reused")
    # the near-duplicate search ran again on the scan's stored descriptors, not a fallback
    assert st["checks"]["duplicates"]["near_method"] == whole.stages()["profile"]["checks"]["duplicates"]["near_method"]
    assert not (run.path / ".partial").exists()
    _same_outputs(whole, run, "profile", "profile")


def test_profile_reuses_nothing_when_a_setting_changed(fake, tmp_path, monkeypatch, capsys):
    from audit.profile.shortcuts import Shortcuts

    monkeypatch.setenv("AUDIT_PROGRESS", "plain")
    run = _copy(fake, tmp_path / "run")
    with monkeypatch.context() as m:
        _interrupt_on(m, Shortcuts, "run")
        with pytest.raises(KeyboardInterrupt):
            pipeline.profile_stage(run, workers=1, n_boot=30, checks=["associations", "shortcuts"])
    capsys.readouterr()
    pipeline.profile_stage(run, workers=2, n_boot=31, checks=["associations", "shortcuts"])
    assert "resuming profile" not in capsys.readouterr().err
    assert "resumed" not in run.stages()["profile"]


def test_metrics_reuses_the_parts_that_finished_before_an_interruption(fake, tmp_path, monkeypatch, capsys):
    from audit.metrics.candidates import PredictionSlice

    monkeypatch.setenv("AUDIT_PROGRESS", "plain")
    whole = _copy(fake, tmp_path / "whole")
    pipeline.metrics_stage(whole, n_boot=100)
    run = _copy(fake, tmp_path / "run")
    calls = _interrupt_on(monkeypatch, PredictionSlice, "groups", at=4)  # 3 scopes per fold: in the second fold
    with pytest.raises(KeyboardInterrupt):
        pipeline.metrics_stage(run, n_boot=100)
    assert run.stage_status("metrics") == "interrupted"
    capsys.readouterr()
    before = calls[0]
    pipeline.metrics_stage(run, n_boot=100)
    assert "resuming metrics: 1 of 5 parts reused" in capsys.readouterr().err
    assert calls[0] - before == 3 * 3  # the second and third folds and the pooled one, three scopes each
    assert run.stage_status("metrics") == "ok" and not (run.path / ".partial").exists()
    _same_outputs(whole, run, "metrics", "metrics")


def test_stored_state_keeps_types_and_never_unpickles(tmp_path):
    import numpy as np

    from audit.rundir import _tag, _untag

    state = {"a": (1, 2.5, "x"), "b": np.float32(0.1), "c": np.arange(6, dtype=np.int16).reshape(2, 3),
             "d": {3: "int key", "__x": float("nan")}, "e": [None, True, np.int64(7)], "f": pd.NA}
    back = _untag(json.loads(json.dumps(_tag(state))))
    assert back["a"] == (1, 2.5, "x") and type(back["b"]) is np.float32 and back["b"] == state["b"]
    assert back["c"].dtype == np.int16 and (back["c"] == state["c"]).all()
    assert back["d"][3] == "int key" and np.isnan(back["d"]["__x"])
    assert back["e"] == [None, True, 7] and type(back["e"][2]) is np.int64 and back["f"] is pd.NA
    run = RunDir.create(tmp_path / "r")
    assert not run.write_part("x", "p", "k", {"obj": object()})  # not encodable: nothing stored
    assert run.write_part("x", "p", "k", state, tables={"t": pd.DataFrame({"v": [1, 2]})})
    assert run.read_part("x", "p", "other") is None
    st, tables, _ = run.read_part("x", "p", "k")
    assert st["a"] == (1, 2.5, "x") and tables["t"]["v"].tolist() == [1, 2]
