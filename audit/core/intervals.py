"""Intervals and multiple testing shared by profile, metrics, check and the test helpers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtri

__all__ = ["Z95", "wilson_interval", "benjamini_hochberg"]

Z95 = float(ndtri(0.975))


def wilson_interval(successes, trials, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions (vectorized).

    Parameters
    ----------
    successes, trials
        Arrays (or scalars) of counts; ``trials == 0`` gives NaN bounds.
    confidence
        Two-sided coverage, 0.95 by default.

    Returns
    -------
    (low, high)
        Arrays of the broadcast shape.

    >>> lo, hi = wilson_interval(8, 10)
    >>> round(float(lo), 3), round(float(hi), 3)
    (0.49, 0.943)
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = float(ndtri(0.5 + confidence / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    # Exact endpoints at the boundaries (floating error can leave 1e-17 outside [p, p]).
    low = np.where((s == 0) & (n > 0), 0.0, low)
    high = np.where((s == n) & (n > 0), 1.0, high)
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def benjamini_hochberg(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (``scipy.stats.false_discovery_control``); NaN p-values stay NaN and do not
    count towards the number of tests.

    >>> benjamini_hochberg([0.01, float("nan"), 0.04, 0.03]).round(3).tolist()
    [0.03, nan, 0.04, 0.04]
    """
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = np.minimum(false_discovery_control(np.clip(p[ok], 0.0, 1.0), method="bh"), 1.0)
    return q
