"""Frozen-backbone features, computed once per image and cached in the run (``RUN/embeddings/``).

A feature set is keyed by the model, its weights (the packaged file's sha256), the image size and the
preprocessing, so changing any of them computes new features, while folds, seeds and later runs over the same
images reuse the cached rows (only sample ids missing from the cache go through the backbone).

Files: ``<cache_dir>/features-<key>.npy`` (float32 ``[n, d]``) and ``features-<key>.json`` (the key's parts and
the sample ids, in row order). The same features serve as the embeddings of slice discovery and near-duplicate
search.

A long pass is checkpointed: every :attr:`FeatureOptions.checkpoint_seconds` (30 s) the rows computed since the
last checkpoint go to ``features-<key>.parts/part-NNNNNN.npz`` (ids and features, written atomically), so a pass
stopped after 30 minutes of a 35-minute run loses at most those 30 s: the same call again reads the parts as
cached rows and computes only the rest. When the pass ends, the parts are merged into the main file and removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audit.core.atomic import atomic_write_bytes, atomic_write_json

__all__ = ["PREPROCESS", "FeatureOptions", "FeatureSet", "feature_key", "compute_features", "backbone",
           "feature_batch"]

# what turns a file into the backbone's input; part of the cache key (bump when any step changes)
PREPROCESS = "decode_image(exif, RGB, bilinear square resize)/255, imagenet mean/std, v1"


# Inference on a CPU is fastest in small batches (activations stay in cache): efficientnet_lite0 at 224 px on a
# 2-core x86 CPU, 44-53 img/s at batch 4, 33-37 at 16, 28 at 32, 19 at 64 (channels_last, fp32).
CPU_BATCH = 4
GPU_BATCH = 64


def feature_batch(batch_size: int | None, device) -> int:
    """The feature pass's batch: the user's ``--batch-size``, else :data:`CPU_BATCH` on a CPU, else GPU_BATCH."""
    if batch_size:
        return int(batch_size)
    return CPU_BATCH if torch.device(device).type == "cpu" else GPU_BATCH


@dataclass(frozen=True)
class FeatureOptions:
    """How the feature pass runs (none of this changes the features beyond float rounding, so not in the key)."""

    batch_size: int = 32
    threads: int | None = None  # torch intra-op threads (None: leave as is)
    bf16: bool = False  # CPU bf16 autocast (measure first: slower than fp32 on CPUs without AMX/AVX512-BF16)
    # NHWC: efficientnet_lite0 at 224 px on a 2-core CPU, 31 img/s against 21 contiguous (the plan calibrates it so)
    channels_last: bool = True
    checkpoint_seconds: float = 30.0  # how much of an interrupted pass can be lost (0: checkpoint every batch)


@dataclass
class FeatureSet:
    """Features of ``sample_ids`` (row order), and what this call cost."""

    sample_ids: list[str]
    features: np.ndarray
    key: str
    path: Path | None
    computed: int  # images that went through the backbone in this call
    reused: int  # rows taken from the cache
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


def feature_key(model: str, size: int, weights_id: str | None, preprocess: str = PREPROCESS) -> str:
    """16 hex digits naming one (model, weights, size, preprocessing) feature space."""
    raw = json.dumps({"model": model, "weights": weights_id, "size": int(size), "preprocess": preprocess})
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def backbone(model_name: str, weights: Path | None = None) -> tuple[torch.nn.Module, str | None]:
    """The frozen, eval-mode pretrained backbone of ``model_name`` and its weights id (sha256 or path).

    ``weights``: a local weights file (``--weights``) instead of the model's packaged / hub weights.
    """
    from audit.train.models import build_model

    if weights is not None:
        from audit.train.pretrained import file_sha256

        model, _ = build_model(model_name, 1000, weights=Path(weights))
        return model.eval().requires_grad_(False), file_sha256(Path(weights))
    model, info = build_model(model_name, 1000, pretrained=True)
    model.eval().requires_grad_(False)
    w = info.get("weights") or {}
    return model, w.get("sha256") or w.get("path")


def _parts_dir(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"features-{key}.parts"


def _load_main(cache_dir: Path, key: str) -> tuple[list[str], np.ndarray | None]:
    meta, arr = cache_dir / f"features-{key}.json", cache_dir / f"features-{key}.npy"
    try:
        ids = json.loads(meta.read_text())["sample_ids"]
        feats = np.load(arr, allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError):
        return [], None
    if feats.ndim != 2 or len(feats) != len(ids):
        return [], None
    return [str(i) for i in ids], feats


def _load_parts(cache_dir: Path, key: str, dim: int | None) -> tuple[list[str], list[np.ndarray]]:
    """The checkpoints of an interrupted pass (unreadable or mismatched parts are skipped: recomputed)."""
    ids: list[str] = []
    arrays: list[np.ndarray] = []
    for f in sorted(_parts_dir(cache_dir, key).glob("part-*.npz")):
        try:
            with np.load(f, allow_pickle=False) as z:
                pid, feats = [str(i) for i in z["ids"]], np.asarray(z["features"], dtype=np.float32)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if feats.ndim != 2 or len(feats) != len(pid) or (dim is not None and feats.shape[1] != dim):
            continue
        dim = feats.shape[1]
        ids += pid
        arrays.append(feats)
    return ids, arrays


def _load(cache_dir: Path | None, key: str) -> tuple[list[str], np.ndarray | None]:
    """Every cached row of ``key``: the main file, then the parts of an interrupted pass (first copy of an id wins)."""
    if cache_dir is None:
        return [], None
    ids, feats = _load_main(cache_dir, key)
    pids, parts = _load_parts(cache_dir, key, None if feats is None else feats.shape[1])
    if not parts:
        return ids, feats
    seen = set(ids)
    keep = [i for i, s in enumerate(pids) if not (s in seen or seen.add(s))]
    extra = np.concatenate(parts)[keep]
    feats = extra if feats is None else np.concatenate([feats, extra])
    return ids + [pids[i] for i in keep], feats


class _Checkpoint:
    """Writes the rows computed since the last checkpoint as one part, at most every ``seconds``."""

    def __init__(self, cache_dir: Path | None, key: str, ids: list[str], seconds: float):
        self.dir = None if cache_dir is None else _parts_dir(cache_dir, key)
        self.ids, self.seconds = ids, float(seconds)
        self.rows: list[np.ndarray] = []
        self.feats: list[np.ndarray] = []
        self.last = time.monotonic()

    def add(self, rows: np.ndarray, feats: np.ndarray) -> None:
        if self.dir is None:
            return
        self.rows.append(rows)
        self.feats.append(feats)
        if time.monotonic() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.dir is None or not self.rows:
            return
        rows, feats = np.concatenate(self.rows), np.concatenate(self.feats)
        self.dir.mkdir(parents=True, exist_ok=True)
        n = len(list(self.dir.glob("part-*.npz")))
        buf = io.BytesIO()
        np.savez(buf, ids=np.array([self.ids[i] for i in rows], dtype=str), features=feats.astype(np.float32))
        atomic_write_bytes(self.dir / f"part-{n:06d}.npz", buf.getvalue())
        self.rows, self.feats, self.last = [], [], time.monotonic()


def _run_backbone(model, images: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray, opts: FeatureOptions,
                  on_batch: Callable[[int], None] | None, checkpoint: _Checkpoint) -> np.ndarray:
    from audit.train.augment import normalize
    from audit.train.models import extract_features

    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    out = []
    try:
        with torch.inference_mode():
            for s in range(0, len(rows), opts.batch_size):
                part = rows[s:s + opts.batch_size]
                x = normalize(images(part).float().div_(255))
                if opts.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=opts.bf16):
                    f = extract_features(model, x)
                out.append(f.float().cpu().numpy())
                checkpoint.add(part, out[-1])
                if on_batch:
                    on_batch(len(part))
    except BaseException:
        checkpoint.flush()  # a stopped pass keeps every finished batch (milliseconds: at most 30 s of rows)
        raise
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _write_cache(cache_dir: Path | None, key: str, old_ids: list[str], old: np.ndarray | None, new_ids: list[str],
                 new: np.ndarray | None, meta: dict) -> Path | None:
    """Merge the cached rows (those of the parts included) and the new ones into the main file; drop the parts."""
    if cache_dir is None:
        return None
    path, parts = cache_dir / f"features-{key}.npy", _parts_dir(cache_dir, key)
    if new_ids or parts.exists():
        merged = new if old is None else old if new is None else np.concatenate([old, new])
        buf = io.BytesIO()
        np.save(buf, merged.astype(np.float32), allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
        atomic_write_json(cache_dir / f"features-{key}.json", {**meta, "sample_ids": old_ids + new_ids})
        shutil.rmtree(parts, ignore_errors=True)
    return path


def compute_features(images: torch.Tensor | Callable[[np.ndarray], torch.Tensor], sample_ids, *, model_name: str,
                     size: int, cache_dir: Path | None = None, options: FeatureOptions | None = None,
                     model: torch.nn.Module | None = None, weights_id: str | None = None,
                     on_batch: Callable[[int], None] | None = None,
                     on_cached: Callable[[int], None] | None = None) -> FeatureSet:
    """Features of every image, from the cache where it has them, else from one backbone pass.

    ``images`` is ``uint8 [n, 3, size, size]`` (the training stage's decoded cache) or a function from row
    positions to such a batch. ``model``/``weights_id`` default to :func:`backbone` (``model_name``'s pretrained
    weights). The merged cache is written back atomically. ``on_cached(n)`` is called once, before the pass, with
    the number of rows found in the cache (those of an interrupted pass included); ``on_batch(n)`` after each batch.
    """
    opts = options or FeatureOptions()
    ids = [str(s) for s in sample_ids]
    get = images if callable(images) else (lambda rows: images[torch.as_tensor(rows)])
    if model is None:
        model, weights_id = backbone(model_name)
    key = feature_key(model_name, size, weights_id)
    old_ids, old = _load(cache_dir, key)
    pos = {s: i for i, s in enumerate(old_ids)}
    need = np.array([i for i, s in enumerate(ids) if s not in pos], dtype=np.int64)
    if on_cached:
        on_cached(len(ids) - len(need))
    t0 = time.perf_counter()
    checkpoint = _Checkpoint(cache_dir, key, ids, opts.checkpoint_seconds)
    new = _run_backbone(model, get, need, opts, on_batch, checkpoint) if len(need) else None
    secs = time.perf_counter() - t0
    dim = new.shape[1] if new is not None else old.shape[1]
    feats = np.empty((len(ids), dim), dtype=np.float32)
    if len(need):
        feats[need] = new
    have = np.array([i for i, s in enumerate(ids) if s in pos], dtype=np.int64)
    if len(have):
        feats[have] = old[[pos[ids[i]] for i in have]]
    path = _write_cache(cache_dir, key, old_ids, old, [ids[i] for i in need], new,
                        {"key": key, "model": model_name, "weights": weights_id, "size": int(size),
                         "preprocess": PREPROCESS, "dim": int(dim)})
    info = {"key": key, "model": model_name, "size": int(size), "weights": weights_id, "preprocess": PREPROCESS,
            "computed": int(len(need)), "reused": int(len(have)), "seconds": round(secs, 3),
            "batch_size": int(opts.batch_size), "channels_last": bool(opts.channels_last),
            "images_per_s": round(len(need) / secs, 1) if len(need) and secs > 0 else None}
    return FeatureSet(ids, feats, key, path, int(len(need)), int(len(have)), secs, info)
