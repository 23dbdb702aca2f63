"""Local verification of near-duplicate candidates on the scan's 64x64 grey thumbnails.

A candidate pair comes with a geometric hypothesis from the views whose hashes matched (a window of one image
corresponds to a window of the other, possibly mirrored). The hypothesis becomes an affine map (scale and
offset per axis, a small rotation) from the first image's frame into the second's, refined by coordinate
descent on the normalized correlation of band-passed (difference of Gaussians) thumbnails at 16x16. The
evidence is then *local*: the first image is cut into 4x4 regions of 16x16 pixels; each region's band-passed
content is correlated with the warped second image (best of 5 one-pixel shifts), regions outside the
other image or without texture in both do not count. ``similarity`` is the mean region correlation; a pair is
a near duplicate when at least :data:`MIN_REGIONS` regions count and ``similarity`` reaches the threshold.

Band-passing removes the layout and colour that homogeneous imagery shares (a fundus photograph's disc,
surround and optic-disc glow, an X-ray's body outline): what must agree is the fine structure in most regions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["verify_pairs", "texture_test", "MIN_REGIONS", "STRONG", "initial_params"]

MIN_REGIONS = 4
STRONG = (0.8, 0.75)  # similarity and share of agreeing regions (corr >= 0.5) of "strong" evidence
_GRID = 4
_TEXTURE = 1.0  # band-pass standard deviation (grey levels) below which a region is flat
_DOG = (0.8, 3.0)
ROUNDS = 2  # coordinate-descent rounds at 16x16, each halving the steps (first: 4% scale, 3% shift, 2.5 degrees)
_COARSE_STEPS = (0.04, 0.04, 0.03, 0.03, float(np.deg2rad(2.5)))
_FINE_STEPS = (0.015, 0.015, 0.01, 0.01, float(np.deg2rad(0.6)))
# A pair whose local similarity lands in [RESCUE_FLOOR, threshold) gets a second, finer fit (32x32): the 16x16
# fit leaves a crop a few percent off in scale, which at 64x64 shifts a region's content by a pixel or two.
RESCUE_FLOOR = 0.5
# Repetitive content (stripes, a checker, a grid, a brick wall): a region that matches *itself* displaced by 3-8
# pixels of the 64 px thumbnail at this correlation says nothing about which image it came from.
REPETITIVE = 0.75
# What the distinct (not repetitive) regions of a geometric match must show (measured on the false pairs of a
# 100,000-scene profile, scenes sharing a stripe background, against the copies of bench/duplicates.py):
DISTINCT_MIN = 2  # distinct regions needed to judge; with fewer, the whole similarity must reach TEXTURE_ONLY
DISTINCT_MEAN = 0.85  # their mean correlation, or
DISTINCT_TOP2 = 0.88  # the mean of their best two (a copy's distinct regions agree as a copy's do)
TEXTURE_ONLY = 0.97
_SELF_SHIFTS = tuple((dx, dy) for dy in range(0, 9, 2) for dx in range(-8, 9, 2)
                     if dx * dx + dy * dy >= 9 and (dy > 0 or dx > 0))  # a half plane: +d and -d both repeat


def initial_params(wq: np.ndarray, wi: np.ndarray) -> np.ndarray:
    """Affine parameters ``(sx, sy, tx, ty, rot)`` mapping the query window ``wq`` onto the index window ``wi``.

    Windows are rows ``(x0, y0, w, h)`` in normalized coordinates; ``x_b = tx + sx * x_a`` per axis.
    """
    sx, sy = wi[:, 2] / wq[:, 2], wi[:, 3] / wq[:, 3]
    return np.stack([sx, sy, wi[:, 0] - wq[:, 0] * sx, wi[:, 1] - wq[:, 1] * sy, np.zeros(len(wq))], axis=1)


@lru_cache(maxsize=8)
def _dog_matrices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The two Gaussian filters of :data:`_DOG` as n x n matrices (``scipy.ndimage`` semantics, mode "nearest"):
    a separable filter of a stack is then two batched matrix products, much faster than per-image filtering."""
    from scipy.ndimage import gaussian_filter1d

    eye = np.eye(n, dtype=np.float64)
    return tuple(gaussian_filter1d(eye, s, axis=0, mode="nearest").astype(np.float32) for s in _DOG)


def _bandpass(thumbs: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    g = np.asarray(thumbs, dtype=np.float32)
    if background is not None:
        bg = np.asarray(background, dtype=np.float32)
        g = g - (bg if bg.ndim == 3 else bg[None])
    k1, k2 = _dog_matrices(g.shape[1])
    return k1 @ g @ k1.T - k2 @ g @ k2.T


def _coords(params: np.ndarray, flip: np.ndarray, n: int, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in image b (P x m x m) of the pixel centres of image a (every ``step``-th pixel)."""
    c = ((np.arange(0, n, step) + step / 2) / n).astype(np.float32)
    ya, xa = np.meshgrid(c, c, indexing="ij")
    xa = np.where(flip[:, None, None], 1 - xa[None], xa[None])
    ya = np.broadcast_to(ya[None], xa.shape)
    sx, sy, tx, ty, rot = (params[:, k, None, None].astype(np.float32) for k in range(5))
    cr, sr = np.cos(rot), np.sin(rot)
    xr = 0.5 + cr * (xa - 0.5) - sr * (ya - 0.5)
    yr = 0.5 + sr * (xa - 0.5) + cr * (ya - 0.5)
    return (tx + sx * xr) * n - 0.5, (ty + sy * yr) * n - 0.5


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of ``img`` (P x n x n) at (x, y) (P x m x m) and the inside mask."""
    n = img.shape[1]
    inside = (x >= -0.5) & (x <= n - 0.5) & (y >= -0.5) & (y <= n - 0.5)
    x = np.clip(x, 0, n - 1.001)
    y = np.clip(y, 0, n - 1.001)
    x0, y0 = x.astype(np.intp), y.astype(np.intp)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    flat = img.reshape(len(img), -1)
    i00 = (y0 * n + x0).reshape(len(img), -1)

    def at(off):
        return np.take_along_axis(flat, i00 + off, axis=1).reshape(x.shape)

    top = at(0) * (1 - fx) + at(1) * fx
    bottom = at(n) * (1 - fx) + at(n + 1) * fx
    return top * (1 - fy) + bottom * fy, inside


def _corr(a: np.ndarray, b: np.ndarray, w: np.ndarray, axes) -> np.ndarray:
    """Weighted Pearson correlation over ``axes`` (0 where either side is flat)."""
    sw = np.maximum(w.sum(axis=axes), 1e-9)
    ma, mb = (a * w).sum(axis=axes) / sw, (b * w).sum(axis=axes) / sw
    ex = tuple(slice(None) if k not in axes else None for k in range(a.ndim))
    da, db = (a - ma[ex]) * w, (b - mb[ex]) * w
    num = (da * db).sum(axis=axes)
    den = np.sqrt((da * da).sum(axis=axes) * (db * db).sum(axis=axes))
    return np.where(den > 1e-6, num / np.maximum(den, 1e-12), 0.0)


def _pooled(bpa: np.ndarray, m: int = 16) -> np.ndarray:
    step = bpa.shape[1] // m
    return bpa.reshape(len(bpa), m, step, m, step).mean(axis=(2, 4))


def _score(bpa: np.ndarray, bpb: np.ndarray, p: np.ndarray, flip: np.ndarray,
           ref: np.ndarray | None = None, m: int = 16) -> np.ndarray:
    """m x m band-pass correlation of a with b warped by ``p``, damped by the share of a inside b."""
    n = bpa.shape[1]
    ref = _pooled(bpa, m) if ref is None else ref
    x, y = _coords(p, flip, n, n // m)
    v, inside = _sample(bpb, x, y)
    return _corr(ref, v, inside.astype(np.float32), (1, 2)) * np.sqrt(inside.mean(axis=(1, 2)))


def _step(p: np.ndarray, k: int, d: float, rows=slice(None)) -> np.ndarray:
    """``p`` with parameter ``k`` moved by ``d`` (for ``rows``); a scale step keeps where a's centre lands in b
    (scaling about the corner would move the whole map: scale and shift are then one move, not two)."""
    t = p.copy()
    t[rows, k] += d
    if k < 2:
        t[rows, k + 2] -= 0.5 * d
    return t


def _descend(score, params: np.ndarray, deltas: np.ndarray, rounds: int, extend: int) -> tuple[np.ndarray, np.ndarray]:
    """Pattern search on ``score`` (vectorized over pairs): per round and parameter, one step each way, and up to
    ``extend`` more in a direction that keeps improving; the steps halve each round."""
    best = score(params)
    deltas = np.asarray(deltas, dtype=np.float64)
    for _ in range(rounds):
        for k in range(5):
            for sign in (-1.0, 1.0):
                go = np.ones(len(params), dtype=bool)
                for _e in range(1 + extend):
                    trial = _step(params, k, sign * deltas[k], go)
                    s = score(trial)
                    go = go & (s > best)
                    if not go.any():
                        break
                    params = np.where(go[:, None], trial, params)
                    best = np.where(go, s, best)
        deltas = deltas / 2
    return params, best


def _refine(bpa: np.ndarray, bpb: np.ndarray, params: np.ndarray,
            flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate descent on (sx, sy, tx, ty, rot) of the 16x16 :func:`_score`: the refined parameters and their
    score (first steps 4% scale, 3% shift, 2.5 degrees; :data:`ROUNDS` rounds)."""
    ref = _pooled(bpa)
    return _descend(lambda p: _score(bpa, bpb, p, flip, ref), params, _COARSE_STEPS, ROUNDS, 0)


def _refine_fine(bpa: np.ndarray, bpb: np.ndarray, params: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """The map refined once more on the 32x32 score, in steps of 1.5% scale, 1% shift and 0.6 degrees: at 16x16 a
    3% scale error costs little, at 64x64 (the local evidence) it shifts a region's content by a pixel or two."""
    ref = _pooled(bpa, 32)
    return _descend(lambda p: _score(bpa, bpb, p, flip, ref, 32), params, _FINE_STEPS, 2, 2)[0]


def verify_pairs(thumbs: np.ndarray, ia: np.ndarray, ib: np.ndarray, params: np.ndarray, flip: np.ndarray,
                 *, background: np.ndarray | None = None, prefilter: float = 0.3, refine_gate: float = -np.inf,
                 distinct_from: float = np.inf,
                 batch: int = 1024, workers: int = 1, progress=None) -> dict[str, np.ndarray]:
    """Pick each pair's best hypothesis, refine it and measure local agreement.

    Parameters
    ----------
    thumbs
        N x 64 x 64 uint8 grey thumbnails.
    ia, ib
        Row indices of the two images of each pair.
    params, flip
        Initial ``(sx, sy, tx, ty, rot)`` (see :func:`initial_params`) and whether a is mirrored: P x 5 and P,
        or several hypotheses per pair, P x H x 5 and P x H (NaN rows are unused). Each pair starts from the
        hypothesis that scores highest at 16x16: the hashes of a copy match several view pairs, and coordinate
        descent cannot walk a 12% scale error back, so the start matters.
    background
        The dataset's mean thumbnail (S x S), or a function ``(ia, ib) -> (background of a, background of b)``
        giving one per pair side (P x S x S each; see :func:`audit.profile.neardup.near_pairs`: the mean of the
        image's other candidates), subtracted before band-passing: structure that look-alike images share (a
        fundus camera's circular rim, the optic disc's glow) is no evidence that two images are copies.
    prefilter
        Pairs whose band-pass correlation at the best initial hypothesis (16x16) is below this are rejected
        without refinement (similarity NaN, 0 regions). At 0.3, 70% of the candidates of bench/duplicates.py
        stop here and 152 of its 160 planted copies are found (0.15: 30% stop, 153 found, 2.7x the time).
    refine_gate
        Pairs whose 16x16 score after refinement is below this stop there too (similarity NaN, 0 regions): on
        bench/duplicates.py, at 0.45, 48% of the refined pairs stop, the highest similarity among them 0.53.
    distinct_from
        Pairs whose similarity reaches this also get ``distinct``, ``distinct_similarity`` and ``distinct_top2``
        (see :func:`texture_test`; 0 / NaN elsewhere): how their regions that do not repeat themselves agree.
    workers
        Threads verifying batches of pairs at once (numpy releases the GIL in the array work); results do not
        depend on it.
    progress
        Called with the number of pairs of each batch when it is done (progress lines); None: nothing.

    Returns
    -------
    dict of arrays (one value per pair): ``similarity`` (mean region correlation, NaN without regions),
    ``regions`` (regions that count), ``agree`` (share of them with correlation >= 0.5), ``global`` (Pearson
    correlation of the aligned raw thumbnails at 32x32, where a inside b), ``distinct``,
    ``distinct_similarity`` and ``distinct_top2`` (see ``distinct_from``), the refined ``sx, sy, tx, ty, rot``
    and ``flip`` (of the chosen hypothesis).
    """
    params = np.asarray(params, dtype=np.float64)
    flip = np.asarray(flip, dtype=bool)
    if params.ndim == 2:
        params, flip = params[:, None], flip[:, None]
    out = {k: np.full(len(ia), np.nan) for k in ("similarity", "agree", "global", "sx", "sy", "tx", "ty", "rot",
                                                 "distinct_similarity", "distinct_top2")}
    out["regions"] = np.zeros(len(ia), dtype=np.int64)
    out["distinct"] = np.zeros(len(ia), dtype=np.int64)
    out["flip"] = np.zeros(len(ia), dtype=bool)
    step = min(batch, 256) if callable(background) else batch  # per-pair backgrounds gather up to 16 thumbnails

    def one(s: int) -> None:
        _one(s)
        if progress is not None:
            progress(min(step, len(ia) - s))

    def _one(s: int) -> None:  # writes its own rows of ``out`` only
        sl = np.arange(s, min(s + step, len(ia)))
        bpa, bpb = _batch_bandpass(thumbs, ia[sl], ib[sl], background)
        _verify_batch(out, sl, (thumbs, ia, ib), (bpa, bpb), params[sl], flip[sl],
                      (prefilter, refine_gate, distinct_from))

    starts = range(0, len(ia), step)
    if workers > 1 and len(starts) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=int(workers)) as pool:
            list(pool.map(one, starts))
    else:
        for s in starts:
            one(s)
    return out


def _batch_bandpass(thumbs: np.ndarray, ia: np.ndarray, ib: np.ndarray, background) -> tuple[np.ndarray, np.ndarray]:
    """Band-passed thumbnails of both sides of a batch of pairs (each image once with a shared background)."""
    if callable(background):
        bga, bgb = background(ia, ib)
        return _bandpass(thumbs[ia], bga), _bandpass(thumbs[ib], bgb)
    uniq, inv = np.unique(np.concatenate([ia, ib]), return_inverse=True)
    bp = _bandpass(thumbs[uniq], background)
    return bp[inv[: len(ia)]], bp[inv[len(ia) :]]


def _verify_batch(out: dict, sl: np.ndarray, pairs: tuple, images: tuple, params: np.ndarray,
                  flip: np.ndarray, gates: tuple[float, float, float]) -> None:
    """One batch of :func:`verify_pairs` (rows ``sl`` of ``out``; ``pairs`` = ``(thumbs, ia, ib)``; ``images`` =
    both sides band-passed): best start, prefilter, refinement, gate, local evidence (a finer fit for the pairs
    just under ``gates[2]``, :func:`_rescue`), and the distinct regions' agreement of the pairs reaching
    ``gates[2]``. Raw thumbnails are gathered only for the pairs that get that far."""
    prefilter, refine_gate, distinct_from = gates
    bpa, bpb = images
    p, fl, s0 = _best_start(bpa, bpb, params, flip)
    sl, bpa, bpb, p, fl = (x[s0 >= prefilter] for x in (sl, bpa, bpb, p, fl))
    if not len(sl):
        return
    p, s1 = _refine(bpa, bpb, p, fl)
    sl, bpa, bpb, p, fl = (x[s1 >= refine_gate] for x in (sl, bpa, bpb, p, fl))
    if not len(sl):
        return
    local = _local(bpa, bpb, p, fl)
    p, local = _rescue(local, bpa, bpb, p, fl, distinct_from)
    sim, nreg, agree, best, valid = local
    out["similarity"][sl], out["regions"][sl], out["agree"][sl] = sim, nreg, agree
    hi = np.flatnonzero(np.nan_to_num(sim, nan=-1.0) >= distinct_from)
    if len(hi):
        stats = _distinct_stats(bpa[hi], best[hi], valid[hi])
        for name, v in zip(("distinct", "distinct_similarity", "distinct_top2"), stats, strict=True):
            out[name][sl[hi]] = v
    thumbs, ia, ib = pairs
    out["global"][sl] = _global(thumbs[ia[sl]], thumbs[ib[sl]], p, fl)
    out["flip"][sl] = fl
    for k, name in enumerate(("sx", "sy", "tx", "ty", "rot")):
        out[name][sl] = p[:, k]


def _rescue(local: tuple, bpa: np.ndarray, bpb: np.ndarray, p: np.ndarray, fl: np.ndarray, below: float) -> tuple:
    """The pairs whose similarity is in [:data:`RESCUE_FLOOR`, ``below``) fitted once more (:func:`_refine_fine`);
    each keeps the better of its two local results. Returns ``(params, local)`` with the rescued rows replaced.

    Only pairs under the threshold get it: a pair above is accepted as it is, and a finer fit of every pair
    would raise the image's other candidates too, which the ratio test would then count against a true copy."""
    sim = np.nan_to_num(local[0], nan=-1.0)
    redo = np.flatnonzero((sim >= RESCUE_FLOOR) & (sim < below))
    if not len(redo):
        return p, local
    p2 = _refine_fine(bpa[redo], bpb[redo], p[redo], fl[redo])
    again = _local(bpa[redo], bpb[redo], p2, fl[redo])
    up = np.nan_to_num(again[0], nan=-1.0) > sim[redo]
    if not up.any():
        return p, local
    rows = redo[up]
    p = p.copy()
    p[rows] = p2[up]
    local = tuple(v.copy() for v in local)
    for v, w in zip(local, again, strict=True):
        v[rows] = w[up]
    return p, local


def _best_start(bpa: np.ndarray, bpb: np.ndarray, params: np.ndarray,
                flip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair, the hypothesis (of H) with the highest 16x16 score: ``(params P x 5, flip P, score P)``."""
    n, h = params.shape[:2]
    scores = np.full((n, h), -np.inf)
    ref = _pooled(bpa)  # once: the same for every hypothesis
    for k in range(h):
        ok = np.isfinite(params[:, k]).all(axis=1)
        if ok.any():
            ix = slice(None) if ok.all() else ok  # a slice: no copy of the batch's band-passed images
            scores[ix, k] = _score(bpa[ix], bpb[ix], params[ix, k], flip[ix, k], ref[ix])
    best = scores.argmax(axis=1)
    r = np.arange(n)
    return params[r, best].copy(), flip[r, best], scores[r, best]


def _global(ta: np.ndarray, tb: np.ndarray, params: np.ndarray, flip: np.ndarray) -> np.ndarray:
    n = ta.shape[1]
    a = np.asarray(ta, np.float32).reshape(len(ta), n // 2, 2, n // 2, 2).mean(axis=(2, 4))
    x, y = _coords(params, flip, n, 2)
    v, inside = _sample(np.asarray(tb, np.float32), x, y)
    return _corr(a, v, inside.astype(np.float32), (1, 2))


_CROSS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def _region_best(bpa: np.ndarray, warped: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """P x G x G: per region of ``bpa`` (its one-pixel border dropped), its best correlation with ``warped`` over
    the one-pixel shifts of :data:`_CROSS`."""
    n = bpa.shape[1]
    r = n // _GRID
    a = bpa[:, 1 : n - 1, 1 : n - 1]
    best = np.full((len(bpa), _GRID, _GRID), -1.0)
    for dy, dx in _CROSS:
        b = warped[:, 1 + dy : n - 1 + dy, 1 + dx : n - 1 + dx]
        w = inside[:, 1 + dy : n - 1 + dy, 1 + dx : n - 1 + dx].astype(np.float32)
        best = np.maximum(best, _corr(*(_regions(t, r) for t in (a, b, w)), axes=(3, 4)))
    return best


def _local(bpa: np.ndarray, bpb: np.ndarray, params: np.ndarray, flip: np.ndarray):
    n = bpa.shape[1]
    x, y = _coords(params, flip, n)
    warped, inside = _sample(bpb, x, y)
    r = n // _GRID
    best = _region_best(bpa, warped, inside)
    core = slice(1, n - 1)
    a = bpa[:, core, core]
    ins = _regions(inside[:, core, core].astype(np.float32), r).mean(axis=(3, 4))
    sa = _regions(a, r).std(axis=(3, 4))
    sb = _regions(warped[:, core, core], r).std(axis=(3, 4))
    valid = (ins >= 0.8) & ((sa >= _TEXTURE) | (sb >= _TEXTURE))
    nreg = valid.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(nreg > 0, (best * valid).sum(axis=(1, 2)) / np.maximum(nreg, 1), np.nan)
        agree = np.where(nreg > 0, ((best >= 0.5) & valid).sum(axis=(1, 2)) / np.maximum(nreg, 1), np.nan)
    return sim, nreg, agree, best, valid


def _regions(t: np.ndarray, r: int) -> np.ndarray:
    """P x (n-2) x (n-2) -> P x G x G x r' x r' blocks (the one-pixel border is dropped evenly)."""
    m = t.shape[1]
    rr = m // _GRID
    t = t[:, : rr * _GRID, : rr * _GRID]
    return t.reshape(len(t), _GRID, rr, _GRID, rr).transpose(0, 1, 3, 2, 4)


def self_similarity(bp: np.ndarray) -> np.ndarray:
    """P x G x G: per region of band-passed ``bp`` (P x n x n), its best correlation with the same image displaced
    by 3-8 pixels (:data:`_SELF_SHIFTS`, both ways; over the part of the region whose displaced window is inside
    the image, at least half of it): near 1 for stripes, checkers and grids, low for an edge, a corner or a blob.

    Per shift only the cross term needs a pass over the pixels (the product with the zero-padded, displaced image,
    summed per region by two small matrix products); every other sum comes from summed-area tables."""
    n = bp.shape[1]
    a = np.ascontiguousarray(bp[:, 1 : n - 1, 1 : n - 1], dtype=np.float32)
    p, m = a.shape[:2]
    r, pad = m // _GRID, 8
    a60 = a[:, : r * _GRID, : r * _GRID]
    ones = np.kron(np.eye(_GRID, dtype=np.float32), np.ones((1, r), np.float32))  # G x (G r) region indicator
    ap = np.zeros((p, m + 2 * pad, m + 2 * pad), np.float32)
    ap[:, pad : pad + m, pad : pad + m] = a
    sat = np.zeros((2, p, m + 1, m + 1), np.float64)  # summed-area tables of a and a**2
    sat[0, :, 1:, 1:] = a.astype(np.float64).cumsum(1).cumsum(2)
    sat[1, :, 1:, 1:] = (a.astype(np.float64) ** 2).cumsum(1).cumsum(2)

    def box(y0, y1, x0, x1):  # sums of a and a**2 over rectangles (G x G corner arrays): 2 x P x G x G
        return (sat[:, :, y1[:, None], x1[None, :]] - sat[:, :, y0[:, None], x1[None, :]]
                - sat[:, :, y1[:, None], x0[None, :]] + sat[:, :, y0[:, None], x0[None, :]])

    g = np.arange(_GRID) * r
    best = np.full((p, _GRID, _GRID), -1.0)
    for dx, dy in _SELF_SHIFTS:
        for sx, sy in ((dx, dy), (-dx, -dy)):
            by0, by1 = np.clip(g + sy, 0, m), np.clip(g + sy + r, 0, m)  # the displaced windows, clipped
            bx0, bx1 = np.clip(g + sx, 0, m), np.clip(g + sx + r, 0, m)
            cnt = ((by1 - by0)[:, None] * (bx1 - bx0)[None, :]).astype(np.float64)
            sb, sbb = box(by0, by1, bx0, bx1)
            sa, saa = box(by0 - sy, by1 - sy, bx0 - sx, bx1 - sx)  # the matching part of each region
            blk = ap[:, pad + sy : pad + sy + r * _GRID, pad + sx : pad + sx + r * _GRID]
            sab = (ones @ (a60 * blk) @ ones.T).astype(np.float64)  # region sums by two small matrix products
            k = np.maximum(cnt, 1.0)
            cov = sab - sa * sb / k
            den = np.sqrt(np.maximum(saa - sa * sa / k, 0) * np.maximum(sbb - sb * sb / k, 0))
            c = np.where(den > 1e-6, cov / np.maximum(den, 1e-12), 0.0)
            best = np.maximum(best, np.where(cnt >= 0.5 * r * r, c, -1.0))
    return best


def _distinct_stats(bpa: np.ndarray, best: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, ...]:
    """``distinct`` (counting regions of a that are not repetitive, :data:`REPETITIVE`), ``distinct_similarity``
    (their mean correlation with b, NaN without any) and ``distinct_top2`` (their best two's mean, NaN with fewer
    than two), from :func:`_local`'s per-region ``best`` and ``valid``."""
    dist = valid & (self_similarity(bpa) < REPETITIVE)
    nd = dist.sum(axis=(1, 2))
    ranked = np.sort(np.where(dist, best, -np.inf).reshape(len(nd), -1), axis=1)
    with np.errstate(invalid="ignore"):
        mean = np.where(nd > 0, (best * dist).sum(axis=(1, 2)) / np.maximum(nd, 1), np.nan)
        top2 = np.where(nd >= 2, ranked[:, -2:].mean(axis=1), np.nan)
    return nd, mean, top2


def texture_test(res: dict[str, np.ndarray]) -> np.ndarray:
    """Whether each geometric match of :func:`verify_pairs`'s result survives repetitive content (stripes,
    checkers: the same texture under two different scenes correlates everywhere it shows): its distinct regions
    agree as a copy's do, or, with fewer than :data:`DISTINCT_MIN` of them, the whole ``similarity`` reaches
    :data:`TEXTURE_ONLY`."""
    with np.errstate(invalid="ignore"):
        judged = (res["distinct_similarity"] >= DISTINCT_MEAN) | (res["distinct_top2"] >= DISTINCT_TOP2)
        return np.where(res["distinct"] >= DISTINCT_MIN, judged, res["similarity"] >= TEXTURE_ONLY)
