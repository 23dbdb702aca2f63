"""What closes the gap: mitigation methods retrained under the run's protocol (``audit mitigate``) and re-audited
on the same held-out images, side by side with paired intervals and a verdict each (docs/mitigation.md)."""

import altair as alt
import dashlib as dl
import pandas as pd
import streamlit as st

from audit import views

VERDICT_SCALE = alt.Scale(domain=["helps", "no measurable effect", "hurts"], range=["#2e7d32", "#9e9e9e", "#c0392b"])
ICON = {"helps": ":green[helps]", "no measurable effect": ":gray[no measurable effect]", "hurts": ":red[hurts]"}

run = dl.current_run()
st.title("What closes the gap")
st.caption(dl.esc(run.path))

with dl.guard():
    view = dl.cached(views.mitigation_view, run)
    if view is None:
        if views.has_model(run):
            st.info(f"No mitigation experiments yet: run `audit mitigate {run.path} --method group_balance --method "
                    "groupdro` (methods: group_balance, reweight, groupdro, augment, dedup; `--groups COLUMN` balances "
                    "over an attribute instead of the domain). Each method retrains the model under the run's own "
                    "protocol and is re-audited on the same held-out images.")
        else:
            dl.no_model(run)
        st.stop()
    meta = dl.cached(views.mitigation_meta, run)
    notes = dl.cached(views.mitigation_notes, run)
    failed = notes[notes["error"] != ""] if len(notes) else notes
    counts = view["verdict"].value_counts()
    c = st.columns(4)
    c[0].metric("Methods compared", len(view))
    c[1].metric("Help", int(counts.get("helps", 0)))
    c[2].metric("No measurable effect", int(counts.get("no measurable effect", 0)))
    c[3].metric("Hurt", int(counts.get("hurts", 0)))
    if len(failed):
        st.error("Failed: " + "; ".join(f"{dl.esc(r['method'])}: {dl.esc(r['error'][:200])}"
                                        for r in failed.to_dict("records")))
    st.markdown(f"**Verdict rule.** {dl.esc(views.VERDICT_RULE)}")
    for r in view.to_dict("records"):
        st.markdown(f"**{dl.esc(r['method'])}** {ICON.get(r['verdict'], dl.esc(r['verdict']))} "
                    f"{dl.esc(r['sentence'].split(': ', 1)[-1])}")

    st.subheader("Methods side by side")
    table = pd.DataFrame({
        "method": view["method"], "verdict": view["verdict"], "worst group": view["worst_by"],
        "worst baseline": view["worst_baseline"], "worst mitigated": view["worst_mitigated"],
        "worst diff": view["worst_diff"],
        "worst 95% CI": [dl.fmt_ci(a, b) for a, b in zip(view["worst_ci_low"], view["worst_ci_high"], strict=True)],
        "held-out baseline": view["ood_baseline"], "held-out mitigated": view["ood_mitigated"],
        "held-out diff": view["ood_diff"],
        "held-out 95% CI": [dl.fmt_ci(a, b) for a, b in zip(view["ood_ci_low"], view["ood_ci_high"], strict=True)],
        "gap diff": view["gap_diff"], "train s": view["train_seconds"], "x baseline time": view["time_vs_baseline"],
    })
    st.dataframe(table, hide_index=True, width="stretch")
    groups = ", ".join(str(g).removeprefix("attr.") for g in meta.get("groups") or []) or "domain"
    st.caption(f"Differences are mitigated - baseline on the very same held-out images (groups: {dl.esc(groups)}), "
               f"with 95% intervals from a paired bootstrap ({dl.fmt(meta.get('n_boot'), 0, missing='?')} resamples, "
               "both models resampled together, clustered by the manifest's group ids when present): much tighter "
               "than two separate intervals.")

    st.subheader("Tradeoff: held-out average vs worst group")
    pts = view.dropna(subset=["ood_diff", "worst_diff"])
    if pts.empty:
        st.info("No method has both a held-out and a worst-group difference.")
    else:
        base = alt.Chart(pts).encode(color=alt.Color("verdict:N", scale=VERDICT_SCALE,
                                                     legend=alt.Legend(orient="top", title=None)))
        xt, yt = "held-out accuracy difference (95% CI)", "worst-group accuracy difference (95% CI)"
        x, y = alt.X("ood_diff:Q", title=xt), alt.Y("worst_diff:Q", title=yt)
        tip = ["method:N", "verdict:N", alt.Tooltip("ood_diff:Q", format="+.3f"),
               alt.Tooltip("worst_diff:Q", format="+.3f")]
        dots = base.mark_point(filled=True, size=90).encode(x=x, y=y, tooltip=tip)
        xerr = base.mark_errorbar(ticks=True).encode(x=alt.X("ood_ci_low:Q", title=xt), x2="ood_ci_high:Q", y=y)
        yerr = base.mark_errorbar(ticks=True).encode(y=alt.Y("worst_ci_low:Q", title=yt), y2="worst_ci_high:Q",
                                                     x=x)
        labels = base.mark_text(align="left", dx=8, dy=-8).encode(x=x, y=y, text="method:N")
        zero = pd.DataFrame({"v": [0.0]})
        rules = (alt.Chart(zero).mark_rule(strokeDash=[4, 4], color="#888").encode(x="v:Q")
                 + alt.Chart(zero).mark_rule(strokeDash=[4, 4], color="#888").encode(y="v:Q"))
        st.altair_chart((rules + xerr + yerr + dots + labels).properties(height=420), width="stretch")
        st.caption("Up and to the right helps on both; up and to the left buys the worst group with average "
                   "accuracy (the `mitigation_tradeoff` policy rule of `audit check` bounds that price).")

    st.subheader("Paired differences per metric")
    diffs = dl.cached(views.mitigation_diffs, run)
    metric = dl.select("Metric", views.options(diffs, "metric", first=["worst_group_accuracy", "worst_group_miou",
                                                                       "ood_accuracy", "ood_miou", "gap"]),
                       key="mg_metric")
    d = diffs[diffs["metric"] == metric] if metric else diffs.iloc[0:0]
    if len(d):
        bars = d.assign(label=d["method"] + " (" + d["by"] + ")", value=d["diff"], evidence=d["verdict"],
                        group=d["method"])
        st.altair_chart(dl.ci_bars(bars, x_title=f"{metric}: mitigated - baseline", color=("verdict", VERDICT_SCALE,
                                                                                           "verdict")),
                        width="stretch")
        st.dataframe(d.assign(interval=[dl.fmt_ci(a, b) for a, b in zip(d["ci_low"], d["ci_high"], strict=True)])[
            ["method", "by", "baseline", "mitigated", "diff", "interval", "n", "p", "verdict"]],
            hide_index=True, width="stretch", column_config=dl.pq_columns(d))
        st.caption("The verdict column of a single metric applies its direction (lower is better for gap and the "
                   "fairness differences); the method's verdict above reads worst-group and held-out rows only.")
    if len(notes):
        st.subheader("What each variant changed")
        st.dataframe(notes, hide_index=True, width="stretch")
    dl.download(diffs, "mitigations_summary.csv", key="mg_dl")
