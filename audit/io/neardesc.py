"""Near-duplicate descriptors computed once per image during the scan (numpy and PIL only, no weights).

Per image: a ``DESC_SIDE x DESC_SIDE`` grey thumbnail of the whole image (area-resampled, aspect squashed:
the verification step works on it) and one 64-bit DCT perceptual hash per *view* (:data:`VIEWS`): the whole
image, its mirror image, and windows (centre crops at several scales, corner and edge windows). A copy that was
cropped by up to about 25% per side is close to one window of the original; a mirrored copy is close to the
mirror view. Rescaling, re-encoding and brightness/contrast changes barely move a DCT hash (it is computed on an
area-resampled 32x32 grey image, the coefficients are compared with their median).

The thumbnails and hashes travel with the scan records (``_desc``); the profile's near-duplicate search
(:mod:`audit.profile.neardup`) uses the hashes for candidates and the thumbnails for local verification.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

__all__ = ["THUMB_SIDE", "phash_batch", "phash_from_gray", "thumbnails", "DESC_SIDE", "VIEWS", "N_INDEX", "N_VIEWS",
           "desc_thumb", "view_hashes", "query_columns", "window_matrix", "dct_hash"]

DESC_SIDE = 64
THUMB_SIDE = 16
HASH_SIDE = 16  # each view is area-resampled to 16x16; the hash is its 8x8 lowest DCT frequencies minus DC
_SCALES = (1.0, 0.88, 0.76)


def _windows() -> tuple[tuple[str, float, float, float, float], ...]:
    out = []
    for sx in _SCALES:
        for sy in _SCALES:
            xs = (0.0,) if sx == 1 else (0.0, (1 - sx) / 2, 1 - sx)
            ys = (0.0,) if sy == 1 else (0.0, (1 - sy) / 2, 1 - sy)
            for x0 in xs:
                for y0 in ys:
                    out.append((f"w{sx:.2f}x{sy:.2f}@{x0:.2f},{y0:.2f}", round(x0, 4), round(y0, 4), sx, sy))
    return tuple(out)


# (name, x0, y0, width, height) in image-normalized coordinates; the first is the whole image. Every view is
# an *index* view; the whole image, its centre (0.88) and both mirrored are also *query* views, looked up
# among the index views of every other image (a crop of A is close to one window of A; a mirrored crop's
# mirror image too; a slightly rotated copy's centre is close to the original's centre).
VIEWS: tuple[tuple[str, float, float, float, float], ...] = _windows()
N_INDEX = len(VIEWS)
_CENTRE = next(i for i, v in enumerate(VIEWS) if v[3] == v[4] == 0.88 and v[1] == v[2] == 0.06)
N_VIEWS = N_INDEX + 2  # codes per image: the index views, then the mirrored whole image and centre


def desc_thumb(rgb: Image.Image) -> np.ndarray:
    """``DESC_SIDE x DESC_SIDE`` uint8 grey (ITU-R 601 luma) thumbnail of one RGB image, area-resampled."""
    small = rgb.resize((DESC_SIDE, DESC_SIDE), Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(small.convert("L"), dtype=np.uint8)


def describe_batch(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of a batch of grey images of one shape (B x H x W, 0-255): ``(thumbs, codes)``.

    ``thumbs``: B x :data:`DESC_SIDE` x :data:`DESC_SIDE` uint8, area-resampled (aspect squashed; an input
    smaller than the side is interpolated by the area weights). ``codes``: :func:`view_hashes` of them.
    """
    g = np.asarray(gray, dtype=np.float32)
    ry = window_matrix(g.shape[1], 0.0, 1.0, DESC_SIDE).astype(np.float32)
    t = ry @ g @ window_matrix(g.shape[2], 0.0, 1.0, DESC_SIDE).astype(np.float32).T
    thumbs = np.clip(np.rint(t), 0, 255).astype(np.uint8)
    return thumbs, view_hashes(thumbs)


@lru_cache(maxsize=256)
def window_matrix(n_in: int, lo: float, hi: float, n_out: int = 32) -> np.ndarray:
    """(n_out x n_in) matrix averaging the input over each output pixel's footprint inside ``[lo, hi)``.

    ``lo`` and ``hi`` are fractions of the input length; fractional pixel overlaps are weighted.
    """
    edges = (lo + (hi - lo) * np.arange(n_out + 1) / n_out) * n_in
    a, b = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(b, j + 1) - np.maximum(a, j), 0, None)
    s = overlap.sum(axis=1, keepdims=True)
    return overlap / np.where(s > 0, s, 1.0)


@lru_cache(maxsize=2)
def _dct8(n: int = HASH_SIDE) -> np.ndarray:
    k = np.arange(8)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def dct_hash(g: np.ndarray) -> np.ndarray:
    """63-bit DCT hashes (uint64, top bit 0) of a batch of square grey images: the 8x8 lowest frequencies but
    the DC term, each against their median (brightness and contrast changes leave it unchanged)."""
    d8 = _dct8(g.shape[-1])
    low = (d8 @ g @ d8.T).reshape(g.shape[0], 64)[:, 1:]
    bits = np.concatenate([np.zeros((len(low), 1), bool), low > np.median(low, axis=1, keepdims=True)], axis=1)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


@lru_cache(maxsize=8)
def _view_operators(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """DCT-of-window operators on an ``n x n`` base: per distinct row window ``D8 @ Ry`` (8 x n), per view
    ``D8 @ Rx`` (8 x n; mirrored views reverse the resampled columns), and each view's row-window index."""
    d8 = _dct8(HASH_SIDE)
    ys: dict[tuple[float, float], int] = {}
    my, mx, yi = [], [], []
    specs = [(x0, y0, w, h, False) for _, x0, y0, w, h in VIEWS]
    specs += [(VIEWS[v][1], VIEWS[v][2], VIEWS[v][3], VIEWS[v][4], True) for v in (0, _CENTRE)]
    for x0, y0, w, h, flip in specs:
        key = (y0, h)
        if key not in ys:
            ys[key] = len(my)
            my.append(d8 @ window_matrix(n, y0, round(y0 + h, 4), HASH_SIDE))
        yi.append(ys[key])
        if flip:
            mx.append(d8 @ window_matrix(n, round(1 - x0 - w, 4), round(1 - x0, 4), HASH_SIDE)[::-1])
        else:
            mx.append(d8 @ window_matrix(n, x0, round(x0 + w, 4), HASH_SIDE))
    return (np.stack(my).astype(np.float32), np.stack(mx).astype(np.float32), np.asarray(yi, np.intp),
            np.arange(len(specs)))


def view_hashes(thumbs: np.ndarray) -> np.ndarray:
    """Hashes of every view of a batch of square thumbnails (B x S x S): uint64 array B x :data:`N_VIEWS`.

    Columns ``0 .. N_INDEX - 1`` are :data:`VIEWS`; then the mirrored whole image and mirrored centre. Each
    view's 8x8 low DCT frequencies are one product ``(D8 Ry) base (D8 Rx)^T`` on a 32x32 base image.
    """
    g = np.asarray(thumbs, dtype=np.float32)
    if g.ndim == 2:
        g = g[None]
    if g.shape[1] % 2 == 0 and g.shape[1] > 32:  # hash from a 2x2-averaged base
        g = 0.25 * (g[:, 0::2, 0::2] + g[:, 1::2, 0::2] + g[:, 0::2, 1::2] + g[:, 1::2, 1::2])
    my, mx, yi, _ = _view_operators(g.shape[1])
    rows = np.matmul(my[None], g[:, None])  # B x row windows x 8 x S
    low = np.matmul(rows[:, yi], mx.transpose(0, 2, 1)[None]).reshape(g.shape[0], len(yi), 64)[:, :, 1:]
    bits = low > np.median(low, axis=2, keepdims=True)
    bits = np.concatenate([np.zeros(bits.shape[:2] + (1,), bool), bits], axis=2)
    return np.packbits(bits, axis=2).view(">u8")[..., 0].astype(np.uint64)


def query_columns() -> tuple[int, ...]:
    """Columns of :func:`view_hashes` that are query views (whole, centre, mirrored whole, mirrored centre)."""
    return (0, _CENTRE, N_INDEX, N_INDEX + 1)


# ------------------------------------------------------------------------- whole-image perceptual hash
@lru_cache(maxsize=64)
def _area_matrix(n_in: int, n_out: int = 32) -> np.ndarray:
    """Resampling matrix (n_out x n_in) that averages the input over each output pixel's footprint."""
    scale = n_in / n_out
    edges = np.arange(n_out + 1) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


@lru_cache(maxsize=4)
def _dct_matrix(n: int = 32) -> np.ndarray:
    """Unnormalized DCT-II matrix, as ``scipy.fft.dct(x, type=2)``: y_k = 2 sum_n x_n cos(pi k (2n+1) / 2N)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def phash_batch(gray: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes (as ``imagehash.phash``) of a batch of grey images (B x H x W), as int64.

    Area-resample to 32 x 32, unnormalized DCT-II on both axes, keep the 8 x 8 lowest frequencies, set a bit
    where a coefficient exceeds their median. Bit order follows imagehash (row-major, first bit most
    significant), so ``h & (2**64 - 1)`` matches ``int(str(imagehash.phash(im)), 16)`` up to resampling
    differences (about one bit in 64 on natural images).
    """
    g = np.asarray(gray, dtype=np.float64)
    g32 = _area_matrix(g.shape[1]) @ g @ _area_matrix(g.shape[2]).T
    d8 = _dct_matrix()[:8]
    low = (d8 @ g32 @ d8.T).reshape(g.shape[0], 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64).view(np.int64)


def thumbnails(gray: np.ndarray, size: int = THUMB_SIDE) -> np.ndarray:
    """Area-resampled ``size x size`` uint8 grey thumbnails of a batch (B x H x W): near-duplicate verification."""
    g = np.asarray(gray, dtype=np.float64)
    t = _area_matrix(g.shape[1], size) @ g @ _area_matrix(g.shape[2], size).T
    return np.clip(np.rint(t), 0, 255).astype(np.uint8).reshape(g.shape[0], size * size)


def phash_from_gray(gray: np.ndarray) -> int:
    """:func:`phash_batch` for one grey image."""
    return int(phash_batch(np.asarray(gray)[None])[0])
