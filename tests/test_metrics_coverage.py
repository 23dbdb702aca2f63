"""Coverage: on simulated data with a known truth, 95% intervals cover it 93-97% of the time.

Seeded, so the outcome is deterministic; the band is about +-2 standard errors of a coverage estimated from
400 simulations, so a correct method passes and an interval that ignores clustering (or is too wide) fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from audit import metrics as M

SIMS = 400


def _clustered(rng, mean: float, n_clusters: int = 150):
    """Clusters of random size with a cluster-level success probability (intra-cluster correlation)."""
    size = 1 + rng.poisson(3, n_clusters)
    a = 10 * mean
    pc = rng.beta(a, 10 - a, n_clusters)  # mean `mean`, independent of size: the truth is `mean`
    cl = np.repeat(np.arange(n_clusters), size)
    y = (rng.random(len(cl)) < pc[cl]).astype(int)
    return y, cl


def test_wilson_exact_coverage_is_near_nominal():
    for n, p in [(200, 0.3), (100, 0.8), (400, 0.1)]:
        k = np.arange(n + 1)
        lo, hi = M.wilson_interval(k, n)
        cov = binom.pmf(k, n, p)[(lo <= p) & (p <= hi)].sum()
        assert 0.93 <= cov <= 0.97, (n, p, cov)


def test_wilson_simulated_coverage():
    rng = np.random.default_rng(11)
    hits = []
    for _ in range(SIMS):
        y = (rng.random(150) < 0.35).astype(int)
        rep = M.group_report(y_true=y, y_pred=np.ones(150, int), metrics="accuracy", n_boot=0)
        lo, hi = rep.interval("accuracy")
        hits.append(lo <= 0.35 <= hi)
    assert 0.93 <= np.mean(hits) <= 0.97


def test_cluster_bootstrap_coverage_for_clustered_accuracy():
    rng = np.random.default_rng(123)
    hits, naive = [], []
    for s in range(SIMS):
        y, cl = _clustered(rng, 0.7)
        ones = np.ones_like(y)
        rep = M.group_report(y_true=y, y_pred=ones, metrics="accuracy", clusters=cl, n_boot=1000, seed=s)
        lo, hi = rep.interval("accuracy")
        hits.append(lo <= 0.7 <= hi)
        lo, hi = M.wilson_interval(y.sum(), len(y))  # ignores the clustering
        naive.append(lo <= 0.7 <= hi)
    assert 0.93 <= np.mean(hits) <= 0.97, np.mean(hits)
    assert np.mean(naive) < 0.925  # the test can fail: intervals that ignore clusters undercover here


def test_cluster_bootstrap_coverage_for_generalization_gap():
    rng = np.random.default_rng(7)
    hits = []
    for s in range(SIMS):
        yi, ci = _clustered(rng, 0.8, 120)
        yo, co = _clustered(rng, 0.6, 80)
        y = np.r_[yi, yo]
        cl = np.r_[ci, co + 1000]
        held = np.r_[np.zeros(len(yi), bool), np.ones(len(yo), bool)]
        g = M.generalization_gap(y_true=y, y_pred=np.ones_like(y), held_out=held, clusters=cl, n_boot=1000, seed=s)
        hits.append(g["gap_ci_low"] <= 0.2 <= g["gap_ci_high"])
    assert 0.93 <= np.mean(hits) <= 0.97, np.mean(hits)


@pytest.mark.parametrize("metric", ["accuracy"])
def test_interval_width_shrinks_with_n(metric):
    rng = np.random.default_rng(0)
    widths = []
    for n_clusters in (50, 400):
        y, cl = _clustered(rng, 0.7, n_clusters)
        rep = M.group_report(y_true=y, y_pred=np.ones_like(y), metrics=metric, clusters=cl, n_boot=500)
        lo, hi = rep.interval(metric)
        widths.append(hi - lo)
    assert widths[1] < widths[0] * 0.6
