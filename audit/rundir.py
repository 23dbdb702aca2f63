"""The run directory: atomic writes, provenance (``run.json``), per-stage status, findings, loading.

Every stage, the dashboard and ``audit check`` go through :class:`RunDir`::

    run = RunDir.create(out, command=sys.argv)          # or RunDir.open(path)
    with run.stage("profile") as st:                     # records status, timings, errors in run.json
        run.write_table("profile/images.parquet", df)    # atomic temp-file + rename
        run.set_findings("profile", findings)            # merged and ranked into findings.json

Layout (see docs/formats.md for every column)::

    RUN/run.json, manifest.parquet, profile/*.parquet, predictions.parquet, metrics/*.parquet,
    findings.json, report.html, summary.md, check/, .partial/<stage>/ (finished pieces of an unfinished stage)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from audit.core.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npz,
    atomic_write_parquet,
    atomic_write_text,
    to_json,
)
from audit.core.signals import Interrupted, signal_name
from audit.errors import LockedError, RunDirError

__all__ = [
    "RunDir",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_parquet",
    "to_json",
    "STAGES",
    "package_versions",
    "release_locks",
    "part_key",
]

STAGES = ("manifest", "profile", "train", "metrics", "report", "check")
RUN_JSON = "run.json"
PARTIAL = ".partial"  # RUN/.partial/<stage>/: finished pieces of a stage that has not finished (resume)
_INTERRUPTED = "interrupted: the process stopped before the stage finished; re-run to resume"
FINDINGS_JSON = "findings.json"
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
# stage -> stages whose outputs are computed from it (marked "stale" when it runs again after them)
DOWNSTREAM = {"profile": ("report",), "train": ("metrics", "report"), "metrics": ("report",)}
# realpath of a run directory -> (fd holding the flock, number of holders in this process)
_HELD_LOCKS: dict[str, tuple[int, int]] = {}
_HELD: set[RunDir] = set()  # run directories whose lock this process holds (see release_locks)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Versions of the packages that influence results."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("imgaudit", "numpy", "pandas", "pyarrow", "pillow", "scikit-learn", "scipy", "torch", "torchvision"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


class RunDir:
    """A run directory on disk. Cheap to construct; reads files lazily.

    Use :meth:`create` to start (or continue) a run and :meth:`open` to read an existing one.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls, path: Path | str, *, command: list[str] | None = None, config: dict | None = None, lock: bool = False
    ) -> RunDir:
        """Create the folder (or reuse it) and write or update ``run.json``.

        With ``lock=True`` the run directory's lock is taken before ``run.json`` is touched, so a second
        process is refused without changing anything.
        """
        run = cls(path)
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run directory {run.path}: {e.strerror or e}") from None
        if not os.access(run.path, os.W_OK):
            raise RunDirError(f"run directory {run.path} is not writable")
        if lock:
            run.lock()
        info = run.info if run.exists() else {}
        from audit import __version__

        info.setdefault("tool", "imgaudit")
        info.setdefault("created", _now())
        info["version"] = __version__
        info["updated"] = _now()
        info.setdefault("commands", [])
        if command is not None:
            info["command"] = list(command)
            info["commands"] = (info["commands"] + [list(command)])[-20:]
        info["packages"] = package_versions()
        info["platform"] = {"system": platform.system(), "machine": platform.machine(), "cpus": os.cpu_count()}
        info.setdefault("config", {})
        if config:
            info["config"].update(config)
        info.setdefault("stages", {})
        run._write_info(info)
        return run

    @classmethod
    def open(cls, path: Path | str) -> RunDir:
        """Open an existing run directory; raise :class:`RunDirError` if it is not one."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunDirError(f"run directory {run.path} does not exist; "
                              f"create one with `audit profile DATA --out {run.path}`")
        if not run.exists():
            raise RunDirError(f"{run.path} is not a run directory (no run.json); "
                              f"create one with `audit profile DATA --out {run.path}`")
        return run

    def exists(self) -> bool:
        return (self.path / RUN_JSON).is_file()

    # ------------------------------------------------------------------ run.json
    @property
    def info(self) -> dict:
        """The parsed ``run.json`` (re-read at every access, so it is always current)."""
        p = self.path / RUN_JSON
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunDirError(f"{p} is not valid JSON ({e}); the run directory is damaged") from None

    def _write_info(self, info: dict) -> None:
        atomic_write_json(self.path / RUN_JSON, info)

    def update_info(self, **fields: Any) -> dict:
        """Merge top-level keys into run.json (dicts are merged one level deep)."""
        info = self.info
        for k, v in fields.items():
            if isinstance(v, dict) and isinstance(info.get(k), dict):
                info[k].update(v)
            else:
                info[k] = v
        info["updated"] = _now()
        self._write_info(info)
        return info

    @property
    def config(self) -> dict:
        return self.info.get("config", {})

    @property
    def dataset(self) -> dict:
        """``run.json["dataset"]``: root, fingerprint, n, format, roles, task, classes."""
        return self.info.get("dataset", {})

    @property
    def root(self) -> Path:
        """The dataset root that manifest file paths are relative to."""
        root = self.dataset.get("root")
        if not root:
            raise RunDirError(f"{self.path}/run.json has no dataset root; re-create the run with `audit profile`")
        return Path(root)

    @property
    def task(self) -> str:
        """``classify`` or ``segment`` (from the manifest roles)."""
        return self.dataset.get("task", "classify")

    def stage_status(self, stage: str) -> str | None:
        return self.stages().get(stage, {}).get("status")

    def stages(self) -> dict[str, dict]:
        """run.json's stages as a reader should show them: a stage recorded ``running`` whose process is gone
        (killed before it could record the end) is shown ``failed`` with an ``interrupted`` error; the next
        command that locks the run directory writes the same into run.json."""
        stages = {str(k): dict(v) if isinstance(v, dict) else {} for k, v in (self.info.get("stages") or {}).items()}
        if any(v.get("status") == "running" for v in stages.values()) and not self.writer_alive():
            for v in stages.values():
                if v.get("status") == "running":
                    v.update(status="failed", error=_INTERRUPTED)
        return stages

    def writer_alive(self) -> bool:
        """Whether the process that last locked this run directory may still be running (this one, or the pid
        recorded in ``.lock`` exists). Reads only: a reader never touches the lock itself."""
        if self.is_locked():
            return True
        try:
            pid = int((self.path / ".lock").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:  # exists but belongs to someone else
            return True
        return True

    def finished(self, stage: str) -> bool:
        return self.stage_status(stage) == "ok"

    @contextlib.contextmanager
    def stage(self, name: str, **details: Any) -> Iterator[dict]:
        """Record a stage's status and timing in run.json.

        The yielded dict can be filled with extra details (counts, config) that are stored with the stage.
        On an exception the error is recorded (status ``failed``) and re-raised; files of earlier stages
        are untouched.
        """
        t0 = time.perf_counter()
        extra: dict = dict(details)
        stages = self.info.get("stages", {})
        stages[name] = {"status": "running", "started": _now(), **extra}
        self.update_info(stages=stages)
        try:
            yield extra
        except BaseException as e:
            stages = self.info.get("stages", {})
            entry = {**stages.get(name, {}), **extra, "finished": _now(), "seconds": round(time.perf_counter() - t0, 3)}
            if isinstance(e, KeyboardInterrupt):  # Ctrl+C, SIGTERM, SIGHUP (audit.core.signals): resumable
                sig = signal_name(e.signum) if isinstance(e, Interrupted) else "SIGINT"
                entry.update(status="interrupted", signal=sig, interrupted_at=entry["finished"],
                             error=f"interrupted by {sig}; re-run the same command to resume")
                entry.pop("traceback", None)
            else:
                entry.update(status="failed", error=f"{type(e).__name__}: {e}",
                             traceback=traceback.format_exc(limit=8))
            stages[name] = entry
            with contextlib.suppress(Exception):
                self.update_info(stages=stages)
            raise
        stages = self.info.get("stages", {})
        stages[name] = {
            **stages.get(name, {}),
            **extra,
            "status": "ok",
            "finished": _now(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        stages[name].pop("error", None)
        stages[name].pop("traceback", None)
        # outputs computed from this stage's old results are now out of date: say so instead of showing "ok"
        for later in DOWNSTREAM.get(name, ()):
            prev = stages.get(later)
            if isinstance(prev, dict) and prev.get("status") == "ok":
                prev.update(status="stale", reason=f"{name} ran again after it ({stages[name]['finished']}); re-run "
                                                   f"`audit {later} {self.path}`")
        self.update_info(stages=stages)

    def mark_stage(self, name: str, status: str, **details: Any) -> None:
        """Set a stage's status without running it (e.g. ``skipped`` with a reason)."""
        stages = self.info.get("stages", {})
        stages[name] = {**stages.get(name, {}), "status": status, "finished": _now(), **details}
        self.update_info(stages=stages)

    # ------------------------------------------------------------------ lock
    def _lock_key(self) -> str:
        return os.path.realpath(self.path)

    def is_locked(self) -> bool:
        """Whether this process holds the run directory's lock."""
        return self._lock_key() in _HELD_LOCKS

    def lock(self) -> RunDir:
        """Take the run directory's lock; raise :class:`LockedError` if another *process* holds it.

        The lock is per process and re-entrant: several :class:`RunDir` objects (or nested stages) of the same
        process share it, counted; two processes writing one run directory are refused.
        """
        if self._lock_fd is not None:
            return self
        key = self._lock_key()
        held = _HELD_LOCKS.get(key)
        if held is not None:
            _HELD_LOCKS[key] = (held[0], held[1] + 1)
            self._lock_fd = held[0]
            _HELD.add(self)
            return self
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot lock run directory {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(
                f"run directory {self.path} is in use by another audit process; wait for it or use another --out"
            ) from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        _HELD_LOCKS[key] = (fd, 1)
        self._lock_fd = fd
        _HELD.add(self)
        self._close_interrupted_stages()
        return self

    def _close_interrupted_stages(self) -> None:
        """Stages still ``running`` when the lock was free belong to a process that died (SIGKILL, power loss):
        record them as failed, so run.json never claims a stage is in progress when nothing runs it."""
        with contextlib.suppress(RunDirError, OSError):
            stages = self.info.get("stages", {})
            stale = [k for k, v in stages.items() if isinstance(v, dict) and v.get("status") == "running"]
            if not stale:
                return
            for k in stale:
                stages[k].update(status="failed", finished=None, error=_INTERRUPTED)
            self.update_info(stages=stages)

    def unlock(self) -> None:
        """Release this object's share of the lock (the file lock goes when the last share is released)."""
        _HELD.discard(self)
        if self._lock_fd is None:
            return
        self._lock_fd = None
        key = self._lock_key()
        held = _HELD_LOCKS.get(key)
        if held is None:
            return
        fd, count = held
        if count > 1:
            _HELD_LOCKS[key] = (fd, count - 1)
            return
        del _HELD_LOCKS[key]
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunDir:
        return self.lock()

    def __exit__(self, *exc) -> None:
        self.unlock()

    # ------------------------------------------------------------------ files
    def file(self, rel: str) -> Path:
        return self.path / rel

    def has(self, rel: str) -> bool:
        return (self.path / rel).exists()

    def write_table(self, rel: str, df: pd.DataFrame) -> Path:
        p = self.path / rel
        atomic_write_parquet(df, p)
        return p

    def read_table(self, rel: str, *, columns: list[str] | None = None, required: bool = True) -> pd.DataFrame | None:
        """Read a Parquet table of the run; ``None`` if absent and not required."""
        p = self.path / rel
        if not p.exists():
            if required:
                raise RunDirError(f"{p} does not exist; run the stage that writes it first")
            return None
        try:
            return pd.read_parquet(p, columns=columns)
        except Exception as e:  # pyarrow raises several types for damaged files
            raise RunDirError(f"cannot read {p}: {e}") from None

    def write_json(self, rel: str, obj: Any) -> Path:
        p = self.path / rel
        atomic_write_json(p, obj)
        return p

    def read_json(self, rel: str, *, default: Any = None) -> Any:
        p = self.path / rel
        if not p.exists():
            return default
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunDirError(f"{p} is not valid JSON ({e})") from None

    def write_text(self, rel: str, text: str) -> Path:
        p = self.path / rel
        atomic_write_text(p, text)
        return p

    # ------------------------------------------------------------------ manifest
    def manifest(self) -> pd.DataFrame:
        """The canonical manifest of this run."""
        from audit.manifest import read_manifest

        p = self.path / "manifest.parquet"
        if not p.exists():
            raise RunDirError(f"{self.path} has no manifest.parquet; run `audit profile DATA --out {self.path}` first")
        return read_manifest(p)

    def write_manifest(self, df: pd.DataFrame) -> None:
        from audit.manifest import write_manifest

        write_manifest(df, self.path / "manifest.parquet")

    def classes(self) -> list[str]:
        """Class names (classification labels, or segmentation class names by index)."""
        return list(self.dataset.get("classes", []))

    def abspath(self, relpath: str) -> Path:
        """Absolute path of a manifest file path (respects the run's allow_outside_root setting)."""
        from audit.manifest import resolve_path

        return resolve_path(self.root, relpath, allow_outside_root=bool(self.dataset.get("allow_outside_root")))

    def abspaths(self, relpaths) -> list[Path]:
        """:meth:`abspath` of many paths, reading the run's settings once."""
        from audit.manifest import resolve_paths

        return resolve_paths(self.root, [str(r) for r in relpaths],
                             allow_outside_root=bool(self.dataset.get("allow_outside_root")))

    # ------------------------------------------------------------------ findings
    def findings(self) -> list[dict]:
        """Every finding of the run, ranked (critical first, then by score)."""
        data = self.read_json(FINDINGS_JSON, default=[])
        if isinstance(data, dict):
            data = data.get("findings", [])
        return data

    def set_findings(self, stage: str, findings: list) -> list[dict]:
        """Replace the findings of ``stage`` and write the merged, ranked ``findings.json``."""
        from audit.findings import Finding, rank

        new = [f.to_dict() if isinstance(f, Finding) else dict(f) for f in findings]
        for f in new:
            f["stage"] = stage
        kept = [f for f in self.findings() if f.get("stage") != stage]
        merged = rank(kept + new)
        atomic_write_json(self.path / FINDINGS_JSON, merged)
        return merged

    # ------------------------------------------------------------------ resumable pieces of a stage
    def write_part(self, stage: str, name: str, key: str, state: Any, *, tables: dict | None = None,
                   arrays: dict | None = None) -> bool:
        """Store one finished piece of a stage (a profile check, a metrics table part) under ``.partial/<stage>/``
        with its ``key`` (:func:`part_key` of what it was computed from). Each file is written atomically and the
        JSON that names the key last, so a piece whose JSON is there is whole. ``state`` is JSON-able (numpy
        scalars and arrays, tuples and non-string keys are kept as they were); no pickle is ever read back.
        Returns False (nothing stored) when ``state`` cannot be encoded."""
        d = self.path / PARTIAL / stage
        try:
            text = json.dumps({"key": key, "tables": sorted(tables or {}), "arrays": sorted(arrays or {}),
                               "state": _tag(state)})
        except (TypeError, ValueError):
            return False
        with contextlib.suppress(OSError):
            (d / f"{name}.json").unlink()
        for t, df in (tables or {}).items():
            atomic_write_parquet(df, d / f"{name}.{t}.parquet")
        if arrays:
            atomic_write_npz(d / f"{name}.npz", arrays)
        atomic_write_text(d / f"{name}.json", text)
        return True

    def has_part(self, stage: str, name: str, key: str) -> bool:
        """Whether a piece stored by :meth:`write_part` has this ``key`` (reads its small JSON only)."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            return json.loads((self.path / PARTIAL / stage / f"{name}.json").read_text()).get("key") == key
        return False

    def read_part(self, stage: str, name: str, key: str, *, arrays: bool = True) -> tuple[Any, dict, dict] | None:
        """``(state, tables, arrays)`` of a piece stored by :meth:`write_part` with the same ``key``, else None
        (``arrays=False``: the arrays are not read)."""
        d = self.path / PARTIAL / stage
        try:
            meta = json.loads((d / f"{name}.json").read_text())
            if meta.get("key") != key:
                return None
            tables = {t: pd.read_parquet(d / f"{name}.{t}.parquet") for t in meta.get("tables", [])}
            out: dict = {}
            if arrays and meta.get("arrays"):
                import numpy as np

                with np.load(d / f"{name}.npz", allow_pickle=False) as z:
                    out = {a: z[a] for a in meta["arrays"]}
            return _untag(meta["state"]), tables, out
        except Exception:  # absent, damaged or from another version: compute it again
            return None

    def clear_parts(self, stage: str) -> None:
        """Forget the stored pieces of a stage (called when the stage finishes)."""
        import shutil

        shutil.rmtree(self.path / PARTIAL / stage, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.path / PARTIAL).rmdir()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def part_key(*parts: Any) -> str:
    """The key of a resumable piece: a hash of what it is computed from (config, manifest fingerprint, inputs)."""
    import hashlib

    return hashlib.sha256(to_json(list(parts), indent=None).encode()).hexdigest()[:24]


def _tag(o: Any) -> Any:
    """JSON-able form of ``o`` that :func:`_untag` turns back into equal objects of the same types."""
    import numpy as np

    if o is None or isinstance(o, (bool, str)) or type(o) in (int, float):
        return o
    if isinstance(o, np.ndarray):
        if o.dtype.kind not in "biufU":
            raise TypeError(f"cannot store an array of {o.dtype}")
        return {"__nd__": o.dtype.str, "shape": list(o.shape), "v": o.ravel().tolist()}
    if isinstance(o, np.generic):
        if o.dtype.kind not in "biufU":
            raise TypeError(f"cannot store a {o.dtype} scalar")
        return {"__np__": o.dtype.str, "v": o.item()}
    if isinstance(o, (list, tuple)):
        items = [_tag(x) for x in o]
        return items if isinstance(o, list) else {"__tuple__": items}
    if isinstance(o, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in o):
            return {k: _tag(v) for k, v in o.items()}
        return {"__dict__": [[_tag(k), _tag(v)] for k, v in o.items()]}
    if o is pd.NA:
        return {"__na__": True}
    raise TypeError(f"cannot store a {type(o).__name__}")


def _untag(o: Any) -> Any:
    import numpy as np

    if isinstance(o, list):
        return [_untag(x) for x in o]
    if not isinstance(o, dict):
        return o
    if "__nd__" in o:
        return np.array(o["v"], dtype=np.dtype(o["__nd__"])).reshape(o["shape"])
    if "__np__" in o:
        return np.dtype(o["__np__"]).type(o["v"])
    if "__tuple__" in o:
        return tuple(_untag(x) for x in o["__tuple__"])
    if "__dict__" in o:
        return {_untag(k): _untag(v) for k, v in o["__dict__"]}
    if "__na__" in o:
        return pd.NA
    return {k: _untag(v) for k, v in o.items()}


def release_locks() -> None:
    """Release every run-directory lock this process holds (the CLI calls it when a command ends, so that
    in-process callers such as notebooks or ``CliRunner`` can run the next command on the same directory)."""
    for run in list(_HELD):
        run.unlock()


def argv() -> list[str]:
    """The command line as typed (program name shortened to ``audit``)."""
    return ["audit", *sys.argv[1:]]
