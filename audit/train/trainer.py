"""The training loop: batches gathered from the decode-once tensor cache, augmented on the device.

``fit`` trains one model on one fold's ``train`` rows, selects the epoch with the best ``val`` score
(accuracy, or mean IoU for segmentation; earliest wins ties) and optionally stops early; the held-out rows
are never passed in. ``predict`` runs inference on any rows. On CUDA: AMP (bf16 where supported, else fp16
with loss scaling), channels_last, non-blocking copies from pinned memory (or no copies at all when the
cache lives on the GPU), optional ``torch.compile``. On CPU: fp32, channels_last, seeded and deterministic.

A checkpoint is written after every epoch (model, optimizer, scheduler, RNG states, best weights, the
objective's state such as GroupDRO's group weights) so a killed fold resumes from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audit.io.tensor_cache import IGNORE_INDEX
from audit.log import get_logger
from audit.train.augment import AugmentConfig, augment_batch, normalize
from audit.train.models import forward_logits
from audit.train.segloss import foreground_iou, make_seg_loss, stuck_message

_log = get_logger(__name__)

__all__ = ["FitConfig", "FitResult", "BatchSource", "fit", "predict", "score_name"]

_PREDICT_FLUSH_BYTES = 256 * 2**20


@dataclass
class FitConfig:
    """Resolved hyper-parameters of one training run (one fold, one seed)."""

    task: str
    n_classes: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 1e-4
    amp_dtype: torch.dtype | None = None
    channels_last: bool = True
    compile: bool = False
    balanced: bool = False
    patience: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seg_loss: str = "ce"  # "ce" | "dice_ce" (audit.train.segloss; the stage picks dice_ce for small foregrounds)
    # mitigation (audit.mitigate, issue 21); the defaults keep plain ERM. Arrays are indexed by BatchSource row.
    row_weights: Any = None  # float per row: loss weight; rows with weight 0 are left out of training
    row_groups: Any = None  # int group id per row (>= 0): group-balanced sampling and GroupDRO
    sampling: str = "shuffle"  # "shuffle" | "group_balanced" (draws with replacement, equal mass per group)
    # "erm" | "groupdro" (online GroupDRO, Sagawa et al. 2020) | "reweight" (loss weight 1 / frequency of the row's
    # row_groups cell among the fold's own training rows, mean 1)
    loss: str = "erm"
    dro_eta: float = 0.01  # GroupDRO step size of the exponentiated-gradient group weights
    extra_augment: tuple = ()  # ((name, probability), ...) from audit.train.augment.EXTRA_AUGMENTS


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_score: float | None  # None: no validation rows (the last epoch is selected; there is no val score)
    history: list[dict]
    epochs_run: int
    resumed_from: int | None
    train_seconds: float
    train_images: int
    selection: str
    compiled: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds > 0 else float("nan")


class BatchSource:
    """Batches from the uint8 cache: gather rows, move to the device, scale to [0, 1] (+ targets)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, device: torch.device, *,
                 channels_last: bool = True):
        self.images = images
        self.targets = targets
        self.device = device
        self.channels_last = channels_last
        self._pin = device.type == "cuda" and images.device.type == "cpu"

    def _move(self, t: torch.Tensor) -> torch.Tensor:
        if t.device == self.device:
            return t
        if self._pin:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def get(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``float32 [B, 3, S, S]`` in [0, 1] and targets (labels ``[B]`` or masks ``[B, S, S]``)."""
        i = idx.to(self.images.device)
        x = self._move(self.images.index_select(0, i)).float().div_(255.0)
        y = self._move(self.targets.index_select(0, idx.to(self.targets.device)))
        return x, y

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = normalize(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def warmup_cosine(total_steps: int, warmup: float = 0.1, floor: float = 0.01) -> Callable[[int], float]:
    """LR factor per step: linear warm-up over ``warmup`` of the steps, then cosine decay to ``floor``."""
    import math

    w = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < w:
            return 0.1 + 0.9 * step / w
        t = min(1.0, (step - w) / max(1, total_steps - w))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _state_of(model: nn.Module) -> dict:
    raw = getattr(model, "_orig_mod", model)
    return {k: v.detach().to("cpu", copy=True) for k, v in raw.state_dict().items()}


def score_name(task: str, n_classes: int | None) -> str:
    """The validation score that selects the epoch: accuracy; foreground IoU for binary segmentation (a model that
    predicts background everywhere scores 0, not the background-dominated mIoU of about 0.5); mIoU otherwise."""
    if task == "classify":
        return "accuracy"
    return "fg_iou" if n_classes == 2 else "miou"


def _score(task: str, stats: dict) -> float:
    if task == "classify":
        return stats["correct"] / stats["n"] if stats["n"] else float("nan")
    inter, union = stats["inter"], stats["union"]
    present = union > 0
    if len(union) == 2 and union[1] > 0:  # binary: the foreground's IoU (see score_name)
        return float(inter[1] / union[1])
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def _evaluate(model: nn.Module, src: BatchSource, idx: np.ndarray, cfg: FitConfig, loss_fn) -> dict:
    """Loss and score on rows ``idx`` (no augmentation)."""
    model.eval()
    dev, k = src.device, cfg.n_classes
    # accumulate on the device and read back once: no GPU sync per batch
    n, loss_sum, correct = 0, torch.zeros((), device=dev), torch.zeros((), dtype=torch.long, device=dev)
    conf = torch.zeros(k * k, dtype=torch.long, device=dev)
    bs = max(cfg.batch_size * 2, 1)
    with torch.inference_mode():
        for s in range(0, len(idx), bs):
            bi = torch.as_tensor(idx[s:s + bs], dtype=torch.long)
            x, y = src.get(bi)
            with _autocast(dev, cfg.amp_dtype):
                logits = forward_logits(model, src.prepare(x))
            logits = logits.float()
            loss_sum += loss_fn(logits, y.long()) * len(bi)
            n += len(bi)
            pred = logits.argmax(1)
            if cfg.task == "classify":
                correct += (pred == y).sum()
            else:
                valid = y != IGNORE_INDEX
                conf += torch.bincount((y[valid].long() * k + pred[valid]).flatten(), minlength=k * k)
    cm = conf.view(k, k).cpu().numpy()
    tp = np.diag(cm)
    inter, union = tp.astype(np.int64), (cm.sum(0) + cm.sum(1) - tp).astype(np.int64)
    stats = {"n": n, "loss": float(loss_sum) / n if n else float("nan"), "correct": int(correct), "inter": inter,
             "union": union}
    stats["score"] = _score(cfg.task, stats)
    return stats


def _save_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _optimizer(model: nn.Module, cfg: FitConfig, steps: int):
    """AdamW (no weight decay on biases / norms) with warmup + cosine over all steps."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.epochs * steps))


def _resumable(ckpt_path: Path | None, ckpt_hash: str, cfg: FitConfig) -> dict | None:
    """The unfinished checkpoint of this very fold (same hash, epochs left), or None."""
    if ckpt_path is None or not Path(ckpt_path).is_file():
        return None
    try:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # never unpickle code from disk
    except Exception as e:  # a damaged checkpoint: start the fold again
        _log.warning("checkpoint %s is unreadable (%s: %s); training the fold from the start", ckpt_path,
                     type(e).__name__, e)
        return None
    if ck and ck.get("hash") == ckpt_hash and not ck.get("done") and ck.get("epoch", -1) + 1 < cfg.epochs:
        return ck
    return None


def _restore(ck: dict, model: nn.Module, opt, sched, scaler, gen: torch.Generator, dev_gen: torch.Generator) -> None:
    """Model, optimizer, scheduler, scaler and RNG states from an unfinished checkpoint."""
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    scaler.load_state_dict(ck["scaler"])
    gen.set_state(ck["gen"])
    if ck.get("dev_gen") is not None and dev_gen is not gen:
        dev_gen.set_state(ck["dev_gen"])
    torch.set_rng_state(ck["torch_rng"])


def _epoch_order(n_train: int, labels_cpu: torch.Tensor | None, cfg: FitConfig, gen: torch.Generator,
                 groups_cpu: torch.Tensor | None = None):
    """This epoch's order of the training rows (class- or group-balanced draws with replacement when asked)."""
    if groups_cpu is not None:
        counts = torch.bincount(groups_cpu).float()
        return torch.multinomial(1.0 / counts[groups_cpu], n_train, replacement=True, generator=gen)
    if labels_cpu is not None:
        counts = torch.bincount(labels_cpu, minlength=cfg.n_classes).float()
        w = 1.0 / counts[labels_cpu]
        return torch.multinomial(w, n_train, replacement=True, generator=gen)
    return torch.randperm(n_train, generator=gen)


@dataclass
class _Step:
    """What one optimisation step uses; ``model``/``compiled`` change when a compiled model falls back."""

    model: nn.Module
    raw_model: nn.Module
    compiled: bool
    loss_fn: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    scaler: Any
    dev_gen: torch.Generator
    notes: list
    objective: Any = None  # (logits, y, rows) -> loss; None: loss_fn (audit.mitigate sets weights / GroupDRO)
    on_batch: Callable[[int, int, int], None] | None = None  # (batches done, batches in the epoch, images seen)
    # segmentation without validation rows: the confusion counts (k*k, on the device) of the training batches'
    # predictions, for the early "foreground IoU still 0" warning; None: not tracked
    train_conf: torch.Tensor | None = None


def _train_epoch(st: _Step, src: BatchSource, rows: torch.Tensor, cfg: FitConfig):
    """One pass over ``rows``; ``(loss sum on the device, images seen)``."""
    device, n_train = src.device, len(rows)
    # the running loss stays on the device: a float() per step would wait for the GPU every step
    loss_sum, seen = torch.zeros((), device=device), 0
    n_batches = -(-n_train // cfg.batch_size)
    for b, s in enumerate(range(0, n_train, cfg.batch_size)):
        bi = rows[s:s + cfg.batch_size]
        if len(bi) < 2 and n_train >= 2:
            continue  # BatchNorm cannot train on a batch of one
        x, y = src.get(bi)
        x, y2 = augment_batch(x, y if cfg.task == "segment" else None, cfg.augment, st.dev_gen)
        if y2 is not None:
            y = y2
        if cfg.extra_augment:
            from audit.train.augment import extra_augment

            x = extra_augment(x, cfg.extra_augment, st.dev_gen)
        x = src.prepare(x)
        try:
            with _autocast(device, cfg.amp_dtype):
                logits = forward_logits(st.model, x)
                loss = _batch_loss(st, logits.float(), y.long(), bi)
        except Exception as e:
            if not st.compiled:
                raise
            st.notes.append(f"torch.compile failed ({type(e).__name__}); trained eagerly")
            st.model, st.compiled = st.raw_model, False
            with _autocast(device, cfg.amp_dtype):
                logits = forward_logits(st.model, x)
                loss = _batch_loss(st, logits.float(), y.long(), bi)
        if st.train_conf is not None:
            _count_pixels(st.train_conf, logits, y, cfg.n_classes)
        st.opt.zero_grad(set_to_none=True)
        st.scaler.scale(loss).backward()
        st.scaler.step(st.opt)
        st.scaler.update()
        st.sched.step()
        loss_sum += loss.detach().float() * len(bi)
        seen += len(bi)
        if st.on_batch is not None:
            st.on_batch(b + 1, n_batches, seen)
    return loss_sum, seen


def _count_pixels(conf: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, k: int) -> None:
    """Add a training batch's (true, predicted) pixel counts to ``conf`` (no gradient, no GPU sync)."""
    with torch.no_grad():
        valid = y != IGNORE_INDEX
        pred = logits.detach().argmax(1)
        conf += torch.bincount((y[valid].long() * k + pred[valid]).flatten(), minlength=k * k)


def _train_fg_iou(conf: torch.Tensor, k: int) -> float:
    """Foreground IoU of the training batches' predictions (counts from :func:`_count_pixels`)."""
    cm = conf.view(k, k).cpu().numpy()
    tp = np.diag(cm)
    return foreground_iou(tp, cm.sum(0) + cm.sum(1) - tp)


def _stuck_warning(cfg: FitConfig, epoch: int, val: dict | None, train_conf: torch.Tensor | None,
                   rec: dict) -> str | None:
    """The early warning when the foreground IoU is still 0: on the validation rows, or, when the fold has none,
    on the training batches (their predictions under augmentation, counted as they were trained on)."""
    if cfg.task != "segment":
        return None
    if val is not None:
        rec["val_fg_iou"] = foreground_iou(val["inter"], val["union"])
        return stuck_message(epoch, rec["val_fg_iou"])
    if train_conf is None:
        return None
    rec["train_fg_iou"] = _train_fg_iou(train_conf, cfg.n_classes)
    warn = stuck_message(epoch, rec["train_fg_iou"])
    return warn.replace("on the validation rows", "on the training batches (this fold has no validation rows)") \
        if warn else None


def _batch_loss(st: _Step, logits: torch.Tensor, y: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return st.loss_fn(logits, y) if st.objective is None else st.objective(logits, y, rows)


def fold_weights(row_groups, train_idx: np.ndarray) -> np.ndarray:
    """Loss weights ``1 / count`` of each training row's group among ``train_idx`` (mean 1 over them; 0 elsewhere).

    >>> fold_weights(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 3])).round(2).tolist()
    [0.67, 0.67, 0.67, 2.0, 0.0]
    """
    if row_groups is None:
        raise ValueError("loss='reweight' needs row_groups")
    g = np.asarray(row_groups, dtype=np.int64)
    w = np.zeros(len(g))
    if len(train_idx):
        counts = np.bincount(g[train_idx])
        wt = 1.0 / counts[g[train_idx]]
        w[train_idx] = wt / wt.mean()
    return w


def _mitigation(cfg: FitConfig, train_idx: np.ndarray, device: torch.device):
    """``(training rows, group ids for balanced sampling, objective)``; by default ``(train_idx, None, None)``.
    Rows with ``row_weights`` 0 are left out (``audit mitigate --method dedup``)."""
    from audit.train.objectives import make_objective

    if cfg.row_weights is not None:
        train_idx = train_idx[np.asarray(cfg.row_weights)[train_idx] > 0]
    if cfg.loss == "reweight":  # inverse cell frequency over this fold's training rows, not the whole run
        cfg = replace(cfg, loss="erm", row_weights=fold_weights(cfg.row_groups, train_idx))
    groups = torch.as_tensor(np.asarray(cfg.row_groups)[train_idx], dtype=torch.long) \
        if cfg.sampling == "group_balanced" and cfg.row_groups is not None else None
    return train_idx, groups, make_objective(cfg, device, IGNORE_INDEX)


def _epoch_checkpoint(ckpt_hash: str, epoch: int, raw_model, opt, sched, scaler, gen, dev_gen, objective, *,
                      best: tuple, history: list, bad: int) -> dict:
    """What an unfinished fold's checkpoint holds after ``epoch``: everything :func:`fit` needs to go on
    identically (weights, optimizer, scheduler, scaler, RNG states, the selection so far, GroupDRO's ``q``)."""
    best_state, best_score, best_epoch = best
    return {"hash": ckpt_hash, "epoch": epoch, "done": False, "model": _state_of(raw_model),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
            "gen": gen.get_state(), "dev_gen": dev_gen.get_state() if dev_gen is not gen else None,
            "torch_rng": torch.get_rng_state(), "best_state": best_state, "best_score": best_score,
            "best_epoch": best_epoch, "history": history, "bad": bad,
            "objective": objective.state_dict() if hasattr(objective, "state_dict") else None}


def fit(model: nn.Module, src: BatchSource, train_idx: np.ndarray, val_idx: np.ndarray, cfg: FitConfig, *,
        seed: int, ckpt_path: Path | None = None, ckpt_hash: str = "",
        on_epoch: Callable[[int, dict], None] | None = None,
        on_batch: Callable[[int, int, int, int], None] | None = None,
        on_resume: Callable[[int], None] | None = None) -> FitResult:
    """Train ``model`` on rows ``train_idx``; select on ``val_idx`` (module docstring). Hooks: ``on_epoch(epoch,
    record)``, ``on_batch(epoch, batches done, batches in the epoch, images seen)``,
    ``on_resume(first epoch to run)``."""
    device = src.device
    train_idx, groups_cpu, objective = _mitigation(cfg, np.asarray(train_idx, dtype=np.int64), device)
    val_idx = np.asarray(val_idx, dtype=np.int64)
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw_model = model
    loss_fn = make_seg_loss(cfg.seg_loss, ignore_index=IGNORE_INDEX) if cfg.task == "segment" \
        else nn.CrossEntropyLoss()
    n_train = len(train_idx)
    steps = max(1, n_train // cfg.batch_size + (1 if n_train % cfg.batch_size > 1 else 0))
    opt, sched = _optimizer(model, cfg, steps)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp_dtype == torch.float16)
    gen = torch.Generator().manual_seed(seed)  # order + sampling
    dev_gen = torch.Generator(device=device).manual_seed(seed + 1) if device.type != "mps" else gen  # augmentation
    torch.manual_seed(seed)  # dropout
    labels_cpu = src.targets.index_select(0, torch.as_tensor(train_idx, device=src.targets.device)).cpu() \
        if cfg.balanced and cfg.task == "classify" else None

    best_state, best_score, best_epoch, history, start, bad = None, -float("inf"), -1, [], 0, 0
    resumed_from = None
    ck = _resumable(ckpt_path, ckpt_hash, cfg)
    if ck is not None:
        _restore(ck, raw_model, opt, sched, scaler, gen, dev_gen)
        if ck.get("objective") is not None and hasattr(objective, "load_state_dict"):
            objective.load_state_dict(ck["objective"])  # GroupDRO's q: the resumed fit goes on with the same weights
        best_state, best_score, best_epoch = ck["best_state"], ck["best_score"], ck["best_epoch"]
        history, bad = ck["history"], ck["bad"]
        start = resumed_from = ck["epoch"] + 1
        if on_resume is not None:
            on_resume(start)

    compiled, notes = False, []
    if cfg.compile:
        try:
            model = torch.compile(raw_model)
            compiled = True
        except Exception as e:  # older platforms / missing compiler: train eagerly, say so
            notes.append(f"torch.compile unavailable ({type(e).__name__}); trained eagerly")

    train_seconds, train_images = 0.0, 0
    epoch = start - 1
    for epoch in range(start, cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        rows = torch.as_tensor(train_idx)[_epoch_order(n_train, labels_cpu, cfg, gen, groups_cpu)]
        hook = (lambda b, nb, seen, _e=epoch: on_batch(_e, b, nb, seen)) if on_batch is not None else None
        train_conf = torch.zeros(cfg.n_classes ** 2, dtype=torch.long, device=device) \
            if cfg.task == "segment" and not len(val_idx) else None
        step = _Step(model, raw_model, compiled, loss_fn, opt, sched, scaler, dev_gen, notes, objective, hook,
                     train_conf)
        loss_sum, seen = _train_epoch(step, src, rows, cfg)
        model, compiled = step.model, step.compiled
        epoch_loss = float(loss_sum) / max(seen, 1)  # one device sync per epoch
        dt = time.perf_counter() - t0
        train_seconds, train_images = train_seconds + dt, train_images + seen
        val = _evaluate(model, src, val_idx, cfg, loss_fn) if len(val_idx) else None
        rec = {"epoch": epoch, "train_loss": epoch_loss, "seconds": round(dt, 3),
               "images_per_s": round(seen / dt, 1) if dt > 0 else None}
        if val is not None:
            rec.update(val_loss=val["loss"], val_score=val["score"])
            score = val["score"] if not np.isnan(val["score"]) else -float("inf")
        else:
            score = float(epoch)  # no validation rows: the last epoch is selected (a rank, never stored as a score)
        warn = _stuck_warning(cfg, epoch, val, train_conf, rec)
        if warn and not any(n.startswith("foreground IoU") for n in notes):
            notes.append(warn)
            rec["warning"] = warn
        history.append(rec)
        if score > best_score or best_state is None:
            best_score, best_epoch, best_state, bad = score, epoch, _state_of(raw_model), 0
        else:
            bad += 1
        stop = cfg.patience is not None and bad >= cfg.patience
        if ckpt_path is not None and epoch + 1 < cfg.epochs and not stop:
            _save_atomic(_epoch_checkpoint(ckpt_hash, epoch, raw_model, opt, sched, scaler, gen, dev_gen, objective,
                                           best=(best_state, best_score, best_epoch), history=history, bad=bad),
                         Path(ckpt_path))
        if on_epoch is not None:
            on_epoch(epoch, rec)
        if stop:
            notes.append(f"early stop after epoch {epoch} ({cfg.patience} epochs without val improvement)")
            break
    raw_model.load_state_dict(best_state)
    selection = "best val score" if len(val_idx) else "last epoch (no validation rows)"
    if ckpt_path is not None:
        _save_atomic({"hash": ckpt_hash, "done": True, "epoch": epoch, "model": best_state, "best_epoch": best_epoch,
                      "best_score": best_score, "history": history}, Path(ckpt_path))
    return FitResult(best_state=best_state, best_epoch=best_epoch,
                     best_score=float(best_score) if len(val_idx) else None, history=history,
                     epochs_run=len(history), resumed_from=resumed_from, train_seconds=train_seconds,
                     train_images=train_images, selection=selection, compiled=compiled, notes=notes)


def predict(model: nn.Module, src: BatchSource, idx: np.ndarray, cfg: FitConfig, *,
            capture: Any = None) -> torch.Tensor:
    """Class probabilities ``float32 [n, k]`` (classification) or predicted index masks ``uint8 [n, S, S]``.

    ``capture``: an optional context manager entered around the inference passes (e.g.
    :class:`audit.slices.embed.EmbeddingHook`, which records the penultimate-layer embeddings)."""
    if capture is not None:
        with capture:
            return predict(model, src, idx, cfg)
    model = model.to(src.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.eval()
    outs: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []  # results still on the device: copied back in blocks, not per batch
    pending_bytes = 0
    bs = max(cfg.batch_size * 2, 1)
    with torch.inference_mode():
        for s in range(0, len(idx), bs):
            bi = torch.as_tensor(np.asarray(idx[s:s + bs]), dtype=torch.long)
            x, _ = src.get(bi)
            with _autocast(src.device, cfg.amp_dtype):
                logits = forward_logits(model, src.prepare(x)).float()
            out = torch.softmax(logits, 1) if cfg.task == "classify" else logits.argmax(1).to(torch.uint8)
            pending.append(out)
            pending_bytes += out.numel() * out.element_size()
            if pending_bytes >= _PREDICT_FLUSH_BYTES:
                outs.append(torch.cat(pending).cpu())
                pending, pending_bytes = [], 0
    if pending:
        outs.append(torch.cat(pending).cpu())
    if not outs:
        shape = (0, cfg.n_classes) if cfg.task == "classify" else (0, src.images.shape[-2], src.images.shape[-1])
        return torch.zeros(shape)
    return torch.cat(outs)


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy (the registry builds once per fold; copies keep initializations identical across folds)."""
    return copy.deepcopy(model)
