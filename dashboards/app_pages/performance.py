"""Per-group performance: bars with 95% intervals sorted worst-first, n beside each; fairness gaps."""

import altair as alt
import dashlib as dl
import pandas as pd
import streamlit as st

from audit import views

run = dl.current_run()
st.title("Per-group performance")
st.caption(dl.esc(run.path))

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
        fold = dl.select("Fold", views.options(g, "fold", first=["all"]), key="pg_fold", prefer=["all"],
                         help="'all' pools every fold; pick one held-out domain's fold to see it alone.")
    g = g[g["fold"].astype(str) == fold] if fold else g
    with c[3]:
        scope = dl.select("Scope", views.options(g, "scope", first=["ood", "all", "id"]), key="pg_scope", prefer=["ood", "all"],
                          help="ood: held-out-domain test samples; id: in-domain test samples; all: both.")
    g = g[g["scope"].astype(str) == scope] if scope else g
    bys = [b for b in views.options(g, "by", first=["overall"]) if b != "overall"]
    with c[4]:
        by = dl.select("Grouping", bys, key="pg_by", prefer=["domain", "label"],
                       help="A column, or an intersection of columns joined with ' x '.")
    with c[5]:
        metric = dl.select("Metric", views.options(g, "metric"), key="pg_metric",
                           prefer=["accuracy", "miou", "balanced_accuracy", "macro_f1"])
    if not by or not metric:
        st.info("No per-group rows for this selection.")
        st.stop()

    bars = views.group_bars(g, by=by, metric=metric)
    overall = views.group_bars(g, by="overall", metric=metric)
    top = st.slider("Show the worst", 5, max(5, min(200, len(bars))), min(30, max(5, len(bars))), key="pg_top") if len(bars) > 5 else len(bars)
    shown = bars.head(top)
    higher = views.higher_is_better(metric)
    lo_hi = (0.0, 1.0) if shown["ci_high"].max(skipna=True) <= 1.0 and shown["ci_low"].min(skipna=True) >= 0 else None
    chart = dl.ci_bars(shown, x_title=f"{metric} (95% interval)", domain=lo_hi)
    if not overall.empty and overall["value"].notna().any():
        ov = overall.iloc[0]
        rule = alt.Chart(pd.DataFrame({"v": [float(ov["value"])]})).mark_rule(color="#2b8a3e", strokeDash=[4, 3]).encode(x=alt.X("v:Q", title=f"{metric} (95% interval)"))
        chart = chart + rule
        st.caption(
            f"Overall {dl.esc(metric)} {dl.fmt(ov['value'])} {dl.fmt_ci(ov['ci_low'], ov['ci_high'])}, "
            f"n={dl.fmt_n(ov['n'])} (green dashed line). Sorted worst-first ({'lowest' if higher else 'highest'} first)."
        )
    st.altair_chart(chart, width="stretch")
    n_insuff = int((bars["evidence"] == "insufficient").sum())
    n_empty = int((bars["evidence"] == "empty").sum())
    if n_insuff or n_empty:
        st.caption(
            f"Grey: {n_insuff} group(s) with fewer than min_n samples (no verdict drawn), {n_empty} empty group(s) "
            "(no value, shown as missing rather than 0)."
        )

    cols = [c for c in ("group", "value", "ci_low", "ci_high", "n", "status", "model", "protocol", "fold", "scope", "by", "metric") if c in bars.columns]
    st.dataframe(
        bars[cols], hide_index=True, width="stretch",
        column_config={k: st.column_config.NumberColumn(format="%.4f") for k in ("value", "ci_low", "ci_high")},
    )
    dl.download(bars[cols], f"groups_{by}_{metric}.csv".replace(" ", ""), key="dl_groups")

    fair = dl.table(run, "metrics/fairness.parquet")
    if fair is not None and not fair.empty:
        st.subheader("Fairness gaps")
        f = fair
        for col, val in (("model", model), ("protocol", protocol), ("fold", fold), ("scope", scope), ("attribute", by)):
            if val and col in f.columns and (f[col].astype(str) == val).any():
                f = f[f[col].astype(str) == val]
        st.caption("Demographic-parity and equalized-odds differences (0 = parity) and ratios (1 = parity), with 95% intervals.")
        cfg = {k: st.column_config.NumberColumn(format="%.4f") for k in ("value", "ci_low", "ci_high")}
        cfg.update({k: st.column_config.NumberColumn(format="%.2e") for k in ("p", "q") if k in f.columns})
        st.dataframe(f, hide_index=True, width="stretch", column_config=cfg)
