"""Agreement with reference implementations (sklearn, fairlearn, torchmetrics) on random data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from audit import metrics as M

SEEDS = [0, 1, 2]


def _clf(seed: int, n: int = 600, k: int = 4):
    rng = np.random.default_rng(seed)
    yt = rng.integers(0, k, n)
    yp = np.where(rng.random(n) < 0.55, yt, rng.integers(0, k, n))
    p = rng.dirichlet(np.full(k, 0.6), n)
    g = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1])
    return yt, yp, p, g


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_match_sklearn(seed):
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        brier_score_loss,
        f1_score,
        log_loss,
        recall_score,
        top_k_accuracy_score,
    )

    yt, yp, p, _ = _clf(seed, k=3 + seed)
    k = p.shape[1]
    assert M.accuracy(yt, yp) == pytest.approx(accuracy_score(yt, yp), abs=1e-12)
    assert M.balanced_accuracy(yt, yp) == pytest.approx(balanced_accuracy_score(yt, yp), abs=1e-12)
    assert M.macro_f1(yt, yp) == pytest.approx(f1_score(yt, yp, average="macro"), abs=1e-12)
    rec = M.per_class_recall(yt, yp)
    np.testing.assert_allclose(rec.to_numpy(), recall_score(yt, yp, average=None), atol=1e-12)
    assert M.brier_score(yt, p) == pytest.approx(brier_score_loss(yt, p, labels=range(k)), abs=1e-9)
    assert M.negative_log_likelihood(yt, p) == pytest.approx(log_loss(yt, p, labels=range(k)), abs=1e-9)
    assert M.top_k_accuracy(yt, p, k=2) == pytest.approx(top_k_accuracy_score(yt, p, k=2, labels=range(k)), abs=1e-12)


def test_binary_brier_and_log_loss_match_sklearn():
    from sklearn.metrics import brier_score_loss, log_loss

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    q = rng.random(400)
    probs = np.c_[1 - q, q]
    assert M.brier_score(y, probs) == pytest.approx(brier_score_loss(y, q), abs=1e-12)
    assert M.negative_log_likelihood(y, probs) == pytest.approx(log_loss(y, q), abs=1e-9)


def test_balanced_accuracy_ignores_classes_only_predicted_like_sklearn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    yt = np.array([0, 0, 1, 1, 1])
    yp = np.array([0, 2, 1, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = balanced_accuracy_score(yt, yp)
    assert M.balanced_accuracy(yt, yp) == pytest.approx(ref, abs=1e-12)
    assert M.macro_f1(yt, yp) == pytest.approx(f1_score(yt, yp, average="macro", zero_division=0), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_group_report_matches_fairlearn_metricframe(seed):
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    yt, yp, p, g = _clf(seed)
    rep = M.group_report(y_true=yt, y_pred=yp, sensitive=pd.Series(g, name="g"), n_boot=50,
                         metrics=["accuracy", "balanced_accuracy", "macro_f1"])
    mf = MetricFrame(metrics={"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score,
                              "macro_f1": lambda a, b: f1_score(a, b, average="macro")},
                     y_true=yt, y_pred=yp, sensitive_features=pd.Series(g, name="g"))
    ours = rep.by_group[["accuracy", "balanced_accuracy", "macro_f1"]]
    ref = mf.by_group.loc[ours.index, ["accuracy", "balanced_accuracy", "macro_f1"]]
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(dtype=float), atol=1e-12)
    np.testing.assert_allclose(rep.overall[["accuracy", "balanced_accuracy", "macro_f1"]].to_numpy(),
                               mf.overall.to_numpy(dtype=float), atol=1e-12)
    for method in ("between_groups", "to_overall"):
        np.testing.assert_allclose(
            rep.difference(method=method).to_numpy(), mf.difference(method=method).to_numpy(dtype=float), atol=1e-12
        )
        np.testing.assert_allclose(
            rep.ratio(method=method).to_numpy(), mf.ratio(method=method).to_numpy(dtype=float), atol=1e-12
        )


def test_intersection_groups_match_fairlearn_multiple_sensitive_features():
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    yt, yp, _, g = _clf(3)
    h = np.random.default_rng(3).choice(["x", "y"], len(yt))
    sf = pd.DataFrame({"g": g, "h": h})
    rep = M.group_report(y_true=yt, y_pred=yp, sensitive=sf, metrics="accuracy", n_boot=0)
    mf = MetricFrame(metrics=accuracy_score, y_true=yt, y_pred=yp, sensitive_features=sf)
    ref = {f"{a} | {b}": v for (a, b), v in mf.by_group.items()}
    assert rep.by == "g x h"
    assert set(rep.groups) == set(ref)
    for grp in rep.groups:
        assert rep.by_group.loc[grp, "accuracy"] == pytest.approx(ref[grp], abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_fairness_matches_fairlearn(seed):
    import fairlearn.metrics as fm

    rng = np.random.default_rng(seed)
    n = 1500
    yt = rng.integers(0, 2, n)
    g = rng.choice(["a", "b", "c"], n)
    yp = np.where(rng.random(n) < 0.7, yt, 1 - yt)
    yp[g == "a"] = np.where(rng.random((g == "a").sum()) < 0.25, 1, yp[g == "a"])
    assert M.demographic_parity_difference(yt, yp, sensitive=g) == pytest.approx(
        fm.demographic_parity_difference(yt, yp, sensitive_features=g), abs=1e-12
    )
    assert M.demographic_parity_ratio(yt, yp, sensitive=g) == pytest.approx(
        fm.demographic_parity_ratio(yt, yp, sensitive_features=g), abs=1e-12
    )
    assert M.equalized_odds_difference(yt, yp, sensitive=g) == pytest.approx(
        fm.equalized_odds_difference(yt, yp, sensitive_features=g), abs=1e-12
    )
    assert M.equal_opportunity_difference(yt, yp, sensitive=g) == pytest.approx(
        fm.equal_opportunity_difference(yt, yp, sensitive_features=g), abs=1e-12
    )


def test_multiclass_fairness_is_one_vs_rest_per_class():
    import fairlearn.metrics as fm

    yt, yp, _, g = _clf(7, n=1200, k=3)
    per = M.demographic_parity_difference(yt, yp, sensitive=g, average=None)
    eo = M.equalized_odds_difference(yt, yp, sensitive=g, average=None)
    for c in range(3):
        ref = fm.demographic_parity_difference((yt == c).astype(int), (yp == c).astype(int), sensitive_features=g)
        assert per[str(c)] == pytest.approx(ref, abs=1e-12)
        ref_eo = fm.equalized_odds_difference((yt == c).astype(int), (yp == c).astype(int), sensitive_features=g)
        assert eo[str(c)] == pytest.approx(ref_eo, abs=1e-12)
    assert M.demographic_parity_difference(yt, yp, sensitive=g, average="worst") == pytest.approx(per.max(), abs=1e-12)
    assert M.demographic_parity_difference(yt, yp, sensitive=g, average="macro") == pytest.approx(per.mean(), abs=1e-12)


# torchmetrics computes these in float32 (it casts confidences and confusion matrices with .float()), so agreement
# is to float32 precision; the float64 re-derivations below check the same definitions to 1e-9.
@pytest.mark.parametrize("seed", SEEDS)
def test_ece_matches_torchmetrics_equal_width(seed):
    import torch
    from torchmetrics.classification import MulticlassCalibrationError

    yt, _, p, _ = _clf(seed, n=800, k=5)
    ours = M.expected_calibration_error(yt, p, n_bins=15, strategy="uniform")
    ref = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")(torch.tensor(p), torch.tensor(yt))
    assert ours == pytest.approx(float(ref), abs=1e-6)
    # float64 re-derivation of torchmetrics' algorithm (bucketize with right=True on linspace boundaries)
    conf = p.max(1)
    acc = (p.argmax(1) == yt).astype(float)
    b = np.searchsorted(np.linspace(0, 1, 16), conf, side="right") - 1
    ece = sum(abs(acc[b == i].sum() - conf[b == i].sum()) for i in np.unique(b)) / len(yt)
    assert ours == pytest.approx(ece, abs=1e-12)


def test_adaptive_ece_uses_equal_mass_bins():
    yt, _, p, _ = _clf(4, n=900, k=3)
    curve = M.reliability_curve(yt, p, n_bins=10, strategy="quantile")
    assert len(curve) == 10
    assert curve["count"].sum() == 900
    assert curve["count"].min() >= 85 and curve["count"].max() <= 95  # equal mass
    w = curve["count"] / 900
    assert M.expected_calibration_error(yt, p, n_bins=10) == pytest.approx(
        float((w * (curve["accuracy"] - curve["confidence"]).abs()).sum()), abs=1e-12
    )


def _masks(seed: int, n: int = 24, c: int = 4, size: int = 12):
    import torch

    g = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, c, (n, size, size), generator=g)
    true = torch.randint(0, c, (n, size, size), generator=g)
    pred[: n // 4] = true[: n // 4]
    true[1] = 0  # an image with one class only
    pred[1] = 0
    pred[2][pred[2] == 3] = 0  # a class absent from one prediction
    inter = np.stack([((pred == k) & (true == k)).flatten(1).sum(1).numpy() for k in range(c)], 1)
    pc = np.stack([(pred == k).flatten(1).sum(1).numpy() for k in range(c)], 1)
    tc = np.stack([(true == k).flatten(1).sum(1).numpy() for k in range(c)], 1)
    return pred, true, inter, pc + tc - inter, pc, tc


@pytest.mark.parametrize("seed", SEEDS)
def test_segmentation_metrics_match_torchmetrics(seed):
    import torch
    from torchmetrics.functional.classification import multiclass_jaccard_index
    from torchmetrics.functional.segmentation import dice_score, mean_iou

    pred, true, inter, union, pc, tc = _masks(seed)
    c = inter.shape[1]
    ref_miou = float(multiclass_jaccard_index(pred, true, num_classes=c, average="macro"))
    assert M.mean_iou(inter, union) == pytest.approx(ref_miou, abs=1e-6)
    # float64: mIoU from pixel counts summed over images
    assert M.mean_iou(inter, union) == pytest.approx(np.mean(inter.sum(0) / union.sum(0)), abs=1e-12)
    per_img_iou = mean_iou(pred, true, num_classes=c, input_format="index").double().numpy()
    per_img_dice = dice_score(pred, true, num_classes=c, input_format="index", average="macro").double().numpy()
    assert M.mean_image_iou(inter, union, pc, tc) == pytest.approx(per_img_iou.mean(), abs=1e-6)
    assert M.mean_image_dice(inter, union, pc, tc) == pytest.approx(per_img_dice.mean(), abs=1e-6)
    ious = M.per_class_iou(inter, union)
    ref = multiclass_jaccard_index(pred, true, num_classes=c, average="none").double().numpy()
    np.testing.assert_allclose(ious.to_numpy(), ref, atol=1e-6)
    assert isinstance(torch.tensor(0), torch.Tensor)


@pytest.mark.parametrize("seed", SEEDS)
def test_foreground_dice_and_iou_match_sklearn_over_all_pixels(seed):
    """Foreground Dice = F1 over all pixels (what vessel/lesion papers report); background is never averaged in."""
    from sklearn.metrics import f1_score, jaccard_score

    pred, true, inter, union, pc, tc = _masks(seed)
    t, p = true.flatten().numpy(), pred.flatten().numpy()
    fg = list(range(1, inter.shape[1]))
    assert M.foreground_dice(inter, union) == pytest.approx(f1_score(t, p, labels=fg, average="macro"), abs=1e-12)
    assert M.foreground_iou(inter, union) == pytest.approx(jaccard_score(t, p, labels=fg, average="macro"), abs=1e-12)
    tb, pb = (t > 0).astype(int), (p > 0).astype(int)  # binary task: one foreground class
    tbi, pbi = tb.reshape(inter.shape[0], -1), pb.reshape(inter.shape[0], -1)  # per image
    bi = np.stack([((1 - pbi) * (1 - tbi)).sum(1), (pbi * tbi).sum(1)], 1)
    bu = np.stack([((1 - pbi) | (1 - tbi)).sum(1), (pbi | tbi).sum(1)], 1)
    assert M.foreground_dice(bi, bu) == pytest.approx(f1_score(tb, pb), abs=1e-12)
    assert M.foreground_iou(bi, bu) == pytest.approx(jaccard_score(tb, pb), abs=1e-12)
    # an all-background prediction of a 5% foreground: mIoU 0.475 (background included) hides foreground IoU 0
    assert M.mean_iou([[95, 0]], [[100, 5]]) == pytest.approx(0.475) and M.foreground_iou([[95, 0]], [[100, 5]]) == 0


def test_per_class_by_group_iou_from_counts():
    pred, true, inter, union, pc, tc = _masks(9)
    g = np.array(["x", "y"] * 12)
    rep = M.group_report(segmentation=M.SegmentationCounts(inter, union, pc, tc, ["bg", "a", "b", "c"]), sensitive=g,
                         metrics=["iou", "miou"], n_boot=0)
    for grp in ("x", "y"):
        s = g == grp
        np.testing.assert_allclose(rep.by_group.loc[grp, ["iou.bg", "iou.a", "iou.b", "iou.c"]].to_numpy(dtype=float),
                                   inter[s].sum(0) / union[s].sum(0), atol=1e-12)


def test_true_positive_rates_on_a_handful_of_positives_get_no_verdict():
    """eop_diff compares TPRs; a TPR from 3 positives per group is left out under min_rate_n (default min_n)."""
    import numpy as np

    from audit.metrics import fairness_report

    y_true = np.array(["a"] * 97 + ["b"] * 3 + ["a"] * 97 + ["b"] * 3)
    y_pred = np.array(["a"] * 97 + ["a"] * 3 + ["a"] * 97 + ["b"] * 3)  # b: recall 0 in g1, 1 in g2
    sens = np.array(["g1"] * 100 + ["g2"] * 100)
    strict = fairness_report(y_true=y_true, y_pred=y_pred, sensitive=sens, n_boot=0, min_n=30)
    loose = fairness_report(y_true=y_true, y_pred=y_pred, sensitive=sens, n_boot=0, min_n=30, min_rate_n=1)
    eop = lambda df: float(df.loc[df["metric"] == "eop_diff", "value"].iloc[0])
    assert np.isnan(eop(strict))
    assert eop(loose) == 1.0
    # the demographic-parity comparison uses the whole group and is unaffected
    dp = lambda df: float(df.loc[df["metric"] == "dp_diff", "value"].iloc[0])
    assert dp(strict) == dp(loose) == pytest.approx(0.03)


def test_a_registered_metric_gets_groups_intervals_and_n_like_the_built_in_ones():
    """register_metric: a user's specificity (true-negative rate) over the confusion block equals sklearn's recall
    of the negative class per group, with Wilson intervals and n = the group's negatives."""
    from sklearn.metrics import recall_score

    from audit.metrics import MetricSpec, metric_names, register_metric
    from audit.metrics.registry import _REGISTRY, confusion, div

    @register_metric("specificity_test", task="classify")
    def _spec(d, pos_label=None):
        def tn(S):
            C = confusion(S, d.K)
            return C[..., 0, 0], C[..., 0, :].sum(axis=-1)

        return [MetricSpec("specificity_test", "confusion", lambda S: div(*tn(S)), lambda S: tn(S)[1], tn,
                           row_count=lambda d: (d.y_true == 0).astype(float))]

    try:
        assert "specificity_test" in metric_names("classify")
        rng = np.random.default_rng(3)
        yt = rng.choice(["neg", "pos"], 400)
        yp = np.where(rng.random(400) < 0.8, yt, rng.choice(["neg", "pos"], 400))
        g = rng.choice(["a", "b"], 400)
        rep = M.group_report(y_true=yt, y_pred=yp, sensitive=g, metrics=["accuracy", "specificity_test"], n_boot=0)
        for grp in ("a", "b"):
            s = g == grp
            ref = recall_score(yt[s], yp[s], pos_label="neg")
            assert rep.by_group.loc[grp, "specificity_test"] == pytest.approx(ref, abs=1e-12)
        frame = rep.to_frame()
        row = frame[(frame["metric"] == "specificity_test") & (frame["group"] == "a")].iloc[0]
        assert row["ci_method"] == "wilson" and row["ci_low"] < row["value"] < row["ci_high"]
        assert row["n"] == int(((g == "a") & (yt == "neg")).sum())
    finally:
        _REGISTRY.pop("specificity_test", None)
