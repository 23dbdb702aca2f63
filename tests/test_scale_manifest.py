"""Large manifests: a synthetic manifest (tiny images referenced many times) through ingestion, profile
aggregation, near-duplicate search, metrics and the dashboard's loading - results checked against plain
pandas/numpy references, nothing dropped. The 1M-row figures come from ``bench/scale.py``; here 30k rows keep
the default suite fast (``-m slow`` runs 300k)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pipeline(scale, work: Path, n: int) -> dict:
    scale.prepare(work, n, n_images=64)
    return {s: scale.step(s, work, n_boot=20) for s in scale.STEPS}


def _check(scale, work: Path, n: int, res: dict) -> None:
    from audit.rundir import RunDir

    run = RunDir.open(work / "run")
    table = pd.read_parquet(work / "data" / "table.parquet")
    man = run.manifest()
    # ingestion: every row, ids unique, paths resolved once per folder yet each row checked
    assert res["ingest"]["rows"] == len(man) == n
    assert man["sample_id"].is_unique and set(man["sample_id"]) == set(table["id"])
    assert int(man["attr.background"].isna().sum()) == int(table["background"].isna().sum())  # missing stays missing
    # profile aggregation equals a value_counts reference
    dist = run.read_table("profile/distribution.parquet")
    for col, ref_col in (("label", "digit"), ("domain", "site"), ("attr.background", "background")):
        sub = dist[dist["column"] == col]
        got = sub[sub["group"].notna()].set_index("group")["n"].astype(int).to_dict()
        ref = table[ref_col].value_counts().astype(int).to_dict()
        assert got == ref, col
        assert int(sub.loc[sub["group"].isna(), "n"].sum()) == int(table[ref_col].isna().sum())  # missing: its own row
    assoc = run.read_table("profile/associations.parquet")
    row = assoc[(assoc["a"] == "label") & (assoc["b"] == "attr.background") & assoc["within"].isna()]
    assert len(row) == 1 and float(row["value"].iloc[0]) > 0.3  # the planted label-background tie
    # near duplicates: exactly the planted twins (random 64-bit hashes never land 6 bits apart by chance here)
    imgs = run.read_table("profile/images.parquet")
    ph = imgs["phash"].to_numpy(np.int64)
    dups = run.read_table("profile/duplicates.parquet")
    assert res["neardup"]["pairs"] == len(dups) == min(n // 100, 10_000)
    pos = pd.Series(np.arange(len(imgs)), index=imgs["sample_id"].astype(str))
    a, b = ph[pos[dups["a"].astype(str)].to_numpy()], ph[pos[dups["b"].astype(str)].to_numpy()]
    assert (np.bitwise_count((a ^ b).view(np.uint64)) == dups["distance"].to_numpy()).all()
    assert (dups["distance"] == 1).all()
    # metrics: overall accuracy equals the predictions' own, every row counted once
    pred = run.read_table("predictions.parquet")
    groups = run.read_table("metrics/groups.parquet")
    ov = groups[(groups["by"] == "overall") & (groups["metric"] == "accuracy") & (groups["scope"] == "all")
                & (groups["fold"] == "all")]
    assert len(ov) == 1
    assert int(ov["n"].iloc[0]) == n
    assert float(ov["value"].iloc[0]) == pytest.approx(float((pred["y_true"] == pred["y_pred"]).mean()), abs=1e-12)
    # the dashboard's loading: bounded outputs, totals exact
    d = res["dashboard"]
    cool = man.set_index("sample_id").loc[pred["sample_id"], "attr.background"].eq("cool").fillna(False).to_numpy()
    assert d["gallery"] == 24 and d["wrong"] == int(((pred["y_true"] != pred["y_pred"]).to_numpy() & cool).sum())
    assert d["broken"] == int((~imgs["readable"]).sum()) and d["dup_pairs"] == len(dups)


def test_large_synthetic_manifest_through_every_step(scale, tmp_path):
    n = 30_000
    res = _pipeline(scale, tmp_path, n)
    _check(scale, tmp_path, n, res)


@pytest.mark.slow
def test_300k_manifest_through_every_step(scale, tmp_path):
    n = 300_000
    res = _pipeline(scale, tmp_path, n)
    _check(scale, tmp_path, n, res)


def test_dashboard_loading_memory_is_bounded(scale, tmp_path):
    """The dashboard step, in a fresh process, stays far below the size of the tables it could load."""
    n = 30_000
    scale.prepare(tmp_path, n, n_images=64)
    for s in ("ingest", "profile", "neardup", "metrics"):
        scale.step(s, tmp_path, n_boot=10)
    env = {**os.environ, "AUDIT_NO_PROGRESS": "1"}
    p = subprocess.run([sys.executable, str(BENCH), "--step", "dashboard", "--n", str(n), "--work", str(tmp_path)],
                       capture_output=True, text=True, env=env, check=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["gallery"] == 24
    # what this step reads on top of the interpreter's import baseline
    assert r["peak_rss_mb"] - r["baseline_rss_mb"] < 300, r
