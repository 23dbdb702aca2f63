"""Plain metric functions (no groups, no intervals) over the same sufficient statistics as the reports.

Each function validates its inputs, sums the per-row statistics of one block and applies the metric's
``compute``: so the numbers are exactly those of :func:`audit.metrics.group_report`'s ``overall``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.metrics._stats import DEFAULT_BINS, block_entries, block_width
from audit.metrics.encoding import SegmentationCounts, prepare_data
from audit.metrics.registry import build_metric_specs

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "per_class_recall",
    "top_k_accuracy",
    "expected_calibration_error",
    "brier_score",
    "negative_log_likelihood",
    "reliability_curve",
    "mean_iou",
    "per_class_iou",
    "foreground_dice",
    "foreground_iou",
    "mean_image_dice",
    "mean_image_iou",
]


def _sums(d, block: str) -> np.ndarray:
    w = block_width(block, d)
    s = np.zeros(w)
    for col, val in block_entries(block, d):
        s += np.bincount(np.broadcast_to(col, (d.n,)), weights=np.broadcast_to(val, (d.n,)), minlength=w)[:w]
    return s


def _one(name: str, d, **kw) -> float:
    spec = build_metric_specs([name], d, **kw)[0]
    return float(spec.compute(_sums(d, spec.block)))


def accuracy(y_true, y_pred) -> float:
    """Share of predictions equal to the truth."""
    return _one("accuracy", prepare_data(y_true=y_true, y_pred=y_pred))


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean recall over the classes present in ``y_true`` (sklearn's ``balanced_accuracy_score``)."""
    return _one("balanced_accuracy", prepare_data(y_true=y_true, y_pred=y_pred))


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean F1 over classes present in the truth or predictions (sklearn ``f1_score(average='macro')``)."""
    return _one("macro_f1", prepare_data(y_true=y_true, y_pred=y_pred))


def per_class_recall(y_true, y_pred, *, classes=None) -> pd.Series:
    """Recall of every class (NaN for a class absent from ``y_true``)."""
    d = prepare_data(y_true=y_true, y_pred=y_pred, classes=classes)
    specs = build_metric_specs(["recall"], d)
    s = _sums(d, "confusion")
    return pd.Series([float(sp.compute(s)) for sp in specs], index=d.classes, name="recall")


def top_k_accuracy(y_true, y_prob, *, k: int = 3, classes=None) -> float:
    """Share of rows whose true class is among the ``k`` most probable (ties count against)."""
    yt = np.asarray(y_true)
    d = prepare_data(y_true=yt, y_pred=yt, y_prob=y_prob, classes=classes, top_k=k)
    return _one("top_k", d)


def expected_calibration_error(
    y_true, y_prob, *, n_bins: int = DEFAULT_BINS, strategy: str = "quantile", classes=None
) -> float:
    """Top-label ECE: sum over bins of |accuracy - confidence| weighted by the bin's share of rows.

    ``strategy="quantile"`` (default): adaptive, equal-mass bins; ``"uniform"``: equal-width bins on [0, 1]
    (torchmetrics' ``MulticlassCalibrationError(norm="l1")``).
    """
    yt = np.asarray(y_true)
    d = prepare_data(y_true=yt, y_pred=yt, y_prob=y_prob, classes=classes, n_bins=n_bins, bin_strategy=strategy)
    return _one("ece", d)


def brier_score(y_true, y_prob, *, classes=None) -> float:
    """Mean squared distance between probabilities and the one-hot truth (binary: sklearn's halved form)."""
    yt = np.asarray(y_true)
    return _one("brier", prepare_data(y_true=yt, y_pred=yt, y_prob=y_prob, classes=classes))


def negative_log_likelihood(y_true, y_prob, *, classes=None) -> float:
    """Mean -log p(true class), probabilities clipped to [eps, 1 - eps] (sklearn's ``log_loss``)."""
    yt = np.asarray(y_true)
    return _one("nll", prepare_data(y_true=yt, y_pred=yt, y_prob=y_prob, classes=classes))


def reliability_curve(
    y_true, y_prob, *, n_bins: int = DEFAULT_BINS, strategy: str = "quantile", classes=None
) -> pd.DataFrame:
    """Per confidence bin: mean confidence, accuracy and count (empty bins are NaN with count 0)."""
    yt = np.asarray(y_true)
    d = prepare_data(y_true=yt, y_pred=yt, y_prob=y_prob, classes=classes, n_bins=n_bins, bin_strategy=strategy)
    s = _sums(d, "calib").reshape(-1, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(s[:, 0] > 0, s[:, 1] / np.maximum(s[:, 0], 1), np.nan)
        acc = np.where(s[:, 0] > 0, s[:, 2] / np.maximum(s[:, 0], 1), np.nan)
    e = d.bin_edges()
    lo = e[: len(s)]
    hi = np.append(e[1:], 1.0)[: len(s)]
    return pd.DataFrame({"bin": np.arange(len(s)), "bin_low": lo, "bin_high": hi, "confidence": conf, "accuracy": acc,
                         "count": s[:, 0].astype(np.int64)})


def _seg(inter, union, pred, true, classes):
    inter = np.asarray(inter)
    classes = list(classes) if classes is not None else [str(i) for i in range(inter.shape[1])]
    return prepare_data(segmentation=SegmentationCounts(inter, union, pred, true, classes))


def mean_iou(inter, union, *, pred=None, true=None, classes=None) -> float:
    """mIoU from pixel counts summed over images: mean over classes with a non-empty union of sum(I) / sum(U)."""
    pred = inter if pred is None else pred
    true = inter if true is None else true
    return _one("miou", _seg(inter, union, pred, true, classes))


def per_class_iou(inter, union, *, classes=None) -> pd.Series:
    """IoU of every class from summed pixel counts (NaN for a class never present)."""
    d = _seg(inter, union, inter, inter, classes)
    s = _sums(d, "seg_iu")
    return pd.Series([float(sp.compute(s)) for sp in build_metric_specs(["iou"], d)], index=d.seg_classes, name="iou")


def foreground_iou(inter, union, *, classes=None) -> float:
    """Foreground IoU from pixel counts summed over images: mean over classes 1.. (background, class 0, excluded)."""
    return _one("fg_iou", _seg(inter, union, inter, inter, classes))


def foreground_dice(inter, union, *, classes=None) -> float:
    """Foreground Dice (F1 over all pixels) from summed counts: mean over classes 1.. of 2I / (I + U)."""
    return _one("fg_dice", _seg(inter, union, inter, inter, classes))


def mean_image_dice(inter, union, pred, true, *, classes=None) -> float:
    """Mean over images of the image's mean Dice over the classes present in it (truth or prediction)."""
    return _one("dice", _seg(inter, union, pred, true, classes))


def mean_image_iou(inter, union, pred, true, *, classes=None) -> float:
    """Mean over images of the image's mean IoU over the classes present in it."""
    return _one("iou_image", _seg(inter, union, pred, true, classes))
