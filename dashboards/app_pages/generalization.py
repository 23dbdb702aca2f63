"""Generalization: in-domain vs out-of-domain per held-out domain with intervals; the transfer matrix."""

import altair as alt
import dashlib as dl
import pandas as pd
import streamlit as st

from audit import views
from audit.report.markdown import metric_label

run = dl.current_run()
st.title("Generalization")
st.caption(dl.esc(run.path))
dl.take_link("generalization")  # a finding's link on the Overview preselects its model and metric

with dl.guard():
    gen = dl.table(run, "metrics/generalization.parquet")
    transfer = dl.table(run, "metrics/transfer.parquet")
    if (gen is None or gen.empty) and (transfer is None or transfer.empty):
        if dl.views.has_model(run):
            st.info(
                "No generalization table: the model was not trained with held-out domains. "
                f"Train with `audit train {run.path} --protocol lodo` (needs a domain column) and re-run `audit "
                f"metrics`."
            )
        else:
            dl.no_model(run)
        st.stop()

    if gen is not None and not gen.empty:
        st.subheader("In-domain vs out-of-domain")
        c = st.columns(3)
        with c[0]:
            model = dl.select("Model", views.options(gen, "model"), key="gn_model")
        with c[1]:
            protocol = dl.select("Protocol", views.options(gen, "protocol"), key="gn_protocol", prefer=["lodo"])
        with c[2]:
            metric = dl.select("Metric", views.options(gen, "metric"), key="gn_metric",
                               prefer=["accuracy", "fg_dice", "miou"], format_func=metric_label)
        if "interpretable" in gen.columns:
            sel = gen[gen["model"].astype(str) == str(model)] if model is not None else gen
            if len(sel) and not sel["interpretable"].astype("boolean").fillna(True).all():
                st.error(
                    f"{dl.esc(model)} did not beat a trivial baseline (metrics/sanity.parquet): these gaps are not "
                    "interpretable, and no generalization finding was drawn from them."
                )
        rows, long = views.generalization_rows(gen, model=model, protocol=protocol, metric=metric)
        if long.empty:
            st.info("No rows for this selection.")
        else:
            long["ci"] = [dl.fmt_ci(lo, hi) for lo, hi in zip(long["ci_low"], long["ci_high"], strict=True)]
            order = rows["test_domain"].astype(str).drop_duplicates().tolist()
            y = alt.Y("test_domain:N", sort=order, title="held-out domain", axis=alt.Axis(labelLimit=240))
            base = alt.Chart(long).encode(
                y=y,
                yOffset=alt.YOffset("kind:N", sort=["in-domain", "out-of-domain"]),
                color=alt.Color(
                    "kind:N",
                    scale=alt.Scale(domain=["in-domain", "out-of-domain"], range=["#2b8a3e", "#c92a2a"]),
                    legend=alt.Legend(orient="top", direction="horizontal", title=None),
                ),
            )
            pts = base.mark_point(filled=True, size=70).encode(
                x=alt.X("value:Q", title=f"{metric_label(metric)} (95% interval)", scale=alt.Scale(zero=False)),
                tooltip=[
                    "test_domain:N",
                    "kind:N",
                    alt.Tooltip("value:Q", format=".3f"),
                    alt.Tooltip("ci:N", title="95% interval"),
                    alt.Tooltip("n:Q", format=","),
                ],
            )
            err = base.mark_errorbar(ticks=True).encode(
                x=alt.X("ci_low:Q", title=f"{metric_label(metric)} (95% interval)"), x2="ci_high:Q"
            )
            st.altair_chart(
                (err + pts).properties(height=dl.rows_height(len(order), per=56, extra=120)), width="stretch"
            )
            st.caption(
                "For each held-out domain: the model trained without it, scored on in-domain test samples it never "
                "saw (green) and on the held-out domain (red). Sorted by gap, largest first."
            )
            # the gap and its interval first (the table is wider than the page): then the two sides and the rest
            t = rows.copy()
            none = pd.Series(float("nan"), index=t.index)
            for label, v, lo, hi in (
                ("gap [95% CI]", "gap", "gap_ci_low", "gap_ci_high"),
                ("in-domain [95% CI]", "in_domain", "in_ci_low", "in_ci_high"),
                ("out-of-domain [95% CI]", "out_domain", "out_ci_low", "out_ci_high"),
            ):
                t[label] = [
                    f"{dl.fmt(a)} {dl.fmt_ci(b, c)}"
                    for a, b, c in zip(t.get(v, none), t.get(lo, none), t.get(hi, none), strict=True)
                ]
            show = [
                c
                for c in (
                    "test_domain",
                    "gap [95% CI]",
                    "n_out",
                    "p",
                    "out-of-domain [95% CI]",
                    "in-domain [95% CI]",
                    "n_in",
                    "train_domains",
                    "fold",
                    "seeds",
                    "gap",
                    "gap_ci_low",
                    "gap_ci_high",
                    "in_domain",
                    "in_ci_low",
                    "in_ci_high",
                    "out_domain",
                    "out_ci_low",
                    "out_ci_high",
                )
                if c in t.columns
            ]
            cfg = {
                k: st.column_config.NumberColumn(format="%.4f")
                for k in (
                    "gap",
                    "gap_ci_low",
                    "gap_ci_high",
                    "in_domain",
                    "in_ci_low",
                    "in_ci_high",
                    "out_domain",
                    "out_ci_low",
                    "out_ci_high",
                )
            }
            cfg.update(dl.pq_columns(t))
            cfg["test_domain"] = st.column_config.TextColumn("held-out domain")
            cfg["n_out"] = st.column_config.NumberColumn("n_out (held out)", format="%d")
            st.dataframe(t[show], hide_index=True, width="stretch", column_config=cfg)
            st.caption(
                "gap = in-domain - out-of-domain (positive: worse on the held-out domain); n_out: held-out test "
                "samples, n_in: in-domain test samples; p: two-sided bootstrap p-value of gap = 0."
            )
            dl.download(rows, "generalization.csv", key="dl_gen")

    if transfer is not None and not transfer.empty:
        st.subheader("Transfer matrix")
        c = st.columns(2)
        with c[0]:
            tmodel = dl.select("Model", views.options(transfer, "model"), key="gn_t_model")
        with c[1]:
            tmetric = dl.select(
                "Metric", views.options(transfer, "metric"), key="gn_t_metric", prefer=["accuracy", "miou"],
                format_func=metric_label,
            )
        t = views.transfer_matrix(transfer, model=tmodel, metric=tmetric)
        t["text"] = [dl.fmt(v, 2) for v in t["value"]]
        t["ci"] = [dl.fmt_ci(lo, hi) for lo, hi in zip(t["ci_low"], t["ci_high"], strict=True)]
        st.altair_chart(
            dl.heatmap(
                t,
                x="test_domain",
                y="train_domain",
                color="value",
                text="text",
                color_title=metric_label(tmetric) if tmetric else "value",
                scheme="greens",
                stroke_col="diagonal",
                tooltip=[
                    "train_domain:N",
                    "test_domain:N",
                    alt.Tooltip("value:Q", format=".3f"),
                    alt.Tooltip("ci:N", title="95% interval"),
                    alt.Tooltip("n:Q", format=","),
                ],
            ),
            width="content",
        )
        st.caption("Trained on one domain (rows), tested on each domain (columns); outlined cells are in-domain.")
