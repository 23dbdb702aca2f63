"""Folds trained in parallel on a Ray cluster (``audit train --engine ray``).

The folds of a protocol (and their seeds) are independent: each one trains a fresh model on its training rows,
selects on its validation rows and predicts its evaluation rows. :class:`RayFolds` runs every fold that needs
training as one Ray task:

* the driver decodes once (the same uint8 cache as a local run) and puts the cache in Ray's object store: every
  node fetches it once, every task on a node shares it (zero copy);
* a task builds the fold's model with the fold's seed (the same initialization as a local run), trains it with
  :func:`audit.train.trainer.fit` on the worker's device (one GPU per task when the cluster has GPUs, else one CPU),
  predicts the fold's evaluation rows with :func:`audit.train.trainer.predict`, and returns the probabilities (or
  masks) and the fit record, not the weights;
* the driver writes each fold's outputs as it finishes, exactly as a local run does, so ``predictions.parquet``,
  ``train/folds/*`` and ``run.json`` have the same form (and, on CPUs, the same numbers) as with ``--engine local``.

Checkpoints (``RUN/train/ckpt``) are written by the tasks when the run directory is reachable from the workers
(the same path on every node, as for the dataset); a task on a node that cannot see it trains without them, and a
killed task is retried by Ray from its last checkpoint where there is one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit.train.ray_infer import RayInference

__all__ = ["RayFolds", "train_fold"]


def train_fold(images: np.ndarray, targets: np.ndarray, spec: dict, build: dict, fit_cfg: Any,
               threads: int | None = None) -> tuple[str, Any, torch.Tensor, dict, float, np.ndarray | None]:
    """Train and predict one fold (the body of a Ray task; also callable in-process).

    Returns ``(key, fit_result_without_weights, predictions, model_info, seconds, embeddings)``: the penultimate
    embeddings of the predicted rows are captured during that same inference pass (``audit slices``; None when the
    model has no head input to hook).
    """
    import warnings

    from audit.io.gpu import amp_dtype
    from audit.slices.embed import EmbeddingHook
    from audit.train.models import build_model
    from audit.train.trainer import BatchSource, fit, predict

    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(int(threads))
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    with warnings.catch_warnings():  # the object store hands out read-only arrays; they are only read
        warnings.simplefilter("ignore", UserWarning)
        imgs = torch.from_numpy(images)
        tgts = torch.from_numpy(targets)
    if device.type == "cuda":
        imgs, tgts = imgs.to(device), tgts.to(device)
    # the driver resolved autocast for its own device; resolve it again for this worker's
    cfg = replace(fit_cfg, amp_dtype=amp_dtype(device, enabled=fit_cfg.amp_dtype is not None))
    torch.manual_seed(int(spec["seed"]))
    model, minfo = build_model(build["name"], build["n_classes"], task=build["task"], weights=build["weights"],
                               pretrained=build["pretrained"])
    src = BatchSource(imgs, tgts, device, channels_last=cfg.channels_last)
    ckpt = spec.get("ckpt")
    if ckpt is not None:
        try:
            Path(ckpt).parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # the run directory is not visible from this node: train without checkpoints
            ckpt = None
    res = fit(model, src, spec["train"], spec["val"], cfg, seed=int(spec["seed"]), ckpt_path=ckpt,
              ckpt_hash=spec["hash"])
    hook = EmbeddingHook(model)
    out = predict(model, src, spec["eval"], cfg, capture=hook)
    res.best_state = {}  # the weights stay in the checkpoint; only the record travels back
    return spec["key"], res, out, minfo, round(time.perf_counter() - t0, 3), hook.array()


class RayFolds(RayInference):
    """``executor`` of :func:`audit.train.run_training` that trains the folds as parallel Ray tasks.

    Parameters
    ----------
    address
        Ray cluster address (``--ray-address``; default ``RAY_ADDRESS`` or a local cluster).
    num_gpus
        GPUs per fold task (default: 1 when the cluster has GPUs, else 0).
    num_cpus
        CPUs per fold task on a CPU cluster (default 1; torch in the task uses that many threads).
    max_retries
        Retries of a task whose worker died (default 2).
    """

    parallel_folds = True

    def __init__(self, address: str | None = None, *, num_gpus: float | None = None, num_cpus: float | None = None,
                 max_retries: int | None = None):
        super().__init__(address, num_gpus=num_gpus, max_retries=max_retries)
        self.num_cpus = num_cpus

    def describe(self) -> dict:
        d = super().describe()
        d.update(training="ray tasks, one per fold", inference="in each fold's task")
        return d

    def run_folds(self, specs: list[dict], *, images: torch.Tensor, targets: torch.Tensor, build: dict,
                  fit_cfg: Any) -> Iterator[tuple[str, Any, torch.Tensor, dict, float, np.ndarray | None]]:
        """Train ``specs`` (one dict per fold) as Ray tasks; yield each fold's result as it finishes."""
        import ray

        from audit.errors import StageError
        from audit.integrations.ray_engine import init_ray

        if self.cluster is None:
            self.cluster = init_ray(self.address)
        gpus = self.num_gpus if self.num_gpus is not None else (1.0 if self.cluster.get("gpus") else 0.0)
        cpus = float(self.num_cpus or 1)
        task = ray.remote(num_cpus=cpus, num_gpus=gpus,
                          max_retries=2 if self.max_retries is None else int(self.max_retries))(train_fold)
        images_ref = ray.put(images.cpu().numpy())
        targets_ref = ray.put(targets.cpu().numpy())
        refs = {task.remote(images_ref, targets_ref, spec, build, fit_cfg, max(1, int(cpus))): spec["key"]
                for spec in specs}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                key = refs.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as e:
                    for r in refs:
                        ray.cancel(r, force=True)
                    cause = getattr(e, "cause", None) or e
                    msg = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
                    raise StageError(f"fold {key} failed on the Ray cluster: {type(cause).__name__}: {msg}") from None
