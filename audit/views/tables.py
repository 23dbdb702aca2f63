"""Shared table loading for the views: finding run directories, reading (some columns of) their tables.

Every view module reads through these; none computes a metric. See :mod:`audit.views` for the whole layer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from audit.errors import RunDirError, UsageError
from audit.rundir import RunDir

__all__ = [
    "list_runs",
    "resolve_runs",
    "run_stamp",
    "read",
    "read_manifest_columns",
    "manifest_rows",
    "has_model",
    "options",
    "where_equal",
    "to_float",
]

_MAX_RUNS = 200


# ------------------------------------------------------------------------------------------------ runs
def _is_run(p: Path) -> bool:
    return (p / "run.json").is_file()


def list_runs(folder: Path | str, *, depth: int = 2) -> list[Path]:
    """Run directories under ``folder`` (itself included), at most ``depth`` levels down, sorted by path.

    A run directory's own subfolders are not searched (they hold tables, not runs).
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    found: list[Path] = []
    frontier = [root]
    for _ in range(depth + 1):
        nxt: list[Path] = []
        for d in frontier:
            if _is_run(d):
                found.append(d)
                continue
            try:
                children = sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
            except OSError:
                continue
            nxt.extend(children)
        frontier = nxt
        if len(found) >= _MAX_RUNS:
            break
    return sorted(found)[:_MAX_RUNS]


def resolve_runs(path: Path | str) -> tuple[list[Path], Path]:
    """The runs the sidebar offers for ``path`` and the one selected first.

    ``path`` is a run directory (its sibling runs are offered too) or a folder holding run directories.
    Raises :class:`~audit.errors.UsageError` when neither.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"run directory {p} does not exist; create one with `audit profile DATA --out {p}`")
    if _is_run(p):
        RunDir.open(p).info  # noqa: B018 - raises a clear error if run.json is damaged
        runs = list_runs(p.parent, depth=1) if p.parent != p else [p]
        runs = [r for r in runs if r.resolve() != p.resolve()]
        return sorted([p, *runs]), p
    runs = list_runs(p)
    if not runs:
        raise UsageError(
            f"{p} is not a run directory (no run.json) and holds none; create one with `audit profile DATA --out RUN`"
        )
    return runs, runs[0]


def run_stamp(run: RunDir | Path | str) -> float:
    """A cache key part that changes whenever a stage finishes (the mtime of ``run.json``)."""
    path = run.path if isinstance(run, RunDir) else Path(run)
    try:
        return os.stat(path / "run.json").st_mtime
    except OSError:
        return 0.0


def read(run: RunDir, rel: str, *, columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """A table of the run, or ``None`` when the stage that writes it has not run.

    Asking for ``columns`` reads only those present (cheap on large tables). A damaged table raises
    :class:`~audit.errors.RunDirError` with a one-line message.
    """
    p = run.file(rel)
    if not p.exists():
        return None
    cols = None
    if columns is not None:
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(p).names)
        except Exception as e:  # pyarrow raises several types for damaged files
            raise RunDirError(f"cannot read {p}: {e}") from None
        cols = [c for c in columns if c in names]
    return run.read_table(rel, columns=cols, required=False)


def read_manifest_columns(run: RunDir, columns: Sequence[str]) -> pd.DataFrame:
    """Only some columns of the manifest (string dtypes, like :meth:`RunDir.manifest`)."""
    df = read(run, "manifest.parquet", columns=list(dict.fromkeys(["sample_id", *columns])))
    if df is None:
        raise RunDirError(f"{run.path} has no manifest.parquet; run `audit profile DATA --out {run.path}` first")
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype("string")
    return df


def has_model(run: RunDir) -> bool:
    """Whether the run holds model results (predictions or metrics tables)."""
    return run.has("predictions.parquet") or run.has("metrics/groups.parquet")


def manifest_rows(run: RunDir, ids: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Manifest rows for a few sample ids (reads only the needed columns; filters with pyarrow)."""
    import pyarrow.dataset as pads

    path = run.file("manifest.parquet")
    try:
        dataset = pads.dataset(path, format="parquet")
        names = set(dataset.schema.names)
        cols = ["sample_id", *[c for c in columns if c in names and c != "sample_id"]]
        table = dataset.to_table(columns=cols, filter=pads.field("sample_id").isin(list(map(str, ids))))
        df = table.to_pandas()
    except Exception as e:  # damaged or missing manifest: one clear line
        raise RunDirError(f"cannot read {path}: {e}") from None
    for c in df.columns:
        df[c] = df[c].astype("string")
    return df


def options(df: pd.DataFrame | None, column: str, *, first: Sequence[str] = ()) -> list[str]:
    """Distinct values of ``column`` as strings, the preferred ``first`` ones leading (for select boxes)."""
    if df is None or column not in df.columns:
        return []
    vals = sorted(str(v) for v in df[column].dropna().unique())
    lead = [v for v in first if v in vals]
    return lead + [v for v in vals if v not in lead]


def where_equal(df: pd.DataFrame, **filters: Any) -> pd.DataFrame:
    for col, val in filters.items():
        if val is None or col not in df.columns:
            continue
        df = df[df[col].astype("string") == str(val)]
    return df


def to_float(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f
