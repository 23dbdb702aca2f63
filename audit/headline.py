"""Headline numbers of a run: the few facts a reader needs first.

Shared by the static report, ``audit check`` summaries and the dashboard's overview page. Reads only the
tables of the run directory (see docs/formats.md); every part is optional, so a profile-only run gives
``None`` for the model fields and a run with a damaged table still gives the rest (the problem is listed
under ``"problems"``).

Example::

    from audit.headline import headline
    h = headline(RunDir.open("runs/demo/classify"))
    h["worst_group"]   # {"metric": "accuracy", "by": "attr.background", "group": "warm", "value": 0.61, ...}
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from audit.errors import AuditError
from audit.log import get_logger
from audit.rundir import RunDir

_log = get_logger(__name__)

__all__ = ["headline", "prefer", "primary_metric", "read_optional", "PRIMARY_METRICS", "SCOPE_PREFERENCE"]

# The metric a headline talks about, by task, in order of preference (names compared case-insensitively).
PRIMARY_METRICS: dict[str, tuple[str, ...]] = {
    "classify": ("accuracy", "acc", "balanced_accuracy", "macro_f1"),
    # fg_dice is only in the defaults of binary tasks, where it is the metric the field reports
    "segment": ("fg_dice", "miou", "mean_iou", "fg_iou", "iou", "pixel_acc", "dice"),
}
# Out-of-domain numbers are what the audit is about; fall back to pooled, then in-domain.
SCOPE_PREFERENCE = ("ood", "all", "id")
# Association statistics whose value is an effect size in [0, 1].
_ASSOC_STATS = ("cramers_v",)


def read_optional(run: RunDir, rel: str, problems: list[str] | None = None) -> pd.DataFrame | None:
    """Read a table of the run, or ``None`` when it is absent or damaged (the reason goes to ``problems``)."""
    try:
        df = run.read_table(rel, required=False)
    except AuditError as e:
        if problems is not None:
            problems.append(str(e))
        return None
    return df


def primary_metric(metrics: pd.Series | list[str], task: str) -> str | None:
    """The metric name (as spelled in the table) a headline should use for ``task``, or ``None``."""
    names = [str(m) for m in pd.unique(pd.Series(list(metrics), dtype="object").dropna())]
    lower = {m.lower(): m for m in names}
    for cand in PRIMARY_METRICS.get(task, ()) + PRIMARY_METRICS["classify"] + PRIMARY_METRICS["segment"]:
        if cand in lower:
            return lower[cand]
    return None


def _num(v: Any) -> float | None:
    """A plain float, or None for missing / NaN (JSON-safe)."""
    if v is None or v is pd.NA:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def _int(v: Any) -> int | None:
    f = _num(v)
    return None if f is None else int(f)


def _str(v: Any) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v)


def prefer(df: pd.DataFrame, col: str, order: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """Keep the rows of the most preferred value of ``col`` present (all rows if the column is absent)."""
    if col not in df.columns or df.empty:
        return df
    present = set(df[col].dropna().astype(str))
    for v in order:
        if v in present:
            return df[df[col].astype(str) == v]
    return df


def _worst_group(groups: pd.DataFrame, task: str) -> tuple[dict | None, dict | None, int]:
    """(worst group, overall, number of groups with insufficient evidence) for the primary metric."""
    if groups is None or groups.empty or "metric" not in groups.columns:
        return None, None, 0
    metric = primary_metric(groups["metric"], task)
    if metric is None:
        return None, None, 0
    g = groups[groups["metric"].astype(str) == metric]
    g = prefer(g, "fold", ("all",))
    g = prefer(g, "scope", SCOPE_PREFERENCE)
    status = g["status"].astype(str) if "status" in g.columns else pd.Series("ok", index=g.index)
    n_insufficient = int((status == "insufficient_evidence").sum())
    by = g["by"].astype(str) if "by" in g.columns else pd.Series("overall", index=g.index)
    overall_rows = g[by == "overall"]
    cand = g[(by != "overall") & (status == "ok")]
    cand = cand[pd.to_numeric(cand["value"], errors="coerce").notna()]

    def row_dict(r: pd.Series) -> dict:
        return {
            "metric": metric,
            "model": _str(r.get("model")),
            "protocol": _str(r.get("protocol")),
            "scope": _str(r.get("scope")),
            "by": _str(r.get("by")),
            "group": _str(r.get("group")),
            "value": _num(r.get("value")),
            "ci_low": _num(r.get("ci_low")),
            "ci_high": _num(r.get("ci_high")),
            "n": _int(r.get("n")),
        }

    worst = None
    if not cand.empty:
        c = cand.assign(
            _v=pd.to_numeric(cand["value"], errors="coerce"), _n=pd.to_numeric(cand.get("n"), errors="coerce")
        )
        # lowest value; among ties the larger group (more evidence), then a stable order
        c = c.sort_values(["_v", "_n", "by", "group"], ascending=[True, False, True, True], kind="mergesort")
        worst = row_dict(c.iloc[0])
    overall = None
    if not overall_rows.empty:
        o = overall_rows.assign(_v=pd.to_numeric(overall_rows["value"], errors="coerce")).sort_values(
            "_v", kind="mergesort"
        )
        overall = row_dict(o.iloc[0])
    return worst, overall, n_insufficient


def _largest_gap(gen: pd.DataFrame | None, task: str) -> dict | None:
    if gen is None or gen.empty or "gap" not in gen.columns:
        return None
    g = gen
    if "metric" in g.columns:
        metric = primary_metric(g["metric"], task)
        if metric is not None:
            g = g[g["metric"].astype(str) == metric]
    g = g.assign(_gap=pd.to_numeric(g["gap"], errors="coerce")).dropna(subset=["_gap"])
    if g.empty:
        return None
    r = g.sort_values("_gap", ascending=False, kind="mergesort").iloc[0]
    return {
        "metric": _str(r.get("metric")),
        "model": _str(r.get("model")),
        "protocol": _str(r.get("protocol")),
        "fold": _str(r.get("fold")),
        "train_domains": _str(r.get("train_domains")),
        "test_domain": _str(r.get("test_domain")),
        "in_domain": _num(r.get("in_domain")),
        "out_domain": _num(r.get("out_domain")),
        "gap": _num(r.get("gap")),
        "ci_low": _num(r.get("gap_ci_low")),
        "ci_high": _num(r.get("gap_ci_high")),
        "n_in": _int(r.get("n_in")),
        "n_out": _int(r.get("n_out")),
    }


def _largest_fairness(fair: pd.DataFrame | None) -> dict | None:
    """The largest difference-type fairness gap (dp_diff, eo_diff, eop_diff)."""
    if fair is None or fair.empty or "metric" not in fair.columns:
        return None
    f = fair[fair["metric"].astype(str).str.endswith("_diff")]
    # Fairness is about attributes: prefer groupings without the domain (domain gaps have their own headline),
    # and rank by the interval's lower bound so a 1.0 on two tiny groups with CI [0, 1] does not headline.
    if "attribute" in f.columns:
        attrs_only = ~f["attribute"].astype(str).str.contains(r"\bdomain\b", regex=True)
        if attrs_only.any():
            f = f[attrs_only]
    if "scope" in f.columns and (f["scope"].astype(str) == "ood").any():
        f = f[f["scope"].astype(str) == "ood"]
    f = f.assign(_v=pd.to_numeric(f["value"], errors="coerce")).dropna(subset=["_v"])
    if f.empty:
        return None
    low = pd.to_numeric(f["ci_low"], errors="coerce") if "ci_low" in f.columns else f["_v"]
    f = f.assign(_lo=low.fillna(f["_v"]))
    r = f.sort_values(["_lo", "_v"], ascending=False, kind="mergesort").iloc[0]
    return {
        "metric": _str(r.get("metric")),
        "model": _str(r.get("model")),
        "attribute": _str(r.get("attribute")),
        "class": _str(r.get("class")),
        "value": _num(r.get("value")),
        "ci_low": _num(r.get("ci_low")),
        "ci_high": _num(r.get("ci_high")),
        "n": _int(r.get("n")),
    }


def _biggest_association(assoc: pd.DataFrame | None) -> dict | None:
    if assoc is None or assoc.empty or "value" not in assoc.columns:
        return None
    a = assoc
    if "stat" in a.columns:
        a = a[a["stat"].astype(str).isin(_ASSOC_STATS)] if a["stat"].astype(str).isin(_ASSOC_STATS).any() else a
    a = a.assign(_v=pd.to_numeric(a["value"], errors="coerce")).dropna(subset=["_v"])
    if a.empty:
        return None
    # whole-dataset rows first: a within-domain association is a detail of the dataset-wide one
    if "within" in a.columns and a["within"].isna().any():
        a = a[a["within"].isna()]
    r = a.sort_values("_v", ascending=False, kind="mergesort").iloc[0]
    return {
        "a": _str(r.get("a")),
        "b": _str(r.get("b")),
        "within": _str(r.get("within")),
        "stat": _str(r.get("stat")),
        "value": _num(r.get("value")),
        "ci_low": _num(r.get("ci_low")),
        "ci_high": _num(r.get("ci_high")),
        "q": _num(r.get("q")),
        "n": _int(r.get("n")),
    }


def _models(pred_models: list[str], *tables: pd.DataFrame | None) -> list[str]:
    out = set(pred_models)
    for t in tables:
        if t is not None and "model" in t.columns:
            out.update(str(m) for m in t["model"].dropna().unique())
    return sorted(out)


#: classes count as imbalanced (balanced accuracy shown next to accuracy) when the largest is this many times the
#: smallest
IMBALANCE_RATIO = 1.5


def _balanced_overall(groups: pd.DataFrame | None, overall: dict | None, manifest: pd.DataFrame | None) -> dict | None:
    """Balanced accuracy for the row of the overall accuracy, when the classes are imbalanced (else None)."""
    if groups is None or not overall or overall.get("metric") != "accuracy" or manifest is None \
            or "label" not in manifest.columns:
        return None
    counts = manifest["label"].dropna().astype(str).value_counts()
    if len(counts) < 2 or counts.iloc[0] < IMBALANCE_RATIO * counts.iloc[-1]:
        return None
    g = groups[(groups["metric"].astype(str) == "balanced_accuracy") & (groups["by"].astype(str) == "overall")]
    for k in ("model", "protocol", "scope"):
        if overall.get(k) is not None and k in g.columns:
            g = g[g[k].astype(str) == overall[k]]
    g = prefer(g, "fold", ("all",))
    if g.empty:
        return None
    r = g.iloc[0]
    return {"metric": "balanced_accuracy", "value": _num(r.get("value")), "ci_low": _num(r.get("ci_low")),
            "ci_high": _num(r.get("ci_high")), "n": _int(r.get("n")),
            "class_ratio": float(counts.iloc[0] / counts.iloc[-1])}


def _degenerate(run: RunDir, problems: list[str]) -> list[dict]:
    """Models that did not beat a trivial baseline (metrics/sanity.parquet), with the reason."""
    s = read_optional(run, "metrics/sanity.parquet", problems)
    if s is None or s.empty or "status" not in s.columns:
        return []
    bad = s[s["status"].astype(str) == "degenerate"]
    return [{"model": str(m), "reason": _str(g["reason"].iloc[0]) if "reason" in g.columns else None,
             "folds": sorted(g["fold"].astype(str).unique().tolist()) if "fold" in g.columns else []}
            for m, g in bad.groupby(bad["model"].astype(str), sort=True)]


def _interpretable(df: pd.DataFrame | None, bad: set[str], *, keep_overall: bool = False) -> pd.DataFrame | None:
    """``df`` without the rows of degenerate models (issue 25: never report a gap on a model that learned nothing);
    ``keep_overall`` keeps their ``by == "overall"`` rows (the overall number is a fact, not a gap)."""
    if df is None or not bad or "model" not in df.columns:
        return df
    drop = df["model"].astype(str).isin(bad)
    if keep_overall and "by" in df.columns:
        drop &= df["by"].astype(str) != "overall"
    return df[~drop.to_numpy()]


def _finding_counts(run: RunDir, problems: list[str]) -> dict:
    try:
        findings = run.findings()
    except AuditError as e:
        problems.append(str(e))
        findings = []
    counts = {"critical": 0, "warning": 0, "info": 0}
    for f in findings:
        sev = f.get("severity")
        if sev in counts:
            counts[sev] += 1
    counts["total"] = len(findings)
    return counts


def headline(run: RunDir) -> dict:
    """The headline numbers of a run.

    Parameters
    ----------
    run
        An open run directory.

    Returns
    -------
    dict
        JSON-safe (NaN -> None) dict with keys ``run``, ``task``, ``n``, ``domains``, ``n_domains``, ``classes``,
        ``n_classes``, ``attributes``, ``models``, ``metric``, ``overall``, ``worst_group``,
        ``n_insufficient_groups``, ``largest_gap``, ``largest_fairness_gap``, ``biggest_association``,
        ``n_unreadable``, ``findings`` (counts by severity + ``total``), ``stages`` (name -> status),
        ``overall_balanced`` (balanced accuracy beside the overall accuracy when classes are imbalanced),
        ``degenerate_models`` (models that did not beat a trivial baseline: their gaps are not interpretable, so
        ``worst_group``, ``largest_gap`` and ``largest_fairness_gap`` never come from them; ``withheld_models`` names
        them) and ``problems`` (tables that could not be read). Model fields are ``None`` (or empty) for a
        profile-only run. Worst group and overall prefer pooled folds (``fold == "all"``) and
        out-of-domain scope; only groups with status ``ok`` (n >= min_n) compete for the worst group.
    """
    problems: list[str] = []
    try:
        info = run.info
    except AuditError as e:
        problems.append(str(e))
        info = {}
    ds = info.get("dataset", {}) or {}
    task = ds.get("task") or "classify"
    try:
        manifest = run.manifest()
    except AuditError as e:
        problems.append(str(e))
        manifest = None
    domains: list[str] = []
    attributes: list[str] = list(ds.get("roles", {}).get("attrs", []) or [])
    n = ds.get("n")
    if manifest is not None:
        n = int(len(manifest))
        if "domain" in manifest.columns:
            domains = sorted(str(d) for d in manifest["domain"].dropna().unique())
        attributes = [str(c) for c in manifest.columns if str(c).startswith("attr.")]
    classes = [str(c) for c in ds.get("classes", []) or []]

    images = read_optional(run, "profile/images.parquet", problems)
    n_unreadable = None
    if images is not None and "readable" in images.columns:
        n_unreadable = int((~images["readable"].fillna(False).astype(bool)).sum())

    pred_models: list[str] = []
    if run.has("predictions.parquet"):
        try:
            pm = run.read_table("predictions.parquet", columns=["model"])
            pred_models = sorted(str(m) for m in pm["model"].dropna().unique())
        except AuditError as e:
            problems.append(str(e))
        except Exception as e:  # a predictions file without a model column: not worth failing the headline
            _log.debug("headline: no model names from %s/predictions.parquet (%s: %s)", run.path, type(e).__name__, e)
    groups = read_optional(run, "metrics/groups.parquet", problems)
    gen = read_optional(run, "metrics/generalization.parquet", problems)
    fair = read_optional(run, "metrics/fairness.parquet", problems)
    assoc = read_optional(run, "profile/associations.parquet", problems)

    degenerate = _degenerate(run, problems)
    bad = {d["model"] for d in degenerate}
    worst, overall, n_insuff = _worst_group(_interpretable(groups, bad, keep_overall=True), task)
    metric = (worst or overall or {}).get("metric")

    counts = _finding_counts(run, problems)

    stages = {k: v.get("status") for k, v in run.stages().items()}
    return {
        "run": str(run.path),
        "task": task,
        "n": n,
        "domains": domains,
        "n_domains": len(domains),
        "classes": classes,
        "n_classes": len(classes),
        "attributes": attributes,
        "models": _models(pred_models, groups, gen, fair),
        "metric": metric,
        "overall": overall,
        "worst_group": worst,
        "n_insufficient_groups": n_insuff if groups is not None else None,
        "largest_gap": _largest_gap(_interpretable(gen, bad), task),
        "largest_fairness_gap": _largest_fairness(_interpretable(fair, bad)),
        "biggest_association": _biggest_association(assoc),
        "n_unreadable": n_unreadable,
        "findings": counts,
        "stages": stages,
        "overall_balanced": _balanced_overall(groups, overall, manifest),
        "degenerate_models": degenerate,
        "withheld_models": sorted(bad),
        "problems": problems,
    }
