"""Views of the performance, generalization and calibration pages: metric tables as written, sorted and selected.

Metric direction (which end of a sort is worst) comes from :mod:`audit.core.directions`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from audit.core.directions import higher_is_better
from audit.views.tables import where_equal

__all__ = ["higher_is_better", "group_bars", "generalization_rows", "transfer_matrix", "calibration_curves"]


def group_bars(
    groups: pd.DataFrame,
    *,
    by: str,
    metric: str,
    model: str | None = None,
    protocol: str | None = None,
    fold: str | None = None,
    scope: str | None = None,
    top: int | None = None,
) -> pd.DataFrame:
    """Per-group rows of one grouping and metric, sorted worst-first (groups with a value before empty ones).

    Adds ``label`` (group with n, for the chart axis), ``evidence`` (``ok``, ``insufficient`` or ``empty``)
    and ``rank``. Values and intervals are as written by the metrics stage.
    """
    g = where_equal(groups, model=model, protocol=protocol, fold=fold, scope=scope, by=by, metric=metric).copy()
    g["value"] = pd.to_numeric(g["value"], errors="coerce")
    asc = higher_is_better(metric)
    g["_missing"] = g["value"].isna()
    g = g.sort_values(["_missing", "value", "group"], ascending=[True, asc, True], kind="mergesort").drop(
        columns="_missing"
    )
    status = g["status"].astype(str) if "status" in g.columns else pd.Series("ok", index=g.index)
    g["evidence"] = np.where(
        g["value"].isna() | (status == "empty"),
        "empty",
        np.where(status == "insufficient_evidence", "insufficient", "ok"),
    )
    g["group"] = g["group"].astype("string").fillna("(missing)")
    n = pd.to_numeric(g["n"], errors="coerce")
    g["label"] = [
        f"{grp}  (n={int(k):,})" if pd.notna(k) else f"{grp}  (n=?)" for grp, k in zip(g["group"], n, strict=True)
    ]
    g["rank"] = np.arange(1, len(g) + 1)
    if top is not None:
        g = g.head(top)
    return g.reset_index(drop=True)


def generalization_rows(
    gen: pd.DataFrame, *, model: str | None = None, protocol: str | None = None, metric: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """In-domain vs out-of-domain per held-out domain, largest gap first.

    Returns ``(wide, long)``: the selected rows as written, and a long form for a chart with one row per
    (held-out domain, ``kind`` = in-domain / out-of-domain) carrying value, interval and n.
    """
    g = where_equal(gen, model=model, protocol=protocol, metric=metric).copy()
    for c in (
        "in_domain",
        "out_domain",
        "gap",
        "in_ci_low",
        "in_ci_high",
        "out_ci_low",
        "out_ci_high",
        "gap_ci_low",
        "gap_ci_high",
    ):
        if c in g.columns:
            g[c] = pd.to_numeric(g[c], errors="coerce")
    # per-domain rows by gap, largest first; a pooled row (test_domain "all") last
    g["_pooled"] = g["test_domain"].astype(str) == "all"
    g = g.sort_values(["_pooled", "gap", "test_domain"], ascending=[True, False, True], kind="mergesort").drop(
        columns="_pooled"
    )
    g = g.reset_index(drop=True)
    long = []
    for _, r in g.iterrows():
        for kind, val, lo, hi, n in (
            ("in-domain", r.get("in_domain"), r.get("in_ci_low"), r.get("in_ci_high"), r.get("n_in")),
            ("out-of-domain", r.get("out_domain"), r.get("out_ci_low"), r.get("out_ci_high"), r.get("n_out")),
        ):
            long.append(
                {
                    "test_domain": str(r.get("test_domain")),
                    "fold": str(r.get("fold")),
                    "kind": kind,
                    "value": val,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                }
            )
    return g, pd.DataFrame(long, columns=["test_domain", "fold", "kind", "value", "ci_low", "ci_high", "n"])


def transfer_matrix(transfer: pd.DataFrame, *, model: str | None = None, metric: str | None = None) -> pd.DataFrame:
    """Train-domain x test-domain cells (value, interval, n) of the transfer protocol."""
    t = where_equal(transfer, model=model, metric=metric).copy()
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    t["diagonal"] = t["train_domain"].astype(str) == t["test_domain"].astype(str)
    return t.reset_index(drop=True)


def calibration_curves(
    cal: pd.DataFrame,
    *,
    model: str | None = None,
    protocol: str | None = None,
    by: str | None = None,
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Reliability-curve points (mean confidence vs accuracy per bin) for the selected groups; empty bins dropped."""
    c = where_equal(cal, model=model, protocol=protocol, by=by).copy()
    if groups is not None:
        c = c[c["group"].astype(str).isin(list(groups))]
    c["count"] = pd.to_numeric(c["count"], errors="coerce").fillna(0).astype(int)
    c = c[c["count"] > 0]
    c["group"] = c["group"].astype("string").fillna("(missing)")
    return c.sort_values(["group", "bin"], kind="mergesort").reset_index(drop=True)
