"""Read-only views of a run directory, shaped for display (the dashboard's data layer).

Every function here reads tables that stages wrote (see docs/formats.md) and filters, sorts, pivots, joins or
samples them. None computes a metric: numbers and their intervals come from the tables as written. The few
derived quantities are plain arithmetic on stored numbers and say so (per-image IoU from stored pixel counts,
the difference between two runs' stored values). Functions take :class:`~audit.rundir.RunDir` or DataFrames
and return DataFrames or dicts, so the dashboard can cache them with ``st.cache_data`` keyed by the run path
and the mtime of ``run.json`` (:func:`run_stamp`).

Example::

    from audit import views
    run = RunDir.open("runs/demo/classify")
    bars = views.group_bars(views.read(run, "metrics/groups.parquet"), by="domain", metric="accuracy")
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.errors import AuditError, UsageError
from audit.rundir import RunDir

__all__ = [
    "PAGES",
    "FINDING_PAGE",
    "list_runs",
    "resolve_runs",
    "run_stamp",
    "read",
    "read_manifest_columns",
    "has_model",
    "stage_table",
    "overview",
    "findings_frame",
    "higher_is_better",
    "distribution_columns",
    "distribution_bars",
    "intersection_matrix",
    "association_matrix",
    "stat_histogram",
    "image_stat_histogram",
    "duplicate_pairs",
    "broken_files",
    "options",
    "group_bars",
    "generalization_rows",
    "transfer_matrix",
    "calibration_curves",
    "failure_sample",
    "segmentation_sample",
    "compare_groups",
    "compare_headline",
    "thumbnail",
    "colorize_mask",
    "overlay",
    "SEG_PALETTE",
    "SEG_COLOUR_NAMES",
]

# Page keys of the dashboard, in navigation order.
PAGES = ("overview", "profile", "performance", "generalization", "calibration", "gallery", "compare")

# Which page shows the evidence of a finding kind.
FINDING_PAGE: dict[str, str] = {
    **dict.fromkeys(
        (
            "class_imbalance", "attribute_imbalance", "intersection_underrepresented", "label_attribute_association",
            "domain_label_shift", "domain_attribute_association", "covariate_shift", "shortcut", "exact_duplicate",
            "near_duplicate", "split_leakage", "group_leakage", "label_conflict", "unreadable_file", "missing_file",
            "oversized_image", "image_mode_mix", "exif_orientation", "extension_mismatch", "mask_mismatch",
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
    "check_failed": "overview",
}

# Metrics where a smaller value is better (sorted worst-first = largest first).
_LOWER_BETTER = ("ece", "mce", "error", "loss", "brier", "nll", "diff", "gap")

# Colours of segmentation class indices (0 = background, transparent in overlays).
SEG_COLOUR_NAMES = ("clear", "red", "green", "yellow", "blue", "orange", "purple", "cyan", "magenta", "lime", "pink", "teal")
SEG_PALETTE = np.array(
    [
        [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
        [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
    ],
    dtype=np.uint8,
)

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
            from audit.errors import RunDirError

            raise RunDirError(f"cannot read {p}: {e}") from None
        cols = [c for c in columns if c in names]
    return run.read_table(rel, columns=cols, required=False)


def read_manifest_columns(run: RunDir, columns: Sequence[str]) -> pd.DataFrame:
    """Only some columns of the manifest (string dtypes, like :meth:`RunDir.manifest`)."""
    df = read(run, "manifest.parquet", columns=list(dict.fromkeys(["sample_id", *columns])))
    if df is None:
        from audit.errors import RunDirError

        raise RunDirError(f"{run.path} has no manifest.parquet; run `audit profile DATA --out {run.path}` first")
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype("string")
    return df


def has_model(run: RunDir) -> bool:
    """Whether the run holds model results (predictions or metrics tables)."""
    return run.has("predictions.parquet") or run.has("metrics/groups.parquet")


def stage_table(run: RunDir) -> pd.DataFrame:
    """One row per stage: status, seconds, and the error or skip reason."""
    rows = []
    for name, s in run.stages().items():
        rows.append(
            {
                "stage": str(name),
                "status": s.get("status"),
                "seconds": s.get("seconds"),
                "note": s.get("error") or s.get("reason") or "",
            }
        )
    return pd.DataFrame(rows, columns=["stage", "status", "seconds", "note"])


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
        "run": str(run.path), "task": ds.get("task", "classify"), "n": n, "domains": domains,
        "n_domains": len(domains), "classes": list(ds.get("classes", [])), "n_classes": len(ds.get("classes", [])),
        "attributes": attributes, "models": [], "metric": None, "overall": None, "worst_group": None,
        "n_insufficient_groups": None, "largest_gap": None, "largest_fairness_gap": None,
        "biggest_association": None, "n_unreadable": None, "findings": counts,
        "stages": {k: v.get("status") for k, v in run.stages().items()},
        "problems": problems,
    }


def findings_frame(run: RunDir, *, severities: Sequence[str] | None = None, kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """The ranked findings as a table, each with the dashboard page that shows its evidence."""
    cols = ["rank", "severity", "kind", "title", "value", "ci_low", "ci_high", "n", "columns", "groups", "detail", "stage", "page", "id"]
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
                "value": _float(f.get("value")),
                "ci_low": _float(ci[0]),
                "ci_high": _float(ci[1]),
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


def _float(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (accuracy, IoU) or worse (ECE, error, *_diff)."""
    m = str(metric).lower()
    return not any(m == k or m.startswith(k + "_") or m.endswith("_" + k) for k in _LOWER_BETTER)


# ------------------------------------------------------------------------------------------------ profile
def distribution_columns(dist: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(single columns, intersections) present in ``profile/distribution.parquet``."""
    cols = [str(c) for c in pd.unique(dist["column"].astype(str))]
    return [c for c in cols if " x " not in c], [c for c in cols if c.count(" x ") == 1]


def distribution_bars(dist: pd.DataFrame, column: str, *, top: int = 50) -> pd.DataFrame:
    """Counts of one column's groups, largest first; the ``top`` largest plus the smallest few if many."""
    d = dist[dist["column"].astype(str) == column].copy()
    d["group"] = d["group"].astype("string").fillna("(missing)")
    d = d.sort_values(["n", "group"], ascending=[False, True], kind="mergesort")
    if len(d) > top:
        # keep the rarest groups visible too: they are what an audit is about
        d = pd.concat([d.head(top - 10), d.tail(10)])
    if "status" not in d.columns:
        d["status"] = "ok"
    return d.reset_index(drop=True)


def intersection_matrix(dist: pd.DataFrame, column: str, *, max_side: int = 40) -> pd.DataFrame:
    """Long-form cells of a two-way intersection (``a x b``): row, col, n, share, status.

    Cells absent from the table (no sample has that combination) are added with n = 0 and status ``empty``
    so they show as holes rather than disappear. Each side keeps its ``max_side`` most frequent values.
    """
    a, b = column.split(" x ", 1)
    d = dist[dist["column"].astype(str) == column].copy()
    parts = d["group"].astype("string").fillna("(missing) | (missing)").str.split(" | ", n=1, regex=False)
    d["row"] = parts.str[0].fillna("(missing)")
    d["col"] = parts.str[1].fillna("(missing)")
    if "status" not in d.columns:
        d["status"] = "ok"
    rows = d.groupby("row")["n"].sum().sort_values(ascending=False).head(max_side).index
    cols = d.groupby("col")["n"].sum().sort_values(ascending=False).head(max_side).index
    full = pd.MultiIndex.from_product([rows, cols], names=["row", "col"]).to_frame(index=False)
    out = full.merge(d[["row", "col", "n", "share", "status"]], on=["row", "col"], how="left")
    empty = out["n"].isna()
    out.loc[empty, "status"] = "empty"
    out["n"] = out["n"].fillna(0).astype(int)
    out["a"], out["b"] = a, b
    return out


def association_matrix(assoc: pd.DataFrame, *, within: str | None = None, stat: str = "cramers_v") -> pd.DataFrame:
    """Pairs of columns with their association (value, interval, q), symmetric, for a heatmap.

    ``within`` None selects the whole-dataset rows; a domain value selects that domain's rows.
    """
    a = assoc
    if "stat" in a.columns and (a["stat"].astype(str) == stat).any():
        a = a[a["stat"].astype(str) == stat]
    if "within" in a.columns:
        a = a[a["within"].isna()] if within is None else a[a["within"].astype("string") == within]
    keep = [c for c in ("a", "b", "value", "ci_low", "ci_high", "p", "q", "n", "nmi") if c in a.columns]
    a = a[keep].copy()
    mirrored = a.rename(columns={"a": "b", "b": "a"})
    both = pd.concat([a, mirrored], ignore_index=True).drop_duplicates(subset=["a", "b"])
    return both.reset_index(drop=True)


def stat_histogram(values: pd.Series, groups: pd.Series | None, *, bins: int = 30) -> pd.DataFrame:
    """Binned counts of an image statistic per group (one shared set of bins), for 1M rows or more.

    Returns ``group, bin_start, bin_end, count, share`` (share = count / the group's non-missing total),
    so a chart draws a few hundred rows instead of one mark per image. Missing values are not binned;
    their number per group is in the ``missing`` column.
    """
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    g = (
        pd.Series("all", index=values.index, dtype="string")
        if groups is None
        else groups.astype("string").fillna("(missing)")
    )
    finite = np.isfinite(v)
    if not finite.any():
        return pd.DataFrame(columns=["group", "bin_start", "bin_end", "count", "share", "missing"])
    lo, hi = float(np.min(v[finite])), float(np.max(v[finite]))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    rows = []
    codes, uniques = pd.factorize(g, sort=True)
    for k, name in enumerate(uniques):
        sel = codes == k
        vals = v[sel & finite]
        counts, _ = np.histogram(vals, bins=edges)
        total = max(len(vals), 1)
        missing = int((sel & ~finite).sum())
        for j in range(bins):
            rows.append((str(name), edges[j], edges[j + 1], int(counts[j]), counts[j] / total, missing))
    return pd.DataFrame(rows, columns=["group", "bin_start", "bin_end", "count", "share", "missing"])


def image_stat_histogram(run: RunDir, *, stat: str, by: str | None = None, bins: int = 30) -> pd.DataFrame:
    """:func:`stat_histogram` of one column of ``profile/images.parquet``, split by a manifest column.

    Reads only the two columns needed (plus ``sample_id`` to join), so it stays cheap on 1M-row runs.
    """
    images = read(run, "profile/images.parquet", columns=["sample_id", stat])
    if images is None or stat not in images.columns:
        return pd.DataFrame(columns=["group", "bin_start", "bin_end", "count", "share", "missing"])
    groups = None
    if by:
        m = read_manifest_columns(run, [by])
        if by in m.columns:
            # images.parquet has one row per manifest row in manifest order; join on sample_id all the same
            key = images["sample_id"].astype("string")
            groups = pd.Series(m.set_index("sample_id")[by].reindex(key).to_numpy(), index=images.index, dtype="string")
    return stat_histogram(images[stat], groups, bins=bins)


def duplicate_pairs(
    run: RunDir,
    dups: pd.DataFrame | None = None,
    *,
    kinds: Sequence[str] | None = None,
    cross_split_only: bool = False,
    label_conflict_only: bool = False,
    limit: int = 24,
) -> tuple[pd.DataFrame, int]:
    """Duplicate / leakage pairs with both sides' file path, split and label, and the total before ``limit``.

    Leaking pairs (``cross_split``) and label conflicts come first, then exact before near, then distance.
    ``dups`` defaults to the run's ``profile/duplicates.parquet``.
    """
    d = read(run, "profile/duplicates.parquet") if dups is None else dups
    if d is None:
        return pd.DataFrame(columns=["a", "b", "kind", "distance"]), 0
    if kinds is not None:
        d = d[d["kind"].isin(list(kinds))]
    if cross_split_only and "cross_split" in d.columns:
        d = d[d["cross_split"].fillna(False).astype(bool)]
    if label_conflict_only and "label_conflict" in d.columns:
        d = d[d["label_conflict"].fillna(False).astype(bool)]
    total = len(d)
    d = d.assign(
        _leak=~d.get("cross_split", pd.Series(False, index=d.index)).fillna(False).astype(bool),
        _conf=~d.get("label_conflict", pd.Series(False, index=d.index)).fillna(False).astype(bool),
        _exact=d["kind"].astype(str) != "exact",
    )
    d = d.sort_values(["_conf", "_leak", "_exact", "distance", "a", "b"], kind="mergesort").head(limit)
    d = d.drop(columns=["_leak", "_conf", "_exact"])
    ids = pd.unique(pd.concat([d["a"], d["b"]]).astype(str))
    m = _manifest_rows(run, ids, ["filepath", "split", "label", "domain"])
    out = d.reset_index(drop=True)
    for side in ("a", "b"):
        info = m.add_prefix(f"{side}_").rename(columns={f"{side}_sample_id": side})
        out = out.merge(info, on=side, how="left")
    return out, total


def _manifest_rows(run: RunDir, ids: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
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
        from audit.errors import RunDirError

        raise RunDirError(f"cannot read {path}: {e}") from None
    for c in df.columns:
        df[c] = df[c].astype("string")
    return df


def broken_files(images: pd.DataFrame, *, limit: int = 500) -> tuple[pd.DataFrame, int]:
    """Unreadable images (and unreadable masks for segmentation) with the reason, and their total count."""
    readable = images["readable"].fillna(False).astype(bool) if "readable" in images.columns else True
    bad = ~readable
    if "mask_readable" in images.columns:
        bad = bad | ~images["mask_readable"].fillna(True).astype(bool)
    cols = [c for c in ("sample_id", "filepath", "error", "format", "bytes", "mask_error") if c in images.columns]
    out = images.loc[bad, cols]
    return out.head(limit).reset_index(drop=True), int(bad.sum())


# ------------------------------------------------------------------------------------------------ metrics
def options(df: pd.DataFrame | None, column: str, *, first: Sequence[str] = ()) -> list[str]:
    """Distinct values of ``column`` as strings, the preferred ``first`` ones leading (for select boxes)."""
    if df is None or column not in df.columns:
        return []
    vals = sorted(str(v) for v in df[column].dropna().unique())
    lead = [v for v in first if v in vals]
    return lead + [v for v in vals if v not in lead]


def _eq(df: pd.DataFrame, **filters: Any) -> pd.DataFrame:
    for col, val in filters.items():
        if val is None or col not in df.columns:
            continue
        df = df[df[col].astype("string") == str(val)]
    return df


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
    g = _eq(groups, model=model, protocol=protocol, fold=fold, scope=scope, by=by, metric=metric).copy()
    g["value"] = pd.to_numeric(g["value"], errors="coerce")
    asc = higher_is_better(metric)
    g["_missing"] = g["value"].isna()
    g = g.sort_values(["_missing", "value", "group"], ascending=[True, asc, True], kind="mergesort").drop(columns="_missing")
    status = g["status"].astype(str) if "status" in g.columns else pd.Series("ok", index=g.index)
    g["evidence"] = np.where(
        g["value"].isna() | (status == "empty"), "empty", np.where(status == "insufficient_evidence", "insufficient", "ok")
    )
    g["group"] = g["group"].astype("string").fillna("(missing)")
    n = pd.to_numeric(g["n"], errors="coerce")
    g["label"] = [f"{grp}  (n={int(k):,})" if pd.notna(k) else f"{grp}  (n=?)" for grp, k in zip(g["group"], n, strict=True)]
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
    g = _eq(gen, model=model, protocol=protocol, metric=metric).copy()
    for c in ("in_domain", "out_domain", "gap", "in_ci_low", "in_ci_high", "out_ci_low", "out_ci_high", "gap_ci_low", "gap_ci_high"):
        if c in g.columns:
            g[c] = pd.to_numeric(g[c], errors="coerce")
    # per-domain rows by gap, largest first; a pooled row (test_domain "all") last
    g["_pooled"] = g["test_domain"].astype(str) == "all"
    g = g.sort_values(["_pooled", "gap", "test_domain"], ascending=[True, False, True], kind="mergesort").drop(columns="_pooled")
    g = g.reset_index(drop=True)
    long = []
    for _, r in g.iterrows():
        for kind, val, lo, hi, n in (
            ("in-domain", r.get("in_domain"), r.get("in_ci_low"), r.get("in_ci_high"), r.get("n_in")),
            ("out-of-domain", r.get("out_domain"), r.get("out_ci_low"), r.get("out_ci_high"), r.get("n_out")),
        ):
            long.append(
                {"test_domain": str(r.get("test_domain")), "fold": str(r.get("fold")), "kind": kind, "value": val,
                 "ci_low": lo, "ci_high": hi, "n": n}
            )
    return g, pd.DataFrame(long, columns=["test_domain", "fold", "kind", "value", "ci_low", "ci_high", "n"])


def transfer_matrix(transfer: pd.DataFrame, *, model: str | None = None, metric: str | None = None) -> pd.DataFrame:
    """Train-domain x test-domain cells (value, interval, n) of the transfer protocol."""
    t = _eq(transfer, model=model, metric=metric).copy()
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    t["diagonal"] = t["train_domain"].astype(str) == t["test_domain"].astype(str)
    return t.reset_index(drop=True)


def calibration_curves(cal: pd.DataFrame, *, model: str | None = None, protocol: str | None = None, by: str | None = None, groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Reliability-curve points (mean confidence vs accuracy per bin) for the selected groups; empty bins dropped."""
    c = _eq(cal, model=model, protocol=protocol, by=by).copy()
    if groups is not None:
        c = c[c["group"].astype(str).isin(list(groups))]
    c["count"] = pd.to_numeric(c["count"], errors="coerce").fillna(0).astype(int)
    c = c[c["count"] > 0]
    c["group"] = c["group"].astype("string").fillna("(missing)")
    return c.sort_values(["group", "bin"], kind="mergesort").reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ galleries
def _pred_filters(run: RunDir, columns: Sequence[str], **filters: Any):
    """Read predictions.parquet filtered by equality on string columns, with pyarrow (1M rows stay cheap)."""
    import pyarrow.dataset as pads

    path = run.file("predictions.parquet")
    if not path.exists():
        return None
    try:
        ds = pads.dataset(path, format="parquet")
        names = set(ds.schema.names)
        expr = None
        for col, val in filters.items():
            if val is None or col not in names:
                continue
            e = pads.field(col) == str(val)
            expr = e if expr is None else expr & e
        cols = [c for c in columns if c in names]
        df = ds.to_table(columns=cols, filter=expr).to_pandas()
    except Exception as e:
        from audit.errors import RunDirError

        raise RunDirError(f"cannot read {path}: {e}") from None
    return df


def _held_out(p: pd.DataFrame, held_out: bool | None) -> pd.DataFrame:
    """Prediction rows of held-out domains (True), of training domains (False), or all (None)."""
    if held_out is None or "held_out" not in p.columns:
        return p
    flag = p["held_out"].astype("boolean").fillna(False)
    return p[flag == bool(held_out)]


def failure_sample(
    run: RunDir,
    *,
    model: str | None = None,
    protocol: str | None = None,
    fold: str | None = None,
    role: str | None = "test",
    group_col: str | None = None,
    group_value: str | None = None,
    true_class: str | None = None,
    held_out: bool | None = None,
    per_image: bool = False,
    n: int = 24,
    order: str = "confident",
    seed: int = 0,
) -> tuple[pd.DataFrame, int]:
    """Misclassified samples for the gallery and how many there are in the selection.

    ``order`` ``confident`` shows the most confidently wrong first; ``random`` draws a seeded sample.
    Only ``n`` rows are returned (images are loaded for those alone). ``group_col`` is any manifest column.
    ``held_out`` keeps only held-out-domain (True) or in-domain (False) predictions; ``per_image`` keeps one
    row per sample (its most confident wrong prediction), so an image scored in several folds appears once
    and the total counts images.
    """
    cols = ["sample_id", "model", "protocol", "fold", "role", "y_true", "y_pred", "confidence", "test_domain", "held_out"]
    p = _pred_filters(run, cols, model=model, protocol=protocol, fold=fold, role=role, y_true=true_class)
    if p is None or p.empty or "y_pred" not in p.columns:
        return pd.DataFrame(columns=cols + ["filepath"]), 0
    p = _held_out(p, held_out)
    wrong = p[p["y_true"].astype("string") != p["y_pred"].astype("string")]
    if per_image and len(wrong):
        conf = pd.to_numeric(wrong["confidence"], errors="coerce") if "confidence" in wrong.columns else pd.Series(0.0, index=wrong.index)
        wrong = (
            wrong.assign(_c=conf.fillna(-1.0)).sort_values("_c", ascending=False, kind="mergesort")
            .drop_duplicates("sample_id").drop(columns="_c")
        )
    if group_col and group_value is not None:
        m = read_manifest_columns(run, [group_col])
        if group_col in m.columns:
            ids = m.loc[m[group_col].astype("string") == group_value, "sample_id"]
            wrong = wrong[wrong["sample_id"].astype("string").isin(ids)]
    total = len(wrong)
    if order == "random":
        wrong = wrong.sample(n=min(n, total), random_state=seed) if total else wrong
    else:
        conf = pd.to_numeric(wrong.get("confidence"), errors="coerce") if "confidence" in wrong.columns else None
        wrong = wrong.assign(_c=conf if conf is not None else 0.0).sort_values(
            ["_c", "sample_id"], ascending=[False, True], kind="mergesort"
        ).drop(columns="_c").head(n)
    extra = ["filepath", group_col] if group_col and group_col not in wrong.columns else ["filepath"]
    m = _manifest_rows(run, wrong["sample_id"].astype(str).tolist(), extra)
    out = wrong.reset_index(drop=True).astype({"sample_id": "string"}).merge(m, on="sample_id", how="left")
    return out, total


def segmentation_sample(
    run: RunDir,
    *,
    model: str | None = None,
    protocol: str | None = None,
    fold: str | None = None,
    role: str | None = "test",
    group_col: str | None = None,
    group_value: str | None = None,
    held_out: bool | None = None,
    per_image: bool = False,
    n: int = 12,
    order: str = "worst",
    seed: int = 0,
) -> tuple[pd.DataFrame, int]:
    """Segmentation samples with their per-image IoU, worst first (or a seeded random draw).

    Per-image IoU is the mean over classes present in truth or prediction (union > 0) of the stored
    ``inter_<c> / union_<c>`` pixel counts: a ratio of numbers the training stage wrote, not a new metric.
    ``held_out`` and ``per_image`` as in :func:`failure_sample` (``per_image`` keeps each image's lowest IoU).
    """
    import pyarrow.dataset as pads

    path = run.file("predictions.parquet")
    if not path.exists():
        return pd.DataFrame(), 0
    names = pads.dataset(path, format="parquet").schema.names
    counts = [c for c in names if c.startswith(("inter_", "union_"))]
    base = ["sample_id", "model", "protocol", "fold", "role", "test_domain", "held_out", "pixel_acc", "pred_mask"]
    p = _pred_filters(run, base + counts, model=model, protocol=protocol, fold=fold, role=role)
    if p is None or p.empty:
        return pd.DataFrame(columns=base + ["iou", "filepath", "mask"]), 0
    classes = sorted({c.split("_", 1)[1] for c in counts if f"union_{c.split('_', 1)[1]}" in p.columns})
    if classes:
        inter = np.stack([p[f"inter_{c}"].to_numpy(dtype=float) for c in classes], axis=1)
        union = np.stack([p[f"union_{c}"].to_numpy(dtype=float) for c in classes], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)
        present = (union > 0).sum(axis=1)
        iou = np.where(present > 0, np.nansum(ratio, axis=1) / np.maximum(present, 1), np.nan)
    else:
        iou = np.full(len(p), np.nan)
    p = _held_out(p.drop(columns=counts).assign(iou=iou), held_out)
    if per_image and len(p):
        p = p.sort_values(["iou", "sample_id"], kind="mergesort", na_position="last").drop_duplicates("sample_id")
    if group_col and group_value is not None:
        m = read_manifest_columns(run, [group_col])
        if group_col in m.columns:
            ids = m.loc[m[group_col].astype("string") == group_value, "sample_id"]
            p = p[p["sample_id"].astype("string").isin(ids)]
    total = len(p)
    if order == "random":
        p = p.sample(n=min(n, total), random_state=seed) if total else p
    else:
        p = p.sort_values(["iou", "sample_id"], ascending=[order == "worst", True], kind="mergesort", na_position="last").head(n)
    m = _manifest_rows(run, p["sample_id"].astype(str).tolist(), ["filepath", "mask"])
    out = p.reset_index(drop=True).astype({"sample_id": "string"}).merge(m, on="sample_id", how="left")
    return out, total


def thumbnail(path: Path, *, size: int = 160, mask: bool = False) -> np.ndarray:
    """A small RGB array of an image (or an index mask, colourised) for display; raises OSError if unreadable."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at reduced scale
        if mask:
            arr = np.asarray(im.convert("L") if im.mode not in ("L", "P", "I", "I;16") else im)
            arr = colorize_mask(arr)
            im2 = Image.fromarray(arr)
        else:
            im2 = im.convert("RGB")
        scale = size / max(im2.size)
        new = (max(1, round(im2.width * scale)), max(1, round(im2.height * scale)))
        return np.asarray(im2.resize(new, Image.NEAREST))


def overlay(image: Path, mask: Path, *, size: int = 160, alpha: float = 0.55) -> np.ndarray:
    """The image with a class-index mask blended on top (class 0 left clear), as a small RGB array.

    A mask of another size than its image is resized (nearest) to fit; the profile reports the mismatch.
    """
    from PIL import Image

    with Image.open(image) as im:
        rgb = im.convert("RGB")
    with Image.open(mask) as mk:
        m = mk if mk.mode in ("L", "P", "I", "I;16") else mk.convert("L")
        if m.size != rgb.size:
            m = m.resize(rgb.size, Image.NEAREST)
        idx = np.asarray(m).astype(np.int64)
    base = np.asarray(rgb, dtype=np.float32)
    colour = colorize_mask(idx).astype(np.float32)
    fg = (idx != 0)[..., None]
    out = np.where(fg, (1 - alpha) * base + alpha * colour, base).astype(np.uint8)
    im2 = Image.fromarray(out)
    scale = size / max(im2.size)
    return np.asarray(im2.resize((max(1, round(im2.width * scale)), max(1, round(im2.height * scale))), Image.NEAREST))


def colorize_mask(mask: np.ndarray) -> np.ndarray:
    """Class-index mask -> RGB with :data:`SEG_PALETTE` (indices beyond the palette wrap around)."""
    idx = np.asarray(mask).astype(np.int64) % len(SEG_PALETTE)
    return SEG_PALETTE[idx]


# ------------------------------------------------------------------------------------------------ compare
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


def compare_groups(a: pd.DataFrame, b: pd.DataFrame, *, metric: str | None = None, by: str | None = None) -> pd.DataFrame:
    """Per-group numbers of two runs side by side with the difference (B - A) and its interval.

    Rows present in only one run are kept (the other side NaN), so nothing disappears silently.
    """
    keys = [k for k in _KEYS if k in a.columns and k in b.columns]
    sel_a, sel_b = _eq(a, metric=metric, by=by), _eq(b, metric=metric, by=by)
    cols = ["value", "ci_low", "ci_high", "n", "status"]
    sa = sel_a[keys + [c for c in cols if c in sel_a.columns]].astype({k: "string" for k in keys})
    sb = sel_b[keys + [c for c in cols if c in sel_b.columns]].astype({k: "string" for k in keys})
    m = sa.merge(sb, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    va, vb = pd.to_numeric(m["value_a"], errors="coerce"), pd.to_numeric(m["value_b"], errors="coerce")
    m["delta"] = vb - va
    side = lambda s: m[[f"{c}_{s}" for c in ("value", "ci_low", "ci_high")]].set_axis(["value", "ci_low", "ci_high"], axis=1)  # noqa: E731
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

    def add(name: str, a: dict, b: dict, field: str, ua: str = "", ub: str = "", what=lambda d: "", kind: str = "metric") -> None:
        va, vb = _float(a.get(field)), _float(b.get(field))
        row = {
            "number": name, "kind": kind, "unit": ua if ua == ub or not ub else ub if not ua else f"{ua} / {ub}",
            "A_unit": ua, "B_unit": ub,
            "A": va, "A_ci_low": _float(a.get("ci_low")), "A_ci_high": _float(a.get("ci_high")),
            "A_what": what(a), "B": vb, "B_ci_low": _float(b.get("ci_low")), "B_ci_high": _float(b.get("ci_high")),
            # two different metrics have no difference
            "B_what": what(b), "delta": vb - va if not (ua and ub and ua != ub) else math.nan,
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
        ("largest_fairness_gap", "largest fairness gap", "value", lambda d: f"{d.get('metric')} on {d.get('attribute')}" if d else ""),
        ("biggest_association", "biggest association", "value", lambda d: f"{d.get('a')} ~ {d.get('b')}" if d else ""),
    ):
        a, b = ha.get(key) or {}, hb.get(key) or {}
        add(label, a, b, field, str(a.get("metric") or a.get("stat") or ""), str(b.get("metric") or b.get("stat") or ""), what)
    df = pd.DataFrame(rows)
    lo, hi = _mover(
        df["delta"],
        df[["A", "A_ci_low", "A_ci_high"]].set_axis(["value", "ci_low", "ci_high"], axis=1),
        df[["B", "B_ci_low", "B_ci_high"]].set_axis(["value", "ci_low", "ci_high"], axis=1),
    )
    df["delta_ci_low"], df["delta_ci_high"] = lo, hi
    return df[["number", "kind", "unit", "A_unit", "B_unit", "A", "A_ci_low", "A_ci_high", "A_what", "B", "B_ci_low",
               "B_ci_high", "B_what", "delta", "delta_ci_low", "delta_ci_high"]]
