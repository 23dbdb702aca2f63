"""Bundled demo datasets, built only from data that ships inside installed packages.

Both are made from scikit-learn's 1,797 handwritten digits (8x8), upscaled and rendered in colour, with
known, planted problems so every stage of the audit has something true to find.

Classification demo (``build_classify``), ~1,700 images of 32x32, 10 classes, 3 domains (``site``):

* ``studio`` and ``phone`` (JPEG) and ``scanner`` (PNG, blurred, low contrast, noisy): a covariate shift
  and a file-format shortcut on the domain;
* attribute ``background`` (warm/cool) spuriously tied to the label (digits 0-4 mostly warm, 5-9 mostly
  cool) in ``studio`` and ``phone`` but not in ``scanner``: the shortcut a held-out domain exposes;
* attribute ``ink`` (black/navy) independent of everything: a control that must raise nothing;
* class imbalance (digit 9 kept at 25%, digit 8 at 50%);
* exact duplicates across splits (split leakage), two of them with a different label (label conflict),
  and near duplicates (re-encoded, slightly brighter);
* broken files: a truncated JPEG, a zero-byte file, a text file named ``.jpg``, and a row whose file is
  missing.

Segmentation demo (``build_segment``), 600 images of 32x32 with per-pixel masks: classes ``background``,
``low_digit`` (strokes of 0-4) and ``high_digit`` (strokes of 5-9); domains ``day``, ``dusk`` and
``fog`` (low contrast + blur: the domain shift); one mask of the wrong size.

Same seed -> byte-identical files.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["build_classify", "build_segment", "DemoData", "CLASSIFY_ROLES", "SEGMENT_ROLES", "SEGMENT_CLASSES", "SIZE",
           "tree_digest"]

SIZE = 32
WARM = np.array([236, 196, 150], dtype=np.float32)
COOL = np.array([150, 190, 232], dtype=np.float32)
INKS = {"black": np.array([20, 20, 20], dtype=np.float32),
        "navy": np.array([12, 14, 70], dtype=np.float32)}  # same luminance as black: ink must not change difficulty

CLASSIFY_ROLES = {
    "filepath": "path",
    "label": "digit",
    "domain": "site",
    "split": "split",
    "group": "writer",
    "attrs": ["background", "ink"],
}
SEGMENT_ROLES = {
    "filepath": "image",
    "mask": "mask",
    "domain": "weather",
    "split": "split",
    "attrs": ["background"],
}
SEGMENT_CLASSES = ["background", "low_digit", "high_digit"]


@dataclass
class DemoData:
    """Where a demo dataset was written and how to read it."""

    table: Path
    root: Path
    roles: dict
    task: str
    classes: list[str] | None = None


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(int)


def _upscale(img8: np.ndarray) -> np.ndarray:
    """8x8 intensities in [0, 1] -> SIZE x SIZE float intensities (bicubic, clipped)."""
    im = Image.fromarray((img8 * 255).astype(np.uint8), mode="L").resize((SIZE, SIZE), Image.BICUBIC)
    return np.asarray(im, dtype=np.float32) / 255.0


def _render(ink: np.ndarray, bg: np.ndarray, fg: np.ndarray, rng: np.random.Generator, *, noise: float) -> np.ndarray:
    a = ink[..., None]
    img = bg * (1 - a) + fg * a
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _save(arr: np.ndarray, path: Path, fmt: str, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if fmt == "JPEG":
        im.save(path, format="JPEG", quality=quality, optimize=False)
    else:
        im.save(path, format="PNG", optimize=False)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _split_for(rng: np.random.Generator) -> str:
    u = rng.random()
    return "train" if u < 0.7 else ("val" if u < 0.85 else "test")


def build_classify(out: Path, *, seed: int = 0) -> DemoData:
    """Write the classification demo under ``out`` and return its table and roles."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(seed)
    images, targets = _digits()
    keep_p = np.where(targets == 9, 0.25, np.where(targets == 8, 0.5, 1.0))
    keep = rng.random(len(targets)) < keep_p
    idx = np.flatnonzero(keep)
    sites = np.array(["studio", "phone", "scanner"])
    site_of = sites[rng.choice(3, size=len(idx), p=[0.4, 0.35, 0.25])]
    header = ["path", "digit", "site", "split", "writer", "background", "ink"]
    rows: list[list] = []
    writer_split: dict[str, str] = {}
    for k, (i, site) in enumerate(zip(idx, site_of, strict=False)):
        label = int(targets[i])
        if site == "scanner":
            warm = rng.random() < 0.5
        else:
            warm = rng.random() < (0.9 if label < 5 else 0.1)
        bg_name = "warm" if warm else "cool"
        ink_name = "black" if rng.random() < 0.5 else "navy"
        ink = _upscale(images[i])
        bg = (WARM if warm else COOL) + rng.normal(0, 6, 3)
        if site == "scanner":
            fg = INKS[ink_name] * 0.5 + bg * 0.5  # low contrast
            arr = _render(ink, bg, fg, rng, noise=14.0)
            arr = np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(1.0)))
            fmt, ext = "PNG", "png"
        elif site == "phone":
            fg = INKS[ink_name]
            arr = _render(ink, bg * 0.92 + np.array([0, 8, 0]), fg, rng, noise=6.0)
            fmt, ext = "JPEG", "jpg"
        else:
            fg = INKS[ink_name]
            arr = _render(ink, bg, fg, rng, noise=3.0)
            fmt, ext = "JPEG", "jpg"
        rel = f"images/{site}/{label}/{site}_{k:05d}.{ext}"
        _save(arr, out / rel, fmt, quality=92 if site == "studio" else 80)
        writer = f"w{site[:2]}{k // 4:04d}"  # ~4 samples per writer: the resampling cluster
        if writer not in writer_split:  # splits respect writers: no writer in two splits (no planted leak here)
            writer_split[writer] = _split_for(rng)
        rows.append([rel, str(label), site, writer_split[writer], writer, bg_name, ink_name])

    # Exact duplicates across splits (split leakage); two of them relabelled (label conflict).
    train_rows = [r for r in rows if r[3] == "train" and r[0].endswith(".jpg")]
    picks = rng.choice(len(train_rows), size=10, replace=False)
    for j, p in enumerate(picks[:8]):
        src = train_rows[p]
        rel = src[0].rsplit(".", 1)[0] + "_copy.jpg"
        shutil.copyfile(out / src[0], out / rel)
        label = src[1] if j >= 2 else str((int(src[1]) + 1) % 10)
        rows.append([rel, label, src[2], "test", src[4] + "c", src[5], src[6]])
    # Near duplicates: re-encoded at another quality and slightly brighter.
    for p in picks[8:]:
        src = train_rows[p]
        rel = src[0].rsplit(".", 1)[0] + "_near.jpg"
        arr = np.asarray(Image.open(out / src[0]).convert("RGB"), dtype=np.int16)
        _save(np.clip(arr + 6, 0, 255).astype(np.uint8), out / rel, "JPEG", quality=70)
        rows.append([rel, src[1], src[2], "val", src[4] + "n", src[5], src[6]])
    # Broken files.
    good = out / train_rows[0][0]
    broken = out / "images/studio/3/broken_truncated.jpg"
    broken.write_bytes(good.read_bytes()[:120])
    (out / "images/studio/4/broken_empty.jpg").write_bytes(b"")
    (out / "images/phone/1/broken_text.jpg").write_text("this is not an image\n")
    rows.append(["images/studio/3/broken_truncated.jpg", "3", "studio", "train", "wbroken1", "warm", "black"])
    rows.append(["images/studio/4/broken_empty.jpg", "4", "studio", "train", "wbroken2", "warm", "navy"])
    rows.append(["images/phone/1/broken_text.jpg", "1", "phone", "val", "wbroken3", "warm", "black"])
    rows.append(["images/phone/2/missing_file.jpg", "2", "phone", "train", "wbroken4", "warm", "black"])
    table = out / "manifest.csv"
    _write_csv(table, header, rows)
    return DemoData(table=table, root=out, roles=dict(CLASSIFY_ROLES), task="classify")


def build_segment(out: Path, *, seed: int = 0, n: int = 600) -> DemoData:
    """Write the segmentation demo (images + index masks) under ``out``."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(seed + 1)
    images, targets = _digits()
    idx = rng.choice(len(targets), size=n, replace=False)
    weathers = np.array(["day", "dusk", "fog"])
    w_of = weathers[rng.choice(3, size=n, p=[0.4, 0.35, 0.25])]
    header = ["image", "mask", "weather", "split", "background", "digit"]
    rows = []
    for k, (i, w) in enumerate(zip(idx, w_of, strict=False)):
        label = int(targets[i])
        ink = _upscale(images[i])
        cls = 1 if label < 5 else 2
        mask = np.where(ink > 0.45, cls, 0).astype(np.uint8)
        warm = rng.random() < 0.5
        bg = (WARM if warm else COOL) + rng.normal(0, 6, 3)
        fg = INKS["black"] if cls == 1 else np.array([150, 20, 20], dtype=np.float32)
        if w == "fog":
            fg = fg * 0.45 + bg * 0.55
            arr = _render(ink, bg, fg, rng, noise=12.0)
            arr = np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(0.8)))
        elif w == "dusk":
            arr = _render(ink, bg * 0.6, fg * 0.8, rng, noise=6.0)
        else:
            arr = _render(ink, bg, fg, rng, noise=3.0)
        rel = f"images/{w}/{w}_{k:05d}.png"
        mrel = f"masks/{w}/{w}_{k:05d}.png"
        _save(arr, out / rel, "PNG")
        (out / mrel).parent.mkdir(parents=True, exist_ok=True)
        if k == 7:  # one mask of the wrong size: must be reported, not crash anything
            Image.fromarray(mask).resize((SIZE // 2, SIZE // 2), Image.NEAREST).save(out / mrel)
        else:
            Image.fromarray(mask, mode="L").save(out / mrel, format="PNG", optimize=False)
        rows.append([rel, mrel, w, _split_for(rng), "warm" if warm else "cool", str(label)])
    table = out / "manifest.csv"
    _write_csv(table, header, rows)
    return DemoData(table=table, root=out, roles=dict(SEGMENT_ROLES), task="segment", classes=list(SEGMENT_CLASSES))


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and bytes (for determinism tests)."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()

