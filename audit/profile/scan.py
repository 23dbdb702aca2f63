"""The image scan: decode every image once (worker processes, chunked, streaming) into ``images.parquet``.

Every manifest row gets a row, readable or not. The other checks reuse this table; none of them decodes
pixels again. The one exception is ``pixel_md5``: hashing full-resolution pixels costs about as much as
decoding a small JPEG, and two images can only have identical pixels if they have the same perceptual hash,
so by default (``pixel_md5="auto"``) it is computed only for images whose phash is shared with an image of
different bytes (usually a handful); they are decoded a second time for it. ``pixel_md5="all"`` hashes
every image during the scan.
"""

from __future__ import annotations

import collections
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from audit.core.system import usable_cores
from audit.errors import InputError, UsageError
from audit.io import decode
from audit.manifest import UNOPENED_FLAGS
from audit.profile.base import Check, CheckOutput, Context, register

__all__ = ["ImageScan", "scan_items", "parallel_map", "IMAGE_COLUMNS", "MASK_COLUMNS"]

IMAGE_COLUMNS = ("sample_id", "filepath") + decode.IMAGE_FIELDS
MASK_COLUMNS = decode.MASK_FIELDS

_DTYPES = {
    "readable": "bool", "error": "string", "error_detail": "string", "format": "string", "ext": "string",
    "ext_mismatch": "boolean", "width": "Int64", "height": "Int64", "aspect": "float64", "mode": "string",
    "channels": "Int64", "bit_depth": "Int64", "bytes": "Int64", "exif_orientation": "Int64",
    "brightness": "float64", "contrast": "float64", "saturation": "float64", "colorfulness": "float64",
    "sharpness": "float64", "entropy": "float64", "noise": "float64", "md5": "string", "pixel_md5": "string",
    "phash": "Int64",
    "mask_readable": "bool", "mask_error": "string", "mask_width": "Int64", "mask_height": "Int64",
    "mask_classes": "string", "mask_empty": "boolean", "mask_encoding": "string",
}


# The worker functions live in audit.io.decode, which imports only numpy and PIL: a worker process unpickles
# them without importing audit.profile (pandas, scipy, scikit-learn: ~1 s per worker on a small machine).
_worker_init = decode.worker_init
_scan_chunk = decode.scan_chunk
_pixel_md5_chunk = decode.pixel_md5_chunk


def parallel_map(fn: Callable, chunks: Sequence[Sequence], args: tuple, *, workers: int, engine: str = "local",
                 ray_address: str | None = None, on_done: Callable[[int], None] | None = None) -> list[Any]:
    """``[fn(chunk, *args) for chunk in chunks]`` in worker processes, in order, with bounded memory.

    At most ``3 * workers`` chunks are in flight, so results stream back while the rest is submitted.
    ``engine="ray"`` runs the chunks as Ray tasks (``ray_address`` to join a cluster).
    """
    if engine == "ray":
        return _ray_map(fn, chunks, args, ray_address=ray_address, on_done=on_done)
    if workers <= 1 or len(chunks) <= 1:
        out = []
        for c in chunks:
            out.append(fn(c, *args))
            if on_done:
                on_done(len(c))
        return out
    from concurrent.futures.process import BrokenProcessPool

    try:
        return _pool_map(fn, chunks, args, workers=workers, on_done=on_done)
    except BrokenProcessPool as e:  # e.g. a worker killed for memory: finish in this process instead
        warnings.warn(f"worker pool failed ({e}); scanning in the main process", RuntimeWarning, stacklevel=2)
        return [fn(c, *args) for c in chunks]


def _start_method() -> str:
    """forkserver (safe after threads) unless __main__ cannot be re-imported by it (stdin, notebooks)."""
    import multiprocessing as mp
    import sys

    methods = mp.get_all_start_methods()
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if "forkserver" in methods and (main_file is None or os.path.isfile(main_file)):
        return "forkserver"
    return "fork" if "fork" in methods else "spawn"


def _pool_map(fn: Callable, chunks: Sequence[Sequence], args: tuple, *, workers: int,
              on_done: Callable[[int], None] | None) -> list[Any]:
    import multiprocessing as mp

    method = _start_method()
    results: list[Any] = [None] * len(chunks)
    pending: collections.deque[tuple[int, Future]] = collections.deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method), initializer=_worker_init) as ex:
        for i, c in enumerate(chunks):
            pending.append((i, ex.submit(fn, c, *args)))
            while len(pending) >= 3 * workers:
                j, fut = pending.popleft()
                results[j] = fut.result()
                if on_done:
                    on_done(len(chunks[j]))
        while pending:
            j, fut = pending.popleft()
            results[j] = fut.result()
            if on_done:
                on_done(len(chunks[j]))
    return results


def _ray_map(fn, chunks, args, *, ray_address, on_done):
    from audit.integrations.ray_engine import map_chunks

    return map_chunks(fn, chunks, args, address=ray_address, on_done=on_done)


def scan_items(items: Sequence[tuple], *, max_pixels: int, n_classes: int | None = None, workers: int = 1,
               chunk_size: int | None = None, pixel_md5: bool = False, engine: str = "local",
               ray_address: str | None = None, progress: bool = True,
               sample_ids: Sequence[str] | None = None) -> list[dict]:
    """Scan ``(path, error, mask_path, mask_error)`` items; one record per item, in order.

    ``engine="ray"`` runs the same chunks as a Ray Data pipeline (:mod:`audit.integrations.ray_engine`);
    ``sample_ids`` name rows that did not come back in its error.
    """
    from audit.progress import Bar

    n = len(items)
    if chunk_size is None:
        chunk_size = int(np.clip(n // max(1, workers * 8), 16, 256))
    chunks = [items[i : i + chunk_size] for i in range(0, n, chunk_size)]
    if n < 2 * chunk_size:
        workers = 1  # not worth starting processes
    if engine == "ray":
        from audit.integrations.ray_engine import scan_items_ray

        with Bar(n if progress else None, "profile: scanning images (ray)", unit="img") as bar:
            return scan_items_ray(items, max_pixels=max_pixels, n_classes=n_classes, chunk_size=chunk_size,
                                  pixel_md5=pixel_md5, address=ray_address, sample_ids=sample_ids,
                                  on_done=bar.advance)
    with Bar(n if progress else None, "profile: scanning images", unit="img") as bar:
        parts = parallel_map(_scan_chunk, chunks, (max_pixels, n_classes, pixel_md5), workers=workers,
                             engine=engine, ray_address=ray_address, on_done=bar.advance)
    return [r for part in parts for r in part]


def records_frame(records: list[dict], sample_ids: Sequence[str], filepaths: Sequence[str],
                  with_masks: bool) -> pd.DataFrame:
    cols = list(decode.IMAGE_FIELDS) + (list(decode.MASK_FIELDS) if with_masks else [])
    data = {c: [r.get(c) for r in records] for c in cols}
    df = pd.DataFrame({"sample_id": pd.array(list(sample_ids), dtype="string"),
                       "filepath": pd.array(list(filepaths), dtype="string")})
    for c in cols:
        dt = _DTYPES.get(c)
        if dt is None:
            df[c] = pd.Series(data[c], dtype="object")
        else:
            df[c] = pd.array(data[c], dtype=dt)
    return df


@register
class ImageScan(Check):
    name = "images"
    order = 0
    description = "decode every image once; header, integrity, hashes and cheap statistics per image"
    provides = ("images",)

    def run(self, ctx: Context) -> CheckOutput:
        import time

        cfg = ctx.config
        m = ctx.manifest
        has_masks = "mask" in m.columns and bool(m["mask"].notna().any())
        items = []
        # rows flagged at ingest (outside the root, a folder, ...) are never opened: the flag is their error
        flags = m["flag"].tolist() if "flag" in m.columns else [None] * len(m)
        for fp, mp, fl in zip(m["filepath"].tolist(), (m["mask"] if has_masks else pd.Series([None] * len(m))).tolist(),
                              flags, strict=True):
            path, err = (None, str(fl)) if isinstance(fl, str) and fl in UNOPENED_FLAGS else _resolve(ctx, fp)
            mpath, merr = (None, None)
            if has_masks:
                if mp is None or mp is pd.NA:
                    mpath, merr = None, "missing_mask_path"
                else:
                    mpath, merr = _resolve(ctx, mp)
            items.append((path, err, mpath, merr))
        n_classes = len(ctx.classes) if (ctx.task == "segment" and ctx.classes) else None
        workers = _workers(cfg.workers)
        eager = str(getattr(cfg, "pixel_md5", "auto")) == "all"
        t0 = time.perf_counter()
        recs = scan_items(items, max_pixels=int(cfg.max_pixels), n_classes=n_classes, workers=workers,
                          pixel_md5=eager, engine=cfg.engine, ray_address=cfg.ray_address,
                          sample_ids=m["sample_id"].tolist())
        seconds = time.perf_counter() - t0
        df = records_frame(recs, m["sample_id"].tolist(), m["filepath"].tolist(), has_masks)
        redecoded = 0 if eager else fill_pixel_md5(df, items, max_pixels=int(cfg.max_pixels), workers=workers,
                                                   engine=cfg.engine, ray_address=cfg.ray_address)
        info = {
            "n": len(df),
            "readable": int(df["readable"].sum()),
            "workers": workers if cfg.engine == "local" else "ray",
            **({"ray": _ray_info()} if cfg.engine == "ray" else {}),
            "scan_seconds": round(seconds, 3),
            "images_per_second": round(len(df) / seconds, 1) if seconds > 0 else None,
            "pixel_md5": "all" if eager else "auto",
            "pixel_md5_redecoded": redecoded,
        }
        return CheckOutput(tables={"images": df}, info=info, extras={"desc": collect_descriptors(recs)})


def collect_descriptors(recs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The near-duplicate descriptors of the scan records: ``(thumbs N x 64 x 64, codes N x views, present)``."""
    from audit.io.neardesc import DESC_SIDE, N_VIEWS

    thumbs = np.zeros((len(recs), DESC_SIDE, DESC_SIDE), dtype=np.uint8)
    codes = np.zeros((len(recs), N_VIEWS), dtype=np.uint64)
    present = np.zeros(len(recs), dtype=bool)
    for i, r in enumerate(recs):
        d = r.pop("_desc", None)
        if d is not None:
            thumbs[i], codes[i], present[i] = d[0], d[1], True
    return thumbs, codes, present


# equal for pixel-identical images (the statistics are computed from the decoded pixels)
_IDENTITY_STATS = ("width", "height", "brightness", "contrast", "saturation", "colorfulness", "sharpness", "entropy",
                   "noise")


def fill_pixel_md5(df: pd.DataFrame, items: Sequence[tuple], *, max_pixels: int, workers: int = 1,
                   engine: str = "local", ray_address: str | None = None) -> int:
    """Hash the pixels of the images that could be pixel-identical to another one; returns how many were decoded.

    Candidates: readable images whose phash, size and image statistics are shared with an image of *different
    bytes* (identical bytes already prove identical pixels; identical pixels give identical statistics, so a
    re-encoded copy whose brightness moved is no candidate). One decode per distinct md5; the result is copied to
    its byte twins.
    """
    ok = df["readable"].to_numpy(bool) & df["phash"].notna().to_numpy()
    if ok.sum() < 2:
        return 0
    same = ["phash", *(c for c in _IDENTITY_STATS if c in df.columns)]
    sub = df.loc[ok, [*same, "md5"]].copy()
    for c in same[1:]:  # rounded (a statistic computed on another machine may differ in the last bits); NaN kept
        sub[c] = pd.to_numeric(sub[c], errors="coerce").astype(float).round(5).fillna(-1.0)
    n_md5 = sub.groupby(same, dropna=False)["md5"].transform("nunique")
    cand = sub.index[n_md5.to_numpy() >= 2]
    if len(cand) == 0:
        return 0
    reps = df.loc[cand].drop_duplicates("md5")
    paths = [items[i][0] for i in reps.index]
    chunk = max(8, len(paths) // max(1, workers * 4))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    w = workers if len(paths) >= 64 else 1
    from audit.progress import Bar

    with Bar(len(paths), "profile: hashing pixels of look-alike images", unit="img") as bar:
        parts = parallel_map(_pixel_md5_chunk, chunks, (max_pixels,), workers=w, engine=engine,
                             ray_address=ray_address, on_done=bar.advance)
    hashes = [h for part in parts for h in part]
    by_md5 = dict(zip(reps["md5"].tolist(), hashes, strict=True))
    df.loc[cand, "pixel_md5"] = [by_md5.get(h) for h in df.loc[cand, "md5"].tolist()]
    return len(paths)


def _ray_info() -> dict:
    from audit.integrations.ray_engine import cluster_info

    return cluster_info()


def _resolve(ctx: Context, rel) -> tuple[str | None, str | None]:
    if rel is None or rel is pd.NA:
        return None, "missing_file"
    try:
        p = ctx.abspath(str(rel)) if ctx.abspath else (ctx.root / str(rel) if ctx.root else rel)
    except InputError:
        return None, "outside_root"
    return str(p), None


def _workers(requested: int | None) -> int:
    if requested:
        if int(requested) < 1:
            raise UsageError(f"--workers must be >= 1, got {requested}")
        return int(requested)
    return usable_cores()
