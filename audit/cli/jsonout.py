"""``--json``: one JSON document on stdout, everything else a command prints on stderr.

The documents hold what the Python objects hold (``audit.Run``: path, stages, findings; ``CheckResult``: passed,
exit_code, failures), with NaN and infinities as ``null`` so that every document is strict JSON. A command that
fails still prints one document, ``{"error": "...", "exit_code": N}``, and exits with its usual code.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

__all__ = ["json_command", "stdout_to_stderr", "jsonable", "dumps", "records", "run_document", "check_document",
           "policy_document", "findings_document", "SEVERITY_ORDER"]

#: most serious first; ``--severity warning`` keeps critical and warning
SEVERITY_ORDER = ("critical", "warning", "info")


def json_command(call: Callable[[], dict | None], *, last_error: Callable[[], str | None]) -> None:
    """Run a command with stdout sent to stderr, then print the document it returned (or its error) on stdout.

    A document with a non-zero ``exit_code`` (``audit check``'s verdict) exits with it, as does a failed command;
    ``last_error`` gives the one-line message of the failure.
    """
    real = sys.stdout
    doc, code = None, 0
    with stdout_to_stderr():
        try:
            doc = call()
        except typer.Exit as e:
            code = int(e.exit_code or 0)
    if doc is None:
        doc = {"error": last_error(), "exit_code": code}
    real.write(dumps(doc) + "\n")
    real.flush()
    code = code or int(doc.get("exit_code") or 0)
    if code:
        raise typer.Exit(code)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send whatever is written to stdout to stderr: Python's ``sys.stdout`` and, when that is the process's own
    stdout, file descriptor 1 too (so that child processes such as torchrun's workers cannot write there)."""
    real = sys.stdout
    try:
        fd = real.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's in-memory stream
        fd = None
    saved = None
    if fd == 1:
        real.flush()
        sys.stderr.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        if saved is not None:
            with contextlib.suppress(Exception):
                real.flush()
            os.dup2(saved, 1)
            os.close(saved)


def jsonable(v: Any) -> Any:
    """``v`` as plain JSON values: NaN, infinities, ``pd.NA`` and ``NaT`` become None; numpy scalars and arrays,
    tuples, sets, paths and timestamps become numbers, lists and strings."""
    import numpy as np
    import pandas as pd

    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, int):
        return v
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [jsonable(x) for x in (sorted(v, key=str) if isinstance(v, (set, frozenset)) else v)]
    if isinstance(v, np.ndarray):
        return [jsonable(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return jsonable(v.item())
    if isinstance(v, pd.DataFrame):
        return records(v)
    if isinstance(v, (pd.Timestamp, _dt.datetime, _dt.date)):
        return None if pd.isna(v) else v.isoformat()
    if isinstance(v, Path):
        return str(v)
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


def dumps(doc: Any) -> str:
    """Strict JSON (``allow_nan=False``) of :func:`jsonable` ``(doc)``."""
    return json.dumps(jsonable(doc), allow_nan=False, ensure_ascii=False)


def records(df) -> list[dict]:
    """The rows of a DataFrame as JSON records (missing values as None)."""
    return [jsonable(r) for r in df.to_dict(orient="records")]


def _headline(rd) -> dict | None:
    from audit.errors import AuditError
    from audit.headline import headline

    try:
        return headline(rd)
    except AuditError:
        return None


def run_document(run_dir: Path, *, command: str) -> dict:
    """What ``audit COMMAND --json`` prints for a stage: the run as ``audit.Run`` reads it."""
    from audit.api.run import Run
    from audit.rundir import RunDir

    run = Run(run_dir)
    return {
        "command": command,
        "path": str(run.path),
        "dataset": run.info.get("dataset", {}),
        "stages": run.stages,
        "findings": records(run.findings),
        "headline": _headline(RunDir.open(run.path)),
        "tables": run.tables(),
    }


def findings_document(run_dir: Path, *, severity: str | None = None, checks: list[str] | None = None) -> dict:
    """``audit findings RUN --json``: the run's findings (``audit.Run.findings``), filtered."""
    from audit.api.run import Run

    run = Run(run_dir)
    df = filter_findings(run.findings, severity=severity, checks=checks)
    return {"command": "findings", "path": str(run.path), "n": len(df), "findings": records(df)}


def filter_findings(df, *, severity: str | None = None, checks: list[str] | None = None):
    """Rows of ``audit.Run.findings`` at ``severity`` or above and of the given checks (kinds)."""
    if severity is not None:
        keep = SEVERITY_ORDER[: SEVERITY_ORDER.index(severity) + 1]
        df = df[df["severity"].isin(keep)]
    if checks:
        df = df[df["check"].isin(checks)]
    return df.reset_index(drop=True)


def check_document(result, *, run_dir: Path, policy: Path) -> dict:
    """``audit check --json``: the verdict as ``audit.check`` returns it (``CheckResult``)."""
    return {
        "command": "check",
        "path": str(run_dir),
        "policy": str(policy),
        "passed": result.passed,
        "exit_code": result.exit_code,
        "error": result.error,
        "warnings": list(result.warnings),
        "failures": records(result.failures),
        "rules": records(result.rules),
        "outputs": dict(result.outputs),
    }


def policy_document(path: Path, *, run_dir: Path) -> dict:
    """``audit init-policy --json``: the policy written and its rules."""
    from audit.check.policy import load_policy

    pol = load_policy(path)
    rules = [{"id": r.id, "check": r.check, "severity": r.severity, "op": r.op, "threshold": r.threshold,
              "bound": r.bound, "min_n": r.min_n, "line": r.line} for r in pol.rules]
    return {"command": "init-policy", "path": str(run_dir), "policy": str(path), "rules": rules,
            "next": f"audit check {run_dir} --policy {path}"}
