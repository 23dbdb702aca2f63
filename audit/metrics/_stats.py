"""Functional core: per-row sufficient statistics ("blocks") and metrics computed from their sums.

Every metric is ``compute(S)`` over summed statistics ``S`` of shape ``(..., width)``, so the same code gives the
point estimate (sums over a group's rows), every bootstrap resample (sums over resampled clusters, a leading
batch axis) and distributed merges (sums of sums). Nothing here knows about groups or resampling.

Blocks (statistics summed per row):

===========  ==========================  ==========================================================
block        width                       per-row statistics
===========  ==========================  ==========================================================
correct      2                           [y_pred == y_true, 1]
confusion    K*K                         one-hot of (true, pred)
topk         2                           [true class among the k most probable, 1]
calib        3 * bins                    one-hot bin of the top-label confidence x [1, confidence, correct]
brier        2                           [sum_k (p_k - onehot_k)^2 (halved for 2 classes, as sklearn), 1]
nll          2                           [-log p_true, 1]
seg_iu       2C + 3                      [inter_c..., union_c..., correct pixels, pixels, 1]
seg_img      3                           [per-image mean Dice, per-image mean IoU, 1]
===========  ==========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from audit.core.directions import higher_is_better

__all__ = ["Data", "MetricSpec", "BLOCKS", "block_entries", "DEFAULT_BINS"]

DEFAULT_BINS = 15


@dataclass
class Data:
    """Validated inputs as integer codes and arrays (see :func:`audit.metrics.group_report`)."""

    n: int
    classes: list[str] = field(default_factory=list)
    y_true: np.ndarray | None = None  # int codes into classes
    y_pred: np.ndarray | None = None
    y_prob: np.ndarray | None = None  # n x K, columns in classes order
    inter: np.ndarray | None = None  # n x C pixel counts (segmentation)
    union: np.ndarray | None = None
    pred_px: np.ndarray | None = None
    true_px: np.ndarray | None = None
    seg_classes: list[str] = field(default_factory=list)
    top_k: int = 3
    n_bins: int = DEFAULT_BINS
    bin_strategy: str = "quantile"  # quantile (adaptive, equal mass) | uniform (equal width)
    _edges: np.ndarray | None = None

    @property
    def K(self) -> int:
        return len(self.classes)

    @property
    def C(self) -> int:
        return len(self.seg_classes)

    # ------------------------------------------------------------------ derived per-row quantities
    def confidence(self) -> tuple[np.ndarray, np.ndarray]:
        """Top-label confidence and whether the top label is right."""
        p = self.y_prob
        top = np.argmax(p, axis=1)
        return p[np.arange(self.n), top], (top == self.y_true).astype(float)

    def bin_edges(self) -> np.ndarray:
        """Calibration bin edges, fixed from the whole input (so every group and resample shares them)."""
        if self._edges is None:
            conf, _ = self.confidence()
            if self.bin_strategy == "uniform":
                self._edges = np.linspace(0.0, 1.0, self.n_bins + 1)
            else:
                self._edges = (
                    np.unique(np.quantile(conf, np.linspace(0, 1, self.n_bins + 1)))
                    if len(conf)
                    else np.array([0.0, 1.0])
                )
        return self._edges

    def n_calib_bins(self) -> int:
        e = self.bin_edges()
        # uniform: torchmetrics' bucketize puts confidence == 1.0 in a bin of its own (index n_bins)
        return len(e) if self.bin_strategy == "uniform" else max(1, len(e) - 1)

    def calib_bin(self) -> np.ndarray:
        conf, _ = self.confidence()
        e = self.bin_edges()
        if self.bin_strategy == "uniform":
            return np.clip(np.searchsorted(e, conf, side="right") - 1, 0, len(e) - 1)
        return np.searchsorted(e[1:-1], conf, side="right")


# ---------------------------------------------------------------------------------------------- blocks
def _w_correct(d: Data) -> int:
    return 2


def _w_confusion(d: Data) -> int:
    return d.K * d.K


def _w_calib(d: Data) -> int:
    return 3 * d.n_calib_bins()


def _w_seg_iu(d: Data) -> int:
    return 2 * d.C + 3


BLOCKS: dict[str, tuple[Callable[[Data], int], bool]] = {
    # name: (width, discrete statistics?) - discrete blocks collapse to few cluster types in the bootstrap
    "correct": (_w_correct, True),
    "confusion": (_w_confusion, True),
    "topk": (_w_correct, True),
    "calib": (_w_calib, False),
    "brier": (_w_correct, False),
    "nll": (_w_correct, False),
    "seg_iu": (_w_seg_iu, False),
    "seg_img": (lambda d: 3, False),
}


def block_width(name: str, d: Data) -> int:
    return BLOCKS[name][0](d)


def block_entries(name: str, d: Data) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-row ``(column, value)`` pairs of a block (see the module docstring)."""
    n = d.n
    one = np.ones(n)
    zero = np.zeros(n, dtype=np.int64)
    if name == "correct":
        return [(zero, (d.y_true == d.y_pred).astype(float)), (zero + 1, one)]
    if name == "confusion":
        return [(d.y_true.astype(np.int64) * d.K + d.y_pred, one)]
    if name == "topk":
        p = d.y_prob
        pt = p[np.arange(n), d.y_true]
        better = (p > pt[:, None]).sum(axis=1)
        return [(zero, (better < d.top_k).astype(float)), (zero + 1, one)]
    if name == "calib":
        conf, correct = d.confidence()
        b = d.calib_bin().astype(np.int64)
        return [(3 * b, one), (3 * b + 1, conf), (3 * b + 2, correct)]
    if name == "brier":
        onehot = np.zeros_like(d.y_prob)
        onehot[np.arange(n), d.y_true] = 1.0
        per = ((d.y_prob - onehot) ** 2).sum(axis=1)
        if d.K == 2:
            per = per / 2  # sklearn's scale_by_half="auto": the binary Brier score
        return [(zero, per), (zero + 1, one)]
    if name == "nll":
        eps = np.finfo(d.y_prob.dtype).eps
        pt = np.clip(d.y_prob[np.arange(n), d.y_true], eps, 1 - eps)
        return [(zero, -np.log(pt)), (zero + 1, one)]
    if name == "seg_iu":
        c = d.C
        out = []
        for k in range(c):
            out.append((zero + k, d.inter[:, k].astype(float)))
            out.append((zero + c + k, d.union[:, k].astype(float)))
        out.append((zero + 2 * c, d.inter.sum(axis=1).astype(float)))
        out.append((zero + 2 * c + 1, d.true_px.sum(axis=1).astype(float)))
        out.append((zero + 2 * c + 2, one))
        return out
    if name == "seg_img":
        dice, iou = per_image_scores(d.inter, d.union, d.pred_px, d.true_px)
        defined = np.isfinite(dice)  # an image without any pixel has no score: it does not count
        return [(zero, np.nan_to_num(dice)), (zero + 1, np.nan_to_num(iou)), (zero + 2, defined.astype(float))]
    raise KeyError(name)


def per_image_scores(inter, union, pred_px, true_px) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mean Dice and IoU over the classes present in the image (in the truth or the prediction).

    An image where no class is present at all (no pixels) scores NaN.
    """
    inter = np.asarray(inter, dtype=float)
    union = np.asarray(union, dtype=float)
    denom = np.asarray(pred_px, dtype=float) + np.asarray(true_px, dtype=float)
    present = union > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        dice_c = np.where(present, 2 * inter / np.where(denom > 0, denom, 1), 0.0)
        iou_c = np.where(present, inter / np.where(present, union, 1), 0.0)
        k = present.sum(axis=1)
        dice = np.where(k > 0, dice_c.sum(axis=1) / np.maximum(k, 1), np.nan)
        iou = np.where(k > 0, iou_c.sum(axis=1) / np.maximum(k, 1), np.nan)
    return dice, iou


# ---------------------------------------------------------------------------------------------- metric computations
def _div(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _nanmean_where(x, mask, axis=-1):
    k = mask.sum(axis=axis)
    s = np.where(mask, x, 0.0).sum(axis=axis)
    return _div(s, k)


def _conf(S, K):
    return S.reshape(S.shape[:-1] + (K, K))


def balanced_accuracy_from_confusion(C: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in the truth (as sklearn)."""
    diag = np.diagonal(C, axis1=-2, axis2=-1)
    support = C.sum(axis=-1)
    return _nanmean_where(_div(diag, support), support > 0)


def macro_f1_from_confusion(C: np.ndarray) -> np.ndarray:
    """Mean F1 over the classes present in the truth or the predictions (as sklearn's average='macro')."""
    tp = np.diagonal(C, axis1=-2, axis2=-1)
    support = C.sum(axis=-1)
    predicted = C.sum(axis=-2)
    denom = support + predicted  # 2tp + fp + fn
    f1 = _div(2 * tp, denom)
    return _nanmean_where(np.nan_to_num(f1), denom > 0)


def ece_from_bins(S: np.ndarray) -> np.ndarray:
    B = S.reshape(S.shape[:-1] + (-1, 3))
    count = B[..., 0].sum(axis=-1)
    return _div(np.abs(B[..., 2] - B[..., 1]).sum(axis=-1), count)


def miou_from_counts(S: np.ndarray, C: int) -> np.ndarray:
    """Mean IoU over all classes with a non-empty union, background (class 0) included."""
    inter = S[..., :C]
    union = S[..., C : 2 * C]
    return _nanmean_where(_div(inter, union), union > 0)


def fg_iou_from_counts(S: np.ndarray, C: int) -> np.ndarray:
    """Mean IoU over the foreground classes (1..C-1) with a non-empty union; binary tasks: the foreground IoU."""
    inter = S[..., 1:C]
    union = S[..., C + 1 : 2 * C]
    return _nanmean_where(_div(inter, union), union > 0)


def fg_dice_from_counts(S: np.ndarray, C: int) -> np.ndarray:
    """Mean Dice (F1) over the foreground classes, each from pixel counts summed over images.

    ``pred + true = inter + union`` per class, so Dice = 2I / (I + U). Binary tasks: the foreground Dice that vessel
    and lesion papers report (sklearn ``f1_score`` over all pixels, positive class 1).
    """
    inter = S[..., 1:C]
    union = S[..., C + 1 : 2 * C]
    return _nanmean_where(_div(2 * inter, inter + union), union > 0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: which block it reads and how it turns summed statistics into a value.

    ``compute(S)`` and ``count(S)`` map ``(..., width)`` sums to ``(...)``; ``proportion(S)`` (optional) gives
    ``(successes, trials)`` so a Wilson interval applies; ``higher_is_better`` orients worst/best. It comes from
    :mod:`audit.core.directions` (the one rule check, views and pages use too): left out it is derived from
    ``name``, and a value that disagrees with that rule raises ``ValueError`` (declare a new lower-is-better
    metric with ``register_metric(..., lower_is_better=True)``).
    ``row_count(d)`` (optional) gives each row's contribution to ``count`` (shape ``(n,)``): which rows the
    statistic counts, so ``n`` can count distinct samples when a sample has several rows (seeds, folds): a
    sample counts once in a group when any of its rows there counts (see :func:`row_counts`).
    """

    name: str
    block: str
    compute: Callable[[np.ndarray], np.ndarray]
    count: Callable[[np.ndarray], np.ndarray]
    proportion: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    higher_is_better: bool | None = None  # None: audit.core.directions' answer for name (always a bool after init)
    description: str = ""
    row_count: Callable[[Data], np.ndarray] | None = None

    def __post_init__(self) -> None:
        rule = higher_is_better(self.name)
        if self.higher_is_better is None:
            object.__setattr__(self, "higher_is_better", rule)
        elif bool(self.higher_is_better) != rule:
            raise ValueError(
                f"metric {self.name!r}: higher_is_better={self.higher_is_better} disagrees with "
                f"audit.core.directions (higher_is_better={rule}); register the metric with "
                f"register_metric(..., lower_is_better={not self.higher_is_better}) or leave the flag out")


def _all_rows(d: Data) -> np.ndarray:
    return np.ones(d.n)


def row_counts(spec: MetricSpec, d: Data) -> np.ndarray:
    """Each row's contribution to ``spec.count`` (``(n,)``); ``count(sum of rows) == row_counts(...).sum()``.

    Uses ``spec.row_count`` when given, else evaluates ``count`` on every row's statistics (in chunks).
    """
    if spec.row_count is not None:
        return np.asarray(spec.row_count(d), dtype=float)
    w = block_width(spec.block, d)
    entries = block_entries(spec.block, d)
    out = np.zeros(d.n)
    step = max(1, 2_000_000 // max(1, w))
    for a in range(0, d.n, step):
        b = min(d.n, a + step)
        X = np.zeros((b - a, w))
        r = np.arange(b - a)
        for col, val in entries:
            np.add.at(X, (r, np.asarray(col[a:b], dtype=np.int64)), val[a:b])
        out[a:b] = spec.count(X)
    return out


# ---------------------------------------------------------------------------------------------- NaN-aware helpers
def nanmax(x: np.ndarray) -> np.ndarray:
    allnan = np.isnan(x).all(axis=-1)
    r = np.where(np.isnan(x), -np.inf, x).max(axis=-1)
    return np.where(allnan, np.nan, r)


def nanmin(x: np.ndarray) -> np.ndarray:
    allnan = np.isnan(x).all(axis=-1)
    r = np.where(np.isnan(x), np.inf, x).min(axis=-1)
    return np.where(allnan, np.nan, r)


def safe_div(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with np.errstate(all="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1), np.nan)
