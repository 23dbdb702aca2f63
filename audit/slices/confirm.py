"""Confirmation on the other half: the slice's accuracy, the rest's, the gap with a bootstrap interval.

``gap = rest accuracy - slice accuracy`` (positive: the model is worse inside the slice). The bootstrap resamples
rows, or whole groups when a group column is given (cluster bootstrap: rows of one group are not independent).
Row resampling only needs the four counts (in/out x correct/wrong), drawn as one multinomial per replicate, so it
costs the same for a thousand rows as for a million. The p-value is one-sided, from the bootstrap standard error
(``z = gap / se``); q-values come from :func:`audit.core.intervals.benjamini_hochberg` over every candidate.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["confirm_gap"]


def _gap(counts: np.ndarray) -> np.ndarray:
    """counts [..., 4] = (in correct, in wrong, out correct, out wrong) -> rest acc - slice acc."""
    n_in = counts[..., 0] + counts[..., 1]
    n_out = counts[..., 2] + counts[..., 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts[..., 2] / n_out - counts[..., 0] / n_in


def confirm_gap(inside: np.ndarray, correct: np.ndarray, *, seed: int, groups: np.ndarray | None = None,
                n_boot: int = 2000, confidence: float = 0.95) -> dict:
    """Accuracy inside and outside, the gap, its percentile interval and a one-sided p-value."""
    inside = np.asarray(inside, dtype=bool)
    correct = np.asarray(correct, dtype=bool)
    cat = np.where(inside, 0, 2) + (~correct).astype(int)
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    res = {"n": n_in, "n_rest": n_out, "accuracy": float("nan"), "rest_accuracy": float("nan"),
           "gap": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p": float("nan"),
           "bootstrap": "groups" if groups is not None else "rows"}
    if n_in == 0 or n_out == 0:
        return res
    counts = np.bincount(cat, minlength=4).astype(np.float64)
    res.update(accuracy=counts[0] / n_in, rest_accuracy=counts[2] / n_out, gap=float(_gap(counts)))
    rng = np.random.default_rng(seed)
    if groups is None:
        boot = rng.multinomial(len(cat), counts / counts.sum(), size=n_boot).astype(np.float64)
    else:
        codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]
        g = int(codes.max()) + 1
        per = np.zeros((g, 4))
        np.add.at(per, (codes, cat), 1.0)
        boot = np.empty((n_boot, 4))
        step = max(1, 2_000_000 // g)
        for s in range(0, n_boot, step):
            b = min(step, n_boot - s)
            w = rng.multinomial(g, np.full(g, 1.0 / g), size=b).astype(np.float64)
            boot[s:s + b] = w @ per
    gaps = _gap(boot)
    gaps = gaps[np.isfinite(gaps)]
    if len(gaps) < n_boot // 2:
        return res  # the slice vanished from most replicates: no interval worth reporting
    a = (1 - confidence) / 2
    lo, hi = np.quantile(gaps, [a, 1 - a])
    se = float(gaps.std(ddof=1))
    if se > 0:
        p = 0.5 * math.erfc(res["gap"] / se / math.sqrt(2))
    else:
        p = 0.0 if res["gap"] > 0 else 1.0
    res.update(ci_low=float(lo), ci_high=float(hi), p=float(p))
    return res
