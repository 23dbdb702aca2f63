"""Crop-robust near-duplicate search: view-hash candidates (:func:`audit.profile.hashjoin.band_join`), then local
verification (:mod:`audit.profile.nearverify`), a ratio test, the repetition test and the reason for each pair.

The Hamming-radius joins live in :mod:`audit.profile.hashjoin` and are re-exported here (``hamming_pairs``,
``brute_force_pairs``, ``popcount64``, ``plan_blocks``, ``band_join``, ``BandStats``).
"""

from __future__ import annotations

import time

import numpy as np

from audit.profile.hashjoin import BandStats, band_join, brute_force_pairs, hamming_pairs, plan_blocks, popcount64

__all__ = ["near_pairs", "refine_gate", "hamming_pairs", "brute_force_pairs", "popcount64", "plan_blocks",
           "band_join", "BandStats"]

# ------------------------------------------------------------------------------------- crop-robust search
CANDIDATE_RADIUS = 14  # bits of 63 between a query view and an index view
# bench/duplicates.py: of the 14 planted copies that 24 bands never offered as candidates, 48 find 11; on 100,000
# generated scenes the candidates to verify grow by 32% (649,194 -> 858,347)
CANDIDATE_BANDS = 48
ONE_WAY_RADIUS = 10  # a candidate found in one direction only must be this close (bits)
DEFAULT_THRESHOLD = 0.8
TOP_K = 10  # candidates kept per image (its closest by view-hash distance; a pair stays if either keeps it)
MIN_GEOMETRIC_SIDE = 64  # smaller images have no detail to verify a crop or rotation on: same-frame only
SAME_FRAME_GLOBAL = 0.99  # a re-encoded / rescaled / mirrored / re-toned copy: aligned thumbnails correlate
SAME_FRAME_LOCAL = 0.5
# Below MIN_GEOMETRIC_SIDE a thumbnail is mostly interpolation: two different digits or strokes drawn alike
# correlate at 0.99 (measured on the demo: look-alikes 0.991-0.994, re-encoded copies 0.999).
SMALL_SAME_FRAME_GLOBAL = 0.997
# A geometric match must stand out (a ratio test): an image whose candidates include another partner, not itself
# a copy of the first, within this much similarity matched a repeated texture, not a copy (measured on
# bench/duplicates.py: true copies lead their next inconsistent candidate by >= 0.11, false pairs trail it).
AMBIGUITY_MARGIN = 0.1
CONSISTENT = 0.6  # two partners of one image whose own similarity reaches this are copies of each other


def refine_gate(threshold: float) -> float:
    """The refined 16x16 score below which a candidate is not verified further: 0.45 at the default threshold
    (measured: no pair stopped there reaches a similarity of 0.54, and a pair matters from ``threshold -``
    :data:`AMBIGUITY_MARGIN`, as a rival in the ratio test), lower with the threshold, never below the prefilter."""
    return max(0.3, float(threshold) - AMBIGUITY_MARGIN - 0.25)


def _nearest(a: np.ndarray, b: np.ndarray, d: np.ndarray, n: int, k: int) -> np.ndarray:
    """Mask of pairs among the ``k`` closest (by distance, then partner) of ``a`` or of ``b``."""
    keep = np.zeros(len(a), dtype=bool)
    for own, other in ((a, b), (b, a)):
        o = np.lexsort((other, d, own))
        so = own[o]
        start = np.searchsorted(so, so, side="left")
        rank = np.arange(len(so)) - start
        keep[o[rank < k]] = True
    return keep


def _geometric(res: dict) -> np.ndarray:
    """Pairs whose fitted map is not the identity (a crop, a shift or a rotation)."""
    sx, sy, tx, ty, rot = (res[k] for k in ("sx", "sy", "tx", "ty", "rot"))
    with np.errstate(invalid="ignore"):
        return ((np.abs(sx - 1) > 0.05) | (np.abs(sy - 1) > 0.05) | (np.abs(tx) > 0.03) | (np.abs(ty) > 0.03)
                | (np.abs(np.rad2deg(rot)) >= 1.5))


def near_pairs(codes: np.ndarray, thumbs: np.ndarray, rows: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD,
               widths: np.ndarray | None = None, heights: np.ndarray | None = None, seed: int = 0,
               stats: dict | None = None, workers: int = 1, progress=None) -> dict[str, np.ndarray]:
    """Verified near-duplicate pairs among ``rows`` (indices into ``codes`` / ``thumbs``).

    Candidates: every query view of an image (whole, centre, both mirrored) against every index view of the
    others (:func:`band_join`, radius :data:`CANDIDATE_RADIUS`); each owner pair keeps its closest view pair
    (one direction), and each image its :data:`TOP_K` closest partners (so homogeneous imagery, where every
    image is a candidate of every other, costs ``O(n)`` verifications). Verification:
    :func:`audit.profile.nearverify.verify_pairs` with the dataset's mean thumbnail as background. A pair is
    kept when it has at least ``MIN_REGIONS`` regions and either its local similarity is ``>= threshold``
    (both images at least :data:`MIN_GEOMETRIC_SIDE` pixels a side) or the map is the identity and the aligned
    thumbnails correlate ``>= SAME_FRAME_GLOBAL`` (re-encodings, rescales, mirror images, tone changes). A
    match that is not same-frame must also pass the ratio test (:func:`_distinct`) and the repetition test
    (:func:`audit.profile.nearverify.texture_test`: stripes or a checker shared by two scenes are no evidence).

    Returns arrays ``i, j`` (row indices), ``distance`` (bits between the matched views), ``similarity``,
    ``regions``, ``agree``, ``basis`` (``+``-joined: crop, rescale, rotate, flip, tone; ``resave`` when
    none) and ``evidence`` (``strong`` or ``verified``). ``progress(done, total)`` is called as candidate pairs are
    verified (progress lines).
    """
    from audit.io.neardesc import N_INDEX, query_columns
    from audit.profile.nearverify import MIN_REGIONS, verify_pairs

    rows = np.asarray(rows, dtype=np.int64)
    st = stats if stats is not None else {}
    out = _empty_near()
    st.update(candidates=0, collisions=0, verified=0)
    if len(rows) < 2:
        return out
    qc = np.asarray(query_columns())
    n = len(rows)
    q = codes[rows][:, qc].ravel()
    ix = codes[rows][:, :N_INDEX].ravel()
    qo, io_ = np.repeat(np.arange(n), len(qc)), np.repeat(np.arange(n), N_INDEX)
    bs = BandStats()
    t_search = time.perf_counter()
    a, b, d, qi, ii = band_join(q, qo, ix, io_, radius=CANDIDATE_RADIUS, bands=CANDIDATE_BANDS, seed=seed, stats=bs)
    # One direction per unordered pair: the closer view pair (then the lower query position).
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    o = np.lexsort((qi, d, hi, lo))
    a, b, d, qi, ii, lo, hi = (x[o] for x in (a, b, d, qi, ii, lo, hi))
    first = np.ones(len(a), dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    # Both directions (a's views find b's and b's find a's) or a close match: a chance collision of two unrelated
    # images' hashes is one-sided and far (measured: 97% of chance candidates among 20k synthetic images).
    grp = np.cumsum(first) - 1
    both = np.zeros(int(first.sum()), dtype=bool)
    np.logical_or.at(both, grp, a > b)
    fwd = np.zeros(len(both), dtype=bool)
    np.logical_or.at(fwd, grp, a < b)
    a, b, d, qi, ii = a[first], b[first], d[first], qi[first], ii[first]
    plausible = (both & fwd) | (d <= ONE_WAY_RADIUS)
    a, b, d, qi, ii = a[plausible], b[plausible], d[plausible], qi[plausible], ii[plausible]
    keep = _nearest(a, b, d, n, TOP_K)
    a, b, d, qi, ii = a[keep], b[keep], d[keep], qi[keep], ii[keep]
    st.update(candidates=int(len(a)), collisions=int(bs["collisions"]),
              search_seconds=round(time.perf_counter() - t_search, 3))
    if not len(a):
        return out
    ga, gb = rows[a], rows[b]
    present = thumbs.reshape(len(thumbs), -1)[rows]
    background = _LocalBackground(thumbs, rows, a, b, present.mean(axis=0).reshape(thumbs.shape[1:]))
    hyp, hflip = _hypotheses(codes, ga, gb)
    import threading

    done, lock = [0], threading.Lock()

    def step(k: int) -> None:  # called from the verifying threads
        with lock:
            done[0] += k
            if progress is not None:
                progress(done[0], len(ga))

    step(0)
    res = verify_pairs(thumbs, ga, gb, hyp, hflip, background=background, workers=workers, progress=step,
                       distinct_from=float(threshold), refine_gate=refine_gate(threshold))
    flip = res["flip"]
    ok, same_frame = _accept(res, ga, gb, threshold, widths, heights)
    st["verified"] = int(ok.sum())
    sel = np.flatnonzero(ok)
    if not len(sel):
        return out
    out = {"i": ga[sel], "j": gb[sel], "distance": d[sel].astype(np.int64),
           "similarity": res["similarity"][sel], "regions": res["regions"][sel], "agree": res["agree"][sel]}
    out["basis"] = _basis(res, sel, flip[sel], thumbs, ga[sel], gb[sel], widths, heights)
    from audit.profile.nearverify import DISTINCT_MIN, STRONG

    strong = (out["similarity"] >= STRONG[0]) & (out["agree"] >= STRONG[1]) & (out["regions"] >= 2 * MIN_REGIONS)
    # Mostly repetitive content (fewer than DISTINCT_MIN distinct regions) is never strong evidence of a copy.
    strong &= same_frame[sel] | (res["distinct"][sel] >= DISTINCT_MIN)
    out["evidence"] = np.where(strong, "strong", "verified").astype(object)
    return out


def _accept(res: dict, ga: np.ndarray, gb: np.ndarray, threshold: float, widths,
            heights) -> tuple[np.ndarray, np.ndarray]:
    """Which verified candidates are near duplicates, and which of them are same-frame (see :func:`near_pairs`)."""
    from audit.profile.nearverify import MIN_REGIONS, texture_test

    small = np.zeros(len(ga), dtype=bool)
    if widths is not None and heights is not None:
        side = np.minimum(np.asarray(widths, float), np.asarray(heights, float))
        small = np.nan_to_num(np.minimum(side[ga], side[gb]), nan=0) < MIN_GEOMETRIC_SIDE
    with np.errstate(invalid="ignore"):
        need = np.where(small, SMALL_SAME_FRAME_GLOBAL, SAME_FRAME_GLOBAL)
        same_frame = ~_geometric(res) & (res["global"] >= need) & (res["similarity"] >= SAME_FRAME_LOCAL)
        ok = (res["regions"] >= MIN_REGIONS) & (same_frame | (~small & (res["similarity"] >= float(threshold))))
    ok &= same_frame | texture_test(res)  # stripes under two different scenes: no copy
    ok[ok & ~same_frame] = _distinct(ga, gb, res["similarity"], np.flatnonzero(ok & ~same_frame))
    return ok, same_frame


HYPOTHESES = 2  # closest view pairs tried per direction (plus the identity)


def _hypotheses(codes: np.ndarray, ga: np.ndarray, gb: np.ndarray, k: int = HYPOTHESES,
                batch: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Starting maps (a's frame into b's) for each candidate pair: P x (2k + 1) x 5 params and P x (2k + 1) flips.

    The identity, then the ``k`` closest (query view, index view) pairs with the query from a, then the ``k``
    closest with the query from b (inverted into a's frame). A crop of a matches a's window with b's *whole*
    image; a re-encoded copy matches both whole images; which view pair is closest in bits says little about
    which map is right, so :func:`audit.profile.nearverify.verify_pairs` scores them all.
    """
    from audit.io.neardesc import N_INDEX, VIEWS, query_columns
    from audit.profile.nearverify import initial_params

    qc = np.asarray(query_columns())
    win = np.array([v[1:] for v in VIEWS])
    qwin = win[[0, qc[1], 0, qc[1]]]
    n = len(ga)
    params = np.full((n, 2 * k + 1, 5), np.nan)
    flips = np.zeros((n, 2 * k + 1), dtype=bool)
    params[:, 0] = (1.0, 1.0, 0.0, 0.0, 0.0)
    for s in range(0, n, batch):
        sl = slice(s, min(n, s + batch))
        for d, (qa, ib) in enumerate(((ga[sl], gb[sl]), (gb[sl], ga[sl]))):
            dist = popcount64(codes[qa][:, qc][:, :, None] ^ codes[ib][:, None, :N_INDEX])
            top = np.argpartition(dist.reshape(len(dist), -1), k, axis=1)[:, :k]
            qv, iv = np.unravel_index(top, dist.shape[1:])
            pr = initial_params(qwin[qv.ravel()], win[iv.ravel()]).reshape(-1, k, 5)
            fl = qv >= 2
            if d == 1:
                pr = _invert(pr, fl)
            params[sl, 1 + d * k : 1 + (d + 1) * k] = pr
            flips[sl, 1 + d * k : 1 + (d + 1) * k] = fl
    return params, flips


def _invert(p: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Maps of b's frame into a's (``x_a = tx + sx u``, ``u`` = b's coordinate, mirrored where ``flip``) as maps
    of a's frame into b's in the convention of :func:`audit.profile.nearverify.verify_pairs` (rotation 0)."""
    sx, sy, tx, ty = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    out = np.zeros_like(p)
    out[..., 0], out[..., 1] = 1 / sx, 1 / sy
    out[..., 2] = np.where(flip, 1 + tx / sx - 1 / sx, -tx / sx)
    out[..., 3] = -ty / sy
    return out


class _LocalBackground:
    """Per pair side, the mean thumbnail of the image's *other* candidates: what images like it share.

    A near-duplicate claim must rest on what two images share beyond what their look-alikes share too. Among
    homogeneous imagery (fundus photographs, X-rays) the candidates of an image are images of the same layout,
    so their mean holds the rim, the disc and the glow; subtracted, what is left to agree is the fine structure.
    Among varied images the mean is a blur that removes little. The partner itself is left out (a copy must
    not be subtracted from its original); the dataset's mean counts as :attr:`PRIOR` candidates.
    """

    CAP = 16  # candidates averaged per image
    PRIOR = 4  # the dataset's mean counts as this many candidates: a mean of two random images is no background

    def __init__(self, thumbs: np.ndarray, rows: np.ndarray, a: np.ndarray, b: np.ndarray, fallback: np.ndarray):
        self.thumbs, self.rows, self.fallback = thumbs, rows, fallback.astype(np.float32)
        src, dst = np.concatenate([a, b]), np.concatenate([b, a])
        o = np.argsort(src, kind="stable")
        self.dst = dst[o]
        counts = np.bincount(src, minlength=len(rows))
        self.start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        self.count = np.minimum(counts, self.CAP)
        self.pos = np.full(int(rows.max()) + 1 if len(rows) else 0, -1, dtype=np.int64)
        self.pos[rows] = np.arange(len(rows))

    def _mean(self, own: np.ndarray, partner: np.ndarray) -> np.ndarray:
        x, y = self.pos[own], self.pos[partner]
        c = self.count[x]
        # A padded P x CAP gather summed along its axis (fast) rather than a reduceat over ragged runs (slow):
        # padding and the partner itself point at thumbnail 0, whose share is subtracted afterwards.
        col = np.arange(self.CAP)
        valid = col[None, :] < c[:, None]
        nb = self.dst[np.minimum(self.start[x][:, None] + col[None, :], max(len(self.dst) - 1, 0))]
        valid &= nb != y[:, None]
        idx = np.where(valid, self.rows[nb], 0)
        n = valid.sum(axis=1)
        g = self.thumbs[idx].sum(axis=1, dtype=np.uint16).astype(np.float32)
        g -= (self.CAP - n)[:, None, None].astype(np.float32) * self.thumbs[0].astype(np.float32)
        k0 = self.PRIOR
        out = (g + k0 * self.fallback) / (n[:, None, None] + k0).astype(np.float32)
        # Project out, rather than subtract: remove only as much of the background as the image holds (least
        # squares), so a blur of unrelated candidates takes little away while a shared layout goes entirely.
        t = self.thumbs[self.rows[x]].astype(np.float32)
        dt = t - t.mean(axis=(1, 2), keepdims=True)
        db = out - out.mean(axis=(1, 2), keepdims=True)
        beta = (dt * db).sum(axis=(1, 2)) / np.maximum((db * db).sum(axis=(1, 2)), 1e-6)
        return out * np.clip(beta, 0.0, 1.0)[:, None, None]

    def __call__(self, ia: np.ndarray, ib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._mean(ia, ib), self._mean(ib, ia)


def _distinct(ga: np.ndarray, gb: np.ndarray, sim: np.ndarray, sel: np.ndarray, *,
              margin: float = AMBIGUITY_MARGIN, consistent: float = CONSISTENT) -> np.ndarray:
    """For each pair in ``sel``: whether it leads every inconsistent alternative by ``margin`` (a ratio test).

    An alternative of pair (a, b) is another verified candidate (a, c) or (b, c) whose similarity is within
    ``margin`` of the pair's; it is consistent (a third copy, no objection) when c and the other image form a
    candidate of their own at ``consistent`` or more. Cost: a sort of the candidates and a loop over ``sel``.
    """
    out = np.ones(len(sel), dtype=bool)
    fin = np.isfinite(sim)
    if not len(sel) or fin.sum() < 2:
        return out
    own = np.concatenate([ga[fin], gb[fin]])
    oth = np.concatenate([gb[fin], ga[fin]])
    ss = np.concatenate([sim[fin], sim[fin]])
    o = np.argsort(own, kind="stable")
    own, oth, ss = own[o], oth[o], ss[o]
    big = np.int64(max(int(ga.max()), int(gb.max())) + 1)
    strong = fin & (np.nan_to_num(sim, nan=-1.0) >= consistent)
    keys = np.unique(np.minimum(ga[strong], gb[strong]) * big + np.maximum(ga[strong], gb[strong]))
    for k, p in enumerate(sel):
        for x, y in ((ga[p], gb[p]), (gb[p], ga[p])):
            lo, hi = np.searchsorted(own, x, "left"), np.searchsorted(own, x, "right")
            c = oth[lo:hi][(oth[lo:hi] != y) & (ss[lo:hi] >= sim[p] - margin)]
            if len(c):
                key = np.minimum(c, y) * big + np.maximum(c, y)
                pos = np.minimum(np.searchsorted(keys, key), max(len(keys) - 1, 0))
                if not len(keys) or not (keys[pos] == key).all():
                    out[k] = False
                    break
    return out


def _empty_near() -> dict[str, np.ndarray]:
    e = np.empty(0, np.int64)
    return {"i": e, "j": e, "distance": e, "similarity": np.empty(0), "regions": e, "agree": np.empty(0),
            "basis": np.empty(0, object), "evidence": np.empty(0, object)}


def _basis(res: dict, sel: np.ndarray, flip: np.ndarray, thumbs: np.ndarray, ga: np.ndarray, gb: np.ndarray,
           widths, heights) -> np.ndarray:
    """Why each verified pair matched, from the fitted map and the two thumbnails."""
    sx, sy, tx, ty, rot = (res[k][sel] for k in ("sx", "sy", "tx", "ty", "rot"))

    def share(t, s):  # of image b covered by a's frame, and of a inside b, along one axis
        ov = np.clip(np.minimum(1, t + s) - np.maximum(0, t), 0, None)
        return ov, ov / np.maximum(s, 1e-9)

    bx, ax = share(tx, sx)
    by, ay = share(ty, sy)
    crop = np.minimum(bx * by, ax * ay) < 0.9
    rescale = np.zeros(len(sel), dtype=bool)
    if widths is not None and heights is not None:
        wa, wb = np.asarray(widths, float)[ga], np.asarray(widths, float)[gb]
        ha, hb = np.asarray(heights, float)[ga], np.asarray(heights, float)[gb]
        with np.errstate(invalid="ignore", divide="ignore"):
            fx, fy = wa / (sx * wb), ha / (sy * hb)
        rescale = (np.abs(np.log(fx)) > np.log(1.15)) | (np.abs(np.log(fy)) > np.log(1.15))
        rescale = np.nan_to_num(rescale, nan=0).astype(bool)
    rotate = np.abs(np.rad2deg(rot)) >= 1.5
    ta = thumbs[ga].reshape(len(ga), -1).astype(np.float64)
    tb = thumbs[gb].reshape(len(gb), -1).astype(np.float64)
    ratio = (ta.std(axis=1) + 1) / (tb.std(axis=1) + 1)
    tone = (np.abs(ta.mean(axis=1) - tb.mean(axis=1)) > 8) | (ratio < 0.9) | (ratio > 1 / 0.9)
    tone &= ~crop  # a crop changes the thumbnail statistics by itself
    parts = [(crop, "crop"), (rescale, "rescale"), (rotate, "rotate"), (flip, "flip"), (tone, "tone")]
    out = []
    for k in range(len(sel)):
        names = [name for m, name in parts if m[k]]
        out.append("+".join(names) if names else "resave")
    return np.asarray(out, dtype=object)
