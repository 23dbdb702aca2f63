"""Generalization: in-domain vs out-of-domain metrics, the gap, and transfer matrices.

The gap's interval comes from one cluster bootstrap over both sides at once (a cluster appearing on both
sides is resampled together: paired), so ``gap = in - out`` and its interval come from the same resamples.
With several seeds the metric is computed per seed and averaged, inside every resample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import audit.metrics._validate as V
from audit.errors import UsageError
from audit.metrics._bootstrap import bootstrap_pvalue, bootstrap_sums, percentile_interval, seed_for, wilson_interval
from audit.metrics.encoding import SegmentationCounts, encode_clusters, prepare_data, resolve_metrics
from audit.metrics.engine import block_statistics
from audit.metrics.group_report import group_report
from audit.metrics.registry import build_metric_specs

__all__ = ["generalization_gap", "transfer_matrix"]

_MSG_SIDE = "held_out must be a boolean array with both in-domain (False) and out-of-domain (True) rows"


def _seed_mean(v: np.ndarray) -> np.ndarray:
    """Mean over the last axis (seeds), ignoring seeds without data."""
    ok = np.isfinite(v)
    k = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, np.where(ok, v, 0).sum(axis=-1) / np.maximum(k, 1), np.nan)


def _held_out_side(held_out, n: int) -> np.ndarray:
    """The held-out flag as bools; both sides must be present."""
    side = np.asarray(V.as_1d(held_out, "held_out"))
    V.check_length(side, "held_out", n)
    if side.dtype != bool:
        try:
            side = pd.Series(side).astype("boolean").to_numpy(dtype=bool, na_value=False)
        except (TypeError, ValueError):
            raise UsageError(_MSG_SIDE) from None
    if side.all() or not side.any():
        raise UsageError(_MSG_SIDE)
    return side


def generalization_gap(
    *,
    held_out,
    y_true=None,
    y_pred=None,
    y_prob=None,
    classes=None,
    segmentation: SegmentationCounts | None = None,
    metric: str = "accuracy",
    seeds=None,
    clusters=None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    proportion_ci: str = "auto",
    sample_ids=None,
) -> dict:
    """In-domain vs out-of-domain value of one metric, the gap (in - out) and cluster-bootstrap intervals.

    Parameters
    ----------
    held_out
        Boolean per row: True for out-of-domain rows (a domain never trained on), False for the in-domain twin
        (test rows from the training domains).
    y_true, y_pred, y_prob, classes, segmentation
        As in :func:`audit.metrics.group_report`.
    metric
        One metric name (``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``miou``, ...).
    seeds
        Training seed per row: the metric is computed per seed and averaged (inside every resample).
    clusters
        Resampling clusters; give the sample's ``group`` so repeated predictions of a sample stay together.
    sample_ids
        Sample identity per row: ``n_in``/``n_out`` then count distinct samples (default: rows per seed).

    Returns
    -------
    dict
        metric, in_domain, in_ci_low, in_ci_high, n_in, out_domain, out_ci_low, out_ci_high, n_out, gap,
        gap_ci_low, gap_ci_high, p (two-sided bootstrap p-value of gap = 0), seeds.
    """
    n_boot = V.check_int(n_boot, "n_boot")
    seed = V.check_int(seed, "seed")
    V.check_choice(proportion_ci, "proportion_ci", ("auto", "wilson", "bootstrap"))
    d = prepare_data(y_true=y_true, y_pred=y_pred, y_prob=y_prob, classes=classes, segmentation=segmentation)
    names = resolve_metrics([metric], d)
    specs = build_metric_specs(names, d)
    if len(specs) != 1:
        raise UsageError(f"metric must name a single metric (got {metric!r}, which expands to {len(specs)})")
    spec = specs[0]
    side = _held_out_side(held_out, d.n)
    if seeds is None:
        seed_codes, S = np.zeros(d.n, dtype=np.int64), 1
    else:
        seed_codes, uniq = pd.factorize(pd.Series(V.as_1d(seeds, "seeds")), sort=True)
        seed_codes, S = seed_codes.astype(np.int64), len(uniq)
    cluster, n_clusters = encode_clusters(clusters, d.n)
    cell = side.astype(np.int64) * S + seed_codes  # cells: (in, seed...) then (out, seed...)
    mat, point = block_statistics(d, spec.block, cell, 2 * S, cluster, n_clusters)
    pv = spec.compute(point).reshape(2, S)
    pn = spec.count(point).reshape(2, S)
    v_in, v_out = _seed_mean(pv[0]), _seed_mean(pv[1])
    out = {
        "metric": spec.name,
        "in_domain": float(v_in),
        "n_in": int(pn[0].max()),
        "out_domain": float(v_out),
        "n_out": int(pn[1].max()),
        "gap": float(v_in - v_out),
        "seeds": int(S),
    }
    if sample_ids is not None:
        ids = pd.Series(V.as_1d(sample_ids, "sample_ids"), dtype=object).astype(str)
        V.check_length(ids, "sample_ids", d.n)
        out["n_in"] = int(ids[~side].nunique())
        out["n_out"] = int(ids[side].nunique())
    nan = float("nan")
    out.update(in_ci_low=nan, in_ci_high=nan, out_ci_low=nan, out_ci_high=nan, gap_ci_low=nan, gap_ci_high=nan, p=nan)
    if n_boot:
        w = point.shape[1]

        def reduce(sums):
            v = spec.compute(sums.reshape(sums.shape[0], 2, S, w))  # (b, 2, S)
            m = _seed_mean(v)
            return np.stack([m[:, 0], m[:, 1], m[:, 0] - m[:, 1]], axis=1)

        b = bootstrap_sums(mat, n_boot=n_boot, rng=seed_for(seed, "generalization", spec.name), reduce=reduce)
        lo, hi = percentile_interval(b, np.array([v_in, v_out, v_in - v_out]), confidence=confidence)
        out.update(in_ci_low=float(lo[0]), in_ci_high=float(hi[0]), out_ci_low=float(lo[1]), out_ci_high=float(hi[1]),
                   gap_ci_low=float(lo[2]), gap_ci_high=float(hi[2]),
                   p=float(bootstrap_pvalue(b[:, 2:3], np.array([v_in - v_out]))[0]))
    wilson = proportion_ci == "wilson" or (proportion_ci == "auto" and n_clusters == d.n)
    if spec.proportion is not None and S == 1 and wilson:
        s, t = spec.proportion(point)
        lo, hi = wilson_interval(s, t, confidence=confidence)
        out.update(in_ci_low=float(lo[0]), in_ci_high=float(hi[0]), out_ci_low=float(lo[1]), out_ci_high=float(hi[1]))
    return out


def transfer_matrix(
    *,
    train_domain,
    test_domain,
    y_true=None,
    y_pred=None,
    y_prob=None,
    classes=None,
    segmentation: SegmentationCounts | None = None,
    metric: str = "accuracy",
    clusters=None,
    n_boot: int = 1000,
    min_n: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """Metric of models trained on one domain, evaluated on each domain (long form).

    Returns
    -------
    pandas.DataFrame
        train_domain, test_domain, metric, value, ci_low, ci_high, n, status (one row per observed pair;
        pivot with ``df.pivot(index="train_domain", columns="test_domain", values="value")``).
    """
    tr = pd.Series(V.as_1d(train_domain, "train_domain"), dtype=object).astype(str)
    te = pd.Series(V.as_1d(test_domain, "test_domain"), dtype=object)
    V.check_length(tr, "train_domain", len(te))
    te_str = te.where(te.notna(), None).astype(object)
    # integer pair codes keep names intact whatever characters they hold
    pairs = pd.DataFrame({"train_domain": tr, "test_domain": te_str.map(lambda v: None if v is None else str(v))})
    key, uniq = pd.factorize(pd.MultiIndex.from_frame(pairs.fillna("\x00missing")), sort=True)
    rep = group_report(y_true=y_true, y_pred=y_pred, y_prob=y_prob, classes=classes, segmentation=segmentation,
                       sensitive=pd.Categorical.from_codes(key, categories=[str(i) for i in range(len(uniq))]),
                       metrics=[metric], clusters=clusters, n_boot=n_boot, min_n=min_n, seed=seed)
    f = rep.to_frame(include_overall=False)
    idx = f["group"].astype(int).to_numpy()
    f.insert(0, "train_domain", [uniq[i][0] for i in idx])
    f.insert(1, "test_domain", [None if uniq[i][1] == "\x00missing" else uniq[i][1] for i in idx])
    return f.drop(columns=["by", "group"]).reset_index(drop=True)
