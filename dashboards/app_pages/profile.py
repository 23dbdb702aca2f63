"""Data profile: distributions, intersections, associations, image statistics, duplicates, broken files."""

import altair as alt
import dashlib as dl
import pandas as pd
import streamlit as st

from audit import views

run = dl.current_run()
st.title("Data profile")
st.caption(dl.esc(run.path))

if not run.has("profile"):
    st.info(f"This run has not been profiled yet: run `audit profile DATA --out {run.path}`.")
    st.stop()

min_n = (dl.cached_info(str(run.path), views.run_stamp(run)).get("config", {}).get("profile", {}) or {}).get(
    "min_n", 30
)
tabs = st.tabs(
    [
        "Distributions",
        "Intersections",
        "Associations",
        "Image statistics",
        "Duplicates & leakage",
        "Broken files",
        "Shortcuts",
    ]
)

# ------------------------------------------------------------------ distributions
with tabs[0], dl.guard():
    dist = dl.table(run, "profile/distribution.parquet")
    if dist is None or dist.empty:
        st.info("No distribution table (profile/distribution.parquet).")
    else:
        single, _ = views.distribution_columns(dist)
        imb = dl.table(run, "profile/imbalance.parquet")
        col = dl.select("Column", single, key="pf_dist_col", prefer=["label", "domain"])
        if col:
            d = views.distribution_bars(dist, col)
            d["status"] = d["status"].astype(str)
            chart = (
                alt.Chart(d)
                .mark_bar()
                .encode(
                    x=alt.X("n:Q", title="samples"),
                    y=alt.Y("group:N", sort=d["group"].tolist(), title=col, axis=alt.Axis(labelLimit=240)),
                    color=alt.Color(
                        "status:N",
                        scale=alt.Scale(domain=["ok", "under_min_n", "empty"], range=["#4c78a8", "#f08c00", "#ddd"]),
                        legend=alt.Legend(orient="top", direction="horizontal"),
                    ),
                    tooltip=[
                        "group:N",
                        alt.Tooltip("n:Q", format=","),
                        alt.Tooltip("share:Q", format=".1%"),
                        "status:N",
                    ],
                )
                .properties(height=dl.rows_height(len(d), per=30, extra=150))
            )
            st.altair_chart(chart, width="stretch")
            if imb is not None and not imb.empty:
                r = imb[imb["column"].astype(str) == col]
                if not r.empty:
                    r = r.iloc[0]
                    small = r.get("min_group")
                    n_small = d.loc[d["group"].astype(str) == str(small), "n"]
                    n_text = f" (n={dl.fmt(n_small.iloc[0], 0, missing='?')})" if len(n_small) else ""
                    st.caption(
                        f"{int(r.get('n_groups', 0))} groups · imbalance ratio "
                        f"{dl.fmt(r.get('imbalance_ratio'), 1)} · "
                        f"normalized entropy {dl.fmt(r.get('normalized_entropy'), 2)} · smallest: {dl.esc(col)} "
                        f"{dl.esc(small)}{n_text}"
                    )
            st.caption(f"Orange: fewer than min_n = {min_n} samples (too few to conclude anything about that group).")
        if imb is not None and not imb.empty:
            with st.expander("Imbalance of every column"):
                st.dataframe(imb, hide_index=True, width="stretch")

# ------------------------------------------------------------------ intersections
with tabs[1], dl.guard():
    dist = dl.table(run, "profile/distribution.parquet")
    _, inter = views.distribution_columns(dist) if dist is not None and not dist.empty else ([], [])
    if not inter:
        st.info("No two-way intersections in profile/distribution.parquet.")
    else:
        col = dl.select("Intersection", inter, key="pf_inter_col")
        cells = views.intersection_matrix(dist, col)
        cells["text"] = [
            f"{n:,}" + (" *" if s == "under_min_n" else "") for n, s in zip(cells["n"], cells["status"], strict=True)
        ]
        cells["under"] = cells["status"].isin(["under_min_n", "empty"])
        a, b = col.split(" x ", 1)
        st.altair_chart(
            dl.heatmap(
                cells,
                x="col",
                y="row",
                x_title=b,
                y_title=a,
                color="n",
                text="text",
                color_title="samples",
                stroke_col="under",
                tooltip=[
                    alt.Tooltip("row:N", title=a),
                    alt.Tooltip("col:N", title=b),
                    alt.Tooltip("n:Q", format=","),
                    alt.Tooltip("share:Q", format=".2%"),
                    "status:N",
                ],
            ),
            width="content",
        )
        st.caption(f"Outlined and starred cells: fewer than min_n = {min_n} samples, or none at all.")

# ------------------------------------------------------------------ associations
with tabs[2], dl.guard():
    assoc = dl.table(run, "profile/associations.parquet")
    if assoc is None or assoc.empty:
        st.info("No association table (profile/associations.parquet).")
    else:
        withins = views.options(assoc, "within")
        scope = st.selectbox(
            "Scope",
            ["whole dataset", *withins],
            key="pf_assoc_within",
            format_func=lambda w: w if w == "whole dataset" else f"within domain {w}",
        )
        m = views.association_matrix(assoc, within=None if scope == "whole dataset" else scope)
        if m.empty:
            st.info("No association for this scope.")
        else:
            m["text"] = [dl.fmt(v, 2) for v in m["value"]]
            m["ci"] = [dl.fmt_ci(lo, hi) for lo, hi in zip(m.get("ci_low"), m.get("ci_high"), strict=True)]
            tips = [
                "a:N",
                "b:N",
                alt.Tooltip("value:Q", title="Cramér's V", format=".3f"),
                alt.Tooltip("ci:N", title="95% interval"),
            ]
            tips += [alt.Tooltip(f"{c}:Q", format=".2g") for c in ("q",) if c in m.columns]
            tips += [alt.Tooltip("n:Q", format=",")] if "n" in m.columns else []
            st.altair_chart(
                dl.heatmap(
                    m,
                    x="b",
                    y="a",
                    x_title="column",
                    y_title="column",
                    color="value",
                    text="text",
                    tooltip=tips,
                    color_title="Cramér's V",
                    scheme="oranges",
                    domain=(0, 1),
                ),
                width="content",
            )
            st.caption(
                "Cramér's V between columns (0 = independent, 1 = one determines the other); hover a cell for "
                "its 95% interval and q-value."
            )
            show = assoc.copy()
            st.dataframe(
                show.sort_values("value", ascending=False),
                hide_index=True,
                width="stretch",
                column_config=dl.pq_columns(show),
            )

# ------------------------------------------------------------------ image statistics
with tabs[3], dl.guard():
    names = dl.table_columns(run, "profile/images.parquet")
    stats = [
        c
        for c in (
            "brightness",
            "contrast",
            "saturation",
            "colorfulness",
            "sharpness",
            "entropy",
            "width",
            "height",
            "bytes",
        )
        if c in names
    ]
    if not stats:
        st.info("No image statistics (profile/images.parquet).")
    else:
        groupables = [c for c in dl.manifest_group_columns(run) if c != "split"]
        c1, c2 = st.columns(2)
        with c1:
            stat = dl.select("Statistic", stats, key="pf_stat", prefer=["brightness"])
        with c2:
            by = dl.select("Split by", ["(none)", *groupables], key="pf_stat_by", prefer=["domain", "label"])
        hist = dl.cached(views.image_stat_histogram, run, stat=stat, by=None if by == "(none)" else by, bins=30)
        chart = (
            alt.Chart(hist)
            .mark_line(interpolate="step-after")
            .encode(
                x=alt.X("bin_start:Q", title=stat),
                y=alt.Y("share:Q", title="share of the group", axis=alt.Axis(format="%")),
                color=alt.Color("group:N", title=by, scale=dl.category_scale()),
                tooltip=[
                    "group:N",
                    alt.Tooltip("bin_start:Q", format=".3g"),
                    alt.Tooltip("count:Q", format=","),
                    alt.Tooltip("share:Q", format=".1%"),
                ],
            )
            .properties(height=300)
        )
        st.altair_chart(chart, width="stretch")
        shift = dl.table(run, "profile/image_stats_shift.parquet")
        if shift is not None and not shift.empty:
            st.markdown(
                "**Shift of image statistics** (standardized mean difference vs the rest, KS test, BH q-values)"
            )
            s = shift[shift["statistic"].astype(str) == stat] if "statistic" in shift.columns else shift
            st.dataframe(
                s.sort_values("effect", key=lambda x: x.abs(), ascending=False),
                hide_index=True,
                width="stretch",
                column_config=dl.pq_columns(s),
            )

# ------------------------------------------------------------------ duplicates
with tabs[4], dl.guard():
    dups = dl.table(run, "profile/duplicates.parquet")
    if dups is None or dups.empty:
        st.success("No duplicate pairs found.")
    else:
        n_exact = int((dups["kind"].astype(str) == "exact").sum())
        n_near = int((dups["kind"].astype(str) == "near").sum())
        n_leak = int(dups["cross_split"].fillna(False).astype(bool).sum()) if "cross_split" in dups.columns else 0
        n_conf = int(dups["label_conflict"].fillna(False).astype(bool).sum()) if "label_conflict" in dups.columns else 0
        c = st.columns(4)
        c[0].metric("Exact pairs", f"{n_exact:,}")
        c[1].metric("Near pairs", f"{n_near:,}")
        c[2].metric("Across splits (leakage)", f"{n_leak:,}")
        c[3].metric("Label conflicts", f"{n_conf:,}")
        f1, f2, f3 = st.columns(3)
        kinds = f1.multiselect("Kind", ["exact", "near"], default=["exact", "near"], key="pf_dup_kind")
        leak_only = f2.checkbox("Only pairs across splits", key="pf_dup_leak")
        conf_only = f3.checkbox("Only label conflicts", key="pf_dup_conf")
        pairs, total = dl.cached(
            views.duplicate_pairs, run, kinds=tuple(kinds), cross_split_only=leak_only,
            label_conflict_only=conf_only, limit=12,
        )
        st.caption(f"Showing {len(pairs)} of {total:,} pairs (leaking and conflicting pairs first).")
        for _, p in pairs.iterrows():
            with st.container(border=True):
                cols = st.columns([1, 1, 3])
                with cols[0]:
                    dl.image_or_note(run, p.get("a_filepath"), size=120)
                with cols[1]:
                    dl.image_or_note(run, p.get("b_filepath"), size=120)
                flags = []
                if bool(p.get("cross_split")):
                    flags.append(":red-badge[across splits]")
                if bool(p.get("label_conflict")):
                    flags.append(":red-badge[label conflict]")
                if str(p.get("attribute_conflicts") or ""):
                    flags.append(":orange-badge[attribute conflict]")
                cols[2].markdown(
                    f"**{dl.esc(views.duplicate_reason(p))}** {' '.join(flags)}  \n"
                    f"A: {dl.esc(p['a'])} · split {dl.esc(p.get('a_split'))} · label {dl.esc(p.get('a_label'))}  \n"
                    f"B: {dl.esc(p['b'])} · split {dl.esc(p.get('b_split'))} · label {dl.esc(p.get('b_label'))}"
                )

# ------------------------------------------------------------------ broken files
with tabs[5], dl.guard():
    images = dl.table(
        run,
        "profile/images.parquet",
        columns=["sample_id", "filepath", "readable", "error", "format", "bytes", "mask_readable", "mask_error"],
    )
    if images is None or images.empty:
        st.info("No per-image table (profile/images.parquet).")
    else:
        bad, total = views.broken_files(images)
        if total == 0:
            st.success(f"All {len(images):,} files are readable.")
        else:
            st.error(f"{total:,} of {len(images):,} files cannot be used.")
            st.dataframe(bad, hide_index=True, width="stretch")
            if total > len(bad):
                st.caption(f"First {len(bad):,} shown.")
            reasons = (
                bad["error"].astype("string").fillna("mask").value_counts()
                if "error" in bad.columns
                else pd.Series(dtype=int)
            )
            if len(reasons):
                st.caption("Reasons: " + ", ".join(f"{dl.esc(k)} ({v})" for k, v in reasons.items()))
    flagged, n_flagged, by_flag = views.flagged_rows(run)  # issue 23: kept rows, never opened / trained on
    if n_flagged:
        st.warning(
            f"{n_flagged:,} flagged manifest rows (kept, left out of training): "
            + ", ".join(f"{dl.esc(k)} ({v})" for k, v in by_flag.items())
        )
        st.dataframe(flagged, hide_index=True, width="stretch")

# ------------------------------------------------------------------ shortcuts
with tabs[6], dl.guard():
    sc = dl.table(run, "profile/shortcuts.parquet")
    if sc is None or sc.empty:
        st.info("No shortcut table (profile/shortcuts.parquet).")
    else:
        d = sc.copy()
        d["label"] = d["target"].astype(str) + " from " + d["features"].astype(str)
        d["value"] = pd.to_numeric(d["balanced_accuracy"], errors="coerce")
        d["evidence"] = "ok"
        d["group"] = d["label"]
        d = d.sort_values("value", ascending=False)
        d["label"] = [f"{lab}  (n={dl.fmt(n, 0, missing='?')})" for lab, n in zip(d["label"], d["n"], strict=True)]
        chance = (
            alt.Chart(d)
            .mark_tick(color="#c92a2a", thickness=2, size=18)
            .encode(
                x="chance:Q",
                y=alt.Y("label:N", sort=d["label"].tolist()),
                tooltip=[alt.Tooltip("chance:Q", format=".3f")],
            )
        )
        kinds = ["label or domain: shortcut risk", "attribute: expected if visible"]
        d["target_kind"] = [kinds[0] if t in ("label", "domain") else kinds[1] for t in d["target"].astype(str)]
        st.altair_chart(
            dl.ci_bars(
                d,
                x_title="balanced accuracy (cross-validated)",
                domain=(0, 1),
                color=("target_kind", alt.Scale(domain=kinds, range=["#e8590c", "#4c78a8"]), "target"),
            )
            + chance,
            width="stretch",
        )
        st.caption(
            "How well cheap image statistics or file properties predict each target (cross-validated); the red tick is "
            "chance. The label or the domain far above chance is a shortcut risk: a model can learn it from file "
            "format, size or global image statistics instead of the content. An attribute (attr.…) predictable from "
            "image statistics is expected when the attribute is visible in the image (a background colour, an ink); "
            "from file properties it points to how the files were collected."
        )
        # the warnings are the audit's own shortcut findings about the label or the domain (its thresholds, not ours)
        fdf = dl.findings(run)
        risky = fdf[(fdf["kind"] == "shortcut") & fdf["columns"].isin(["label", "domain"])] if not fdf.empty else fdf
        for _, f in risky.iterrows():
            st.warning(f"Shortcut risk ({dl.esc(f['severity'])}): {dl.esc(f['title'])}")
