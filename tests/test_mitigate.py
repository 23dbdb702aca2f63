"""audit mitigate (issue 21): every method retrained on generated data with a planted spurious attribute, the
pairing with the baseline, the summary recomputed from the prediction files, the paired bootstrap, the trainer's
opt-in hooks, the CLI's usage errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from audit.errors import InputError
from audit.metrics.fairness import (
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
)
from audit.mitigate import METHODS, MitigateConfig, pair_predictions, paired_metrics, run_mitigations
from audit.mitigate.paired import KEY, verdict
from audit.mitigate.summary import baseline_predictions
from audit.mitigate.synthetic import ingest_spurious
from audit.rundir import RunDir
from audit.train import TrainConfig, run_training


def _train(run: RunDir, epochs: int) -> None:
    with run:
        with run.stage("train"):
            run_training(run, TrainConfig(epochs=epochs, model="small_cnn", device="cpu"))


@pytest.fixture(scope="module")
def mitigated(tmp_path_factory):
    """Baseline (1 epoch) and all five variants on 3 x 40 tiny images; dedup leaves out planted pairs."""
    root = tmp_path_factory.mktemp("mitigate")
    run = ingest_spurious(root / "data", root / "run", per_domain=40, size=16, seed=1)
    _train(run, 1)
    ids = run.manifest()["sample_id"].astype(str).tolist()
    dups = pd.DataFrame({"a": [ids[0], ids[2], ids[50]], "b": [ids[1], ids[3], ids[90]],
                         "kind": ["exact", "near", "exact"],
                         "cross_split": [False, False, True], "label_conflict": [False, True, False]})
    run.write_table("profile/duplicates.parquet", dups)
    run.update_info(config={"metrics": {"n_boot": 100, "min_n": 5, "depth": 1}})  # as `audit metrics` records it
    with run:
        summary = run_mitigations(run, MitigateConfig(methods=METHODS, groups=("bg",), device="cpu", n_boot=200,
                                                      min_n=5))
    return run, summary, ids


def _child(run: RunDir, method: str) -> RunDir:
    return RunDir(run.path / "mitigations" / method)


def test_every_method_writes_a_variant_on_the_same_held_out_images(mitigated):
    run, summary, _ = mitigated
    base = baseline_predictions(run)
    base_keys = base.loc[base["role"] == "test", KEY].astype(str).sort_values(KEY).reset_index(drop=True)
    assert set(summary["method"]) == set(METHODS)
    for m in METHODS:
        child = _child(run, m)
        preds = child.read_table("predictions.parquet")
        assert list(preds.columns) == list(base.columns)  # same schema
        keys = preds.loc[preds["role"] == "test", KEY].astype(str).sort_values(KEY).reset_index(drop=True)
        pd.testing.assert_frame_equal(keys, base_keys)  # the very same held-out rows
        assert child.has("metrics/groups.parquet") and child.stage_status("metrics") == "ok"
        assert child.info["stages"]["train"]["model"] == "small_cnn"
        assert child.info["stages"]["train"]["protocol"] == run.info["stages"]["train"]["protocol"]
    meta = run.read_json("mitigations/summary.json")["methods"]
    assert meta["dedup"]["rows_left_out"] == 5  # b of each pair + a of the conflict and the cross-split pair
    assert meta["groupdro"]["eta"] == 0.1 and meta["group_balance"]["cells"] == 4
    assert all(meta[m]["verdict"] in ("helps", "no measurable effect", "hurts") for m in METHODS)
    chosen = meta["augment"]
    assert chosen["augment"] == [] or chosen["reasons"], "an augmentation is only chosen with the finding behind it"


def test_summary_numbers_recomputed_from_the_prediction_files(mitigated):
    run, summary, _ = mitigated
    man = run.manifest().set_index("sample_id")
    base = baseline_predictions(run)
    for m in ("groupdro", "reweight"):
        mit = _child(run, m).read_table("predictions.parquet")
        rows = summary[summary["method"] == m].set_index(["metric", "by"])
        for name, df in (("baseline", base), ("mitigated", mit)):
            t = df[df["role"] == "test"].copy()
            ok = t["y_true"].astype(str) == t["y_pred"].astype(str)
            held = t["held_out"].astype(bool)
            assert rows.loc[("ood_accuracy", "held_out"), name] == pytest.approx(ok[held].mean())
            assert rows.loc[("gap", "in_domain - held_out"), name] == pytest.approx(ok[~held].mean() - ok[held].mean())
            cell = (t["y_true"].astype(str) + " | "
                    + man.loc[t["sample_id"].astype(str), "attr.bg"].astype(str).to_numpy())
            per = ok[held].groupby(cell[held]).agg(["mean", "size"])
            worst = per.loc[per["size"] >= 5, "mean"].min()
            assert rows.loc[("worst_group_accuracy", "label x bg"), name] == pytest.approx(worst)
            bg = man.loc[t["sample_id"].astype(str), "attr.bg"].astype(str).to_numpy()
            yt, yp = t["y_true"].astype(str), t["y_pred"].astype(str)
            for metric, lib in (("dp_diff", demographic_parity_difference), ("eop_diff", equal_opportunity_difference),
                                ("eo_diff", equalized_odds_difference)):
                want = lib(yt, yp, sensitive=bg, min_n=5)
                assert rows.loc[(metric, "bg"), name] == pytest.approx(want, nan_ok=True), (m, name, metric)
        r = rows.loc[("ood_accuracy", "held_out")]
        assert r["diff"] == pytest.approx(r["mitigated"] - r["baseline"])
        assert r["ci_low"] <= r["diff"] <= r["ci_high"] and 0 <= r["p"] <= 1


def test_pairing_refuses_different_images(mitigated):
    run, _, _ = mitigated
    base = baseline_predictions(run)
    mit = _child(run, "reweight").read_table("predictions.parquet")
    test_rows = mit.index[mit["role"] == "test"]
    with pytest.raises(InputError, match="not on the baseline's held-out images"):
        pair_predictions(base, mit.drop(index=test_rows[:3]))


def _correlated(n=600, seed=0):
    """Two models that agree on most images: the difficulty of an image is shared."""
    rng = np.random.default_rng(seed)
    hard = rng.random(n) < 0.35
    ok_b = ~hard | (rng.random(n) < 0.2)
    ok_m = ok_b.copy()
    flip = rng.random(n) < 0.06
    ok_m[flip] = ~ok_m[flip]
    y = rng.integers(0, 2, n).astype(str)
    other = np.where(y == "0", "1", "0")
    df = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "fold": "f", "seed": 0, "role": "test",
                       "held_out_b": True, "y_true_b": y, "y_true_m": y,
                       "y_pred_b": np.where(ok_b, y, other), "y_pred_m": np.where(ok_m, y, other)})
    spec = {"ood": np.ones(n, bool), "ind": np.zeros(n, bool), "groups": [], "fair": [], "classes": ["0", "1"],
            "cluster": df["sample_id"].to_numpy()}
    return df, spec, ok_b, ok_m


def _fair_frame(n_b: int, pos_b: int, seed=0):
    """Group a: 60 rows, half positives; group b: ``n_b`` rows, ``pos_b`` of them positives."""
    rng = np.random.default_rng(seed)
    n = 60 + n_b
    y = np.r_[np.tile(["0", "1"], 30), ["1"] * pos_b + ["0"] * (n_b - pos_b)]
    grp = np.r_[np.zeros(60, int), np.ones(n_b, int)]
    other = np.where(y == "0", "1", "0")
    pb = np.where(rng.random(n) < 0.7, y, other)
    pm = np.where(rng.random(n) < 0.8, y, other)
    df = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "fold": "f", "seed": 0, "role": "test",
                       "y_true_b": y, "y_true_m": y, "y_pred_b": pb, "y_pred_m": pm})
    spec = {"ood": np.ones(n, bool), "ind": np.zeros(n, bool), "groups": [], "fair": [("bg", grp, 2)],
            "classes": ["0", "1"], "cluster": df["sample_id"].to_numpy()}
    return df, spec, np.array(["a", "b"])[grp]


@pytest.mark.parametrize("n_b, pos_b, undefined", [
    (3, 1, ("dp_diff", "eop_diff", "eo_diff")),  # group b below min_n: one eligible group for every gap
    (20, 0, ("eop_diff", "eo_diff")),  # group b has no positives: one group with a TPR
    (20, 10, ()),
])
def test_fairness_gap_with_one_eligible_group_is_nan_not_zero(n_b, pos_b, undefined):
    df, spec, bg = _fair_frame(n_b, pos_b)
    out = paired_metrics(df, spec, task="classify", n_boot=200, seed=0, min_n=5).set_index("metric")
    libs = {"dp_diff": demographic_parity_difference, "eop_diff": equal_opportunity_difference,
            "eo_diff": equalized_odds_difference}
    for metric, lib in libs.items():
        r = out.loc[metric]
        for col, sfx in (("baseline", "_b"), ("mitigated", "_m")):
            want = lib(df["y_true" + sfx], df["y_pred" + sfx], sensitive=bg, min_n=5)
            assert r[col] == pytest.approx(want, nan_ok=True), (metric, col)
        if metric in undefined:
            assert np.isnan([r["baseline"], r["mitigated"], r["diff"], r["ci_low"], r["ci_high"]]).all(), metric
            assert r["verdict"] == "not measurable"
        else:
            assert np.isfinite([r["baseline"], r["mitigated"], r["ci_low"], r["ci_high"]]).all(), metric
            assert r["ci_low"] < r["ci_high"] and r["verdict"] != "not measurable"


def test_paired_interval_is_narrower_than_unpaired_on_correlated_predictions():
    df, spec, ok_b, ok_m = _correlated()
    paired = paired_metrics(df, spec, task="classify", n_boot=800, seed=0, min_n=5).set_index("metric")
    unpaired = paired_metrics(df, spec, task="classify", n_boot=800, seed=0, min_n=5,
                              paired_draws=False).set_index("metric")
    pw = paired.loc["ood_accuracy", "ci_high"] - paired.loc["ood_accuracy", "ci_low"]
    uw = unpaired.loc["ood_accuracy", "ci_high"] - unpaired.loc["ood_accuracy", "ci_low"]
    assert paired.loc["ood_accuracy", "diff"] == pytest.approx(ok_m.mean() - ok_b.mean())
    assert pw < 0.5 * uw, (pw, uw)


def test_cluster_bootstrap_is_wider_when_images_share_a_group():
    df, spec, _, _ = _correlated()
    by_image = paired_metrics(df, spec, task="classify", n_boot=800, min_n=5).set_index("metric")
    spec2 = {**spec, "cluster": np.repeat(np.arange(len(df) // 20), 20).astype(str)}
    by_group = paired_metrics(df, spec2, task="classify", n_boot=800, min_n=5).set_index("metric")
    w = by_image.loc["ood_accuracy", "ci_high"] - by_image.loc["ood_accuracy", "ci_low"]
    w2 = by_group.loc["ood_accuracy", "ci_high"] - by_group.loc["ood_accuracy", "ci_low"]
    assert by_group.loc["ood_accuracy", "diff"] == by_image.loc["ood_accuracy", "diff"]
    assert w2 != w


def test_segmentation_summary_from_pixel_counts():
    rng = np.random.default_rng(0)
    n, k = 40, 2
    df = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "fold": "f", "seed": 0, "role": "test",
                       "held_out_b": np.arange(n) < 20})
    for sfx in ("_b", "_m"):
        for c in range(k):
            inter = rng.integers(10, 50, n)
            df[f"inter_{c}{sfx}"] = inter
            df[f"union_{c}{sfx}"] = inter + rng.integers(0, 30, n)
            df[f"pred_{c}{sfx}"] = inter + rng.integers(0, 10, n)
            df[f"true_{c}{sfx}"] = df[f"union_{c}{sfx}"] - df[f"pred_{c}{sfx}"] + inter
    held = df["held_out_b"].to_numpy()
    spec = {"ood": held, "ind": ~held, "groups": [], "fair": [], "n_classes": k, "cluster": df["sample_id"].to_numpy()}
    out = paired_metrics(df, spec, task="segment", n_boot=200, min_n=5).set_index("metric")
    for sfx, col in (("_b", "baseline"), ("_m", "mitigated")):
        h = df[held]
        miou = np.mean([h[f"inter_{c}{sfx}"].sum() / h[f"union_{c}{sfx}"].sum() for c in range(k)])
        dice = np.mean([2 * h[f"inter_{c}{sfx}"].sum() / (h[f"pred_{c}{sfx}"] + h[f"true_{c}{sfx}"]).sum()
                        for c in range(k)])
        assert out.loc["ood_miou", col] == pytest.approx(miou)
        assert out.loc["ood_dice", col] == pytest.approx(dice)


def test_verdict_words():
    assert verdict("ood_accuracy", 0.01, 0.05) == "helps"
    assert verdict("ood_accuracy", -0.05, -0.01) == "hurts"
    assert verdict("gap", -0.05, -0.01) == "helps"  # a smaller gap is better
    assert verdict("worst_group_accuracy", -0.01, 0.02) == "no measurable effect"
    assert verdict("dp_diff", float("nan"), float("nan")) == "no measurable effect"
    assert verdict("dp_diff", float("nan"), float("nan"), float("nan"), 0.1) == "not measurable"


# ---------------------------------------------------------------------------------------------- trainer hooks
def _tiny(n=48, k=2, size=8, seed=0):
    from audit.train.trainer import BatchSource

    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 255, (n, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % k
    return BatchSource(imgs, y, torch.device("cpu"), channels_last=False), y


def test_zero_weight_rows_are_left_out_and_group_sampling_balances():
    from audit.train.models import build_model
    from audit.train.trainer import FitConfig, _epoch_order, fit

    src, _ = _tiny()
    w = np.ones(48)
    w[:10] = 0
    cfg = FitConfig(task="classify", n_classes=2, epochs=2, batch_size=8, lr=1e-3, row_weights=w)
    model, _ = build_model("small_cnn", 2)
    res = fit(model, src, np.arange(40), np.arange(40, 48), cfg, seed=0)
    assert res.train_images == 2 * 30
    groups = torch.tensor([0] * 90 + [1] * 10)
    order = _epoch_order(100, None, cfg, torch.Generator().manual_seed(0), groups)
    share = float((groups[order] == 1).float().mean())
    assert 0.35 < share < 0.65  # 10% of the rows, about half of the draws


def test_groupdro_moves_weight_to_the_worse_group():
    from audit.train.objectives import GroupDRO, per_sample_loss

    dro = GroupDRO(np.array([0, 0, 1, 1]), eta=0.5, task="classify", device=torch.device("cpu"))
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, 5.0]], requires_grad=True)
    y = torch.tensor([0, 0, 0, 0])  # group 1 is wrong: high loss
    loss = dro(logits, y, torch.arange(4))
    assert dro.q[1] > dro.q[0] and abs(float(dro.q.sum()) - 1) < 1e-6
    ls = per_sample_loss(logits, y, "classify")
    want = dro.q[0] * ls[:2].mean() + dro.q[1] * ls[2:].mean()
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)


def test_reweight_counts_each_folds_own_training_rows():
    """Weights come from the fold's training rows: counted over the whole run, a held-out domain where the minority
    cell is common would dilute (here: invert) the up-weighting."""
    from audit.train.objectives import WeightedLoss
    from audit.train.trainer import FitConfig, _mitigation, fold_weights

    groups = np.array([0] * 8 + [1] * 2 + [1] * 10)  # rows 10-19: the held-out domain, all in cell 1
    train = np.arange(10)
    w = fold_weights(groups, train)
    assert w[:8] == pytest.approx([0.625] * 8) and w[8:10] == pytest.approx([2.5, 2.5])
    assert (w[10:] == 0).all() and w[train].mean() == pytest.approx(1.0)
    cfg = FitConfig(task="classify", n_classes=2, epochs=1, batch_size=4, lr=0.1, row_groups=groups, loss="reweight")
    idx, _, objective = _mitigation(cfg, train, torch.device("cpu"))
    assert isinstance(objective, WeightedLoss) and list(idx) == list(train)
    assert objective.w.numpy()[8] == pytest.approx(2.5)


def test_targeted_augmentations():
    from audit.train.augment import extra_augment

    x = torch.rand(6, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    gray = extra_augment(x, (("grayscale", 1.0),), g)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    blur = extra_augment(x, (("blur", 1.0),), g)
    assert float(blur.std()) < float(x.std())
    assert torch.equal(extra_augment(x, (("sharpen", 0.0),), g), x)
    with pytest.raises(ValueError, match="unknown augmentation"):
        extra_augment(x, (("swirl", 1.0),), g)


def _profile_findings() -> list[dict]:
    """Findings as the profile writes them (its own checks build them from fake tables), as in findings.json."""
    from audit.profile.image_stats import ImageStats
    from audit.profile.shortcuts import Shortcuts

    shift = pd.DataFrame([
        # d3 differs in saturation (and a little in contrast): a colour covariate shift
        {"by": "domain", "group": "d3", "statistic": "saturation", "effect": 1.6, "ci_low": 1.3, "ci_high": 1.9,
         "ks": 0.6, "p": 1e-9, "q": 1e-8, "n": 120, "n_rest": 240, "mean": 0.6, "mean_rest": 0.3},
        {"by": "domain", "group": "d3", "statistic": "contrast", "effect": 0.7, "ci_low": 0.5, "ci_high": 0.9,
         "ks": 0.3, "p": 1e-4, "q": 1e-3, "n": 120, "n_rest": 240, "mean": 0.4, "mean_rest": 0.3},
        # d1 differs only in entropy: neither colour nor sharpness, chooses nothing
        {"by": "domain", "group": "d1", "statistic": "entropy", "effect": -0.9, "ci_low": -1.1, "ci_high": -0.7,
         "ks": 0.4, "p": 1e-6, "q": 1e-5, "n": 120, "n_rest": 240, "mean": 5.0, "mean_rest": 6.0},
    ])
    found = ImageStats._findings(shift, min_n=30)
    imp = pd.Series({"sharpness": 0.7, "entropy": 0.2, "brightness": 0.1})
    found.append(Shortcuts._finding("label", "image_stats", 0.9, 0.85, 0.95, 0.5, 0.8, 360, ["sharpness", "entropy"],
                                    imp, ["0", "1"]))
    # a shortcut through file properties is no image statistic: no augmentation undoes it
    found.append(Shortcuts._finding("domain", "file_properties", 0.95, 0.9, 0.99, 0.33, 0.9, 360, ["ext=.png"],
                                    pd.Series({"ext=.png": 1.0}), ["d1", "d2", "d3"]))
    assert [f.kind for f in found] == ["covariate_shift", "covariate_shift", "shortcut", "shortcut"]
    return [f.to_dict() for f in found]


def test_augment_choice_from_colour_and_sharpness_findings():
    from audit.mitigate.methods import augment_choice

    findings = _profile_findings()
    by_id = {f["id"]: f for f in findings}
    spec, reasons = augment_choice(findings)
    assert spec == [("grayscale", 0.5), ("color_jitter", 0.8), ("blur", 0.4), ("sharpen", 0.3)]
    assert [r["chosen"] for r in reasons] == [["grayscale", "color_jitter"], ["blur", "sharpen"]]
    colour, sharp = reasons[0]["because"], reasons[1]["because"]
    assert len(colour) == 1 and colour[0]["kind"] == "covariate_shift"
    assert colour[0]["statistics"] == ["contrast", "saturation"]
    assert colour[0]["title"] == by_id[colour[0]["finding"]]["title"] and "domain=d3" in colour[0]["title"]
    assert "saturation" in colour[0]["title"]
    assert len(sharp) == 1 and sharp[0]["kind"] == "shortcut" and sharp[0]["statistics"] == ["sharpness"]
    assert sharp[0]["title"] == by_id[sharp[0]["finding"]]["title"] and "sharpness" in sharp[0]["title"]
    chosen_by = {r["finding"] for r in colour + sharp}
    assert all(by_id[i]["kind"] in ("covariate_shift", "shortcut") for i in chosen_by) and len(chosen_by) == 2


def test_augment_choice_without_findings_chooses_nothing():
    from audit.mitigate.methods import augment_choice

    assert augment_choice([]) == ([], [])
    entropy_only = [f for f in _profile_findings() if "entropy" in f["title"] and f["kind"] == "covariate_shift"]
    files_only = [f for f in _profile_findings() if f["evidence"].get("features") == "file_properties"]
    assert len(entropy_only) == 1 and len(files_only) == 1
    assert augment_choice(entropy_only + files_only) == ([], [])


def test_cli_usage_errors(mitigated, tmp_path):
    from audit.cli import app

    run, _, _ = mitigated
    r = CliRunner().invoke(app, ["mitigate", str(run.path), "--method", "nope"])
    assert r.exit_code == 2 and "unknown --method" in r.output
    r = CliRunner().invoke(app, ["mitigate", str(run.path), "--method", "reweight", "--groups", "zz"])
    assert r.exit_code == 2 and "not a manifest column" in r.output
    fresh = ingest_spurious(tmp_path / "d", tmp_path / "r", per_domain=4)
    r = CliRunner().invoke(app, ["mitigate", str(fresh.path), "--method", "reweight"])
    assert r.exit_code == 2 and "no finished training stage" in r.output


def test_planted_spurious_attribute_group_methods_raise_worst_group_accuracy(tmp_path):
    run = ingest_spurious(tmp_path / "data", tmp_path / "run", per_domain=80, size=16, seed=0)
    _train(run, 2)
    with run:
        s = run_mitigations(run, MitigateConfig(methods=("group_balance", "groupdro"), groups=("bg",), device="cpu",
                                                n_boot=300))
    wg = s[(s["metric"] == "worst_group_accuracy") & (s["by"] == "label x bg")].set_index("method")
    assert wg["baseline"].iloc[0] < 0.3  # the baseline reads the background
    assert (wg["ci_low"] > 0).any(), wg
    assert (wg["verdict"] == "helps").any()


# ---------------------------------------------------------------------------------------------- check policy
def _summary_run(tmp_path, ood_ci, wg_diff):
    run = RunDir.create(tmp_path / "run")
    lo, hi = ood_ci
    rows = [{"method": "groupdro", "metric": "ood_accuracy", "by": "held_out", "baseline": 0.8,
             "mitigated": 0.8 + (lo + hi) / 2, "diff": (lo + hi) / 2, "ci_low": lo, "ci_high": hi, "n": 200,
             "p": 0.01, "verdict": ""},
            {"method": "groupdro", "metric": "worst_group_accuracy", "by": "label x bg", "baseline": 0.2,
             "mitigated": 0.2 + wg_diff, "diff": wg_diff, "ci_low": wg_diff - 0.05, "ci_high": wg_diff + 0.05, "n": 200,
             "p": 0.01, "verdict": ""}]
    run.write_table("mitigations/summary.parquet", pd.DataFrame(rows))
    (tmp_path / "p.toml").write_text('[[rule]]\ncheck = "mitigation_tradeoff"\nmax_drop = 0.02\n')
    return run


@pytest.mark.parametrize(("ood_ci", "wg_diff", "status"), [
    ((-0.10, -0.05), 0.3, "fail"),  # a confident drop of 5-10 points bought the worst group
    ((-0.06, 0.0), 0.3, "warn"),  # the drop (0.03) is over the margin but its interval reaches below it
    ((-0.01, 0.03), 0.3, "pass"),
    ((-0.10, -0.05), -0.1, "pass"),  # worst group not raised: the rule does not apply
])
def test_mitigation_tradeoff_rule(tmp_path, ood_ci, wg_diff, status):
    from audit.check import run_check

    run = _summary_run(tmp_path, ood_ci, wg_diff)
    res = run_check(run.path, tmp_path / "p.toml", write=False)
    assert res.rules[0].status == status, (res.error, res.rules[0].message)


def test_starter_policy_gates_mitigations(mitigated):
    from audit.check.init import starter_policy

    run, _, _ = mitigated
    assert 'check = "mitigation_tradeoff"' in starter_policy(run)


def test_cli_prints_one_verdict_line_per_method_and_the_summary(tmp_path):
    """`audit mitigate` returns its lines from the stage and the CLI prints them (audit.console)."""
    from audit.cli import app

    run = ingest_spurious(tmp_path / "data", tmp_path / "run", per_domain=20, size=16, seed=3)
    _train(run, 1)
    r = CliRunner().invoke(app, ["mitigate", str(run.path), "--method", "reweight", "--groups", "bg", "--device",
                                 "cpu", "--n-boot", "50"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith(("reweight ", "summary: "))]
    assert len(lines) == 2 and lines[1].endswith("summary.parquet"), r.output
    verdict = RunDir(run.path).read_json("mitigations/summary.json")["methods"]["reweight"]["sentence"]
    assert lines[0].split(None, 1)[1] == verdict
