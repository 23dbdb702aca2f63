"""The model sections of ``report.html``: per-group metrics, generalization, fairness and calibration."""

from __future__ import annotations

import html

import pandas as pd

from audit.headline import SCOPE_PREFERENCE, prefer, primary_metric
from audit.report.blocks import MAX_GROUPS, e, section, table
from audit.report.markdown import metric_label
from audit.report.svg import heatmap, interval_chart, reliability

__all__ = ["sanity_section", "group_metrics_section", "generalization_section", "fairness_section",
           "calibration_section"]

_SANITY_COLS = ["model", "protocol", "fold", "seed", "scope", "metric", "class", "value", "ci_low", "ci_high",
                "baseline", "baseline_name", "n", "status"]


def sanity_section(sanity: pd.DataFrame | None) -> str:
    """Did each model learn anything? Its in-domain numbers against trivial baselines (metrics/sanity.parquet)."""
    if sanity is None or sanity.empty or "status" not in sanity.columns:
        return ""
    per_model = sanity.groupby("model", sort=True)["status"].agg(
        lambda s: "degenerate" if (s == "degenerate").any() else "partial" if (s == "partial").any() else "ok")
    lines = []
    for model, status in per_model.items():
        reason = sanity.loc[(sanity["model"] == model) & (sanity["status"] != "ok"), "reason"]
        why = f": {e(reason.iloc[0])}" if len(reason) else ""
        if status == "degenerate":
            lines.append(f"<li><b>{e(model)}: learned nothing usable</b>{why}. Its generalization, fairness and "
                         "worst-group numbers are <b>not interpretable</b> and no finding is drawn from them.</li>")
        elif status == "partial":
            lines.append(f"<li><b>{e(model)}</b> beats its baseline but misses some class{why}.</li>")
        else:
            lines.append(f"<li><b>{e(model)}</b> beats its trivial baselines in every fold.</li>")
    body = ("<p class='note'>Each model's in-domain numbers against a trivial baseline (majority class or chance for "
            "classification, all-background or all-foreground for segmentation), with 95% intervals.</p>"
            f"<ul>{''.join(lines)}</ul>" + table(sanity, [c for c in _SANITY_COLS if c in sanity.columns]))
    return section("sanity", "Model sanity: did the model learn?", body)


def group_metrics_section(groups: pd.DataFrame | None, task: str) -> str:
    if groups is None or groups.empty:
        return ""
    metric = primary_metric(groups["metric"], task)
    if metric is None:
        return ""
    body = [
        f"<p class='note'>Primary metric <b>{e(metric_label(metric))}</b> with 95% intervals; grey = fewer samples "
        "than min_n (no verdict). Dashed line: overall value.</p>"
    ]
    g = groups[groups["metric"] == metric]
    if "fold" in g.columns and (g["fold"] == "all").any():
        g = g[g["fold"] == "all"]
    for (model, protocol), gm in g.groupby(["model", "protocol"], sort=False):
        scopes = [s for s in SCOPE_PREFERENCE if s in set(gm["scope"])] if "scope" in gm.columns else [None]
        for scope in scopes[:2]:
            gs = gm[gm["scope"] == scope] if scope else gm
            overall = gs[gs["by"] == "overall"]["value"]
            ref = float(overall.iloc[0]) if len(overall) else None
            body.append(
                f"<h3>{e(model)} / {e(protocol)} / {e(scope or 'all')}"
                f"{' (out-of-domain)' if scope == 'ood' else ' (in-domain)' if scope == 'id' else ''}</h3>"
            )
            for by, gb in gs[gs["by"] != "overall"].groupby("by", sort=False):
                gb = gb.sort_values("value")
                rows = [
                    (str(r["group"]), r["value"], r["ci_low"], r["ci_high"], r["n"], str(r.get("status", "ok")) != "ok")
                    for _, r in gb.head(MAX_GROUPS).iterrows()
                ]
                body.append(f"<p><b>{e(by)}</b></p>" + interval_chart(rows, lo=0.0, hi=1.0, ref=ref))
    other = prefer(groups[groups["metric"] != metric], "fold", ("all",))
    if len(other):
        o = other[other["by"] == "overall"] if (other["by"] == "overall").any() else other
        body.append(
            "<h3>Other metrics (overall)</h3>"
            + table(o, ["model", "protocol", "scope", "metric", "value", "ci_low", "ci_high", "n", "status"])
        )
    return section("group-metrics", "Per-group metrics", "".join(body))


def generalization_section(gen: pd.DataFrame | None, transfer: pd.DataFrame | None) -> str:
    if gen is None or gen.empty:
        return ""
    rows = []
    # one chart for the primary metric (the table below has every metric)
    metric = primary_metric(gen["metric"], "segment" if gen["metric"].isin(["miou", "fg_dice"]).any() else "classify") \
        if "metric" in gen.columns else None
    chart = gen[gen["metric"] == metric] if metric else gen
    for _, r in chart.iterrows():
        multi = "model" in chart.columns and chart["model"].nunique() > 1
        lab = (f"{r.get('model', '')} " if multi else "") + f"held-out {r['test_domain']}"
        rows.append((f"{lab}: in", r["in_domain"], r.get("in_ci_low"), r.get("in_ci_high"), r.get("n_in"), False))
        rows.append((f"{lab}: out", r["out_domain"], r.get("out_ci_low"), r.get("out_ci_high"), r.get("n_out"), "alt"))
    shown = html.escape(metric_label(metric) if metric else "the metric")
    withheld = sorted(gen.loc[~gen["interpretable"].astype("boolean").fillna(True), "model"].astype(str).unique()) \
        if "interpretable" in gen.columns else []
    warn = (f"<p class='note'><b>Not interpretable:</b> {e(', '.join(withheld))} did not beat a trivial baseline "
            "(see Model sanity); its gaps are shown for completeness only.</p>") if withheld else ""
    body = [
        warn,
        f"<p class='note'>{shown}: in-domain (test samples of the training domains, blue) vs out-of-domain (the "
        "held-out domain, grey) with 95% intervals; the table has every metric.</p>",
        interval_chart(rows[: 2 * MAX_GROUPS], lo=0.0, hi=1.0),
        table(
            gen,
            [
                "model",
                "protocol",
                "fold",
                "train_domains",
                "test_domain",
                "metric",
                "in_domain",
                "n_in",
                "out_domain",
                "n_out",
                "gap",
                "gap_ci_low",
                "gap_ci_high",
            ],
        ),
    ]
    if transfer is not None and len(transfer):
        piv = transfer.pivot_table(index="train_domain", columns="test_domain", values="value", aggfunc="mean")
        body.append(
            "<h3>Transfer matrix (train domain -> test domain)</h3>"
            + heatmap([str(x) for x in piv.index], [str(x) for x in piv.columns], piv.to_numpy().tolist())
        )
    return section("generalization", "Generalization: in-domain vs out-of-domain", "".join(body))


def fairness_section(fair: pd.DataFrame | None) -> str:
    if fair is None or fair.empty:
        return ""
    body = [
        '<p class="note">A gap is the largest minus the smallest group rate (a ratio: smallest over largest), '
        "for attributes; domains are in the generalization section. Such a gap is biased away from parity by "
        "chance, and so is its bootstrap interval, which therefore rarely includes 0: judge the evidence by the "
        "findings (their q-values), not by whether the interval excludes 0. Most serious first; undefined gaps "
        "(fewer than two groups with enough samples) come last.</p>"
    ]
    fair = prefer(prefer(fair, "fold", ("all",)), "scope", SCOPE_PREFERENCE)
    if "attribute" in fair.columns:  # fairness is about attributes; the domain rows stay in the run directory
        attrs = ~fair["attribute"].astype(str).str.contains(r"\bdomain\b", regex=True)
        fair = fair[attrs] if attrs.any() else fair
    ratio = fair["metric"].astype(str).str.endswith("ratio")
    # worst first: the largest lower bound of a difference, the smallest upper bound of a ratio
    key = pd.to_numeric(fair["ci_low"], errors="coerce").fillna(pd.to_numeric(fair["value"], errors="coerce"))
    key = key.where(
        ~ratio, -pd.to_numeric(fair["ci_high"], errors="coerce").fillna(pd.to_numeric(fair["value"], errors="coerce"))
    )
    fair = fair.assign(_k=key).sort_values(
        ["metric", "_k"], ascending=[True, False], na_position="last", kind="mergesort"
    )
    for metric, f in fair.groupby("metric", sort=False):
        f = prefer(f, "class", ("worst", "binary"))
        rows = [
            (f"{r['attribute']} ({r.get('class', '')})", r["value"], r["ci_low"], r["ci_high"], r["n"], False)
            for _, r in f.head(MAX_GROUPS).iterrows()
        ]
        lo = 0.0 if not metric.endswith("ratio") else None
        body.append(f"<h3>{e(metric)}</h3>" + interval_chart(rows, lo=lo, hi=1.0))
    body.append(
        table(
            fair.drop(columns="_k"),
            ["model", "protocol", "scope", "attribute", "metric", "class", "value", "ci_low", "ci_high", "n", "groups"],
        )
    )
    return section("fairness", "Fairness gaps", "".join(body))


_SCOPE_WORDS = {"ood": "held-out (out-of-domain)", "id": "in-domain", "all": "all"}


def calibration_section(cal: pd.DataFrame | None, groups: pd.DataFrame | None) -> str:
    if cal is None or cal.empty:
        return ""
    body = []
    if groups is not None and "metric" in groups.columns:
        ece = groups[(groups["metric"] == "ece") & (groups["by"] == "overall")]
        ece = prefer(ece, "fold", ("all",))
        if len(ece):
            body.append(
                table(ece, ["model", "protocol", "scope", "value", "ci_low", "ci_high", "n"], headers={"value": "ECE"})
            )
    c = cal[cal["by"] == "overall"] if "by" in cal.columns and (cal["by"] == "overall").any() else cal
    c = prefer(prefer(c, "fold", ("all",)), "scope", SCOPE_PREFERENCE)  # one curve per model, pooled folds
    scope = str(c["scope"].iloc[0]) if "scope" in c.columns and len(c) else "all"
    body.append(
        f'<p class="note">Reliability of the pooled folds, {e(_SCOPE_WORDS.get(scope, scope))} test rows: '
        "points below the diagonal are over-confident bins, above it under-confident; dot area = rows.</p>"
    )
    charts = []
    for key, g in list(c.groupby(["model", "protocol"], sort=False))[:4]:
        g = g.sort_values("bin")
        charts.append(
            f"<div><p><b>{e(' / '.join(map(str, key)))}</b></p>"
            + reliability(g["confidence"].tolist(), g["accuracy"].tolist(), g["count"].tolist())
            + "</div>"
        )
    body.append('<div style="display:flex;gap:20px;flex-wrap:wrap">' + "".join(charts) + "</div>")
    return section("calibration", "Calibration", "".join(body))
