"""Calibration: reliability diagrams and ECE per group."""

import altair as alt
import dashlib as dl
import pandas as pd
import streamlit as st

from audit import views

run = dl.current_run()
st.title("Calibration")
st.caption(dl.esc(run.path))
dl.take_link("calibration")  # a finding's link on the Overview preselects its grouping
SCOPES = {"ood": "held-out", "id": "in-domain", "all": "both"}
SCOPE_TEXT = {
    "ood": "test predictions on each fold's held-out domain (scope ood)",
    "id": "test predictions on the test samples of the domains each fold trained on (scope id)",
    "all": "held-out and in-domain test predictions together (scope all)",
}

with dl.guard():
    if run.task == "segment":
        st.info(
            "Calibration is reported for classifiers; this is a segmentation run. See Per-group performance for "
            "IoU by group."
        )
        st.stop()
    cal = dl.table(run, "metrics/calibration.parquet")
    groups = dl.table(run, "metrics/groups.parquet")
    if cal is None or cal.empty:
        if views.has_model(run):
            st.info(
                f"No calibration table in this run (metrics/calibration.parquet); re-run `audit metrics {run.path}`."
            )
        else:
            dl.no_model(run)
        st.stop()

    c = st.columns(5)
    with c[0]:
        model = dl.select("Model", views.options(cal, "model"), key="cl_model")
    with c[1]:
        protocol = dl.select("Protocol", views.options(cal, "protocol"), key="cl_protocol", prefer=["lodo"])
    sub = cal
    for col, val in (("model", model), ("protocol", protocol)):
        if val and col in sub.columns:
            sub = sub[sub[col].astype(str) == val]
    # one curve per group needs one fold and one scope: older tables without these columns hold one curve each
    fold = scope = None
    with c[2]:
        if "fold" in sub.columns:
            fold = dl.select(
                "Fold",
                views.options(sub, "fold", first=["all"]),
                key="cl_fold",
                prefer=["all"],
                help="'all' pools the predictions of every fold; pick one held-out domain's fold to see it alone.",
            )
            sub = sub[sub["fold"].astype(str) == fold] if fold else sub
    with c[3]:
        if "scope" in sub.columns:
            scope = dl.select(
                "Scope",
                views.options(sub, "scope", first=["ood", "id", "all"]),
                key="cl_scope",
                prefer=["ood", "all"],
                format_func=lambda v: f"{v} ({SCOPES[v]})" if v in SCOPES else v,
                help="ood: test predictions on the held-out domain of each fold; id: on the training domains' "
                "test samples; all: both.",
            )
            sub = sub[sub["scope"].astype(str) == scope] if scope else sub
    with c[4]:
        by = dl.select(
            "Grouping", views.options(sub, "by", first=["overall"]), key="cl_by", prefer=["domain", "overall"]
        )
    what = (
        "; ".join(
            x
            for x in (
                "pooled over every fold" if fold == "all" else f"fold {dl.esc(fold)}" if fold else "",
                SCOPE_TEXT.get(scope, f"scope {dl.esc(scope)}") if scope else "",
            )
            if x
        )
        or "the curves as stored (this table has no fold or scope column)"
    )
    st.caption(f"Reliability of {dl.esc(model or '?')} ({dl.esc(protocol or '?')}): {what}.")
    counts = (
        sub[sub["by"].astype(str) == by].groupby("group", dropna=False)["count"].sum().sort_values(ascending=False)
        if by
        else pd.Series(dtype=int)
    )
    all_groups = [str(g) for g in counts.index]
    chosen = st.multiselect("Groups", all_groups, default=all_groups[:6], key=f"cl_groups_{by}")
    curves = views.calibration_curves(sub, by=by, groups=chosen)
    if curves.empty:
        st.info("No reliability points for this selection.")
    else:
        diag = (
            alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]}))
            .mark_line(color="#999", strokeDash=[4, 4])
            .encode(x="x:Q", y="y:Q")
        )
        base = alt.Chart(curves).encode(
            x=alt.X("confidence:Q", title="mean confidence in bin", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("accuracy:Q", title="accuracy in bin", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("group:N", title=by, scale=dl.category_scale()),
        )
        line = base.mark_line()
        pts = base.mark_circle().encode(
            size=alt.Size("count:Q", title="samples in bin", scale=alt.Scale(range=[15, 300])),
            tooltip=[
                "group:N",
                "bin:O",
                alt.Tooltip("confidence:Q", format=".3f"),
                alt.Tooltip("accuracy:Q", format=".3f"),
                alt.Tooltip("count:Q", format=","),
            ],
        )
        st.altair_chart((diag + line + pts).properties(height=420), width="stretch")
        st.caption(
            "Points below the dashed diagonal: over-confident in that bin (accuracy lower than the confidence "
            "it claimed); "
            "points above it: under-confident (right more often than it claimed). On the diagonal: calibrated. "
            "Point size = samples in the bin."
        )

    if groups is not None and not groups.empty:
        eces = [m for m in views.options(groups, "metric") if m.lower().startswith("ece")]
        if eces:
            st.subheader("Expected calibration error per group")
            g = groups
            for col, val in (("model", model), ("protocol", protocol)):
                if val and col in g.columns:
                    g = g[g[col].astype(str) == val]
            # the same fold and scope as the curves above where the per-group table has them
            g_fold = (
                fold
                if fold and "fold" in g.columns and (g["fold"].astype(str) == fold).any()
                else ("all" if "fold" in g.columns and (g["fold"].astype(str) == "all").any() else None)
            )
            g_scope = (
                scope
                if scope and "scope" in g.columns and (g["scope"].astype(str) == scope).any()
                else next(
                    (s for s in ("ood", "all", "id") if "scope" in g.columns and (g["scope"].astype(str) == s).any()),
                    None,
                )
            )
            bars = views.group_bars(g, by=by or "overall", metric=eces[0], fold=g_fold, scope=g_scope)
            if bars.empty:
                st.info("No ECE rows for this grouping.")
            else:
                st.altair_chart(dl.ci_bars(bars, x_title=f"{eces[0]} (lower is better; 95% interval)"), width="stretch")
                st.caption(
                    f"Fold {dl.esc(g_fold or '?')}, scope {dl.esc(g_scope or '?')}. Sorted worst-first (highest ECE "
                    "first); grey groups have fewer than min_n samples. ECE counts over- and under-confidence alike."
                )
