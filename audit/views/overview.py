"""Views of the overview page: the headline, the stages and the ranked findings of one run."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from audit.errors import AuditError
from audit.progress import format_eta
from audit.rundir import RunDir
from audit.views.tables import read, to_float

__all__ = ["PAGES", "FINDING_PAGE", "stage_table", "stage_note", "overview", "findings_frame"]

# Page keys of the dashboard, in navigation order.
PAGES = ("overview", "profile", "performance", "generalization", "calibration", "gallery", "slices", "mitigation",
         "compare")

# Which page shows the evidence of a finding kind.
FINDING_PAGE: dict[str, str] = {
    **dict.fromkeys(
        (
            "class_imbalance",
            "attribute_imbalance",
            "intersection_underrepresented",
            "label_attribute_association",
            "domain_label_shift",
            "domain_attribute_association",
            "covariate_shift",
            "shortcut",
            "exact_duplicate",
            "near_duplicate",
            "split_leakage",
            "group_leakage",
            "label_conflict",
            "unreadable_file",
            "missing_file",
            "oversized_image",
            "image_mode_mix",
            "exif_orientation",
            "extension_mismatch",
            "mask_mismatch",
            "empty_mask",
        ),
        "profile",
    ),
    "generalization_gap": "generalization",
    "worst_group": "performance",
    "group_disparity": "performance",
    "fairness_violation": "performance",
    "insufficient_evidence": "performance",
    "miscalibration": "calibration",
    "hidden_slice": "slices",
    "check_failed": "overview",
}


def stage_note(name: str, s: dict) -> str:
    """What a person should know about one stage beside its status: why it was interrupted (signal, time, how to
    resume), the training plan (what was trained, the estimated vs actual wall time, why a cheaper plan was
    chosen), or the error / skip reason."""
    s = s or {}
    parts = []
    if s.get("status") == "interrupted":
        sig, at = s.get("signal") or "a signal", s.get("interrupted_at") or s.get("finished") or "?"
        parts.append(f"interrupted by {sig} at {at}; re-run the same command to resume (finished work is reused)")
    elif s.get("error") or s.get("reason"):
        parts.append(str(s.get("error") or s.get("reason")))
    plan = s.get("plan") if isinstance(s.get("plan"), dict) else None
    if plan:
        line = str(plan.get("line") or "").removeprefix("plan").strip()
        done = s.get("status") not in ("running", "interrupted", "failed")
        est, act = s.get("estimate_seconds"), s.get("seconds") if done else None
        timing = f"; actual {_secs(act)}" if act is not None else ""
        parts.append(f"plan: {line}{timing}" if est is not None else f"plan: {line}")
        if plan.get("reduced"):
            parts.append(f"chosen because {plan.get('reason')}")
    return " · ".join(p for p in parts if p)


def _secs(x) -> str:
    try:
        return format_eta(float(x))
    except (TypeError, ValueError):
        return "?"


def stage_table(run: RunDir) -> pd.DataFrame:
    """One row per stage: status, seconds (the plan's estimate beside them for training), and a note (the
    interruption, the plan, the error or skip reason: :func:`stage_note`)."""
    rows = []
    for name, s in run.stages().items():
        rows.append(
            {
                "stage": str(name),
                "status": s.get("status"),
                "seconds": s.get("seconds"),
                "estimated seconds": s.get("estimate_seconds"),
                "note": stage_note(str(name), s),
            }
        )
    return pd.DataFrame(rows, columns=["stage", "status", "seconds", "estimated seconds", "note"])


def overview(run: RunDir) -> dict:
    """The headline numbers of the run (``audit.headline.headline``), or a minimal local summary without it."""
    try:
        from audit.headline import headline
    except ImportError:  # headline not part of this build: keep the page useful
        headline = None
    if headline is not None:
        return headline(run)
    return _minimal_headline(run)


def _minimal_headline(run: RunDir) -> dict:
    info = run.info
    ds = info.get("dataset", {}) or {}
    problems: list[str] = []
    n, domains, attributes = ds.get("n"), [], []
    try:
        m = read(run, "manifest.parquet", columns=["domain"])
        if m is not None:
            n = len(m)
            if "domain" in m.columns:
                domains = sorted(str(d) for d in m["domain"].dropna().unique())
        attributes = [c for c in ds.get("columns", []) if str(c).startswith("attr.")]
    except AuditError as e:
        problems.append(str(e))
    findings = run.findings()
    counts = {s: sum(f.get("severity") == s for f in findings) for s in ("critical", "warning", "info")}
    counts["total"] = len(findings)
    return {
        "run": str(run.path),
        "task": ds.get("task", "classify"),
        "n": n,
        "domains": domains,
        "n_domains": len(domains),
        "classes": list(ds.get("classes", [])),
        "n_classes": len(ds.get("classes", [])),
        "attributes": attributes,
        "models": [],
        "metric": None,
        "overall": None,
        "worst_group": None,
        "n_insufficient_groups": None,
        "largest_gap": None,
        "largest_fairness_gap": None,
        "biggest_association": None,
        "n_unreadable": None,
        "findings": counts,
        "stages": {k: v.get("status") for k, v in run.stages().items()},
        "problems": problems,
    }


def findings_frame(
    run: RunDir, *, severities: Sequence[str] | None = None, kinds: Sequence[str] | None = None
) -> pd.DataFrame:
    """The ranked findings as a table, each with the dashboard page that shows its evidence."""
    cols = [
        "rank",
        "severity",
        "kind",
        "title",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "columns",
        "groups",
        "detail",
        "stage",
        "page",
        "id",
    ]
    rows = []
    for i, f in enumerate(run.findings(), start=1):
        ci = f.get("ci") or [None, None]
        ci = list(ci) + [None] * (2 - len(ci)) if isinstance(ci, (list, tuple)) else [None, None]
        rows.append(
            {
                "rank": i,
                "severity": f.get("severity"),
                "kind": f.get("kind"),
                "title": str(f.get("title") or ""),
                "value": to_float(f.get("value")),
                "ci_low": to_float(ci[0]),
                "ci_high": to_float(ci[1]),
                "n": f.get("n"),
                "columns": ", ".join(map(str, f.get("columns") or [])),
                "groups": ", ".join(map(str, f.get("groups") or [])),
                "detail": str(f.get("detail") or ""),
                "stage": f.get("stage"),
                "page": FINDING_PAGE.get(str(f.get("kind")), "overview"),
                "id": f.get("id"),
            }
        )
    df = pd.DataFrame(rows, columns=cols)
    if severities is not None:
        df = df[df["severity"].isin(list(severities))]
    if kinds is not None:
        df = df[df["kind"].isin(list(kinds))]
    df["n"] = pd.to_numeric(df["n"], errors="coerce").astype("Int64")
    return df.reset_index(drop=True)
