"""Compare runs: the headline and per-group numbers of two run directories, B - A with intervals."""

import altair as alt
import dashlib as dl
import pandas as pd
import streamlit as st

from audit import views
from audit.rundir import RunDir

run = dl.current_run()
st.title("Compare runs")

with dl.guard():
    runs, _ = dl.runs_and_default()
    if len(runs) < 2:
        st.info(
            "Only one run directory is available. Start the dashboard on a folder holding several runs "
            "(`audit dashboard runs/`) or put runs next to each other to compare them."
        )
        st.stop()
    name = lambda p: dl.short_name(p, runs)  # noqa: E731
    task = {r: (dl.cached_info(r, views.run_stamp(r)).get("dataset") or {}).get("task") for r in runs}
    model = {r: views.has_model(RunDir(r)) for r in runs}
    cur = str(run.path)
    # default to two runs of the same task: this run and a sibling (one with model results if this one has
    # them), else any two runs sharing a task; runs of different tasks report different metrics
    same = sorted(
        (r for r in runs if r != cur and task[r] == task.get(cur)), key=lambda r: (model[r] != model.get(cur), r)
    )
    pairs = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :] if task[a] == task[b]]
    pairs.sort(key=lambda ab: (not (model[ab[0]] and model[ab[1]]), runs.index(ab[0])))
    if same:
        a_pref, b_pref = same[0], cur
    elif pairs:
        a_pref, b_pref = pairs[0]
    else:
        a_pref, b_pref = next(r for r in runs if r != cur), cur
    if not pairs:
        st.info(
            "Nothing comparable: no two of these runs share a task ("
            + ", ".join(f"{dl.esc(name(r))}: {dl.esc(task[r] or '?')}" for r in runs[:12])
            + "). Runs of different tasks report different metrics; they are shown side by side below without "
            "differences."
        )
    elif not same:
        st.caption(
            f"No other run has this run's task ({dl.esc(task.get(cur) or '?')}); comparing two runs that share one."
        )
    c = st.columns(2)
    with c[0]:
        a_path = dl.select("Run A (baseline)", runs, key="cmp_a", prefer=[a_pref], format_func=name)
    with c[1]:
        b_path = dl.select("Run B", runs, key="cmp_b", prefer=[b_pref], format_func=name)
    ra, rb = RunDir.open(a_path), RunDir.open(b_path)
    if a_path == b_path:
        st.warning("Run A and run B are the same directory.")

    st.subheader("Headline")
    ha, hb = dl.overview(ra), dl.overview(rb)
    ma, mb = ha.get("metric"), hb.get("metric")
    comparable = task[a_path] == task[b_path] and not (ma and mb and ma != mb)
    table = views.compare_headline(ha, hb)
    count = table["kind"] == "count"

    def side(col: str) -> list[str]:
        return [dl.fmt(v, 0) if c else dl.fmt(v) for v, c in zip(table[col], count, strict=True)]

    def ci(prefix: str, value: str) -> list[str]:  # no interval for a count or a missing number
        return [
            "" if c or v != v else dl.fmt_ci(lo, hi)
            for v, lo, hi, c in zip(
                table[value], table[f"{prefix}_ci_low"], table[f"{prefix}_ci_high"], count, strict=True
            )
        ]

    one_unit = (table["A_unit"] == table["B_unit"]) | (table["A_unit"] == "") | (table["B_unit"] == "")
    cols = {"number": table["number"]}
    if one_unit.all():
        cols["metric"] = table["unit"]
    cols.update({"A": side("A"), "A 95% CI": ci("A", "A")})
    if not one_unit.all():
        cols["A metric"] = table["A_unit"]
    cols.update({"B": side("B"), "B 95% CI": ci("B", "B")})
    if not one_unit.all():
        cols["B metric"] = table["B_unit"]
    if comparable:
        cols["B - A"] = [
            dl.fmt(v, 0, signed=True) if c else dl.fmt(v) for v, c in zip(table["delta"], count, strict=True)
        ]
        cols["95% CI of B - A"] = ci("delta", "delta")
    cols.update({"A is about": table["A_what"], "B is about": table["B_what"]})
    st.dataframe(pd.DataFrame(cols), hide_index=True, width="stretch")
    if comparable:
        st.caption(
            "B - A with its 95% interval, combined from both runs' intervals (MOVER) where the numbers have one; "
            "a dash where the two runs report different metrics for that number."
        )
    else:
        st.warning(
            f"Run A reports {dl.esc(ma or task[a_path] or '?')} and run B {dl.esc(mb or task[b_path] or '?')}: "
            f"different primary "
            "metrics (or tasks), so their numbers are not comparable and no differences are shown. Each value "
            "is labelled "
            "with its own metric."
        )
        st.stop()

    ga, gb = dl.table(ra, "metrics/groups.parquet"), dl.table(rb, "metrics/groups.parquet")
    if ga is None or gb is None or ga.empty or gb.empty:
        st.info("Per-group comparison needs model metrics in both runs (`audit train` + `audit metrics`).")
        st.stop()
    st.subheader("Per-group numbers")
    common_metrics = [m for m in views.options(ga, "metric") if m in set(views.options(gb, "metric"))]
    common_by = [b for b in views.options(ga, "by", first=["overall"]) if b in set(views.options(gb, "by"))]
    if not common_metrics or not common_by:
        st.info("The two runs share no metric or grouping.")
        st.stop()
    c = st.columns(2)
    with c[0]:
        metric = dl.select("Metric", common_metrics, key="cmp_metric", prefer=["accuracy", "miou"])
    with c[1]:
        by = dl.select("Grouping", common_by, key="cmp_by", prefer=["domain", "overall"])
    d = views.compare_groups(ga, gb, metric=metric, by=by)
    for col, pref in (("fold", "all"), ("scope", "ood")):
        if col in d.columns and (d[col] == pref).any():
            d = d[d[col] == pref]
    if d.empty:
        st.info("No matching rows.")
        st.stop()
    d = d.copy()
    key_cols = [
        k for k in ("model", "protocol", "group") if k in d.columns and d[k].nunique(dropna=False) > 1 or k == "group"
    ]
    d["label"] = d[key_cols].astype(str).agg(" · ".join, axis=1)
    d["ci"] = [dl.fmt_ci(lo, hi) for lo, hi in zip(d["delta_ci_low"], d["delta_ci_high"], strict=True)]
    order = d["label"].tolist()
    base = alt.Chart(d).encode(y=alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=320)))
    pts = base.mark_point(filled=True, size=70).encode(
        x=alt.X("delta:Q", title=f"B - A ({metric}; 95% interval)"),
        color=alt.Color(
            "change:N",
            scale=alt.Scale(
                domain=["better", "worse", "unclear", "n/a"], range=["#2b8a3e", "#c92a2a", "#868e96", "#dee2e6"]
            ),
            legend=alt.Legend(orient="top", direction="horizontal"),
        ),
        tooltip=[
            "label:N",
            alt.Tooltip("value_a:Q", format=".3f", title="A"),
            alt.Tooltip("value_b:Q", format=".3f", title="B"),
            alt.Tooltip("delta:Q", format=".3f"),
            alt.Tooltip("ci:N", title="95% interval"),
            "change:N",
            "present:N",
        ],
    )
    err = base.mark_errorbar(ticks=True).encode(
        x=alt.X("delta_ci_low:Q", title=f"B - A ({metric}; 95% interval)"), x2="delta_ci_high:Q"
    )
    zero = alt.Chart(d.head(1)).mark_rule(color="#555").encode(x=alt.datum(0))
    st.altair_chart((zero + err + pts).properties(height=dl.rows_height(len(d), per=30, extra=150)), width="stretch")
    st.caption(
        "Interval of the difference combines each run's own 95% interval (MOVER); it assumes independent runs and is "
        "conservative (wider) when both runs evaluate the same samples. Green/red: the interval excludes 0."
    )
    show = [
        c
        for c in (
            "model",
            "protocol",
            "fold",
            "scope",
            "group",
            "value_a",
            "ci_low_a",
            "ci_high_a",
            "n_a",
            "value_b",
            "ci_low_b",
            "ci_high_b",
            "n_b",
            "delta",
            "delta_ci_low",
            "delta_ci_high",
            "change",
            "present",
        )
        if c in d.columns
    ]
    st.dataframe(
        d[show],
        hide_index=True,
        width="stretch",
        column_config={
            k: st.column_config.NumberColumn(format="%.4f") for k in show if k.startswith(("value", "ci_", "delta"))
        },
    )
    dl.download(d[show], "compare.csv", key="dl_cmp")
