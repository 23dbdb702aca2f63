"""Property tests (hypothesis) for the profile aggregations and the metrics' group bookkeeping, complementing
tests/test_profile_units.py (row order of profile_frame) and tests/test_metrics_properties.py (GroupReport row
order, renaming, intervals, empty groups): counts and shares that add up, missing values kept as a null group
(never "nan"), intervals that hold their estimate also on sparse tables, renaming-invariant associations, NaN for
undefined statistics, and group n's that sum to the overall n."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import metrics as M
from audit.profile import ProfileConfig, profile_frame

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHECKS = ["distribution", "associations"]


@st.composite
def manifests(draw):
    """A manifest with 2-4 labels, 1-3 domains, a sparse attribute (up to 12 values) and missing values."""
    n = draw(st.integers(12, 90))
    seed = draw(st.integers(0, 10_000))
    k_lab = draw(st.integers(2, 4))
    k_dom = draw(st.integers(1, 3))
    k_att = draw(st.integers(2, 12))
    p_missing = draw(st.sampled_from([0.0, 0.1, 0.3]))
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, k_lab, n).astype(str)
    dom = np.array(list("PQR"))[rng.integers(0, k_dom, n)]
    att = np.where(rng.random(n) < 0.5, np.char.add("v", lab), np.char.add("w", rng.integers(0, k_att, n).astype(str)))
    ids = [f"s{i:03d}" for i in range(n)]
    m = pd.DataFrame({"sample_id": ids, "filepath": [f"{i}.png" for i in ids], "label": lab, "domain": dom,
                      "attr.z": att}).astype("string")
    m.loc[rng.random(n) < p_missing, "attr.z"] = pd.NA
    m["group"] = pd.array([f"g{i // 2}" for i in range(n)], dtype="string")
    return m, seed


def _profile(m: pd.DataFrame, seed: int = 0):
    tables, findings, _ = profile_frame(m, config=ProfileConfig(n_boot=60, seed=seed, checks=CHECKS, min_n=10))
    return tables, findings


@SETTINGS
@given(manifests())
def test_distribution_counts_and_shares_add_up_and_missing_is_a_null_group(case):
    m, _ = case
    d = _profile(m)[0]["distribution"]
    assert not d["group"].dropna().astype(str).isin(["nan", "NaN", "<NA>", "None", ""]).any()
    for column, rows in d.groupby("column"):
        cols = column.split(" x ")
        complete = m[cols].notna().all(axis=1)
        total = int(rows["total"].iloc[0])
        assert int(rows["n"].sum()) == total, column
        assert np.isclose(rows["share"].sum(), 1.0), column
        assert ((rows["n"] > 0) | (rows["status"] == "empty")).all()  # empty cells are listed as "empty"
        if len(cols) == 1:  # one column: every row counted, missing as a null group
            assert total == len(m)
            assert rows["group"].isna().sum() == (1 if m[cols[0]].isna().any() else 0)
            got = rows.dropna(subset=["group"]).set_index("group")["n"].to_dict()
            assert got == m[cols[0]].value_counts().to_dict()
        else:  # an intersection: complete rows only, each combination counted
            assert total == int(complete.sum())
            key = m.loc[complete, cols].astype(str).agg(" | ".join, axis=1).value_counts().to_dict()
            assert rows[rows["n"] > 0].set_index("group")["n"].to_dict() == key
        has = rows["ci_low"].notna()
        assert (rows.loc[has, "ci_low"] <= rows.loc[has, "share"] + 1e-12).all()
        assert (rows.loc[has, "share"] <= rows.loc[has, "ci_high"] + 1e-12).all()


@SETTINGS
@given(manifests())
def test_association_intervals_contain_the_estimate_even_on_sparse_tables(case):
    m, seed = case
    a = _profile(m, seed)[0]["associations"]
    has = a["ci_low"].notna()
    assert (a.loc[has, "ci_low"] <= a.loc[has, "value"] + 1e-12).all(), a[has & (a["ci_low"] > a["value"])]
    assert (a.loc[has, "value"] <= a.loc[has, "ci_high"] + 1e-12).all()
    assert ((a["value"].dropna() >= 0) & (a["value"].dropna() <= 1 + 1e-12)).all()
    assert (a["q"].dropna() >= a["p"].dropna() - 1e-12).all()  # BH never lowers a p-value


@SETTINGS
@given(manifests())
def test_associations_and_distribution_do_not_depend_on_group_names(case):
    m, seed = case
    labels = sorted(m["label"].dropna().unique())
    lab_map = {v: f"zz{len(labels) - i}" for i, v in enumerate(labels)}  # reverses the sort order too
    att_map = {v: f"#{v[::-1]}" for v in m["attr.z"].dropna().unique()}
    r = m.copy()
    r["label"] = r["label"].map(lab_map).astype("string")
    r["attr.z"] = r["attr.z"].map(att_map).astype("string")
    ta, fa = _profile(m, seed)
    tb, fb = _profile(r, seed)
    key = ["a", "b", "within"]
    a = ta["associations"].sort_values(key).reset_index(drop=True)
    b = tb["associations"].sort_values(key).reset_index(drop=True)
    for col in ("value", "chi2", "p", "q", "nmi", "n"):
        np.testing.assert_allclose(a[col].astype(float), b[col].astype(float), rtol=1e-9, atol=1e-12, err_msg=col)
    # the bootstrap intervals follow another resampling stream when category codes are permuted: both must
    # hold the (identical) estimate and be defined in the same rows
    assert (a["ci_low"].isna() == b["ci_low"].isna()).all()
    for t in (a, b):
        has = t["ci_low"].notna()
        assert (t.loc[has, "ci_low"] <= t.loc[has, "value"] + 1e-12).all()
        assert (t.loc[has, "value"] <= t.loc[has, "ci_high"] + 1e-12).all()
    da, db = ta["distribution"], tb["distribution"]
    assert sorted(da.groupby("column")["n"].apply(lambda s: tuple(sorted(s))).items()) == \
        sorted(db.groupby("column")["n"].apply(lambda s: tuple(sorted(s))).items())
    assert sorted((f.kind, f.severity) for f in fa) == sorted((f.kind, f.severity) for f in fb)


@SETTINGS
@given(manifests())
def test_undefined_associations_are_nan_never_zero(case):
    m, seed = case
    m = m.copy()
    m.loc[m["domain"] == m["domain"].iloc[0], "label"] = m["label"].iloc[0]  # one domain holds a single label
    a = _profile(m, seed)[0]["associations"]
    dom = m["domain"].iloc[0]
    if m["domain"].nunique() > 1:
        within = a[(a["a"] == "label") & (a["within"] == dom)]
        assert len(within) and within["value"].isna().all() and within["ci_low"].isna().all(), within


@st.composite
def predictions(draw):
    n = draw(st.integers(10, 120))
    rng = np.random.default_rng(draw(st.integers(0, 10_000)))
    yt = rng.integers(0, 3, n)
    yp = np.where(rng.random(n) < 0.7, yt, rng.integers(0, 3, n))
    g = np.array(["a", "b", "c", "d"], dtype=object)[rng.integers(0, draw(st.integers(1, 4)), n)]
    g[rng.random(n) < draw(st.sampled_from([0.0, 0.2]))] = None
    return yt, yp, g


@SETTINGS
@given(predictions())
def test_group_ns_sum_to_the_overall_n_less_missing(case):
    yt, yp, g = case
    rep = M.group_report(y_true=yt, y_pred=yp, sensitive=pd.Series(g, name="g", dtype="string"), metrics="accuracy",
                         min_n=5, n_boot=40, seed=0)
    f = rep.to_frame()
    overall = f[f["by"] == "overall"]
    groups = f[f["by"] != "overall"]
    n_missing = int(pd.isna(g).sum())
    assert int(overall["n"].iloc[0]) == len(yt)
    assert int(groups["n"].sum()) == len(yt) - n_missing
    correct = (yt == yp)
    assert np.isclose(overall["value"].iloc[0], correct.mean())
    for grp, row in groups.set_index("group").iterrows():
        sel = np.array([x == grp for x in g])
        assert row["n"] == sel.sum()
        assert (np.isnan(row["value"]) and sel.sum() == 0) or np.isclose(row["value"], correct[sel].mean())
    # the group accuracies, weighted by their n, give back the accuracy of the rows that have a group
    ok = groups["n"] > 0
    if ok.any():
        weighted = float((groups.loc[ok, "value"] * groups.loc[ok, "n"]).sum() / groups.loc[ok, "n"].sum())
        assert np.isclose(weighted, correct[~pd.isna(g)].mean())
