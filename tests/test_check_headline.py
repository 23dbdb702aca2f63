"""audit.headline: robust headline numbers from whatever tables a run has."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from audit.headline import headline, primary_metric
from audit.testing import make_fake_run


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("hl")
    return {
        "classify": make_fake_run(base / "c"),
        "segment": make_fake_run(base / "s", task="segment"),
        "profile": make_fake_run(base / "p", profile_only=True),
    }


def test_worst_group_is_the_lowest_ok_group(fake_runs):
    run = fake_runs["classify"]
    h = headline(run)
    g = run.read_table("metrics/groups.parquet")
    ref = g[(g.metric == "accuracy") & (g.scope == "ood") & (g.status == "ok") & (g.by != "overall")]
    assert h["worst_group"]["value"] == pytest.approx(ref["value"].min())
    assert h["worst_group"]["n"] >= 30
    assert h["worst_group"]["ci_low"] <= h["worst_group"]["value"] <= h["worst_group"]["ci_high"]
    gen = run.read_table("metrics/generalization.parquet")
    assert h["largest_gap"]["gap"] == pytest.approx(gen["gap"].max())
    assert h["models"] == ["small_cnn"]
    assert h["findings"]["total"] == len(run.findings())
    assert h["n_domains"] == 3 and h["n_classes"] == 3
    json.dumps(h, allow_nan=False)  # JSON-safe


def test_insufficient_groups_never_win(fake_runs, tmp_path):
    run = fake_runs["classify"]
    g = run.read_table("metrics/groups.parquet")
    tiny = g.iloc[[1]].assign(value=0.0, n=3, status="insufficient_evidence", group="tiny")
    empty = g.iloc[[1]].assign(value=math.nan, n=0, status="empty", group="nobody")
    run.write_table("metrics/groups.parquet", pd.concat([g, tiny, empty]))
    try:
        h = headline(run)
        assert h["worst_group"]["group"] not in ("tiny", "nobody")
        assert h["n_insufficient_groups"] >= 1
    finally:
        run.write_table("metrics/groups.parquet", g)


def test_segment_uses_miou(fake_runs):
    h = headline(fake_runs["segment"])
    assert h["metric"] == "miou" and h["task"] == "segment"
    assert h["largest_fairness_gap"] is None


def test_profile_only_run_has_no_model_fields(fake_runs):
    h = headline(fake_runs["profile"])
    assert h["models"] == [] and h["worst_group"] is None and h["largest_gap"] is None and h["overall"] is None
    assert h["biggest_association"]["b"] == "attr.background"
    assert h["n_unreadable"] == 2
    assert h["stages"]["train"] == "skipped"


def test_damaged_table_is_reported_not_raised(fake_runs, tmp_path):
    import shutil

    src = fake_runs["classify"].path
    dst = tmp_path / "damaged"
    shutil.copytree(src, dst)
    (dst / "metrics" / "groups.parquet").write_bytes(b"not parquet")
    from audit.rundir import RunDir

    h = headline(RunDir(dst))
    assert h["worst_group"] is None
    assert any("groups.parquet" in p for p in h["problems"])
    assert h["largest_gap"] is not None


def test_primary_metric_prefers_task_metric():
    assert primary_metric(["ece", "Accuracy"], "classify") == "Accuracy"
    assert primary_metric(["pixel_acc", "miou"], "segment") == "miou"
    assert primary_metric(["ece"], "classify") is None
