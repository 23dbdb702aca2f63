"""Typed stage configs: frozen, keyword-only dataclasses built from keywords through one gate.

The CLI, the Python API and the Ray/DDP executors build a stage's config with :func:`build_config`, which
refuses an unknown keyword the way Python refuses one in a call, naming it (and the closest known name), so an
option mistyped or renamed on the way from a flag to a stage is an error, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, TypeVar

__all__ = ["build_config", "config_fields"]

C = TypeVar("C")


def config_fields(cls: type) -> tuple[str, ...]:
    """The names a config dataclass accepts (init fields only)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def build_config(cls: type[C], /, _caller: str | None = None, **kwargs: Any) -> C:
    """``cls(**kwargs)``, refusing keywords ``cls`` does not define with a ``TypeError`` that names them.

    ``_caller`` names the function in the message (``train() got an unexpected keyword argument 'epoch'``).

    >>> @dataclasses.dataclass(frozen=True, kw_only=True)
    ... class TrainConfig:
    ...     epochs: int = 5
    >>> build_config(TrainConfig, "train", epoch=3)
    Traceback (most recent call last):
    ...
    TypeError: train() got an unexpected keyword argument 'epoch' (did you mean 'epochs'?)
    """
    known = config_fields(cls)
    unknown = [k for k in kwargs if k not in known]
    if unknown:
        name = _caller or cls.__name__
        k = unknown[0]
        near = difflib.get_close_matches(k, known, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise TypeError(f"{name}() got an unexpected keyword argument {k!r}{hint}")
    return cls(**kwargs)
