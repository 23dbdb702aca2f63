"""Distribution: counts and shares per column and per intersection, imbalance summaries, sparse cells.

Tables: ``distribution.parquet`` (``column, group, n, share, ci_low, ci_high, status``) and
``imbalance.parquet`` (``column, n_groups, imbalance_ratio, normalized_entropy, effective_n, min_group,
max_group, n, n_missing``).

Intersections: every pair of label / domain / attributes, and deeper combinations up to ``config.depth``
columns, over the full cross product of observed values so empty cells appear (``n = 0``,
``status = "empty"``). Rows with a missing value in a column are counted in that column's ``<NA>`` group
(``group`` null) and left out of intersections that use the column.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats as _st

from audit.findings import Finding
from audit.profile._stats import wilson
from audit.profile.base import Check, CheckOutput, Context, register

__all__ = ["Distribution", "imbalance_summary", "MAX_CELLS"]

MAX_CELLS = 5_000  # deeper intersections with more cells than this are skipped (recorded in the check info)
SEP_COL, SEP_VAL = " x ", " | "


def imbalance_summary(counts: np.ndarray) -> dict[str, float]:
    """Imbalance ratio (largest / smallest non-empty group), normalized entropy and effective number of groups.

    ``effective_n = exp(H)`` (Hill number of order 1): the number of equally large groups with the same
    entropy. ``normalized_entropy = H / log(k)`` over the ``k`` groups including empty ones (1 = uniform).
    """
    c = np.asarray(counts, dtype=float)
    k = len(c)
    tot = c.sum()
    nz = c[c > 0]
    if tot == 0 or k == 0:
        return {"imbalance_ratio": np.nan, "normalized_entropy": np.nan, "effective_n": np.nan}
    p = nz / tot
    h = float(-(p * np.log(p)).sum())
    return {
        "imbalance_ratio": float(nz.max() / nz.min()),
        "normalized_entropy": h / np.log(k) if k > 1 else np.nan,
        "effective_n": float(np.exp(h)),
    }


@register
class Distribution(Check):
    name = "distribution"
    order = 20
    description = "counts and shares per column and intersection; imbalance ratio, entropy, sparse cells"

    def skip_reason(self, ctx: Context) -> str | None:
        if not ctx.grouping_columns:
            return "no label, domain, split or attribute column"
        return super().skip_reason(ctx)

    def run(self, ctx: Context) -> CheckOutput:
        m = ctx.manifest
        min_n = int(ctx.config.min_n)
        rows, imb_rows = [], []
        findings: list[Finding] = []
        skipped = []
        # Single columns.
        for col in ctx.grouping_columns:
            s = m[col].astype("string")
            vc = s.value_counts(dropna=True).sort_index()
            n_missing = int(s.isna().sum())
            total = len(s)
            for g, k in vc.items():
                rows.append((col, str(g), int(k), total))
            if n_missing:
                rows.append((col, None, n_missing, total))
            summ = imbalance_summary(vc.to_numpy())
            imb_rows.append({
                "column": col, "n_groups": int(len(vc)), **summ,
                "min_group": str(vc.idxmin()) if len(vc) else None, "max_group": str(vc.idxmax()) if len(vc) else None,
                "n": int(vc.sum()), "n_missing": n_missing,
            })
            findings += self._imbalance_finding(ctx, col, vc, summ)
        # Intersections.
        base = [c for c in ("label", "domain", *ctx.attrs) if ctx.has(c)]
        depth = max(2, int(ctx.config.depth))
        for size in range(2, min(depth, len(base)) + 1):
            for combo in itertools.combinations(base, size):
                cats = [sorted(m[c].dropna().astype(str).unique()) for c in combo]
                ncell = int(np.prod([len(c) for c in cats]))
                if ncell > MAX_CELLS:
                    skipped.append(SEP_COL.join(combo))
                    continue
                sub = m[list(combo)].dropna().astype(str)
                counts = sub.value_counts()
                full = pd.MultiIndex.from_product(cats, names=list(combo))
                counts = counts.reindex(full, fill_value=0)
                name = SEP_COL.join(combo)
                total = int(len(sub))
                for key, k in counts.items():
                    rows.append((name, SEP_VAL.join(map(str, key)), int(k), total))
                summ = imbalance_summary(counts.to_numpy())
                imb_rows.append({
                    "column": name, "n_groups": ncell, **summ,
                    "min_group": SEP_VAL.join(map(str, counts.idxmin())),
                    "max_group": SEP_VAL.join(map(str, counts.idxmax())),
                    "n": total, "n_missing": int(len(m) - total),
                })
                findings += self._sparse_finding(name, combo, counts, min_n, total)
        dist = pd.DataFrame(rows, columns=["column", "group", "n", "total"])
        dist["share"] = np.where(dist["total"] > 0, dist["n"] / dist["total"].where(dist["total"] > 0, 1), np.nan)
        lo, hi = wilson(dist["n"].to_numpy(), dist["total"].to_numpy())
        dist["ci_low"], dist["ci_high"] = lo, hi
        dist["status"] = np.where(dist["n"] == 0, "empty", np.where(dist["n"] < min_n, "under_min_n", "ok"))
        dist = dist[["column", "group", "n", "share", "ci_low", "ci_high", "status", "total"]]
        dist["group"] = dist["group"].astype("string")
        imb = pd.DataFrame(imb_rows)
        info = {"skipped_intersections": skipped} if skipped else {}
        return CheckOutput(tables={"distribution": dist, "imbalance": imb}, findings=findings, info=info)

    @staticmethod
    def _imbalance_finding(ctx: Context, col: str, vc: pd.Series, summ: dict) -> list[Finding]:
        if col not in ("label",) and not col.startswith("attr."):
            return []  # domain and split sizes are a design choice, not a bias by themselves
        k = len(vc)
        n = int(vc.sum())
        if k < 2 or n == 0:
            return []
        ratio = summ["imbalance_ratio"]
        p = float(_st.chisquare(vc.to_numpy()).pvalue)
        if not (p < 0.05 and ratio >= 1.5):
            return []
        severity = "critical" if ratio >= 10 else ("warning" if ratio >= 3 else "info")
        share = vc / n
        under = share[share < 0.6 / k].sort_values()
        groups = [str(g) for g in (under.index if len(under) else [vc.idxmin()])]
        kind = "class_imbalance" if col == "label" else "attribute_imbalance"
        lo, hi = wilson(vc.loc[groups].to_numpy(), n)
        return [Finding(
            kind=kind, severity=severity, n=n, value=ratio, score=float(np.log(ratio)),
            title=f"{col} is imbalanced: largest/smallest group = {ratio:.1f} "
                  f"(under-represented: {', '.join(groups[:5])})",
            detail=f"normalized entropy {summ['normalized_entropy']:.3f}, effective number of groups "
                   f"{summ['effective_n']:.2f} of {k}; chi-square goodness of fit to uniform p={p:.2g}",
            columns=[col], groups=groups,
            evidence={
                "counts": {str(g): int(c) for g, c in vc.items()},
                "shares": {g: [float(share[g]), float(a), float(b)] for g, a, b in zip(groups, lo, hi, strict=True)},
                "p_uniform": p, **{k2: float(v) for k2, v in summ.items()},
            },
        )]

    @staticmethod
    def _sparse_finding(name: str, combo: tuple, counts: pd.Series, min_n: int, total: int) -> list[Finding]:
        empty = [SEP_VAL.join(map(str, k)) for k, v in counts.items() if v == 0]
        small_n = {SEP_VAL.join(map(str, k)): int(v) for k, v in counts.items() if 0 < v < min_n}
        small = list(small_n)
        if not empty and not small:
            return []
        # An empty cell of a pair is a combination never seen: the strongest form of a spurious correlation
        # and a group no metric can be computed for. Deeper empty cells are expected in small data.
        severity = "warning" if (empty and len(combo) == 2) else "info"
        ncell = len(counts)
        return [Finding(
            kind="intersection_underrepresented", severity=severity, n=total,
            value=float(len(empty) + len(small)) / ncell, score=float(len(empty)) + 0.1 * len(small),
            title=f"{name}: {len(empty)} empty and {len(small)} under-{min_n} cells of {ncell}",
            detail="Groups with fewer than min_n samples get insufficient_evidence instead of a verdict in metrics.",
            columns=list(combo), groups=(empty + small)[:50],
            evidence={"empty": empty[:200], "under_min_n": {g: small_n[g] for g in small[:200]},
                      "min_n": min_n, "cells": ncell},
        )]
