"""Associations (spurious correlations): label x attribute, domain x attribute, domain x label.

For each pair, on the whole dataset and (label x attribute) within each domain: Pearson chi-square without
continuity correction, bias-corrected Cramer's V (Bergsma 2013) with a seeded cluster-bootstrap percentile
interval (resampling ``group``), normalized mutual information, adjusted standardized residuals and lift
per cell; Benjamini-Hochberg q-values over all tests of the check.

A finding needs ``q < 0.05`` **and** ``V >= 0.1``: severity info from 0.1, warning from 0.2, critical from
0.5. A label x attribute association that is strong (q < 0.05, V >= 0.2) in some domains and absent
(V < 0.1 or q >= 0.05, with its interval's upper bound below the weakest strong domain's V) in others is a
finding of its own (``evidence.strong_in`` / ``absent_in``): the shortcut a held-out domain exposes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.findings import Finding
from audit.profile._stats import bh, bootstrap_tables, chi2_test, codes, contingency, cramers_v, nmi, residuals
from audit.profile.base import Check, CheckOutput, Context, register

__all__ = ["Associations", "V_INFO", "V_WARNING", "V_CRITICAL", "Q_MAX"]

V_INFO, V_WARNING, V_CRITICAL, Q_MAX = 0.1, 0.2, 0.5, 0.05
SEP_VAL = " | "
_KIND = {"label": "label_attribute_association", "domain": "domain_attribute_association"}


def _severity(v: float) -> str | None:
    if not np.isfinite(v) or v < V_INFO:
        return None
    return "critical" if v >= V_CRITICAL else ("warning" if v >= V_WARNING else "info")


@register
class Associations(Check):
    name = "associations"
    order = 30
    description = "chi-square, bias-corrected Cramer's V (bootstrap CI), NMI, residuals; BH q; per-domain"

    def skip_reason(self, ctx: Context) -> str | None:
        if not self._pairs(ctx):
            return "needs two of label, domain, attributes"
        return super().skip_reason(ctx)

    @staticmethod
    def _pairs(ctx: Context) -> list[tuple[str, str]]:
        pairs = []
        if ctx.has("label"):
            pairs += [("label", a) for a in ctx.attrs if ctx.has(a)]
        if ctx.has("domain"):
            pairs += [("domain", a) for a in ctx.attrs if ctx.has(a)]
            if ctx.has("label"):
                pairs.append(("domain", "label"))
        return pairs

    def run(self, ctx: Context) -> CheckOutput:
        m = ctx.manifest
        n_boot = int(ctx.config.n_boot)
        clusters = m["group"].astype(str).to_numpy() if "group" in m.columns else None
        enc = {c: codes(m[c]) for c in {c for p in self._pairs(ctx) for c in p}}
        dom_codes, dom_cats = codes(m["domain"]) if ctx.has("domain") else (None, [])
        tests = []  # (a, b, within, row mask)
        for a, b in self._pairs(ctx):
            tests.append((a, b, None, np.ones(len(m), bool)))
            if a == "label" and dom_codes is not None and len(dom_cats) > 1:
                for d, dn in enumerate(dom_cats):
                    tests.append((a, b, dn, dom_codes == d))
        rows, res_rows = [], []
        for a, b, within, mask in tests:
            ca, cats_a = enc[a]
            cb, cats_b = enc[b]
            ca, cb = ca[mask], cb[mask]
            t = contingency(ca, cb, len(cats_a), len(cats_b))
            n = int(t.sum())
            chi2, dof, p = chi2_test(t)
            v = float(cramers_v(t))
            lo = hi = np.nan
            if n_boot > 0 and np.isfinite(v):
                rng = ctx.rng(f"assoc|{a}|{b}|{within}")
                bt = bootstrap_tables(ca, cb, len(cats_a), len(cats_b),
                                      clusters[mask] if clusters is not None else None, n_boot, rng)
                vb = cramers_v(bt)
                vb = vb[np.isfinite(vb)]
                if vb.size:
                    lo, hi = (float(x) for x in np.percentile(vb, [2.5, 97.5]))
                    # the bias-corrected V is skewed with sparse tables: widen so the interval holds the estimate
                    lo, hi = min(lo, v), max(hi, v)
            rows.append({"a": a, "b": b, "within": within, "stat": "cramers_v", "value": v, "ci_low": lo,
                         "ci_high": hi, "chi2": chi2, "dof": dof, "p": p, "nmi": nmi(t), "n": n})
            e, z, lift = residuals(t)
            for i, av in enumerate(cats_a):
                for j, bv in enumerate(cats_b):
                    res_rows.append({"a": a, "b": b, "within": within, "a_value": av, "b_value": bv,
                                     "observed": int(t[i, j]), "expected": float(e[i, j]),
                                     "std_residual": float(z[i, j]), "lift": float(lift[i, j])})
        assoc = pd.DataFrame(rows, columns=["a", "b", "within", "stat", "value", "ci_low", "ci_high", "chi2", "dof",
                                            "p", "q", "nmi", "n"])
        assoc["q"] = bh(assoc["p"].to_numpy())
        assoc["within"] = assoc["within"].astype("string")
        resid = pd.DataFrame(res_rows, columns=["a", "b", "within", "a_value", "b_value", "observed", "expected",
                                                "std_residual", "lift"])
        resid["within"] = resid["within"].astype("string")
        findings = self._findings(assoc, resid)
        return CheckOutput(tables={"associations": assoc, "residuals": resid}, findings=findings)

    @staticmethod
    def _top_cells(resid: pd.DataFrame, a: str, b: str, within, k: int = 3) -> list[dict]:
        sel = resid[(resid["a"] == a) & (resid["b"] == b)]
        sel = sel[sel["within"].isna()] if within is None else sel[sel["within"] == within]
        sel = sel[sel["std_residual"] > 2].sort_values("std_residual", ascending=False).head(k)
        return [{"cell": f"{r.a_value}{SEP_VAL}{r.b_value}", "observed": int(r.observed),
                 "expected": round(float(r.expected), 2), "std_residual": round(float(r.std_residual), 2),
                 "lift": round(float(r.lift), 3)} for r in sel.itertuples()]

    def _findings(self, assoc: pd.DataFrame, resid: pd.DataFrame) -> list[Finding]:
        out: list[Finding] = []
        whole = assoc[assoc["within"].isna()]
        for r in whole.itertuples():
            sev = _severity(r.value)
            if sev is None or not (r.q < Q_MAX):
                continue
            kind = "domain_label_shift" if (r.a, r.b) == ("domain", "label") else _KIND[r.a]
            cells = self._top_cells(resid, r.a, r.b, None)
            what = ("label distribution differs by domain" if kind == "domain_label_shift"
                    else f"{r.a} is associated with {r.b}")
            out.append(Finding(
                kind=kind, severity=sev, n=int(r.n), value=float(r.value), ci=[r.ci_low, r.ci_high],
                score=float(r.value),
                title=f"{what}: Cramer's V {r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
                      + (f"; over-represented {', '.join(c['cell'] for c in cells)}" if cells else ""),
                detail=f"chi2={r.chi2:.1f} (dof {r.dof}), q={r.q:.2g}, NMI={r.nmi:.3f}; bias-corrected V, "
                       f"bootstrap over groups.",
                columns=[r.a, r.b], groups=[c["cell"] for c in cells],
                evidence={"stat": "cramers_v", "chi2": r.chi2, "dof": r.dof, "p": r.p, "q": r.q, "nmi": r.nmi,
                          "cells": cells},
            ))
        # Conditional on domain: strong in some, absent in others.
        per = assoc[assoc["within"].notna()]
        for (a, b), g in per.groupby(["a", "b"], sort=True):
            strong = g[(g["q"] < Q_MAX) & (g["value"] >= V_WARNING)]
            if strong.empty or len(strong) == len(g):
                continue
            floor = float(strong["value"].min())
            absent = g[((g["value"] < V_INFO) | ~(g["q"] < Q_MAX)) & (g["ci_high"].fillna(np.inf) < floor)]
            if absent.empty:
                continue
            vmax = float(strong["value"].max())
            sev = "critical" if vmax >= V_CRITICAL else "warning"
            s_names = strong["within"].astype(str).tolist()
            a_names = absent["within"].astype(str).tolist()
            out.append(Finding(
                kind=_KIND[a], severity=sev, n=int(g["n"].sum()), value=vmax, ci=None,
                score=vmax - float(absent["value"].fillna(0).max()),
                title=f"{a} x {b} association holds in {', '.join(s_names)} (V up to {vmax:.2f}) but not in "
                      f"{', '.join(a_names)}: a shortcut that breaks on a held-out domain",
                detail="Per-domain bias-corrected Cramer's V with bootstrap intervals; a model trained where the "
                       "association holds can rely on it and fail where it does not.",
                columns=[a, b, "domain"], groups=s_names,
                evidence={
                    "strong_in": {str(r.within): [r.value, r.ci_low, r.ci_high, r.q] for r in strong.itertuples()},
                    "absent_in": {str(r.within): [r.value, r.ci_low, r.ci_high, r.q] for r in absent.itertuples()},
                    "id_extra": "conditional",
                },
            ))
        return out
