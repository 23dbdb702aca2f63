"""Atomic file writes and standard JSON: a file a reader sees is always whole.

Every table, JSON document and image a stage writes goes through these functions: a temporary file in the
same folder, fsync, then ``os.replace``. A process killed mid-write leaves the old file (or none), never a
truncated one that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from audit.errors import RunDirError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_npz",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_parquet",
    "to_json",
]


def _umask() -> int:
    """The process umask (read by setting and restoring it; cached)."""
    global _UMASK
    if _UMASK is None:
        try:  # Linux: read it without changing it (os.umask() would briefly change it for every thread)
            with open("/proc/self/status", encoding="ascii") as f:
                _UMASK = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
        except (OSError, StopIteration, ValueError, IndexError):
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def _public_mode(fd_or_path) -> None:
    """Give a temporary file (0600 from mkstemp) the mode an ordinary file gets: 0666 minus the umask, so reports
    and tables can be read by a CI artifact uploader or a web server running as another user."""
    with contextlib.suppress(OSError):
        os.chmod(fd_or_path, 0o666 & ~_umask())


def _atomic_stream(path: Path, write) -> None:
    """Call ``write(f)`` on a temporary file in the folder of ``path``, fsync it and rename it to ``path``; on any
    failure the temporary file is removed (an OSError becomes a RunDirError naming the path)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise RunDirError(f"cannot write to {path.parent}: {e.strerror or e}") from None
    try:
        _public_mode(fd)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise RunDirError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    _atomic_stream(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if o is pd.NA:
        return None
    return str(o)


def _sanitize(o: Any):
    """Replace float NaN/inf with None so the JSON is standard (no NaN literals)."""
    import math

    if isinstance(o, float):
        return None if (math.isnan(o) or math.isinf(o)) else o
    if isinstance(o, dict):
        return {str(k): _sanitize(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_sanitize(v) for v in o]
    return o


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """JSON text with numpy types converted and NaN written as null."""
    return json.dumps(_sanitize(json.loads(json.dumps(obj, default=_json_default))), indent=indent, allow_nan=False)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, to_json(obj) + "\n")


def atomic_write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write a DataFrame as Parquet atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise RunDirError(f"cannot write to {path.parent}: {e.strerror or e}") from None
    try:
        df.to_parquet(tmp, index=False)
        _public_mode(tmp)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise RunDirError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise




def atomic_write_npz(path: Path, arrays: dict) -> None:
    """Write arrays as an uncompressed ``.npz`` atomically, streaming to the temporary file (no copy in memory:
    the scan's thumbnails of a million images are gigabytes)."""
    import numpy as np

    _atomic_stream(path, lambda f: np.savez(f, **arrays))
