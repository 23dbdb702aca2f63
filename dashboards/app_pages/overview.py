"""Overview: dataset size, domains, models, headline numbers and the ranked findings."""

import dashlib as dl
import streamlit as st

from audit.report.markdown import metric_label

run = dl.current_run()
st.title("Overview")
st.caption(dl.esc(run.path))

with dl.guard():
    h = dl.overview(run)
    c = st.columns(5)
    c[0].metric("Samples", dl.fmt(h.get("n"), 0, missing="?"))
    c[1].metric("Task", str(h.get("task") or "?"))
    c[2].metric("Domains", len(h.get("domains") or []))
    c[3].metric("Classes", len(h.get("classes") or []))
    c[4].metric("Models", len(h.get("models") or []))
    if h.get("domains"):
        st.caption(
            "Domains: " + ", ".join(dl.esc(d) for d in h["domains"][:30]) + (" …" if len(h["domains"]) > 30 else "")
        )
    if h.get("models"):
        st.caption("Models: " + ", ".join(dl.esc(m) for m in h["models"]))

    for d in h.get("degenerate_models") or []:
        st.error(
            f"Model {dl.esc(d['model'])} learned nothing usable ({dl.esc(d.get('reason') or '')}). Its gaps, "
            "worst groups and fairness numbers are not interpretable and no finding is drawn from them: train "
            "longer, use a pretrained backbone (`audit models`) or a loss for rare classes."
        )
    st.subheader("Headline numbers")
    cols = st.columns(4)
    worst, overall = h.get("worst_group"), h.get("overall")
    with cols[0]:
        if worst:
            st.metric(
                f"Worst group ({dl.esc(metric_label(worst['metric']))})",
                dl.fmt(worst.get("value")),
                delta=(
                    f"{dl.fmt(worst['value'] - overall['value'])} vs overall"
                    if overall and worst.get("value") is not None and overall.get("value") is not None
                    else None
                ),
                delta_color="normal",
                help="Lowest value among groups with enough samples (n ≥ min_n).",
            )
            st.caption(
                f"{dl.esc(worst.get('by'))} = {dl.esc(worst.get('group'))} · 95% CI "
                f"{dl.fmt_ci(worst.get('ci_low'), worst.get('ci_high'))} · n={dl.fmt(worst.get('n'), 0, missing='?')}"
            )
        else:
            st.metric("Worst group", "—")
            st.caption("needs a model: `audit train` then `audit metrics`")
    with cols[1]:
        gap = h.get("largest_gap")
        if gap:
            st.metric(f"Largest generalization gap ({dl.esc(metric_label(gap.get('metric')))})", dl.fmt(gap.get("gap")))
            st.caption(
                f"held out {dl.esc(gap.get('test_domain'))}: in {dl.fmt(gap.get('in_domain'))} vs out "
                f"{dl.fmt(gap.get('out_domain'))} · 95% CI {dl.fmt_ci(gap.get('ci_low'), gap.get('ci_high'))} · "
                f"n={dl.fmt(gap.get('n_out'), 0, missing='?')} held out"
                + (f", {dl.fmt(gap.get('n_in'), 0, missing='?')} in-domain" if gap.get("n_in") is not None else "")
            )
        else:
            st.metric("Largest generalization gap", "—")
            st.caption("needs held-out-domain training")
    with cols[2]:
        assoc = h.get("biggest_association")
        if assoc:
            st.metric(f"Biggest association ({dl.esc(assoc.get('stat') or 'V')})", dl.fmt(assoc.get("value")))
            st.caption(
                f"{dl.esc(assoc.get('a'))} ~ {dl.esc(assoc.get('b'))} · 95% CI "
                f"{dl.fmt_ci(assoc.get('ci_low'), assoc.get('ci_high'))} · n={dl.fmt(assoc.get('n'), 0, missing='?')}"
            )
        else:
            st.metric("Biggest association", "—")
            st.caption("needs the profile stage")
    with cols[3]:
        if overall:
            st.metric(f"Overall ({dl.esc(metric_label(overall['metric']))})", dl.fmt(overall.get("value")))
            st.caption(
                f"95% CI {dl.fmt_ci(overall.get('ci_low'), overall.get('ci_high'))} · "
                f"n={dl.fmt(overall.get('n'), 0, missing='?')}"
            )
            bal = h.get("overall_balanced")
            if bal:
                st.caption(
                    f"classes imbalanced {bal['class_ratio']:.1f}:1 · balanced accuracy {dl.fmt(bal.get('value'))} "
                    f"· 95% CI {dl.fmt_ci(bal.get('ci_low'), bal.get('ci_high'))}"
                )
        else:
            st.metric(
                "Unreadable files",
                dl.fmt(h.get("n_unreadable"), 0, missing="?") if h.get("n_unreadable") is not None else "—",
            )
    for p in h.get("problems") or []:
        st.warning(dl.esc(p))

    st.subheader("Findings")
    fdf = dl.findings(run)
    counts = h.get("findings") or {}
    st.markdown(
        f":red[**{counts.get('critical', 0)} critical**] · :orange[**{counts.get('warning', 0)} warning**] · "
        f":blue[**{counts.get('info', 0)} info**]"
    )
    if fdf.empty:
        st.info("No findings recorded for this run.")
    else:
        sev = st.multiselect(
            "Severity", ["critical", "warning", "info"], default=["critical", "warning", "info"], key="ov_sev"
        )
        shown = fdf[fdf["severity"].isin(sev)]
        top = shown.head(12)
        links = dl.finding_links(run)
        for _, f in top.iterrows():
            row = st.columns([1.1, 7, 1.8])
            color = dl.SEVERITY_COLOR.get(str(f["severity"]), "gray")
            row[0].markdown(f":{color}-badge[{dl.esc(f['severity'])}]")
            value = "" if f["value"] != f["value"] else f" · value {dl.fmt(f['value'], whole_from=2)}"
            if f["ci_low"] == f["ci_low"] or f["ci_high"] == f["ci_high"]:
                value += f" {dl.fmt_ci(f['ci_low'], f['ci_high'])}"
            n = "" if f["n"] is None or str(f["n"]) == "<NA>" else f" · n={dl.fmt(f['n'], 0, missing='?')}"
            row[1].markdown(f"**{dl.esc(f['title'])}**  \n{dl.esc(f['kind'])}{value}{n}")
            i = int(f["rank"]) - 1
            query = links[i] if 0 <= i < len(links) else {}
            row[2].page_link(
                dl.page(f["page"]),
                label=dl.PAGE_FILES[f["page"]][1].replace("Per-group performance", "Performance"),
                query_params=query or None,
                help=("Opens on " + ", ".join(f"{dl.esc(k)} {dl.esc(v)}" for k, v in query.items())) if query else None,
            )
        if len(shown) > len(top):
            st.caption(f"{len(shown) - len(top)} more in the table below.")
        with st.expander(f"All {len(shown)} findings as a table", expanded=False):
            st.dataframe(
                shown.drop(columns=["page"]),
                hide_index=True,
                width="stretch",
                column_config={
                    "value": st.column_config.NumberColumn(format="%.3f"),
                    "ci_low": st.column_config.NumberColumn(format="%.3f"),
                    "ci_high": st.column_config.NumberColumn(format="%.3f"),
                },
            )
            dl.download(shown, "findings.csv", key="dl_findings")

    st.subheader("Stages")
    st.dataframe(dl.views.stage_table(run), hide_index=True, width="stretch")
