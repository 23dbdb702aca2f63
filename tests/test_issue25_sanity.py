"""Issue 25, verified end to end: never report a gap on a model that learned nothing.

Real small segmenters on generated masks (one that learns, one that cannot), the headline and terminal that withhold
a degenerate model's gaps, ``audit check`` that never passes a gap rule on such a model, and the one-class fold that
is no evidence against a model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from audit.cli import app
from audit.metrics.sanity import model_sanity

GAPS = {"generalization_gap", "worst_group", "group_disparity", "fairness_violation", "miscalibration"}
FAST = ["--model", "small_unet", "--device", "cpu", "--workers", "1", "--image-size", "32", "--seg-loss", "ce"]


def cli(*args, code: int | None = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    if code is not None:
        assert res.exit_code == code, (args, res.exit_code, res.output, res.exception)
    return res


def _squares(root: Path, *, visible: bool, n: int = 24) -> Path:
    """32x32 images and 0/1 masks over two sites: a bright 8x8 square (``visible``: it can be learned) or a 2%
    random foreground invisible in the image (nothing to learn: a segmenter predicts background everywhere)."""
    rng = np.random.default_rng(1)
    (root / "im").mkdir(parents=True)
    (root / "mk").mkdir()
    rows = []
    for i in range(n):
        img = rng.integers(0, 60 if visible else 255, (32, 32, 3), dtype=np.uint8)
        m = np.zeros((32, 32), np.uint8)
        if visible:
            r, c = rng.integers(4, 20, 2)
            m[r:r + 8, c:c + 8] = 1
            img[m == 1] = 220
        else:
            m = (rng.random((32, 32)) < 0.02).astype(np.uint8)
        Image.fromarray(img).save(root / "im" / f"{i:02d}.png")
        Image.fromarray(m).save(root / "mk" / f"{i:02d}.png")
        rows.append({"path": f"im/{i:02d}.png", "mask": f"mk/{i:02d}.png", "site": "PQ"[i % 2]})
    with open(root / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "mask", "site"])
        w.writeheader()
        w.writerows(rows)
    return root / "table.csv"


def _profiled(tmp_path: Path, *, visible: bool, n: int = 24) -> Path:
    table = _squares(tmp_path / "data", visible=visible, n=n)
    out = tmp_path / "run"
    cli("profile", table, "--path-col", "path", "--mask", "mask", "--domain", "site", "--out", out, "--workers", "1",
        "--check", "integrity")
    return out


def _findings(out: Path) -> list[dict]:
    data = json.loads((out / "findings.json").read_text())
    return data["findings"] if isinstance(data, dict) else data


def test_an_all_background_segmenter_is_named_early_and_flagged(tmp_path):
    out = _profiled(tmp_path, visible=False, n=40)  # 40 images: every fold has validation rows
    res = cli("--progress", "plain", "train", out, "--epochs", "3", *FAST)
    assert "foreground IoU on the validation rows is still 0 after 2 epoch(s)" in " ".join(res.output.split())
    folds = json.loads((out / "run.json").read_text())["stages"]["train"]["folds"]
    assert folds and all(any("foreground IoU" in n for n in f.get("notes", [])) for f in folds)
    # the sanity check runs after `audit train` itself: a train-stage finding, in the terminal, never "no findings"
    text = " ".join(res.output.split())
    assert "no findings from this step" not in text and "degenerate_model" in text
    train_found = [f for f in _findings(out) if f.get("stage") == "train" and f["kind"] == "degenerate_model"]
    assert len(train_found) == 1 and train_found[0]["severity"] == "critical"
    assert "never segmented" in train_found[0]["detail"] and "holdout=" in train_found[0]["detail"]
    info = json.loads((out / "run.json").read_text())["stages"]["train"]["sanity"]
    assert info["degenerate_models"] == ["small_unet"] and info["per_pixel_prior"]
    tsan = pd.read_parquet(out / "train" / "sanity.parquet")
    assert tsan["degenerate"].all() and tsan["baseline_name"].str.contains("per-pixel prior").all()
    assert (out / "train" / "prior.parquet").is_file()
    res = cli("metrics", out, "--n-boot", "100")
    kinds = {f["kind"] for f in _findings(out) if f.get("stage") == "metrics"}
    assert "degenerate_model" in kinds and not GAPS & kinds
    text = " ".join(res.output.split())
    assert "overall fg_dice" in text and "learned nothing usable" in text
    assert "largest generalization gap" not in text  # a gap of a constant model is not "no gap"
    from audit.headline import headline
    from audit.rundir import RunDir

    h = headline(RunDir.open(out))
    assert h["largest_gap"] is None and h["worst_group"] is None and h["withheld_models"] == ["small_unet"]
    assert h["overall"]["metric"] == "fg_dice" and h["overall"]["value"] == 0


def test_a_real_small_segmenter_that_learns_passes_without_the_finding(tmp_path):
    out = _profiled(tmp_path, visible=True)
    cli("train", out, "--epochs", "3", *FAST)
    assert not [f for f in _findings(out) if f["kind"] == "degenerate_model"]  # the check after training passes it
    assert json.loads((out / "run.json").read_text())["stages"]["train"]["sanity"]["degenerate_models"] == []
    cli("metrics", out, "--n-boot", "100")
    assert "degenerate_model" not in {f["kind"] for f in _findings(out)}
    sanity = pd.read_parquet(out / "metrics" / "sanity.parquet")
    assert (sanity["status"] == "ok").all() and (sanity["value"] > sanity["baseline"]).all()
    from audit.headline import headline
    from audit.rundir import RunDir

    h = headline(RunDir.open(out))
    assert h["overall"]["metric"] == "fg_dice" and h["overall"]["value"] > 0.5
    assert h["largest_gap"] is not None and h["withheld_models"] == []


def _degenerate_fake_run(tmp_path: Path):
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", n=360)
    p = run.read_table("predictions.parquet")
    p["y_pred"] = p["y_true"].mode()[0]
    f = tmp_path / "const.parquet"
    p.to_parquet(f, index=False)
    return run, f


def test_check_never_passes_a_gap_rule_on_a_degenerate_model(tmp_path):
    run, const = _degenerate_fake_run(tmp_path)
    hand = tmp_path / "hand.toml"
    hand.write_text('[[rule]]\nid = "gap"\ncheck = "generalization_gap"\nthreshold = 1.0\n\n'
                    '[[rule]]\nid = "wg"\ncheck = "worst_group"\nthreshold = 0.0\n')
    ok = cli("check", run.path, "--policy", hand)  # a model that works: both rules pass
    assert "not interpretable" not in ok.output
    cli("metrics", run.path, "--predictions", const, "--n-boot", "100")
    cli("check", run.path, "--policy", hand, code=1)
    rules = json.loads((run.path / "check" / "result.json").read_text())["rules"]
    assert {r["id"]: r["status"] for r in rules} == {"gap": "fail", "wg": "fail"}
    assert all(r["message"].startswith("not interpretable: small_cnn learned nothing usable") for r in rules)


def test_a_starter_policy_on_a_degenerate_run_fails_it_on_the_degenerate_model_rule(tmp_path):
    run, const = _degenerate_fake_run(tmp_path)
    cli("metrics", run.path, "--predictions", const, "--n-boot", "100")
    pol = tmp_path / "starter.toml"
    cli("init-policy", run.path, "--out", pol)
    text = pol.read_text()
    assert "a warning while small_cnn learned nothing usable" in text  # the gap rules: warnings on this model
    # a CI gate set up on a model that learned nothing must not go green: no-degenerate-model is an error
    block = text.split('id = "no-degenerate-model"', 1)[1].split("[[rule]]", 1)[0]
    assert 'severity = "warn"' not in block
    assert "FAILS this rule until the model is retrained" in text
    cli("check", run.path, "--policy", pol, code=1)
    rules = {r["id"]: r for r in json.loads((run.path / "check" / "result.json").read_text())["rules"]}
    assert rules["no-degenerate-model"]["status"] == "fail"
    flagged = [r for r in rules.values() if r["message"].startswith("not interpretable")]
    assert flagged and all(r["status"] == "warn" for r in flagged)


def test_a_fold_whose_test_rows_hold_one_class_is_no_evidence_against_the_model():
    base = {"model": "m", "protocol": "lodo", "seed": 0, "role": "test", "held_out": False}
    one = pd.DataFrame({**base, "fold": "holdout=x", "y_true": ["a"] * 4, "y_pred": ["a"] * 4})
    s = model_sanity(one, "classify", ["a", "b"])
    assert not s["degenerate"].any()  # perfect on the only class present: it cannot beat a perfect baseline
    wrong = pd.DataFrame({**base, "fold": "holdout=x", "y_true": ["a"] * 12, "y_pred": ["b"] * 12})
    s = model_sanity(wrong, "classify", ["a", "b"])
    assert s["degenerate"].all() and "never recognized" in s["reason"].iloc[0]  # a dead class still flags it
    const = pd.DataFrame({**base, "fold": "holdout=x", "y_true": ["a"] * 30 + ["b"] * 20, "y_pred": ["a"] * 50})
    assert model_sanity(const, "classify", ["a", "b"])["degenerate"].all()
