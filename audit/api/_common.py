"""What the API's stage functions share: keyword checking and reading a run argument."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from audit.api.run import Run, open_run
from audit.core.config import unexpected_keyword
from audit.rundir import RunDir

RunLike = Run | str | os.PathLike
F = TypeVar("F", bound=Callable[..., Any])


def _keywords(fn: F) -> F:
    """Refuse unknown keywords as Python does, with the closest valid name as a hint (``n_bot`` -> ``n_boot``)."""
    params = inspect.signature(fn).parameters
    known = tuple(n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for k in kwargs:
            if k not in known:
                raise unexpected_keyword(fn.__name__, k, known)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _rundir(run: RunLike) -> RunDir:
    """The run directory of a ``Run``, a path or a str (``RunDirError`` when it is none)."""
    path = run.path if isinstance(run, Run) else Path(os.fspath(run))
    return open_run(path)._dir


def _path(run: RunLike) -> Path:
    """The path of a ``Run``, a path or a str."""
    return run.path if isinstance(run, Run) else Path(os.fspath(run))
