"""imgaudit: audit image datasets for bias and measure how models trained on them generalize.

The Python API::

    import audit
    run = audit.profile("data/pets.csv", out="runs/pets", label="breed", domain="site")
    run = audit.train(run, epochs=4)                 # needs the [train] extra (torch)
    run = audit.metrics(run)
    audit.report(run)                                # -> runs/pets/report.html
    audit.check(run, "audit-policy.toml").passed
    run.findings                                     # one row per finding (pandas)
    run.table("metrics/groups")                      # any table by its run-directory name
    audit.group_metrics(y_true, y_pred, sensitive_features=df[["sex", "age"]], metrics=("accuracy",))

Names are loaded on first use, so ``import audit`` stays light (no torch, no pandas until needed).

``audit.profile``, ``audit.train``, ``audit.metrics``, ``audit.report`` and ``audit.check`` are also the names of
the stages' subpackages. Each such subpackage is made callable: calling it calls the API function of
the API (:mod:`audit.api.stages`, :mod:`audit.api.policy`), and everything else (``audit.metrics.group_report``,
``from audit import metrics as M``) is the subpackage as before.
"""

from __future__ import annotations

import logging as _logging
import sys as _sys
import types as _types
from typing import Any

__version__ = "0.1.0"

_API = {
    "Run": "audit.api.run",
    "open_run": "audit.api.run",
    "group_metrics": "audit.api.groups",
    "CheckResult": "audit.api.policy",
    "profile": "audit.api.stages",
    "train": "audit.api.stages",
    "metrics": "audit.api.stages",
    "report": "audit.api.stages",
    "check": "audit.api.policy",
    "run": "audit.api.stages",
}
# API functions that share their name with a stage subpackage (audit/profile/, audit/train/, ...)
_STAGE_PACKAGES = frozenset({"profile", "train", "metrics", "report", "check"})

__all__ = ["__version__", *_API]

# Diagnostics go to logging.getLogger("audit"); a library adds only a NullHandler (see audit.log).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())


def _api_function(name: str):
    import importlib

    return getattr(importlib.import_module(_API[name]), name)


class _StageModule(_types.ModuleType):
    """A stage subpackage that is also its API function: ``audit.profile(data, out=...)``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _api_function(self.__name__.rpartition(".")[2])(*args, **kwargs)

    @property
    def __signature__(self):  # inspect.signature(audit.profile) shows the function's keywords
        import inspect

        return inspect.signature(_api_function(self.__name__.rpartition(".")[2]))


class _AuditModule(_types.ModuleType):
    """The ``audit`` package: a stage subpackage bound here (by any import of it) becomes callable."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (name in _STAGE_PACKAGES and isinstance(value, _types.ModuleType)
                and value.__name__ == f"{__name__}.{name}" and type(value) is _types.ModuleType):
            value.__class__ = _StageModule
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'audit' has no attribute {name!r}")
    import importlib

    if name in _STAGE_PACKAGES:
        try:  # binding the subpackage here makes it callable (_AuditModule.__setattr__)
            return importlib.import_module(f"{__name__}.{name}")
        except ImportError:  # e.g. audit.train without torch: the function says which extra to install
            pass
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


_sys.modules[__name__].__class__ = _AuditModule
