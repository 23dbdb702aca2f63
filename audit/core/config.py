"""Typed stage configs: frozen, keyword-only dataclasses built from keywords through one gate.

The CLI, the Python API and the Ray/DDP executors build a stage's config with :func:`build_config`, which
refuses an unknown keyword the way Python refuses one in a call, naming it (and the closest known name), so an
option mistyped or renamed on the way from a flag to a stage is an error, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["build_config", "config_fields", "unexpected_keyword"]

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
        raise unexpected_keyword(_caller or cls.__name__, unknown[0], known)
    return cls(**kwargs)


def unexpected_keyword(caller: str, key: str, known: Iterable[str]) -> TypeError:
    """The ``TypeError`` Python raises for an unknown keyword, with the closest known name as a hint.

    >>> unexpected_keyword("profile", "n_bot", ["n_boot", "seed"])
    TypeError("profile() got an unexpected keyword argument 'n_bot' (did you mean 'n_boot'?)")
    """
    near = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return TypeError(f"{caller}() got an unexpected keyword argument {key!r}{hint}")
