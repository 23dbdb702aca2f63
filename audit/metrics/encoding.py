"""Inputs of a group report: labels, groups, clusters and samples encoded as integer codes, metric names resolved."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

import audit.metrics._validate as V
from audit.errors import UsageError
from audit.metrics._stats import (
    DEFAULT_BINS,
    Data,
)
from audit.metrics.registry import default_segment_metrics, metric_names, needs_probs

__all__ = [
    "SegmentationCounts",
    "encode_groups",
    "encode_clusters",
    "encode_samples",
    "prepare_data",
    "resolve_metrics",
]

_MSG_NO_INPUT = "give y_true and y_pred (classification) or segmentation= (segmentation counts)"


@dataclass
class SegmentationCounts:
    """Per-image, per-class pixel counts (arrays of shape ``(n_images, n_classes)``)."""

    inter: np.ndarray
    union: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    classes: Sequence[str]


def _column_codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes into the column's categories (declared categories of a Categorical, else sorted values); -1 = missing."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in col.cat.categories]
        codes = col.cat.codes.to_numpy().astype(np.int64)
        return codes, cats
    miss = col.isna().to_numpy()
    vals = col.astype(object).where(~miss, None)
    strs = np.array([str(v) for v in vals], dtype=object)
    cats = V.natural_sorted(strs[~miss])
    codes = pd.Index(cats).get_indexer(strs)
    codes[miss] = -1
    return codes.astype(np.int64), cats


def encode_groups(sensitive, n: int, *, arg: str = "sensitive") -> tuple[np.ndarray, list[str], str]:
    """Group codes (-1 = missing), group names and the grouping's name.

    A DataFrame (or dict) of several columns is their intersection: names joined with `` | ``, grouping name
    with `` x ``. Only combinations that occur are groups, unless every column is a Categorical (then every
    declared combination is a group, empty ones included).
    """
    if sensitive is None:
        return np.zeros(n, dtype=np.int64), ["all"], "overall"
    if isinstance(sensitive, dict):
        sensitive = pd.DataFrame(sensitive)
    if isinstance(sensitive, pd.DataFrame):
        if sensitive.shape[1] == 0:
            return np.zeros(n, dtype=np.int64), ["all"], "overall"
        V.check_length(sensitive, arg, n)
        parts = [_column_codes(sensitive[c].reset_index(drop=True)) for c in sensitive.columns]
        name = " x ".join(str(c) for c in sensitive.columns)
        if len(parts) == 1:
            codes, cats = parts[0]
            return codes, cats, name
        stack = np.stack([c for c, _ in parts], axis=1)
        dims = tuple(max(1, len(c)) for _, c in parts)
        miss = (stack < 0).any(axis=1)
        if all(isinstance(sensitive[c].dtype, pd.CategoricalDtype) for c in sensitive.columns):
            combos = np.array(list(itertools.product(*[range(len(c)) for _, c in parts])), dtype=np.int64)
            combos = combos.reshape(-1, len(parts))
        else:
            combos = np.unique(stack[~miss], axis=0) if (~miss).any() else np.zeros((0, len(parts)), np.int64)
        names = [" | ".join(parts[j][1][i] for j, i in enumerate(c)) for c in combos]
        # ravel_multi_index is monotone in lexicographic order, so combo keys are sorted
        combo_key = np.ravel_multi_index(tuple(combos.T), dims) if len(combos) else np.zeros(0, np.int64)
        row_key = np.ravel_multi_index(tuple(np.maximum(stack, 0).T), dims)
        pos = np.clip(np.searchsorted(combo_key, row_key), 0, max(0, len(combo_key) - 1))
        found = ~miss & (len(combo_key) > 0)
        if len(combo_key):
            found &= combo_key[pos] == row_key
        codes = np.where(found, pos, -1).astype(np.int64)
        return codes, names, name
    name = getattr(sensitive, "name", None) or arg
    if isinstance(sensitive, pd.Categorical):
        col = pd.Series(sensitive)
    elif isinstance(sensitive, pd.Series):
        col = sensitive.reset_index(drop=True)
    else:
        col = pd.Series(V.as_1d(sensitive, arg), dtype=object)
    V.check_length(col, arg, n)
    codes, cats = _column_codes(col)
    return codes, cats, str(name)


def encode_clusters(clusters, n: int) -> tuple[np.ndarray, int]:
    """Cluster codes 0..C-1 (default: every row its own cluster; a missing cluster id is its own cluster)."""
    if clusters is None:
        return np.arange(n, dtype=np.int64), n
    arr = pd.Series(V.as_1d(clusters, "clusters"), dtype=object)
    V.check_length(arr, "clusters", n)
    miss = arr.isna().to_numpy()
    strs = arr.astype(str).to_numpy(dtype=object)
    strs[miss] = np.array([f"\x00row{i}" for i in np.flatnonzero(miss)], dtype=object)
    codes, uniq = pd.factorize(pd.Series(strs), sort=True)
    return codes.astype(np.int64), len(uniq)


def encode_samples(sample_ids, n: int) -> np.ndarray | None:
    """Sample codes 0..S-1 per row (None: every row is its own sample)."""
    if sample_ids is None:
        return None
    ids = pd.Series(V.as_1d(sample_ids, "sample_ids"), dtype=object)
    V.check_length(ids, "sample_ids", n)
    codes, uniq = pd.factorize(ids.astype(str))
    if len(uniq) == n:
        return None  # one row per sample: counting rows is counting samples
    return codes.astype(np.int64)


def prepare_data(
    *,
    y_true=None,
    y_pred=None,
    y_prob=None,
    classes=None,
    segmentation: SegmentationCounts | None = None,
    top_k: int = 3,
    n_bins: int = DEFAULT_BINS,
    bin_strategy: str = "quantile",
) -> Data:
    """Validate raw inputs into a :class:`Data` of integer codes."""
    V.check_int(top_k, "top_k", low=1)
    V.check_int(n_bins, "n_bins", low=1)
    V.check_choice(bin_strategy, "bin_strategy", ("quantile", "uniform"))
    if segmentation is not None:
        inter = np.asarray(segmentation.inter)
        if inter.ndim != 2:
            raise UsageError("segmentation.inter must have shape (n_images, n_classes)")
        n, c = inter.shape
        if n == 0:
            raise UsageError(V._MSG_EMPTY.format(arg="segmentation.inter"))
        seg_classes = [str(x) for x in segmentation.classes]
        if len(seg_classes) != c:
            raise UsageError(f"segmentation.classes has {len(seg_classes)} names but the counts have {c} classes")
        return Data(
            n=n,
            inter=V.check_counts(segmentation.inter, "inter", n, c),
            union=V.check_counts(segmentation.union, "union", n, c),
            pred_px=V.check_counts(segmentation.pred, "pred", n, c),
            true_px=V.check_counts(segmentation.true, "true", n, c),
            seg_classes=seg_classes,
            top_k=top_k,
            n_bins=n_bins,
            bin_strategy=bin_strategy,
        )
    if y_true is None or y_pred is None:
        raise UsageError(_MSG_NO_INPUT)
    yt = V.as_labels(y_true, "y_true")
    if len(yt) == 0:
        raise UsageError(V._MSG_EMPTY.format(arg="y_true"))
    yp = V.as_labels(y_pred, "y_pred", n=len(yt))
    if classes is None:
        if isinstance(y_prob, pd.DataFrame):
            classes = [str(c) for c in y_prob.columns]
        else:
            classes = V.natural_sorted(np.concatenate([yt, yp]))
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise UsageError("classes must be unique")
    d = Data(
        n=len(yt),
        classes=classes,
        y_true=V.encode(yt, classes, "y_true"),
        y_pred=V.encode(yp, classes, "y_pred"),
        top_k=top_k,
        n_bins=n_bins,
        bin_strategy=bin_strategy,
    )
    if y_prob is not None:
        d.y_prob = V.check_probs(y_prob, d.n, d.K)
    return d


def resolve_metrics(metrics, d: Data) -> list[str]:
    """Metric names to compute: the given list (validated) or the defaults for the available inputs."""
    if metrics is None:
        if d.C:
            return default_segment_metrics(d.C)
        names = ["accuracy", "balanced_accuracy", "macro_f1", "recall"]
        if d.y_prob is not None:
            names += (["top_k"] if d.K > d.top_k else []) + ["ece", "brier", "nll"]
        return names
    if isinstance(metrics, str):
        metrics = [metrics]
    out = []
    every, seg = metric_names(), metric_names("segment")
    for m in metrics:
        if m not in every:
            raise UsageError(V._MSG_METRIC.format(value=m, choices=", ".join(every)))
        if m in seg and not d.C:
            raise UsageError(V._MSG_NEED.format(metric=m, what="segmentation pixel counts", arg="segmentation="))
        if m not in seg and d.C:
            raise UsageError(V._MSG_NEED.format(metric=m, what="labels", arg="y_true and y_pred"))
        if needs_probs(m) and d.y_prob is None:
            raise UsageError(V._MSG_NEED.format(metric=m, what="class probabilities", arg="y_prob="))
        if m not in out:
            out.append(m)
    return out
