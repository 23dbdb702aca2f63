"""Statistics shared by the profile checks: contingency tables, bias-corrected Cramer's V with a cluster
bootstrap, NMI, residuals, Wilson intervals, Benjamini-Hochberg q-values, effect sizes.

Everything is vectorized over bootstrap replicates and independent of row order (categories are sorted,
clusters are collapsed to sorted unique count patterns before resampling).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st

from audit.core.intervals import Z95, benjamini_hochberg, wilson_interval

__all__ = [
    "wilson",
    "bh",
    "codes",
    "contingency",
    "cramers_v",
    "chi2_test",
    "nmi",
    "residuals",
    "bootstrap_tables",
    "smd",
    "smd_ci",
    "balanced_accuracy_ci",
]



def wilson(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for proportions ``k / n`` (NaN where ``n == 0``): ``audit.core.intervals``."""
    return wilson_interval(k, n, confidence=float(2 * _st.norm.cdf(z) - 1))


def bh(p) -> np.ndarray:
    """Benjamini-Hochberg q-values; NaN p-values stay NaN and do not count as tests (``audit.core.intervals``)."""
    return benjamini_hochberg(p)


def codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a string column over its sorted distinct values; -1 for missing."""
    s = values.astype("string")
    cats = sorted(s.dropna().unique().tolist())
    cat = pd.Categorical(s, categories=cats)
    return np.asarray(cat.codes, dtype=np.int64), cats


def contingency(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> np.ndarray:
    """Counts table (na x nb) of code arrays; rows with a missing code (-1) are left out."""
    ok = (a >= 0) & (b >= 0)
    return np.bincount(a[ok] * nb + b[ok], minlength=na * nb).reshape(na, nb)


def _drop_empty(t: np.ndarray) -> np.ndarray:
    return t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]


def cramers_v(tables: np.ndarray, *, corrected: bool = True) -> np.ndarray:
    """Cramer's V of one table (r x k) or a batch (B x r x k); bias-corrected as Bergsma (2013) by default.

    Empty rows and columns of each table are ignored (a bootstrap replicate may miss a rare category).
    NaN when fewer than two non-empty rows or columns remain.
    """
    t = np.asarray(tables, dtype=float)
    single = t.ndim == 2
    if single:
        t = t[None]
    n = t.sum(axis=(1, 2))
    rs = t.sum(axis=2)
    cs = t.sum(axis=1)
    r = (rs > 0).sum(axis=1).astype(float)
    k = (cs > 0).sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = rs[:, :, None] * cs[:, None, :] / n[:, None, None]
        chi2 = np.where(e > 0, (t - e) ** 2 / np.where(e > 0, e, 1), 0.0).sum(axis=(1, 2))
        phi2 = chi2 / n
        if corrected:
            phi2c = np.maximum(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
            rc = r - (r - 1) ** 2 / (n - 1)
            kc = k - (k - 1) ** 2 / (n - 1)
            den = np.minimum(kc - 1, rc - 1)
            v = np.sqrt(phi2c / den)
        else:
            den = np.minimum(k - 1, r - 1)
            v = np.sqrt(phi2 / den)
    v = np.where((r >= 2) & (k >= 2) & (n > 1) & (den > 0), v, np.nan)
    return v[0] if single else v


def chi2_test(table: np.ndarray) -> tuple[float, int, float]:
    """Pearson chi-square test of independence without continuity correction: (chi2, dof, p)."""
    t = _drop_empty(np.asarray(table))
    if t.shape[0] < 2 or t.shape[1] < 2:
        return float("nan"), 0, float("nan")
    res = _st.chi2_contingency(t, correction=False)
    return float(res.statistic), int(res.dof), float(res.pvalue)


def nmi(table: np.ndarray) -> float:
    """Normalized mutual information (arithmetic mean of the entropies, as scikit-learn's default)."""
    t = np.asarray(table, dtype=float)
    n = t.sum()
    if n == 0:
        return float("nan")
    p = t / n
    pa, pb = p.sum(axis=1), p.sum(axis=0)

    def h(x):
        x = x[x > 0]
        return float(-(x * np.log(x)).sum())

    ha, hb = h(pa), h(pb)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    den = (ha + hb) / 2
    if den <= 0:
        return 1.0 if ha == hb else 0.0
    return max(0.0, mi / den)


def residuals(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected counts, adjusted standardized residuals (Agresti) and lift (observed / expected)."""
    t = np.asarray(table, dtype=float)
    n = t.sum()
    rs, cs = t.sum(axis=1, keepdims=True), t.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = rs * cs / n
        var = e * (1 - rs / n) * (1 - cs / n)
        z = np.where(var > 0, (t - e) / np.sqrt(np.where(var > 0, var, 1)), np.nan)
        lift = np.where(e > 0, t / np.where(e > 0, e, 1), np.nan)
    return e, z, lift


def bootstrap_tables(a: np.ndarray, b: np.ndarray, na: int, nb: int, clusters: np.ndarray | None,
                     n_boot: int, rng: np.random.Generator, *, max_cells: int = 20_000_000) -> np.ndarray:
    """Bootstrap replicates (n_boot x na x nb) of the contingency table of codes ``a`` x ``b``.

    Resamples whole ``clusters`` (e.g. patients) with replacement. Clusters with the same count pattern are
    exchangeable, so the G clusters are collapsed to their U distinct patterns and each replicate draws
    ``Multinomial(G, multiplicity / G)`` over patterns: exact, and O(n_boot x U) instead of O(n_boot x G).
    With singleton clusters this is the ordinary multinomial bootstrap of the cells.
    """
    ok = (a >= 0) & (b >= 0)
    cell = a[ok] * nb + b[ok]
    ncell = na * nb
    if clusters is None:
        cl = np.arange(cell.size)
    else:
        _, cl = np.unique(np.asarray(clusters)[ok], return_inverse=True)
    g = int(cl.max()) + 1 if cl.size else 0
    if g == 0:
        return np.zeros((n_boot, na, nb))
    # Patterns are ordered by their first appearance in row order, never by category codes, so renaming
    # categories (which permutes the codes) permutes the replicate tables and leaves V exactly unchanged.
    if clusters is None or g == cell.size:
        uniq, first = np.unique(cell, return_index=True)
        order = uniq[np.argsort(first, kind="stable")]
        patterns = np.eye(ncell, dtype=np.int64)[order]
        mult = np.bincount(cell, minlength=ncell)[order]
    else:
        per = np.zeros((g, ncell), dtype=np.int64)
        np.add.at(per, (cl, cell), 1)
        first_row = np.full(g, cell.size, dtype=np.int64)
        np.minimum.at(first_row, cl, np.arange(cell.size))
        per = per[np.argsort(first_row, kind="stable")]  # clusters in order of first appearance
        patterns, first, mult = np.unique(per, axis=0, return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        patterns, mult = patterns[order], mult[order]
    keep = mult > 0
    patterns, mult = patterns[keep], mult[keep]
    out = np.empty((n_boot, ncell))
    step = max(1, max_cells // max(1, len(mult)))
    for s in range(0, n_boot, step):
        m = min(step, n_boot - s)
        w = rng.multinomial(g, mult / mult.sum(), size=m)
        out[s : s + m] = w @ patterns
    return out.reshape(n_boot, na, nb)


def smd(x: np.ndarray, y: np.ndarray) -> float:
    """Standardized mean difference (Cohen's d, pooled SD) of ``x`` versus ``y``."""
    nx, ny = len(x), len(y)
    if nx < 2 or ny < 2:
        return float("nan")
    vx, vy = np.var(x, ddof=1), np.var(y, ddof=1)
    sp = np.sqrt(((nx - 1) * vx + (ny - 1) * vy) / (nx + ny - 2))
    if not np.isfinite(sp) or sp == 0:
        return 0.0 if np.mean(x) == np.mean(y) else float(np.sign(np.mean(x) - np.mean(y)) * np.inf)
    return float((np.mean(x) - np.mean(y)) / sp)


def smd_ci(d: float, nx: int, ny: int) -> tuple[float, float]:
    """Normal-approximation 95% interval of Cohen's d (Hedges & Olkin)."""
    if not np.isfinite(d) or nx < 2 or ny < 2:
        return float("nan"), float("nan")
    se = np.sqrt((nx + ny) / (nx * ny) + d * d / (2 * (nx + ny)))
    return float(d - Z95 * se), float(d + Z95 * se)


def balanced_accuracy_ci(y: np.ndarray, pred: np.ndarray, n_classes: int, n_boot: int,
                         rng: np.random.Generator) -> tuple[float, float, float]:
    """Balanced accuracy of out-of-fold predictions and a percentile bootstrap interval over samples."""
    y = np.asarray(y)
    correct = (np.asarray(pred) == y).astype(np.int64)
    per = np.bincount(y, weights=correct, minlength=n_classes)
    tot = np.bincount(y, minlength=n_classes)
    present = tot > 0
    value = float((per[present] / tot[present]).mean())
    if n_boot <= 0 or len(y) == 0:
        return value, float("nan"), float("nan")
    # Resample (class, correct) cells with a multinomial: identical to resampling samples, O(n_boot x 2K).
    cell = y * 2 + correct
    mult = np.bincount(cell, minlength=2 * n_classes)
    w = rng.multinomial(len(y), mult / mult.sum(), size=n_boot).reshape(n_boot, n_classes, 2)
    tot_b = w.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.where(tot_b > 0, w[:, :, 1] / np.where(tot_b > 0, tot_b, 1), np.nan)
    vals = np.nanmean(rec, axis=1)
    lo, hi = np.nanpercentile(vals, [2.5, 97.5])
    return value, min(float(lo), value), max(float(hi), value)  # the interval always holds the estimate
