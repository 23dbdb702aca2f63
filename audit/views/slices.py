"""Views of the Slices page: discovered slices (``slices/slices.parquet``), their separating features and
example members, as written by ``audit slices`` (docs/slices.md). Nothing here recomputes a number."""

from __future__ import annotations

import pandas as pd

from audit.rundir import RunDir

__all__ = ["slice_rows", "slice_features", "slice_examples"]

_COLS = ["slice_id", "model", "protocol", "fold", "confirmed", "n_confirm", "accuracy", "rest_accuracy", "gap",
         "ci_low", "ci_high", "q", "description"]


def slice_rows(run: RunDir, *, confirmed_only: bool = False, model: str | None = None) -> pd.DataFrame:
    """Slices, confirmed first, largest gap first (empty frame with the columns when there are none)."""
    s = run.read_table("slices/slices.parquet", required=False)
    if s is None or s.empty:
        return pd.DataFrame(columns=_COLS)
    if confirmed_only:
        s = s[s["confirmed"].astype(bool)]
    if model is not None:
        s = s[s["model"].astype(str) == str(model)]
    s = s.sort_values(["confirmed", "gap"], ascending=[False, False], kind="stable")
    return s[[c for c in _COLS if c in s.columns]].reset_index(drop=True)


def slice_features(run: RunDir, slice_id: str, top: int = 8) -> pd.DataFrame:
    """The known columns and image statistics that most separate one slice, strongest first."""
    f = run.read_table("slices/features.parquet", required=False)
    if f is None or f.empty or "slice_id" not in f.columns:
        return pd.DataFrame(columns=["column", "value", "kind", "effect"])
    f = f[f["slice_id"] == slice_id].copy()
    f["_abs"] = f["effect"].abs() / f["kind"].map({"share": 1.0, "cohen_d": 2.5}).fillna(1.0)
    return f.sort_values("_abs", ascending=False).drop(columns="_abs").head(top).reset_index(drop=True)


def slice_examples(run: RunDir, slice_id: str) -> pd.DataFrame:
    """Up to 16 members of one slice (errors first), with ``filepath`` for thumbnails."""
    e = run.read_table("slices/examples.parquet", required=False)
    if e is None or e.empty:
        return pd.DataFrame(columns=["sample_id", "filepath", "correct", "rank"])
    return e[e["slice_id"] == slice_id].sort_values("rank").reset_index(drop=True)
