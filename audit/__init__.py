"""imgaudit: audit image datasets for bias and measure how models trained on them generalize.

The Python API::

    import audit
    run = audit.open_run("runs/pets")            # an existing run directory
    run.findings                                 # one row per finding (pandas)
    run.table("metrics/groups")                  # any table by its run-directory name
    audit.group_metrics(y_true, y_pred, sensitive_features=df[["sex", "age"]], metrics=("accuracy",))

Names are loaded on first use, so ``import audit`` stays light (no torch, no pandas until needed).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "Run": "audit.api.run",
    "open_run": "audit.api.run",
    "group_metrics": "audit.api.groups",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'audit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
