"""Per-group performance: bars with 95% intervals sorted worst-first, n beside each; fairness gaps."""

import altair as alt
import dashlib as dl
import pandas as pd
import streamlit as st

from audit import views
from audit.report.markdown import metric_label

run = dl.current_run()
st.title("Per-group performance")
st.caption(dl.esc(run.path))
linked = dl.take_link("performance")  # a finding's link on the Overview preselects its grouping and metric

with dl.guard():
    groups = dl.table(run, "metrics/groups.parquet")
    if groups is None or groups.empty:
        dl.no_model(run)
        st.stop()

    c = st.columns(6)
    with c[0]:
        model = dl.select("Model", views.options(groups, "model"), key="pg_model")
    g = groups[groups["model"].astype(str) == model] if model and "model" in groups.columns else groups
    with c[1]:
        protocol = dl.select("Protocol", views.options(g, "protocol"), key="pg_protocol", prefer=["lodo"])
    g = g[g["protocol"].astype(str) == protocol] if protocol else g
    with c[2]:
        fold = dl.select(
            "Fold",
            views.options(g, "fold", first=["all"]),
            key="pg_fold",
            prefer=["all"],
            help="'all' pools every fold; pick one held-out domain's fold to see it alone.",
        )
    g = g[g["fold"].astype(str) == fold] if fold else g
    with c[3]:
        scope = dl.select(
            "Scope",
            views.options(g, "scope", first=["ood", "all", "id"]),
            key="pg_scope",
            prefer=["ood", "all"],
            help="ood: held-out-domain test samples; id: in-domain test samples; all: both.",
        )
    g = g[g["scope"].astype(str) == scope] if scope else g
    bys = [b for b in views.options(g, "by", first=["overall"]) if b != "overall"]
    with c[4]:
        by = dl.select(
            "Grouping",
            bys,
            key="pg_by",
            prefer=["domain", "label"],
            help="A column, or an intersection of columns joined with ' x '.",
        )
    with c[5]:
        metric = dl.select(
            "Metric",
            views.options(g, "metric"),
            key="pg_metric",
            prefer=["accuracy", "miou", "balanced_accuracy", "macro_f1"],
            format_func=metric_label,
        )
    if not by or not metric:
        st.info("No per-group rows for this selection.")
        st.stop()
    if linked:
        st.caption(
            f"Opened on a finding's evidence: grouping {dl.esc(by)}, metric {dl.esc(metric)} (change them above)."
        )

    bars = views.group_bars(g, by=by, metric=metric)
    overall = views.group_bars(g, by="overall", metric=metric)
    top = (
        st.slider("Show the worst", 5, max(5, min(200, len(bars))), min(30, max(5, len(bars))), key="pg_top")
        if len(bars) > 5
        else len(bars)
    )
    shown = bars.head(top)
    higher = views.higher_is_better(metric)
    lo_hi = (0.0, 1.0) if shown["ci_high"].max(skipna=True) <= 1.0 and shown["ci_low"].min(skipna=True) >= 0 else None
    chart = dl.ci_bars(shown, x_title=f"{metric_label(metric)} (95% interval)", domain=lo_hi)
    if not overall.empty and overall["value"].notna().any():
        ov = overall.iloc[0]
        rule = (
            alt.Chart(pd.DataFrame({"v": [float(ov["value"])]}))
            .mark_rule(color="#2b8a3e", strokeDash=[4, 3])
            .encode(x=alt.X("v:Q", title=f"{metric_label(metric)} (95% interval)"))
        )
        chart = chart + rule
        st.caption(
            f"Overall {dl.esc(metric_label(metric))} {dl.fmt(ov['value'])} {dl.fmt_ci(ov['ci_low'], ov['ci_high'])}, "
            f"n={dl.fmt(ov['n'], 0, missing='?')} (green dashed line). Sorted worst-first "
            f"({'lowest' if higher else 'highest'} first)."
        )
    st.altair_chart(chart, width="stretch")
    n_insuff = int((bars["evidence"] == "insufficient").sum())
    n_empty = int((bars["evidence"] == "empty").sum())
    if n_insuff or n_empty:
        st.caption(
            f"Grey: {n_insuff} group(s) with fewer than min_n samples (no verdict drawn), {n_empty} empty group(s) "
            "(no value, shown as missing rather than 0)."
        )

    cols = [
        c
        for c in (
            "group",
            "value",
            "ci_low",
            "ci_high",
            "n",
            "status",
            "model",
            "protocol",
            "fold",
            "scope",
            "by",
            "metric",
        )
        if c in bars.columns
    ]
    st.dataframe(
        bars[cols],
        hide_index=True,
        width="stretch",
        column_config={k: st.column_config.NumberColumn(format="%.4f") for k in ("value", "ci_low", "ci_high")},
    )
    dl.download(bars[cols], f"groups_{by}_{metric}.csv".replace(" ", ""), key="dl_groups")

    fair = dl.table(run, "metrics/fairness.parquet")
    if fair is not None and not fair.empty:
        st.subheader("Fairness gaps")
        f = fair
        for col, val in (("model", model), ("protocol", protocol), ("fold", fold), ("scope", scope)):
            if val and col in f.columns and (f[col].astype(str) == val).any():
                f = f[f[col].astype(str) == val]
        attrs = views.options(f, "attribute")
        # fairness is about attributes: rows of the domain alone only when picked (or when there is nothing else)
        about_attrs = [a for a in attrs if "attr." in a] or attrs
        every = "(every attribute)"
        with st.columns(3)[0]:
            pick = dl.select(
                "Attribute",
                [every, *attrs],
                key=f"pg_fair_attr_{by}",
                prefer=[by] if by in about_attrs else [every],
                help="Defaults to the grouping above when it is an attribute in the fairness table; otherwise "
                "every attribute (rows of the domain alone only when you pick 'domain').",
            )
        shown_attrs = about_attrs if pick == every else [pick]
        f = f[f["attribute"].astype(str).isin(shown_attrs)].copy()
        # most serious first: differences by the lower end of their interval, then value; ratios after them, by how
        # far their upper end stays below parity (a ratio of two tiny rates can be 0 while the rates barely differ)
        ratio = f["metric"].astype(str).str.contains("ratio")
        lo, hi, val = (pd.to_numeric(f[c], errors="coerce") for c in ("ci_low", "ci_high", "value"))
        f["_ratio"], f["_sev"], f["_val"] = ratio, lo.where(~ratio, 1 - hi), val.where(~ratio, 1 - val)
        f = f.sort_values(
            ["_ratio", "_sev", "_val"], ascending=[True, False, False], na_position="last", kind="mergesort"
        )
        f = f.drop(columns=["_ratio", "_sev", "_val"])
        st.caption(
            f"Attribute{'s' if len(shown_attrs) > 1 else ''} shown: {', '.join(dl.esc(a) for a in shown_attrs)}"
            + (
                " (rows of the domain alone: pick 'domain')."
                if pick == every and "domain" in attrs and "domain" not in shown_attrs
                else "."
            )
            + " Demographic-parity and equalized-odds differences (0 = parity) and ratios (1 = parity), with "
            "95% intervals; "
            "most serious first: differences by the lower end of their interval, then ratios by the upper end "
            "of theirs."
        )
        cfg = {k: st.column_config.NumberColumn(format="%.4f") for k in ("value", "ci_low", "ci_high")}
        cfg.update({k: st.column_config.NumberColumn(format="%.2e") for k in ("p", "q") if k in f.columns})
        lead = [
            c
            for c in ("attribute", "metric", "class", "value", "ci_low", "ci_high", "p", "q", "n", "groups")
            if c in f.columns
        ]
        st.dataframe(
            f[lead + [c for c in f.columns if c not in lead]], hide_index=True, width="stretch", column_config=cfg
        )
