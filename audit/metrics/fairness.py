"""Fairness: demographic parity, equalized odds and equal opportunity, from per-group confusion counts.

Every quantity is a function of the per-group confusion matrices, so the cluster bootstrap resamples those
counts (never rows). For two classes the positive class is ``pos_label`` (default: the last class) and the
result has class ``binary``; for more classes each class is taken one-vs-rest and ``macro`` (mean over
classes) and ``worst`` (largest difference / smallest ratio) are added.

Definitions (per class c, over groups g with n >= min_n):

* selection rate ``P(pred = c | g)``; ``dp_diff`` = max - min, ``dp_ratio`` = min / max;
* TPR ``P(pred = c | true = c, g)``; ``eop_diff`` = max - min of TPR;
* FPR ``P(pred = c | true != c, g)``; ``eo_diff`` = max(TPR difference, FPR difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import audit.metrics._validate as V
from audit.errors import UsageError
from audit.metrics._bootstrap import bootstrap_pvalue, bootstrap_sums, percentile_interval, seed_for
from audit.metrics._stats import nanmax, nanmin, safe_div
from audit.metrics.encoding import encode_clusters, encode_groups, encode_samples, prepare_data
from audit.metrics.engine import DistinctCounter, block_statistics

__all__ = [
    "fairness_report",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "FAIRNESS_METRICS",
]

FAIRNESS_METRICS = ("dp_diff", "dp_ratio", "eop_diff", "eo_diff")
_MSG_AVERAGE = "average must be 'worst', 'macro' or None (got {value!r})"


def _rates(C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selection rate, TPR and FPR per group and class from confusion counts ``(..., G, K, K)``."""
    total = C.sum(axis=(-2, -1))[..., None]
    col = C.sum(axis=-2)
    row = C.sum(axis=-1)
    diag = np.diagonal(C, axis1=-2, axis2=-1)
    sel = safe_div(col, np.where(total > 0, total, 0))
    tpr = safe_div(diag, np.where(row > 0, row, 0))
    neg = total - row
    fpr = safe_div(col - diag, np.where(neg > 0, neg, 0))
    return sel, tpr, fpr


def _masks(ok: np.ndarray, K: int | None = None) -> np.ndarray:
    """Eligibility ``(3, G, K)`` for (selection rate, TPR, FPR); a ``(G,)`` group mask applies to all three."""
    if ok.ndim == 1:
        return np.broadcast_to(ok[None, :, None], (3, ok.shape[0], K if K is not None else 1))
    return ok


def eligibility(C: np.ndarray, ok: np.ndarray, min_rate_n: int, pos: np.ndarray | None = None,
                neg: np.ndarray | None = None) -> np.ndarray:
    """``(3, G, K)``: a group's rate for a class is judged only on enough samples: selection rate on the group's
    n (``ok``), TPR on its positives and FPR on its negatives (each at least ``min_rate_n``). ``pos``/``neg``
    ``(G, K)``: distinct positive/negative samples (default: the confusion counts, i.e. rows)."""
    total = C.sum(axis=(-2, -1))[..., None]
    row = C.sum(axis=-1) if pos is None else pos
    neg = (total - C.sum(axis=-1)) if neg is None else neg
    K = C.shape[-1]
    base = np.broadcast_to(ok[:, None], (ok.shape[0], K))
    m = max(1, int(min_rate_n))
    return np.stack([base, base & (row >= m), base & (neg >= m)], axis=0)


def _disparities(C: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``(..., 4, K)``: dp_diff, dp_ratio, eop_diff, eo_diff per class over the eligible groups ``ok``."""
    sel, tpr, fpr = _rates(C)
    m = _masks(ok)
    sel = np.where(m[0], sel, np.nan)
    tpr = np.where(m[1], tpr, np.nan)
    fpr = np.where(m[2], fpr, np.nan)
    g_axis = -2
    # a difference needs two groups: with one eligible group it is undefined, not 0 (a 0 would read as parity)
    two = [(np.broadcast_to(mk, r.shape).sum(axis=g_axis) >= 2) for mk, r in zip(m, (sel, tpr, fpr), strict=True)]
    smax, smin = nanmax(np.moveaxis(sel, g_axis, -1)), nanmin(np.moveaxis(sel, g_axis, -1))
    smax, smin = np.where(two[0], smax, np.nan), np.where(two[0], smin, np.nan)
    tdiff = nanmax(np.moveaxis(tpr, g_axis, -1)) - nanmin(np.moveaxis(tpr, g_axis, -1))
    fdiff = nanmax(np.moveaxis(fpr, g_axis, -1)) - nanmin(np.moveaxis(fpr, g_axis, -1))
    tdiff, fdiff = np.where(two[1], tdiff, np.nan), np.where(two[2], fdiff, np.nan)
    eo = np.where(np.isnan(tdiff) | np.isnan(fdiff), np.nan, np.fmax(tdiff, fdiff))
    return np.stack([smax - smin, safe_div(smin, smax), tdiff, eo], axis=-2)


def _pair_diffs(C: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``(..., 3, K)``: rate(group a) - rate(group b) for the fixed pairs ``pairs[(rate, class)] = (a, b)``."""
    rates = np.stack(_rates(C), axis=-3)  # (..., 3, G, K)
    K = rates.shape[-1]
    r_idx = np.repeat(np.arange(3), K)
    k_idx = np.tile(np.arange(K), 3)
    a = pairs[..., 0].reshape(-1)
    b = pairs[..., 1].reshape(-1)
    va = rates[..., r_idx, a, k_idx]
    vb = rates[..., r_idx, b, k_idx]
    return (va - vb).reshape(rates.shape[:-3] + (3, K))


def _extreme_pairs(C: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """For each rate and class, the (argmax, argmin) eligible groups at the point estimate: ``(3, K, 2)``."""
    rates = np.stack(_rates(C), axis=0)  # (3, G, K)
    r = np.where(_masks(ok), rates, np.nan)
    hi = np.where(np.isnan(r), -np.inf, r).argmax(axis=1)
    lo = np.where(np.isnan(r), np.inf, r).argmin(axis=1)
    return np.stack([hi, lo], axis=-1)


def fairness_report(
    *,
    y_true,
    y_pred,
    sensitive,
    classes=None,
    pos_label=None,
    clusters=None,
    n_boot: int = 1000,
    min_n: int = 30,
    min_rate_n: int | None = None,
    seed: int = 0,
    confidence: float = 0.95,
    sample_ids=None,
    margin: float = 0.0,
) -> pd.DataFrame:
    """Fairness disparities across the groups of ``sensitive`` with bootstrap intervals.

    Parameters
    ----------
    y_true, y_pred
        Class labels.
    sensitive
        Attribute values (array/Series), or a DataFrame of several attributes (their intersection).
    classes
        Class names in order (default: sorted labels).
    pos_label
        Positive class for two classes (default: the last class).
    clusters
        Resampling clusters (default: rows).
    n_boot, seed, confidence
        Cluster bootstrap settings.
    min_n
        Groups with fewer samples are left out of the comparison (counted in ``n_excluded``).
    min_rate_n
        A group's true-positive rate for a class needs at least this many positives of the class, its
        false-positive rate as many negatives (default: ``min_n``); rates on fewer are left out, so a 1.0 gap
        between two groups with a handful of positives each never becomes a verdict.
    sample_ids
        Sample identity per row when a sample is predicted several times (seeds, folds): group sizes (min_n,
        ``n``) and positives/negatives (min_rate_n) then count distinct samples, not rows. Give ``clusters``
        too so the repeats are resampled together.
    margin
        The per-class p-values test ``|difference| <= margin`` (two-sided; default 0: no difference). A margin
        asks for a difference credibly larger than trivial (the metrics stage uses half its warning threshold).

    Returns
    -------
    pandas.DataFrame
        One row per metric (dp_diff, dp_ratio, eop_diff, eo_diff) and class (``binary``, a class name, ``macro``,
        ``worst``): value, ci_low, ci_high, n, n_groups, n_excluded, p (two-sided bootstrap p-value of the
        difference between the two extreme groups, Bonferroni-corrected for the number of group pairs, doubled
        for eo_diff, the larger of two differences; for ``worst``: the p-value of the worst class, Bonferroni
        over the classes; NaN for ratios and ``macro``), groups (``"a vs b"``: highest and lowest group).
    """
    n_boot = V.check_int(n_boot, "n_boot")
    min_n = V.check_int(min_n, "min_n")
    seed = V.check_int(seed, "seed")
    d = prepare_data(y_true=y_true, y_pred=y_pred, classes=classes)
    codes, groups, by = encode_groups(sensitive, d.n)
    cluster, n_clusters = encode_clusters(clusters, d.n)
    K = d.K
    pos = K - 1
    if pos_label is not None:
        if str(pos_label) not in d.classes:
            raise UsageError(f"pos_label {pos_label!r} is not one of the classes {d.classes}")
        pos = d.classes.index(str(pos_label))
    G = len(groups)
    cell = np.where(codes < 0, G, codes)
    mat, point = block_statistics(d, "confusion", cell, G + 1, cluster, n_clusters)
    Cg = point[:G].reshape(G, K, K)
    n_g, pos_n, neg_n = _group_sizes(d, Cg, encode_samples(sample_ids, d.n), cell, G)
    ok = n_g >= max(1, min_n)
    excluded = int(((n_g > 0) & ~ok).sum())
    ok = eligibility(Cg, ok, min_n if min_rate_n is None else min_rate_n, pos_n, neg_n)  # (3, G, K)
    disp = _disparities(Cg, ok)  # (4, K)
    pairs = _extreme_pairs(Cg, ok)  # (3, K, 2)
    pair_point = _pair_diffs(Cg, pairs)  # (3, K)
    boot = None
    pair_boot = None
    if n_boot and ok[0, :, 0].sum() >= 2:
        def reduce(sums):
            X = sums.reshape(sums.shape[0], G + 1, K, K)[:, :G]
            return np.concatenate([_disparities(X, ok), _pair_diffs(X, pairs)], axis=1)

        b = bootstrap_sums(mat, n_boot=n_boot, rng=seed_for(seed, "fairness"), reduce=reduce)
        boot, pair_boot = b[:, :4], b[:, 4:]
    st = _FairState(d=d, by=by, groups=groups, Cg=Cg, n_g=n_g, ok=ok, disp=disp, pairs=pairs, pair_point=pair_point,
                    boot=boot, pair_boot=pair_boot, pos=pos, excluded=excluded, confidence=confidence, margin=margin)
    rows = []
    for mi, metric in enumerate(FAIRNESS_METRICS):
        for k in ([pos] if d.K == 2 else range(d.K)):
            rows.append(_class_row(st, mi, metric, k))
        if d.K > 2:
            rows.extend(_aggregate_row(st, mi, metric, agg, rows) for agg in ("macro", "worst"))
    return pd.DataFrame(rows)


def _group_sizes(d, Cg: np.ndarray, samples: np.ndarray | None, cell: np.ndarray, G: int):
    """Rows per group, or distinct samples (a sample predicted by several seeds counts once) with its positives
    and negatives per class."""
    if samples is None:
        return Cg.sum(axis=(1, 2)), None, None
    counter = DistinctCounter(samples, cell, G + 1)
    n_g = counter.counts(np.ones(d.n, dtype=bool))[0][:G]
    pos_n = np.stack([counter.counts(d.y_true == k)[0][:G] for k in range(d.K)], axis=1)
    neg_n = np.stack([counter.counts(d.y_true != k)[0][:G] for k in range(d.K)], axis=1)
    return n_g, pos_n, neg_n


@dataclass
class _FairState:
    """The point statistics and bootstrap draws one fairness report is read from."""

    d: Any
    by: str
    groups: list
    Cg: np.ndarray
    n_g: np.ndarray
    ok: np.ndarray
    disp: np.ndarray
    pairs: np.ndarray
    pair_point: np.ndarray
    boot: np.ndarray | None
    pair_boot: np.ndarray | None
    pos: int
    excluded: int
    confidence: float
    margin: float

    @property
    def m_ok(self) -> int:
        return int(self.ok[0, :, 0].sum())

    @property
    def n_used(self) -> int:
        return int(self.n_g[self.ok[0, :, 0]].sum())

    def interval(self, draws: np.ndarray, v: float) -> tuple[float, float]:
        if self.boot is None or not np.isfinite(v):
            return np.nan, np.nan
        l_, h_ = percentile_interval(draws[:, None], np.array([v]), confidence=self.confidence)
        return float(l_[0]), float(h_[0])


def _class_row(st: _FairState, mi: int, metric: str, k: int) -> dict:
    """One metric for one class (``binary`` with two classes): value, interval, p over the extreme pair."""
    d, Cg, ok = st.d, st.Cg, st.ok
    v = float(st.disp[mi, k])
    rate = {"dp_diff": 0, "dp_ratio": 0, "eop_diff": 1, "eo_diff": None}[metric]
    if rate is None:  # equalized odds: the larger of the TPR and FPR differences
        t_d, f_d = _disparities(Cg, ok)[2, k], _rates_diff(Cg, ok, 2, k)
        rate = 2 if (np.isfinite(f_d) and f_d > t_d) else 1
    a, b_ = st.pairs[rate, k]
    rates_used = (1, 2) if metric == "eo_diff" else ((0,) if rate == 0 else (rate,))
    n_elig = min(int(ok[r_, :, k].sum()) for r_ in rates_used)
    pair = f"{st.groups[a]} vs {st.groups[b_]}" if n_elig >= 2 else None
    excl_k = max(int(((st.n_g > 0) & ~ok[r_, :, k]).sum()) for r_ in rates_used)
    lo, hi = st.interval(st.boot[:, mi, k], v) if st.boot is not None else (np.nan, np.nan)
    p = np.nan
    if st.boot is not None and np.isfinite(v) and metric != "dp_ratio":
        n_pairs = max(1, st.m_ok * (st.m_ok - 1) // 2)
        p = _pair_pvalue(st.pair_boot[:, rate, k], float(st.pair_point[rate, k]), st.margin) * n_pairs
        p = float(min(1.0, p * (2 if metric == "eo_diff" else 1)))
    name = "binary" if d.K == 2 else d.classes[k]
    return _row(st.by, metric, name, v, lo, hi, st.n_used, n_elig, excl_k, p, pair,
                d.classes[st.pos] if d.K == 2 else None)


def _aggregate_row(st: _FairState, mi: int, metric: str, agg: str, rows: list[dict]) -> dict:
    """``macro`` (mean over classes) or ``worst`` (largest difference, smallest ratio) of one metric."""
    is_ratio = metric == "dp_ratio"
    f = _nanmean if agg == "macro" else (nanmin if is_ratio else nanmax)
    v = float(f(st.disp[mi]))
    lo, hi = st.interval(f(st.boot[:, mi]), v) if st.boot is not None else (np.nan, np.nan)
    p = np.nan
    if agg == "worst" and not is_ratio and rows:
        # the p-value of the class whose difference is the worst, Bonferroni over the classes tested
        per = [r for r in rows if r["metric"] == metric and r["class"] not in ("macro", "worst")]
        tested = [r for r in per if np.isfinite(r["p"])]
        top = max((r for r in per if np.isfinite(r["value"])), key=lambda r: r["value"], default=None)
        if top is not None and np.isfinite(top["p"]):
            p = float(min(1.0, top["p"] * len(tested)))
    return _row(st.by, metric, agg, v, lo, hi, st.n_used, st.m_ok, st.excluded, p, None, None)


def _pair_pvalue(boot: np.ndarray, point: float, margin: float) -> float:
    """Two-sided p-value of H0: |difference| <= margin for a pair difference (Wald, bootstrap standard error)."""
    if not np.isfinite(point):
        return np.nan
    if margin <= 0:
        return float(bootstrap_pvalue(boot[:, None], np.array([point]))[0])
    one = bootstrap_pvalue(
        boot[:, None] * np.sign(point or 1.0), np.array([abs(point)]), null=margin, alternative="greater"
    )[0]
    return float(min(1.0, 2 * one))


def _rates_diff(Cg, ok, r, k) -> float:
    x = np.stack(_rates(Cg), axis=0)[r][:, k]
    x = x[_masks(ok, Cg.shape[-1])[r][:, k]]
    x = x[np.isfinite(x)]
    return float(x.max() - x.min()) if len(x) else np.nan


def _nanmean(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    k = ok.sum(axis=-1)
    return safe_div(np.where(ok, x, 0).sum(axis=-1), np.where(k > 0, k, 0))


def _row(by, metric, cls, v, lo, hi, n, n_groups, excluded, p, pair, positive) -> dict:
    return {"attribute": by, "metric": metric, "class": cls, "value": v, "ci_low": lo, "ci_high": hi, "n": n,
            "n_groups": n_groups, "n_excluded": excluded, "p": p, "groups": pair, "positive": positive}


# ---------------------------------------------------------------------------------------------- scalar helpers
def _scalar(metric: str, y_true, y_pred, sensitive, pos_label, average, min_n: int) -> float | pd.Series:
    if average not in ("worst", "macro", None):
        raise UsageError(_MSG_AVERAGE.format(value=average))
    df = fairness_report(y_true=y_true, y_pred=y_pred, sensitive=sensitive, pos_label=pos_label, n_boot=0, min_n=min_n)
    df = df[df["metric"] == metric]
    if (df["class"] == "binary").any():
        return float(df["value"].iloc[0])
    if average is None:
        per = df[~df["class"].isin(["macro", "worst"])]
        return pd.Series(per["value"].to_numpy(), index=per["class"].to_numpy(), name=metric)
    return float(df.loc[df["class"] == average, "value"].iloc[0])


def demographic_parity_difference(y_true, y_pred, *, sensitive, pos_label=None, average: str | None = "worst",
                                  min_n: int = 1) -> float | pd.Series:
    """Largest difference in selection rate between groups (fairlearn's definition for two classes).

    For more classes: one-vs-rest per class, reduced by ``average`` (``worst``, ``macro``; None: per class).
    """
    return _scalar("dp_diff", y_true, y_pred, sensitive, pos_label, average, min_n)


def demographic_parity_ratio(y_true, y_pred, *, sensitive, pos_label=None, average: str | None = "worst",
                             min_n: int = 1) -> float | pd.Series:
    """Smallest ratio of selection rates between groups (min / max)."""
    return _scalar("dp_ratio", y_true, y_pred, sensitive, pos_label, average, min_n)


def equalized_odds_difference(y_true, y_pred, *, sensitive, pos_label=None, average: str | None = "worst",
                              min_n: int = 1) -> float | pd.Series:
    """The larger of the between-group TPR difference and FPR difference (fairlearn's ``worst_case``)."""
    return _scalar("eo_diff", y_true, y_pred, sensitive, pos_label, average, min_n)


def equal_opportunity_difference(y_true, y_pred, *, sensitive, pos_label=None, average: str | None = "worst",
                                 min_n: int = 1) -> float | pd.Series:
    """Largest difference in true positive rate between groups."""
    return _scalar("eop_diff", y_true, y_pred, sensitive, pos_label, average, min_n)
