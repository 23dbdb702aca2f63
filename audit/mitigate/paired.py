"""Paired re-audit: a mitigated model against the baseline on the very same held-out images.

Both prediction tables are joined on ``(sample_id, fold, seed)`` (test rows only; a key present in one and not the
other is an error: the comparison is only valid on identical images). Every metric is a function of per-row
sufficient statistics (correct / total, per-class confusion counts, pixel counts), summed per bootstrap cluster
(the manifest's ``group`` when there is one, else the image). One seeded matrix of cluster multiplicities
``(n_boot x n_clusters)`` resamples *both* models at once, so the difference's interval reflects only how the two
models disagree, not how hard the images are: on correlated predictions it is much narrower than two separate
intervals (``paired=False`` draws the two sides independently, for comparison).

Metrics (``by`` says over what): ``ood_accuracy`` (held-out test rows pooled), ``in_domain_accuracy``, ``gap``
(in-domain minus held-out), ``worst_group_accuracy`` (minimum over the groups of ``by`` with ``n >= min_n``,
held-out rows), and over all test rows per attribute the fairness gaps of :mod:`audit.metrics.fairness`
(``dp_diff``, ``eop_diff``, ``eo_diff``: worst class; two classes: the positive, last class). Segmentation: the
same with ``miou`` and ``dice`` (pooled pixel counts) in place of accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from audit.core.directions import lower_is_better
from audit.errors import InputError
from audit.metrics._bootstrap import bootstrap_pvalue, percentile_interval, seed_for

__all__ = ["KEY", "pair_predictions", "paired_metrics", "SUMMARY_COLUMNS", "verdict"]

KEY = ["sample_id", "fold", "seed"]
SUMMARY_COLUMNS = ["method", "metric", "by", "baseline", "mitigated", "diff", "ci_low", "ci_high", "n", "p", "verdict"]
_BLOCK = 250  # resamples per block (bounds memory)


def pair_predictions(base: pd.DataFrame, mit: pd.DataFrame) -> pd.DataFrame:
    """Test rows of both tables side by side (suffixes ``_b``/``_m``); raises when the images differ."""
    cols = [c for c in base.columns if c not in KEY]
    b = base[base["role"].astype(str) == "test"].copy()
    m = mit[mit["role"].astype(str) == "test"].copy()
    for t in (b, m):
        t["sample_id"] = t["sample_id"].astype(str)
        t["fold"] = t["fold"].astype(str)
        t["seed"] = t["seed"].astype(np.int64)
    kb, km = pd.MultiIndex.from_frame(b[KEY]), pd.MultiIndex.from_frame(m[KEY])
    if kb.has_duplicates or km.has_duplicates:
        raise InputError("a predictions table repeats (sample_id, fold, seed) rows; cannot pair them")
    only_b, only_m = kb.difference(km), km.difference(kb)
    if len(only_b) or len(only_m):
        ex = list(only_b[:2]) + list(only_m[:2])
        raise InputError(f"the mitigated predictions are not on the baseline's held-out images "
                         f"({len(only_b)} rows only in the baseline, {len(only_m)} only in the variant; e.g. {ex})")
    out = b.merge(m[KEY + [c for c in cols if c in m.columns]], on=KEY, suffixes=("_b", "_m"), validate="1:1")
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- statistics
@dataclass
class _Stats:
    """Per-row sufficient statistics of one model: ``cols`` names the columns of ``x`` (rows x d)."""

    x: np.ndarray
    cols: dict[str, slice]


def _classify_stats(p: pd.DataFrame, sfx: str, spec: dict) -> _Stats:
    yt, yp = p[f"y_true{sfx}"].astype(str).to_numpy(), p[f"y_pred{sfx}"].astype(str).to_numpy()
    ok = (yt == yp).astype(float)
    ood, ind = spec["ood"], spec["ind"]
    blocks, cols, at = [], {}, 0

    def add(name, arr):
        nonlocal at
        arr = np.asarray(arr, dtype=float).reshape(len(p), -1)
        blocks.append(arr)
        cols[name] = slice(at, at + arr.shape[1])
        at += arr.shape[1]

    add("ood", np.c_[ok * ood, ood])
    add("ind", np.c_[ok * ind, ind])
    for by, codes, n_g in spec["groups"]:
        onehot = np.zeros((len(p), n_g))
        sel = ood & (codes >= 0)
        onehot[np.flatnonzero(sel), codes[sel]] = 1.0
        add(f"g:{by}", np.c_[onehot * ok[:, None], onehot])
    classes = spec["classes"]
    ti = pd.Categorical(yt, categories=classes).codes
    pi = pd.Categorical(yp, categories=classes).codes
    for by, codes, n_g in spec["fair"]:
        k = len(classes)
        # per (group, class): n, predicted c, true c, true c & predicted c, not c & predicted c
        feats = np.zeros((len(p), n_g, k, 5))
        r = np.flatnonzero(codes >= 0)
        g = codes[r]
        feats[r, g, :, 0] = 1.0
        good = pi[r] >= 0
        feats[r[good], g[good], pi[r][good], 1] = 1.0
        gt = ti[r] >= 0
        feats[r[gt], g[gt], ti[r][gt], 2] = 1.0
        hit = good & (pi[r] == ti[r])
        feats[r[hit], g[hit], pi[r][hit], 3] = 1.0
        fp = good & (pi[r] != ti[r])
        feats[r[fp], g[fp], pi[r][fp], 4] = 1.0
        add(f"f:{by}", feats.reshape(len(p), -1))
    return _Stats(np.hstack(blocks), cols)


def _segment_stats(p: pd.DataFrame, sfx: str, spec: dict) -> _Stats:
    k = spec["n_classes"]
    inter = np.column_stack([p[f"inter_{c}{sfx}"].to_numpy(float) for c in range(k)])
    union = np.column_stack([p[f"union_{c}{sfx}"].to_numpy(float) for c in range(k)])
    pred = np.column_stack([p[f"pred_{c}{sfx}"].to_numpy(float) for c in range(k)])
    true = np.column_stack([p[f"true_{c}{sfx}"].to_numpy(float) for c in range(k)])
    px = np.hstack([inter, union, pred + true])  # (rows, 3k)
    ood, ind = spec["ood"][:, None], spec["ind"][:, None]
    blocks, cols, at = [px * ood, px * ind], {"ood": slice(0, 3 * k), "ind": slice(3 * k, 6 * k)}, 6 * k
    for by, codes, n_g in spec["groups"]:
        onehot = np.zeros((len(p), n_g))
        sel = spec["ood"] & (codes >= 0)
        onehot[np.flatnonzero(sel), codes[sel]] = 1.0
        arr = (onehot[:, :, None] * px[:, None, :]).reshape(len(p), -1)
        blocks.append(np.c_[arr, onehot])
        cols[f"g:{by}"] = slice(at, at + arr.shape[1] + n_g)
        at += arr.shape[1] + n_g
    return _Stats(np.hstack(blocks), cols)


# ---------------------------------------------------------------------------------------------- metric functions
def _acc(t: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(t[..., 1] > 0, t[..., 0] / t[..., 1], np.nan)


def _seg(t: np.ndarray, k: int, which: str) -> np.ndarray:
    inter, union, both = t[..., :k], t[..., k:2 * k], t[..., 2 * k:3 * k]
    with np.errstate(invalid="ignore", divide="ignore"):
        v = inter / union if which == "miou" else 2 * inter / both
    return _nanreduce(np.nanmean, np.where(union > 0, v, np.nan), -1)


def _nanreduce(fn, v: np.ndarray, axis: int) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(v, axis=axis)


def _worst(t: np.ndarray, per_group, min_n: int, n_point: np.ndarray) -> np.ndarray:
    """Min over groups whose point-estimate size is >= min_n (the same groups in every resample)."""
    vals = per_group(t)  # (..., n_g)
    elig = n_point >= min_n
    if not elig.any():
        return np.full(vals.shape[:-1], np.nan)
    return _nanreduce(np.nanmin, np.where(elig, vals, np.nan), -1)


def _acc_slice(t: np.ndarray, sl: slice) -> np.ndarray:
    return _acc(t[..., sl])


def _gap_acc(t: np.ndarray, ind: slice, ood: slice) -> np.ndarray:
    return _acc(t[..., ind]) - _acc(t[..., ood])


def _group_acc(t: np.ndarray, sl: slice, n_g: int) -> np.ndarray:
    x = t[..., sl]
    return _acc(np.stack([x[..., :n_g], x[..., n_g:]], axis=-1))


def _group_seg(t: np.ndarray, sl: slice, n_g: int, k: int, which: str) -> np.ndarray:
    x = t[..., sl][..., :-n_g]
    return _seg(x.reshape(x.shape[:-1] + (n_g, 3 * k)), k, which)


def _seg_slice(t: np.ndarray, sl: slice, k: int, which: str) -> np.ndarray:
    return _seg(t[..., sl], k, which)


def _gap_seg(t: np.ndarray, ind: slice, ood: slice, k: int, which: str) -> np.ndarray:
    return _seg(t[..., ind], k, which) - _seg(t[..., ood], k, which)


def _fair_slice(t: np.ndarray, sl: slice, n_g: int, k: int, metric: str, min_n: int, point: np.ndarray):
    return _fair(t[..., sl], n_g, k, metric, min_n, point)


def _fair(t: np.ndarray, n_g: int, k: int, metric: str, min_n: int, point: np.ndarray) -> np.ndarray:
    f = t.reshape(t.shape[:-1] + (n_g, k, 5))
    fp0 = point.reshape(n_g, k, 5)
    n, sel, pos, tp, fpos = (f[..., i] for i in range(5))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_sel, tpr, fpr = sel / n, tp / pos, fpos / (n - pos)
    ok_n = fp0[..., 0] >= min_n
    ok_pos, ok_neg = ok_n & (fp0[..., 2] >= min_n), ok_n & ((fp0[..., 0] - fp0[..., 2]) >= min_n)

    def spread(r, ok):  # over groups -> (..., k)
        # a difference needs two eligible groups (at the point estimate, the same in every resample); with fewer
        # it is undefined, NaN as in audit.metrics.fairness, never 0 (a 0 would read as parity)
        r = np.where(ok, r, np.nan)
        d = _nanreduce(np.nanmax, r, -2) - _nanreduce(np.nanmin, r, -2)
        return np.where(ok.sum(axis=-2) >= 2, d, np.nan)

    if metric == "dp_diff":
        per = spread(rate_sel, ok_n)
    elif metric == "eop_diff":
        per = spread(tpr, ok_pos)
    else:  # equalized odds: the larger of the TPR and FPR differences, undefined when either is
        t_d, f_d = spread(tpr, ok_pos), spread(fpr, ok_neg)
        per = np.where(np.isnan(t_d) | np.isnan(f_d), np.nan, np.fmax(t_d, f_d))
    per = per[..., -1:] if k == 2 else per
    return _nanreduce(np.nanmax, per, -1)


def _metric_fns(task: str, spec: dict, stats: _Stats, point: np.ndarray, min_n: int) -> list[tuple]:
    """``(metric, by, n, fn(T) -> value)`` for every summary row."""
    from functools import partial

    c, out = stats.cols, []
    n_ood, n_ind = int(spec["ood"].sum()), int(spec["ind"].sum())
    if task == "classify":
        out += [("ood_accuracy", "held_out", n_ood, partial(_acc_slice, sl=c["ood"])),
                ("in_domain_accuracy", "in_domain", n_ind, partial(_acc_slice, sl=c["ind"])),
                ("gap", "in_domain - held_out", n_ood + n_ind, partial(_gap_acc, ind=c["ind"], ood=c["ood"]))]
        for by, _, n_g in spec["groups"]:
            sl = c[f"g:{by}"]
            n_pt = point[sl][n_g:]
            per = partial(_group_acc, sl=sl, n_g=n_g)
            out.append(("worst_group_accuracy", by, int(n_pt.sum()),
                        partial(_worst, per_group=per, min_n=min_n, n_point=n_pt)))
        k = len(spec["classes"])
        for by, _, n_g in spec["fair"]:
            sl = c[f"f:{by}"]
            pt = point[sl]
            n_rows = int(pt.reshape(n_g, k, 5)[:, 0, 0].sum())
            for m in ("dp_diff", "eop_diff", "eo_diff"):
                out.append((m, by, n_rows, partial(_fair_slice, sl=sl, n_g=n_g, k=k, metric=m, min_n=min_n, point=pt)))
        return out
    k = spec["n_classes"]
    for name in ("miou", "dice"):
        out += [(f"ood_{name}", "held_out", n_ood, partial(_seg_slice, sl=c["ood"], k=k, which=name)),
                (f"gap_{name}", "in_domain - held_out", n_ood + n_ind,
                 partial(_gap_seg, ind=c["ind"], ood=c["ood"], k=k, which=name))]
        for by, _, n_g in spec["groups"]:
            sl = c[f"g:{by}"]
            n_pt = point[sl][-n_g:]
            per = partial(_group_seg, sl=sl, n_g=n_g, k=k, which=name)
            out.append((f"worst_group_{name}", by, int(n_pt.sum()),
                        partial(_worst, per_group=per, min_n=min_n, n_point=n_pt)))
    return out


# ---------------------------------------------------------------------------------------------- the comparison
def _clusters(keys: np.ndarray) -> tuple[np.ndarray, int]:
    codes, uniq = pd.factorize(pd.Series(keys).astype(str))
    return codes, len(uniq)


def _sum_by_cluster(x: np.ndarray, codes: np.ndarray, n_c: int) -> np.ndarray:
    out = np.zeros((n_c, x.shape[1]))
    np.add.at(out, codes, x)
    return out


def paired_metrics(paired: pd.DataFrame, spec: dict, *, task: str, n_boot: int = 1000, seed: int = 0,
                   min_n: int = 30, paired_draws: bool = True) -> pd.DataFrame:
    """One row per metric: ``metric, by, baseline, mitigated, diff, ci_low, ci_high, n, p``.

    ``spec``: ``ood``/``ind`` (bool per row), ``groups``/``fair`` (lists of ``(by, codes, n_groups)``, codes -1
    = no group), ``cluster`` (per-row cluster key), ``classes`` or ``n_classes``."""
    make = _classify_stats if task == "classify" else _segment_stats
    sb, sm = make(paired, "_b", spec), make(paired, "_m", spec)
    codes, n_c = _clusters(spec["cluster"])
    cb, cm = _sum_by_cluster(sb.x, codes, n_c), _sum_by_cluster(sm.x, codes, n_c)
    pb, pm = cb.sum(0), cm.sum(0)
    fns = _metric_fns(task, spec, sb, pb, min_n)
    rng = seed_for(seed, "mitigate", "paired" if paired_draws else "unpaired")
    boot_b, boot_m = [], []
    done = 0
    while done < n_boot:
        nb = min(_BLOCK, n_boot - done)
        w = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=nb).astype(float)
        w2 = w if paired_draws else rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=nb).astype(float)
        tb, tm = w @ cb, w2 @ cm
        boot_b.append(np.stack([f(tb) for *_, f in fns], axis=-1))
        boot_m.append(np.stack([f(tm) for *_, f in fns], axis=-1))
        done += nb
    rows = []
    bb = np.concatenate(boot_b) if boot_b else np.zeros((0, len(fns)))
    bm = np.concatenate(boot_m) if boot_m else np.zeros((0, len(fns)))
    for j, (metric, by, n, f) in enumerate(fns):
        vb, vm = float(f(pb)), float(f(pm))
        d = vm - vb
        lo, hi = percentile_interval(bm[:, j:j + 1] - bb[:, j:j + 1], np.array([d]))
        p = bootstrap_pvalue(bm[:, j:j + 1] - bb[:, j:j + 1], np.array([d]))
        rows.append({"metric": metric, "by": by, "baseline": vb, "mitigated": vm, "diff": d, "ci_low": float(lo[0]),
                     "ci_high": float(hi[0]), "n": int(n), "p": float(p[0])})
    out = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c not in ("method", "verdict")])
    out["verdict"] = [verdict(r.metric, r.ci_low, r.ci_high, r.baseline, r.mitigated) for r in out.itertuples()]
    return out


def verdict(metric: str, ci_low: float, ci_high: float, baseline: float = 0.0, mitigated: float = 0.0) -> str:
    """``helps`` / ``hurts`` when the paired interval excludes 0 (in the metric's better / worse direction),
    ``not measurable`` when the metric itself is undefined for either model (NaN ``baseline`` or ``mitigated``:
    e.g. a fairness gap with fewer than two groups of ``min_n``), else ``no measurable effect`` (also when there
    is no interval)."""
    if not (np.isfinite(baseline) and np.isfinite(mitigated)):
        return "not measurable"
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)) or ci_low <= 0 <= ci_high:
        return "no measurable effect"
    better_up = not lower_is_better(metric)
    up = ci_low > 0
    return "helps" if up == better_up else "hurts"
