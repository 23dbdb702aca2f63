"""The report engine: per-cluster sufficient statistics, point values, one vectorized bootstrap per block, Wilson
intervals, distinct-sample counts. Every metric of :mod:`audit.metrics` is computed here."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audit.metrics._bootstrap import (
    bootstrap_sums,
    bootstrap_types,
    cluster_sums,
    draws_by_index,
    percentile_interval,
    seed_for,
    wilson_interval,
)
from audit.metrics._stats import (
    Data,
    block_entries,
    block_width,
    row_counts,
)
from audit.metrics.groupframe import GroupReport

__all__ = ["block_statistics", "DistinctCounter", "compute_report"]

def block_statistics(
    d: Data, block: str, cell: np.ndarray, n_cells: int, cluster: np.ndarray, n_clusters: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Per-cluster statistics of one block (sparse) and their point sums per cell ``(n_cells, width)``."""
    w = block_width(block, d)
    m = cluster_sums(cluster, cell, n_cells, block_entries(block, d), w, n_clusters)
    point = np.asarray(m.sum(axis=0)).reshape(n_cells, w)
    return m, point


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


def compute_report(d, specs, codes, groups, by, cluster, n_clusters, *, n_boot, min_n, seed, proportion_ci, confidence,
                   rest: bool = True, samples: np.ndarray | None = None) -> GroupReport:
    """The report of ``specs`` over groups ``codes``; ``samples`` (sample code per row, optional) makes every n
    count distinct samples (each metric's n: the distinct samples among the rows its statistic counts)."""
    w = _Work(d, specs, codes, len(groups), cluster, n_clusters, n_boot=n_boot, rest=rest)
    w.point_values()
    if n_boot:
        w.bootstrap(seed, confidence)
    clustered = n_clusters < d.n
    w.proportion_intervals(proportion_ci == "wilson" or (proportion_ci == "auto" and not clustered), confidence)
    if samples is not None:
        w.distinct_n(samples)
    w.blank_empty()
    rep = GroupReport(by=by, groups=groups, specs=specs, values=w.values, n=w.n, ci_low=w.lo, ci_high=w.hi,
                      ci_method=w.method, boot=w.boot, min_n=min_n, n_missing=int((codes < 0).sum()), n_boot=n_boot,
                      seed=seed)
    rep._rest = w.rest_boot
    rep._rest_values = w.rest_vals
    rep._rest_n = w.rest_n
    return rep


class _Work:
    """The arrays of one report, ``(groups + overall, metrics)``, filled step by step by :func:`compute_report`."""

    def __init__(self, d, specs, codes, G, cluster, n_clusters, *, n_boot, rest):
        self.d, self.specs, self.G, self.cluster, self.n_clusters = d, specs, G, cluster, n_clusters
        self.n_boot, self.rest = n_boot, rest
        self.n_cells = G + 1  # last cell: rows with a missing group (overall only)
        self.cell = np.where(codes < 0, G, codes)
        shape = (G + 1, len(specs))
        self.values, self.lo, self.hi = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        self.n, self.rest_n, self.rest_vals = np.zeros(shape), np.zeros(shape), np.full(shape, np.nan)
        self.method = np.full(shape, "bootstrap" if n_boot else "none", dtype=object)
        self.boot = np.full((n_boot,) + shape, np.nan) if n_boot else None
        self.rest_boot = np.full((n_boot,) + shape, np.nan) if (n_boot and rest) else None
        self.by_block: dict[str, list[int]] = {}
        for j, sp_ in enumerate(specs):
            self.by_block.setdefault(sp_.block, []).append(j)
        self.stats: dict[str, np.ndarray] = {}
        self.mats: dict[str, sp.csr_matrix] = {}

    def point_values(self) -> None:
        """Point value and count of every metric per group, overall, and for everything outside each group."""
        G = self.G
        for block, idx in self.by_block.items():
            mat, point = block_statistics(self.d, block, self.cell, self.n_cells, self.cluster, self.n_clusters)
            total = point.sum(axis=0)
            stats = np.vstack([point[:G], total[None]])  # groups + overall
            rest_stats = total[None] - stats  # everything outside the group (paired comparisons)
            for j in idx:
                s = self.specs[j]
                self.values[:, j], self.n[:, j] = s.compute(stats), s.count(stats)
                self.rest_vals[:, j], self.rest_n[:, j] = s.compute(rest_stats), s.count(rest_stats)
            self.stats[block], self.mats[block] = stats, mat

    def bootstrap(self, seed: int, confidence: float) -> None:
        """Blocks whose clusters are mostly distinct (continuous per-row statistics such as calibration, Brier, NLL;
        or any block when clusters hold many rows) cost O(clusters) per resample: they share one resample draw.
        Blocks of a few distinct cluster types (row-level counts) keep their own, cheap, multinomial draws."""
        types = {b: bootstrap_types(self.mats[b]) for b in self.by_block if b not in _CONTINUOUS_BLOCKS}
        shared = [b for b in self.by_block if b in _CONTINUOUS_BLOCKS or draws_by_index(types[b])]
        plan = [[b] for b in self.by_block if b not in shared] + ([shared] if shared else [])
        for blocks in plan:
            mat = self.mats[blocks[0]] if len(blocks) == 1 else sp.hstack([self.mats[b] for b in blocks], format="csr")
            res = bootstrap_sums(mat, n_boot=self.n_boot, rng=seed_for(seed, "block", "+".join(blocks)),
                                 reduce=functools.partial(self._reduce, blocks),
                                 types=types.get(blocks[0]) if len(blocks) == 1 else None)
            off = 0
            for b in blocks:
                idx = self.by_block[b]
                k = len(idx)
                bb = res[..., off:off + k]
                self.boot[:, :, idx] = bb
                if self.rest:
                    self.rest_boot[:, :, idx] = res[..., off + k:off + 2 * k]
                off += 2 * k if self.rest else k
                self.lo[:, idx], self.hi[:, idx] = percentile_interval(bb, self.values[:, idx], confidence=confidence)

    def _reduce(self, blocks: list[str], sums: np.ndarray) -> np.ndarray:
        """Resampled sums ``(B, width)`` -> metric values ``(B, groups + overall, metrics [+ rest])``."""
        parts, off, G = [], 0, self.G
        for b in blocks:
            wd = self.mats[b].shape[1]
            sub = [self.specs[j] for j in self.by_block[b]]
            X = sums[:, off:off + wd].reshape(sums.shape[0], self.n_cells, block_width(b, self.d))
            off += wd
            tot = X.sum(axis=1, keepdims=True)
            Y = np.concatenate([X[:, :G], tot], axis=1)
            parts.append(np.stack([s.compute(Y) for s in sub], axis=-1))
            if self.rest:
                parts.append(np.stack([s.compute(tot - Y) for s in sub], axis=-1))
        return np.concatenate(parts, axis=-1)

    def proportion_intervals(self, use_wilson: bool, confidence: float) -> None:
        """Wilson intervals for proportions of unclustered rows; clustered ones keep the bootstrap, widened to hold
        the Wilson interval at the effective n (a clustered proportion at 0 or 1 has a degenerate [0, 0] bootstrap)."""
        for block, idx in self.by_block.items():
            stats = self.stats[block]
            for j in idx:
                s = self.specs[j]
                if s.proportion is None or not (use_wilson or self.n_boot):
                    continue
                succ, trials = s.proportion(stats)
                if use_wilson:
                    self.lo[:, j], self.hi[:, j] = wilson_interval(succ, trials, confidence=confidence)
                    self.method[:, j] = "wilson"
                    continue
                with np.errstate(invalid="ignore", divide="ignore"):
                    p_hat = succ / trials
                    var_bin = p_hat * (1 - p_hat) / trials
                    bj = self.boot[:, :, j]
                    fin = np.isfinite(bj)
                    k = fin.sum(axis=0)
                    mu = np.where(fin, bj, 0).sum(axis=0) / np.maximum(k, 1)
                    var_boot = np.where(k > 1, (np.where(fin, bj - mu, 0) ** 2).sum(axis=0) / np.maximum(k, 1),
                                        np.nan)
                    deff = np.where((var_bin > 0) & np.isfinite(var_boot),
                                    var_boot / np.where(var_bin > 0, var_bin, 1), 1.0)
                    n_eff = trials / np.maximum(deff, 1.0)
                wl, wh = wilson_interval(p_hat * n_eff, n_eff, confidence=confidence)
                self.lo[:, j], self.hi[:, j] = np.fmin(self.lo[:, j], wl), np.fmax(self.hi[:, j], wh)

    def distinct_n(self, samples: np.ndarray) -> None:
        """n counts distinct samples, exactly, per metric: a sample with rows from several seeds or folds counts
        once among the rows the metric's statistic counts (e.g. recall.<c>: the group's samples of class c)."""
        counter = DistinctCounter(samples, self.cell, self.n_cells)
        G = self.G
        for j, s in enumerate(self.specs):
            per_cell, total, rest_cell = counter.counts(row_counts(s, self.d) > 0)
            self.n[:G, j], self.n[G, j] = per_cell[:G], total
            self.rest_n[:G, j], self.rest_n[G, j] = rest_cell[:G], 0

    def blank_empty(self) -> None:
        empty = self.n == 0
        self.values[empty] = self.lo[empty] = self.hi[empty] = np.nan
        self.method[empty] = "none"
