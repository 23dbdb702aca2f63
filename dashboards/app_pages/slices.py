"""Slices: regions of embedding space where a model errs, discovered on half the held-out rows and confirmed on
the other half (``audit slices``; docs/slices.md)."""

import dashlib as dl
import streamlit as st

from audit import views

run = dl.current_run()
st.title("Slices")
st.caption(dl.esc(run.path))
dl.take_link("slices")

with dl.guard():
    rows = dl.cached(views.slice_rows, run)
    if rows.empty:
        if run.has("slices/slices.parquet"):
            st.info("Slice discovery ran and found no candidate slice: no region of the embedding space where the "
                    "model errs clearly more than elsewhere.")
        elif views.has_model(run):
            st.info(f"No slices yet: run `audit slices {run.path}` (it needs the embeddings `audit train` stores, "
                    "or --embeddings FILE).")
        else:
            dl.no_model(run)
        st.stop()
    n_conf = int(rows["confirmed"].astype(bool).sum())
    c = st.columns(3)
    c[0].metric("Candidate slices", len(rows))
    c[1].metric("Confirmed", n_conf)
    c[2].metric("Largest confirmed gap", dl.fmt(rows.loc[rows["confirmed"].astype(bool), "gap"].max())
                if n_conf else "—")
    only = st.toggle("Confirmed only", value=n_conf > 0, key="sl_only")
    shown = rows[rows["confirmed"].astype(bool)] if only else rows
    table = shown.assign(interval=[dl.fmt_ci(lo, hi) for lo, hi in zip(shown["ci_low"], shown["ci_high"], strict=True)])
    st.dataframe(table[["slice_id", "confirmed", "n_confirm", "accuracy", "rest_accuracy", "gap", "interval", "q",
                        "description"]], hide_index=True, width="stretch")
    st.caption("gap = accuracy of the rest minus accuracy in the slice, on the confirmation half (rows never used "
               "to find the slice), with a 95% bootstrap interval; q = Benjamini-Hochberg over every candidate. "
               "Confirmed: q < 0.05, interval above 0 and at least min_n rows.")
    if shown.empty:
        st.stop()
    sid = dl.select("Slice", [str(s) for s in shown["slice_id"]], key="sl_slice")
    if sid:
        r = shown[shown["slice_id"].astype(str) == sid].iloc[0]
        st.subheader(f"{sid}")
        st.markdown(dl.esc(f"{r['description']}"))
        feats = dl.cached(views.slice_features, run, slice_id=sid)
        if not feats.empty:
            st.dataframe(feats, hide_index=True, width="stretch")
            st.caption("share: difference of the share of a value inside vs outside the slice; cohen_d: "
                       "standardized mean difference of an image statistic.")
        ex = dl.cached(views.slice_examples, run, slice_id=sid)
        st.markdown(f"**{len(ex)} example members** (nearest the slice centre; errors first)")
        cols = st.columns(8)
        for i, e in enumerate(ex.to_dict("records")):
            with cols[i % 8]:
                dl.image_or_note(run, e.get("filepath"), size=96)
                st.caption(("error" if not e.get("correct") else "correct") + " · " + dl.esc(e.get("sample_id")))
