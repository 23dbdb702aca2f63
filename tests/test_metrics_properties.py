"""Property tests (hypothesis) and behaviour of GroupReport, the bootstrap engine and input validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import metrics as M
from audit.errors import InputError, UsageError
from audit.metrics._bootstrap import _types, bootstrap_sums, cluster_sums, percentile_interval

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def labelled(draw):
    n = draw(st.integers(5, 80))
    k = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    yt = rng.integers(0, k, n)
    yp = np.where(rng.random(n) < 0.6, yt, rng.integers(0, k, n))
    groups = rng.choice(["g0", "g1", "g2"], n)
    clusters = rng.integers(0, max(2, n // 3), n)
    probs = rng.dirichlet(np.ones(k), n)
    return yt, yp, groups, clusters, probs, rng


def _report(yt, yp, groups, clusters, probs, **kw):
    return M.group_report(y_true=yt, y_pred=yp, y_prob=probs, classes=[str(i) for i in range(probs.shape[1])],
                          sensitive=pd.Series(groups, name="g"), clusters=clusters, n_boot=80, min_n=5, seed=3, **kw)


@SETTINGS
@given(labelled())
def test_invariant_to_row_order(case):
    yt, yp, groups, clusters, probs, rng = case
    a = _report(yt, yp, groups, clusters, probs).to_frame()
    perm = rng.permutation(len(yt))
    b = _report(yt[perm], yp[perm], groups[perm], clusters[perm], probs[perm]).to_frame()
    # point estimates, n and statuses exactly; intervals too (cluster types are ordered by content, not by row)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(labelled())
def test_invariant_to_renaming_groups(case):
    yt, yp, groups, clusters, probs, _ = case
    a = _report(yt, yp, groups, clusters, probs)
    mapping = {"g0": "zeta", "g1": "alpha", "g2": "mid"}  # changes the order of the groups too
    b = _report(yt, yp, np.array([mapping[x] for x in groups]), clusters, probs)
    fa = a.to_frame().assign(group=lambda d: d["group"].map(lambda x: mapping.get(x, x)))
    fb = b.to_frame()
    key = ["by", "group", "metric"]
    fa, fb = fa.sort_values(key).reset_index(drop=True), fb.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        fa[key + ["value", "n", "status"]], fb[key + ["value", "n", "status"]], check_exact=False, rtol=1e-12
    )
    # Wilson intervals do not depend on names; bootstrap intervals only through the resampling stream: close
    wil = fa["ci_method"] == "wilson"
    np.testing.assert_allclose(fa.loc[wil, "ci_low"], fb.loc[wil, "ci_low"], atol=1e-12)
    width = (fa["ci_high"] - fa["ci_low"]).to_numpy()
    wb = (fb["ci_high"] - fb["ci_low"]).to_numpy()
    ok = np.isfinite(width) & np.isfinite(wb)
    assert np.all(np.abs(width[ok] - wb[ok]) <= 0.5 * np.maximum(width[ok], 0.05) + 1e-9)


@SETTINGS
@given(labelled())
def test_intervals_contain_the_estimate(case):
    yt, yp, groups, clusters, probs, _ = case
    f = _report(yt, yp, groups, clusters, probs).to_frame()
    has = f["ci_low"].notna()
    assert (f.loc[has, "ci_low"] <= f.loc[has, "value"] + 1e-12).all()
    assert (f.loc[has, "value"] <= f.loc[has, "ci_high"] + 1e-12).all()


@SETTINGS
@given(labelled())
def test_empty_groups_are_nan_not_zero(case):
    yt, yp, groups, clusters, probs, _ = case
    cat = pd.Categorical(groups, categories=["g0", "g1", "g2", "never"])
    rep = _report(yt, yp, cat, clusters, probs)
    row = rep.by_group.loc["never"]
    assert row.isna().all()
    f = rep.to_frame()
    e = f[f["group"] == "never"]
    assert (
        (e["status"] == "empty").all() and (e["n"] == 0).all() and e["value"].isna().all() and e["ci_low"].isna().all()
    )


def test_min_n_gives_insufficient_evidence_with_value():
    yt = np.array([0, 1] * 50)
    yp = yt.copy()
    yp[-5:] = 1 - yp[-5:]
    g = np.array(["big"] * 90 + ["small"] * 10)
    rep = M.group_report(y_true=yt, y_pred=yp, sensitive=g, metrics="accuracy", min_n=30, n_boot=100)
    st_ = rep.status()["accuracy"]
    assert st_["big"] == "ok" and st_["small"] == "insufficient_evidence"
    assert np.isfinite(rep.by_group.loc["small", "accuracy"])
    assert rep.worst("accuracy")["group"] == "big"  # no verdict on a group of 10
    assert rep.worst("accuracy", eligible_only=False)["group"] == "small"


def test_wilson_for_independent_rows_bootstrap_for_clusters():
    rng = np.random.default_rng(0)
    yt = rng.integers(0, 2, 200)
    yp = np.where(rng.random(200) < 0.8, yt, 1 - yt)
    a = M.group_report(y_true=yt, y_pred=yp, metrics=["accuracy", "balanced_accuracy"], n_boot=200).to_frame()
    assert a.set_index("metric").loc["accuracy", "ci_method"] == "wilson"
    assert a.set_index("metric").loc["balanced_accuracy", "ci_method"] == "bootstrap"
    lo, hi = M.wilson_interval(int((yt == yp).sum()), 200)
    assert a.set_index("metric").loc["accuracy", "ci_low"] == pytest.approx(float(lo))
    b = M.group_report(y_true=yt, y_pred=yp, metrics="accuracy", clusters=np.arange(200) // 4, n_boot=200).to_frame()
    assert b["ci_method"].iloc[0] == "bootstrap"


def test_wilson_interval_reference_values():
    # statsmodels' proportion_confint(method="wilson") for 7/20 and 0/10
    lo, hi = M.wilson_interval(7, 20)
    assert float(lo) == pytest.approx(0.18117, abs=1e-4) and float(hi) == pytest.approx(0.56710, abs=1e-4)
    lo, hi = M.wilson_interval(0, 10)
    assert float(lo) == 0.0 and float(hi) == pytest.approx(0.27753, abs=1e-4)
    lo, hi = M.wilson_interval(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_bootstrap_types_are_exact():
    rng = np.random.default_rng(1)
    n, c = 500, 60
    cluster = rng.integers(0, c, n)
    cell = rng.integers(0, 3, n)
    m = cluster_sums(cluster, cell, 3, [(np.zeros(n, int), rng.integers(0, 2, n)), (np.ones(n, int), 1.0)], 2, c)
    types, counts, inverse = _types(m)
    assert counts.sum() == c
    # every cluster row equals exactly one type row
    dense = m.toarray()
    tdense = types.toarray()
    for row, t in zip(dense, inverse, strict=True):
        assert sum(np.array_equal(row, x) for x in tdense) == 1
        assert np.array_equal(row, tdense[t])
    # one row per cluster with discrete statistics: few types
    m1 = cluster_sums(np.arange(n), cell, 3, [(np.zeros(n, int), rng.integers(0, 2, n)), (np.ones(n, int), 1.0)], 2, n)
    assert _types(m1)[0].shape[0] <= 6


def test_bootstrap_matches_naive_loop_in_distribution():
    """The vectorized type/multinomial bootstrap has the same distribution as a naive loop over cluster resamples."""
    rng = np.random.default_rng(2)
    n, c = 400, 80
    cluster = rng.integers(0, c, n)
    correct = (rng.random(n) < 0.3 + 0.5 * (cluster % 2)).astype(float)
    m = cluster_sums(cluster, np.zeros(n, int), 1, [(np.zeros(n, int), correct), (np.ones(n, int), 1.0)], 2, c)
    fast = bootstrap_sums(m, n_boot=4000, rng=np.random.default_rng(0), reduce=lambda s: s[:, 0] / s[:, 1])
    dense = m.toarray()
    r = np.random.default_rng(1)
    naive = []
    for _ in range(4000):
        pick = dense[r.integers(0, c, c)].sum(0)
        naive.append(pick[0] / pick[1])
    naive = np.array(naive)
    assert fast.mean() == pytest.approx(naive.mean(), abs=0.004)
    assert fast.std() == pytest.approx(naive.std(), rel=0.06)


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    yt = rng.integers(0, 3, 300)
    yp = rng.integers(0, 3, 300)
    a = M.group_report(y_true=yt, y_pred=yp, metrics="macro_f1", n_boot=100, seed=5).to_frame()
    b = M.group_report(y_true=yt, y_pred=yp, metrics="macro_f1", n_boot=100, seed=5).to_frame()
    c = M.group_report(y_true=yt, y_pred=yp, metrics="macro_f1", n_boot=100, seed=6).to_frame()
    pd.testing.assert_frame_equal(a, b)
    assert a["ci_low"].iloc[0] != c["ci_low"].iloc[0]


def test_percentile_interval_widens_to_the_estimate():
    boot = np.array([[0.5], [0.6], [0.7]] * 10)
    lo, hi = percentile_interval(boot, np.array([0.9]))
    assert hi[0] == 0.9 and lo[0] <= 0.6


def test_report_api_shapes_and_comparisons():
    rng = np.random.default_rng(0)
    n = 900
    g = rng.choice(["a", "b", "c"], n)
    yt = rng.integers(0, 2, n)
    acc = np.where(g == "c", 0.6, 0.9)
    yp = np.where(rng.random(n) < acc, yt, 1 - yt)
    rep = M.group_report(y_true=yt, y_pred=yp, sensitive=pd.Series(g, name="site"), n_boot=300, metrics=["accuracy"])
    assert rep.by == "site" and rep.groups == ["a", "b", "c"]
    assert rep.worst("accuracy")["group"] == "c"
    assert rep.best("accuracy")["group"] in ("a", "b")
    v, lo, hi = rep.difference("accuracy", with_ci=True)
    assert lo <= v <= hi and v > 0.2
    cmp_ = rep.compare("accuracy", "c", "rest")
    assert cmp_["difference"] < -0.2 and cmp_["ci_high"] < 0 and cmp_["p"] < 0.01
    s = rep.summary()
    assert s.loc[0, "worst_group"] == "c"
    f = rep.to_frame()
    assert list(f.columns) == ["by", "group", "metric", "value", "ci_low", "ci_high", "n", "status", "ci_method"]
    assert f.iloc[0]["by"] == "overall" and f.iloc[0]["group"] == "all"


def test_sample_ids_make_n_count_distinct_samples():
    rng = np.random.default_rng(0)
    yt = np.tile(rng.integers(0, 2, 50), 3)  # the same 50 samples predicted by 3 seeds
    yp = np.where(rng.random(150) < 0.8, yt, 1 - yt)
    ids = np.tile(np.arange(50), 3)
    rep = M.group_report(y_true=yt, y_pred=yp, metrics="accuracy", clusters=ids, sample_ids=ids, n_boot=50, min_n=60)
    f = rep.to_frame()
    assert f["n"].iloc[0] == 50 and f["status"].iloc[0] == "insufficient_evidence"


# sample, class, group, folds of its rows (a sample predicted in several folds and by 2 seeds has several rows)
_DUPLICATED = [
    ("s1", "a", "g1", ["f1", "f1", "f2", "f2"]),
    ("s2", "a", "g2", ["f1"]),
    ("s3", "b", "g1", ["f1", "f2", "f2"]),
    ("s4", "b", "g2", ["f2"]),
    ("s5", "b", "g1", ["f1"]),
    ("s6", "c", "g2", ["f1", "f2"]),
]


def _duplicated_table() -> pd.DataFrame:
    rows = [(sid, y, g, f) for sid, y, g, folds in _DUPLICATED for f in folds]
    df = pd.DataFrame(rows, columns=["sample_id", "y_true", "group", "fold"])
    df["y_pred"] = np.where(np.arange(len(df)) % 3 == 0, "b", df["y_true"])  # a few errors
    return df


def _n(df: pd.DataFrame, **kw) -> pd.Series:
    rep = M.group_report(
        y_true=df["y_true"],
        y_pred=df["y_pred"],
        sensitive=pd.Series(df["group"].to_numpy(), name="g"),
        metrics=["accuracy", "recall"],
        classes=["a", "b", "c"],
        clusters=df["sample_id"],
        sample_ids=df["sample_id"],
        n_boot=20,
        min_n=1,
        **kw,
    )
    return rep, rep.to_frame().set_index(["group", "metric"])["n"]


def test_per_class_n_counts_distinct_samples_of_the_class_exactly():
    """Classes are unbalanced across the duplicated rows (class a: 5 rows of 2 samples, class b: 5 rows of 3): each
    metric's n is the number of distinct samples its statistic counts, not the rows scaled by the group's
    distinct/rows ratio (which gave recall.b n=2 overall)."""
    df = _duplicated_table()
    rep, n = _n(df)
    expect = {("all", "accuracy"): 6, ("all", "recall.a"): 2, ("all", "recall.b"): 3, ("all", "recall.c"): 1,
              ("g1", "accuracy"): 3, ("g1", "recall.a"): 1, ("g1", "recall.b"): 2, ("g1", "recall.c"): 0,
              ("g2", "accuracy"): 3, ("g2", "recall.a"): 1, ("g2", "recall.b"): 1, ("g2", "recall.c"): 1}
    assert {k: int(n[k]) for k in expect} == expect
    assert rep.status().loc["g1", "recall.c"] == "empty"
    # the complement of a group (paired comparisons with "rest") counts distinct samples too
    assert rep.compare("recall.b", "g1", "rest")["n_b"] == 1 and rep.compare("accuracy", "g2", "rest")["n_b"] == 3
    # a superset of rows never has a smaller n than a subset (the subset here: fold f1's rows)
    _, n_sub = _n(df[df["fold"] == "f1"].reset_index(drop=True))
    both = pd.concat({"all": n, "sub": n_sub}, axis=1).dropna()
    assert len(both) == len(n_sub) and (both["all"] >= both["sub"]).all()
    assert int(n_sub[("all", "recall.b")]) == 2 and int(n_sub[("g1", "recall.a")]) == 1


def test_row_counts_agree_with_the_counts_of_every_metric():
    """``row_counts`` (which rows a metric's n counts) sums to ``count`` of the summed statistics, for every metric."""
    from audit.metrics._stats import block_entries, block_width, row_counts
    from audit.metrics.encoding import prepare_data, resolve_metrics
    from audit.metrics.registry import build_metric_specs

    rng = np.random.default_rng(1)
    n, k = 60, 4
    yt, yp = rng.integers(0, k, n), rng.integers(0, k, n)
    d = prepare_data(y_true=yt, y_pred=yp, y_prob=rng.dirichlet(np.ones(k), n))
    inter = rng.integers(0, 5, (n, 3)) * (rng.random((n, 3)) < 0.7)
    seg = M.SegmentationCounts(inter=inter, union=inter + rng.integers(0, 3, (n, 3)), pred=inter, true=inter + 1,
                               classes=["x", "y", "z"])
    seg.union[:3] = 0  # images without any pixel: no per-image score, not counted by dice
    ds = prepare_data(segmentation=seg)
    for data in (d, ds):
        for spec in build_metric_specs(resolve_metrics(None, data) + ([] if data.C else ["selection_rate"]), data):
            S = np.zeros(block_width(spec.block, data))
            for col, val in block_entries(spec.block, data):
                np.add.at(S, col, val)
            assert row_counts(spec, data).sum() == pytest.approx(float(spec.count(S))), spec.name


def test_fairness_min_n_and_n_count_distinct_samples():
    df = _duplicated_table()
    kw = dict(
        y_true=df["y_true"],
        y_pred=df["y_pred"],
        sensitive=df["group"],
        classes=["a", "b", "c"],
        clusters=df["sample_id"],
        n_boot=0,
        min_n=3,
        min_rate_n=1,
    )
    f = M.fairness_report(sample_ids=df["sample_id"], **kw)
    assert (f["n"] == 6).all()  # 3 distinct samples per group, not 8 and 4 rows
    assert (f.loc[f["metric"].isin(["dp_diff", "dp_ratio"]), "n_groups"] == 2).all()  # n_groups: groups compared
    f4 = M.fairness_report(sample_ids=df["sample_id"], **{**kw, "min_n": 4})
    assert (f4["n_excluded"] == 2).all() and f4["value"].isna().all()  # g1 has 8 rows but only 3 samples
    # min_rate_n: g1 has 4 rows of class a but one sample of it; a TPR of a needs 2 positives -> left out
    f2 = M.fairness_report(sample_ids=df["sample_id"], **{**kw, "min_rate_n": 2})
    eop = f2[f2["metric"] == "eop_diff"].set_index("class")["value"]
    assert np.isnan(eop["a"]) and np.isnan(eop["c"])


def test_a_rate_difference_needs_two_eligible_groups():
    """Only one group has enough positives of a class: its TPR gap (eop) and eo_diff are undefined, not 0 (a 0 with
    the interval [0, 0] reads as parity while the other groups' recall may differ a lot)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(["big", "small1", "small2"], [200, 40, 40])
    yt = np.where(groups == "big", rng.integers(0, 2, 280), 0)  # the small groups have no positives of class 1
    yt[200:205] = 1  # ... but a handful (below min_rate_n)
    yp = np.where(rng.random(280) < 0.8, yt, 1 - yt)
    f = M.fairness_report(y_true=yt, y_pred=yp, sensitive=groups, n_boot=50, min_n=30, min_rate_n=30, pos_label=1)
    row = f.set_index("metric")
    assert np.isnan(row.loc["eop_diff", "value"]) and np.isnan(row.loc["eop_diff", "ci_low"])
    assert np.isnan(row.loc["eo_diff", "value"])
    assert pd.isna(row.loc["eop_diff", "groups"]) and row.loc["eop_diff", "n_groups"] == 1
    assert row.loc["eop_diff", "n_excluded"] == 2
    assert np.isfinite(row.loc["dp_diff", "value"]) and row.loc["dp_diff", "n_groups"] == 3


def test_missing_group_values_count_in_overall_only():
    yt = np.array([0, 1, 1, 0, 1, 0])
    yp = np.array([0, 1, 0, 0, 1, 1])
    g = pd.Series(["a", "a", None, "b", "b", None], dtype="string")
    rep = M.group_report(y_true=yt, y_pred=yp, sensitive=g, metrics="accuracy", n_boot=0, min_n=1)
    assert rep.groups == ["a", "b"] and rep.n_missing == 2
    assert rep.overall["accuracy"] == pytest.approx(4 / 6)
    assert "nan" not in rep.groups and "<NA>" not in rep.groups


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"y_true": [0, 1], "y_pred": [0]}, UsageError, "y_pred has 1 rows"),
        ({"y_true": [0, None], "y_pred": [0, 1]}, InputError, "y_true has 1 missing"),
        ({"y_true": [], "y_pred": []}, UsageError, "y_true is empty"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "metrics": ["acc"]}, UsageError, "unknown metric 'acc'"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "metrics": ["ece"]}, UsageError, "needs class probabilities"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "y_prob": [[0.5, 0.5]]}, UsageError, "y_prob must have shape"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "y_prob": [[0.9, 0.9], [0.5, 0.5]]}, InputError, "sum to 1"),
        (
            {"y_true": [0, 1], "y_pred": [0, 2], "classes": ["0", "1"]},
            InputError,
            "y_pred holds 1 value(s) not in classes",
        ),
        ({"y_true": [0, 1], "y_pred": [0, 1], "n_boot": -1}, UsageError, "n_boot must be an integer"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "min_n": 2.5}, UsageError, "min_n must be an integer"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "sensitive": ["a"]}, UsageError, "sensitive has 1 rows"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "proportion_ci": "exact"}, UsageError, "proportion_ci must be one of"),
        ({}, UsageError, "give y_true and y_pred"),
    ],
)
def test_bad_input_gives_one_line_errors(kwargs, exc, words):
    with pytest.raises(exc) as e:
        M.group_report(**kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_public_api_is_curated_and_keyword_only():
    import inspect

    assert "group_report" in M.__all__ and "GroupReport" in M.__all__ and "run_metrics" in M.__all__
    assert all(not name.startswith("_") for name in M.__all__)
    params = inspect.signature(M.group_report).parameters.values()
    assert all(p.kind == p.KEYWORD_ONLY for p in params)
    with pytest.raises(TypeError):
        M.group_report([0, 1], [0, 1])  # type: ignore[misc]


def test_generalization_gap_paired_and_seed_averaged():
    rng = np.random.default_rng(0)
    n = 600
    held = rng.random(n) < 0.4
    yt = rng.integers(0, 3, n)
    yp = np.where(rng.random(n) < np.where(held, 0.5, 0.85), yt, (yt + 1) % 3)
    g = M.generalization_gap(y_true=yt, y_pred=yp, held_out=held, metric="accuracy", n_boot=500)
    assert g["in_domain"] == pytest.approx(M.accuracy(yt[~held], yp[~held]))
    assert g["out_domain"] == pytest.approx(M.accuracy(yt[held], yp[held]))
    assert g["gap"] == pytest.approx(g["in_domain"] - g["out_domain"])
    assert g["gap_ci_low"] > 0.2 and g["p"] < 0.01 and g["seeds"] == 1
    seeds = np.repeat([0, 1], n // 2)
    g2 = M.generalization_gap(y_true=yt, y_pred=yp, held_out=held, seeds=seeds, metric="accuracy", n_boot=200)
    per = [M.accuracy(yt[(seeds == s) & ~held], yp[(seeds == s) & ~held]) for s in (0, 1)]
    assert g2["in_domain"] == pytest.approx(np.mean(per)) and g2["seeds"] == 2
    with pytest.raises(UsageError):
        M.generalization_gap(y_true=yt, y_pred=yp, held_out=np.zeros(n, bool))


def test_transfer_matrix_long_form():
    rng = np.random.default_rng(0)
    n = 400
    tr = rng.choice(["A", "B"], n)
    te = rng.choice(["A", "B", "C"], n)
    yt = rng.integers(0, 2, n)
    yp = np.where(rng.random(n) < np.where(tr == te, 0.9, 0.6), yt, 1 - yt)
    f = M.transfer_matrix(train_domain=tr, test_domain=te, y_true=yt, y_pred=yp, n_boot=100)
    assert set(zip(f["train_domain"], f["test_domain"], strict=True)) == {(a, b) for a in "AB" for b in "ABC"}
    row = f[(f["train_domain"] == "A") & (f["test_domain"] == "C")].iloc[0]
    s = (tr == "A") & (te == "C")
    assert row["value"] == pytest.approx(M.accuracy(yt[s], yp[s])) and row["n"] == s.sum()


def test_fairness_report_excludes_small_groups_and_names_extremes():
    rng = np.random.default_rng(0)
    n = 2000
    g = rng.choice(["a", "b", "tiny"], n, p=[0.5, 0.49, 0.01])
    yt = rng.integers(0, 2, n)
    yp = np.where(g == "a", 1, np.where(rng.random(n) < 0.7, yt, 1 - yt))
    f = M.fairness_report(y_true=yt, y_pred=yp, sensitive=pd.Series(g, name="attr.x"), n_boot=200, min_n=30)
    dp = f[(f["metric"] == "dp_diff")].iloc[0]
    assert dp["class"] == "binary" and dp["n_groups"] == 2 and dp["n_excluded"] == 1
    assert dp["groups"] == "a vs b" and dp["ci_low"] > 0.3 and dp["p"] < 0.05
    assert dp["attribute"] == "attr.x"
