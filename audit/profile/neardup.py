"""All pairs of 64-bit hashes within a Hamming radius, without an O(n^2) loop: multi-index hashing in numpy.

The 64 bits are split into ``m`` disjoint blocks. If two hashes differ in at most ``r`` bits, at least one
block differs in at most ``floor(r / m)`` bits (pigeonhole), so every true pair is found by looking up, for
each block, the buckets of the block value with up to ``floor(r / m)`` bits flipped. Buckets are a dense
table (``2**bits`` counts + start offsets over the block-sorted order), so a probe of all ``n`` hashes is a
few vectorized gathers; candidates are verified with a popcount of the XOR. ``m`` is chosen by a cost model
(probes x n + expected candidates) so the index stays fast from 10k to millions of hashes. A pair is kept
only at the first block that certifies it, so no global de-duplication is needed.

:func:`brute_force_pairs` is the O(n^2) reference (chunked, vectorized) used by tests and the benchmark.
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np

__all__ = ["hamming_pairs", "brute_force_pairs", "popcount64", "plan_blocks", "band_join", "BandStats"]

_MAX_CANDIDATES = 4_000_000  # per vectorized batch: bounds memory
_DENSE_BITS = 26  # blocks up to this width use a dense bucket table


def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64."""
    x = np.asarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))  # pragma: no cover - numpy < 2
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def _as_u64(hashes) -> np.ndarray:
    h = np.asarray(hashes)
    if h.dtype == np.int64:
        return h.view(np.uint64)
    return h.astype(np.uint64)


def plan_blocks(n: int, radius: int, nbits: int = 64) -> tuple[int, int]:
    """Choose the number of blocks ``m`` (and flips per block) minimizing probes + expected candidates."""
    best = None
    for m in range(1, 17):  # more blocks than radius + 1 is valid too (then f = 0)
        b = nbits / m
        if b > _DENSE_BITS:  # the planner only picks blocks with dense bucket tables
            continue
        f = radius // m
        probes = sum(comb(int(np.ceil(b)), k) for k in range(f + 1))
        cands = n * probes * n / 2.0 ** int(b)
        cost = m * (probes * n * 3 + cands)
        if best is None or cost < best[0]:
            best = (cost, m, f)
    assert best is not None  # m = 16 always qualifies
    return best[1], best[2]


def hamming_pairs(hashes, radius: int, *, blocks: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All index pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``radius`` bits.

    Parameters
    ----------
    hashes
        uint64 or int64 array of 64-bit hashes.
    radius
        Maximum Hamming distance (0-63).
    blocks
        Number of blocks (default: chosen by :func:`plan_blocks`).

    Returns
    -------
    i, j, distance
        int64 arrays, sorted by (i, j).
    """
    h = _as_u64(hashes)
    n = len(h)
    radius = int(radius)
    if radius < 0 or radius >= 64:
        raise ValueError(f"radius must be in [0, 63], got {radius}")
    empty = (np.empty(0, np.int64),) * 3
    if n < 2:
        return empty
    if blocks is None:
        m, f = plan_blocks(n, radius)
    else:
        m, f = int(blocks), radius // int(blocks)
    bounds = np.linspace(0, 64, m + 1).round().astype(int)
    widths = np.diff(bounds)
    keys_all = []
    for s, w in zip(bounds[:-1], widths, strict=True):
        keys_all.append((h >> np.uint64(s)) & np.uint64((1 << int(w)) - 1))
    out_i, out_j, out_d = [], [], []
    idx = np.arange(n, dtype=np.int64)
    for blk, (keys, w) in enumerate(zip(keys_all, widths, strict=True)):
        w = int(w)
        order = np.argsort(keys, kind="stable")
        dense = w <= _DENSE_BITS
        if dense:  # bucket table: O(1) lookups
            counts = np.bincount(keys.astype(np.int64), minlength=1 << w)
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        else:  # wide blocks: binary search in the sorted keys
            skeys = keys[order]
        for k in range(f + 1):
            for bits in itertools.combinations(range(w), k):
                flip = 0
                for bt in bits:
                    flip |= 1 << bt
                q = keys ^ np.uint64(flip)
                if dense:
                    q = q.astype(np.int64)
                    cnt = counts[q]
                    qstart = starts[q]
                else:
                    qstart = np.searchsorted(skeys, q, side="left")
                    cnt = np.searchsorted(skeys, q, side="right") - qstart
                total = int(cnt.sum())
                if total == 0:
                    continue
                # Expand in batches of queries so the candidate arrays stay bounded.
                csum = np.cumsum(cnt)
                lo_q = 0
                while lo_q < n:
                    base = csum[lo_q - 1] if lo_q else 0
                    hi_q = int(np.searchsorted(csum, base + _MAX_CANDIDATES, side="right"))
                    hi_q = max(hi_q, lo_q + 1)
                    c = cnt[lo_q:hi_q]
                    tot = int(c.sum())
                    if tot:
                        qi = np.repeat(idx[lo_q:hi_q], c)
                        offs = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(c) - c, c)
                        cj = order[np.repeat(qstart[lo_q:hi_q], c) + offs]
                        keep = qi < cj
                        qi, cj = qi[keep], cj[keep]
                        d = popcount64(h[qi] ^ h[cj])
                        ok = d <= radius
                        qi, cj, d = qi[ok], cj[ok], d[ok]
                        if qi.size and blk > 0:
                            # Keep the pair only at the first block whose distance is <= f.
                            first = np.full(qi.size, True)
                            for pb in range(blk):
                                pd_ = popcount64(keys_all[pb][qi] ^ keys_all[pb][cj])
                                first &= pd_ > f
                            qi, cj, d = qi[first], cj[first], d[first]
                        if qi.size:
                            out_i.append(qi)
                            out_j.append(cj)
                            out_d.append(d)
                    lo_q = hi_q
    if not out_i:
        return empty
    i = np.concatenate(out_i)
    j = np.concatenate(out_j)
    d = np.concatenate(out_d)
    o = np.lexsort((j, i))
    return i[o], j[o], d[o]


def brute_force_pairs(hashes, radius: int, *, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """O(n^2) reference for :func:`hamming_pairs` (vectorized by row chunks)."""
    h = _as_u64(hashes)
    n = len(h)
    out_i, out_j, out_d = [], [], []
    for s in range(0, n, chunk):
        blk = h[s : s + chunk]
        d = popcount64(blk[:, None] ^ h[None, :])
        ii, jj = np.nonzero(d <= radius)
        ii = ii + s
        keep = ii < jj
        out_i.append(ii[keep])
        out_j.append(jj[keep])
        out_d.append(d[ii[keep] - s, jj[keep]])
    if not out_i:
        return (np.empty(0, np.int64),) * 3
    i = np.concatenate(out_i).astype(np.int64)
    j = np.concatenate(out_j).astype(np.int64)
    d = np.concatenate(out_d).astype(np.int64)
    o = np.lexsort((j, i))
    return i[o], j[o], d[o]


# ------------------------------------------------------------------------------- multi-view LSH band join
class BandStats(dict):
    """Counters of a :func:`band_join`: ``collisions`` (bucket pairs examined), ``candidates`` (after the radius)."""


def _band_masks(seed: int, bands: int, bits: int) -> np.ndarray:
    """``bands`` seeded random masks of ``min(bits, 63)`` bit positions among the low 63 bits."""
    rng = np.random.default_rng(seed)
    out = np.zeros(bands, dtype=np.uint64)
    for k in range(bands):
        for pos in rng.choice(63, size=min(bits, 63), replace=False):
            out[k] |= np.uint64(1) << np.uint64(int(pos))
    return out


_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplication mod 2**64 is a bijection


def _band_keys(codes: np.ndarray, mask: np.ndarray, bits: int) -> np.ndarray:
    """``bits``-bit bucket keys of the masked bits (multiply-shift: equal masked bits give equal keys)."""
    with np.errstate(over="ignore"):
        return ((codes & mask) * _MULT >> np.uint64(64 - bits)).astype(np.int64)


def band_join(queries: np.ndarray, q_owner: np.ndarray, index: np.ndarray, i_owner: np.ndarray, *, radius: int,
              bands: int = 16, bits: int | None = None, seed: int = 0,
              stats: BandStats | None = None) -> tuple[np.ndarray, ...]:
    """Pairs of owners whose codes collide in at least one LSH band and differ in at most ``radius`` bits.

    ``queries`` / ``index`` are uint64 codes with the id of the image they describe (``q_owner`` / ``i_owner``).
    Each band is a seeded random mask of ``bits`` bit positions; a band's key is a multiply-shift hash of the
    masked bits. The query keys are counted into a dense bucket table (``2**bits`` slots) and every index code
    looks up its bucket, so the cost is ``O(bands x (Q + I + 2**bits) + collisions)``, never ``Q x I``.
    ``bits`` defaults to ``clip(ceil(log2(Q)) + 2, 16, 24)`` (about a quarter of a random collision per index
    code and band at most).

    Returns ``(a, b, distance, q_index, i_index)``: one row per owner pair ``a != b`` (the closest code pair,
    ties to the smallest query then index position), sorted by ``(a, b)``; ``a`` owns the query code.
    Owner pairs found in both directions appear once per direction; callers fold them.
    """
    q = np.ascontiguousarray(queries, dtype=np.uint64)
    ix = np.ascontiguousarray(index, dtype=np.uint64)
    q_owner = np.asarray(q_owner, dtype=np.int64)
    i_owner = np.asarray(i_owner, dtype=np.int64)
    empty = tuple(np.empty(0, np.int64) for _ in range(5))
    st = stats if stats is not None else BandStats()
    st.update(collisions=0, candidates=0)
    if len(q) == 0 or len(ix) == 0:
        return empty
    if bits is None:
        bits = int(np.clip(int(np.ceil(np.log2(max(2, len(q))))) + 2, 16, 24))
    found_q, found_i = [], []
    for mask in _band_masks(seed, bands, bits):
        qk = _band_keys(q, mask, bits)
        order = np.argsort(qk, kind="stable").astype(np.int64)
        counts = np.bincount(qk, minlength=1 << bits)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        for s0 in range(0, len(ix), _MAX_CANDIDATES):
            ik = _band_keys(ix[s0 : s0 + _MAX_CANDIDATES], mask, bits)
            cnt = counts[ik]
            hit = np.flatnonzero(cnt)
            st["collisions"] += int(cnt.sum())
            for ii, qi in _expand(starts[ik[hit]], cnt[hit], order):
                ii = hit[ii] + s0
                keep = q_owner[qi] != i_owner[ii]
                qi, ii = qi[keep], ii[keep]
                ok = popcount64(q[qi] ^ ix[ii]) <= radius
                found_q.append(qi[ok])
                found_i.append(ii[ok])
    qi = np.concatenate(found_q) if found_q else np.empty(0, np.int64)
    ii = np.concatenate(found_i) if found_i else np.empty(0, np.int64)
    if len(qi) == 0:
        return empty
    d = popcount64(q[qi] ^ ix[ii])
    a, b = q_owner[qi], i_owner[ii]
    o = np.lexsort((ii, qi, d, b, a))
    a, b, d, qi, ii = a[o], b[o], d[o], qi[o], ii[o]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    st["candidates"] = int(first.sum())
    return a[first], b[first], d[first], qi[first], ii[first]


def _expand(lo: np.ndarray, cnt: np.ndarray, order: np.ndarray):
    """Yield ``(probe position, bucket member)`` arrays of every bucket collision, in bounded batches."""
    n = len(lo)
    csum = np.cumsum(cnt)
    start = 0
    while start < n:
        base = csum[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(csum, base + _MAX_CANDIDATES, side="right")))
        c = cnt[start:stop]
        tot = int(c.sum())
        if tot:
            qi = np.repeat(np.arange(start, stop, dtype=np.int64), c)
            offs = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(c) - c, c)
            yield qi, order[np.repeat(lo[start:stop], c) + offs]
        start = stop


# ------------------------------------------------------------------------------------- crop-robust search
CANDIDATE_RADIUS = 14  # bits of 63 between a query view and an index view
CANDIDATE_BANDS = 24
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
    thumbnails correlate ``>= SAME_FRAME_GLOBAL`` (re-encodings, rescales, mirror images, tone changes).

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
    st.update(candidates=int(len(a)), collisions=int(bs["collisions"]))
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
    res = verify_pairs(thumbs, ga, gb, hyp, hflip, background=background, workers=workers, progress=step)
    flip = res["flip"]
    geometric = _geometric(res)
    small = np.zeros(len(ga), dtype=bool)
    if widths is not None and heights is not None:
        side = np.minimum(np.asarray(widths, float), np.asarray(heights, float))
        small = np.nan_to_num(np.minimum(side[ga], side[gb]), nan=0) < MIN_GEOMETRIC_SIDE
    with np.errstate(invalid="ignore"):
        need = np.where(small, SMALL_SAME_FRAME_GLOBAL, SAME_FRAME_GLOBAL)
        same_frame = ~geometric & (res["global"] >= need) & (res["similarity"] >= SAME_FRAME_LOCAL)
        ok = (res["regions"] >= MIN_REGIONS) & (same_frame | (~small & (res["similarity"] >= float(threshold))))
    ok[ok & ~same_frame] = _distinct(ga, gb, res["similarity"], np.flatnonzero(ok & ~same_frame))
    st["verified"] = int(ok.sum())
    sel = np.flatnonzero(ok)
    if not len(sel):
        return out
    out = {"i": ga[sel], "j": gb[sel], "distance": d[sel].astype(np.int64),
           "similarity": res["similarity"][sel], "regions": res["regions"][sel], "agree": res["agree"][sel]}
    out["basis"] = _basis(res, sel, flip[sel], thumbs, ga[sel], gb[sel], widths, heights)
    from audit.profile.nearverify import STRONG

    strong = (out["similarity"] >= STRONG[0]) & (out["agree"] >= STRONG[1]) & (out["regions"] >= 2 * MIN_REGIONS)
    out["evidence"] = np.where(strong, "strong", "verified").astype(object)
    return out


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
