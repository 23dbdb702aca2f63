"""``--mode probe`` inside the training stage: one frozen-backbone feature pass, then one probe per fold.

Called by :func:`audit.train.stage.run_training` after the images are decoded and the folds planned. The features
come from :func:`audit.train.features.compute_features` (cached in ``RUN/embeddings/`` by model, weights, size and
preprocessing, so the backbone sees each image once for all folds and seeds, and later runs reuse them); each fold
fits :func:`audit.train.probe.probe_predictions`. The fold files (``train/folds/<key>.parquet|json``) and the fold
records have the same layout as fine-tuning's, so ``predictions.parquet`` and every downstream stage are unchanged.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from audit.errors import UsageError
from audit.train import planning
from audit.train.config import fold_key

__all__ = ["run_probe", "probe_features"]


def probe_features(st: Any, data: Any):
    """Features of every usable row (``data.table`` order) from the decoded cache, via the run's feature cache."""
    from audit.progress import Bar
    from audit.train.features import FeatureOptions, backbone, compute_features, feature_batch

    model, wid = backbone(st.model, st.cfg.weights)
    model = model.to(st.device)
    images, cpos = st.cache.images, torch.as_tensor(data.cache_pos)

    def get(rows: np.ndarray) -> torch.Tensor:
        return images[cpos[torch.as_tensor(rows)]].to(st.device, non_blocking=True)

    batch = feature_batch(st.cfg.batch_size, st.device)
    total = len(data.ids)
    with Bar(total, f"features {st.model} {st.size}px", unit="img") as bar:

        def cached(n: int) -> None:
            if n:
                what = "every image" if n == total else f"{n:,} of {total:,} images"
                bar.say(f"resuming features: {what} already computed (RUN/embeddings), {total - n:,} to go")
                bar.skip(n, info=f"{n:,} from the cache")

        fs = compute_features(get, data.ids, model_name=st.model, size=st.size, model=model, weights_id=wid,
                              cache_dir=st.run.path / "embeddings", options=FeatureOptions(batch_size=batch),
                              on_batch=bar.advance, on_cached=cached)
    return fs


def _stored(st: Any, key: str, h: str) -> pd.DataFrame | None:
    """A fold stored with the same hash (its table is taken as it is), else None."""
    meta = st.run.read_json(f"train/folds/{key}.json", default=None)
    path = st.run.path / "train" / "folds" / f"{key}.parquet"
    if meta and meta.get("hash") == h and path.is_file():
        return pd.read_parquet(path)
    return None


def run_probe(st: Any, data: Any, folds: list, resolved: dict) -> None:
    """Fill ``st.slots`` with one (predictions, record) per fold, writing the fold files as fine-tuning does."""
    from audit.train.probe import probe_predictions

    if not getattr(st.ex, "is_main", True) or getattr(st.ex, "world", 1) > 1:
        raise UsageError("--mode probe runs in one process (one feature pass, seconds per fold): drop --distributed")
    if st.task != "classify":
        raise UsageError("--mode probe is for --task classify; segmentation uses --mode finetune")
    fs = probe_features(st, data)
    y = data.y_all[data.cache_pos]
    fingerprint = str(st.run.dataset.get("fingerprint", ""))
    _merge_stage(st.run, features={**fs.info, "file": str(fs.path.relative_to(st.run.path)) if fs.path else None})
    for fold in folds:
        key = fold_key(st.model, st.protocol, fold.seed, fold.name)
        rec = {"fold": fold.name, "seed": fold.seed, "key": key, "train_domains": fold.train_domains_str,
               "n_train": len(fold.train_idx), "n_val": len(fold.val_idx),
               "n_test_in_domain": int((~fold.held_out).sum()), "n_test_out_domain": int(fold.held_out.sum()),
               **fold.notes, "mode": "probe"}
        if fold.notes.get("skipped") or len(fold.train_idx) < 2:
            rec["status"] = "skipped"
            rec.setdefault("skipped", "fewer than 2 training samples")
            st.slots.append((None, rec))
            continue
        h = planning.fold_hash(resolved, fingerprint=fingerprint, fold=fold, ids=data.ids, weights=[fs.key],
                               n_classes=st.n_classes)
        df = _stored(st, key, h)
        status = "reused"
        if df is None:
            df, status = _fit_fold(st, data, fold, key, h, fs, y, probe_predictions, rec), "trained"
        else:
            meta = st.run.read_json(f"train/folds/{key}.json", default={}) or {}
            rec.update(val_score=meta.get("val_score"), seconds=meta.get("seconds"),
                       C=(meta.get("probe") or {}).get("C"))
        rec["status"] = status
        st.slots.append((df, rec))
        if st.on_fold_done:
            st.on_fold_done(key, status)


def _fit_fold(st: Any, data: Any, fold, key: str, h: str, fs, y: np.ndarray, probe_predictions, rec: dict):
    t0 = time.perf_counter()
    df, (info,) = probe_predictions(fs.features, y, st.classes, [fold], data.ids, data.domains, model=st.model,
                                    protocol=st.protocol)
    secs = round(time.perf_counter() - t0, 3)
    st.run.write_table(f"train/folds/{key}.parquet", df)
    st.run.write_json(f"train/folds/{key}.json", {
        "hash": h, "fold": fold.name, "seed": fold.seed, "mode": "probe", "best_epoch": None,
        "val_score": info.get("val_accuracy"), "history": [], "seconds": secs,
        "selection": "probe: C with the best training-domain validation accuracy", "probe": info,
        "features": {k: fs.info.get(k) for k in ("key", "model", "size", "weights", "preprocess")},
        "resumed_from": None, "notes": [info["note"]] if info.get("note") else [],
    })
    rec.update(val_score=info.get("val_accuracy"), seconds=secs, C=info.get("C"),
               selection="probe C on training-domain validation")
    if info.get("note"):
        rec["notes"] = [info["note"]]
    return df


def _merge_stage(run, **details) -> None:
    """Merge details into run.json's ``stages.train`` entry."""
    stages = run.info.get("stages", {})
    stages["train"] = {**stages.get("train", {}), **details}
    run.update_info(stages=stages)
