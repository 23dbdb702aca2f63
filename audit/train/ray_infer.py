"""Model inference through Ray (``audit train --engine ray``): an actor pool that reads, decodes and predicts.

Training stays in the driver process (or under DDP, :mod:`audit.train.ddp`); evaluating the trained model on
the validation and test rows of each fold runs as a Ray Data pipeline over those rows' files:

``rows (path) -> map_batches(_Predictor, concurrency=k actors, num_gpus=1 per actor when the cluster has GPUs)``

Each actor receives the trained model once, decodes its batches with the same decoder and size as the
training cache (:func:`audit.io.tensor_cache.decode_image`), normalizes exactly like
:meth:`audit.train.trainer.BatchSource.prepare` and returns class probabilities (or predicted index masks).
Outputs come back in row order and every row is verified (:func:`audit.integrations.ray_engine.run_ordered`);
a killed actor is restarted and its batch retried. The files must be readable by the workers: on a cluster
the dataset root must be on storage every node mounts at the same path (docs/scale.md).

:class:`RayInference` plugs this into :func:`audit.train.run_training` (its ``executor`` hook).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from audit.train.executors import LocalExecutor

__all__ = ["predict_paths", "RayInference"]


class _Predictor:
    """Ray actor state: the model on this worker's device; one call per batch of file paths."""

    def __init__(self, model: nn.Module, task: str, size: int, exif: bool, amp_dtype: str | None,
                 channels_last: bool, use_gpu: bool):
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.eval()
        self.task, self.size, self.exif, self.channels_last = task, int(size), bool(exif), channels_last
        # the training run's autocast choice, re-resolved for this worker's device (bf16 on CUDA and on CPUs with
        # native bf16 kernels, as in training; fp32 elsewhere)
        from audit.io.gpu import amp_dtype as resolve_amp

        self.amp = resolve_amp(self.device, enabled=bool(amp_dtype))

    def __call__(self, batch: pd.DataFrame) -> list[np.ndarray]:
        from audit.io.tensor_cache import decode_image
        from audit.train.augment import normalize
        from audit.train.models import forward_logits
        from audit.train.trainer import _autocast

        arrs = []
        for p in batch["path"].tolist():
            try:
                arrs.append(decode_image(Path(p), self.size, exif=self.exif))
            except Exception as e:  # decoded fine for training: the file changed or is not visible here
                raise RuntimeError(f"cannot decode {p} on this worker: {type(e).__name__}: {e}") from None
        x = torch.from_numpy(np.stack(arrs)).to(self.device).float().div_(255.0)
        x = normalize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _autocast(self.device, self.amp):
            logits = forward_logits(self.model, x).float()
        if self.task == "classify":
            out = torch.softmax(logits, 1).cpu().numpy().astype(np.float32)
        else:
            out = logits.argmax(1).to(torch.uint8).cpu().numpy()
        return list(out)


def predict_paths(model: nn.Module, paths: Sequence[str | Path], *, task: str, size: int, exif: bool,
                  batch_size: int = 64, amp_dtype: torch.dtype | None = None, channels_last: bool = True,
                  address: str | None = None, concurrency: int | None = None, num_gpus: float | None = None,
                  max_retries: int | None = None, sample_ids: Sequence[str] | None = None,
                  on_done: Callable[[int], None] | None = None) -> torch.Tensor:
    """Predict every file in ``paths`` with ``model`` on a Ray actor pool; outputs in ``paths`` order.

    Parameters
    ----------
    model
        A trained model (copied to the actors once; the caller's model is not moved).
    paths
        Absolute image paths readable by every Ray worker.
    task
        ``classify`` (returns probabilities ``float32 [n, k]``) or ``segment`` (index masks ``uint8 [n, S, S]``).
    size, exif
        Square input side and EXIF handling: the same as the training cache's.
    concurrency
        Actors (default: one per GPU when the cluster has GPUs, else one per CPU).
    num_gpus
        GPUs per actor (default: 1 when the cluster has GPUs, else CPU only).
    max_retries
        Restarts of an actor that died (its batches are retried).
    sample_ids
        Ids of the rows, to name missing ones in an error.

    Raises
    ------
    StageError
        An actor kept failing, or rows did not come back.
    """
    from audit.integrations.ray_engine import DEFAULT_MAX_RETRIES, init_ray, run_ordered

    info = init_ray(address)
    if num_gpus is None:
        num_gpus = 1.0 if info["gpus"] >= 1 else 0.0
    if concurrency is None:
        concurrency = max(1, int(info["gpus"] // num_gpus) if num_gpus else int(info["cpus"]))
    raw = getattr(model, "module", model)  # unwrap DDP
    raw = getattr(raw, "_orig_mod", raw)  # unwrap torch.compile
    cpu_model = copy.deepcopy(raw).to("cpu")
    amp = str(amp_dtype).replace("torch.", "") if amp_dtype is not None else None
    outs = run_ordered(
        pd.DataFrame({"path": [str(p) for p in paths]}), _Predictor, what="inference", batch_size=int(batch_size),
        ids=sample_ids, concurrency=concurrency, num_gpus=num_gpus or None, parallelism=concurrency,
        max_retries=DEFAULT_MAX_RETRIES if max_retries is None else int(max_retries), on_done=on_done,
        fn_constructor_kwargs={"model": cpu_model, "task": task, "size": int(size), "exif": bool(exif),
                               "amp_dtype": amp, "channels_last": bool(channels_last), "use_gpu": bool(num_gpus)},
    )
    if not outs:
        return torch.zeros((0, 0)) if task == "classify" else torch.zeros((0, size, size), dtype=torch.uint8)
    return torch.from_numpy(np.stack(outs))


class RayInference(LocalExecutor):
    """``executor`` of :func:`audit.train.run_training` for ``--engine ray``: fit here, predict through Ray.

    Parameters
    ----------
    address
        Ray cluster address (``--ray-address``; default ``RAY_ADDRESS`` or a local cluster).
    concurrency, num_gpus, max_retries
        See :func:`predict_paths`.
    """

    name = "ray"
    is_main = True

    def __init__(self, address: str | None = None, *, concurrency: int | None = None, num_gpus: float | None = None,
                 max_retries: int | None = None):
        self.address, self.concurrency, self.num_gpus, self.max_retries = address, concurrency, num_gpus, max_retries
        self.cluster: dict[str, Any] | None = None

    def predict(self, model: nn.Module, src: Any, rows: np.ndarray, cfg: Any, *, paths: Sequence[str | Path],
                ids: Sequence[str] | None = None) -> torch.Tensor:
        """Same result as :func:`audit.train.trainer.predict` on ``rows``, computed by Ray actors from ``paths``."""
        from audit.integrations.ray_engine import init_ray

        if self.cluster is None:
            self.cluster = init_ray(self.address)
        size = int(src.images.shape[-1])
        out = predict_paths(model, paths, task=cfg.task, size=size, exif=cfg.task == "classify",
                            batch_size=max(2 * int(cfg.batch_size), 1), amp_dtype=cfg.amp_dtype,
                            channels_last=bool(cfg.channels_last), address=self.address,
                            concurrency=self.concurrency, num_gpus=self.num_gpus, max_retries=self.max_retries,
                            sample_ids=ids)
        if cfg.task == "classify" and len(out) == 0:
            return torch.zeros((0, cfg.n_classes))
        return out

    def describe(self) -> dict:
        """What run.json records about the engine (joins or starts the cluster if not done yet)."""
        from audit.integrations.ray_engine import init_ray

        if self.cluster is None:
            self.cluster = init_ray(self.address)
        return {"engine": "ray", "inference": "ray actor pool", "training": "local", "cluster": self.cluster}
