"""Distributed data-parallel training (torch DDP): one process per GPU, launched by ``torchrun``.

Usage (one node, 4 GPUs; the run directory already holds a manifest, e.g. from ``audit profile``)::

    torchrun --nproc-per-node 4 -m audit.train.ddp RUN --model resnet50 --epochs 20
    audit train RUN --distributed 4 ...                      # the same, launched for you

On several nodes use torchrun's rendezvous flags (``--nnodes``, ``--rdzv-endpoint``); the run directory and
the dataset root must then be on storage every node mounts at the same path (docs/scale.md). On CPU (tests,
laptops) the backend is gloo; on CUDA it is NCCL with rank ``r`` on GPU ``LOCAL_RANK``.

What each rank does (:class:`DDPExecutor`, plugged into :func:`audit.train.run_training` as its ``executor``):

* the same exclusions, folds and seeds as a local run (every rank computes them; they are deterministic);
* decode-once cache: rank 0 builds it first (and writes the memory-mapped files when it is large), then the
  other ranks build or reuse theirs;
* training: the fold's training rows are shuffled once with the fold seed and dealt out to the ranks, padded
  to equal length (like ``DistributedSampler``) so every rank takes the same number of steps; the model is
  wrapped in ``DistributedDataParallel`` (gradients averaged, rank 0's BatchNorm buffers broadcast); each
  rank validates on the full validation rows, so all ranks select the same epoch. The effective batch is
  ``world_size x batch_size``; the learning rate is not rescaled;
* predictions: the evaluated rows are dealt out to the ranks, predicted there and gathered in row order;
* only rank 0 writes (fold tables, checkpoints, ``predictions.parquet``, run.json); the others see the run
  directory read-only. The output is the same predictions format as a local run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["DDPExecutor", "ReadOnlyRun", "main", "launch", "train_distributed", "shard_rows"]


def shard_rows(rows: np.ndarray, rank: int, world: int, seed: int) -> np.ndarray:
    """Rank ``rank``'s share of ``rows``: a seeded shuffle dealt round-robin, padded to ``ceil(n / world)``.

    Every rank gets the same count (so DDP ranks take the same number of steps); the padding repeats rows
    from the start of the shuffled order, as ``torch.utils.data.DistributedSampler`` does.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    if n == 0:
        return rows
    order = rows[np.random.default_rng(seed).permutation(n)]
    per = -(-n // world)
    padded = np.concatenate([order, order[: per * world - n]]) if per * world > n else order
    return padded[rank::world]


class ReadOnlyRun:
    """A run directory as seen by a non-zero rank: every read goes through, every write is dropped."""

    _WRITES = ("write_table", "write_json", "write_text", "write_manifest", "update_info", "set_findings",
               "mark_stage")

    def __init__(self, run: Any):
        self._run = run

    def __getattr__(self, name: str) -> Any:
        if name in self._WRITES:
            return self._drop
        return getattr(self._run, name)

    def _drop(self, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str):
            return self._run.path / args[0]
        return None


class DDPExecutor:
    """``executor`` of :func:`audit.train.run_training` for one DDP rank (see the module docstring).

    Parameters
    ----------
    rank, world_size, local_rank
        This process's place in the process group (torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).
    device
        This rank's device (``cuda:LOCAL_RANK`` or ``cpu``).
    """

    name = "ddp"

    def __init__(self, rank: int, world_size: int, local_rank: int, device: torch.device):
        self.rank, self.world, self.local_rank, self.device = int(rank), int(world_size), int(local_rank), device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        """What run.json records about the engine."""
        import torch.distributed as dist

        backend = dist.get_backend() if dist.is_initialized() else None
        return {"engine": "ddp", "world_size": self.world, "backend": backend,
                "device": str(self.device)}

    # ------------------------------------------------------------------ collective helpers
    def _barrier(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized() and self.world > 1:
            dist.barrier()

    def _all_gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        if not dist.is_initialized() or self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    # ------------------------------------------------------------------ hooks
    def build_cache(self, build: Callable, *args: Any, **kwargs: Any) -> Any:
        """Rank 0 decodes first (its memmap files, when the cache goes to disk, are then reused by the others)."""
        if not self.is_main:
            kwargs["progress"] = None
            self._barrier()
        cache = build(*args, **kwargs)
        if self.is_main:
            self._barrier()
        return cache

    def _rank_ckpt(self, ckpt_path: Path | None) -> Path | None:
        if ckpt_path is None or self.is_main:
            return ckpt_path
        p = Path(ckpt_path)
        return p.with_name(f"{p.stem}.rank{self.rank}{p.suffix}")

    def _resume_epoch(self, ckpt: Path | None, ckpt_hash: str) -> int:
        if ckpt is None or not ckpt.is_file():
            return -1
        try:
            ck = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception:  # damaged: fit starts the fold again
            return -1
        if ck.get("hash") != ckpt_hash or ck.get("done"):
            return -1
        return int(ck.get("epoch", -1))

    def fit(self, model: nn.Module, src: Any, train_idx: np.ndarray, val_idx: np.ndarray, cfg: Any, *, seed: int,
            ckpt_path: Path | None = None, ckpt_hash: str = "", on_epoch: Callable | None = None) -> Any:
        """:func:`audit.train.trainer.fit` on this rank's shard, the model wrapped in DDP."""
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP

        from audit.train.trainer import _save_atomic, fit

        if not dist.is_initialized():  # a single process started without torchrun: a plain local fit
            return fit(model, src, train_idx, val_idx, cfg, seed=seed, ckpt_path=ckpt_path, ckpt_hash=ckpt_hash,
                       on_epoch=on_epoch)
        ck = self._rank_ckpt(ckpt_path)
        # resume only when every rank stopped after the same epoch (else the ranks would take different step counts)
        epochs = self._all_gather(self._resume_epoch(ck, ckpt_hash))
        if len(set(epochs)) > 1 and ck is not None:
            with contextlib.suppress(OSError):
                ck.unlink()
        model = model.to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)  # before wrapping: DDP's buckets keep the layout
        # buffers (BatchNorm statistics) are broadcast from rank 0 at every forward (DDP's default)
        ddp = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        shard = shard_rows(train_idx, self.rank, self.world, seed)
        res = fit(ddp, src, shard, val_idx, cfg, seed=seed + self.rank, ckpt_path=ck, ckpt_hash=ckpt_hash,
                  on_epoch=on_epoch if self.is_main else None)
        res.best_state = {k.removeprefix("module."): v for k, v in res.best_state.items()}
        if ck is not None and self.is_main and ck.is_file():
            # the finished checkpoint in the same format as a local run's (no DDP "module." prefix)
            done = torch.load(ck, map_location="cpu", weights_only=True)
            done["model"] = res.best_state
            done["world_size"] = self.world
            _save_atomic(done, ck)
        elif ck is not None and not self.is_main:
            with contextlib.suppress(OSError):
                ck.unlink()  # rank 0's checkpoint is the fold's; a finished fold is reused from its table
        return res

    def predict(self, model: nn.Module, src: Any, rows: np.ndarray, cfg: Any, *, paths: Sequence | None = None,
                ids: Sequence | None = None, capture: Any = None) -> torch.Tensor:
        """:func:`audit.train.trainer.predict` with the rows dealt out to the ranks; the full result on every rank.

        Every rank records the penultimate embeddings of its rows (:class:`audit.slices.embed.EmbeddingHook`; only
        rank 0 is handed a ``capture``, so the others cannot know whether it is wanted, and the vectors are small);
        they are gathered with the predictions and put into rank 0's ``capture`` in row order, so
        ``RUN/embeddings/predict`` is written as by a local run."""
        from audit.slices.embed import EmbeddingHook
        from audit.train.trainer import predict

        raw = getattr(model, "module", model)
        rows = np.asarray(rows, dtype=np.int64)
        mine = rows[self.rank :: self.world]
        hook = EmbeddingHook(raw)
        out = predict(raw, src, mine, cfg, capture=hook).cpu().numpy()
        emb = hook.array()
        parts = self._all_gather((out, emb if emb is not None and len(emb) == len(mine) else None))
        n = len(rows)
        full = np.empty((n, *parts[0][0].shape[1:]), dtype=parts[0][0].dtype)
        for r, (part, _) in enumerate(parts):
            full[r :: self.world] = part
        if capture is not None and hasattr(capture, "batches"):
            capture.batches = _gathered_embeddings(parts, n, self.world)
        return torch.from_numpy(full)


def _gathered_embeddings(parts: list[tuple], n: int, world: int) -> list:
    """The ranks' embeddings interleaved back into row order (rank ``r`` predicted rows ``r::world``): one float16
    tensor ``[n, d]`` in a list, or ``[]`` when a rank with rows recorded none (no embeddings are then stored)."""
    embs = [e for (out, e) in parts if len(out)]
    if not embs or any(e is None for e in embs):
        return []
    full = np.empty((n, embs[0].shape[1]), dtype=np.float16)
    for r, (out, e) in enumerate(parts):
        if len(out):
            full[r :: world] = e
    return [torch.from_numpy(full)]


# ---------------------------------------------------------------------------------------------- entry point
_TYPES = {"int": int, "float": float, "str": str, "Path": Path}


def _parser() -> argparse.ArgumentParser:
    """The flags of :func:`main`: one per :class:`~audit.train.config.TrainConfig` field, generated from it."""
    import dataclasses

    from audit.train.config import TrainConfig

    p = argparse.ArgumentParser(prog="torchrun --nproc-per-node N -m audit.train.ddp",
                                description="Train across held-out domains with torch DDP (one process per GPU).")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory (holding manifest.parquet)")
    for f in dataclasses.fields(TrainConfig):
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        kw: dict[str, Any] = {"help": meta.get("help"), "default": f.default}
        base = str(f.type).split("|")[0].strip()
        if base == "bool":
            kw["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
        else:
            kw["type"] = _TYPES[base]
            if meta.get("choices"):
                kw["choices"] = list(meta["choices"])
        p.add_argument(flag, **kw)
    p.add_argument("--timeout", type=float, default=1800, help="seconds a rank waits for the others")
    return p


def _flags(flags: Any) -> list[str]:
    """:func:`main`'s command line for a :class:`~audit.train.config.TrainConfig` (or a mapping of its fields).

    Every field whose value differs from its default becomes a flag, so nothing set on the config is lost on the
    way to the ranks; a key that is no field of the config (nor ``timeout``) raises ``TypeError`` naming it.
    """
    import dataclasses

    from audit.core.config import unexpected_keyword

    values = dataclasses.asdict(flags) if dataclasses.is_dataclass(flags) else dict(flags)
    actions = {a.dest: a for a in _parser()._actions if a.option_strings and a.dest != "help"}
    for k in values:
        if k not in actions:
            raise unexpected_keyword("ddp._flags", k, actions)
    opts: list[str] = []
    for dest, a in actions.items():
        if dest not in values:
            continue
        v = values[dest]
        if v is None or v == a.default:
            continue
        if isinstance(a, argparse.BooleanOptionalAction):
            opts += [] if v else [f"--no-{dest.replace('_', '-')}"]
        elif a.nargs == 0:  # store_true
            opts += [a.option_strings[0]] if v else []
        else:
            opts += [a.option_strings[0], str(v)]
    return opts


def _device(requested: str, local_rank: int) -> torch.device:
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if requested.startswith("cuda"):
        from audit.errors import UsageError

        raise UsageError("--device cuda was asked for but CUDA is not available")
    return torch.device("cpu")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``torchrun ... -m audit.train.ddp RUN [options]``; returns the exit code."""
    import torch.distributed as dist

    from audit.errors import AuditError
    from audit.rundir import RunDir
    from audit.train import run_training, train_config

    args = _parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if rank != 0:
        os.environ["AUDIT_NO_PROGRESS"] = "1"  # one progress bar, rank 0's
    try:
        device = _device(args.device, local_rank)
        if world > 1 or "MASTER_ADDR" in os.environ:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=_dt.timedelta(seconds=args.timeout))
        ex = DDPExecutor(rank, world, local_rank, device)
        opts = {k: v for k, v in vars(args).items() if k not in ("run", "timeout")}
        cfg = train_config(**{**opts, "device": str(device.type)})
        run = RunDir.open(args.run)
        if ex.is_main:
            run.lock()
            try:
                with run.stage("train", distributed=ex.describe()):
                    run_training(run, cfg, executor=ex)
            finally:
                run.unlock()
        else:
            run_training(ReadOnlyRun(run), cfg, executor=ex)  # type: ignore[arg-type]
        ex._barrier()
    except AuditError as e:
        print(f"error (rank {rank}): {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return e.exit_code
    finally:
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
    if rank == 0:
        print(f"train: finished on {world} process(es); predictions in {Path(args.run) / 'predictions.parquet'}")
    return 0


def launch(run_dir: Path | str, nproc: int, options: Sequence[str] = (), *, timeout: float | None = None) -> int:
    """Run ``torchrun --nproc-per-node nproc -m audit.train.ddp RUN options...`` on this node; its exit code.

    ``options`` are :func:`main`'s flags (``["--epochs", "2", "--model", "small_cnn"]``).
    """
    import subprocess

    from audit.core.system import usable_cores
    from audit.errors import UsageError

    if int(nproc) < 1:
        raise UsageError(f"--distributed must be >= 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={int(nproc)}",
           "-m", "audit.train.ddp", str(run_dir), *[str(o) for o in options]]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // int(nproc))))
    return subprocess.run(cmd, env=env, timeout=timeout, check=False).returncode


def _preflight(run_dir: Path | str, cfg: Any) -> None:
    """The settings checks every rank would fail on, done once before starting processes (exit code 2)."""
    from audit.rundir import RunDir
    from audit.train.config import validate_task
    from audit.train.models import MODELS, build_model

    run = RunDir.open(run_dir)
    validate_task(cfg.task or run.task)
    if cfg.model and cfg.model not in MODELS:
        build_model(cfg.model, 2)  # raises the UsageError with the closest names


def train_distributed(run_dir: Path | str, nproc: int, cfg: Any) -> None:
    """``audit train RUN --distributed N ...``: :func:`launch` with every setting of ``cfg``.

    ``cfg`` is the :class:`~audit.train.TrainConfig` a local run would use (the CLI and the API build it); each
    field that differs from its default is passed to the ranks (:func:`_flags`). Raises
    :class:`~audit.errors.StageError` when torchrun fails.
    """
    from audit.errors import StageError, UsageError
    from audit.train.config import TrainConfig

    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train_distributed() needs a TrainConfig, got {type(cfg).__name__}")
    if cfg.engine != "local":
        raise UsageError("--distributed trains and predicts on the DDP ranks; --engine ray is for inference from a "
                         "single training process: use one of them")
    if cfg.mode == "probe":
        raise UsageError("--mode probe runs in one process (one feature pass, seconds per fold): drop --distributed")
    _preflight(run_dir, cfg)
    rc = launch(run_dir, nproc, _flags(cfg))
    if rc != 0:
        raise StageError(f"distributed training failed (torchrun exit code {rc}); the ranks' errors are printed above "
                         f"and the train stage in {Path(run_dir) / 'run.json'}")


if __name__ == "__main__":
    sys.exit(main())
