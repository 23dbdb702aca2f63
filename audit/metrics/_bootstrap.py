"""Uncertainty: Wilson intervals and a vectorized cluster bootstrap over sufficient statistics.

The bootstrap never loops over resamples or rows in Python. For a table of per-row sufficient statistics
(correct/total, confusion counts, pixel counts...) we

1. sum the statistics per (cluster, cell) once, into a sparse ``clusters x (cells * width)`` matrix;
2. collapse clusters whose statistic rows are identical into *types* with multiplicities: resampling
   clusters with replacement and counting how often each type is drawn is exactly a multinomial draw over
   types (``Multinomial(n_clusters, multiplicity / n_clusters)``), so nothing is approximated;
3. draw a seeded ``(n_boot x n_types)`` weight matrix and aggregate every resample at once with one sparse
   matrix product (in blocks of resamples to bound memory).

With one row per cluster (``group`` defaulting to ``sample_id``) this is the ordinary row bootstrap, and for
discrete statistics (accuracy, confusion counts) the number of types is tiny however many rows there are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtri

from audit.core.intervals import Z95, benjamini_hochberg, wilson_interval

__all__ = [
    "wilson_interval",
    "cluster_sums",
    "bootstrap_sums",
    "draws_by_index",
    "bootstrap_types",
    "percentile_interval",
    "bootstrap_pvalue",
    "benjamini_hochberg",
    "Z95",
]

# Upper bound on the elements of one dense block of resamples (bounds peak memory to ~100 MB of float64).
_BLOCK_ELEMENTS = 12_000_000


def cluster_sums(
    cluster: np.ndarray,
    cell: np.ndarray,
    n_cells: int,
    entries: Sequence[tuple[np.ndarray, np.ndarray]],
    width: int,
    n_clusters: int,
) -> sp.csr_matrix:
    """Sum per-row statistics into a sparse ``n_clusters x (n_cells * width)`` matrix.

    ``entries`` is a list of ``(column, value)`` pairs, each of length n_rows: row ``i`` adds ``value[i]`` to
    statistic column ``column[i]`` (0 <= column < width) of its (cluster, cell). Rows with ``cell < 0`` are
    ignored.
    """
    keep = cell >= 0
    rows, cols, vals = [], [], []
    for col, val in entries:
        col = np.broadcast_to(np.asarray(col, dtype=np.int64), cell.shape)
        val = np.broadcast_to(np.asarray(val, dtype=float), cell.shape)
        rows.append(cluster[keep])
        cols.append(cell[keep].astype(np.int64) * width + col[keep])
        vals.append(val[keep])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    v = np.concatenate(vals) if vals else np.zeros(0)
    m = sp.coo_matrix((v, (r, c)), shape=(n_clusters, n_cells * width)).tocsr()
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _types(m: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Collapse identical rows of ``m``: (unique rows, multiplicities, type of every row).

    Types are ordered by their first row, so with clusters numbered in a canonical order (sorted ids) the
    result does not depend on the order of the input rows or on group names.
    """
    n = m.shape[0]
    if n == 0:
        return m, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    nnz_row = np.diff(m.indptr)
    with np.errstate(over="ignore"):
        h_entry = _splitmix64(
            m.indices.astype(np.uint64) * np.uint64(0x100000001B3) ^ _splitmix64(m.data.view(np.uint64))
        )
        h = np.zeros(n, dtype=np.uint64)
        nonempty = nnz_row > 0
        if h_entry.size:
            h[nonempty] = np.add.reduceat(h_entry, m.indptr[:-1][nonempty])
        h = _splitmix64(h ^ nnz_row.astype(np.uint64))
    _, first, inverse, counts = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    inverse = rank[inverse.reshape(-1)]
    rep = m[first[order]]
    # Verify: every row equals its type's representative (guards against a hash collision).
    if (m - rep[inverse]).count_nonzero() != 0:
        return m, np.ones(n, dtype=np.int64), np.arange(n, dtype=np.int64)
    return rep, counts[order].astype(np.int64), inverse.astype(np.int64)


def bootstrap_types(m: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The cluster types of ``m`` (unique rows, multiplicities, type of every row), as :func:`bootstrap_sums`
    computes them; pass them back as its ``types`` to not compute them twice."""
    return _types(m)


def draws_by_index(types: tuple[sp.csr_matrix, np.ndarray, np.ndarray]) -> bool:
    """Whether :func:`bootstrap_sums` draws literal cluster indices for a matrix of these ``types`` (its clusters
    are mostly distinct: continuous or clustered statistics), so each resample costs O(clusters). Such matrices
    can share one draw by being stacked side by side."""
    counts = types[1]
    return int(counts.sum()) <= 8 * len(counts)


def bootstrap_sums(
    m: sp.csr_matrix,
    *,
    n_boot: int,
    rng: np.random.Generator,
    reduce: Callable[[np.ndarray], np.ndarray],
    types: tuple[sp.csr_matrix, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Cluster-bootstrap the column sums of ``m`` and reduce each resample.

    Parameters
    ----------
    m
        ``n_clusters x d`` sparse per-cluster statistics (from :func:`cluster_sums`).
    n_boot
        Number of resamples.
    rng
        Seeded generator.
    reduce
        Maps a ``(b, d)`` block of resampled column sums to a ``(b, ...)`` array (e.g. metric values per group).
    types
        ``bootstrap_types(m)`` when the caller already has it.

    Returns
    -------
    np.ndarray
        ``(n_boot, ...)``: ``reduce`` applied to every resample.
    """
    types, counts, type_of = _types(m) if types is None else types
    n_clusters = int(counts.sum())
    d = m.shape[1]
    if n_boot <= 0 or n_clusters == 0:
        return reduce(np.zeros((0, d)))
    mt = types.T.tocsr()  # d x T
    n_types = len(counts)
    # Two exact ways to draw how often each type is resampled: literal cluster indices (cheap when clusters are
    # few) or a multinomial over types (cheap when many clusters share few types, e.g. one row per cluster).
    by_index = n_clusters <= 8 * n_types
    p = counts / n_clusters
    step = max(1, min(n_boot, _BLOCK_ELEMENTS // max(1, max(n_types, d))))
    # every cluster its own type (continuous statistics): the drawn cluster is the type, no gather needed
    identity = by_index and n_types == n_clusters and bool((type_of == np.arange(n_clusters)).all())
    idx_dtype = np.int32 if n_clusters < 2**31 else np.int64
    out = []
    for start in range(0, n_boot, step):  # blocks of resamples, each vectorized
        b = min(step, n_boot - start)
        if by_index:
            # one resample at a time: small working set (the draws of a whole block were ~100 MB of indices).
            # numpy draws the same integers for int32 and int64 below 2**32, in the same order as one (b, n) call.
            w = np.empty((b, n_types))
            for k in range(b):
                r = rng.integers(0, n_clusters, size=n_clusters, dtype=idx_dtype)
                w[k] = np.bincount(r if identity else type_of[r], minlength=n_types)
        else:
            w = rng.multinomial(n_clusters, p, size=b).astype(float)  # b x T
        sums = np.asarray((mt @ w.T).T)  # b x d
        out.append(reduce(sums))
    return np.concatenate(out, axis=0)


def nanquantile0(x: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """``np.nanquantile(x, qs, axis=0)`` (linear interpolation), vectorized: sort once, NaN sorted last."""
    s = np.sort(x, axis=0)
    k = np.isfinite(s).sum(axis=0)
    out = []
    for q in qs:
        pos = q * np.maximum(k - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(k - 1, 0))
        frac = pos - lo
        a = np.take_along_axis(s, lo[None], axis=0)[0]
        b = np.take_along_axis(s, hi[None], axis=0)[0]
        v = a + (b - a) * frac
        out.append(np.where(k > 0, v, np.nan))
    return np.stack(out)


def percentile_interval(
    boot: np.ndarray, point: np.ndarray, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, widened if needed so it always contains the point estimate.

    Resamples where the statistic is undefined (NaN, e.g. a group drawn zero times) are ignored; an interval
    with fewer than 20 defined resamples is NaN.
    """
    point = np.asarray(point, dtype=float)
    if boot.shape[0] == 0:
        nan = np.full(point.shape, np.nan)
        return nan, nan.copy()
    a = (1 - confidence) / 2
    ok = np.isfinite(boot).sum(axis=0)
    with np.errstate(invalid="ignore"):
        lo, hi = nanquantile0(boot, [a, 1 - a])
    bad = (ok < 20) | ~np.isfinite(point)
    lo = np.where(bad, np.nan, np.fmin(lo, point))
    hi = np.where(bad, np.nan, np.fmax(hi, point))
    return lo, hi


def bootstrap_pvalue(boot: np.ndarray, point, *, null: float = 0.0, alternative: str = "two-sided") -> np.ndarray:
    """p-value for H0: statistic == ``null`` (two-sided) or <= ``null`` (``greater``), Wald-style with the
    bootstrap standard error: ``z = (point - null) / sd(resamples)``.

    Unlike counting resamples beyond ``null``, this p-value is not floored at ``1 / n_boot``, so
    Benjamini-Hochberg over many comparisons works with any number of resamples.
    """
    from scipy.stats import norm

    point = np.asarray(point, dtype=float)
    finite = np.isfinite(boot)
    k = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, boot, 0).sum(axis=0) / np.maximum(k, 1)
        var = (np.where(finite, boot - mean, 0) ** 2).sum(axis=0) / np.maximum(k - 1, 1)
        z = (point - null) / np.sqrt(var)
    z = np.where(var > 0, z, np.where(point > null, np.inf, np.where(point < null, -np.inf, 0.0)))
    if alternative == "greater":
        p = norm.sf(z)
    elif alternative == "less":
        p = norm.cdf(z)
    else:
        p = 2 * norm.sf(np.abs(z))
    return np.where((k >= 20) & np.isfinite(point), np.minimum(p, 1.0), np.nan)


def seed_for(seed: int, *names: str) -> np.random.Generator:
    """A generator derived from ``seed`` and stable names (independent streams per block of statistics)."""
    import hashlib

    words = [int(seed) & 0xFFFFFFFF]
    for name in names:
        words.append(int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "little"))
    return np.random.default_rng(np.random.SeedSequence(words))


def z_for(confidence: float) -> float:
    return float(ndtri(0.5 + confidence / 2)) if 0 < confidence < 1 else math.nan
