"""Views of the gallery page: failure and segmentation samples from predictions.parquet, thumbnails, overlays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.errors import RunDirError
from audit.rundir import RunDir
from audit.views.tables import manifest_rows, read_manifest_columns

__all__ = [
    "failure_sample",
    "segmentation_sample",
    "thumbnail",
    "colorize_mask",
    "overlay",
    "SEG_PALETTE",
    "SEG_COLOUR_NAMES",
]

# Colours of segmentation class indices (0 = background, transparent in overlays).
SEG_COLOUR_NAMES = (
    "clear",
    "red",
    "green",
    "yellow",
    "blue",
    "orange",
    "purple",
    "cyan",
    "magenta",
    "lime",
    "pink",
    "teal",
)
SEG_PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
    ],
    dtype=np.uint8,
)


def _pred_filters(run: RunDir, columns: Sequence[str], **filters: Any):
    """Read predictions.parquet filtered by equality on string columns, with pyarrow (1M rows stay cheap)."""
    import pyarrow.dataset as pads

    path = run.file("predictions.parquet")
    if not path.exists():
        return None
    try:
        ds = pads.dataset(path, format="parquet")
        names = set(ds.schema.names)
        expr = None
        for col, val in filters.items():
            if val is None or col not in names:
                continue
            e = pads.field(col) == str(val)
            expr = e if expr is None else expr & e
        cols = [c for c in columns if c in names]
        df = ds.to_table(columns=cols, filter=expr).to_pandas()
    except Exception as e:
        raise RunDirError(f"cannot read {path}: {e}") from None
    return df


def _held_out(p: pd.DataFrame, held_out: bool | None) -> pd.DataFrame:
    """Prediction rows of held-out domains (True), of training domains (False), or all (None)."""
    if held_out is None or "held_out" not in p.columns:
        return p
    flag = p["held_out"].astype("boolean").fillna(False)
    return p[flag == bool(held_out)]


def failure_sample(
    run: RunDir,
    *,
    model: str | None = None,
    protocol: str | None = None,
    fold: str | None = None,
    role: str | None = "test",
    group_col: str | None = None,
    group_value: str | None = None,
    true_class: str | None = None,
    held_out: bool | None = None,
    per_image: bool = False,
    n: int = 24,
    order: str = "confident",
    seed: int = 0,
) -> tuple[pd.DataFrame, int]:
    """Misclassified samples for the gallery and how many there are in the selection.

    ``order`` ``confident`` shows the most confidently wrong first; ``random`` draws a seeded sample.
    Only ``n`` rows are returned (images are loaded for those alone). ``group_col`` is any manifest column.
    ``held_out`` keeps only held-out-domain (True) or in-domain (False) predictions; ``per_image`` keeps one
    row per sample (its most confident wrong prediction), so an image scored in several folds appears once
    and the total counts images.
    """
    cols = [
        "sample_id",
        "model",
        "protocol",
        "fold",
        "role",
        "y_true",
        "y_pred",
        "confidence",
        "test_domain",
        "held_out",
    ]
    p = _pred_filters(run, cols, model=model, protocol=protocol, fold=fold, role=role, y_true=true_class)
    if p is None or p.empty or "y_pred" not in p.columns:
        return pd.DataFrame(columns=cols + ["filepath"]), 0
    p = _held_out(p, held_out)
    wrong = p[p["y_true"].astype("string") != p["y_pred"].astype("string")]
    if per_image and len(wrong):
        conf = (
            pd.to_numeric(wrong["confidence"], errors="coerce")
            if "confidence" in wrong.columns
            else pd.Series(0.0, index=wrong.index)
        )
        wrong = (
            wrong.assign(_c=conf.fillna(-1.0))
            .sort_values("_c", ascending=False, kind="mergesort")
            .drop_duplicates("sample_id")
            .drop(columns="_c")
        )
    if group_col and group_value is not None:
        m = read_manifest_columns(run, [group_col])
        if group_col in m.columns:
            ids = m.loc[m[group_col].astype("string") == group_value, "sample_id"]
            wrong = wrong[wrong["sample_id"].astype("string").isin(ids)]
    total = len(wrong)
    if order == "random":
        wrong = wrong.sample(n=min(n, total), random_state=seed) if total else wrong
    else:
        conf = pd.to_numeric(wrong.get("confidence"), errors="coerce") if "confidence" in wrong.columns else None
        wrong = (
            wrong.assign(_c=conf if conf is not None else 0.0)
            .sort_values(["_c", "sample_id"], ascending=[False, True], kind="mergesort")
            .drop(columns="_c")
            .head(n)
        )
    extra = ["filepath", group_col] if group_col and group_col not in wrong.columns else ["filepath"]
    m = manifest_rows(run, wrong["sample_id"].astype(str).tolist(), extra)
    out = wrong.reset_index(drop=True).astype({"sample_id": "string"}).merge(m, on="sample_id", how="left")
    return out, total


def segmentation_sample(
    run: RunDir,
    *,
    model: str | None = None,
    protocol: str | None = None,
    fold: str | None = None,
    role: str | None = "test",
    group_col: str | None = None,
    group_value: str | None = None,
    held_out: bool | None = None,
    per_image: bool = False,
    n: int = 12,
    order: str = "worst",
    seed: int = 0,
) -> tuple[pd.DataFrame, int]:
    """Segmentation samples with their per-image IoU, worst first (or a seeded random draw).

    Per-image IoU is the mean over classes present in truth or prediction (union > 0) of the stored
    ``inter_<c> / union_<c>`` pixel counts: a ratio of numbers the training stage wrote, not a new metric.
    ``held_out`` and ``per_image`` as in :func:`failure_sample` (``per_image`` keeps each image's lowest IoU).
    """
    import pyarrow.dataset as pads

    path = run.file("predictions.parquet")
    if not path.exists():
        return pd.DataFrame(), 0
    names = pads.dataset(path, format="parquet").schema.names
    counts = [c for c in names if c.startswith(("inter_", "union_"))]
    base = ["sample_id", "model", "protocol", "fold", "role", "test_domain", "held_out", "pixel_acc", "pred_mask"]
    p = _pred_filters(run, base + counts, model=model, protocol=protocol, fold=fold, role=role)
    if p is None or p.empty:
        return pd.DataFrame(columns=base + ["iou", "filepath", "mask"]), 0
    classes = sorted({c.split("_", 1)[1] for c in counts if f"union_{c.split('_', 1)[1]}" in p.columns})
    if classes:
        inter = np.stack([p[f"inter_{c}"].to_numpy(dtype=float) for c in classes], axis=1)
        union = np.stack([p[f"union_{c}"].to_numpy(dtype=float) for c in classes], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)
        present = (union > 0).sum(axis=1)
        iou = np.where(present > 0, np.nansum(ratio, axis=1) / np.maximum(present, 1), np.nan)
    else:
        iou = np.full(len(p), np.nan)
    p = _held_out(p.drop(columns=counts).assign(iou=iou), held_out)
    if per_image and len(p):
        p = p.sort_values(["iou", "sample_id"], kind="mergesort", na_position="last").drop_duplicates("sample_id")
    if group_col and group_value is not None:
        m = read_manifest_columns(run, [group_col])
        if group_col in m.columns:
            ids = m.loc[m[group_col].astype("string") == group_value, "sample_id"]
            p = p[p["sample_id"].astype("string").isin(ids)]
    total = len(p)
    if order == "random":
        p = p.sample(n=min(n, total), random_state=seed) if total else p
    else:
        p = p.sort_values(
            ["iou", "sample_id"], ascending=[order == "worst", True], kind="mergesort", na_position="last"
        ).head(n)
    m = manifest_rows(run, p["sample_id"].astype(str).tolist(), ["filepath", "mask"])
    out = p.reset_index(drop=True).astype({"sample_id": "string"}).merge(m, on="sample_id", how="left")
    return out, total


def thumbnail(path: Path, *, size: int = 160, mask: bool = False) -> np.ndarray:
    """A small RGB array of an image (or an index mask, colourised) for display; raises OSError if unreadable."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at reduced scale
        if mask:
            arr = np.asarray(im.convert("L") if im.mode not in ("L", "P", "I", "I;16") else im)
            arr = colorize_mask(arr)
            im2 = Image.fromarray(arr)
        else:
            im2 = im.convert("RGB")
        scale = size / max(im2.size)
        new = (max(1, round(im2.width * scale)), max(1, round(im2.height * scale)))
        return np.asarray(im2.resize(new, Image.NEAREST))


def overlay(image: Path, mask: Path, *, size: int = 160, alpha: float = 0.55) -> np.ndarray:
    """The image with a class-index mask blended on top (class 0 left clear), as a small RGB array.

    A mask of another size than its image is resized (nearest) to fit; the profile reports the mismatch.
    """
    from PIL import Image

    with Image.open(image) as im:
        rgb = im.convert("RGB")
    with Image.open(mask) as mk:
        m = mk if mk.mode in ("L", "P", "I", "I;16") else mk.convert("L")
        if m.size != rgb.size:
            m = m.resize(rgb.size, Image.NEAREST)
        idx = np.asarray(m).astype(np.int64)
    base = np.asarray(rgb, dtype=np.float32)
    colour = colorize_mask(idx).astype(np.float32)
    fg = (idx != 0)[..., None]
    out = np.where(fg, (1 - alpha) * base + alpha * colour, base).astype(np.uint8)
    im2 = Image.fromarray(out)
    scale = size / max(im2.size)
    return np.asarray(im2.resize((max(1, round(im2.width * scale)), max(1, round(im2.height * scale))), Image.NEAREST))


def colorize_mask(mask: np.ndarray) -> np.ndarray:
    """Class-index mask -> RGB with :data:`SEG_PALETTE` (indices beyond the palette wrap around)."""
    idx = np.asarray(mask).astype(np.int64) % len(SEG_PALETTE)
    return SEG_PALETTE[idx]
