"""Views of the profile page: distributions, intersections, associations, image statistics, duplicates, files."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from audit.rundir import RunDir
from audit.views.tables import manifest_rows, read, read_manifest_columns

__all__ = [
    "distribution_columns",
    "distribution_bars",
    "intersection_matrix",
    "association_matrix",
    "stat_histogram",
    "image_stat_histogram",
    "duplicate_pairs",
    "broken_files",
    "flagged_rows",
]


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
    m = manifest_rows(run, ids, ["filepath", "split", "label", "domain"])
    out = d.reset_index(drop=True)
    for side in ("a", "b"):
        info = m.add_prefix(f"{side}_").rename(columns={f"{side}_sample_id": side})
        out = out.merge(info, on=side, how="left")
    return out, total


_BASIS_WORDS = {"bytes": "byte-identical files", "pixels": "identical pixels (different encoding)",
                "listing": "the same file listed twice", "phash": "perceptual hash only (no local check)",
                "resave": "re-saved (same frame)"}


def duplicate_reason(p) -> str:
    """Why a ``duplicates.parquet`` row matched, in words: basis, similarity, regions and the evidence level."""
    get = p.get if hasattr(p, "get") else (lambda k, d=None: getattr(p, k, d))
    basis = str(get("basis") or "")
    words = _BASIS_WORDS.get(basis) or " + ".join(basis.split("+")) or "unknown basis"
    out = f"{get('kind')} duplicate: {words}"
    sim, reg = get("similarity"), get("regions")
    if sim is not None and pd.notna(sim) and str(get("kind")) == "near":
        out += f"; local similarity {float(sim):.3f}"
        if reg is not None and pd.notna(reg) and int(reg) > 0:
            out += f" over {int(reg)} of 16 regions"
    ev = get("evidence")
    if ev is not None and pd.notna(ev) and str(get("kind")) == "near":
        out += f" ({ev} evidence)"
    conf = get("attribute_conflicts")
    if conf is not None and pd.notna(conf) and str(conf):
        out += "; disagree on " + ", ".join(c.removeprefix("attr.") for c in str(conf).split(","))
    return out


def broken_files(images: pd.DataFrame, *, limit: int = 500) -> tuple[pd.DataFrame, int]:
    """Unreadable images (and unreadable masks for segmentation) with the reason, and their total count."""
    readable = images["readable"].fillna(False).astype(bool) if "readable" in images.columns else True
    bad = ~readable
    if "mask_readable" in images.columns:
        bad = bad | ~images["mask_readable"].fillna(True).astype(bool)
    cols = [c for c in ("sample_id", "filepath", "error", "format", "bytes", "mask_error") if c in images.columns]
    out = images.loc[bad, cols]
    return out.head(limit).reset_index(drop=True), int(bad.sum())


def flagged_rows(run: RunDir, *, limit: int = 500) -> tuple[pd.DataFrame, int, dict[str, int]]:
    """Manifest rows flagged at ingest (column ``flag``: outside the root, listed twice, ...), their total and the
    count per reason; an empty frame when nothing is flagged (issue 23)."""
    import pyarrow.parquet as pq

    names = pq.read_schema(run.file("manifest.parquet")).names if run.has("manifest.parquet") else []
    if "flag" not in names:
        return pd.DataFrame(columns=["sample_id", "filepath", "flag"]), 0, {}
    cols = [c for c in ("filepath", "flag", "listing_of", "label", "split") if c in names]
    m = read_manifest_columns(run, cols)
    bad = m[m["flag"].notna()]
    counts = {str(k): int(v) for k, v in bad["flag"].value_counts().items()}
    return bad.head(limit).reset_index(drop=True), int(len(bad)), counts
