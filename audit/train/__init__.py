"""Training stage: train and evaluate classifiers / segmenters across held-out domains.

Entry point (called by :mod:`audit.pipeline` for ``audit train RUN``, ``audit run`` and ``audit demo``)::

    run_training(run, train_config(protocol="lodo", epochs=8))     # writes RUN/predictions.parquet

Flow: manifest -> rows excluded with reasons (missing label / mask, unreadable per the profile, decode
errors) -> decode-once tensor cache (:mod:`audit.io.tensor_cache`) -> folds of the protocol per seed
(:mod:`audit.train.protocols`) -> per fold: train with validation-only selection (:mod:`audit.train.trainer`),
predict val + test rows, store ``RUN/train/folds/<key>.parquet`` and the checkpoint
``RUN/train/ckpt/<key>.pt`` -> concatenate into ``RUN/predictions.parquet``. Re-running with the same
settings reuses finished folds and resumes a killed fold from its last epoch.

Layout, one way down: :mod:`~audit.train.config` (what to train: settings, fold keys) and
:mod:`~audit.train.planning` (rows, model, folds) -> :mod:`~audit.train.stage` (the run) ->
:mod:`~audit.train.executors` / :mod:`~audit.train.ray_folds` / :mod:`~audit.train.ddp` (where folds run) ->
:mod:`~audit.train.trainer` (one fit). This package module only re-exports.
"""

from __future__ import annotations

# first, before anything imports torch: without the [train] extra this raises MissingExtraError naming it
from audit.train._requires import REQUIRED  # noqa: F401
from audit.train.config import TASKS, TrainConfig, fold_key, train_config
from audit.train.executors import LocalExecutor
from audit.train.stage import run_training

__all__ = ["TrainConfig", "train_config", "run_training", "LocalExecutor", "TASKS", "fold_key"]
