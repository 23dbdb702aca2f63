"""The plan line before training: what will be trained and how long it should take on this machine.

:func:`plan_training` times a few forward+backward batches of the real model at the real image size (and a few
image decodes), estimates the stage's wall time from them, and, when the user left the model, image size or
epochs to the plan and the estimate exceeds ``--time-budget`` (default 15 minutes on a CPU, unlimited on a GPU),
picks the strongest plan that fits: a smaller image size first, then fewer epochs (not below half), then the
small model at the images' own size (at most 64 px). It prints one line through :mod:`audit.progress` and records
``stages.train.plan`` and ``estimate_seconds`` in run.json.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from audit.train.config import parse_budget

__all__ = ["Calibration", "calibrate", "estimate_seconds", "plan_training", "CPU_BUDGET"]

CPU_BUDGET = 15 * 60.0
_SIZES = (224, 192, 160, 128, 96, 64, 48, 32)
_OVERHEAD = 1.10  # per-epoch checkpoints, validation bookkeeping, Python between steps


@dataclass(frozen=True)
class Calibration:
    """Seconds per image measured on this machine for one (model, image size, batch size)."""

    model: str
    size: int
    batch_size: int
    step_s: float  # forward + backward + optimizer step, per image
    forward_s: float  # inference, per image
    decode_s: float  # decode + resize of one file, per image (all workers together)
    seconds: float  # what the calibration itself took

    def as_dict(self) -> dict:
        return {"model": self.model, "image_size": self.size, "batch_size": self.batch_size,
                "train_images_per_s": round(1 / self.step_s, 1) if self.step_s > 0 else None,  # NaN: None
                "infer_images_per_s": round(1 / self.forward_s, 1) if self.forward_s > 0 else None,
                "decode_ms_per_image": round(self.decode_s * 1000, 2), "seconds": round(self.seconds, 2)}


def _steps(model, x, y, task: str, amp_dtype, n: int) -> float:
    """Seconds per optimisation step over ``n`` timed steps (one untimed warm-up step first)."""
    from audit.train.augment import AugmentConfig, augment_batch, normalize
    from audit.train.models import forward_logits
    from audit.train.trainer import _autocast

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator(device=x.device).manual_seed(0) if x.device.type != "mps" else torch.Generator()
    model.train()
    t0, done = 0.0, 0
    for i in range(n + 1):
        if i == 1:
            _sync(x.device)
            t0 = time.perf_counter()
        xa, ya = augment_batch(x, y if task == "segment" else None, AugmentConfig(), gen)
        xa = normalize(xa).contiguous(memory_format=torch.channels_last)
        with _autocast(x.device, amp_dtype):
            loss = loss_fn(forward_logits(model, xa).float(), (ya if ya is not None else y).long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = i
        if i >= 1 and time.perf_counter() - t0 > 20:  # a slow machine: two steps are enough
            break
    _sync(x.device)
    return (time.perf_counter() - t0) / max(done, 1)


def _forward(model, x, amp_dtype, features: bool = False) -> float:
    """Seconds per image of inference in batches of ``len(x)``: the median of at least three timed passes over
    32 images or more, after two untimed ones (kernels are chosen and memory is allocated per input shape; the
    first passes on a CPU are slow). The classifier's logits, or with ``features`` the pooled features a linear
    probe reads (the call the feature pass makes)."""
    from audit.train.augment import normalize
    from audit.train.models import extract_features, forward_logits
    from audit.train.trainer import _autocast

    fn = extract_features if features else forward_logits
    model.eval()
    with torch.inference_mode():
        xb = normalize(x).contiguous(memory_format=torch.channels_last)
        times = []
        with _autocast(x.device, amp_dtype):
            for i in range(2 + max(3, -(-32 // len(xb)))):
                _sync(x.device)
                t0 = time.perf_counter()
                fn(model, xb)
                _sync(x.device)
                if i >= 2:
                    times.append(time.perf_counter() - t0)
                if i >= 4 and sum(times) > 10:  # a slow machine: three timed passes are enough
                    break
    return float(np.median(times)) / len(xb)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _decode_cost(paths: list, size: int, workers: int, exif: bool) -> float:
    """Seconds per image to decode and resize (a few files, spread over the list; divided by the workers)."""
    from audit.io.tensor_cache import decode_image

    if not paths:
        return 0.0
    pick = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(8, len(paths))).round()]
    times = []
    for p in pick:
        t0 = time.perf_counter()
        try:
            decode_image(p, size, exif=exif)
        except Exception:  # unreadable files are reported by the decode step itself
            continue
        times.append(time.perf_counter() - t0)
    if len(times) > 2:
        times = times[1:]  # the first one pays for imports and the disk cache
    return float(np.median(times)) / max(1, workers) if times else 0.0


def calibrate(model_name: str, *, task: str, n_classes: int | None, size: int, batch_size: int, device,
              amp_dtype=None, paths: list | None = None, workers: int = 1, steps: int = 2,
              features: bool = False) -> Calibration:
    """Time ``steps`` forward+backward batches of ``model_name`` at ``size`` px on ``device`` (a random-init copy,
    the global RNG left as found), inference batches (``features``: the pooled features of a linear probe's
    feature pass, else the logits) and the decode of a few of ``paths``. On a CPU the batch is capped at 16 and
    the time per image scaled (a probe's feature pass runs in batches of 4 there, and is calibrated so)."""
    from audit.train.models import build_model

    t_start = time.perf_counter()
    k = max(2, int(n_classes or 2))
    bs = int(batch_size) if device.type != "cpu" else max(2, min(int(batch_size), 16))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model, _ = build_model(model_name, k, task=task)
        model = model.to(device).to(memory_format=torch.channels_last)
        x = torch.rand(bs, 3, size, size, device=device)
        y = torch.randint(0, k, (bs, size, size) if task == "segment" else (bs,), device=device)
        step = _steps(model, x, y, task, amp_dtype, steps) if steps else float("nan")  # a probe trains nothing
        fwd = _forward(model, x, amp_dtype, features=features)
    dec = _decode_cost(list(paths or []), size, workers, exif=task == "classify")
    del model
    return Calibration(model=model_name, size=size, batch_size=bs, step_s=step / bs, forward_s=fwd,
                       decode_s=dec, seconds=time.perf_counter() - t_start)


def estimate_seconds(cal: Calibration, *, folds: list[tuple[int, int, int]], epochs: int, n_images: int,
                     mode: str = "scratch", size: int | None = None, decode: bool = True) -> float:
    """Wall time of the stage: decode every image once, then per fold ``epochs`` x (train + validation) and one
    prediction pass over validation + test. ``folds``: ``(n_train, n_val, n_eval)`` per fold. ``size``: scale the
    calibrated costs to another image size (by pixel count)."""
    scale = (size / cal.size) ** 2 if size else 1.0
    step, fwd = cal.step_s * scale, cal.forward_s * scale
    total = n_images * cal.decode_s if decode else 0.0
    if mode == "probe":  # one feature pass over every image, then a logistic regression per fold (seconds)
        return total + n_images * fwd * _OVERHEAD + 2.0 * len(folds)
    for n_train, n_val, n_eval in folds:
        total += (epochs * (n_train * step + n_val * fwd) + n_eval * fwd) * _OVERHEAD
    return total


# ---------------------------------------------------------------------------------------------- the plan
def _fold_sizes(st: Any, cand: np.ndarray) -> list[tuple[int, int, int]]:
    """``(n_train, n_val, n_eval)`` per fold x seed, from the candidate rows (before decoding)."""
    from audit.train import planning

    table = st.man.iloc[np.flatnonzero(cand)].reset_index(drop=True)
    try:
        folds, _, _ = planning.plan_folds(table, st.cfg)
    except Exception:  # the real split (after decoding) reports its own problems
        n = len(table)
        return [(int(n * 0.65), int(n * 0.15), int(n * 0.35))] * max(1, st.cfg.seeds)
    return [(len(f.train_idx), len(f.val_idx), len(f.val_idx) + len(f.test_idx)) for f in folds
            if not f.notes.get("skipped") and len(f.train_idx) >= 2]


def _budget(cfg, device) -> tuple[float | None, str]:
    if cfg.time_budget is not None:
        b = parse_budget(cfg.time_budget)
        return b, "--time-budget " + str(cfg.time_budget)
    if device.type == "cpu":
        return CPU_BUDGET, "the default 15m budget on a CPU"
    return None, "no budget on a GPU"


def _candidates(st: Any, side: float | None):
    """``(model, size, epochs)`` from the strongest down, over what the user left to the plan."""
    from audit.train import planning
    from audit.train.models import MODELS, default_model

    cfg = st.cfg
    models = [st.model]
    if cfg.model is None and st.mode == "scratch" and not st.spec.small:
        models.append(default_model(st.task, 32))  # the small from-scratch model
    for name in models:
        spec = MODELS[name]
        s0 = st.size if name == st.model else planning.default_size(spec, min(side or 64, 64))
        floor = spec.min_size if spec.small else 64  # a large model on tiny inputs: the small model does better
        sizes = [s0] if cfg.image_size else [s0] + [s for s in _SIZES if floor <= s < s0]
        e0 = int(cfg.epochs)
        epochs = [e0] + ([e for e in (round(e0 * 0.75), round(e0 * 0.5)) if 1 <= e < e0] if cfg.auto_epochs else [])
        for size in sizes:
            for ep in dict.fromkeys(epochs):
                yield name, spec, size, ep


def _flags(model: str, size: int, epochs: int) -> str:
    return f"--model {model} --image-size {size} --epochs {epochs}"


def plan_training(st: Any) -> dict:
    """Calibrate, estimate, maybe choose a cheaper plan (changing ``st.model``, ``st.spec``, ``st.size`` and
    ``st.cfg.epochs``), print the plan line and record it. Returns the plan as recorded."""
    from audit.io.gpu import amp_dtype
    from audit.progress import format_eta, message
    from audit.train import planning
    from audit.train.features import feature_batch

    cand = st.excl.usable()
    paths = st.run.abspaths(st.man.loc[cand, "filepath"].tolist())
    n_images, folds = len(paths), _fold_sizes(st, cand)
    amp = amp_dtype(st.device, st.cfg.amp)
    budget, budget_src = _budget(st.cfg, st.device)
    side = planning.image_side(st.run, st.man, cand)
    cals: dict[str, Calibration] = {}

    def est(name, spec, size, epochs):
        if name not in cals:
            bs = feature_batch(st.cfg.batch_size, st.device) if st.mode == "probe" else \
                int(st.cfg.batch_size or spec.batch_size)
            cals[name] = calibrate(name, task=st.task, n_classes=st.n_classes, size=size, batch_size=bs,
                                   device=st.device, amp_dtype=amp, paths=paths, workers=st.workers,
                                   steps=0 if st.mode == "probe" else 2, features=st.mode == "probe")
        return estimate_seconds(cals[name], folds=folds, epochs=epochs, n_images=n_images, mode=st.mode, size=size)

    full = (st.model, st.spec, st.size, int(st.cfg.epochs))
    key = {"full": [full[0], full[2], full[3]], "budget": budget, "images": n_images, "folds": folds,
           "device": str(st.device), "mode": st.mode, "fixed": [st.cfg.model, st.cfg.image_size, st.cfg.auto_epochs]}
    prev = st.run.read_json("train/plan.json", default=None)
    if isinstance(prev, dict) and prev.get("key") == json.loads(json.dumps(key)):
        return _again(st, prev)  # the same question as last time (a resumed run): the same answer, no calibration
    full_s = est(*full)
    chosen, chosen_s, reason = full, full_s, "fits the budget" if budget else budget_src
    if budget is not None and full_s > budget and st.mode == "probe":
        reason = f"over {budget_src} ({format_eta(budget)}), but a linear probe (one feature pass) is the cheapest"
    elif budget is not None and full_s > budget:
        cheapest = None
        for c in _candidates(st, side):
            s = est(*c)
            if cheapest is None or s < cheapest[1]:
                cheapest = (c, s)
            if s <= budget:
                chosen, chosen_s = c, s
                break
        else:
            if cheapest is not None:
                chosen, chosen_s = cheapest
        if chosen == full:
            chosen = full
            reason = f"over {budget_src} ({format_eta(budget)}), but model, image size and epochs were chosen"
        else:
            fit = "fits" if chosen_s <= budget else "is the cheapest; still over"
            reason = (f"the full plan ({full[0]} at {full[2]} px, {full[3]} epochs) needs ~{format_eta(full_s)}, "
                      f"over {budget_src} ({format_eta(budget)}): {chosen[0]} at {chosen[2]} px, {chosen[3]} epochs "
                      f"{fit}; for the full plan: {_flags(full[0], full[2], full[3])} (or --time-budget none)")
    name, spec, size, epochs = chosen
    st.model, st.spec, st.size = name, spec, size
    st.cfg = replace(st.cfg, epochs=epochs)
    n_seeds = max(1, st.cfg.seeds)
    n_folds = max(1, len(folds) // n_seeds)
    cal = cals[name]
    speed = f"{1 / (cal.forward_s * (size / cal.size) ** 2):.0f} img/s features" if st.mode == "probe" else \
        f"{1 / (cal.step_s * (size / cal.size) ** 2):.0f} img/s training"
    what = "linear probe" if st.mode == "probe" else f"{epochs} epochs"
    line = (f"plan  {st.device.type}  {name} at {size} px  {what}  {n_folds} folds x {n_seeds} seed"
            f"{'s' if n_seeds > 1 else ''}  {n_images:,} images  estimated {format_eta(chosen_s)}"
            f"  ({speed}, decode {cal.decode_s * 1000:.1f} ms/img)")
    message(line)
    if chosen is not full:
        message(f"plan  {reason}")
    plan = {"device": str(st.device), "model": name, "image_size": size, "epochs": epochs, "folds": n_folds,
            "seeds": n_seeds, "images": n_images, "mode": st.mode, "estimate_seconds": round(chosen_s, 1),
            "budget_seconds": budget, "reduced": chosen is not full, "reason": reason, "line": line,
            "full": {"model": full[0], "image_size": full[2], "epochs": full[3],
                     "estimate_seconds": round(full_s, 1), "flags": _flags(full[0], full[2], full[3])},
            "calibration": {n: c.as_dict() for n, c in cals.items()}}
    if not math.isfinite(chosen_s):
        plan["estimate_seconds"] = None
    if getattr(st.ex, "is_main", True):
        st.run.write_json("train/plan.json", {**plan, "key": key})
    return plan


def _again(st: Any, prev: dict) -> dict:
    """The plan recorded in ``train/plan.json`` for the same inputs, applied and printed again."""
    from audit.progress import message
    from audit.train.models import MODELS

    st.model, st.spec, st.size = prev["model"], MODELS[prev["model"]], int(prev["image_size"])
    st.cfg = replace(st.cfg, epochs=int(prev["epochs"]))
    message(prev["line"] + "  (as planned before)")
    if prev.get("reduced"):
        message(f"plan  {prev['reason']}")
    return {k: v for k, v in prev.items() if k != "key"}
