"""Image statistics by domain and attribute -> ``covariate_shift``.

For every group of ``domain`` and of each attribute, each statistic of ``images.parquet`` (brightness,
contrast, saturation, colorfulness, sharpness, entropy) is compared with the rest of the readable images:
standardized mean difference (Cohen's d, pooled SD, normal-approximation 95% interval), two-sample
Kolmogorov-Smirnov statistic and p-value; BH q-values over all comparisons.

One finding per (column, group) whose largest shift has ``q < 0.05`` and ``|d| >= 0.5`` with ``n >= min_n``:
for a domain, warning from ``|d| >= 0.5`` and critical from ``|d| >= 1.2`` (a model trained elsewhere sees
out-of-distribution inputs); for an attribute, info (an attribute usually *is* visible in the image; it
matters when a model can use it, see the shortcut and association checks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st

from audit.findings import Finding
from audit.profile._stats import bh, smd, smd_ci
from audit.profile.base import Check, CheckOutput, Context, register

__all__ = ["ImageStats", "STATISTICS", "D_WARNING", "D_CRITICAL"]

STATISTICS = ("brightness", "contrast", "saturation", "colorfulness", "sharpness", "entropy", "noise")
D_WARNING, D_CRITICAL, Q_MAX = 0.5, 1.2, 0.05


@register
class ImageStats(Check):
    name = "image_stats"
    order = 40
    description = "per-domain/attribute shifts of brightness, contrast, saturation, colorfulness, sharpness, entropy"
    requires = ("images",)

    def skip_reason(self, ctx: Context) -> str | None:
        if not (ctx.has("domain") or ctx.attrs):
            return "no domain or attribute column"
        return super().skip_reason(ctx)

    def run(self, ctx: Context) -> CheckOutput:
        im = ctx.images
        m = ctx.manifest
        ok = im["readable"].to_numpy(bool)
        rows = []
        for by in [c for c in ("domain", *ctx.attrs) if ctx.has(c)]:
            col = m[by].astype("string")
            groups = sorted(col[ok].dropna().unique().tolist())
            if len(groups) < 2:
                continue
            for stat in STATISTICS:
                vals = im[stat].to_numpy(dtype=float)
                valid = ok & np.isfinite(vals) & col.notna().to_numpy()
                for g in groups:
                    ing = valid & (col == g).fillna(False).to_numpy()
                    rest = valid & ~ing
                    x, y = vals[ing], vals[rest]
                    d = smd(x, y)
                    lo, hi = smd_ci(d, len(x), len(y))
                    if len(x) >= 2 and len(y) >= 2:
                        ks = _st.ks_2samp(x, y)
                        ksv, p = float(ks.statistic), float(ks.pvalue)
                    else:
                        ksv = p = np.nan
                    rows.append({"by": by, "group": g, "statistic": stat, "effect": d, "ci_low": lo, "ci_high": hi,
                                 "ks": ksv, "p": p, "n": int(len(x)), "n_rest": int(len(y)),
                                 "mean": float(x.mean()) if len(x) else np.nan,
                                 "mean_rest": float(y.mean()) if len(y) else np.nan})
        cols = ["by", "group", "statistic", "effect", "ci_low", "ci_high", "ks", "p", "q", "n", "n_rest", "mean",
                "mean_rest"]
        tab = pd.DataFrame(rows, columns=[c for c in cols if c != "q"])
        tab["q"] = bh(tab["p"].to_numpy()) if len(tab) else []
        tab = tab[cols]
        return CheckOutput(tables={"image_stats_shift": tab}, findings=self._findings(tab, int(ctx.config.min_n)))

    @staticmethod
    def _findings(tab: pd.DataFrame, min_n: int) -> list[Finding]:
        out = []
        if tab.empty:
            return out
        sig = tab[(tab["q"] < Q_MAX) & (tab["effect"].abs() >= D_WARNING) & (tab["n"] >= min_n)]
        for (by, g), sub in sig.groupby(["by", "group"], sort=True):
            sub = sub.reindex(sub["effect"].abs().sort_values(ascending=False).index)
            top = sub.iloc[0]
            d = float(top["effect"])
            if by == "domain":
                sev = "critical" if abs(d) >= D_CRITICAL else "warning"
            else:
                sev = "info"
            parts = [f"{r.statistic} (d={r.effect:+.2f})" for r in sub.head(4).itertuples()]
            out.append(Finding(
                kind="covariate_shift", severity=sev, n=int(top["n"]), value=d,
                ci=[float(top["ci_low"]), float(top["ci_high"])], score=abs(d),
                title=f"{by}={g} images differ from the rest in {', '.join(parts)}",
                detail=f"largest shift: {top['statistic']} mean {top['mean']:.3g} vs {top['mean_rest']:.3g} "
                       f"(KS {top['ks']:.2f}, q={top['q']:.2g}); standardized mean difference vs the other groups.",
                columns=[by], groups=[str(g)],
                evidence={"statistic": str(top["statistic"]),
                          "effects": {r.statistic: [float(r.effect), float(r.ci_low), float(r.ci_high), float(r.q)]
                                      for r in sub.itertuples()},
                          "id_extra": ""},
            ))
        return out
