"""Predictions tables: the rows a fold writes, and validation of predictions from any other model.

Columns (docs/formats.md): ``sample_id, model, protocol, fold, seed, role, held_out, train_domains,
test_domain``; classification adds ``y_true, y_pred, confidence, p_<class>``; segmentation adds
``inter_<c>, union_<c>, pred_<c>, true_<c>`` (pixel counts per class index) and ``pixel_acc, pred_mask``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from audit.core.predictions import COMMON_COLUMNS, mask_name, validate_predictions
from audit.core.protocols import PROTOCOLS

__all__ = [
    "COMMON_COLUMNS",
    "mask_name",
    "classify_rows",
    "segment_counts",
    "segment_rows",
    "save_mask_png",
    "validate_predictions",
]

_PROTOCOLS = PROTOCOLS  # audit.core.protocols: the one list


def _common(ids, *, model: str, protocol: str, fold: str, seed: int, role, held_out, train_domains: str,
            test_domain) -> dict:
    n = len(ids)
    return {
        "sample_id": pd.array(list(ids), dtype="string"),
        "model": pd.array([model] * n, dtype="string"),
        "protocol": pd.array([protocol] * n, dtype="string"),
        "fold": pd.array([fold] * n, dtype="string"),
        "seed": np.full(n, seed, dtype=np.int64),
        "role": pd.array(list(role) if not isinstance(role, str) else [role] * n, dtype="string"),
        "held_out": np.asarray(held_out, dtype=bool),
        "train_domains": pd.array([train_domains] * n, dtype="string"),
        "test_domain": pd.array(list(test_domain), dtype="string"),
    }


def classify_rows(ids, probs: np.ndarray, y_true_idx: np.ndarray, classes: list[str], **common) -> pd.DataFrame:
    """One row per sample from class probabilities ``probs [n, k]`` (rows sum to 1)."""
    probs = np.asarray(probs, dtype=np.float64)
    cls = np.asarray(classes, dtype=object)
    pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)
    data = _common(ids, **common)
    data["y_true"] = pd.array(cls[np.asarray(y_true_idx, dtype=int)].tolist(), dtype="string")
    data["y_pred"] = pd.array(cls[pred].tolist(), dtype="string")
    data["confidence"] = probs.max(1) if len(probs) else np.zeros(0)
    for j, c in enumerate(classes):
        data[f"p_{c}"] = probs[:, j]
    return pd.DataFrame(data)


def segment_counts(pred: torch.Tensor, target: torch.Tensor, n_classes: int,
                   ignore_index: int = 255) -> dict[str, np.ndarray]:
    """Per-image, per-class pixel counts from index masks ``pred, target [B, H, W]`` (ignored pixels skipped).

    Returns ``inter, union, pred, true`` arrays ``[B, n_classes]`` (int64) and ``correct, valid`` ``[B]``.
    """
    b = pred.shape[0]
    valid = target != ignore_index
    p = torch.where(valid, pred.long(), n_classes)  # ignored pixels go to an extra bin that is dropped
    t = torch.where(valid, target.long(), n_classes)
    k = n_classes + 1
    offs = (torch.arange(b, device=pred.device) * k).view(b, 1, 1)
    pc = torch.bincount((p + offs).flatten(), minlength=b * k).view(b, k)[:, :n_classes]
    tc = torch.bincount((t + offs).flatten(), minlength=b * k).view(b, k)[:, :n_classes]
    hit = (p == t) & valid
    ic = torch.bincount((torch.where(hit, p, n_classes) + offs).flatten(), minlength=b * k).view(b, k)[:, :n_classes]
    out = {
        "inter": ic.cpu().numpy().astype(np.int64),
        "pred": pc.cpu().numpy().astype(np.int64),
        "true": tc.cpu().numpy().astype(np.int64),
        "correct": hit.flatten(1).sum(1).cpu().numpy().astype(np.int64),
        "valid": valid.flatten(1).sum(1).cpu().numpy().astype(np.int64),
    }
    out["union"] = out["pred"] + out["true"] - out["inter"]
    return out


def segment_rows(ids, counts: dict[str, np.ndarray], mask_paths: list[str | None], n_classes: int,
                 **common) -> pd.DataFrame:
    """One row per image from :func:`segment_counts` output (``pixel_acc`` is NaN for an all-ignored mask)."""
    data = _common(ids, **common)
    for name in ("inter", "union", "pred", "true"):
        for c in range(n_classes):
            data[f"{name}_{c}"] = counts[name][:, c]
    with np.errstate(invalid="ignore", divide="ignore"):
        data["pixel_acc"] = np.where(counts["valid"] > 0, counts["correct"] / np.maximum(counts["valid"], 1), np.nan)
    data["pred_mask"] = pd.array(mask_paths, dtype="string")
    return pd.DataFrame(data)


def save_mask_png(mask: np.ndarray, path: Path, *, max_side: int = 64) -> None:
    """Write an index mask as a small PNG (NEAREST-downscaled to ``max_side``), atomically."""
    import io

    from PIL import Image

    from audit.rundir import atomic_write_bytes

    im = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="L")
    if max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    atomic_write_bytes(Path(path), buf.getvalue())






