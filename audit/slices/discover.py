"""Discovery on one half of the held-out predictions; the rule a slice is.

:func:`split_halves` deals the rows of one (model, fold) into a discovery and a confirmation half, stratified by
(label, correct) and, when a group column is given, whole groups at a time (a group never straddles the halves).

:func:`discover` is error-aware clustering in the spirit of Domino: embeddings reduced by PCA (fitted on at most
``fit_rows`` rows, applied in chunks, so a million rows cost seconds), scaled to unit average variance, with the
error indicator and the confidence appended at weight ``error_weight``; MiniBatchKMeans groups the rows. Each
cluster becomes a *rule* that uses the embedding only (never the outcome, so it can be applied to rows whose
correctness it must not peek at): the centroid of the cluster's rows in PCA space and a radius (a quantile of
their distances). Candidates are the rules whose ball, on the discovery half, holds at least ``min_n`` rows and
an error rate well above the rest's (a one-sided two-proportion z above ``min_z``); overlapping candidates are
pruned, the strongest kept.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Projection", "Rule", "split_halves", "fit_projection", "discover", "stable_seed"]

_CHUNK = 65536


def stable_seed(seed: int, *parts) -> int:
    """A seed for one (model, fold, ...) derived from ``seed`` the same way in every process."""
    return (int(seed) * 1_000_003 + zlib.crc32("\x00".join(map(str, parts)).encode())) % (2**32)


def split_halves(correct: np.ndarray, labels: np.ndarray, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """``True`` = discovery half. Stratified by (label, correct); whole groups when ``groups`` is given."""
    rng = np.random.default_rng(seed)
    n = len(correct)
    strata = pd.factorize(pd.Series(labels).astype(str) + "\x00" + pd.Series(correct).astype(str))[0]
    disc = np.zeros(n, dtype=bool)
    if groups is None:
        for s in np.unique(strata):
            rows = np.flatnonzero(strata == s)
            rows = rows[rng.permutation(len(rows))]
            # alternate which half gets the odd row so small strata do not all lean one way
            take = (len(rows) + int(rng.integers(0, 2))) // 2
            disc[rows[:take]] = True
        return disc
    # groups: each group's dominant stratum decides where it is balanced; within a stratum, groups in random
    # order are dealt to the half with fewer rows so far (greedy balance by size)
    g_codes, g_uni = pd.factorize(pd.Series(groups).astype(str))
    size = np.bincount(g_codes, minlength=len(g_uni))
    dom = pd.DataFrame({"g": g_codes, "s": strata}).groupby("g")["s"].agg(lambda v: v.value_counts().index[0])
    half_of = np.zeros(len(g_uni), dtype=bool)
    for s in np.unique(dom.to_numpy()):
        gs = dom.index[dom.to_numpy() == s].to_numpy()
        gs = gs[rng.permutation(len(gs))]
        counts = [0, 0]
        for g in gs:
            h = 0 if counts[0] < counts[1] or (counts[0] == counts[1] and rng.random() < 0.5) else 1
            half_of[g] = h == 0
            counts[h] += int(size[g])
    return half_of[g_codes]


@dataclass
class Projection:
    """Centering, PCA components and scale: embedding -> the space the rules live in."""

    mean: np.ndarray
    components: np.ndarray  # [d, D]
    scale: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), len(self.components)), dtype=np.float32)
        for s in range(0, len(x), _CHUNK):
            blk = np.asarray(x[s:s + _CHUNK], dtype=np.float32) - self.mean
            out[s:s + _CHUNK] = blk @ self.components.T / self.scale
        return out


def fit_projection(x: np.ndarray, seed: int, dims: int = 32, fit_rows: int = 50_000) -> Projection:
    """PCA to ``dims`` dimensions fitted on at most ``fit_rows`` rows; unit average variance afterwards."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), fit_rows, replace=False)) if len(x) > fit_rows else np.arange(len(x))
    sample = np.asarray(x[rows], dtype=np.float64)
    mean = sample.mean(0)
    centered = sample - mean
    d = max(1, min(dims, centered.shape[1], len(sample) - 1))
    # exact SVD of the (small) sample: deterministic, no randomized solver
    _, sv, vt = np.linalg.svd(centered, full_matrices=False)
    comps = vt[:d].astype(np.float32)
    var = (sv[:d] ** 2).sum() / max(len(sample) - 1, 1)
    scale = float(np.sqrt(var / d)) if var > 0 else 1.0
    return Projection(mean=mean.astype(np.float32), components=comps, scale=scale)


@dataclass
class Rule:
    """A slice: the rows whose projected embedding lies inside any of its balls (``centroids[i]``, ``radii[i]``)."""

    centroids: np.ndarray  # [m, d]
    radii: np.ndarray  # [m]

    def distances(self, z: np.ndarray) -> np.ndarray:
        """Per row, the smallest distance to a centroid in units of that ball's radius (<= 1: inside)."""
        out = np.full(len(z), np.inf, dtype=np.float32)
        for c, r in zip(self.centroids, self.radii, strict=True):
            for s in range(0, len(z), _CHUNK):
                blk = z[s:s + _CHUNK]
                d = np.sqrt(((blk - c) ** 2).sum(1)) / max(float(r), 1e-12)
                np.minimum(out[s:s + _CHUNK], d, out=out[s:s + _CHUNK])
        return out

    def members(self, z: np.ndarray) -> np.ndarray:
        return self.distances(z) <= 1.0

    def union(self, other: Rule) -> Rule:
        return Rule(np.vstack([self.centroids, other.centroids]), np.concatenate([self.radii, other.radii]))


def _z_worse(k_in: int, n_in: int, k_out: int, n_out: int) -> float:
    """One-sided two-proportion z: how much higher the error rate inside is (k = errors)."""
    if n_in == 0 or n_out == 0:
        return 0.0
    p = (k_in + k_out) / (n_in + n_out)
    se = np.sqrt(p * (1 - p) * (1 / n_in + 1 / n_out))
    return float((k_in / n_in - k_out / n_out) / se) if se > 0 else 0.0


def _balls(z, err, lab, k, min_n, radius_q):
    """One ball per error-heavy cluster: the centroid of the cluster's errors, the radius holding radius_q of them."""
    out = []
    for c in range(k):
        rows = lab == c
        if rows.sum() < max(5, min_n // 2) or err[rows].mean() <= err.mean():
            continue
        core = rows & err if (rows & err).sum() >= 5 else rows
        centroid = z[core].mean(0)
        radius = float(np.quantile(np.sqrt(((z[core] - centroid) ** 2).sum(1)), radius_q))
        if radius > 0:
            out.append(Rule(centroid[None, :].astype(np.float32), np.array([radius], dtype=np.float32)))
    return out


def _offset(rule: Rule, z: np.ndarray, labels: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """How the ball sits relative to the centre of its dominant label's rows (the shift a failure mode shares)."""
    vals, counts = np.unique(labels[inside], return_counts=True)
    dom = vals[counts.argmax()]
    return rule.centroids[0] - z[labels == dom].mean(0)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def _merge(balls, z, err, labels, min_cos):
    """Balls whose offsets from their label centres point the same way are one failure mode: merged (strongest
    first) as long as the union keeps at least 80% of the weaker part's error rate."""
    groups: list[tuple[Rule, np.ndarray]] = []
    for b in balls:
        inside = b.members(z)
        off, rate = _offset(b, z, labels, inside), err[inside].mean()
        for j, (rule, g_off) in enumerate(groups):
            if _cos(off, g_off) < min_cos:
                continue
            u = rule.union(b)
            if err[u.members(z)].mean() >= 0.8 * min(rate, err[rule.members(z)].mean()):
                groups[j] = (u, g_off)
                break
        else:
            groups.append((b, off))
    return [r for r, _ in groups]


def discover(z: np.ndarray, correct: np.ndarray, confidence: np.ndarray, labels: np.ndarray | None = None, *,
             seed: int, k: int | None = None, min_n: int = 20, min_z: float = 2.5, error_weight: float = 3.0,
             radius_q: float = 0.9, max_slices: int = 5, min_cos: float = 0.6) -> list[tuple[Rule, dict]]:
    """Candidate rules on the discovery half (see the module docstring); ``(rule, discovery stats)`` each."""
    from sklearn.cluster import MiniBatchKMeans

    n = len(z)
    err = ~np.asarray(correct, dtype=bool)
    labels = np.zeros(n, dtype=int) if labels is None else pd.factorize(pd.Series(labels).astype(str))[0]
    if n < 2 * min_n or err.sum() < 3 or err.all():
        return []
    conf = np.nan_to_num(np.asarray(confidence, dtype=np.float32), nan=0.5)
    # error-aware features: unit-variance embedding dims plus error and confidence at error_weight each
    feats = np.hstack([z, error_weight * err[:, None].astype(np.float32), error_weight * (conf[:, None] - 0.5)])
    k = k or int(np.clip(n // (4 * min_n), 2, 32))
    km = MiniBatchKMeans(n_clusters=k, random_state=seed % (2**31), batch_size=4096, n_init=3, max_iter=100)
    lab = km.fit_predict(feats)
    n_err = int(err.sum())

    def z_of(inside):
        n_in, k_in = int(inside.sum()), int(err[inside].sum())
        return _z_worse(k_in, n_in, n_err - k_in, n - n_in)

    # only balls that err clearly more than the rest, strongest first (a merged rule starts from its clearest part)
    balls = [b for b in _balls(z, err, lab, k, min_n, radius_q) if z_of(b.members(z)) >= min(2.0, min_z)]
    balls.sort(key=lambda b: -err[b.members(z)].mean())
    cands = []
    for rule in _merge(balls, z, err, labels, min_cos):
        inside = rule.members(z)
        n_in, k_in = int(inside.sum()), int(err[inside].sum())
        if n_in < min_n or n_in == n:
            continue
        zstat = _z_worse(k_in, n_in, n_err - k_in, n - n_in)
        if zstat < min_z:
            continue
        stats = {"n": n_in, "error_rate": k_in / n_in, "rest_error_rate": (n_err - k_in) / (n - n_in), "z": zstat,
                 "balls": len(rule.radii)}
        cands.append((zstat, rule, inside, stats))
    cands.sort(key=lambda t: -t[0])
    kept: list[tuple[Rule, dict]] = []
    kept_masks: list[np.ndarray] = []
    for _, rule, inside, stats in cands:
        if any((inside & m).sum() / max(inside.sum(), 1) > 0.5 for m in kept_masks):
            continue  # mostly rows of a stronger candidate
        kept.append((rule, stats))
        kept_masks.append(inside)
        if len(kept) >= max_slices:
            break
    return kept
