"""Generated images for the near-duplicate benchmark and tests: varied procedural scenes, transformed copies and
hard negatives (similar scenes that are not copies; different scenes on one periodic texture; homogeneous
"fundus-like" images with the same circular layout and colours and a different fine vessel tree). numpy + PIL
only, deterministic in the seed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

__all__ = ["scene", "similar_scene", "texture_twins", "fundus", "TRANSFORMS", "transform"]


def _gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    t = np.clip(0.5 + (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5)), 0, 1)[..., None]
    return c0 * (1 - t) + c1 * t


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    kind = rng.integers(3)
    if kind == 0:  # stripes
        f, a = rng.uniform(0.03, 0.2), rng.uniform(0, np.pi)
        return 30 * np.sin(f * (np.cos(a) * xx + np.sin(a) * yy))
    if kind == 1:  # checker-ish
        f = rng.uniform(0.05, 0.15)
        return 25 * np.sign(np.sin(f * xx) * np.sin(f * yy))
    small = rng.normal(0, 30, (max(2, h // 16), max(2, w // 16)))  # blotches
    return np.asarray(Image.fromarray(small.astype(np.float32)).resize((w, h), Image.Resampling.BICUBIC))


def _layout(rng: np.random.Generator) -> dict:
    return {"bg": rng.integers(2**31), "tex": rng.integers(2**31), "noise": rng.integers(2**31),
            "shapes": [(int(rng.integers(4)), rng.uniform(0.05, 0.95, 2), rng.uniform(0.08, 0.35, 2),
                        tuple(int(c) for c in rng.integers(0, 256, 3)), float(rng.uniform(0, 180)))
                       for _ in range(int(rng.integers(3, 9)))]}


def _render(lay: dict, w: int, h: int) -> Image.Image:
    base = _gradient(np.random.default_rng(lay["bg"]), w, h)
    sx, sy = lay.get("tex_shift", (0, 0))  # the texture's phase: drawn larger and cut
    base = base + _texture(np.random.default_rng(lay["tex"]), w + sx, h + sy)[sy:, sx:, None]
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    s = max(w, h)
    for kind, (cx, cy), (rw, rh), col, rot in lay["shapes"]:
        x, y, a, b = cx * w, cy * h, rw * s / 2, rh * s / 2
        if kind == 0:
            d.ellipse([x - a, y - b, x + a, y + b], fill=col)
        elif kind == 1:
            d.rectangle([x - a, y - b, x + a, y + b], fill=col)
        elif kind == 2:
            t = np.deg2rad(rot) + np.array([0, 2.1, 4.2])
            d.polygon([(x + a * np.cos(q), y + b * np.sin(q)) for q in t], fill=col)
        else:
            d.line([(x - a, y - b), (x + a, y + b)], fill=col, width=max(2, int(s * 0.02)))
    arr = np.asarray(im, dtype=np.float64) + np.random.default_rng(lay["noise"]).normal(0, 6, (h, w, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def scene(rng: np.random.Generator, w: int = 256, h: int = 256) -> tuple[Image.Image, dict]:
    """A random procedural scene (gradient, texture, 3-8 shapes, noise) and its layout (for look-alikes)."""
    lay = _layout(rng)
    return _render(lay, w, h), lay


def similar_scene(rng: np.random.Generator, lay: dict, w: int = 256, h: int = 256) -> Image.Image:
    """A look-alike that is not a copy: same background and palette, the same kind of texture drawn anew,
    the same shapes moved, resized and sometimes changed."""
    tex_kind = int(np.random.default_rng(lay["tex"]).integers(3))
    seed = int(rng.integers(2**31))
    while int(np.random.default_rng(seed).integers(3)) != tex_kind:
        seed = int(rng.integers(2**31))
    new = dict(lay, noise=rng.integers(2**31), tex=seed)
    shapes = []
    for kind, c, r, col, rot in lay["shapes"]:
        shapes.append((kind if rng.random() < 0.7 else int(rng.integers(4)),
                       np.clip(c + rng.normal(0, 0.15, 2), 0.05, 0.95), r * rng.uniform(0.7, 1.3, 2), col,
                       rot + rng.uniform(-40, 40)))
    new["shapes"] = shapes
    return _render(new, w, h)


def texture_twins(rng: np.random.Generator, w: int = 256, h: int = 256) -> tuple[Image.Image, Image.Image]:
    """Two different scenes on one background: the same colour gradient and periodic texture (stripes or checker,
    same frequency and angle, another phase), other (few, small) shapes, other noise. The stripes agree in every
    region they show, so a local test that counts agreeing regions pairs them unless it discounts content that
    repeats itself (how 100,000 generated scenes produced 328 false pairs)."""
    seed = int(rng.integers(2**31))
    while int(np.random.default_rng(seed).integers(3)) == 2:  # stripes or checker, not blotches
        seed = int(rng.integers(2**31))
    def shapes():  # a few small shapes: the texture fills most of the frame
        return [(int(rng.integers(4)), rng.uniform(0.1, 0.9, 2), rng.uniform(0.05, 0.15, 2),
                 tuple(int(c) for c in rng.integers(0, 256, 3)), float(rng.uniform(0, 180)))
                for _ in range(int(rng.integers(2, 5)))]

    a = dict(_layout(rng), tex=seed, shapes=shapes())
    b = dict(a, shapes=shapes(), noise=rng.integers(2**31), tex_shift=tuple(int(v) for v in rng.integers(0, 64, 2)))
    return _render(a, w, h), _render(b, w, h)


def fundus(rng: np.random.Generator, size: int = 256) -> Image.Image:
    """A fundus-like photograph: black surround, orange disc, bright optic disc, dark fovea, a random vessel tree.

    Every call has the same layout and colours (the optic disc sits left or right, as in left and right eyes);
    only the vessel tree (branching random walks) and a faint background mottle differ.
    """
    s = size
    yy, xx = np.mgrid[0:s, 0:s] / s
    r = np.hypot(xx - 0.5, yy - 0.5)
    side = 0.32 if rng.random() < 0.5 else 0.68
    od = np.exp(-(((xx - side) ** 2 + (yy - 0.5) ** 2) / 0.004))
    fov = np.exp(-(((xx - (1 - side + 0.5) / 2 - 0.02) ** 2 + (yy - 0.5) ** 2) / 0.01))
    base = np.stack([200 - 40 * r, 90 - 30 * r, 40 - 10 * r], -1) * (1 - 0.6 * r[..., None])
    mott = np.asarray(Image.fromarray(rng.normal(0, 6, (16, 16)).astype(np.float32)).resize((s, s),
                                                                                         Image.Resampling.BICUBIC))
    base = base + mott[..., None] + od[..., None] * np.array([55, 120, 90]) - fov[..., None] * np.array([50, 30, 10])
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)

    def branch(x, y, ang, width, depth):
        for _ in range(int(rng.integers(8, 16))):
            ang += rng.normal(0, 0.25)
            nx, ny = x + np.cos(ang) * s * 0.03, y + np.sin(ang) * s * 0.03
            d.line([(x, y), (nx, ny)], fill=(120, 30, 20), width=max(1, int(width)))
            x, y = nx, ny
            if depth < 4 and rng.random() < 0.18:
                branch(x, y, ang + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9), width * 0.7, depth + 1)
        if depth < 4:
            branch(x, y, ang + rng.uniform(0.2, 0.6), width * 0.7, depth + 1)

    cx, cy = side * s, 0.5 * s
    for a in rng.uniform(0, 2 * np.pi, int(rng.integers(4, 7))):
        branch(cx, cy, a, s * 0.018, 0)
    arr = np.asarray(im, dtype=np.float64)
    arr[r > 0.46] = 0
    arr = arr + rng.normal(0, 2, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))


def _jpeg(im: Image.Image, q: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _crop(im, rng):
    w, h = im.size
    fw, fh = rng.uniform(0.75, 0.92, 2)
    x0, y0 = rng.uniform(0, 1 - fw) * w, rng.uniform(0, 1 - fh) * h
    return im.crop((int(x0), int(y0), int(x0 + fw * w), int(y0 + fh * h)))


def _rescale(im, rng):
    f = float(rng.choice([0.5, 0.7, 1.5, 2.0]))
    return im.resize((max(8, int(im.width * f)), max(8, int(im.height * f))), Image.Resampling.LANCZOS)


def _rotate(im, rng):
    a = float(rng.uniform(2, 5) * rng.choice([-1, 1]))
    return im.rotate(a, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))


def _brightness(im, rng):
    return ImageEnhance.Brightness(im).enhance(float(rng.choice([0.85, 1.15])))


def _contrast(im, rng):
    return ImageEnhance.Contrast(im).enhance(float(rng.choice([0.85, 1.15])))


def _combo(im, rng):
    return _jpeg(_rescale(_crop(im, rng), rng), 60)


TRANSFORMS = {
    "crop": _crop,
    "rescale": _rescale,
    "jpeg40": lambda im, rng: _jpeg(im, 40),
    "brightness": _brightness,
    "contrast": _contrast,
    "hflip": lambda im, rng: ImageOps.mirror(im),
    "rotate": _rotate,
    "crop+rescale+jpeg": _combo,
}


def transform(im: Image.Image, name: str, rng: np.random.Generator) -> Image.Image:
    """``im`` under the named transform of :data:`TRANSFORMS` (random parameters drawn from ``rng``)."""
    return TRANSFORMS[name](im, rng)
