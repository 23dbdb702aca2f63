"""``GroupReport``: metrics overall and per group, each with n, a 95% interval and a status."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

import audit.metrics._validate as V
from audit.errors import UsageError
from audit.metrics._bootstrap import (
    bootstrap_pvalue,
    bootstrap_sums,
    bootstrap_types,
    cluster_sums,
    draws_by_index,
    percentile_interval,
    seed_for,
    wilson_interval,
)
from audit.metrics._stats import (
    ALL_METRICS,
    DEFAULT_BINS,
    NEEDS_PROBS,
    SEGMENT_METRICS,
    Data,
    block_entries,
    block_width,
    build_metric_specs,
    default_segment_metrics,
    row_counts,
)

__all__ = ["GroupReport", "group_report", "SegmentationCounts", "encode_groups", "encode_clusters", "prepare_data"]

_MSG_NO_INPUT = "give y_true and y_pred (classification) or segmentation= (segmentation counts)"
_MSG_METRIC_LOOKUP = "no metric {metric!r} in this report; it has: {have}"
_MSG_GROUP_LOOKUP = "no group {group!r} in this report; it has: {have}"
_MSG_METHOD = "method must be 'between_groups' or 'to_overall' (got {value!r})"


@dataclass
class SegmentationCounts:
    """Per-image, per-class pixel counts (arrays of shape ``(n_images, n_classes)``)."""

    inter: np.ndarray
    union: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    classes: Sequence[str]


# ---------------------------------------------------------------------------------------------- encoding
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
    for m in metrics:
        if m not in ALL_METRICS:
            raise UsageError(V._MSG_METRIC.format(value=m, choices=", ".join(ALL_METRICS)))
        if m in SEGMENT_METRICS and not d.C:
            raise UsageError(V._MSG_NEED.format(metric=m, what="segmentation pixel counts", arg="segmentation="))
        if m not in SEGMENT_METRICS and d.C:
            raise UsageError(V._MSG_NEED.format(metric=m, what="labels", arg="y_true and y_pred"))
        if m in NEEDS_PROBS and d.y_prob is None:
            raise UsageError(V._MSG_NEED.format(metric=m, what="class probabilities", arg="y_prob="))
        if m not in out:
            out.append(m)
    return out


# ---------------------------------------------------------------------------------------------- engine
def block_statistics(
    d: Data, block: str, cell: np.ndarray, n_cells: int, cluster: np.ndarray, n_clusters: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Per-cluster statistics of one block (sparse) and their point sums per cell ``(n_cells, width)``."""
    w = block_width(block, d)
    m = cluster_sums(cluster, cell, n_cells, block_entries(block, d), w, n_clusters)
    point = np.asarray(m.sum(axis=0)).reshape(n_cells, w)
    return m, point


class GroupReport:
    """Metrics overall and per group, with n, a 95% interval and a status for every number.

    Built by :func:`group_report`. Mirrors fairlearn's ``MetricFrame``: ``overall``, ``by_group``,
    ``difference()``, ``ratio()``, plus ``worst()``/``best()`` and intervals everywhere (``to_frame()``).

    Attributes
    ----------
    by : str
        Name of the grouping (``domain``, ``attr.x``, ``domain x attr.x``; ``overall`` without groups).
    groups : list of str
        Group names, in order (empty groups included, with NaN values).
    metrics : list of str
        Metric names (``recall`` expanded per class).
    min_n : int
        Groups with fewer samples get status ``insufficient_evidence``.
    n_missing : int
        Rows whose group is missing: counted in ``overall`` only.
    """

    def __init__(self, *, by, groups, specs, values, n, ci_low, ci_high, ci_method, boot, min_n, n_missing, n_boot, seed):
        self.by = by
        self.groups = list(groups)
        self._specs = list(specs)
        self.metrics = [s.name for s in specs]
        self._values = values  # (G+1, M); row G = overall
        self._n = n
        self._lo = ci_low
        self._hi = ci_high
        self._method = ci_method
        self._boot = boot  # (B, G+1, M) or None
        self.min_n = min_n
        self.n_missing = int(n_missing)
        self.n_boot = n_boot
        self.seed = seed

    # ------------------------------------------------------------------ basic views
    def _m(self, metric: str | None) -> int:
        if metric is None:
            return 0
        try:
            return self.metrics.index(metric)
        except ValueError:
            raise UsageError(_MSG_METRIC_LOOKUP.format(metric=metric, have=", ".join(self.metrics))) from None

    def _g(self, group: str) -> int:
        if group in ("all", "overall") and group not in self.groups:
            return len(self.groups)
        try:
            return self.groups.index(str(group))
        except ValueError:
            raise UsageError(_MSG_GROUP_LOOKUP.format(group=group, have=", ".join(self.groups[:20]))) from None

    @property
    def overall(self) -> pd.Series:
        """Metric values on every row (groups and missing-group rows together)."""
        return pd.Series(self._values[-1], index=self.metrics, name="overall", dtype=float)

    @property
    def by_group(self) -> pd.DataFrame:
        """Metric values per group (rows) and metric (columns); empty groups are NaN."""
        return pd.DataFrame(self._values[:-1], index=pd.Index(self.groups, name=self.by), columns=self.metrics)

    @property
    def n_by_group(self) -> pd.DataFrame:
        """Samples behind each per-group value."""
        return pd.DataFrame(self._n[:-1].astype(np.int64), index=pd.Index(self.groups, name=self.by), columns=self.metrics)

    def status(self) -> pd.DataFrame:
        """``ok``, ``insufficient_evidence`` (n < min_n) or ``empty`` per group and metric."""
        n = self._n[:-1]
        st = np.where(n == 0, "empty", np.where(n < self.min_n, "insufficient_evidence", "ok"))
        return pd.DataFrame(st, index=pd.Index(self.groups, name=self.by), columns=self.metrics)

    def _status_array(self) -> np.ndarray:
        n = self._n
        return np.where(n == 0, "empty", np.where(n < self.min_n, "insufficient_evidence", "ok"))

    def interval(self, metric: str | None = None, group: str | None = None) -> tuple[float, float]:
        """The 95% interval of one value (``group=None`` or ``"all"`` for overall)."""
        m = self._m(metric)
        g = len(self.groups) if group is None else self._g(group)
        return float(self._lo[g, m]), float(self._hi[g, m])

    def bootstrap(self, metric: str | None = None) -> np.ndarray | None:
        """Bootstrap values ``(n_boot, n_groups + 1)`` of a metric (last column: overall); None without bootstrap."""
        if self._boot is None:
            return None
        return self._boot[:, :, self._m(metric)]

    # ------------------------------------------------------------------ group comparisons
    def _eligible(self, m: int, eligible_only: bool) -> np.ndarray:
        n = self._n[:-1, m]
        ok = (n >= max(1, self.min_n)) if eligible_only else (n > 0)
        return ok & np.isfinite(self._values[:-1, m])

    def _extreme(self, metric, *, worst: bool, eligible_only: bool) -> dict:
        m = self._m(metric)
        spec = self._specs[m]
        ok = self._eligible(m, eligible_only)
        out = {"metric": spec.name, "group": None, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0}
        if not ok.any():
            return out
        v = np.where(ok, self._values[:-1, m], np.nan)
        low_is_bad = spec.higher_is_better == worst
        g = int(np.nanargmin(v) if low_is_bad else np.nanargmax(v))
        out.update(group=self.groups[g], value=float(v[g]), ci_low=float(self._lo[g, m]), ci_high=float(self._hi[g, m]),
                   n=int(self._n[g, m]))
        return out

    def worst(self, metric: str | None = None, *, eligible_only: bool = True) -> dict:
        """The worst group of a metric (lowest; highest for losses such as ECE), among groups with n >= min_n.

        Returns a dict: metric, group (None when no group qualifies), value, ci_low, ci_high, n.
        """
        return self._extreme(metric, worst=True, eligible_only=eligible_only)

    def best(self, metric: str | None = None, *, eligible_only: bool = True) -> dict:
        """The best group of a metric (see :meth:`worst`)."""
        return self._extreme(metric, worst=False, eligible_only=eligible_only)

    def _spread(self, metric, method, kind, eligible_only):
        if method not in ("between_groups", "to_overall"):
            raise UsageError(_MSG_METHOD.format(value=method))
        m = self._m(metric)
        ok = self._eligible(m, eligible_only)

        def f(vals):  # vals: (..., G+1)
            g = np.where(ok, vals[..., :-1], np.nan)
            with np.errstate(all="ignore"):
                if method == "between_groups":
                    hi = _nanmax(g)
                    lo = _nanmin(g)
                    return hi - lo if kind == "difference" else _safe_div(lo, hi)
                ov = vals[..., -1:]
                if kind == "difference":
                    return _nanmax(np.abs(g - ov))
                return _nanmin(np.fmin(_safe_div(g, ov), _safe_div(ov, g)))

        value = float(f(self._values[:, m])) if ok.any() else np.nan
        if self._boot is None or not ok.any():
            return value, np.nan, np.nan
        b = f(self._boot[:, :, m])
        lo, hi = percentile_interval(b[:, None], np.array([value]))
        return value, float(lo[0]), float(hi[0])

    def difference(self, metric: str | None = None, *, method: str = "between_groups", eligible_only: bool = False,
                   with_ci: bool = False):
        """Largest difference between groups (or to overall), as fairlearn's ``MetricFrame.difference``.

        Parameters
        ----------
        metric
            One metric, or None for every metric (a Series).
        method
            ``between_groups`` (max - min) or ``to_overall`` (max |group - overall|).
        eligible_only
            Only groups with n >= min_n (the default counts every non-empty group, as fairlearn).
        with_ci
            Return ``(value, ci_low, ci_high)`` (cluster bootstrap) instead of the value.
        """
        return self._apply(self._spread, metric, method, "difference", eligible_only, with_ci)

    def ratio(self, metric: str | None = None, *, method: str = "between_groups", eligible_only: bool = False,
              with_ci: bool = False):
        """Smallest ratio between groups (min / max, or to overall), as fairlearn's ``MetricFrame.ratio``."""
        return self._apply(self._spread, metric, method, "ratio", eligible_only, with_ci)

    def _apply(self, fn, metric, method, kind, eligible_only, with_ci):
        if metric is not None:
            r = fn(metric, method, kind, eligible_only)
            return r if with_ci else r[0]
        rows = {m: fn(m, method, kind, eligible_only) for m in self.metrics}
        if with_ci:
            return pd.DataFrame(rows, index=["value", "ci_low", "ci_high"]).T
        return pd.Series({m: r[0] for m, r in rows.items()}, dtype=float)

    def compare(self, metric: str | None, a: str, b: str = "rest") -> dict:
        """Paired bootstrap comparison of group ``a`` with group ``b`` (a group name, ``"all"`` or ``"rest"``).

        Returns a dict: difference (a - b), ci_low, ci_high, p (two-sided bootstrap p-value), n_a, n_b.
        ``"rest"`` is every row outside ``a`` (computed from the same resamples, so it is paired).
        """
        m = self._m(metric)
        ga = self._g(a)
        spec = self._specs[m]
        if b == "rest":
            if self._rest is None:
                raise UsageError("this report was built without rest-of-data statistics")
            va, vb = self._values[ga, m], self._rest_values[ga, m]
            ba = None if self._boot is None else self._boot[:, ga, m]
            bb = None if self._boot is None else self._rest[:, ga, m]
            n_b = int(self._rest_n[ga, m])
        else:
            gb = self._g(b)
            va, vb = self._values[ga, m], self._values[gb, m]
            ba = None if self._boot is None else self._boot[:, ga, m]
            bb = None if self._boot is None else self._boot[:, gb, m]
            n_b = int(self._n[gb, m])
        diff = float(va - vb)
        out = {"metric": spec.name, "a": a, "b": b, "difference": diff, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan,
               "n_a": int(self._n[ga, m]), "n_b": n_b}
        if ba is not None:
            bd = ba - bb
            lo, hi = percentile_interval(bd[:, None], np.array([diff]))
            out.update(ci_low=float(lo[0]), ci_high=float(hi[0]), p=float(bootstrap_pvalue(bd[:, None], np.array([diff]))[0]))
        return out

    _rest = None
    _rest_values = None
    _rest_n = None

    # ------------------------------------------------------------------ tables
    def to_frame(self, *, include_overall: bool = True, by: str | None = None) -> pd.DataFrame:
        """Long table: by, group, metric, value, ci_low, ci_high, n, status, ci_method (overall: by "overall", group "all")."""
        G, M = len(self.groups), len(self.metrics)
        st = self._status_array()
        rows_g = np.repeat(np.arange(G), M)
        rows_m = np.tile(np.arange(M), G)
        df = pd.DataFrame(
            {
                "by": by or self.by,
                "group": np.array(self.groups, dtype=object)[rows_g] if G else np.array([], dtype=object),
                "metric": np.array(self.metrics, dtype=object)[rows_m],
                "value": self._values[rows_g, rows_m],
                "ci_low": self._lo[rows_g, rows_m],
                "ci_high": self._hi[rows_g, rows_m],
                "n": self._n[rows_g, rows_m].astype(np.int64),
                "status": st[rows_g, rows_m],
                "ci_method": np.array(self._method, dtype=object)[rows_g, rows_m],
            }
        )
        if include_overall and self.by == "overall":
            return df  # no grouping: the single group "all" is the overall
        if include_overall:
            ov = pd.DataFrame(
                {
                    "by": "overall",
                    "group": "all",
                    "metric": self.metrics,
                    "value": self._values[-1],
                    "ci_low": self._lo[-1],
                    "ci_high": self._hi[-1],
                    "n": self._n[-1].astype(np.int64),
                    "status": st[-1],
                    "ci_method": self._method[-1],
                }
            )
            df = pd.concat([ov, df], ignore_index=True)
        return df

    def summary(self) -> pd.DataFrame:
        """Per metric: overall, worst and best group (n >= min_n), largest difference and smallest ratio, with intervals."""
        rows = []
        for m in self.metrics:
            w, b = self.worst(m), self.best(m)
            d = self.difference(m, eligible_only=True, with_ci=True)
            r = self.ratio(m, eligible_only=True, with_ci=True)
            lo, hi = self.interval(m)
            rows.append({
                "metric": m, "overall": self._values[-1, self._m(m)], "overall_ci_low": lo, "overall_ci_high": hi,
                "n": int(self._n[-1, self._m(m)]), "worst_group": w["group"], "worst": w["value"],
                "worst_ci_low": w["ci_low"], "worst_ci_high": w["ci_high"], "worst_n": w["n"], "best_group": b["group"],
                "best": b["value"], "difference": d[0], "difference_ci_low": d[1], "difference_ci_high": d[2],
                "ratio": r[0], "ratio_ci_low": r[1], "ratio_ci_high": r[2],
            })
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"GroupReport(by={self.by!r}, groups={len(self.groups)}, metrics={self.metrics}, n={int(self._n[-1].max()) if self._n.size else 0})"


def _nanmax(x: np.ndarray) -> np.ndarray:
    allnan = np.isnan(x).all(axis=-1)
    r = np.where(np.isnan(x), -np.inf, x).max(axis=-1)
    return np.where(allnan, np.nan, r)


def _nanmin(x: np.ndarray) -> np.ndarray:
    allnan = np.isnan(x).all(axis=-1)
    r = np.where(np.isnan(x), np.inf, x).min(axis=-1)
    return np.where(allnan, np.nan, r)


def _safe_div(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with np.errstate(all="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1), np.nan)


def group_report(
    *,
    y_true=None,
    y_pred=None,
    sensitive=None,
    metrics: Sequence[str] | str | None = None,
    y_prob=None,
    classes: Sequence[str] | None = None,
    segmentation: SegmentationCounts | None = None,
    clusters=None,
    n_boot: int = 1000,
    min_n: int = 30,
    seed: int = 0,
    top_k: int = 3,
    n_bins: int = DEFAULT_BINS,
    bin_strategy: str = "quantile",
    proportion_ci: str = "auto",
    pos_label: str | None = None,
    confidence: float = 0.95,
    sample_ids=None,
) -> GroupReport:
    """Compute metrics overall and per group with n, 95% intervals and statuses.

    Parameters
    ----------
    y_true, y_pred
        Class labels (any hashable; compared as strings). Missing labels are an error.
    sensitive
        The grouping: an array/Series/Categorical, or a DataFrame/dict of several columns (their intersection).
        Missing values put a row in no group (it still counts in ``overall``; see ``n_missing``). A Categorical's
        unused categories are empty groups (NaN). None: one group ``all``.
    metrics
        Names from ``accuracy, balanced_accuracy, macro_f1, recall (per class), top_k, ece, brier, nll,
        selection_rate`` (classification) or ``miou, iou (per class), dice, iou_image, pixel_accuracy``
        (segmentation). Default: everything the inputs allow.
    y_prob
        Class probabilities ``(n, K)`` in ``classes`` order (a DataFrame's columns name the classes).
    classes
        Class names in order; default the sorted labels (numbers in numeric order).
    segmentation
        Per-image pixel counts for segmentation metrics (instead of labels).
    clusters
        Resampling clusters (patient, writer, ...); default every row is its own cluster.
    n_boot
        Bootstrap resamples (cluster bootstrap, vectorized; 0 disables bootstrap intervals).
    min_n
        Groups with fewer samples get status ``insufficient_evidence`` (the value is reported, no verdict).
    seed
        Seed of the bootstrap.
    proportion_ci
        ``auto`` (Wilson for proportions when every cluster is a single row, else the cluster bootstrap),
        ``wilson`` or ``bootstrap``.
    pos_label
        Positive class for ``selection_rate`` (default: the last class).
    sample_ids
        Sample identity per row when a sample is predicted several times (seeds, folds): ``n`` then counts
        distinct samples, not rows, exactly per metric (``recall.<c>``: the group's distinct samples of class c).
        Give ``clusters`` too so the repeats are resampled together.

    Returns
    -------
    GroupReport
    """
    n_boot = V.check_int(n_boot, "n_boot")
    min_n = V.check_int(min_n, "min_n")
    seed = V.check_int(seed, "seed")
    V.check_choice(proportion_ci, "proportion_ci", ("auto", "wilson", "bootstrap"))
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be in (0, 1) (got {confidence!r})")
    d = prepare_data(y_true=y_true, y_pred=y_pred, y_prob=y_prob, classes=classes, segmentation=segmentation,
                     top_k=top_k, n_bins=n_bins, bin_strategy=bin_strategy)
    names = resolve_metrics(metrics, d)
    pos = None
    if pos_label is not None:
        if str(pos_label) not in d.classes:
            raise UsageError(f"pos_label {pos_label!r} is not one of the classes {d.classes}")
        pos = d.classes.index(str(pos_label))
    specs = build_metric_specs(names, d, pos_label=pos)
    codes, groups, by = encode_groups(sensitive, d.n)
    cluster, n_clusters = encode_clusters(clusters, d.n)
    return _compute_report(d, specs, codes, groups, by, cluster, n_clusters, n_boot=n_boot, min_n=min_n, seed=seed,
                           proportion_ci=proportion_ci, confidence=confidence, samples=encode_samples(sample_ids, d.n))


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


class DistinctCounter:
    """Exact counts of distinct samples per cell among the rows a statistic counts.

    A sample predicted by several seeds or folds has several rows; it counts once in a cell (group) when any of
    its rows there is counted (``mask``), and once overall. ``rest[g]`` counts the samples with a counted row
    outside cell ``g`` (the complement used by paired comparisons).
    """

    def __init__(self, sample: np.ndarray, cell: np.ndarray, n_cells: int):
        self.n_cells = n_cells
        self.n_samples = int(sample.max()) + 1 if len(sample) else 0
        self.pair, uniq = pd.factorize(sample.astype(np.int64) * n_cells + cell)  # (sample, cell) pair of each row
        self.pair_cell = (uniq % n_cells).astype(np.int64)
        self.pair_sample = (uniq // n_cells).astype(np.int64)
        self._cache: dict[bytes, tuple[np.ndarray, int, np.ndarray]] = {}

    def counts(self, mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
        """``(per_cell (n_cells,), total, rest (n_cells,))`` distinct samples among the rows in ``mask``."""
        key = np.packbits(mask).tobytes()
        if key not in self._cache:
            hit = np.bincount(self.pair[mask], minlength=len(self.pair_cell)) > 0
            per_cell = np.bincount(self.pair_cell[hit], minlength=self.n_cells)
            cells_of = np.bincount(self.pair_sample[hit], minlength=self.n_samples)
            total = int((cells_of > 0).sum())
            single = hit & (cells_of[self.pair_sample] == 1)
            only_here = np.bincount(self.pair_cell[single], minlength=self.n_cells)
            self._cache[key] = (per_cell, total, total - only_here)
        return self._cache[key]


_CONTINUOUS_BLOCKS = ("calib", "brier", "nll")


def _compute_report(d, specs, codes, groups, by, cluster, n_clusters, *, n_boot, min_n, seed, proportion_ci, confidence,
                    rest: bool = True, samples: np.ndarray | None = None) -> GroupReport:
    """The report of ``specs`` over groups ``codes``; ``samples`` (sample code per row, optional) makes every n
    count distinct samples (each metric's n: the distinct samples among the rows its statistic counts)."""
    G = len(groups)
    n_cells = G + 1  # last cell: rows with a missing group (overall only)
    cell = np.where(codes < 0, G, codes)
    M = len(specs)
    values = np.full((G + 1, M), np.nan)
    n = np.zeros((G + 1, M))
    lo = np.full((G + 1, M), np.nan)
    hi = np.full((G + 1, M), np.nan)
    method = np.full((G + 1, M), "bootstrap", dtype=object)
    boot = np.full((n_boot, G + 1, M), np.nan) if n_boot else None
    rest_vals = np.full((G + 1, M), np.nan)
    rest_n = np.zeros((G + 1, M))
    rest_boot = np.full((n_boot, G + 1, M), np.nan) if (n_boot and rest) else None
    clustered = n_clusters < d.n
    use_wilson = proportion_ci == "wilson" or (proportion_ci == "auto" and not clustered)
    by_block: dict[str, list[int]] = {}
    for j, s in enumerate(specs):
        by_block.setdefault(s.block, []).append(j)
    block_stats: dict[str, np.ndarray] = {}
    mats: dict[str, sp.csr_matrix] = {}
    for block, idx in by_block.items():
        mat, point = block_statistics(d, block, cell, n_cells, cluster, n_clusters)
        total = point.sum(axis=0)
        stats = np.vstack([point[:G], total[None]])  # groups + overall
        rest_stats = total[None] - stats  # everything outside the group (paired comparisons)
        for j in idx:
            s = specs[j]
            values[:, j] = s.compute(stats)
            n[:, j] = s.count(stats)
            rest_vals[:, j] = s.compute(rest_stats)
            rest_n[:, j] = s.count(rest_stats)
        block_stats[block], mats[block] = stats, mat
    if n_boot:
        # Blocks whose clusters are mostly distinct (continuous per-row statistics such as calibration, Brier, NLL;
        # or any block when clusters hold many rows) cost O(clusters) per resample: they share one resample draw.
        # Blocks of a few distinct cluster types (row-level counts) keep their own, cheap, multinomial draws.
        types = {b: bootstrap_types(mats[b]) for b in by_block if b not in _CONTINUOUS_BLOCKS}
        shared = [b for b in by_block if b in _CONTINUOUS_BLOCKS or draws_by_index(types[b])]
        plan = [[b] for b in by_block if b not in shared] + ([shared] if shared else [])
        for blocks in plan:
            widths = [mats[b].shape[1] for b in blocks]
            subs = [[specs[j] for j in by_block[b]] for b in blocks]

            def reduce(sums, blocks=blocks, widths=widths, subs=subs):
                parts, off = [], 0
                for wd, b, sub in zip(widths, blocks, subs, strict=True):
                    X = sums[:, off:off + wd].reshape(sums.shape[0], n_cells, block_width(b, d))
                    off += wd
                    tot = X.sum(axis=1, keepdims=True)
                    Y = np.concatenate([X[:, :G], tot], axis=1)
                    parts.append(np.stack([s.compute(Y) for s in sub], axis=-1))
                    if rest:
                        R = tot - Y
                        parts.append(np.stack([s.compute(R) for s in sub], axis=-1))
                return np.concatenate(parts, axis=-1)

            mat = mats[blocks[0]] if len(blocks) == 1 else sp.hstack([mats[b] for b in blocks], format="csr")
            rng = seed_for(seed, "block", "+".join(blocks))
            res = bootstrap_sums(mat, n_boot=n_boot, rng=rng, reduce=reduce,
                                 types=types.get(blocks[0]) if len(blocks) == 1 else None)
            off = 0
            for b in blocks:
                idx = by_block[b]
                k = len(idx)
                bb = res[..., off:off + k]
                boot[:, :, idx] = bb
                if rest:
                    rest_boot[:, :, idx] = res[..., off + k:off + 2 * k]
                off += 2 * k if rest else k
                l_, h_ = percentile_interval(bb, values[:, idx], confidence=confidence)
                lo[:, idx], hi[:, idx] = l_, h_
    for block, idx in by_block.items():
        stats = block_stats[block]
        for j in idx:
            s = specs[j]
            if s.proportion is not None and use_wilson:
                succ, trials = s.proportion(stats)
                lo[:, j], hi[:, j] = wilson_interval(succ, trials, confidence=confidence)
                method[:, j] = "wilson"
            elif s.proportion is not None and n_boot:
                # A clustered proportion at 0 or 1 has a degenerate bootstrap ([0, 0]); widen every bootstrap
                # interval to also hold the Wilson interval at the effective n (n / design effect).
                succ, trials = s.proportion(stats)
                with np.errstate(invalid="ignore", divide="ignore"):
                    p_hat = succ / trials
                    var_bin = p_hat * (1 - p_hat) / trials
                    bj = boot[:, :, j]
                    fin = np.isfinite(bj)
                    k = fin.sum(axis=0)
                    mu = np.where(fin, bj, 0).sum(axis=0) / np.maximum(k, 1)
                    var_boot = np.where(k > 1, (np.where(fin, bj - mu, 0) ** 2).sum(axis=0) / np.maximum(k, 1), np.nan)
                    deff = np.where((var_bin > 0) & np.isfinite(var_boot), var_boot / np.where(var_bin > 0, var_bin, 1), 1.0)
                    n_eff = trials / np.maximum(deff, 1.0)
                wl, wh = wilson_interval(p_hat * n_eff, n_eff, confidence=confidence)
                lo[:, j] = np.fmin(lo[:, j], wl)
                hi[:, j] = np.fmax(hi[:, j], wh)
    if samples is not None:
        # n counts distinct samples, exactly, per metric: a sample with rows from several seeds or folds counts
        # once among the rows the metric's statistic counts (e.g. recall.<c>: the group's samples of class c)
        counter = DistinctCounter(samples, cell, n_cells)
        for j, s in enumerate(specs):
            per_cell, total, rest_cell = counter.counts(row_counts(s, d) > 0)
            n[:G, j], n[G, j] = per_cell[:G], total
            rest_n[:G, j], rest_n[G, j] = rest_cell[:G], 0
    empty = n == 0
    values[empty] = np.nan
    lo[empty] = np.nan
    hi[empty] = np.nan
    method[empty] = "none"
    if not n_boot:
        method[(method == "bootstrap")] = "none"
    rep = GroupReport(by=by, groups=groups, specs=specs, values=values, n=n, ci_low=lo, ci_high=hi, ci_method=method,
                      boot=boot, min_n=min_n, n_missing=int((codes < 0).sum()), n_boot=n_boot, seed=seed)
    rep._rest = rest_boot
    rep._rest_values = rest_vals
    rep._rest_n = rest_n
    return rep

