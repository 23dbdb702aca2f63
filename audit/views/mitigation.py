"""Views of the "What closes the gap" page and report section: ``RUN/mitigations/summary.parquet`` and
``summary.json`` as written by ``audit mitigate`` (docs/mitigation.md). Nothing here recomputes a metric or an
interval; the verdict per method is :func:`audit.mitigate.verdict.method_summary` on the stored intervals."""

from __future__ import annotations

import math

import pandas as pd

from audit.mitigate.verdict import AVERAGE_METRICS, RULE, WORST_METRICS, method_summary
from audit.rundir import RunDir
from audit.views.tables import read

__all__ = ["MITIGATION_COLUMNS", "mitigation_view", "mitigation_diffs", "mitigation_meta", "mitigation_notes",
           "VERDICT_RULE"]

VERDICT_RULE = RULE
METHOD_ORDER = ("group_balance", "reweight", "groupdro", "augment", "dedup")
GAP_METRICS = ("gap", "gap_miou")
METRIC_ORDER = (*WORST_METRICS, *AVERAGE_METRICS, *GAP_METRICS, "in_domain_accuracy", "worst_group_dice", "ood_dice",
                "gap_dice")
MITIGATION_COLUMNS = [
    "method", "verdict", "worst_metric", "worst_by", "worst_baseline", "worst_mitigated", "worst_diff", "worst_ci_low",
    "worst_ci_high", "ood_baseline", "ood_mitigated", "ood_diff", "ood_ci_low", "ood_ci_high", "gap_diff",
    "gap_ci_low", "gap_ci_high", "n", "train_seconds", "time_vs_baseline", "sentence",
]


def _method_key(m: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m)


def mitigation_meta(run: RunDir) -> dict:
    """``mitigations/summary.json`` (groups, n_boot, per-method records), ``{}`` when absent."""
    return run.read_json("mitigations/summary.json", default={}) or {}


def _summary(run: RunDir) -> pd.DataFrame | None:
    s = read(run, "mitigations/summary.parquet")
    if s is None:
        return None
    s = s.copy()
    for c in ("method", "metric", "by"):
        if c in s.columns:
            s[c] = s[c].astype(str)
    return s


def mitigation_view(run: RunDir) -> pd.DataFrame | None:
    """One row per method: the verdict, its worst-group and held-out differences with paired intervals, the gap's
    difference and the training time (and its ratio to the baseline's). ``None`` when ``audit mitigate`` has
    not run; methods in the order of :data:`METHOD_ORDER`."""
    s = _summary(run)
    if s is None:
        return None
    meta = mitigation_meta(run)
    base_secs = _float(meta.get("baseline_train_seconds"))
    recs = meta.get("methods") or {}
    rows = []
    for method in sorted(s["method"].unique(), key=_method_key):
        m = s[s["method"] == method]
        out = {"method": method, **method_summary(m)}
        gap = m[m["metric"].isin(GAP_METRICS)]
        for k in ("diff", "ci_low", "ci_high"):
            out[f"gap_{k}"] = _float(gap.iloc[0][k]) if len(gap) else math.nan
        secs = _float((recs.get(method) or {}).get("train_seconds"))
        out["train_seconds"] = secs
        out["time_vs_baseline"] = secs / base_secs if base_secs and base_secs > 0 else math.nan
        rows.append(out)
    return pd.DataFrame(rows, columns=MITIGATION_COLUMNS)


def mitigation_diffs(run: RunDir, *, metric: str | None = None) -> pd.DataFrame | None:
    """The summary's rows (paired differences per method x metric), worst-group and held-out metrics first."""
    s = _summary(run)
    if s is None:
        return None
    if metric is not None:
        s = s[s["metric"] == metric]
    rank = {m: i for i, m in enumerate(METRIC_ORDER)}
    key = pd.DataFrame({"mr": s["metric"].map(rank).fillna(len(rank)), "md": [_method_key(m)[0] for m in s["method"]]},
                       index=s.index)
    order = key.sort_values(["mr", "md"], kind="stable").index
    return s.loc[order].reset_index(drop=True)


def mitigation_notes(run: RunDir) -> pd.DataFrame:
    """Per method, what the variant changed and why (from ``summary.json``), and the error of a failed one."""
    rows = []
    for method, rec in sorted((mitigation_meta(run).get("methods") or {}).items(), key=lambda kv: _method_key(kv[0])):
        rec = rec or {}
        rows.append({"method": str(method), "changed": _changed(str(method), rec, run.task),
                     "error": str(rec.get("error") or ""),
                     "notes": "; ".join(map(str, rec.get("notes") or []))})
    return pd.DataFrame(rows, columns=["method", "changed", "error", "notes"])


def _changed(method: str, rec: dict, task: str) -> str:
    if method in ("group_balance", "reweight", "groupdro"):
        cols = [str(c).removeprefix("attr.") for c in rec.get("groups") or []]
        cells = " x ".join((["label"] if task == "classify" else []) + cols)
        txt = f"cells: {cells} ({rec.get('cells', '?')} cells)"
        if method == "groupdro":
            txt += f", step eta {rec.get('eta', '?')}"
        if method == "reweight" and rec.get("weight_range"):
            lo, hi = rec["weight_range"][:2]
            txt += f", weights {_float(lo):.2f}-{_float(hi):.2f}"
        return txt
    if method == "augment":
        if not rec.get("augment"):
            return str(rec.get("note") or "no augmentation chosen")
        chosen = []
        for r in rec.get("reasons") or []:
            why = ", ".join(f"{b.get('title') or b.get('kind')} ({', '.join(map(str, b.get('statistics') or []))})"
                            for b in r.get("because") or [])
            chosen.append(f"{' + '.join(map(str, r.get('chosen') or []))} because of {why}")
        return "; ".join(chosen)
    if method == "dedup":
        return (f"{rec.get('rows_left_out', 0)} training rows left out (duplicates {rec.get('duplicate', 0)}, "
                f"label conflicts {rec.get('label_conflict', 0)}, across splits {rec.get('cross_split', 0)})")
    return ""


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
