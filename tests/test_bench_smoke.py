"""The benchmark scripts and the compile path stay runnable: tiny settings on the CPU
(slow; figures are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ingest_demo

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _bench(script: str, *args: str) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_models_bench_runs_on_cpu():
    out = _bench("models.py", "--device", "cpu", "--models", "resnet18,small_cnn", "--image-size", "32",
                 "--batch-size", "4", "--steps", "1", "--warmup", "1", "--cache-images", "8")
    rows = [line for line in out.splitlines() if line.startswith("| resnet18") or line.startswith("| small_cnn")]
    assert len(rows) >= 2 and all("n/a" in r for r in rows)  # no GPU utilization on a CPU


def test_train_bench_runs_on_cpu():
    out = _bench("train.py", "--rounds", "1", "--epochs", "1", "--skip-lodo")
    assert "ratio ours / plain" in out and "| best |" in out


def test_slices_bench_scale_runs_on_cpu(tmp_path):
    """bench/slices.py --scale: one fold of 20,000 planted rows (PCA, minibatch k-means, bootstrap) in seconds."""
    import json

    out = _bench("slices.py", "--seeds", "0", "--scale", "20000", "--json", str(tmp_path / "s.json"))
    scale = json.loads((tmp_path / "s.json").read_text())["scale"]
    assert "scale" in out and scale["rows"] == 20000 and scale["candidates"] >= 1 and scale["seconds"] > 0


def test_compile_trains_on_cpu(demo_classify, tmp_path):
    from audit.train import TrainConfig, run_training

    run = ingest_demo(demo_classify, tmp_path / "run")
    run_training(run, TrainConfig(epochs=1, image_size=32, device="cpu", compile=True, protocol="split"))
    p = pd.read_parquet(run.path / "predictions.parquet")
    assert len(p) and p["y_pred"].notna().all()
    folds = run.info["stages"]["train"]["folds"]
    assert all(f["status"] == "trained" for f in folds)
    assert not any("eagerly" in n for f in folds for n in f.get("notes", [])), folds  # compiled, no fallback
