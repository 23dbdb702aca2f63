"""The Ray engine (``--engine ray``): profiling's image scan and model inference as Ray Data pipelines.

Both run over a table made from the manifest (one row per sample, with its absolute path) and write exactly
what the local engine writes:

* :func:`scan_items_ray` - the profile's image scan: ``map_batches`` with a stateless function (Ray tasks);
  batches are the same chunks the local engine uses, so hashes and counts are identical and statistics equal
  to float precision.
* :func:`run_ordered` - the generic part: a Ray Data pipeline whose rows carry their position (``_idx``),
  streamed back in any order, put back in manifest order and **verified**: every row must come back exactly
  once, or a :class:`~audit.errors.StageError` names what is missing. Nothing is dropped silently.
* :mod:`audit.train.ray_infer` builds the inference pipeline (an actor pool, one GPU per actor when the
  cluster has GPUs) on top of :func:`run_ordered`.

Fault tolerance: a worker process that dies mid-batch (killed, out of memory, node lost) is retried -
tasks up to ``max_retries`` times, actors restarted up to ``max_restarts`` times with their in-flight batch
resubmitted. An exception raised by our own code is not retried (it would fail again) and becomes a
one-line :class:`~audit.errors.StageError`.

Records travel as pickled Python objects per row (``_out``), not as Arrow columns: a 64-bit perceptual hash
or a nullable integer would otherwise come back as a float and lose bits.

Cluster: :func:`init_ray` joins ``address`` (``--ray-address``), else ``RAY_ADDRESS``, else starts a local
cluster with one CPU per usable core, no dashboard and no usage statistics. Ray is imported only here, inside
functions.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from audit.core.system import usable_cores
from audit.errors import StageError, UsageError
from audit.io.decode import scan_chunk

__all__ = ["init_ray", "check_reachable", "cluster_info", "run_ordered", "map_chunks", "scan_items_ray", "block_frames",
           "DEFAULT_MAX_RETRIES"]

DEFAULT_MAX_RETRIES = 3  # per task / per actor: a crash-looping worker fails the stage instead of spinning forever
_MISSING_SHOWN = 5


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is the part we need: the `ray[data]` extra)
    except ImportError:
        raise UsageError("--engine ray needs Ray Data: pip install 'imgaudit[ray]' (ray[data])") from None
    return ray


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> dict:
    """Connect to a Ray cluster, or start a local one; returns :func:`cluster_info`.

    Parameters
    ----------
    address
        Cluster address (``ray://host:10001`` or ``host:6379``; ``auto`` for the cluster this machine is part
        of). ``None``: the ``RAY_ADDRESS`` environment variable, else a new local cluster.
    num_cpus
        CPUs of a new local cluster (default: the usable cores). Ignored when joining a cluster.

    Notes
    -----
    When Ray is already initialized in this process (a notebook, a test fixture, an earlier stage) that
    connection is reused and ``address`` is not consulted.
    """
    ray = _import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        addr = address or os.environ.get("RAY_ADDRESS") or None
        try:
            if addr:
                check_reachable(addr)
                ray.init(address=addr, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=int(num_cpus or usable_cores()), include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {addr!r}" if addr else "a local Ray cluster"
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UsageError(f"cannot start or join {where}: {msg}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own bar reports progress; Ray's would interleave with it
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # INFO per pipeline, a warning that bars are off
    return cluster_info()


def check_reachable(address: str, *, timeout: float = 5.0) -> None:
    """Fail fast with a :class:`UsageError` when ``host:port`` of a cluster address does not answer.

    ``ray.init`` itself retries an unreachable address for minutes. ``auto``/``local`` are not probed.
    """
    import socket

    rest = address.split("://", 1)[-1].strip().rstrip("/")
    if rest in ("auto", "local") or ":" not in rest:
        return
    host, _, port = rest.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise UsageError(f"cannot reach the Ray cluster at {address!r} ({reason}); check --ray-address / "
                         "RAY_ADDRESS, or leave both unset to start a local cluster") from None


def cluster_info() -> dict:
    """Address, node count and resources of the connected Ray cluster (recorded in run.json)."""
    import ray

    res = ray.cluster_resources()
    ctx = ray.get_runtime_context()
    return {
        "ray": ray.__version__,
        "address": getattr(ctx, "gcs_address", None),
        "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
        "cpus": float(res.get("CPU", 0.0)),
        "gpus": float(res.get("GPU", 0.0)),
    }


def block_frames(frame: pd.DataFrame, *, batch_size: int, parallelism: int) -> list[pd.DataFrame]:
    """Split ``frame`` into Ray blocks whose sizes are multiples of ``batch_size``.

    ``map_batches`` forms batches inside each block, so aligned blocks make the batches exactly the chunks
    ``frame[i : i + batch_size]`` of the local engine. About four blocks per worker keep every worker busy.
    """
    n = len(frame)
    if n == 0:
        return [frame]
    n_batches = -(-n // batch_size)
    per_block = max(1, -(-n_batches // max(1, 4 * parallelism))) * batch_size
    return [frame.iloc[i : i + per_block].reset_index(drop=True) for i in range(0, n, per_block)]


_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _one_line(e: BaseException) -> str:
    """The most useful single line of a Ray-wrapped exception: the root error raised in the worker if any
    (Ray prints remote tracebacks into the message), else the first line of Ray's own message."""
    chain, cur = [], e
    while isinstance(cur, BaseException) and cur not in chain and len(chain) < 10:
        chain.append(cur)
        nxt = getattr(cur, "cause", None)
        cur = nxt if isinstance(nxt, BaseException) else cur.__cause__
    texts = [_ANSI.sub("", str(x)) for x in chain]
    for text in texts:
        for ln in text.splitlines():
            m = _ERROR_LINE.match(ln.strip())
            if m and not m.group(1).startswith("ray.") and m.group(1) != "UserCodeException":
                return f"{m.group(1)}: {m.group(2)[:300]}"
    for x, text in zip(chain, texts, strict=True):
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.strip().startswith("ray::")]
        if lines:
            return f"{type(x).__name__}: {lines[0][:300]}"
    return type(e).__name__


def run_ordered(
    frame: pd.DataFrame,
    fn: Callable | type,
    *,
    what: str,
    batch_size: int,
    ids: Sequence[str] | None = None,
    fn_kwargs: dict | None = None,
    fn_constructor_kwargs: dict | None = None,
    concurrency: int | tuple[int, int] | None = None,
    num_gpus: float | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    parallelism: int | None = None,
    on_done: Callable[[int], None] | None = None,
    weights: Sequence[int] | None = None,
) -> list[Any]:
    """Run ``fn`` over ``frame`` with Ray Data; return its per-row outputs in ``frame``'s order.

    Parameters
    ----------
    frame
        One row per item (plain columns; ``_idx`` is added). Ray must be initialized (:func:`init_ray`).
    fn
        ``fn(batch: pd.DataFrame, **fn_kwargs) -> list`` (one output per row of the batch, in order), or a
        class whose instances are such callables (then an actor pool of ``concurrency`` actors runs it:
        use this when set-up is costly, e.g. loading a model).
    what
        Name of the work for messages (``"image scan"``, ``"inference"``).
    batch_size
        Rows per batch.
    ids
        Sample ids of the rows, to name missing ones in the error.
    concurrency
        Tasks in flight (functions) or actors (classes); ``None``: Ray's choice (functions) / the cluster's
        CPU count (classes).
    num_gpus
        GPUs per task/actor (``None`` or 0: CPU only).
    max_retries
        Retries of a task whose worker died; restarts of a dead actor (its in-flight batches are retried).
    parallelism
        Expected workers, to size the blocks (default: the cluster's CPUs).
    on_done
        Called with the number of rows of each batch that came back (or the sum of their ``weights``).
    weights
        Progress units per row (e.g. the items in a chunk), default 1.

    Raises
    ------
    StageError
        A batch failed after its retries, or rows did not come back (never returned partially).
    """
    ray = _import_ray()
    if not ray.is_initialized():
        init_ray()
    n = len(frame)
    if n == 0:
        return []
    par = int(parallelism or max(1, ray.cluster_resources().get("CPU", 1)))
    base = frame.reset_index(drop=True).copy()
    base.insert(0, "_idx", np.arange(n, dtype=np.int64))
    ds = ray.data.from_pandas(block_frames(base, batch_size=batch_size, parallelism=par))
    kw = _map_kwargs(ray, fn, batch_size=batch_size, fn_kwargs=fn_kwargs, fn_constructor_kwargs=fn_constructor_kwargs,
                     concurrency=concurrency, num_gpus=num_gpus, max_retries=max_retries, parallelism=par)
    with warnings.catch_warnings():
        # max_retries / max_restarts are only reachable as ray_remote_args (deprecated in 2.5x, still honoured);
        # without them Ray retries forever and a crash-looping worker would hang the stage
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*", category=Warning)
        out_ds = ds.map_batches(kw.pop("_mapper"), **kw)
    return _collect(out_ds, n, what=what, ids=ids, on_done=on_done, weights=weights)


def _map_kwargs(ray, fn: Callable | type, *, batch_size: int, fn_kwargs: dict | None,
                fn_constructor_kwargs: dict | None, concurrency: int | tuple[int, int] | None,
                num_gpus: float | None, max_retries: int, parallelism: int) -> dict[str, Any]:
    """``map_batches`` arguments: an actor pool for a class, retried tasks for a function (``_mapper``: the body)."""
    kw: dict[str, Any] = {"batch_format": "pandas", "batch_size": int(batch_size), "zero_copy_batch": False}
    if num_gpus:
        kw["num_gpus"] = float(num_gpus)
    if isinstance(fn, type):
        kw["fn_constructor_kwargs"] = dict(fn_constructor_kwargs or {})
        size = concurrency or parallelism
        kw["compute"] = (ray.data.ActorPoolStrategy(min_size=size[0], max_size=size[1]) if isinstance(size, tuple)
                         else ray.data.ActorPoolStrategy(size=int(size)))
        kw["max_restarts"] = int(max_retries)
        kw["max_task_retries"] = int(max_retries)
        kw["_mapper"] = _ActorBatch
        kw["fn_constructor_args"] = (fn,)
        kw["fn_kwargs"] = {"fn_kwargs": dict(fn_kwargs or {})}
    else:
        if concurrency is not None:
            kw["compute"] = ray.data.TaskPoolStrategy(size=int(concurrency if not isinstance(concurrency, tuple)
                                                              else concurrency[1]))
        kw["max_retries"] = int(max_retries)
        kw["retry_exceptions"] = False  # our own exceptions would fail again: report, don't loop
        kw["_mapper"] = _task_batch
        kw["fn_kwargs"] = {"fn": fn, "fn_kwargs": dict(fn_kwargs or {})}
    return kw


def _collect(out_ds, n: int, *, what: str, ids: Sequence[str] | None, on_done: Callable[[int], None] | None,
             weights: Sequence[int] | None) -> list[Any]:
    """Stream the outputs back, put them in row order and verify every row came back exactly once."""
    w = np.asarray(weights, dtype=np.int64) if weights is not None else None
    results: list[Any] = [None] * n
    seen = np.zeros(n, dtype=np.int64)
    try:
        for batch in out_ds.iter_batches(batch_format="pandas", batch_size=None):
            idx = batch["_idx"].to_numpy(dtype=np.int64)
            for i, blob in zip(idx.tolist(), batch["_out"].tolist(), strict=True):
                results[i] = pickle.loads(blob)
            np.add.at(seen, idx, 1)
            if on_done:
                on_done(int(w[idx].sum()) if w is not None else len(idx))
    except Exception as e:
        raise StageError(f"ray engine: {what} failed after retries ({_one_line(e)})") from e
    missing = np.flatnonzero(seen == 0)
    twice = np.flatnonzero(seen > 1)
    if len(missing) or len(twice):
        names = [str(ids[i]) if ids is not None else str(i) for i in missing[:_MISSING_SHOWN]]
        raise StageError(
            f"ray engine: {what} returned {n - len(missing)} of {n} rows ({len(twice)} duplicated); "
            f"missing e.g. {', '.join(names) or '-'}: the stage was not written"
        )
    return results


def _pack(batch: pd.DataFrame, outputs: list) -> pd.DataFrame:
    if len(outputs) != len(batch):
        raise RuntimeError(f"batch function returned {len(outputs)} outputs for {len(batch)} rows")
    return pd.DataFrame({"_idx": batch["_idx"].to_numpy(dtype=np.int64),
                         "_out": [pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL) for o in outputs]})


def _task_batch(batch: pd.DataFrame, fn: Callable, fn_kwargs: dict) -> pd.DataFrame:
    """Ray task body: run ``fn`` on the user columns of the batch, pack outputs with their positions."""
    return _pack(batch, list(fn(batch.drop(columns="_idx"), **fn_kwargs)))


class _ActorBatch:
    """Actor body: construct ``cls`` once per actor (e.g. load a model), then call it per batch."""

    def __init__(self, cls: type, **kwargs: Any):
        self.impl = cls(**kwargs)

    def __call__(self, batch: pd.DataFrame, fn_kwargs: dict) -> pd.DataFrame:
        return _pack(batch, list(self.impl(batch.drop(columns="_idx"), **fn_kwargs)))


# ---------------------------------------------------------------------------------------------- generic chunks
def _chunk_rows(batch: pd.DataFrame, fn: Callable, args: tuple) -> list:
    return [fn(pickle.loads(b), *args) for b in batch["chunk"].tolist()]


def map_chunks(fn: Callable, chunks: Sequence[Sequence], args: tuple, *, address: str | None = None,
               max_retries: int = DEFAULT_MAX_RETRIES, on_done: Callable[[int], None] | None = None) -> list[Any]:
    """``[fn(chunk, *args) for chunk in chunks]`` as Ray tasks (one chunk per batch), in order, verified."""
    init_ray(address)
    frame = pd.DataFrame({"chunk": [pickle.dumps(list(c), protocol=pickle.HIGHEST_PROTOCOL) for c in chunks]})
    return run_ordered(frame, _chunk_rows, what=getattr(fn, "__name__", "work").strip("_").replace("_", " "),
                       batch_size=1, fn_kwargs={"fn": fn, "args": tuple(args)}, max_retries=max_retries,
                       on_done=on_done, weights=[len(c) for c in chunks])


# ---------------------------------------------------------------------------------------------- image scan
def _none(v: Any) -> Any:
    """Arrow/pandas missing values (None, NaN, NA) back to None."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def _scan_batch(batch: pd.DataFrame, max_pixels: int, n_classes: int | None, pixel_md5: bool) -> list[dict]:
    items = [tuple(_none(v) for v in row) for row in
             zip(batch["path"], batch["error"], batch["mask_path"], batch["mask_error"], strict=True)]
    return scan_chunk(items, max_pixels, n_classes, pixel_md5)


def scan_items_ray(items: Sequence[tuple], *, max_pixels: int, n_classes: int | None = None, chunk_size: int,
                   pixel_md5: bool = False, address: str | None = None, sample_ids: Sequence[str] | None = None,
                   max_retries: int = DEFAULT_MAX_RETRIES, on_done: Callable[[int], None] | None = None) -> list[dict]:
    """The profile's image scan over Ray Data: one record per ``(path, error, mask_path, mask_error)`` item.

    Same records as :func:`audit.profile.scan.scan_items` (batches are its chunks), in the items' order.
    """
    init_ray(address)
    cols = ("path", "error", "mask_path", "mask_error")
    frame = pd.DataFrame({c: pd.Series([None if it[k] is None else str(it[k]) for it in items], dtype=object)
                          for k, c in enumerate(cols)})
    return run_ordered(frame, _scan_batch, what="image scan", batch_size=chunk_size, ids=sample_ids,
                       fn_kwargs={"max_pixels": int(max_pixels), "n_classes": n_classes, "pixel_md5": bool(pixel_md5)},
                       max_retries=max_retries, on_done=on_done)
