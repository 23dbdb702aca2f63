"""Distributed training: 2 CPU processes (gloo) under torchrun produce a finished run in the local format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ingest_demo
from typer.testing import CliRunner

from audit.cli import app
from audit.train import TrainConfig, run_training
from audit.train.ddp import ReadOnlyRun, launch, shard_rows
from audit.train.predictions import COMMON_COLUMNS, validate_predictions

OPTS = ["--model", "small_cnn", "--protocol", "split", "--epochs", "2", "--image-size", "32", "--device", "cpu",
        "--seed", "3"]


def _small(run, n=600):
    man = run.manifest()
    keep = man.groupby("domain", group_keys=False).head(n // 3)
    run.write_manifest(keep.reset_index(drop=True))
    return run


@pytest.fixture(scope="module")
def ddp_and_local(demo_classify, tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    ddp_run = _small(ingest_demo(demo_classify, base / "ddp"))
    r = CliRunner().invoke(app, ["--quiet", "train", str(ddp_run.path), "--distributed", "2", *OPTS])
    rc = r.exit_code
    local = _small(ingest_demo(demo_classify, base / "local"))
    run_training(local, TrainConfig(model="small_cnn", protocol="split", epochs=2, image_size=32, device="cpu", seed=3))
    return rc, ddp_run, local


def test_ddp_run_finishes_with_the_local_predictions_format(ddp_and_local):
    rc, run, local = ddp_and_local
    assert rc == 0
    st = run.info["stages"]["train"]
    assert st["status"] == "ok"
    assert st["distributed"]["world_size"] == 2 and st["distributed"]["backend"] == "gloo"
    p = pd.read_parquet(run.path / "predictions.parquet")
    q = pd.read_parquet(local.path / "predictions.parquet")
    classes = run.classes()
    assert list(p.columns) == list(q.columns) == COMMON_COLUMNS + ["y_true", "y_pred", "confidence"] + [
        f"p_{c}" for c in classes]
    assert (p.dtypes == q.dtypes).all()
    validate_predictions(p, run.manifest(), classes)  # raises on anything malformed
    # the same rows are evaluated as in the local run: same exclusions, folds, splits
    key = ["sample_id", "fold", "role", "held_out"]
    pd.testing.assert_frame_equal(p[key].sort_values(key).reset_index(drop=True),
                                  q[key].sort_values(key).reset_index(drop=True))
    probs = p[[f"p_{c}" for c in classes]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    acc, acc_local = float((p["y_true"] == p["y_pred"]).mean()), float((q["y_true"] == q["y_pred"]).mean())
    # 10 classes, 2 short epochs: above chance, and as good as one process within sampling noise (~180 rows)
    assert acc > 0.15 and acc > acc_local - 0.15, (acc, acc_local)


def test_ddp_checkpoints_are_rank_0s_in_the_local_format(ddp_and_local):
    _, run, _ = ddp_and_local
    ck = sorted((run.path / "train" / "ckpt").glob("*.pt"))
    assert ck and not [c for c in ck if ".rank" in c.name]
    state = torch.load(ck[0], map_location="cpu", weights_only=False)
    assert state["done"] and state["world_size"] == 2
    assert not any(k.startswith("module.") for k in state["model"])


@pytest.mark.slow
def test_ddp_rerun_reuses_finished_folds(ddp_and_local):
    _, run, _ = ddp_and_local
    before = pd.read_parquet(run.path / "predictions.parquet")
    assert launch(run.path, 2, OPTS, timeout=600) == 0
    folds = run.info["stages"]["train"]["folds"]
    assert {f["status"] for f in folds} == {"reused"}
    pd.testing.assert_frame_equal(before, pd.read_parquet(run.path / "predictions.parquet"))


def test_shards_cover_every_row_with_equal_counts():
    rows = np.arange(103) * 7
    shards = [shard_rows(rows, r, 4, seed=5) for r in range(4)]
    assert {len(s) for s in shards} == {26}
    allr = np.concatenate(shards)
    assert set(allr) == set(rows) and len(allr) - len(set(allr)) == 4 * 26 - 103
    assert not np.array_equal(shards[0], rows[0::4])  # shuffled, not strided over a sorted order
    assert np.array_equal(shard_rows(rows, 1, 4, seed=5), shards[1])  # deterministic


def test_read_only_run_drops_writes(classify_run):
    ro = ReadOnlyRun(classify_run)
    before = (classify_run.path / "run.json").read_text()
    ro.update_info(device={"type": "x"})
    ro.write_table("predictions.parquet", pd.DataFrame({"a": [1]}))
    ro.write_json("train/x.json", {"a": 1})
    assert (classify_run.path / "run.json").read_text() == before
    assert not (classify_run.path / "predictions.parquet").exists()
    assert len(ro.manifest()) == len(classify_run.manifest())


def test_distributed_with_ray_engine_is_a_usage_error(classify_run):
    r = CliRunner().invoke(app, ["train", str(classify_run.path), "--distributed", "2", "--engine", "ray"])
    assert r.exit_code == 2 and "--distributed" in r.output


def test_distributed_bad_settings_fail_before_starting_processes(classify_run):
    r = CliRunner().invoke(app, ["train", str(classify_run.path), "--distributed", "2", "--model", "resnet_18"])
    assert r.exit_code == 2 and "unknown --model" in r.output
    r = CliRunner().invoke(app, ["train", str(classify_run.path), "--distributed", "2", "--epochs", "0"])
    assert r.exit_code == 2 and "--epochs" in r.output
