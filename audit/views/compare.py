"""Views of the compare page: two runs' stored numbers side by side, with the interval of each difference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from audit.core.directions import higher_is_better
from audit.views.tables import to_float, where_equal

__all__ = ["compare_groups", "compare_headline"]

_KEYS = ["model", "protocol", "fold", "scope", "by", "group", "metric"]


def _mover(d: pd.Series, a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Interval of b - a from each side's own 95% interval (MOVER, Newcombe / Zou-Donner).

    Assumes independent estimates; when both runs evaluate the same samples the estimates are positively
    correlated and this interval is conservative (too wide), never too narrow.
    """
    va, la, ua = (pd.to_numeric(a[c], errors="coerce") for c in ("value", "ci_low", "ci_high"))
    vb, lb, ub = (pd.to_numeric(b[c], errors="coerce") for c in ("value", "ci_low", "ci_high"))
    lo = d - np.sqrt((vb - lb) ** 2 + (ua - va) ** 2)
    hi = d + np.sqrt((ub - vb) ** 2 + (va - la) ** 2)
    return lo, hi


def compare_groups(
    a: pd.DataFrame, b: pd.DataFrame, *, metric: str | None = None, by: str | None = None
) -> pd.DataFrame:
    """Per-group numbers of two runs side by side with the difference (B - A) and its interval.

    Rows present in only one run are kept (the other side NaN), so nothing disappears silently.
    """
    keys = [k for k in _KEYS if k in a.columns and k in b.columns]
    sel_a, sel_b = where_equal(a, metric=metric, by=by), where_equal(b, metric=metric, by=by)
    cols = ["value", "ci_low", "ci_high", "n", "status"]
    sa = sel_a[keys + [c for c in cols if c in sel_a.columns]].astype({k: "string" for k in keys})
    sb = sel_b[keys + [c for c in cols if c in sel_b.columns]].astype({k: "string" for k in keys})
    m = sa.merge(sb, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    va, vb = pd.to_numeric(m["value_a"], errors="coerce"), pd.to_numeric(m["value_b"], errors="coerce")
    m["delta"] = vb - va

    def side(s: str) -> pd.DataFrame:
        return m[[f"{c}_{s}" for c in ("value", "ci_low", "ci_high")]].set_axis(["value", "ci_low", "ci_high"], axis=1)

    m["delta_ci_low"], m["delta_ci_high"] = _mover(m["delta"], side("a"), side("b"))
    m["present"] = m.pop("_merge").map({"both": "both", "left_only": "A only", "right_only": "B only"}).astype(str)
    up = metric is None or higher_is_better(metric)
    lo, hi = m["delta_ci_low"], m["delta_ci_high"]
    # the interval excludes 0: a real change; otherwise unclear
    better, worse = (lo > 0, hi < 0) if up else (hi < 0, lo > 0)
    m["change"] = np.select([m["delta"].isna(), better, worse], ["n/a", "better", "worse"], default="unclear")
    return m.sort_values(["delta", *keys], kind="mergesort", na_position="last").reset_index(drop=True)


def compare_headline(ha: dict, hb: dict) -> pd.DataFrame:
    """Headline numbers of two runs (from :func:`overview`) side by side: B - A, with intervals where stored.

    The interval of the difference combines both runs' intervals (MOVER, see :func:`compare_groups`); counts
    (samples, findings, unreadable files) have none. ``A_what`` / ``B_what`` say which group, domain or pair
    each number is about, since the worst group of one run need not be the other's. ``A_unit`` / ``B_unit``
    name each side's metric; where they differ there is no difference (NaN). ``kind`` is ``count`` or ``metric``.
    """
    rows = []

    def add(
        name: str, a: dict, b: dict, field: str, ua: str = "", ub: str = "", what=lambda d: "", kind: str = "metric"
    ) -> None:
        va, vb = to_float(a.get(field)), to_float(b.get(field))
        row = {
            "number": name,
            "kind": kind,
            "unit": ua if ua == ub or not ub else ub if not ua else f"{ua} / {ub}",
            "A_unit": ua,
            "B_unit": ub,
            "A": va,
            "A_ci_low": to_float(a.get("ci_low")),
            "A_ci_high": to_float(a.get("ci_high")),
            "A_what": what(a),
            "B": vb,
            "B_ci_low": to_float(b.get("ci_low")),
            "B_ci_high": to_float(b.get("ci_high")),
            # two different metrics have no difference
            "B_what": what(b),
            "delta": vb - va if not (ua and ub and ua != ub) else math.nan,
        }
        rows.append(row)

    def count(name: str, a: Any, b: Any) -> None:
        add(name, {"v": a}, {"v": b}, "v", kind="count")

    fa, fb = ha.get("findings") or {}, hb.get("findings") or {}
    count("samples", ha.get("n"), hb.get("n"))
    count("findings (critical)", fa.get("critical"), fb.get("critical"))
    count("findings (warning)", fa.get("warning"), fb.get("warning"))
    count("unreadable files", ha.get("n_unreadable"), hb.get("n_unreadable"))
    for key, label, field, what in (
        ("overall", "overall", "value", lambda d: ""),
        ("worst_group", "worst group", "value", lambda d: f"{d.get('by')} = {d.get('group')}" if d else ""),
        ("largest_gap", "largest generalization gap", "gap", lambda d: f"held out {d.get('test_domain')}" if d else ""),
        (
            "largest_fairness_gap",
            "largest fairness gap",
            "value",
            lambda d: f"{d.get('metric')} on {d.get('attribute')}" if d else "",
        ),
        ("biggest_association", "biggest association", "value", lambda d: f"{d.get('a')} ~ {d.get('b')}" if d else ""),
    ):
        a, b = ha.get(key) or {}, hb.get(key) or {}
        add(
            label,
            a,
            b,
            field,
            str(a.get("metric") or a.get("stat") or ""),
            str(b.get("metric") or b.get("stat") or ""),
            what,
        )
    df = pd.DataFrame(rows)
    lo, hi = _mover(
        df["delta"],
        df[["A", "A_ci_low", "A_ci_high"]].set_axis(["value", "ci_low", "ci_high"], axis=1),
        df[["B", "B_ci_low", "B_ci_high"]].set_axis(["value", "ci_low", "ci_high"], axis=1),
    )
    df["delta_ci_low"], df["delta_ci_high"] = lo, hi
    return df[
        [
            "number",
            "kind",
            "unit",
            "A_unit",
            "B_unit",
            "A",
            "A_ci_low",
            "A_ci_high",
            "A_what",
            "B",
            "B_ci_low",
            "B_ci_high",
            "B_what",
            "delta",
            "delta_ci_low",
            "delta_ci_high",
        ]
    ]
