"""Profile benchmark: scan throughput vs a bare PIL decode loop, and near-duplicate search scaling.

Measured side by side in one run, on the same files and the same number of worker processes:

* bare:    ``Image.open(path).convert("RGB")`` per file, in a process pool (the floor any profiler pays);
* profile: :func:`audit.profile.scan.scan_items` (header, integrity, md5 of bytes, one decode, statistics,
  perceptual hash, thumbnail), the scan every other check reuses.

Then near-duplicate search (:func:`audit.profile.neardup.hamming_pairs`) on 10k, 100k, 1M synthetic 64-bit
hashes with planted near neighbours, and the O(n^2) brute force where feasible (``--brute-max``).

Usage::

    python bench/profile.py [--n 6000] [--workers 2] [--size 227] [--radius 6] [--brute-max 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(root: Path, n: int, size: int, seed: int = 0) -> list[str]:
    """Synthetic photos: random crops (with flips and mild sensor noise) of scikit-learn's two sample photos."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        src = photos[k % len(photos)]
        scale = rng.uniform(0.6, 1.0)
        side = int(min(src.shape[:2]) * scale)
        y, x = rng.integers(0, src.shape[0] - side + 1), rng.integers(0, src.shape[1] - side + 1)
        im = Image.fromarray(src[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.int16)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        arr = np.clip(arr + rng.normal(0, 4, arr.shape), 0, 255).astype(np.uint8)
        p = root / f"{k // 1000:03d}" / f"{k:06d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(p, quality=90)
        paths.append(str(p))
    return paths


def _bare_chunk(paths: list[str]) -> int:
    for p in paths:
        Image.open(p).convert("RGB")
    return len(paths)


def bare_loop(paths: list[str], workers: int, chunk: int) -> float:
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    t0 = time.perf_counter()
    if workers <= 1:
        for c in chunks:
            _bare_chunk(c)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver")) as ex:
            list(ex.map(_bare_chunk, chunks))
    return time.perf_counter() - t0


def profile_scan(paths: list[str], workers: int, chunk: int) -> float:
    from audit.profile.scan import scan_items

    items = [(p, None, None, None) for p in paths]
    t0 = time.perf_counter()
    recs = scan_items(items, max_pixels=89_478_485, workers=workers, chunk_size=chunk, progress=False)
    dt = time.perf_counter() - t0
    assert all(r["readable"] for r in recs)
    return dt


def planted_hashes(n: int, rng: np.random.Generator, radius: int, planted: int = 1000) -> np.ndarray:
    h = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    src = rng.integers(0, n, planted)
    dst = rng.integers(0, n, planted)
    for s, d in zip(src, dst, strict=True):
        x = int(h[s]) & (2**64 - 1)
        for b in rng.choice(64, int(rng.integers(0, radius + 1)), replace=False):
            x ^= 1 << int(b)
        h[d] = np.uint64(x).view(np.int64)
    return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6000, help="synthetic images")
    ap.add_argument("--size", type=int, default=227)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="alternating bare/profile rounds (best of)")
    ap.add_argument("--radius", type=int, default=6)
    ap.add_argument("--hash-sizes", default="10000,100000,1000000")
    ap.add_argument("--brute-max", type=int, default=100_000)
    ap.add_argument("--keep", help="write the images here instead of a temp dir")
    args = ap.parse_args()
    from audit.profile.neardup import brute_force_pairs, hamming_pairs, plan_blocks

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cpus, python "
          f"{platform.python_version()}, numpy {np.__version__}, pillow {Image.__version__}")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="imgaudit-bench-"))
    try:
        t0 = time.perf_counter()
        paths = make_images(root, args.n, args.size)
        print(f"generated {len(paths)} JPEGs {args.size}x{args.size} q90 in {time.perf_counter() - t0:.1f}s")
        bare_loop(paths[: min(500, len(paths))], args.workers, args.chunk)  # warm the page cache and the pool
        best_bare = best_prof = float("inf")
        for r in range(args.repeats):
            tb = bare_loop(paths, args.workers, args.chunk)
            tp = profile_scan(paths, args.workers, args.chunk)
            best_bare, best_prof = min(best_bare, tb), min(best_prof, tp)
            print(f"round {r + 1}: bare {len(paths) / tb:,.0f} img/s, profile scan {len(paths) / tp:,.0f} img/s, "
                  f"ratio {tb / tp:.2f}")
        print(f"BEST ({args.workers} workers): bare PIL decode {len(paths) / best_bare:,.0f} img/s; profile scan "
              f"{len(paths) / best_prof:,.0f} img/s; ratio profile/bare = {best_bare / best_prof:.2f} (target >= 0.7)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for n in [int(x) for x in args.hash_sizes.split(",") if x]:
        h = planted_hashes(n, rng, args.radius)
        t0 = time.perf_counter()
        i, j, d = hamming_pairs(h, args.radius)
        tm = time.perf_counter() - t0
        line = f"near-dup n={n:>9,}: index {tm:7.2f}s ({len(i)} pairs, blocks/flips {plan_blocks(n, args.radius)})"
        if n <= args.brute_max:
            t0 = time.perf_counter()
            bi, bj, bd = brute_force_pairs(h, args.radius)
            tb = time.perf_counter() - t0
            same = np.array_equal(i, bi) and np.array_equal(j, bj)
            line += f"; brute force {tb:7.2f}s (same pairs: {same}); speed-up {tb / tm:.0f}x"
        else:
            line += f"; brute force skipped (~{(n / 100_000) ** 2:.0f}x the 100k time)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
