"""Decode-once image cache: every image (and mask) decoded and resized once into a uint8 tensor.

All folds, epochs and seeds of a training run index the same cache, so the JPEG/PNG decoder runs once
per image instead of once per image per epoch per fold. Where it lives:

* on the GPU when training on CUDA and it fits in a share of the free memory (no host->device copies);
* in (pinned) host memory when it is small enough;
* otherwise in ``np.memmap`` files on disk (``<cache_dir>/<key>-<size>.images.u8`` + ``.masks.u8`` +
  ``.json``), keyed by the dataset fingerprint and the size, and reused by later runs with the same key.

Decoding uses PIL on CPU threads (JPEG draft mode makes large JPEGs cheap to shrink) and nvJPEG
(``torchvision.io.decode_jpeg(device="cuda")``) for JPEG files when the target device is CUDA. A file that
cannot be decoded is never fatal: its row gets ``ok=False`` and a short error string.

Masks (segmentation) are normalized here: a {0, 255} binary mask becomes {0, 1}; a mask whose size differs
from its image is resized with NEAREST (recorded in ``mask_resized``); class values ``>= n_classes``
become the ignore index 255.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audit.core.atomic import atomic_write_json
from audit.io.decode import error_text
from audit.io.gpu import decode_jpegs_cuda, fits_on_device

__all__ = ["TensorCache", "build_cache", "decode_image", "decode_mask", "IGNORE_INDEX", "MEMORY_LIMIT_BYTES"]

IGNORE_INDEX = 255
# Host caches bigger than this go to np.memmap files on disk instead of RAM.
MEMORY_LIMIT_BYTES = int(os.environ.get("AUDIT_CACHE_MEMORY_LIMIT", str(4 * 2**30)))
_JPEG_MAGIC = b"\xff\xd8\xff"
_CHUNK = 256


@dataclass
class TensorCache:
    """Decoded images (``uint8 [N, 3, S, S]``) and masks (``uint8 [N, S, S]`` or None) for N rows.

    ``ok[i]`` says whether row ``i`` decoded; ``errors[i]`` why not. ``location`` is ``cuda``, ``memory``
    or ``memmap``. ``seconds`` is the decode time (0 when reused from disk).
    """

    images: torch.Tensor
    masks: torch.Tensor | None
    ok: np.ndarray
    errors: list[str | None]
    size: int
    location: str
    key: str
    mask_resized: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    mask_binary_255: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    seconds: float = 0.0
    reused: bool = False
    gpu_decoded: int = 0

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.images.numel() + (self.masks.numel() if self.masks is not None else 0))


def decode_image(path: Path, size: int, *, exif: bool = True) -> np.ndarray:
    """Decode one image file to ``uint8 [3, size, size]`` (RGB, bilinear with antialiasing).

    Raises ``OSError``/``ValueError`` (PIL's errors) for unreadable files; the caller records them.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("RGB", (size, size))  # decode at the smallest DCT scale still >= size: much faster
        if exif:
            im = ImageOps.exif_transpose(im)
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def decode_mask(path: Path, size: int, image_size: tuple[int, int] | None,
                n_classes: int | None) -> tuple[np.ndarray, bool, bool]:
    """Decode an index mask to ``uint8 [size, size]``; returns (mask, resized_to_image, was_binary_255).

    ``image_size`` is the (width, height) of the matching image: a mask of another size is first resized
    to it with NEAREST (recorded by the caller). Values ``>= n_classes`` become :data:`IGNORE_INDEX`.
    """
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA"):
            arr = np.asarray(im.convert("RGB"))
            if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
                raise ValueError("colour mask: masks must hold class indices (one channel or a palette)")
            arr = arr[..., 0]
        elif im.mode in ("P", "L", "1"):
            arr = np.asarray(im)
        else:  # I;16, I, F: integer-valued single channel
            arr = np.asarray(im)
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    arr = np.clip(np.nan_to_num(arr.astype(np.float64), nan=IGNORE_INDEX), 0, IGNORE_INDEX).astype(np.uint8)
    binary = False
    if n_classes is None or n_classes <= 2:
        vals = np.unique(arr)
        if IGNORE_INDEX in vals and np.isin(vals, (0, IGNORE_INDEX)).all():
            arr = (arr == IGNORE_INDEX).astype(np.uint8)  # a {0,255} binary mask means {background, object}
            binary = True
    if n_classes is not None:
        arr = np.where(arr >= n_classes, IGNORE_INDEX, arr).astype(np.uint8)
    resized = False
    m = Image.fromarray(arr, mode="L")
    if image_size is not None and m.size != tuple(image_size):
        m = m.resize(tuple(image_size), Image.NEAREST)
        resized = True
    if m.size != (size, size):
        m = m.resize((size, size), Image.NEAREST)
    return np.asarray(m, dtype=np.uint8), resized, binary


def _image_wh(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _decode_row(args) -> tuple[np.ndarray | None, np.ndarray | None, str | None, bool, bool]:
    path, mask_path, size, n_classes, exif = args
    try:
        img = decode_image(path, size, exif=exif)
    except FileNotFoundError:
        return None, None, "missing_file", False, False
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        return None, None, "decode_error: " + error_text(e), False, False
    if mask_path is None:
        return img, None, None, False, False
    try:
        wh = _image_wh(path)
        mask, resized, binary = decode_mask(mask_path, size, wh, n_classes)
    except FileNotFoundError:
        return None, None, "missing_mask_file", False, False
    except Exception as e:
        return None, None, "mask_decode_error: " + error_text(e), False, False
    return img, mask, None, resized, binary


def _meta_path(cache_dir: Path, key: str, size: int) -> Path:
    return cache_dir / f"{key}-{size}.json"


def _try_reuse(cache_dir: Path, key: str, size: int, n: int, with_masks: bool) -> TensorCache | None:
    meta_p = _meta_path(cache_dir, key, size)
    if not meta_p.is_file():
        return None
    try:
        meta = json.loads(meta_p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not meta.get("complete") or meta.get("n") != n or meta.get("size") != size or meta.get("masks") != with_masks:
        return None
    try:
        imgs = np.memmap(cache_dir / f"{key}-{size}.images.u8", dtype=np.uint8, mode="r", shape=(n, 3, size, size))
        masks = (
            np.memmap(cache_dir / f"{key}-{size}.masks.u8", dtype=np.uint8, mode="r", shape=(n, size, size))
            if with_masks
            else None
        )
    except (OSError, ValueError):
        return None
    return TensorCache(
        images=_memmap_tensor(imgs),
        masks=_memmap_tensor(masks) if masks is not None else None,
        ok=np.asarray(meta["ok"], dtype=bool),
        errors=list(meta["errors"]),
        size=size,
        location="memmap",
        key=key,
        mask_resized=np.asarray(meta.get("mask_resized", [False] * n), dtype=bool),
        mask_binary_255=np.asarray(meta.get("mask_binary_255", [False] * n), dtype=bool),
        reused=True,
    )


def _memmap_tensor(mm: np.ndarray) -> torch.Tensor:
    # torch.from_numpy refuses read-only arrays; a copy-on-write memmap is writable without touching the file
    arr = np.memmap(mm.filename, dtype=mm.dtype, mode="c", shape=mm.shape)
    return torch.from_numpy(arr)


def _allocate(n: int, size: int, with_masks: bool, device: torch.device, on_gpu: bool, memmap_dir: Path | None,
              key: str):
    """``(img_np, mask_np, images, masks)``: memory-mapped files under ``memmap_dir`` (the numpy arrays, to flush),
    else tensors in pinned host memory or on the GPU (``img_np``/``mask_np`` None)."""
    if memmap_dir is not None:
        memmap_dir.mkdir(parents=True, exist_ok=True)
        _meta_path(memmap_dir, key, size).unlink(missing_ok=True)
        img_np = np.memmap(memmap_dir / f"{key}-{size}.images.u8", dtype=np.uint8, mode="w+", shape=(n, 3, size, size))
        mask_np = (
            np.memmap(memmap_dir / f"{key}-{size}.masks.u8", dtype=np.uint8, mode="w+", shape=(n, size, size))
            if with_masks
            else None
        )
        return img_np, mask_np, torch.from_numpy(img_np), torch.from_numpy(mask_np) if mask_np is not None else None
    # pinned host memory makes the per-batch host->device copies asynchronous
    pin = device.type == "cuda" and not on_gpu
    images = torch.zeros((n, 3, size, size), dtype=torch.uint8, pin_memory=pin)
    masks = torch.zeros((n, size, size), dtype=torch.uint8, pin_memory=pin) if with_masks else None
    if on_gpu:
        images = images.to(device)
        masks = masks.to(device) if masks is not None else None
    return None, None, images, masks


@dataclass
class _Rows:
    """Per-row outcome of decoding, filled in place."""

    ok: np.ndarray
    errors: list
    resized: np.ndarray
    binary: np.ndarray


def _cpu_decode_into(todo: list[int], args: list[tuple], images: torch.Tensor, masks: torch.Tensor | None,
                     rows: _Rows, workers: int, progress: Callable[[int], None] | None) -> None:
    """Decode rows ``todo`` (``args``: their :func:`_decode_row` arguments) on CPU threads, in chunks."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(todo), _CHUNK):
            chunk = todo[start:start + _CHUNK]
            results = list(pool.map(_decode_row, args[start:start + _CHUNK]))
            idx_ok = [i for i, r in zip(chunk, results, strict=True) if r[2] is None]
            for i, (_img, _mask, err, rs, bn) in zip(chunk, results, strict=True):
                if err is not None:
                    rows.errors[i] = err
                    continue
                rows.ok[i] = True
                rows.resized[i] = rs
                rows.binary[i] = bn
            if idx_ok:
                batch = torch.from_numpy(np.stack([r[0] for r in results if r[2] is None]))
                sel = torch.as_tensor(idx_ok, dtype=torch.long)
                if images.device.type == "cuda":
                    images[sel.to(images.device)] = batch.to(images.device, non_blocking=True)
                else:
                    images[sel] = batch
                if masks is not None:
                    mb = torch.from_numpy(np.stack([r[1] for r in results if r[2] is None]))
                    masks[sel.to(masks.device)] = mb.to(masks.device)
            if progress:
                progress(len(chunk))


def build_cache(
    paths: Sequence[Path],
    *,
    size: int,
    key: str,
    mask_paths: Sequence[Path] | None = None,
    n_classes: int | None = None,
    device: torch.device | None = None,
    cache_dir: Path | None = None,
    workers: int = 1,
    exif: bool = True,
    memory_limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> TensorCache:
    """Decode every image (and mask) once, resized to ``size`` x ``size``.

    Parameters
    ----------
    paths
        Absolute image paths, one per row.
    size
        Square side in pixels.
    key
        Cache key (dataset fingerprint + row selection); the memmap files are named after it.
    mask_paths
        Absolute mask paths (segmentation), one per row.
    n_classes
        Number of segmentation classes (values ``>=`` become 255); ``None`` when unknown.
    device
        Training device: on CUDA the cache is built on the GPU when it fits, with nvJPEG decoding.
    cache_dir
        Folder for memmap files when the cache exceeds ``memory_limit`` bytes.
    workers
        CPU decoding threads.
    progress
        Called with the number of rows just finished.
    """
    import time

    t0 = time.perf_counter()
    device = device or torch.device("cpu")
    n = len(paths)
    with_masks = mask_paths is not None
    nbytes = n * 3 * size * size + (n * size * size if with_masks else 0)
    limit = MEMORY_LIMIT_BYTES if memory_limit is None else memory_limit
    on_gpu = device.type == "cuda" and fits_on_device(nbytes, device)
    use_memmap = not on_gpu and nbytes > limit and cache_dir is not None
    if use_memmap:
        cache_dir = Path(cache_dir)
        reused = _try_reuse(cache_dir, key, size, n, with_masks)
        if reused is not None:
            if progress:
                progress(n)
            return reused
    img_np, mask_np, images, masks = _allocate(n, size, with_masks, device, on_gpu, cache_dir if use_memmap else None,
                                               key)
    ok = np.zeros(n, dtype=bool)
    errors: list[str | None] = [None] * n
    resized = np.zeros(n, dtype=bool)
    binary = np.zeros(n, dtype=bool)
    gpu_done = np.zeros(n, dtype=bool)

    # nvJPEG: JPEG images (classification, or segmentation images whose masks are decoded on CPU below)
    if device.type == "cuda" and not with_masks:
        gpu_done = _gpu_decode_into(paths, images, size, device, ok, progress)

    todo = [i for i in range(n) if not gpu_done[i]]
    rows = _Rows(ok=ok, errors=errors, resized=resized, binary=binary)
    args = [(paths[i], mask_paths[i] if with_masks else None, size, n_classes, exif) for i in todo]
    _cpu_decode_into(todo, args, images, masks, rows, workers, progress)
    location = "cuda" if on_gpu else ("memmap" if use_memmap else "memory")
    if use_memmap:
        img_np.flush()
        if mask_np is not None:
            mask_np.flush()
        meta = {"complete": True, "n": n, "size": size, "masks": with_masks, "key": key, "ok": ok.tolist(),
                "errors": errors, "mask_resized": resized.tolist(), "mask_binary_255": binary.tolist()}
        atomic_write_json(_meta_path(cache_dir, key, size), meta)
    return TensorCache(images=images, masks=masks, ok=ok, errors=errors, size=size, location=location, key=key,
                       mask_resized=resized, mask_binary_255=binary, seconds=time.perf_counter() - t0,
                       gpu_decoded=int(gpu_done.sum()))


def _nvjpeg_suitable(data: bytes) -> bool:
    """Whether nvJPEG decodes the file ``data`` to the same pixels as the CPU path: an RGB or greyscale JPEG without
    an EXIF rotation (nvJPEG ignores orientation; camera photos usually carry EXIF with orientation 1, which is
    fine). Parses only the header."""
    import io

    from PIL import Image

    if not data.startswith(_JPEG_MAGIC):
        return False
    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: parses the markers, decodes nothing
            return im.format == "JPEG" and im.mode in ("RGB", "L") and im.getexif().get(0x0112, 1) == 1
    except Exception:  # damaged header: leave it to the CPU decoder, which records the error
        return False


def _gpu_decode_into(paths, images: torch.Tensor, size: int, device: torch.device, ok: np.ndarray,
                     progress) -> np.ndarray:
    """nvJPEG-decode the JPEG files among ``paths`` straight into ``images``; returns which rows were done."""
    done = np.zeros(len(paths), dtype=bool)
    jpeg_idx, datas = [], []

    def flush():
        if not datas:
            return
        outs = decode_jpegs_cuda(datas, size, device)
        for i, img in zip(jpeg_idx, outs, strict=True):
            if img is not None:
                # copy_ (not a non_blocking .to()): a GPU->host copy into a host cache must finish before the
                # row is read; GPU->GPU stays asynchronous on the stream
                images[i].copy_(img)
                ok[i] = True
                done[i] = True
        if progress:
            progress(int(sum(o is not None for o in outs)))
        jpeg_idx.clear()
        datas.clear()

    for i, p in enumerate(paths):
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            continue  # the CPU path reports the error
        if not _nvjpeg_suitable(data):
            continue  # the CPU path decodes it (or reports the error)
        datas.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        jpeg_idx.append(i)
        if len(datas) >= _CHUNK:
            flush()
    flush()
    return done
