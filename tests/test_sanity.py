"""Model sanity: no gap, group or fairness finding is drawn from a model that learned nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from audit.metrics.sanity import degenerate_findings, model_sanity

WITHHELD = {"generalization_gap", "worst_group", "group_disparity", "fairness_violation", "miscalibration"}


def _metrics_with(run_path, preds: pd.DataFrame, tmp_path) -> list[dict]:
    from typer.testing import CliRunner

    from audit.cli import app

    f = tmp_path / "preds.parquet"
    preds.to_parquet(f, index=False)
    out = CliRunner().invoke(app, ["metrics", str(run_path), "--predictions", str(f), "--n-boot", "200"])
    assert out.exit_code == 0, out.output
    return json.loads((run_path / "findings.json").read_text())


def test_a_constant_majority_classifier_is_degenerate_and_its_gaps_are_withheld(tmp_path):
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", n=360)
    before = json.loads((run.path / "findings.json").read_text())
    assert any(f["kind"] in WITHHELD for f in before)  # the biased fake run has gaps when its model works
    p = run.read_table("predictions.parquet")
    major = p["y_true"].mode()[0]
    p["y_pred"] = major
    for c in [c for c in p.columns if c.startswith("p_")]:
        p[c] = 1.0 if c == f"p_{major}" else 0.0
    p["confidence"] = 1.0
    found = _metrics_with(run.path, p, tmp_path)
    kinds = [f["kind"] for f in found if f.get("stage") == "metrics"]
    assert "degenerate_model" in kinds
    assert not WITHHELD & set(kinds)
    deg = next(f for f in found if f["kind"] == "degenerate_model")
    assert deg["severity"] == "critical"
    assert "majority class" in deg["detail"] and "holdout=" in deg["detail"]
    gen = run.read_table("metrics/generalization.parquet")
    assert "interpretable" in gen.columns and not gen["interpretable"].any()
    sanity = run.read_table("metrics/sanity.parquet")
    assert sanity["degenerate"].all()
    # the terminal, summary.md and report.html say why, not only the findings list
    from audit.headline import headline
    from audit.report import write_report

    h = headline(run)
    assert [d["model"] for d in h["degenerate_models"]] == sorted(p["model"].astype(str).unique())
    write_report(run)
    html = (run.path / "report.html").read_text()
    assert 'id="sanity"' in html and "not interpretable" in html
    assert "model sanity" in (run.path / "summary.md").read_text()


def test_a_model_that_learned_passes_the_check(tmp_path):
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", n=360)
    found = _metrics_with(run.path, run.read_table("predictions.parquet"), tmp_path)
    assert "degenerate_model" not in {f["kind"] for f in found}
    assert not run.read_table("metrics/sanity.parquet")["degenerate"].any()
    from audit.headline import headline

    assert headline(run)["degenerate_models"] == []


def test_balanced_accuracy_stands_beside_accuracy_when_classes_are_imbalanced(tmp_path):
    from audit.headline import headline
    from audit.report.markdown import headline_rows
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", n=360)
    man = run.manifest()
    counts = man["label"].value_counts()
    h = headline(run)
    imbalanced = counts.iloc[0] >= 1.5 * counts.iloc[-1]
    assert (h["overall_balanced"] is not None) == imbalanced
    # make the labels imbalanced: relabel most of the last class as the first, predictions follow the truth
    last, first = counts.index[-1], counts.index[0]
    moved = set(man.loc[man.index[man["label"] == last][: int(counts.iloc[-1] * 0.8)], "sample_id"].astype(str))
    man.loc[man["sample_id"].astype(str).isin(moved), "label"] = first
    run.write_table("manifest.parquet", man)
    p = run.read_table("predictions.parquet")
    hit = p["sample_id"].astype(str).isin(moved)
    p.loc[hit & (p["y_pred"] == p["y_true"]), "y_pred"] = first
    p.loc[hit, "y_true"] = first
    _metrics_with(run.path, p, tmp_path)
    h = headline(run)
    b = h["overall_balanced"]
    assert b is not None and b["metric"] == "balanced_accuracy" and b["ci_low"] <= b["value"] <= b["ci_high"]
    assert any(k.startswith("balanced accuracy") for k, _ in headline_rows(h))


def test_an_all_background_segmenter_is_degenerate(tmp_path):
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", task="segment", n=120)
    p = run.read_table("predictions.parquet")
    k = sum(c.startswith("inter_") for c in p.columns)
    for i in range(1, k):
        p[f"inter_{i}"] = 0
        p[f"pred_{i}"] = 0
        p[f"union_{i}"] = p[f"true_{i}"]
    found = _metrics_with(run.path, p, tmp_path)
    kinds = {f["kind"] for f in found if f.get("stage") == "metrics"}
    assert "degenerate_model" in kinds and not WITHHELD & kinds
    deg = next(f for f in found if f["kind"] == "degenerate_model")
    assert "never segmented" in deg["detail"]


def test_sanity_rules_on_simulated_predictions():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])
    base = {"model": "m", "protocol": "lodo", "fold": "holdout=x", "seed": 0, "role": "test", "held_out": False}
    good = pd.DataFrame({**base, "y_true": y, "y_pred": np.where(rng.uniform(size=n) < 0.8, y, "a")})
    s = model_sanity(good, "classify", ["a", "b", "c"])
    assert not s["degenerate"].any()
    # a model that never predicts class "b" (90 samples) but beats its baseline: a warning, its gaps stand
    never_b = good.assign(y_pred=np.where(y == "b", "a", y))
    s = model_sanity(never_b, "classify", ["a", "b", "c"])
    assert (s["status"] == "partial").all() and not s["degenerate"].any()
    assert "'b' is never recognized" in s["reason"].iloc[0]
    findings, models = degenerate_findings(s)
    assert models == set() and findings[0].severity == "warning"
    # two of three classes dead: degenerate, critical
    dead = good.assign(y_pred="a")
    s = model_sanity(dead, "classify", ["a", "b", "c"])
    assert s["degenerate"].all()
    findings, models = degenerate_findings(s)
    assert models == {"m"} and findings[0].severity == "critical"
    # a rare class with fewer than MIN_PRESENT samples never recognized is no evidence
    rare = good.copy()
    rare.loc[rare.index[:295], "y_true"] = "a"
    rare.loc[rare.index[295:], "y_true"] = "c"
    rare["y_pred"] = np.where(rng.uniform(size=n) < 0.95, rare["y_true"], "b")
    rare.loc[rare.index[295:], "y_pred"] = "a"
    s = model_sanity(rare, "classify", ["a", "b", "c"])
    assert not s.loc[s["metric"] == "recall", "reason"].str.contains("'c'").any()


def test_check_fails_the_starter_rule_on_a_degenerate_model(tmp_path):
    from typer.testing import CliRunner

    from audit.check.init import starter_policy
    from audit.cli import app
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", n=360)
    policy = tmp_path / "policy.toml"
    policy.write_text(starter_policy(run))
    assert 'id = "no-degenerate-model"' in policy.read_text()
    ok = CliRunner().invoke(app, ["check", str(run.path), "--policy", str(policy)])
    assert "no-degenerate-model" in ok.output
    p = run.read_table("predictions.parquet")
    p["y_pred"] = p["y_true"].mode()[0]
    _metrics_with(run.path, p, tmp_path)
    bad = CliRunner().invoke(app, ["check", str(run.path), "--policy", str(policy)])
    assert bad.exit_code == 1, bad.output
    line = next(ln for ln in bad.output.splitlines() if "no-degenerate-model" in ln)
    assert "FAIL" in line.upper(), line
