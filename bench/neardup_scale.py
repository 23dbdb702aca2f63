"""Near-duplicate search at scale: the crop-robust method (:func:`audit.profile.neardup.near_pairs`) on N images'
descriptors, without decoding (the scan's share is measured by ``bench/profile.py`` and ``bench/duplicates.py``).

Descriptors are synthetic: each image a 64 x 64 thumbnail of smooth random structure (8 x 8 noise, bilinear
upsampled, plus fine noise) and its view hashes computed by the real :func:`audit.io.neardesc.view_hashes`; 1% of
the images are planted copies (the source thumbnail re-noised, so their hashes differ by a few bits). Prints the
candidate count, the verified pairs, the planted copies found, the wall time of each step and the peak memory.

Usage::

    python bench/neardup_scale.py [--n 1000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np


def synth(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thumbs N x 64 x 64 uint8, codes, planted (source, copy) pairs)``, in chunks to bound memory."""
    from audit.io.neardesc import view_hashes

    rng = np.random.default_rng(seed)
    thumbs = np.empty((n, 64, 64), dtype=np.uint8)
    chunk = 20_000
    up = np.clip(1 - np.abs((np.arange(64)[:, None] + 0.5) / 8 - 0.5 - np.arange(8)[None, :]), 0, None)
    up = (up / up.sum(axis=1, keepdims=True)).astype(np.float32)  # bilinear 8 -> 64, edges clamped
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        big = up @ rng.uniform(0, 255, (k, 8, 8)).astype(np.float32) @ up.T
        thumbs[s : s + k] = np.clip(big + rng.normal(0, 6, big.shape).astype(np.float32), 0, 255).astype(np.uint8)
    m = n // 100
    src = rng.choice(n // 2, m, replace=False)
    dst = n // 2 + rng.choice(n - n // 2, m, replace=False)
    thumbs[dst] = np.clip(thumbs[src].astype(np.float32) + rng.normal(0, 3, (m, 64, 64)), 0, 255).astype(np.uint8)
    codes = np.concatenate([view_hashes(thumbs[s : s + chunk]) for s in range(0, n, chunk)])
    return thumbs, codes, np.stack([src, dst], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from audit.profile.neardup import near_pairs

    t0 = time.perf_counter()
    thumbs, codes, planted = synth(args.n)
    t_syn = time.perf_counter() - t0
    st: dict = {}
    t0 = time.perf_counter()
    out = near_pairs(codes, thumbs, np.arange(args.n), stats=st, workers=args.workers,
                     widths=np.full(args.n, 256.0), heights=np.full(args.n, 256.0))
    t_near = time.perf_counter() - t0
    found = {(min(a, b), max(a, b)) for a, b in zip(out["i"].tolist(), out["j"].tolist(), strict=True)}
    hit = sum((min(a, b), max(a, b)) in found for a, b in planted.tolist())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; workers={args.workers}")
    print(f"images {args.n:,}: descriptors synthesized in {t_syn:.1f}s ({thumbs.nbytes / 2**30:.2f} GiB of thumbnails)")
    print(f"near_pairs {t_near:.1f}s ({args.n / t_near:,.0f} img/s; candidate search {st.get('search_seconds')}s, "
          f"verification the rest): {st.get('candidates', 0):,} candidates, "
          f"{st.get('collisions', 0):,} band collisions, {len(found):,} pairs verified; planted copies found "
          f"{hit:,} of {len(planted):,}; peak memory {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
