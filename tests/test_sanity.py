"""Model sanity: no gap, group or fairness finding is drawn from a model that learned nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

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
    # mIoU is never shown bare: it says that the background class is included
    from audit.report import write_report
    from audit.report.markdown import metric_label

    assert metric_label("miou") == "mIoU (background included)" and metric_label("fg_dice") == "fg_dice"
    write_report(run)
    html = (run.path / "report.html").read_text()
    assert "mIoU (background included)" in html and "<td>miou</td>" not in html


def test_sanity_rules_on_simulated_predictions():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])
    base = {"model": "m", "protocol": "lodo", "fold": "holdout=x", "seed": 0, "role": "test", "held_out": False}
    good = pd.DataFrame({**base, "y_true": y, "y_pred": np.where(rng.uniform(size=n) < 0.8, y, "a")})
    s = model_sanity(good, "classify", ["a", "b", "c"])
    assert not s["degenerate"].any()
    # a model that never predicts class "b" (90 samples) although it beats its baseline otherwise: one dead class
    # present in enough samples is enough (issue 25): critical, its gaps withheld, and the text says why
    never_b = good.assign(y_pred=np.where(y == "b", "a", y))
    s = model_sanity(never_b, "classify", ["a", "b", "c"])
    acc = s[s["metric"] == "accuracy"].iloc[0]
    assert acc["ci_low"] > acc["baseline"]  # it does beat the majority class: the dead class alone flags it
    assert (s["status"] == "degenerate").all() and s["degenerate"].all()
    n_b = int((y == "b").sum())
    reason = s["reason"].iloc[0]
    assert f"class 'b' is never recognized: present in {n_b} test samples, 0 recognized" in reason
    assert "majority class 'a'" in reason and f"{acc['baseline']:.3f} [" in reason  # the baseline with its interval
    assert acc["baseline_ci_low"] <= acc["baseline"] <= acc["baseline_ci_high"]
    findings, models = degenerate_findings(s)
    assert models == {"m"} and len(findings) == 1 and findings[0].severity == "critical"
    assert "'b'" in findings[0].detail and "holdout=x" in findings[0].detail
    assert findings[0].evidence["baseline_ci"] == [acc["baseline_ci_low"], acc["baseline_ci_high"]]
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


def _seg_rows(true_masks, pred_masks, *, fold="holdout=x"):
    """Prediction rows (per-image pixel counts) of a binary segmenter, as audit train writes them."""
    rows = []
    for i, (t, p) in enumerate(zip(true_masks, pred_masks, strict=True)):
        r = {"model": "m", "protocol": "lodo", "fold": fold, "seed": 0, "role": "test", "held_out": False,
             "sample_id": f"s{i}"}
        for c in (0, 1):
            r[f"inter_{c}"] = int(((t == c) & (p == c)).sum())
            r[f"union_{c}"] = int(((t == c) | (p == c)).sum())
            r[f"true_{c}"] = int((t == c).sum())
            r[f"pred_{c}"] = int((p == c).sum())
        rows.append(r)
    return pd.DataFrame(rows)


def test_the_per_pixel_prior_of_the_training_masks_is_a_baseline_a_segmenter_must_beat():
    from audit.metrics.sanity import PRIOR_KEYS, pixel_prior, prior_counts

    rng = np.random.default_rng(0)
    size = 16

    def masks(n):  # a fixed band (rows 4-7) that is nearly always foreground, plus a random blob elsewhere
        m = np.zeros((n, size, size), np.uint8)
        m[:, 4:8, :] = 1
        for k in range(n):
            r, c = rng.integers(9, 14), rng.integers(0, 13)
            m[k, r:r + 3, c:c + 3] = 1
        return m

    train, test = masks(30), masks(20)
    train[0, 0, 0] = 255  # an unlabelled pixel
    prior = pixel_prior(train, 2)
    # the prior is the per-pixel majority, i.e. the 0.5 threshold of the foreground frequency map
    freq = (train == 1).sum(0) / (train != 255).sum(0)
    assert np.array_equal(prior, (freq > 0.5).astype(np.int64))
    assert prior[4:8].all() and not prior[9:].any()
    inter, union = prior_counts(prior, test, 2)
    t1, p1 = test == 1, (prior == 1)[None]
    assert np.array_equal(inter[:, 1], (t1 & p1).sum((1, 2))) and np.array_equal(union[:, 1], (t1 | p1).sum((1, 2)))
    prior_iou = inter[:, 1].sum() / union[:, 1].sum()
    share = (test == 1).mean()
    assert prior_iou > share  # the layout prior is the stronger baseline here

    pframe = _seg_rows(test, test)[PRIOR_KEYS].assign(prior_inter_0=inter[:, 0], prior_union_0=union[:, 0],
                                                      prior_inter_1=inter[:, 1], prior_union_1=union[:, 1])
    # a "model" that predicts the average layout: it beats all-background and all-foreground, not the prior
    layout = _seg_rows(test, np.repeat(prior[None].astype(np.uint8), len(test), 0))
    s = model_sanity(layout, "segment", ["background", "vessel"])
    assert not s["degenerate"].any()  # without the prior it would pass
    s = model_sanity(layout, "segment", ["background", "vessel"], prior=pframe)
    row = s[s["metric"] == "iou"].iloc[0]
    assert row["baseline"] == pytest.approx(prior_iou) and "per-pixel prior" in row["baseline_name"]
    assert row["baseline_ci_low"] <= row["baseline"] <= row["baseline_ci_high"]
    assert s["degenerate"].all() and "per-pixel prior" in s["reason"].iloc[0]
    findings, _ = degenerate_findings(s)
    assert findings[0].severity == "critical" and "per-pixel prior" in findings[0].detail
    # a segmenter that gets the blobs too beats it
    good = _seg_rows(test, test)
    assert not model_sanity(good, "segment", ["background", "vessel"], prior=pframe)["degenerate"].any()


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
