"""Small generated multi-domain image sets (shapes in four styles), for probe tests and the pretrained benchmark.

Classes are shapes (``circle``, ``square``, ``triangle``, ``cross``); domains are rendering styles that shift the
input distribution the way PACS's do: ``photo`` (textured noisy background, shaded filled shape), ``cartoon``
(flat bright colours, black outline), ``art`` (blurred brush-like colour fields), ``sketch`` (black strokes on
white, no fill). Same seed -> identical files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["SHAPES", "STYLES", "make_domain_images", "make_segment_images"]

SHAPES = ("circle", "square", "triangle", "cross")
STYLES = ("photo", "cartoon", "art", "sketch")


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | tuple:
    if shape == "circle":
        return (cx - r, cy - r, cx + r, cy + r)
    if shape == "square":
        return (cx - r, cy - r, cx + r, cy + r)
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    w = r * 0.35
    return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w), (cx + w, cy + w),
            (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w)]


def _draw(d: ImageDraw.ImageDraw, shape: str, xy, *, fill, outline, width: int) -> None:
    if shape == "circle":
        d.ellipse(xy, fill=fill, outline=outline, width=width)
    elif shape == "square":
        d.rectangle(xy, fill=fill, outline=outline, width=width)
    else:
        d.polygon(xy, fill=fill, outline=outline, width=width)


def _render(shape: str, style: str, size: int, rng: np.random.Generator) -> Image.Image:
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    r = rng.uniform(0.18, 0.3) * size
    xy = _outline(shape, cx, cy, r)
    colour = tuple(int(c) for c in rng.integers(30, 230, 3))
    if style == "photo":
        bg = rng.normal(128, 40, (size, size, 3)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(bg).filter(ImageFilter.GaussianBlur(2))
        _draw(ImageDraw.Draw(im), shape, xy, fill=colour, outline=None, width=1)
        arr = np.asarray(im, dtype=np.float32) + rng.normal(0, 8, (size, size, 3))
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if style == "cartoon":
        im = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(180, 255, 3)))
        _draw(ImageDraw.Draw(im), shape, xy, fill=colour, outline=(0, 0, 0), width=max(2, size // 24))
        return im
    if style == "art":
        bg = np.zeros((size, size, 3), np.float32) + rng.uniform(60, 200, 3)
        for _ in range(6):  # brush-like colour fields
            y0, x0 = rng.integers(0, size, 2)
            bg[max(0, y0 - size // 4):y0 + size // 4, max(0, x0 - size // 3):x0 + size // 3] += rng.normal(0, 50, 3)
        im = Image.fromarray(bg.clip(0, 255).astype(np.uint8))
        _draw(ImageDraw.Draw(im), shape, xy, fill=colour, outline=None, width=1)
        return im.filter(ImageFilter.GaussianBlur(size / 48))
    im = Image.new("RGB", (size, size), (250, 250, 250))
    _draw(ImageDraw.Draw(im), shape, xy, fill=None, outline=(20, 20, 20), width=max(1, size // 40))
    return im


def make_domain_images(out: Path, *, per_class: int = 10, size: int = 96, seed: int = 0,
                       styles=STYLES, shapes=SHAPES) -> pd.DataFrame:
    """Write ``per_class`` PNGs per shape and style under ``out``; the table has columns ``sample_id, path (absolute),
    label, domain, group`` (one group per image)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    rows = []
    for style in styles:
        for shape in shapes:
            for i in range(per_class):
                rel = f"{style}/{shape}/{style}_{shape}_{i:04d}.png"
                p = out / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                _render(shape, style, size, rng).save(p, format="PNG")
                rows.append({"sample_id": rel, "path": str(p), "label": shape, "domain": style, "group": rel})
    return pd.DataFrame(rows)



def _seg_sample(style: str, size: int, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """One filled shape on a ``photo`` (blurred noise) or ``art`` (colour fields) background, and its 0/1 mask."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    xy = _outline(shape, cx, cy, rng.uniform(0.15, 0.3) * size)
    if style == "photo":
        bg = rng.normal(128, 40, (size, size, 3)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(bg).filter(ImageFilter.GaussianBlur(2))
    else:
        arr = np.zeros((size, size, 3), np.float32) + rng.uniform(60, 200, 3)
        for _ in range(6):
            y0, x0 = rng.integers(0, size, 2)
            arr[max(0, y0 - size // 4):y0 + size // 4, max(0, x0 - size // 3):x0 + size // 3] += rng.normal(0, 50, 3)
        im = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    _draw(ImageDraw.Draw(im), shape, xy, fill=tuple(int(c) for c in rng.integers(30, 230, 3)), outline=None, width=1)
    mask = Image.new("L", (size, size), 0)
    _draw(ImageDraw.Draw(mask), shape, xy, fill=1, outline=None, width=1)
    return im, mask


def make_segment_images(out: Path, *, n: int = 24, size: int = 96, seed: int = 0,
                        styles=("photo", "art")) -> pd.DataFrame:
    """``n`` images per style of one filled shape on a textured background, with its mask PNG (``0`` background,
    ``1`` shape); the table has ``sample_id, path, mask`` (absolute paths) and ``domain`` (the style)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    rows = []
    for style in styles:
        for i in range(n):
            im, mask = _seg_sample(style, size, rng)
            rel = f"{style}/img_{i:04d}.png"
            p, mp = out / "images" / rel, out / "masks" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            mp.parent.mkdir(parents=True, exist_ok=True)
            im.save(p, format="PNG")
            mask.save(mp, format="PNG")
            rows.append({"sample_id": rel, "path": str(p), "mask": str(mp), "domain": style})
    return pd.DataFrame(rows)
