"""All pairs of 64-bit hashes within a Hamming radius, without an O(n^2) loop: multi-index hashing in numpy.

The 64 bits are split into ``m`` disjoint blocks. If two hashes differ in at most ``r`` bits, at least one
block differs in at most ``floor(r / m)`` bits (pigeonhole), so every true pair is found by looking up, for
each block, the buckets of the block value with up to ``floor(r / m)`` bits flipped. Buckets are a dense
table (``2**bits`` counts + start offsets over the block-sorted order), so a probe of all ``n`` hashes is a
few vectorized gathers; candidates are verified with a popcount of the XOR. ``m`` is chosen by a cost model
(probes x n + expected candidates) so the index stays fast from 10k to millions of hashes. A pair is kept
only at the first block that certifies it, so no global de-duplication is needed.

:func:`brute_force_pairs` is the O(n^2) reference (chunked, vectorized) used by tests and the benchmark.
:func:`band_join` is the other join: owners (images) of many codes (views) against each other's codes, by LSH
bands, for the crop-robust search of :mod:`audit.profile.neardup`.
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
