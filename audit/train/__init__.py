"""Training stage: train and evaluate classifiers / segmenters across held-out domains.

Entry point (called by :mod:`audit.pipeline` for ``audit train RUN``, ``audit run`` and ``audit demo``)::

    run_training(run, TrainConfig(protocol="lodo", epochs=8))     # writes RUN/predictions.parquet

Flow: manifest -> rows excluded with reasons (missing label / mask, unreadable per the profile, decode
errors) -> decode-once tensor cache (:mod:`audit.io.tensor_cache`) -> folds of the protocol per seed
(:mod:`audit.train.protocols`) -> per fold: train with validation-only selection (:mod:`audit.train.trainer`),
predict val + test rows, store ``RUN/train/folds/<key>.parquet`` and the checkpoint
``RUN/train/ckpt/<key>.pt`` -> concatenate into ``RUN/predictions.parquet``. Re-running with the same
settings reuses finished folds and resumes a killed fold from its last epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from audit.errors import InputError, UsageError
from audit.rundir import RunDir

__all__ = ["TrainConfig", "run_training", "LocalExecutor", "TASKS"]

TASKS = ("classify", "segment")


@dataclass
class TrainConfig:
    """Settings of the training stage (the CLI's ``audit train`` flags; ``None`` means "choose for me").

    ``model`` None: ``small_cnn``/``small_unet`` for images <= 64 px, else ``resnet18`` /
    ``lraspp_mobilenet_v3_large``. ``image_size`` None: the images' own size (<= 64) for small models, up to
    224 otherwise. ``batch_size``/``lr`` None: the model's registry defaults. ``patience`` None: no early
    stopping (the best validation epoch is still the one kept).
    """

    task: str | None = None
    model: str | None = None
    protocol: str = "lodo"
    epochs: int = 8
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    device: str = "auto"
    seeds: int = 1
    seed: int = 0
    weights: Path | None = None
    pretrained: bool = False
    compile: bool = False
    balanced: bool = False
    workers: int | None = None
    engine: str = "local"
    ray_address: str | None = None
    amp: bool = True
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    patience: int | None = None
    augment: bool = True
    hflip: bool = False


def _natural_key(s: str):
    try:
        return (0, float(s), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(s))


def _slug(s: str, n: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", s)[:n]


def fold_key(model: str, protocol: str, seed: int, fold: str) -> str:
    """A file-name-safe, unique key for one (model, protocol, seed, fold)."""
    h = hashlib.sha1(f"{model}\x00{protocol}\x00{seed}\x00{fold}".encode()).hexdigest()[:8]
    return f"{model}-{protocol}-s{seed}-{_slug(fold)}-{h}"


def _validate(cfg: TrainConfig, task: str) -> None:
    if task not in TASKS:
        raise UsageError(f"unknown --task {task!r}; choose classify or segment")
    if cfg.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {cfg.epochs}")
    if cfg.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {cfg.seeds}")
    if cfg.batch_size is not None and cfg.batch_size < 2:
        raise UsageError(f"--batch-size must be >= 2, got {cfg.batch_size}")
    if cfg.lr is not None and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise UsageError(f"--lr must be a positive number, got {cfg.lr}")
    if cfg.image_size is not None and not 8 <= cfg.image_size <= 2048:
        raise UsageError(f"--image-size must be between 8 and 2048, got {cfg.image_size}")
    if cfg.patience is not None and cfg.patience < 1:
        raise UsageError(f"patience must be >= 1, got {cfg.patience}")
    if cfg.engine not in ("local", "ray"):
        raise UsageError(f"unknown --engine {cfg.engine!r}; choose local or ray")


def _update_stage(run: RunDir, **details) -> None:
    """Merge details into run.json's ``stages.train`` entry (kept by RunDir.stage when it finishes)."""
    stages = run.info.get("stages", {})
    stages["train"] = {**stages.get("train", {}), **details}
    run.update_info(stages=stages)


def _image_side(run: RunDir, man: pd.DataFrame, keep: np.ndarray) -> float | None:
    """Median longest side of the images (from the profile when present, else a few files probed)."""
    prof = run.read_table("profile/images.parquet", required=False)
    if prof is not None and {"width", "height", "readable"} <= set(prof.columns):
        p = prof[prof["readable"].fillna(False).astype(bool)]
        sides = np.maximum(pd.to_numeric(p["width"], errors="coerce"), pd.to_numeric(p["height"], errors="coerce"))
        sides = sides.dropna()
        if len(sides):
            return float(np.median(sides))
    from PIL import Image

    sides = []
    for rel in man.loc[keep, "filepath"].head(200).tolist():
        try:
            with Image.open(run.abspath(rel)) as im:
                sides.append(max(im.size))
        except Exception:  # unreadable files are reported by the decode step
            continue
        if len(sides) >= 25:
            break
    return float(np.median(sides)) if sides else None


def _default_size(spec, side: float | None) -> int:
    if spec.small:
        if side is None:
            return 32
        return int(min(64, max(spec.min_size, math.ceil(side / 8) * 8)))
    if side is None:
        return 224
    return int(min(224, max(64, math.ceil(side / 32) * 32)))


class LocalExecutor:
    """How folds are executed: in this process. Other engines (``audit.train.ddp.DDPExecutor``) supply the same
    hooks (``build_cache``, ``fit``, ``predict``, ``describe``, ``is_main``) to shard the work."""

    name = "local"
    is_main = True

    def describe(self) -> dict:
        return {"engine": "local"}

    def build_cache(self, build: Callable, *args, **kwargs):
        return build(*args, **kwargs)

    def fit(self, *args, **kwargs):
        from audit.train.trainer import fit

        return fit(*args, **kwargs)

    def predict(self, model, src, rows, cfg, **_):
        from audit.train.trainer import predict

        return predict(model, src, rows, cfg)


def _default_executor(cfg: TrainConfig):
    """``--engine ray``: the folds train in parallel as Ray tasks (:mod:`audit.train.ray_folds`)."""
    if cfg.engine == "ray":
        from audit.train.ray_folds import RayFolds

        ex = RayFolds(cfg.ray_address)
        ex.describe()  # join or start the cluster now: a bad address is a usage error before any training
        return ex
    return LocalExecutor()


def run_training(run: RunDir, config: TrainConfig, *, on_fold_done: Callable[[str, str], None] | None = None,
                 executor: LocalExecutor | None = None) -> None:
    """Train and evaluate per the protocol; write ``RUN/predictions.parquet`` (see docs/formats.md).

    Parameters
    ----------
    run
        The run directory (manifest already ingested).
    config
        Settings; see :class:`TrainConfig`.
    on_fold_done
        Called with ``(fold_key, status)`` after each fold (``trained``, ``resumed`` or ``reused``).
    executor
        Runs the decode, fit and predict steps (default :class:`LocalExecutor`: this process).
    """
    threads, bench = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        _run_training(run, config, on_fold_done, executor or _default_executor(config))
    finally:
        torch.set_num_threads(threads)  # process-wide settings: leave them as found
        torch.backends.cudnn.benchmark = bench


def _run_training(run: RunDir, config: TrainConfig, on_fold_done: Callable[[str, str], None] | None,
                  ex: LocalExecutor) -> None:
    from audit.io.gpu import amp_dtype, device_info, resolve_device
    from audit.io.tensor_cache import build_cache
    from audit.pipeline import cpu_workers
    from audit.progress import Bar
    from audit.train.augment import AugmentConfig
    from audit.train.models import MODELS, build_model, default_model
    from audit.train.predictions import classify_rows, mask_name, save_mask_png, segment_counts, segment_rows
    from audit.train.protocols import make_folds
    from audit.train.trainer import BatchSource, FitConfig

    t_start = time.perf_counter()
    cfg = config
    task = cfg.task or run.task
    _validate(cfg, task)
    man = run.manifest()
    ds = run.dataset
    fingerprint = str(ds.get("fingerprint", ""))
    classes = [str(c) for c in run.classes()]
    device = resolve_device(cfg.device)
    workers = cpu_workers(cfg.workers)

    # ------------------------------------------------------------------ rows that cannot be used, with reasons
    reasons = pd.Series(pd.NA, index=man.index, dtype="string")

    def exclude(mask, reason) -> None:
        mask = np.asarray(mask, dtype=bool) & reasons.isna().to_numpy()
        reasons[mask] = reason if isinstance(reason, str) else pd.Series(reason, index=man.index)[mask]

    if task == "classify":
        if "label" not in man.columns:
            raise UsageError("training a classifier needs a label column; give --label COL when ingesting")
        exclude(man["label"].isna(), "missing_label")
        if not classes:
            classes = sorted(man["label"].dropna().unique().tolist(), key=_natural_key)
        exclude(man["label"].notna() & ~man["label"].isin(classes), "label_not_in_classes")
    else:
        if "mask" not in man.columns:
            raise UsageError("training a segmenter needs a mask column; give --mask COL when ingesting")
        exclude(man["mask"].isna(), "missing_mask")
    prof = run.read_table("profile/images.parquet", required=False)
    if prof is not None and "readable" in prof.columns:
        p = prof.set_index(prof["sample_id"].astype(str))
        ids = man["sample_id"].astype(str)
        known = ids.isin(p.index).to_numpy()
        readable = np.ones(len(man), dtype=bool)
        err = np.array(["unreadable: per profile/images.parquet"] * len(man), dtype=object)
        readable[known] = p.loc[ids[known], "readable"].fillna(True).astype(bool).to_numpy()
        if "error" in p.columns:
            e = p.loc[ids[known], "error"].astype(object).to_numpy()
            err[known] = [(str(x) if x is not None and not pd.isna(x) else "unreadable") + ": per profile/images.parquet"
                          for x in e]
        exclude(~readable, err)
        if task == "segment" and "mask_readable" in p.columns:
            mr = np.ones(len(man), dtype=bool)
            mr[known] = p.loc[ids[known], "mask_readable"].astype("boolean").fillna(True).astype(bool).to_numpy()
            exclude(~mr, "mask_unreadable: per profile/images.parquet")

    # ------------------------------------------------------------------ model and size
    cand = reasons.isna().to_numpy()
    if not cand.any():
        raise InputError(f"no usable samples to train on (excluded: {reasons.value_counts().head(3).to_dict()})")
    side = _image_side(run, man, cand)
    model_name = cfg.model or default_model(task, side)
    if model_name not in MODELS:
        build_model(model_name, 2)  # raises the UsageError with a suggestion
    spec = MODELS[model_name]
    if spec.task != task:
        raise UsageError(f"--model {model_name} is a {spec.task} model but the task is {task}")
    size = int(cfg.image_size or _default_size(spec, side))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    if device.type == "cpu":
        # tiny models gain little from a second thread and lose a lot when cores are shared (OpenMP barriers
        # wait for descheduled threads); a fixed rule also keeps CPU results reproducible run to run
        torch.set_num_threads(int(cfg.workers) if cfg.workers else (1 if spec.small else workers))
    n_classes = len(classes) if classes else None

    # ------------------------------------------------------------------ decode once
    cand_pos = np.flatnonzero(cand)
    cman = man.iloc[cand_pos].reset_index(drop=True)
    img_paths = [run.abspath(p) for p in cman["filepath"].tolist()]
    mask_paths = [run.abspath(p) for p in cman["mask"].tolist()] if task == "segment" else None
    key_src = "\x00".join([fingerprint, task, str(n_classes), *cman["sample_id"].astype(str).tolist()])
    cache_key = hashlib.sha1(key_src.encode()).hexdigest()[:16]
    with Bar(len(cman), "decoding images") as bar:
        cache = ex.build_cache(build_cache, img_paths, size=size, key=cache_key, mask_paths=mask_paths, n_classes=n_classes,
                            device=device, cache_dir=run.path / "train" / "cache", workers=workers,
                            exif=task == "classify", progress=bar.advance)
    bad = ~cache.ok
    if bad.any():
        full = np.zeros(len(man), dtype=bool)
        full[cand_pos[bad]] = True
        errs = pd.Series(pd.NA, index=man.index, dtype="string")
        errs[cand_pos[bad]] = [cache.errors[i] for i in np.flatnonzero(bad)]
        exclude(full, errs)
    if not cache.ok.any():
        raise InputError(f"none of the {len(cman)} images could be decoded (e.g. {cache.errors[0]})")
    notes: list[str] = []
    if task == "segment":
        if n_classes is None:
            # No class names: the classes are the mask values present (255 = ignore). Values that are not
            # 0..k-1 (e.g. 0/100/200 masks) are remapped to indices so no phantom classes appear.
            ok_idx = torch.as_tensor(np.flatnonzero(cache.ok))
            vals = torch.unique(cache.masks[ok_idx])
            vals = vals[vals != 255].tolist()
            if len(vals) > 64:
                raise InputError(f"the masks hold {len(vals)} distinct values: they do not look like class-index masks; "
                                 "name the classes with a recipe (datasets/*.toml, [classes])")
            if vals and vals != list(range(len(vals))):
                lut = torch.full((256,), 255, dtype=cache.masks.dtype)
                for i, v in enumerate(vals):
                    lut[int(v)] = i
                cache.masks = lut.to(cache.masks.device)[cache.masks.long()]
                notes.append(f"mask values {vals[:10]} remapped to class indices 0..{len(vals) - 1}")
            n_classes = max(2, len(vals))
            classes = [str(v) for v in vals] + [str(i) for i in range(len(vals), n_classes)]
            notes.append(f"segmentation classes not named in run.json: inferred {n_classes} from the masks")
        n_resized = int(cache.mask_resized[cache.ok].sum())
        if n_resized:
            notes.append(f"{n_resized} masks differ in size from their image: resized with NEAREST")
    assert n_classes is not None

    usable = np.flatnonzero(cache.ok)
    table = cman.iloc[usable].reset_index(drop=True)
    cache_pos = usable  # table row i -> cache row usable[i]
    if task == "classify":
        cls_index = {c: i for i, c in enumerate(classes)}
        y_all = np.zeros(len(cman), dtype=np.int64)
        y_all[usable] = table["label"].map(cls_index).to_numpy(dtype=np.int64)
        targets = torch.from_numpy(y_all).to(cache.images.device)
    else:
        targets = cache.masks

    # ------------------------------------------------------------------ settings
    amp = amp_dtype(device, cfg.amp)
    lr = float(cfg.lr or (spec.lr * (0.3 if (cfg.weights or cfg.pretrained) else 1.0)))
    fit_cfg = FitConfig(task=task, n_classes=n_classes, epochs=int(cfg.epochs), batch_size=int(cfg.batch_size or spec.batch_size),
                        lr=lr, amp_dtype=amp, channels_last=True, compile=bool(cfg.compile), balanced=bool(cfg.balanced),
                        patience=cfg.patience, augment=AugmentConfig(enabled=bool(cfg.augment), hflip=bool(cfg.hflip)))
    weights_id = None
    if cfg.weights is not None:
        wp = Path(cfg.weights)
        st = wp.stat() if wp.is_file() else None
        weights_id = [str(wp.resolve()), st.st_size if st else None, st.st_mtime_ns if st else None]
    resolved = {
        "task": task, "model": model_name, "protocol": cfg.protocol, "epochs": fit_cfg.epochs,
        "batch_size": fit_cfg.batch_size, "lr": lr, "weight_decay": fit_cfg.weight_decay, "image_size": size,
        "device": str(device), "seeds": cfg.seeds, "seed": cfg.seed, "weights": str(cfg.weights) if cfg.weights else None,
        "pretrained": cfg.pretrained, "compile": cfg.compile, "balanced": cfg.balanced, "workers": workers,
        "engine": cfg.engine, "amp": str(amp).replace("torch.", "") if amp else None, "channels_last": True,
        "val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction, "patience": cfg.patience,
        "augment": asdict(fit_cfg.augment), "classes": classes,
    }
    if cfg.engine == "ray":
        notes.append("engine=ray: each fold trained and predicted by a Ray task")
    dinfo = device_info(device).as_dict()
    dinfo.update(amp=resolved["amp"], channels_last=True, cache=cache.location, nvjpeg_decoded=cache.gpu_decoded)
    run.update_info(device=dinfo, config={"train": resolved})

    src = BatchSource(cache.images, targets, device, channels_last=True)
    ids_all = table["sample_id"].astype(str).to_numpy()
    dom_all = table["domain"].astype(object).to_numpy() if "domain" in table.columns else np.array([None] * len(table))
    folds_dir, ckpt_dir = run.path / "train" / "folds", run.path / "train" / "ckpt"
    split_notes: dict = {}
    seeds = [cfg.seed + k for k in range(cfg.seeds)]
    all_folds = []
    for s in seeds:
        folds, fnotes = make_folds(table, cfg.protocol, seed=s, val_fraction=cfg.val_fraction,
                                   test_fraction=cfg.test_fraction)
        split_notes = fnotes
        all_folds += folds
    protocol = split_notes.get("protocol", cfg.protocol)
    if split_notes.get("fallback"):
        notes.append(split_notes["fallback"])
    for reason, sids in split_notes.get("excluded", {}).items():
        m = man["sample_id"].astype(str).isin(set(sids)).to_numpy()
        exclude(m, reason)

    total_epochs = sum(fit_cfg.epochs for f in all_folds)
    slots: list[tuple[pd.DataFrame | None, dict]] = []  # per fold, in fold order (parallel folds finish in any order)

    def eval_rows(fold):
        eval_idx = np.concatenate([fold.val_idx, fold.test_idx]).astype(np.int64)
        roles = ["val"] * len(fold.val_idx) + ["test"] * len(fold.test_idx)
        held = np.concatenate([np.zeros(len(fold.val_idx), bool), fold.held_out])
        return eval_idx, roles, held

    def finish(slot: int, fold, key: str, h: str, rec: dict, res, out: torch.Tensor, minfo: dict, secs: float) -> None:
        """Write one trained fold's predictions and metadata (the same for every executor)."""
        eval_idx, roles, held = eval_rows(fold)
        common = dict(model=model_name, protocol=protocol, fold=fold.name, seed=fold.seed, role=roles,
                      held_out=held, train_domains=fold.train_domains_str, test_domain=dom_all[eval_idx])
        if task == "classify":
            y_idx = y_all[cache_pos[eval_idx]]
            df = classify_rows(ids_all[eval_idx], out.numpy(), y_idx, classes, **common)
        else:
            tgt = cache.masks[torch.as_tensor(cache_pos[eval_idx])].cpu()
            counts = segment_counts(out, tgt, n_classes)
            mpaths: list[str | None] = []
            for j, sid in enumerate(ids_all[eval_idx]):
                if roles[j] != "test":
                    mpaths.append(None)
                    continue
                rel = mask_name(key, sid)
                if ex.is_main:  # other ranks of a distributed run see the run directory read-only
                    save_mask_png(out[j].numpy(), run.path / rel)
                mpaths.append(rel)
            df = segment_rows(ids_all[eval_idx], counts, mpaths, n_classes, **common)
        run.write_table(f"train/folds/{key}.parquet", df)
        status = "resumed" if res.resumed_from is not None else "trained"
        run.write_json(f"train/folds/{key}.json", {
            "hash": h, "fold": fold.name, "seed": fold.seed, "best_epoch": res.best_epoch,
            "val_score": res.best_score, "history": res.history, "seconds": secs, "selection": res.selection,
            "resumed_from": res.resumed_from, "weights": minfo.get("weights"), "notes": res.notes,
        })
        rec.update(status=status, best_epoch=res.best_epoch, val_score=res.best_score, seconds=secs,
                   epochs_run=res.epochs_run, train_images_per_s=round(res.images_per_s, 1), selection=res.selection)
        if res.notes:
            rec["notes"] = res.notes
        slots[slot] = (df, rec)
        if on_fold_done:
            on_fold_done(key, status)

    todo: list[dict] = []
    with Bar(total_epochs, f"training {model_name}") as bar:
        for fold in all_folds:
            key = fold_key(model_name, protocol, fold.seed, fold.name)
            rec = {"fold": fold.name, "seed": fold.seed, "key": key, "train_domains": fold.train_domains_str,
                   "n_train": len(fold.train_idx), "n_val": len(fold.val_idx),
                   "n_test_in_domain": int((~fold.held_out).sum()), "n_test_out_domain": int(fold.held_out.sum()),
                   **fold.notes}
            slots.append((None, rec))
            if fold.notes.get("skipped") or len(fold.train_idx) < 2:
                rec["status"] = "skipped"
                rec.setdefault("skipped", "fewer than 2 training samples")
                bar.advance(fit_cfg.epochs)
                continue
            h = hashlib.sha1(json.dumps({**{k: v for k, v in resolved.items() if k not in ("device", "workers", "seeds", "engine")},
                                         "fingerprint": fingerprint, "fold": fold.name, "seed": fold.seed,
                                         "members": fold.membership_hash(ids_all), "weights_id": weights_id,
                                         "n_classes": n_classes}, sort_keys=True, default=str).encode()).hexdigest()[:16]
            meta_p, pq_p, ck_p = folds_dir / f"{key}.json", folds_dir / f"{key}.parquet", ckpt_dir / f"{key}.pt"
            meta = run.read_json(str(meta_p.relative_to(run.path)), default=None)
            if meta and meta.get("hash") == h and pq_p.is_file():
                rec.update(status="reused", **{k: meta.get(k) for k in ("best_epoch", "val_score", "seconds")})
                slots[-1] = (pd.read_parquet(pq_p), rec)
                bar.advance(fit_cfg.epochs)
                if on_fold_done:
                    on_fold_done(key, "reused")
                continue
            job = {"slot": len(slots) - 1, "fold": fold, "key": key, "h": h, "rec": rec, "ckpt": ck_p}
            if getattr(ex, "parallel_folds", False):
                todo.append(job)  # trained below, all at once
                continue
            t0 = time.perf_counter()
            torch.manual_seed(fold.seed)
            model, minfo = build_model(model_name, n_classes, task=task, weights=cfg.weights, pretrained=cfg.pretrained)
            bar.set_description(f"{model_name} {fold.name} seed {fold.seed}")

            def on_epoch(ep, r, _bar=bar):
                _bar.advance(1, info=f"val {r.get('val_score', float('nan')):.3f}" if r.get("val_score") is not None else "")

            res = ex.fit(model, src, cache_pos[fold.train_idx], cache_pos[fold.val_idx], fit_cfg, seed=fold.seed,
                         ckpt_path=ck_p, ckpt_hash=h, on_epoch=on_epoch)
            bar.advance(fit_cfg.epochs - (res.epochs_run - (res.resumed_from or 0)))
            eval_idx, _, _ = eval_rows(fold)
            out = ex.predict(model, src, cache_pos[eval_idx], fit_cfg, ids=ids_all[eval_idx],
                             paths=[img_paths[i] for i in cache_pos[eval_idx]])  # Ray workers read the files
            finish(job["slot"], fold, key, h, rec, res, out, minfo, round(time.perf_counter() - t0, 3))
        if todo:
            # folds as parallel tasks on a cluster (--engine ray): each trains and predicts its fold on one worker
            bar.set_description(f"{model_name}: {len(todo)} folds in parallel")
            specs = [{"key": j["key"], "seed": j["fold"].seed, "train": cache_pos[j["fold"].train_idx],
                      "val": cache_pos[j["fold"].val_idx], "eval": cache_pos[eval_rows(j["fold"])[0]],
                      "ckpt": j["ckpt"], "hash": j["h"]} for j in todo]
            build = {"name": model_name, "n_classes": n_classes, "task": task, "weights": cfg.weights,
                     "pretrained": cfg.pretrained}
            by_key = {j["key"]: j for j in todo}
            for key, res, out, minfo, secs in ex.run_folds(specs, images=cache.images, targets=targets, build=build,
                                                           fit_cfg=fit_cfg):
                j = by_key[key]
                bar.advance(fit_cfg.epochs)
                finish(j["slot"], j["fold"], key, j["h"], j["rec"], res, out, minfo, secs)

    frames = [df for df, _ in slots if df is not None]
    fold_records = [rec for _, rec in slots]
    if not frames:
        raise InputError("no fold could be trained (every fold lacked training samples); see run.json stages.train")
    preds = pd.concat(frames, ignore_index=True)
    # Several models / protocols can live in one run: replace only this (model, protocol)'s rows.
    prev = run.read_table("predictions.parquet", required=False)
    if prev is not None and {"model", "protocol"} <= set(prev.columns) and len(prev):
        other = prev[~((prev["model"].astype(str) == str(model_name)) & (prev["protocol"].astype(str) == str(protocol)))]
        if len(other):
            preds = pd.concat([other, preds], ignore_index=True)
    run.write_table("predictions.parquet", preds)
    excl = reasons.dropna()
    excl_df = pd.DataFrame({"sample_id": man.loc[excl.index, "sample_id"].astype("string").to_numpy(),
                            "reason": excl.str.split(":").str[0].to_numpy(), "detail": excl.to_numpy()})
    run.write_table("train/excluded.parquet", excl_df)
    _update_stage(
        run, model=model_name, protocol=protocol, image_size=size, n_classes=n_classes, n_rows=int(len(man)),
        n_used=int(len(table)), n_excluded=int(len(excl_df)),
        excluded=excl_df["reason"].value_counts().to_dict(),
        excluded_examples={r: g["sample_id"].head(3).tolist() for r, g in excl_df.groupby("reason")},
        cache={"location": cache.location, "bytes": cache.nbytes, "decode_seconds": round(cache.seconds, 3),
               "reused": cache.reused, "nvjpeg": cache.gpu_decoded},
        folds=fold_records, notes=notes, executor=ex.describe(), n_predictions=int(len(preds)), train_seconds=round(time.perf_counter() - t_start, 3),
    )
