"""One (model, protocol, fold, seed) end to end on arrays: halves, discovery, confirmation. No run directory."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audit.slices.confirm import confirm_gap
from audit.slices.discover import Projection, Rule, discover, fit_projection, split_halves, stable_seed

__all__ = ["SliceConfig", "Candidate", "slice_fold", "finalize"]


@dataclass(frozen=True, kw_only=True)
class SliceConfig:
    """Settings of slice discovery (``audit slices --help`` names them)."""

    seed: int = 0
    min_n: int = 20  # rows a slice needs in each half
    dims: int = 32  # PCA dimensions
    k: int | None = None  # clusters per fold (default: rows / (4 min_n), 2..32)
    error_weight: float = 3.0
    min_z: float = 2.5  # discovery: one-sided z of the error-rate excess a candidate needs
    max_slices: int = 5  # candidates per fold
    n_boot: int = 2000
    q_bar: float = 0.05
    # a confirmed slice's finding is critical only with strong evidence (q < critical_q, interval low bound above
    # critical_gap, n_confirm >= 2 min_n, not explained by a labeled column); any other confirmed slice: warning
    critical_q: float = 0.01
    critical_gap: float = 0.10
    group: str | None = None  # cluster column (default: the manifest's "group" when present)
    embeddings: str | None = None  # a user's parquet (sample_id + vectors) instead of the stored ones
    roles: tuple[str, ...] = ("test",)


@dataclass
class Candidate:
    """A candidate slice of one fold: its rule, the discovery statistics and the confirmation result."""

    rule: Rule
    projection: Projection
    discovery: dict
    confirmation: dict
    inside: np.ndarray  # membership of every row of the fold (both halves)
    distance: np.ndarray
    q: float = float("nan")
    confirmed: bool = False
    extra: dict = field(default_factory=dict)


def slice_fold(vectors: np.ndarray, correct: np.ndarray, confidence: np.ndarray, labels: np.ndarray,
               cfg: SliceConfig, *, key: tuple = (), groups: np.ndarray | None = None
               ) -> tuple[np.ndarray, list[Candidate]]:
    """``(discovery mask, candidates)`` for one fold's rows; deterministic for ``cfg.seed`` and ``key``."""
    seed = stable_seed(cfg.seed, *key)
    correct = np.asarray(correct, dtype=bool)
    disc = split_halves(correct, labels, seed, groups)
    conf_half = ~disc
    if disc.sum() < 2 * cfg.min_n or conf_half.sum() < 2 * cfg.min_n:
        return disc, []
    proj = fit_projection(vectors[disc], seed, dims=cfg.dims)
    z = proj.transform(vectors)
    found = discover(z[disc], correct[disc], np.asarray(confidence)[disc], np.asarray(labels)[disc], seed=seed,
                     k=cfg.k, min_n=cfg.min_n, min_z=cfg.min_z, error_weight=cfg.error_weight,
                     max_slices=cfg.max_slices)
    out = []
    for j, (rule, stats) in enumerate(found):
        dist = rule.distances(z)
        inside = dist <= 1.0
        g = None if groups is None else np.asarray(groups)[conf_half]
        res = confirm_gap(inside[conf_half], correct[conf_half], seed=seed + 7919 * (j + 1), groups=g,
                          n_boot=cfg.n_boot)
        out.append(Candidate(rule=rule, projection=proj, discovery=stats, confirmation=res, inside=inside,
                             distance=dist))
    return disc, out


def finalize(cands: list[Candidate], cfg: SliceConfig) -> None:
    """BH q-values across every candidate of the run; ``confirmed`` = q < q_bar, ci_low > 0, n >= min_n."""
    from audit.core.intervals import benjamini_hochberg

    if not cands:
        return
    q = benjamini_hochberg([c.confirmation["p"] for c in cands])
    for c, qi in zip(cands, q, strict=True):
        c.q = float(qi)
        r = c.confirmation
        c.confirmed = bool(np.isfinite(qi) and qi < cfg.q_bar and r["ci_low"] > 0 and r["n"] >= cfg.min_n)
