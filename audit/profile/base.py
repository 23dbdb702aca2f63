"""The check framework: a small :class:`Check` base class, a ``@register`` registry and a runner that isolates
failures (a check that raises is recorded with its error and a ``check_failed`` finding; the others still run).

A check declares what it needs (``requires``: names of tables other checks produce, e.g. ``"images"``) and
what it makes (``provides``). The runner orders nothing itself: checks run by their ``order`` attribute
(the registry is kept sorted by it).
"""

from __future__ import annotations

import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from audit.findings import Finding
from audit.manifest import attribute_columns

__all__ = ["Check", "CheckOutput", "Context", "REGISTRY", "register", "run_checks"]


@dataclass
class CheckOutput:
    """What a check returns: tables (name -> DataFrame, written to ``profile/<name>.parquet``) and findings."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # in-memory only (e.g. thumbnails), never written


@dataclass
class Context:
    """Everything a check may read. ``manifest`` is sorted by ``sample_id`` so results do not depend on row order.

    ``tables`` holds every table produced so far (``tables["images"]`` is aligned row by row with ``manifest``).
    """

    manifest: pd.DataFrame
    config: Any
    root: Path | None = None
    task: str = "classify"
    classes: list[str] = field(default_factory=list)
    run: Any = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    abspath: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def rng(self, salt: str) -> np.random.Generator:
        """A generator seeded by the run seed and a per-use salt (independent of which checks ran before)."""
        return np.random.default_rng([int(self.config.seed), zlib.crc32(salt.encode())])

    @property
    def images(self) -> pd.DataFrame | None:
        return self.tables.get("images")

    @property
    def attrs(self) -> list[str]:
        return attribute_columns(self.manifest)

    def has(self, col: str) -> bool:
        """True when the manifest has the column with at least one value."""
        return col in self.manifest.columns and bool(self.manifest[col].notna().any())

    @property
    def grouping_columns(self) -> list[str]:
        """Columns that define groups: label, domain, split and every attribute that has values."""
        return [c for c in ("label", "domain", "split", *self.attrs) if self.has(c)]


class Check:
    """Base class of a profile check. Subclasses set ``name`` and implement :meth:`run`."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100  # run order (lower first); checks needing a table run after its provider
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    tasks: ClassVar[tuple[str, ...]] = ("classify", "segment")

    def skip_reason(self, ctx: Context) -> str | None:
        """Why this check does not apply to this dataset (None: it applies)."""
        if ctx.task not in self.tasks:
            return f"not applicable to task {ctx.task!r}"
        return None

    def run(self, ctx: Context) -> CheckOutput:  # pragma: no cover - abstract
        raise NotImplementedError


REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator adding a check to :data:`REGISTRY` under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    REGISTRY[cls.name] = cls
    for k in sorted(REGISTRY, key=lambda k: (REGISTRY[k].order, k)):
        REGISTRY[k] = REGISTRY.pop(k)  # keep the registry in run order
    return cls


def run_checks(ctx: Context, names: list[str], *, progress=None) -> tuple[list[Finding], dict[str, dict]]:
    """Run the named checks in registry order; return all findings and a status record per check.

    A check whose requirement is missing (because the check that provides it failed or was not selected)
    is ``skipped`` with the reason; a check that raises is ``failed`` with its error, recorded as a
    ``check_failed`` finding, and the next checks still run.
    """
    findings: list[Finding] = []
    status: dict[str, dict] = {}
    for name in [n for n in REGISTRY if n in names]:
        check = REGISTRY[name]()
        missing = [r for r in check.requires if r not in ctx.tables]
        reason = f"needs {', '.join(missing)} (not produced)" if missing else check.skip_reason(ctx)
        if reason:
            status[name] = {"status": "skipped", "reason": reason}
            continue
        t0 = time.perf_counter()
        try:
            res = check.run(ctx)
        except Exception as e:  # isolate: record and go on with the other checks
            err = f"{type(e).__name__}: {e}"
            status[name] = {
                "status": "failed",
                "error": err,
                "traceback": traceback.format_exc(limit=6),
                "seconds": round(time.perf_counter() - t0, 3),
            }
            findings.append(
                Finding(
                    kind="check_failed", severity="warning", title=f"profile check {name!r} failed: {err[:160]}",
                    detail="The other checks ran; see run.json stages.profile.checks for the traceback.",
                    columns=[], groups=[name], evidence={"check": name, "error": err},
                )
            )
            continue
        ctx.tables.update(res.tables)
        ctx.extras.update(res.extras)
        findings.extend(res.findings)
        status[name] = {
            "status": "ok",
            "seconds": round(time.perf_counter() - t0, 3),
            "findings": len(res.findings),
            "tables": sorted(res.tables),
            **res.info,
        }
    return findings, status
