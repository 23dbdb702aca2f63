"""Image and mask decoding on CPU, one decode per file, for the profile scan.

:func:`scan_image` reads a file once, hashes its bytes, reads the header (format, size, mode, EXIF
orientation), refuses decompression bombs *before* decoding, decodes, hashes the decoded RGB pixels and
computes cheap image statistics, a 64-bit perceptual hash and the near-duplicate descriptors of
:mod:`audit.io.neardesc` (a 64x64 grey thumbnail and one hash per view). :func:`scan_mask` decodes a segmentation mask,
normalizes its encoding ({0,255}, {0,1}, palette, 1-bit) and counts class pixels and objects.

Both never raise for a bad file: the problem is recorded in the returned record's ``error`` field with one
of :data:`IMAGE_ERRORS` / :data:`MASK_ERRORS`.

Statistics are computed on a box-reduced copy whose longest side is at most about :data:`STATS_SIDE` pixels
(``Image.reduce`` by an integer factor), which keeps the scan close to bare decode speed; the perceptual hash
uses the same reduced grey image (area-resampled to 32x32, DCT-II, 8x8 low frequencies against their median,
as ``imagehash.phash``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from audit.io.neardesc import THUMB_SIDE, describe_batch, phash_batch, phash_from_gray, thumbnails

__all__ = [
    "IMAGE_ERRORS",
    "MASK_ERRORS",
    "IMAGE_FIELDS",
    "MASK_FIELDS",
    "STATS_SIDE",
    "EXT_FORMATS",
    "scan_image",
    "scan_images",
    "scan_mask",
    "pixel_md5_of",
    "batch_stats",
    "image_stats",
    "phash_batch",
    "thumbnails",
    "THUMB_SIDE",
    "phash_from_gray",
    "to_rgb",
    "pil_limits",
]

STATS_SIDE = 64
DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default limit

IMAGE_ERRORS = (
    "missing_file",  # the path does not exist
    "empty_file",  # zero bytes
    "io_error",  # exists but cannot be read (permissions, a folder, ...)
    "outside_root",  # the path escapes the dataset root
    "not_an_image",  # no known image signature and PIL cannot identify it (text, HTML, ...)
    "truncated",  # a known image format whose data ends early
    "corrupt",  # a known image format that fails to decode for another reason
    "decompression_bomb",  # width*height above max_pixels: refused without decoding
    "unsupported_mode",  # decodes, but the pixel mode cannot be turned into RGB
)
MASK_ERRORS = IMAGE_ERRORS + ("size_mismatch", "unexpected_classes", "color_mask", "missing_mask_path")

IMAGE_FIELDS = (
    "readable", "error", "error_detail", "format", "ext", "ext_mismatch", "width", "height", "aspect", "mode",
    "channels", "bit_depth", "bytes", "exif_orientation", "brightness", "contrast", "saturation", "colorfulness",
    "sharpness", "entropy", "noise", "md5", "pixel_md5", "phash",
)
MASK_FIELDS = (
    "mask_readable", "mask_error", "mask_width", "mask_height", "mask_classes", "mask_empty", "mask_encoding",
    "mask_class_ids", "mask_class_pixels", "mask_class_objects",
)

# Extensions that each format may legitimately carry.
EXT_FORMATS = {
    "JPEG": {"jpg", "jpeg", "jpe", "jfif", "jif"},
    "MPO": {"jpg", "jpeg", "mpo"},
    "PNG": {"png"},
    "GIF": {"gif"},
    "BMP": {"bmp", "dib"},
    "DIB": {"bmp", "dib"},
    "TIFF": {"tif", "tiff"},
    "WEBP": {"webp"},
    "PPM": {"ppm", "pgm", "pbm", "pnm"},
    "ICO": {"ico"},
    "JPEG2000": {"jp2", "j2k", "jpf", "jpx", "j2c"},
    "TGA": {"tga"},
    "PCX": {"pcx"},
    "SGI": {"sgi", "rgb", "rgba", "bw"},
    "DDS": {"dds"},
    "QOI": {"qoi"},
    "AVIF": {"avif"},
    "HEIF": {"heic", "heif", "hif"},
}

# Magic numbers of formats we recognize even when PIL cannot open the (damaged) file.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

_EXIF_ORIENTATION = 0x0112
_EXIF_FORMATS = frozenset({"JPEG", "MPO", "TIFF", "WEBP", "PNG"})



_ADDR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>|<[^<>]* at 0x[0-9a-fA-F]+>| at 0x[0-9a-fA-F]+")


def error_text(e: BaseException, limit: int = 200) -> str:
    """``Type: message`` of a decode error for tables and findings: first line, no object addresses (PIL names
    the in-memory buffer it read, ``<_io.BytesIO object at 0x7f...>``, which differs run to run)."""
    msg = str(e).splitlines()[0] if str(e) else ""
    msg = _ADDR.sub(lambda m: "" if m.group(0).startswith(("<_io.BytesIO", " at")) else "an object", msg)
    return f"{type(e).__name__}: {' '.join(msg.split())}"[:limit]


def _blank_image() -> dict[str, Any]:
    return {k: None for k in IMAGE_FIELDS} | {"readable": False}


def _signature(data: bytes) -> str | None:
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _looks_truncated(data: bytes, fmt: str | None) -> bool:
    """True when a known format's end marker is missing (the usual sign of an interrupted copy)."""
    tail = data[-64:]
    if fmt == "JPEG":
        return b"\xff\xd9" not in tail
    if fmt == "PNG":
        return b"IEND" not in tail
    if fmt == "GIF":
        return not tail.endswith(b";")
    return False


def _header_size(data: bytes, fmt: str | None) -> tuple[int | None, int | None]:
    """Width and height straight from a PNG or GIF header (when PIL refuses to open the file)."""
    if fmt == "PNG" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if fmt == "GIF" and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    return None, None


def _ext(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix
    return suffix[1:].lower() if suffix else ""


def ext_mismatch(ext: str, fmt: str | None) -> bool | None:
    """Whether a file's extension disagrees with its decoded format (None when the format is unknown)."""
    if not fmt:
        return None
    allowed = EXT_FORMATS.get(fmt.upper(), {fmt.lower()})
    return ext not in allowed


def _bit_depth(im: Image.Image, data: bytes) -> int:
    if im.format == "PNG" and len(data) > 24:
        return int(data[24])  # IHDR bit depth: PIL silently reduces 16-bit RGB to 8 bits
    mode = im.mode
    if mode == "1":
        return 1
    if mode.startswith("I;16"):
        return 16
    if mode in ("I", "F"):
        return 32
    return 8


@contextlib.contextmanager
def pil_limits(max_pixels: int) -> Iterator[None]:
    """Make PIL raise on bombs above ``max_pixels`` and on truncated data, restoring the settings after."""
    old_max, old_trunc = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS = max(int(max_pixels), 1)
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF/ICC chatter and PIL's own bomb warning (we check ourselves)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_max, old_trunc


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (16/32-bit integer images are scaled, not clipped)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode == "F" or (arr.size and arr.max() > 65535) or (arr.size and arr.min() < 0):
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        else:
            arr = arr / 257.0
        g = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(g[..., None], 3, axis=2), mode="RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


def scan_image(path: str | os.PathLike | None, *, max_pixels: int = DEFAULT_MAX_PIXELS, stats: bool = True,
               error: str | None = None, pixel_md5: bool = False) -> dict[str, Any]:
    """Read, check and decode one image file; never raises for a bad file.

    Parameters
    ----------
    path
        The file to read. ``None`` together with ``error`` records a problem found before reading.
    max_pixels
        Images whose header says ``width * height > max_pixels`` are refused without decoding
        (``error="decompression_bomb"``).
    stats
        Compute statistics and perceptual hash (False: header and bytes hash only).
    error
        A pre-determined error (e.g. ``outside_root``); the file is not read.
    pixel_md5
        Also hash the decoded RGB pixels (costs about as much as decoding a small JPEG; the profile computes
        it only for images that can be pixel-identical to another, see :func:`pixel_md5_of`).

    Returns
    -------
    dict
        One value per name in :data:`IMAGE_FIELDS`.
    """
    return scan_images([(path, error)], max_pixels=max_pixels, stats=stats, pixel_md5=pixel_md5)[0]


def scan_images(items, *, max_pixels: int = DEFAULT_MAX_PIXELS, stats: bool = True,
                pixel_md5: bool = False) -> list[dict[str, Any]]:
    """:func:`scan_image` for a batch of ``(path, error)`` items; statistics are vectorized over the batch."""
    recs, smalls = [], []
    for path, error in items:
        rec, small = _decode(path, max_pixels=max_pixels, error=error, want_pixels=stats, pixel_md5=pixel_md5)
        recs.append(rec)
        smalls.append(small)
    if stats:
        by_shape: dict[tuple, list[int]] = {}
        for i, sm in enumerate(smalls):
            if sm is not None:
                by_shape.setdefault(sm.shape, []).append(i)
        for idx in by_shape.values():
            st, gray = batch_stats(np.stack([smalls[i] for i in idx]))
            hashes = phash_batch(gray)
            thumbs, codes = describe_batch(gray)
            for j, i in enumerate(idx):
                for k, v in st.items():
                    recs[i][k] = float(v[j])
                recs[i]["phash"] = int(hashes[j])
                recs[i]["_desc"] = (thumbs[j], codes[j])
    return recs


def pixel_md5_of(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """md5 of an image's decoded RGB pixels (as displayed, after EXIF orientation), or None if unreadable."""
    rec, _ = _decode(path, max_pixels=max_pixels, error=None, want_pixels=False, pixel_md5=True)
    return rec["pixel_md5"]


def _decode(path, *, max_pixels: int, error: str | None, want_pixels: bool,
            pixel_md5: bool) -> tuple[dict[str, Any], np.ndarray | None]:
    rec = _blank_image()
    if error is not None or path is None:
        rec["error"] = error or "missing_file"
        return rec, None
    rec["ext"] = _ext(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        rec["error"] = "missing_file"
        return rec, None
    except OSError as e:
        rec["error"], rec["error_detail"] = "io_error", f"{type(e).__name__}: {e.strerror or e}"
        return rec, None
    rec["bytes"] = len(data)
    if not data:
        rec["error"] = "empty_file"
        return rec, None
    rec["md5"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
    sig = _signature(data)
    with pil_limits(max_pixels):
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:  # PIL's own guard (above 2 x max_pixels) fires at open
            rec["format"] = sig
            rec["width"], rec["height"] = _header_size(data, sig)
            rec["error"], rec["error_detail"] = "decompression_bomb", str(e)[:200]
            return rec, None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
            rec["format"] = sig
            if sig is None:
                rec["error"] = "not_an_image"
            else:
                rec["error"] = "truncated" if _looks_truncated(data, sig) else "corrupt"
            rec["error_detail"] = error_text(e)
            rec["ext_mismatch"] = ext_mismatch(rec["ext"], sig)
            return rec, None
        fmt = im.format or sig
        w, h = im.size
        rec.update(format=fmt, width=w, height=h, aspect=(w / h) if h else None, mode=im.mode,
                   channels=len(im.getbands()), bit_depth=_bit_depth(im, data),
                   ext_mismatch=ext_mismatch(rec["ext"], fmt))
        try:
            orientation = im.getexif().get(_EXIF_ORIENTATION) if fmt in _EXIF_FORMATS else None
            rec["exif_orientation"] = int(orientation) if orientation else None
        except Exception:  # a damaged EXIF block is not a damaged image
            rec["exif_orientation"] = None
        if w * h > max_pixels:
            rec["error"] = "decompression_bomb"
            rec["error_detail"] = f"{w}x{h} = {w * h} pixels > max_pixels {max_pixels}"
            return rec, None
        try:
            im.load()
        except Image.DecompressionBombError as e:
            rec["error"], rec["error_detail"] = "decompression_bomb", str(e)[:200]
            return rec, None
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, zlib.error...
            msg = error_text(e)
            rec["error"] = "truncated" if ("truncated" in msg or _looks_truncated(data, sig or fmt)) else "corrupt"
            rec["error_detail"] = msg
            return rec, None
        try:
            if rec["exif_orientation"] and rec["exif_orientation"] != 1:
                im = ImageOps.exif_transpose(im)  # statistics and hashes describe the image as displayed
            rgb = to_rgb(im)
        except Exception as e:
            rec["error"], rec["error_detail"] = "unsupported_mode", error_text(e)
            return rec, None
    rec["readable"] = True
    if pixel_md5:
        hd = hashlib.md5(f"{rgb.width}x{rgb.height}:".encode(), usedforsecurity=False)
        hd.update(rgb.tobytes())
        rec["pixel_md5"] = hd.hexdigest()
    if not want_pixels:
        return rec, None
    rec["noise"] = noise_sigma(rgb)
    k = max(1, -(-max(rgb.width, rgb.height) // STATS_SIDE))  # ceil: longest side <= STATS_SIDE
    small = rgb.reduce(k) if k > 1 else rgb
    return rec, np.asarray(small)


def batch_stats(arr: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Cheap statistics of a batch of RGB images (B x H x W x 3, values in [0, 255]).

    Returns one array per statistic and the luma images (for the perceptual hash):

    * ``brightness``: mean luma (ITU-R 601) / 255, in [0, 1];
    * ``contrast``: RMS contrast, standard deviation of luma / 255;
    * ``saturation``: mean HSV saturation (max - min) / max, in [0, 1];
    * ``colorfulness``: Hasler & Suesstrunk (2003) M = sigma_rgyb + 0.3 mu_rgyb, in 0-255 units;
    * ``sharpness``: variance of the 4-neighbour Laplacian of luma (0-255 units) at the reduced resolution
      (NaN for images under 3 x 3 pixels);
    * ``entropy``: Shannon entropy (bits) of the 256-bin luma histogram.
    """
    arr = np.asarray(arr, dtype=np.float32)
    bsz = arr.shape[0]
    r, g, b = np.moveaxis(arr, -1, 0)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    sat = (mx - mn) / np.maximum(mx, 1e-6)  # 0 where max == 0 because max - min == 0 there
    rg = r - g
    yb = 0.5 * (r + g) - b
    axes = (1, 2)
    colorfulness = np.sqrt(rg.var(axis=axes) + yb.var(axis=axes)) + 0.3 * np.sqrt(
        rg.mean(axis=axes) ** 2 + yb.mean(axis=axes) ** 2)
    if y.shape[1] >= 3 and y.shape[2] >= 3:
        lap = y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:] - 4.0 * y[:, 1:-1, 1:-1]
        sharp = lap.var(axis=axes)
    else:
        sharp = np.full(bsz, np.nan)  # no interior pixel: the Laplacian is undefined
    q = (y + 0.5).astype(np.uint8).reshape(bsz, -1).astype(np.int64)
    hist = np.bincount((q + 256 * np.arange(bsz)[:, None]).ravel(), minlength=256 * bsz).reshape(bsz, 256)
    p = hist / q.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    stats = {
        "brightness": y.mean(axis=axes) / 255.0,
        "contrast": y.std(axis=axes) / 255.0,
        "saturation": sat.mean(axis=axes),
        "colorfulness": colorfulness,
        "sharpness": sharp,
        "entropy": ent,
    }
    return stats, y


NOISE_CROP = 128  # noise is local: measured on the central NOISE_CROP x NOISE_CROP pixels at full resolution


def noise_sigma(rgb: Image.Image) -> float | None:
    """Standard deviation of the image noise in luma (0-255), Immerkaer's fast estimator (1996): the mean absolute
    response to the Laplacian-difference mask [[1,-2,1],[-2,4,-2],[1,-2,1]] (which cancels structure up to second
    order) times sqrt(pi/2) / 6. At full resolution (downsampling averages noise away) on the central crop, so it
    costs the same for any image size; None under 3 x 3 pixels.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> flat = Image.fromarray(np.clip(128 + rng.normal(0, 10, (256, 256)), 0, 255).astype(np.uint8)).convert("RGB")
    >>> round(noise_sigma(flat))
    10
    """
    w, h = rgb.size
    if w < 3 or h < 3:
        return None
    cw, ch = min(w, NOISE_CROP), min(h, NOISE_CROP)
    left, top = (w - cw) // 2, (h - ch) // 2
    y = np.asarray(rgb.crop((left, top, left + cw, top + ch)).convert("L"), dtype=np.int16)
    d = y[:, :-2] - 2 * y[:, 1:-1] + y[:, 2:]  # the mask is separable: [1, -2, 1] along rows, then along columns
    r = d[:-2] - 2 * d[1:-1] + d[2:]  # |r| <= 2040: int16 is exact
    return float(np.sqrt(np.pi / 2) / 6.0 * np.abs(r).mean())


def image_stats(arr: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """:func:`batch_stats` for one RGB image (H x W x 3); returns plain floats and the luma image."""
    st, y = batch_stats(np.asarray(arr)[None])
    return {k: float(v[0]) for k, v in st.items()}, y[0]


# ----------------------------------------------------------------------------------------------------- masks
def _blank_mask() -> dict[str, Any]:
    return {k: None for k in MASK_FIELDS} | {"mask_readable": False}


def scan_mask(path: str | os.PathLike | None, *, n_classes: int | None = None, image_size: tuple | None = None,
              max_pixels: int = DEFAULT_MAX_PIXELS, error: str | None = None,
              count_objects: bool = True) -> dict[str, Any]:
    """Decode a segmentation mask, normalize its encoding and describe it; never raises for a bad file.

    Encodings: 1-bit and ``{0, 1}`` masks are binary; ``{0, 255}`` masks become ``{0, 1}`` when the task has
    at most two classes (otherwise 255 is the conventional "ignore" value); palette (``P``) masks use the
    palette indices; 16-bit masks use their integer values; RGB masks are accepted when grey (R=G=B).

    Parameters
    ----------
    path
        The mask file (``None`` with ``error`` for a problem found before reading).
    n_classes
        Number of classes; values ``>= n_classes`` other than the ignore value 255 are ``unexpected_classes``.
    image_size
        ``(width, height)`` of the image; a different mask size is ``size_mismatch``.
    count_objects
        Count connected components (4-connectivity) per class for the object size distribution.
    """
    rec = _blank_mask()
    if error is not None or path is None:
        rec["mask_error"] = error or "missing_file"
        return rec
    im, err = _open_mask(path, max_pixels)
    if im is None:
        rec["mask_error"] = err
        return rec
    w, h = im.size
    rec.update(mask_width=w, mask_height=h)
    vals, encoding = _mask_values(im, n_classes)
    if vals is None:
        rec["mask_readable"], rec["mask_error"], rec["mask_encoding"] = True, "color_mask", encoding
        return rec
    rec["mask_readable"] = True
    rec["mask_encoding"] = encoding
    ids, counts = np.unique(vals, return_counts=True)
    rec["mask_class_ids"] = ids.astype(np.int64).tolist()
    rec["mask_class_pixels"] = counts.astype(np.int64).tolist()
    rec["mask_classes"] = ",".join(str(int(v)) for v in ids)
    rec["mask_empty"] = bool(np.all((vals == 0) | (vals == 255)))
    if count_objects:
        rec["mask_class_objects"] = _count_objects(vals, ids)
    errors = []
    if image_size is not None and None not in image_size and (w, h) != tuple(image_size):
        errors.append("size_mismatch")
    if n_classes:
        bad = [int(v) for v in ids if (v < 0 or v >= n_classes) and v != 255]
        if bad:
            errors.append("unexpected_classes")
    if errors:
        rec["mask_error"] = errors[0] if len(errors) == 1 else ",".join(errors)
    return rec


def _open_mask(path: str | os.PathLike, max_pixels: int) -> tuple[Image.Image | None, str | None]:
    """The decoded mask, or ``None`` and the error code (missing, unreadable, empty, bomb, corrupt...)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, "missing_file"
    except OSError:
        return None, "io_error"
    if not data:
        return None, "empty_file"
    sig = _signature(data)
    with pil_limits(max_pixels):
        try:
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                return None, "decompression_bomb"
            im.load()
        except Image.DecompressionBombError:
            return None, "decompression_bomb"
        except Exception:
            if sig is None:
                return None, "not_an_image"
            return None, "truncated" if _looks_truncated(data, sig) else "corrupt"
    return im, None


def _mask_values(im: Image.Image, n_classes: int | None) -> tuple[np.ndarray | None, str]:
    """The class id per pixel (int64) and the encoding; ``None`` values for a colour (non-grey RGB) mask."""
    mode = im.mode
    encoding = {"1": "1bit", "P": "palette", "L": "gray", "I": "int", "I;16": "int16"}.get(mode, mode.lower())
    if mode in ("RGB", "RGBA"):
        arr = np.asarray(im.convert("RGB"))
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            return None, "rgb"
        vals = arr[..., 0]
    elif mode == "LA":
        vals = np.asarray(im)[..., 0]
    else:
        vals = np.asarray(im)
    vals = vals.astype(np.int64, copy=False)
    uniq = np.unique(vals)
    if uniq.size and set(uniq.tolist()) <= {0, 255} and 255 in uniq and (n_classes is None or n_classes <= 2):
        vals = (vals == 255).astype(np.int64)
        encoding = "binary_0_255"
    elif mode != "1" and uniq.size and set(uniq.tolist()) <= {0, 1}:
        encoding = "binary_0_1" if (n_classes is None or n_classes <= 2) else encoding
    return vals, encoding


def _count_objects(vals: np.ndarray, ids: np.ndarray) -> list[int]:
    """Connected components (4-connectivity) per class id; 0 for background (0) and ignore (255)."""
    from scipy import ndimage

    objects = []
    for c in ids:
        if c == 0 or c == 255:
            objects.append(0)
            continue
        _, n_obj = ndimage.label(vals == c)
        objects.append(int(n_obj))
    return objects


# ----------------------------------------------------------------------------------------------- workers
def worker_init() -> None:
    try:  # one BLAS/OpenMP thread per worker process: the parallelism is the processes
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


def scan_chunk(items: Sequence[tuple], max_pixels: int, n_classes: int | None, pixel_md5: bool) -> list[dict]:
    """Worker: scan a chunk of ``(path, error, mask_path, mask_error)`` items."""
    recs = scan_images([(p, e) for p, e, _, _ in items], max_pixels=max_pixels, pixel_md5=pixel_md5)
    for rec, (_, _, mp, me) in zip(recs, items, strict=True):
        if mp is not None or me is not None:
            size = (rec["width"], rec["height"]) if rec["readable"] else None
            if size is not None and rec["exif_orientation"] in (5, 6, 7, 8):
                size = (rec["height"], rec["width"])  # masks follow the displayed orientation
            rec.update(scan_mask(mp, n_classes=n_classes, image_size=size, max_pixels=max_pixels, error=me))
    return recs


def pixel_md5_chunk(paths: Sequence[str], max_pixels: int) -> list[str | None]:
    return [pixel_md5_of(p, max_pixels=max_pixels) for p in paths]
