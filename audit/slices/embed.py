"""Penultimate-layer embeddings: captured during inference by a forward hook, stored per fold, read back.

Capture (:class:`EmbeddingHook`): a forward pre-hook on the layer that feeds the model's head, whose *input* is the
embedding: the last ``nn.Linear`` of a classifier (torchvision ResNets' ``fc``, ``small_cnn``'s and
EfficientNet's classifier), else the last ``nn.Conv2d`` of a segmenter (the 1x1 classifier of LR-ASPP/DeepLab, the
U-Net head), its input averaged over the pixels. Vectors are kept as float16 on the CPU.

Storage (docs/formats.md, "Prediction embeddings"): ``RUN/embeddings/predict/<fold key>.npy`` (float16
``[n, d]``) and ``<fold key>.parquet`` (``sample_id, model, protocol, fold, seed, role, row``: row ``row`` of the
array belongs to that prediction). A user's own vectors (``--embeddings FILE``): a parquet with ``sample_id`` and
either one list column or several numeric columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from audit.errors import InputError

__all__ = ["EmbeddingHook", "head_input_layer", "write_fold_embeddings", "load_run_embeddings",
           "load_user_embeddings", "EMBED_DIR"]

EMBED_DIR = "embeddings/predict"


def head_input_layer(model):
    """The module whose input is the penultimate representation (last Linear, else last Conv2d), or None."""
    from torch import nn

    raw = getattr(model, "_orig_mod", model)
    linear = [m for m in raw.modules() if isinstance(m, nn.Linear)]
    if linear:
        return linear[-1]
    convs = [m for m in raw.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


class EmbeddingHook:
    """Context manager: while active, every forward pass appends its pooled head input to ``self.batches``."""

    def __init__(self, model):
        self.layer = head_input_layer(model)
        self.batches: list = []
        self._handle = None

    def _capture(self, _module, inputs):
        import torch

        x = inputs[0]
        if x.ndim == 4:
            x = x.float().mean(dim=(2, 3))
        elif x.ndim > 2:
            x = x.flatten(1)
        self.batches.append(x.detach().to("cpu", dtype=torch.float16, copy=True))

    def __enter__(self):
        if self.layer is not None:
            self._handle = self.layer.register_forward_pre_hook(self._capture)
        return self

    def __exit__(self, *exc):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        return False

    def array(self) -> np.ndarray | None:
        """All captured vectors ``float16 [n, d]`` in prediction order (None: nothing captured)."""
        if not self.batches:
            return None
        import torch

        return torch.cat(self.batches).numpy().astype(np.float16, copy=False)


def write_fold_embeddings(run, key: str, vectors: np.ndarray, index: pd.DataFrame) -> None:
    """Store one fold's vectors and their index (only when every predicted row has one)."""
    import io

    from audit.core.atomic import atomic_write_bytes

    if vectors is None or len(vectors) != len(index):
        return
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vectors, dtype=np.float16))
    base = run.path / EMBED_DIR
    base.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(base / f"{key}.npy", buf.getvalue())
    idx = index.reset_index(drop=True).copy()
    idx["row"] = np.arange(len(idx), dtype=np.int64)
    run.write_table(f"{EMBED_DIR}/{key}.parquet", idx)


def load_run_embeddings(run_path: Path) -> tuple[pd.DataFrame, np.ndarray] | None:
    """Every stored fold's index (with a global ``row``) and the stacked vectors; None when there are none."""
    base = Path(run_path) / EMBED_DIR
    parts, arrays, offset = [], [], 0
    for pq in sorted(base.glob("*.parquet")) if base.is_dir() else []:
        npy = pq.with_suffix(".npy")
        if not npy.is_file():
            continue
        arr = np.load(npy, mmap_mode="r")
        idx = pd.read_parquet(pq)
        if len(idx) != len(arr) or (arrays and arr.shape[1] != arrays[0].shape[1]):
            continue  # a torn or foreign fold: skipped (the stage says which folds lack vectors)
        idx["row"] = idx["row"].to_numpy() + offset
        offset += len(arr)
        parts.append(idx)
        arrays.append(np.asarray(arr))
    if not parts:
        return None
    return pd.concat(parts, ignore_index=True), np.concatenate(arrays)


def load_backbone_features(run_path: Path, models: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The frozen-backbone features of ``--mode probe`` (``RUN/embeddings/features-<key>.{npy,json}``, one vector per
    image, fold-independent) as ``(index with sample_id and row, vectors)``; None when there are none.

    With several feature sets, the one of a model in ``models`` (the predictions' models) wins, then the newest.
    """
    import json

    metas = []
    for meta in (Path(run_path) / "embeddings").glob("features-*.json"):
        npy = meta.with_suffix(".npy")
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if npy.is_file() and isinstance(info.get("sample_ids"), list):
            metas.append((str(info.get("model")) in (models or []), meta.stat().st_mtime, meta, npy, info))
    if not metas:
        return None
    *_, meta, npy, info = max(metas, key=lambda m: (m[0], m[1]))
    arr = np.load(npy, mmap_mode="r")
    ids = [str(x) for x in info["sample_ids"]]
    if len(ids) != len(arr):
        return None  # torn: the stage then says there are no embeddings
    return pd.DataFrame({"sample_id": ids, "row": np.arange(len(ids), dtype=np.int64)}), np.asarray(arr)


def has_run_embeddings(run_path: Path) -> bool:
    """Whether the run stores prediction embeddings or probe features that slice discovery can use."""
    base = Path(run_path) / "embeddings"
    return (base / "predict").is_dir() and any((base / "predict").glob("*.npy")) or any(base.glob("features-*.npy"))


def load_user_embeddings(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """``--embeddings FILE``: ``(index with sample_id and row, float32 vectors)``; one clear InputError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"embeddings file not found: {path}")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # not a parquet file
        raise InputError(f"cannot read embeddings file {path} as parquet ({type(e).__name__})") from None
    if "sample_id" not in df.columns:
        raise InputError(f"embeddings file {path} has no 'sample_id' column")
    rest = [c for c in df.columns if c != "sample_id"]
    lists = [c for c in rest if df[c].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).all()] if len(df) else []
    try:
        if lists:
            vec = np.stack(df[lists[0]].map(lambda v: np.asarray(v, dtype=np.float32)).to_list())
        else:
            num = [c for c in rest if pd.api.types.is_numeric_dtype(df[c])]
            if not num:
                raise InputError(f"embeddings file {path} has no vector columns (a list column or numeric columns)")
            vec = df[num].to_numpy(dtype=np.float32)
    except ValueError:
        raise InputError(f"embeddings file {path}: vectors of different lengths") from None
    if vec.ndim != 2 or len(vec) == 0:
        raise InputError(f"embeddings file {path} holds no vectors")
    ok = np.isfinite(vec).all(1)
    sid = df["sample_id"].astype(str)
    keep = ok & ~sid.duplicated(keep="first").to_numpy()
    index = pd.DataFrame({"sample_id": sid[keep].to_numpy(), "row": np.arange(int(keep.sum()))})
    return index, vec[keep]
