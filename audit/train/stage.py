"""The training stage end to end (:func:`run_training`): plan (:mod:`audit.train.planning`), decode once, train
each fold with its executor (:mod:`audit.train.executors`), write the fold tables and ``predictions.parquet``."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from audit.errors import InputError
from audit.rundir import RunDir
from audit.train import planning
from audit.train.config import TrainConfig, fold_key, validate_task
from audit.train.executors import LocalExecutor
from audit.train.trainer import score_name

__all__ = ["run_training"]

FoldDone = Callable[[str, str], None]


def run_training(run: RunDir, config: TrainConfig, *, on_fold_done: FoldDone | None = None,
                 executor: LocalExecutor | None = None, adjust_fit: Callable | None = None) -> None:
    """Train and evaluate per the protocol; write ``RUN/predictions.parquet`` (see docs/formats.md).

    Parameters
    ----------
    run
        The run directory (manifest already ingested).
    config
        Settings; see :class:`~audit.train.config.TrainConfig`.
    on_fold_done
        Called with ``(fold_key, status)`` after each fold (``trained``, ``resumed`` or ``reused``).
    executor
        Runs the decode, fit and predict steps (default :class:`LocalExecutor`: this process).
    adjust_fit
        ``(table, cache_pos, n_cache_rows, fit_cfg, resolved) -> (fit_cfg, resolved)``, called once before the
        folds (``audit mitigate``: per-row weights, groups, loss; what it adds to ``resolved`` enters the fold hash).
    """
    threads, bench = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        _run_training(run, config, on_fold_done, executor or default_executor(config), adjust_fit)
    finally:
        torch.set_num_threads(threads)  # process-wide settings: leave them as found
        torch.backends.cudnn.benchmark = bench


def default_executor(cfg: TrainConfig):
    """``--engine ray``: the folds train in parallel as Ray tasks (:mod:`audit.train.ray_folds`)."""
    if cfg.engine == "ray":
        from audit.train.ray_folds import RayFolds

        ex = RayFolds(cfg.ray_address)
        ex.describe()  # join or start the cluster now: a bad address is a usage error before any training
        return ex
    return LocalExecutor()


@dataclass
class _Stage:
    """What one training run has settled so far (filled in step by step by the functions below)."""

    run: RunDir
    cfg: TrainConfig
    ex: Any
    on_fold_done: FoldDone | None
    task: str
    man: pd.DataFrame
    excl: planning.Exclusions
    classes: list[str]
    device: Any
    workers: int
    model: str = ""
    spec: Any = None
    size: int = 0
    n_classes: int | None = None
    notes: list[str] = field(default_factory=list)
    cache: Any = None
    cman: pd.DataFrame | None = None
    img_paths: list = field(default_factory=list)
    protocol: str = ""
    slots: list = field(default_factory=list)  # per fold, in fold order: (frame or None, record)
    mode: str = "scratch"  # probe | finetune | scratch (planning.choose_mode)


def _update_stage(run: RunDir, **details) -> None:
    """Merge details into run.json's ``stages.train`` entry (kept by RunDir.stage when it finishes)."""
    stages = run.info.get("stages", {})
    stages["train"] = {**stages.get("train", {}), **details}
    run.update_info(stages=stages)


def _run_training(run: RunDir, cfg: TrainConfig, on_fold_done: FoldDone | None, ex, adjust_fit=None) -> None:
    from audit.core.system import cpu_workers
    from audit.io.gpu import resolve_device

    t_start = time.perf_counter()
    task = validate_task(cfg.task or run.task)
    man = run.manifest()
    excl, classes = planning.exclude_unusable(run, man, task, [str(c) for c in run.classes()])
    st = _Stage(run=run, cfg=cfg, ex=ex, on_fold_done=on_fold_done, task=task, man=man, excl=excl, classes=classes,
                device=resolve_device(cfg.device), workers=cpu_workers(cfg.workers))
    _choose_model(st)
    _plan_time(st)
    _decode(st)
    data = _Data.build(st)
    fit_cfg, resolved = _settings(st)
    if st.task == "segment":
        fit_cfg, resolved = _seg_loss(st, data, fit_cfg, resolved)
    if adjust_fit is not None:  # audit mitigate (issue 21)
        fit_cfg, resolved = adjust_fit(data.table, data.cache_pos, len(st.cman), fit_cfg, resolved)
    folds = _plan(st, data.table)
    if st.mode == "probe":  # frozen backbone: one feature pass, one linear probe per fold
        from audit.train.probe_stage import run_probe

        run_probe(st, data, folds, resolved)
    else:
        _train_folds(st, data, folds, fit_cfg, resolved)
    _write_outputs(st, data, t_start)
    from audit.train.sanity_hook import sanity_after_training

    sanity_after_training(st, data, folds)  # issue 25: did the model learn? stage "train" findings


def _choose_model(st: _Stage) -> None:
    cand = st.excl.usable()
    if not cand.any():
        counts = st.excl.reasons.value_counts().head(3).to_dict()
        raise InputError(f"no usable samples to train on (excluded: {counts})")
    side = planning.image_side(st.run, st.man, cand)
    choice = planning.choose_mode(st.cfg, st.task, side, st.device.type)
    st.mode, st.cfg = choice.mode, replace(st.cfg, model=choice.model, pretrained=choice.pretrained)
    st.notes.insert(0, f"mode {choice.mode}: {choice.why}")
    st.model, st.spec, st.size = planning.choose_model(st.cfg, st.task, side, native=choice.mode != "scratch")
    _update_stage(st.run, mode=choice.mode, mode_reason=choice.why)
    if st.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    _set_threads(st)
    st.n_classes = len(st.classes) if st.classes else None


def _set_threads(st: _Stage) -> None:
    if st.device.type == "cpu":
        # tiny models gain little from a second thread and lose a lot when cores are shared (OpenMP barriers
        # wait for descheduled threads); a fixed rule also keeps CPU results reproducible run to run
        torch.set_num_threads(int(st.cfg.workers) if st.cfg.workers else (1 if st.spec.small else st.workers))


def _plan_time(st: _Stage) -> None:
    """The plan line (:mod:`audit.train.budget`): calibrated estimate, a cheaper plan when over the budget."""
    from audit.train import budget

    model = st.model
    plan = budget.plan_training(st)
    if st.model != model:
        _set_threads(st)
        st.notes.insert(0, f"plan: {plan['reason']}")
    _update_stage(st.run, plan=plan, estimate_seconds=plan["estimate_seconds"])


def _decode(st: _Stage) -> None:
    """Decode the candidate rows once (:mod:`audit.io.tensor_cache`); rows that fail are excluded."""
    from audit.io.tensor_cache import build_cache
    from audit.progress import Bar

    run, man = st.run, st.man
    cand_pos = np.flatnonzero(st.excl.usable())
    cman = st.cman = man.iloc[cand_pos].reset_index(drop=True)
    st.img_paths = run.abspaths(cman["filepath"].tolist())
    mask_paths = run.abspaths(cman["mask"].tolist()) if st.task == "segment" else None
    fingerprint = str(run.dataset.get("fingerprint", ""))
    key_src = "\x00".join([fingerprint, st.task, str(st.n_classes), *cman["sample_id"].astype(str).tolist()])
    cache_key = hashlib.sha1(key_src.encode()).hexdigest()[:16]
    with Bar(len(cman), "decoding images") as bar:
        cache = st.ex.build_cache(build_cache, st.img_paths, size=st.size, key=cache_key, mask_paths=mask_paths,
                                  n_classes=st.n_classes, device=st.device, cache_dir=run.path / "train" / "cache",
                                  workers=st.workers, exif=st.task == "classify", progress=bar.advance)
    bad = ~cache.ok
    if bad.any():
        full = np.zeros(len(man), dtype=bool)
        full[cand_pos[bad]] = True
        errs = pd.Series(pd.NA, index=man.index, dtype="string")
        errs[cand_pos[bad]] = [cache.errors[i] for i in np.flatnonzero(bad)]
        st.excl.add(full, errs)
    if not cache.ok.any():
        raise InputError(f"none of the {len(cman)} images could be decoded (e.g. {cache.errors[0]})")
    if st.task == "segment":
        st.n_classes, st.classes = planning.segment_classes(cache, st.n_classes, st.classes, st.notes)
    assert st.n_classes is not None
    st.cache = cache


@dataclass
class _Data:
    """The decoded rows: the usable table, its cache rows, targets and the batch source."""

    table: pd.DataFrame
    cache_pos: np.ndarray  # table row i -> cache row cache_pos[i]
    y_all: np.ndarray | None
    targets: torch.Tensor
    ids: np.ndarray
    domains: np.ndarray
    src: Any = None

    @classmethod
    def build(cls, st: _Stage) -> _Data:
        usable = np.flatnonzero(st.cache.ok)
        table = st.cman.iloc[usable].reset_index(drop=True)
        y_all = None
        if st.task == "classify":
            cls_index = {c: i for i, c in enumerate(st.classes)}
            y_all = np.zeros(len(st.cman), dtype=np.int64)
            y_all[usable] = table["label"].map(cls_index).to_numpy(dtype=np.int64)
            targets = torch.from_numpy(y_all).to(st.cache.images.device)
        else:
            targets = st.cache.masks
        has_dom = "domain" in table.columns
        dom = table["domain"].astype(object).to_numpy() if has_dom else np.array([None] * len(table))
        return cls(table=table, cache_pos=usable, y_all=y_all, targets=targets,
                   ids=table["sample_id"].astype(str).to_numpy(), domains=dom)


def _settings(st: _Stage):
    """The fit settings and the resolved config (written to run.json with the device)."""
    from audit.io.gpu import amp_dtype, device_info
    from audit.train.augment import AugmentConfig
    from audit.train.trainer import FitConfig

    cfg, spec = st.cfg, st.spec
    amp = amp_dtype(st.device, cfg.amp)
    lr = float(cfg.lr or (spec.lr * (0.3 if (cfg.weights or cfg.pretrained) else 1.0)))
    fit_cfg = FitConfig(task=st.task, n_classes=st.n_classes, epochs=int(cfg.epochs),
                        batch_size=int(cfg.batch_size or spec.batch_size), lr=lr, amp_dtype=amp, channels_last=True,
                        compile=bool(cfg.compile), balanced=bool(cfg.balanced), patience=cfg.patience,
                        augment=AugmentConfig(enabled=bool(cfg.augment), hflip=bool(cfg.hflip)))
    resolved = planning.resolved_settings(cfg, task=st.task, model=st.model, fit_cfg=fit_cfg, size=st.size,
                                          device=st.device, workers=st.workers, amp=amp, classes=st.classes,
                                          mode=st.mode)
    if cfg.engine == "ray":
        st.notes.append("engine=ray: each fold trained and predicted by a Ray task")
    dinfo = device_info(st.device).as_dict()
    dinfo.update(amp=resolved["amp"], channels_last=True, cache=st.cache.location,
                 nvjpeg_decoded=st.cache.gpu_decoded)
    st.run.update_info(device=dinfo, config={"train": resolved})
    return fit_cfg, resolved


def _seg_loss(st: _Stage, data: _Data, fit_cfg, resolved: dict):
    """Dice + cross-entropy when the foreground is a small share of the pixels (audit.train.segloss); said in
    run.json and the notes. Part of the fold hash, so a changed loss retrains."""
    from audit.train.segloss import choose_seg_loss

    rows = torch.as_tensor(data.cache_pos, dtype=torch.long, device=data.targets.device)
    name, share = choose_seg_loss(data.targets.index_select(0, rows), st.n_classes, requested=st.cfg.seg_loss)
    resolved = {**resolved, "seg_loss": name, "foreground_share": round(share, 4)}
    if name == "dice_ce":
        why = "as asked" if st.cfg.seg_loss == "dice_ce" else "the foreground is a small share"
        st.notes.append(f"loss Dice + cross-entropy ({why}: foreground {share:.1%} of the training pixels)")
    st.run.update_info(config={"train": resolved})
    return replace(fit_cfg, seg_loss=name), resolved


def _plan(st: _Stage, table: pd.DataFrame) -> list:
    folds, st.protocol, split_notes = planning.plan_folds(table, st.cfg)
    if split_notes.get("fallback"):
        st.notes.append(split_notes["fallback"])
    for reason, sids in split_notes.get("excluded", {}).items():
        st.excl.add(st.man["sample_id"].astype(str).isin(set(sids)).to_numpy(), reason)
    return folds



# ---------------------------------------------------------------------------------------------- the folds
def _eval_rows(fold):
    eval_idx = np.concatenate([fold.val_idx, fold.test_idx]).astype(np.int64)
    roles = ["val"] * len(fold.val_idx) + ["test"] * len(fold.test_idx)
    held = np.concatenate([np.zeros(len(fold.val_idx), bool), fold.held_out])
    return eval_idx, roles, held


def _fold_record(fold, key: str) -> dict:
    return {"fold": fold.name, "seed": fold.seed, "key": key, "train_domains": fold.train_domains_str,
            "n_train": len(fold.train_idx), "n_val": len(fold.val_idx),
            "n_test_in_domain": int((~fold.held_out).sum()), "n_test_out_domain": int(fold.held_out.sum()),
            **fold.notes}


def _train_folds(st: _Stage, data: _Data, folds: list, fit_cfg, resolved: dict) -> None:
    """Each fold: skipped, reused from disk, trained here in turn, or (parallel executors) trained all at once."""
    from audit.progress import Bar
    from audit.train.trainer import BatchSource

    data.src = BatchSource(st.cache.images, data.targets, st.device, channels_last=True)
    fingerprint = str(st.run.dataset.get("fingerprint", ""))
    wid = planning.weights_id(st.cfg)
    todo: list[dict] = []
    with Bar(sum(fit_cfg.epochs for _ in folds), f"training {st.model}", unit="epoch") as bar:
        for fold in folds:
            key = fold_key(st.model, st.protocol, fold.seed, fold.name)
            rec = _fold_record(fold, key)
            st.slots.append((None, rec))
            if fold.notes.get("skipped") or len(fold.train_idx) < 2:
                rec["status"] = "skipped"
                rec.setdefault("skipped", "fewer than 2 training samples")
                bar.advance(fit_cfg.epochs)
                continue
            h = planning.fold_hash(resolved, fingerprint=fingerprint, fold=fold, ids=data.ids, weights=wid,
                                   n_classes=st.n_classes)
            if _reuse(st, key, h, rec):
                bar.advance(fit_cfg.epochs)
                continue
            job = {"slot": len(st.slots) - 1, "fold": fold, "key": key, "h": h, "rec": rec,
                   "ckpt": st.run.path / "train" / "ckpt" / f"{key}.pt"}
            if getattr(st.ex, "parallel_folds", False):
                todo.append(job)  # trained below, all at once
                continue
            _train_one(st, data, job, fit_cfg, bar)
        if todo:
            _train_parallel(st, data, todo, fit_cfg, bar)


def _reuse(st: _Stage, key: str, h: str, rec: dict) -> bool:
    """A fold stored with the same hash: its table is taken as it is."""
    pq_p = st.run.path / "train" / "folds" / f"{key}.parquet"
    meta = st.run.read_json(f"train/folds/{key}.json", default=None)
    if not (meta and meta.get("hash") == h and pq_p.is_file()):
        return False
    rec.update(status="reused", **{k: meta.get(k) for k in ("best_epoch", "val_score", "seconds")})
    st.slots[-1] = (pd.read_parquet(pq_p), rec)
    if st.on_fold_done:
        st.on_fold_done(key, "reused")
    return True


def _train_one(st: _Stage, data: _Data, job: dict, fit_cfg, bar) -> None:
    from audit.train.models import build_model

    fold, cfg = job["fold"], st.cfg
    t0 = time.perf_counter()
    torch.manual_seed(fold.seed)
    model, minfo = build_model(st.model, st.n_classes, task=st.task, weights=cfg.weights, pretrained=cfg.pretrained)
    bar.set_description(f"{st.model} {fold.name} seed {fold.seed}")

    def on_epoch(ep, r, _bar=bar):
        _bar.advance(1, info=f"val {r.get('val_score', float('nan')):.3f}" if r.get("val_score") is not None else "")
        if r.get("warning"):
            _bar.warn(f"{fold.name}: {r['warning']}")

    cp = data.cache_pos
    hooks, resumed = _fit_hooks(st, fold, fit_cfg, bar, len(fold.train_idx))
    res = st.ex.fit(model, data.src, cp[fold.train_idx], cp[fold.val_idx], fit_cfg, seed=fold.seed,
                    ckpt_path=job["ckpt"], ckpt_hash=job["h"], on_epoch=on_epoch, **hooks)
    # epochs not reported by on_epoch (resumed ones are counted by on_resume; early stop skips the rest)
    bar.advance(fit_cfg.epochs - (res.epochs_run - (res.resumed_from or 0)) - resumed[0])
    eval_idx, _, _ = _eval_rows(fold)
    extra = _embedding_capture(st, model, job)
    out = st.ex.predict(model, data.src, cp[eval_idx], fit_cfg, ids=data.ids[eval_idx],
                        paths=[st.img_paths[i] for i in cp[eval_idx]], **extra)  # Ray workers read the files
    _finish(st, data, job, res, out, minfo, round(time.perf_counter() - t0, 3))


def _fit_hooks(st: _Stage, fold, fit_cfg, bar, n_train: int) -> tuple[dict, list]:
    """``on_batch`` (a plain line at least every 30 s: fold, epoch, batch, img/s, eta of the stage) and
    ``on_resume`` (one line: ``resuming fold holdout=west at epoch 12/40``), for executors whose fit takes them."""
    import inspect

    from audit.progress import format_eta

    params = inspect.signature(st.ex.fit).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    epochs, seed = fit_cfg.epochs, f"  seed {fold.seed}" if st.cfg.seeds > 1 else ""
    state = {"t0": time.perf_counter(), "done": 0, "ep": None, "seen": 0}
    resumed = [0]

    def on_batch(ep, b, nb, seen):
        if state["ep"] != ep:
            state["done"] += state["seen"]
            state["ep"] = ep
        state["seen"] = seen
        el = time.perf_counter() - state["t0"]
        rate = (state["done"] + seen) / el if el > 0 else float("nan")
        left = max(0, n_train - seen) + max(0, (bar.total or 0) - bar.done - 1) * n_train
        bar.show(f"train  fold {fold.name}{seed}  epoch {ep + 1}/{epochs}  batch {b}/{nb}  {rate:.0f} img/s  "
                 f"eta {format_eta(left / rate if rate > 0 else float('nan'))}")

    def on_resume(start):
        resumed[0] = start
        bar.advance(start)
        bar.say(f"resuming fold {fold.name}{seed} at epoch {start + 1}/{epochs}")

    hooks: dict = {}
    if takes_all or "on_batch" in params:
        hooks["on_batch"] = on_batch
    if takes_all or "on_resume" in params:
        hooks["on_resume"] = on_resume
    return hooks, resumed


def _embedding_capture(st: _Stage, model, job: dict) -> dict:
    """Executors whose predict takes ``capture`` record penultimate embeddings (audit.slices.embed)."""
    import inspect

    if "capture" not in inspect.signature(st.ex.predict).parameters or not st.ex.is_main:
        return {}
    from audit.slices.embed import EmbeddingHook

    job["embed"] = EmbeddingHook(model)
    return {"capture": job["embed"]}


def _train_parallel(st: _Stage, data: _Data, todo: list[dict], fit_cfg, bar) -> None:
    """Folds as parallel tasks on a cluster (--engine ray): each trains and predicts its fold on one worker, and
    captures the fold's penultimate embeddings (``RUN/embeddings/predict``, for ``audit slices``) during that same
    inference pass."""
    bar.set_description(f"{st.model}: {len(todo)} folds in parallel")
    cp = data.cache_pos
    specs = [{"key": j["key"], "seed": j["fold"].seed, "train": cp[j["fold"].train_idx],
              "val": cp[j["fold"].val_idx], "eval": cp[_eval_rows(j["fold"])[0]],
              "ckpt": j["ckpt"], "hash": j["h"]} for j in todo]
    build = {"name": st.model, "n_classes": st.n_classes, "task": st.task, "weights": st.cfg.weights,
             "pretrained": st.cfg.pretrained}
    by_key = {j["key"]: j for j in todo}
    for key, res, out, minfo, secs, vectors in st.ex.run_folds(specs, images=st.cache.images, targets=data.targets,
                                                               build=build, fit_cfg=fit_cfg):
        bar.advance(fit_cfg.epochs)
        by_key[key]["vectors"] = vectors
        _finish(st, data, by_key[key], res, out, minfo, secs)


def _fold_frame(st: _Stage, data: _Data, fold, key: str, out: torch.Tensor) -> pd.DataFrame:
    """The prediction rows of one trained fold (segmentation: test masks written as PNGs)."""
    from audit.train.predictions import classify_rows, mask_name, save_mask_png, segment_counts, segment_rows

    eval_idx, roles, held = _eval_rows(fold)
    common = dict(model=st.model, protocol=st.protocol, fold=fold.name, seed=fold.seed, role=roles,
                  held_out=held, train_domains=fold.train_domains_str, test_domain=data.domains[eval_idx])
    if st.task == "classify":
        y_idx = data.y_all[data.cache_pos[eval_idx]]
        return classify_rows(data.ids[eval_idx], out.numpy(), y_idx, st.classes, **common)
    tgt = st.cache.masks[torch.as_tensor(data.cache_pos[eval_idx])].cpu()
    counts = segment_counts(out, tgt, st.n_classes)
    mpaths: list[str | None] = []
    for j, sid in enumerate(data.ids[eval_idx]):
        if roles[j] != "test":
            mpaths.append(None)
            continue
        rel = mask_name(key, sid)
        if st.ex.is_main:  # other ranks of a distributed run see the run directory read-only
            save_mask_png(out[j].numpy(), st.run.path / rel)
        mpaths.append(rel)
    return segment_rows(data.ids[eval_idx], counts, mpaths, st.n_classes, **common)


def _finish(st: _Stage, data: _Data, job: dict, res, out: torch.Tensor, minfo: dict, secs: float) -> None:
    """Write one trained fold's predictions and metadata (the same for every executor)."""
    fold, key, rec = job["fold"], job["key"], job["rec"]
    df = _fold_frame(st, data, fold, key, out)
    st.run.write_table(f"train/folds/{key}.parquet", df)
    # RUN/embeddings/predict/<key>.{npy,parquet}: from this process's capture hook, or from a Ray fold task
    vectors = job["embed"].array() if job.get("embed") is not None else job.get("vectors")
    if vectors is not None and st.ex.is_main:
        from audit.slices.embed import write_fold_embeddings

        write_fold_embeddings(st.run, key, vectors, df[["sample_id", "model", "protocol", "fold", "seed", "role"]])
    status = "resumed" if res.resumed_from is not None else "trained"
    st.run.write_json(f"train/folds/{key}.json", {
        "hash": job["h"], "fold": fold.name, "seed": fold.seed, "best_epoch": res.best_epoch,
        "val_score": res.best_score, "history": res.history, "seconds": secs, "selection": res.selection,
        "resumed_from": res.resumed_from, "weights": minfo.get("weights"), "notes": res.notes,
    })
    rec.update(status=status, best_epoch=res.best_epoch, val_score=res.best_score,
               val_metric=score_name(st.task, st.n_classes), seconds=secs,
               epochs_run=res.epochs_run, train_images_per_s=round(res.images_per_s, 1), selection=res.selection)
    if res.notes:
        rec["notes"] = res.notes
    st.slots[job["slot"]] = (df, rec)
    if st.on_fold_done:
        st.on_fold_done(key, status)


# ---------------------------------------------------------------------------------------------- outputs
def _write_outputs(st: _Stage, data: _Data, t_start: float) -> None:
    run, cache = st.run, st.cache
    frames = [df for df, _ in st.slots if df is not None]
    if not frames:
        raise InputError("no fold could be trained (every fold lacked training samples); see run.json stages.train")
    preds = pd.concat(frames, ignore_index=True)
    # Several models / protocols can live in one run: replace only this (model, protocol)'s rows.
    prev = run.read_table("predictions.parquet", required=False)
    if prev is not None and {"model", "protocol"} <= set(prev.columns) and len(prev):
        mine = (prev["model"].astype(str) == str(st.model)) & (prev["protocol"].astype(str) == str(st.protocol))
        other = prev[~mine]
        if len(other):
            preds = pd.concat([other, preds], ignore_index=True)
    run.write_table("predictions.parquet", preds)
    excl_df = st.excl.table(st.man)
    run.write_table("train/excluded.parquet", excl_df)
    _update_stage(
        run, model=st.model, protocol=st.protocol, image_size=st.size, n_classes=st.n_classes,
        n_rows=int(len(st.man)), n_used=int(len(data.table)), n_excluded=int(len(excl_df)),
        excluded=excl_df["reason"].value_counts().to_dict(),
        excluded_examples={r: g["sample_id"].head(3).tolist() for r, g in excl_df.groupby("reason")},
        cache={"location": cache.location, "bytes": cache.nbytes, "decode_seconds": round(cache.seconds, 3),
               "reused": cache.reused, "nvjpeg": cache.gpu_decoded},
        folds=[rec for _, rec in st.slots], notes=st.notes, executor=st.ex.describe(), n_predictions=int(len(preds)),
        train_seconds=round(time.perf_counter() - t_start, 3), seconds=round(time.perf_counter() - t_start, 3),
    )
