"""What to train: the stage's settings (:class:`TrainConfig`), validated once, and the keys folds are stored under.

:func:`train_config` is the one way callers (CLI, pipeline, the DDP ranks) build a config from keywords: an
unknown keyword raises ``TypeError`` naming it. The DDP launcher's flags are generated from these fields
(:func:`audit.train.ddp._parser`), so each option is defined here only.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.core.config import build_config
from audit.core.protocols import ENGINES, TASKS, TRAIN_PROTOCOLS
from audit.errors import UsageError

__all__ = ["TASKS", "ENGINES", "MODES", "TrainConfig", "train_config", "validate_task", "fold_key", "parse_budget"]

SEG_LOSSES = ("auto", "ce", "dice_ce")
MODES = ("auto", "probe", "finetune")  # how pretrained weights are used (docs/pretrained.md)


def _opt(default: Any, help: str | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A field with its command-line help (the DDP launcher's flags are generated from these)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings of the training stage (the CLI's ``audit train`` flags; ``None`` means "choose for me").

    ``model`` None: ``small_cnn``/``small_unet`` for images <= 64 px, else ``resnet18`` /
    ``lraspp_mobilenet_v3_large``. ``image_size`` None: the images' own size (<= 64) for small models, up to
    224 otherwise. ``batch_size``/``lr`` None: the model's registry defaults. ``patience`` None: no early
    stopping (the best validation epoch is still the one kept). Invalid values raise :class:`UsageError`.
    """

    task: str | None = _opt(None, "classify or segment (default: the run's task)", TASKS)
    model: str | None = _opt(None, "model name (audit models lists them)")
    protocol: str = _opt("lodo", "evaluation protocol", TRAIN_PROTOCOLS)
    epochs: int = _opt(8)
    batch_size: int | None = _opt(None, "per process (the effective batch is N times this)")
    lr: float | None = _opt(None)
    image_size: int | None = _opt(None)
    device: str = _opt("auto", "auto, cpu or cuda (cuda: GPU LOCAL_RANK per process)")
    seeds: int = _opt(1)
    seed: int = _opt(0)
    weights: Path | None = _opt(None)
    pretrained: bool = _opt(False)
    compile: bool = _opt(False)
    balanced: bool = _opt(False)
    workers: int | None = _opt(None)
    engine: str = _opt("local", None, ENGINES)
    ray_address: str | None = _opt(None)
    amp: bool = _opt(True)
    val_fraction: float = _opt(0.15)
    test_fraction: float = _opt(0.2)
    patience: int | None = _opt(None)
    augment: bool = _opt(True)
    hflip: bool = _opt(False)
    mode: str = _opt("auto", "probe (frozen pretrained backbone, linear head per fold), finetune (train from "
                     "pretrained weights) or auto (the plan chooses)", MODES)
    seg_loss: str = _opt("auto", "segmentation loss: ce, dice_ce (Dice + cross-entropy) or auto (dice_ce when "
                         "the foreground is under 15% of the training pixels)", SEG_LOSSES)
    time_budget: str | None = _opt(None, "wall time the plan should fit: seconds or e.g. 15m, 1h30m, none "
                                   "(default: 15m on a CPU, unlimited on a GPU)")
    auto_epochs: bool = _opt(False, "the epochs are the default, not chosen: the plan may lower them to fit "
                             "--time-budget")

    def __post_init__(self) -> None:
        if self.task is not None:
            validate_task(self.task)
        if self.protocol not in TRAIN_PROTOCOLS:
            raise UsageError(f"unknown --protocol {self.protocol!r}; choose one of {', '.join(TRAIN_PROTOCOLS)}")
        if self.epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {self.epochs}")
        if self.seeds < 1:
            raise UsageError(f"--seeds must be >= 1, got {self.seeds}")
        if self.batch_size is not None and self.batch_size < 2:
            raise UsageError(f"--batch-size must be >= 2, got {self.batch_size}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        if self.image_size is not None and not 8 <= self.image_size <= 2048:
            raise UsageError(f"--image-size must be between 8 and 2048, got {self.image_size}")
        if self.patience is not None and self.patience < 1:
            raise UsageError(f"patience must be >= 1, got {self.patience}")
        if self.seg_loss not in SEG_LOSSES:
            raise UsageError(f"unknown --seg-loss {self.seg_loss!r}; choose one of {', '.join(SEG_LOSSES)}")
        if self.mode not in MODES:
            raise UsageError(f"unknown --mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown --engine {self.engine!r}; choose local or ray")
        parse_budget(self.time_budget)
        v, t = self.val_fraction, self.test_fraction
        if not 0 <= v < 1 or not 0 <= t < 1 or v + t >= 1:
            raise UsageError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")


def train_config(**kwargs: Any) -> TrainConfig:
    """A :class:`TrainConfig` from keywords; an unknown keyword raises ``TypeError`` naming it."""
    return build_config(TrainConfig, "train", **kwargs)


_UNLIMITED = ("none", "unlimited", "inf", "off")


def parse_budget(text: str | float | None) -> float | None:
    """``--time-budget`` in seconds: ``"900"``, ``"15m"``, ``"1h30m"``, ``"90s"``; ``None`` for none/unlimited/inf
    (and for ``None``: the caller picks the default). Anything else raises :class:`UsageError`.

    >>> parse_budget("15m"), parse_budget("1h30m"), parse_budget(90), parse_budget("none")
    (900.0, 5400.0, 90.0, None)
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        secs = float(text)
    else:
        t = str(text).strip().lower()
        if t in _UNLIMITED:
            return None
        m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", t)
        if not t or m is None:
            raise UsageError(f"--time-budget must be seconds or like 15m, 1h30m, none; got {text!r}")
        h, mi, se = (float(g) if g else 0.0 for g in m.groups())
        secs = h * 3600 + mi * 60 + se
    if not secs > 0 or not math.isfinite(secs):
        raise UsageError(f"--time-budget must be positive, got {text!r}")
    return secs


def validate_task(task: str) -> str:
    """The task itself, or a :class:`UsageError` naming the valid ones."""
    if task not in TASKS:
        raise UsageError(f"unknown --task {task!r}; choose classify or segment")
    return task


def _slug(s: str, n: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", s)[:n]


def fold_key(model: str, protocol: str, seed: int, fold: str) -> str:
    """A file-name-safe, unique key for one (model, protocol, seed, fold)."""
    h = hashlib.sha1(f"{model}\x00{protocol}\x00{seed}\x00{fold}".encode()).hexdigest()[:8]
    return f"{model}-{protocol}-s{seed}-{_slug(fold)}-{h}"
