"""The plan before training (issue 18, item 3), per-batch progress lines (item 1) and the resume line (item 2)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ingest_demo

from audit import progress
from audit.errors import UsageError
from audit.train import TrainConfig, run_training
from audit.train.config import parse_budget
from audit.train.executors import LocalExecutor

PLAN = re.compile(r"^plan  cpu  (\S+) at (\d+) px  (\d+) epochs  (\d+) folds x 1 seed  ([\d,]+) images  "
                  r"estimated (\S+)", re.M)
BATCH = re.compile(r"^train  fold holdout=\S+  epoch \d+/\d+  batch \d+/\d+  \d+ img/s  eta \d+(m\d\ds|s)$", re.M)


@pytest.fixture
def plain(monkeypatch):
    """Plain progress lines, printed at every update (the interval shortened), mode restored after."""
    monkeypatch.setenv("AUDIT_PROGRESS_INTERVAL", "0.05")
    progress.set_mode("plain")
    yield
    progress.set_mode(None)
    progress.set_quiet(False)


def _small_run(data, path, n=150):
    run = ingest_demo(data, path)
    man = run.manifest()
    run.write_manifest(man.groupby("domain", group_keys=False).head(n // 3).reset_index(drop=True))
    return run


def _stage(run) -> dict:
    return run.info["stages"]["train"]


def test_parse_budget_forms_and_errors():
    assert parse_budget("15m") == 900 and parse_budget("1h30m") == 5400 and parse_budget("45") == 45
    assert parse_budget("none") is None and parse_budget(None) is None
    for bad in ("", "soon", "0", "-3m"):
        with pytest.raises(UsageError):
            parse_budget(bad)
    with pytest.raises(UsageError):
        TrainConfig(time_budget="ten minutes")


def test_plan_line_before_training_and_estimate_recorded(demo_classify, tmp_path, plain, capsys):
    run = _small_run(demo_classify, tmp_path / "run")
    run_training(run, TrainConfig(epochs=2, workers=1))
    err = capsys.readouterr().err
    m = PLAN.search(err)
    assert m, err
    assert m.group(1) == "small_cnn" and m.group(3) == "2" and m.group(4) == "3"
    assert err.index("plan  cpu") < err.index("decoding images")  # before the work
    st = _stage(run)
    assert st["estimate_seconds"] > 0 and st["seconds"] > 0
    plan = st["plan"]
    assert plan["model"] == "small_cnn" and plan["epochs"] == 2 and plan["folds"] == 3 and plan["seeds"] == 1
    assert plan["budget_seconds"] == 900 and not plan["reduced"] and plan["calibration"]["small_cnn"]["seconds"] > 0
    # the stage table (dashboard) and report.html show the plan with the estimate and the actual time
    from audit import views
    from audit.report import write_report

    row = views.stage_table(run).set_index("stage").loc["train"]
    assert row["estimated seconds"] == st["estimate_seconds"] and "plan: cpu  small_cnn" in row["note"]
    assert "; actual " in row["note"]
    write_report(run)
    assert "train " in (html := (run.path / "report.html").read_text()) and ": plan: cpu  small_cnn" in html
    # the same inputs again: the same plan, without a new calibration
    run_training(run, TrainConfig(epochs=2, workers=1))
    assert "(as planned before)" in capsys.readouterr().err


def test_quiet_silences_the_plan_and_progress(demo_classify, tmp_path, plain, capsys):
    run = _small_run(demo_classify, tmp_path / "run", n=60)
    progress.set_quiet(True)
    run_training(run, TrainConfig(epochs=1, workers=1))
    assert capsys.readouterr().err == ""
    assert _stage(run)["plan"]["estimate_seconds"] > 0


def test_per_batch_lines_in_plain_mode(demo_classify, tmp_path, plain, capsys):
    run = _small_run(demo_classify, tmp_path / "run")
    run_training(run, TrainConfig(epochs=2, batch_size=8, workers=1))
    err = capsys.readouterr().err
    assert len(BATCH.findall(err)) >= 3, err


def test_over_budget_picks_a_cheaper_plan_for_what_was_not_chosen(tmp_path, plain, capsys, monkeypatch):
    from audit.train import planning
    from audit.train.synthetic import make_domain_images

    # no pretrained weights on this machine: the from-scratch plan (resnet18 at the images' 96 px)
    monkeypatch.setattr(planning, "_weights_row", lambda model: {"available": False, "how": None, "source": None})

    table = make_domain_images(tmp_path / "imgs", per_class=4, size=96, styles=("photo", "sketch", "cartoon"))
    run = _table_run(table, tmp_path / "run")
    run_training(run, TrainConfig(epochs=4, auto_epochs=True, time_budget="2", workers=1))
    err = capsys.readouterr().err
    plan = _stage(run)["plan"]
    assert plan["reduced"] and plan["full"]["model"] == "resnet18" and plan["full"]["image_size"] == 96
    assert "--model resnet18 --image-size 96 --epochs 4" in plan["reason"] and plan["reason"] in err
    assert (plan["model"], plan["image_size"], plan["epochs"]) != ("resnet18", 96, 4)
    assert _stage(run)["model"] == plan["model"] and _stage(run)["image_size"] == plan["image_size"]


def test_over_budget_keeps_what_the_user_chose(demo_classify, tmp_path, plain, capsys):
    run = _small_run(demo_classify, tmp_path / "run", n=60)
    run_training(run, TrainConfig(model="small_cnn", image_size=32, epochs=2, time_budget="0.001", workers=1))
    plan = _stage(run)["plan"]
    assert not plan["reduced"] and (plan["model"], plan["image_size"], plan["epochs"]) == ("small_cnn", 32, 2)
    assert "were chosen" in plan["reason"]


def _table_run(table: pd.DataFrame, out):
    from audit.ingest import ingest
    from audit.manifest import Roles
    from audit.readers import ReadOptions

    csv = out.parent / "table.csv"
    table.to_csv(csv, index=False)
    opts = ReadOptions(roles=Roles(filepath="path", label="label", domain="domain"), root=out.parent)
    run = ingest(csv, out=out, format="table", options=opts, seed=0, command=["audit", "test"])
    run.unlock()
    return run


class _StopAfter(LocalExecutor):
    """Raises KeyboardInterrupt (as a signal would) after ``epochs`` epochs of the first fold."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def fit(self, *args, on_epoch=None, **kwargs):
        def stop(ep, rec):
            on_epoch(ep, rec)
            if ep + 1 >= self.epochs:
                raise KeyboardInterrupt("stopped")

        return super().fit(*args, on_epoch=stop, **kwargs)


def test_interrupted_fold_resumes_from_its_checkpoint_and_equals_an_uninterrupted_run(demo_classify, tmp_path,
                                                                                      plain, capsys):
    cfg = TrainConfig(model="small_cnn", image_size=16, epochs=4, workers=1)
    ref = _small_run(demo_classify, tmp_path / "ref")
    run_training(ref, cfg)
    run = _small_run(demo_classify, tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run_training(run, cfg, executor=_StopAfter(2))
    assert not run.has("predictions.parquet")
    capsys.readouterr()
    seen = []
    run_training(run, cfg, on_fold_done=lambda k, s: seen.append(s))
    err = capsys.readouterr().err
    assert seen == ["resumed", "trained", "trained"]
    assert re.search(r"^resuming fold holdout=\S+ at epoch 3/4$", err, re.M), err
    a = pd.read_parquet(ref.path / "predictions.parquet")
    b = pd.read_parquet(run.path / "predictions.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6)


def test_cli_plan_line_in_a_log_file_and_bad_budget(demo_classify, tmp_path):
    run = _small_run(demo_classify, tmp_path / "run", n=60)
    env = {**os.environ, "AUDIT_PROGRESS": "", "AUDIT_NO_PROGRESS": ""}
    with open(tmp_path / "log.txt", "w") as log:
        rc = subprocess.call([sys.executable, "-m", "audit", "train", str(run.path), "--epochs", "1",
                              "--time-budget", "15m", "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env)
    out = (tmp_path / "log.txt").read_text()
    assert rc == 0, out
    assert PLAN.search(out), out
    r = subprocess.run([sys.executable, "-m", "audit", "train", str(run.path), "--time-budget", "soon"],
                       capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--time-budget" in r.stderr + r.stdout
