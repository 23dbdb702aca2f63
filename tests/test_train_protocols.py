"""Protocols: group-respecting splits, LODO / transfer / split folds, leakage asserted by sample ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.errors import UsageError
from audit.train.protocols import TEST, TRAIN, VAL, group_split, make_folds, normalize_split


def _table(n=300, seed=0, n_domains=3, group_size=4, cross_domain_groups=0):
    rng = np.random.default_rng(seed)
    dom = np.array([f"d{i}" for i in rng.integers(0, n_domains, n)], dtype=object)
    grp = np.array([f"g{i // group_size}" for i in range(n)], dtype=object)
    for k in range(cross_domain_groups):  # a subject seen in two domains
        grp[k] = grp[-1 - k]
    return pd.DataFrame({
        "sample_id": pd.array([f"s{i}" for i in range(n)], dtype="string"),
        "group": pd.array(grp, dtype="string"),
        "domain": pd.array(dom, dtype="string"),
        "split": pd.array(rng.choice(["train", "val", "test"], n, p=[0.7, 0.15, 0.15]), dtype="string"),
    })


def _roles(fold, ids):
    return {r: set(ids[getattr(fold, f"{r}_idx")]) for r in ("train", "val", "test")}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=200), st.integers(0, 1000))
def test_group_split_never_splits_a_group(groups, seed):
    groups = np.array([f"g{g}" for g in groups], dtype=object)
    part = group_split(groups, val_fraction=0.15, test_fraction=0.2, seed=seed)
    for g in np.unique(groups):
        assert len(set(part[groups == g])) == 1
    assert (part == TRAIN).any()


def test_group_split_fractions_and_seed():
    groups = np.array([f"g{i // 3}" for i in range(3000)], dtype=object)
    a = group_split(groups, val_fraction=0.15, test_fraction=0.2, seed=1)
    assert abs((a == TEST).mean() - 0.2) < 0.01 and abs((a == VAL).mean() - 0.15) < 0.01
    assert np.array_equal(a, group_split(groups, val_fraction=0.15, test_fraction=0.2, seed=1))
    assert not np.array_equal(a, group_split(groups, val_fraction=0.15, test_fraction=0.2, seed=2))


def test_lodo_never_trains_or_selects_on_the_held_out_domain():
    t = _table(cross_domain_groups=10)
    ids = t["sample_id"].to_numpy()
    dom = dict(zip(t["sample_id"], t["domain"], strict=True))
    grp = dict(zip(t["sample_id"], t["group"], strict=True))
    folds, notes = make_folds(t, "lodo", seed=0)
    assert notes["protocol"] == "lodo" and [f.name for f in folds] == ["holdout=d0", "holdout=d1", "holdout=d2"]
    for f in folds:
        held = f.name.split("=", 1)[1]
        r = _roles(f, ids)
        assert not any(dom[s] == held for s in r["train"] | r["val"])  # the held-out domain is never seen
        ood = {s for s, h in zip(ids[f.test_idx], f.held_out, strict=True) if h}
        assert ood == {s for s in ids if dom[s] == held}  # ...and all of it is tested
        in_dom = {s for s, h in zip(ids[f.test_idx], f.held_out, strict=True) if not h}
        assert in_dom and all(dom[s] != held for s in in_dom)  # the in-domain twin
        assert not (r["train"] & r["val"]) and not (r["train"] & r["test"]) and not (r["val"] & r["test"])
        # no subject (group) in two of train / val / test
        gs = {k: {grp[s] for s in v} for k, v in r.items()}
        assert not (gs["train"] & gs["val"]) and not (gs["train"] & gs["test"]) and not (gs["val"] & gs["test"])
        assert f.train_domains == sorted({"d0", "d1", "d2"} - {held})
    assert sum(f.notes["n_shared_group_dropped"] for f in folds) > 0  # the cross-domain subjects were caught


def test_transfer_is_a_matrix_with_in_domain_twin():
    t = _table()
    ids = t["sample_id"].to_numpy()
    dom = dict(zip(t["sample_id"], t["domain"], strict=True))
    folds, _ = make_folds(t, "transfer", seed=3)
    assert [f.name for f in folds] == ["train=d0", "train=d1", "train=d2"]
    for f in folds:
        src = f.name.split("=", 1)[1]
        r = _roles(f, ids)
        assert all(dom[s] == src for s in r["train"] | r["val"])
        tested = {dom[s]: h for s, h in zip(ids[f.test_idx], f.held_out, strict=True)}
        assert set(tested) == {"d0", "d1", "d2"}
        assert not tested[src]
        assert all(bool(tested[d]) for d in tested if d != src)


def test_split_protocol_uses_the_split_column_and_drops_leaking_groups():
    t = _table()
    t.loc[0, "split"] = "training"  # synonyms are accepted
    t.loc[1, "split"] = "weird"  # unknown values are excluded and recorded
    folds, notes = make_folds(t, "split", seed=0)
    (f,) = folds
    ids = t["sample_id"].to_numpy()
    assert "s1" in notes["excluded"]["missing_or_unknown_split"]
    assert "s0" in set(ids[f.train_idx]) | set(notes["excluded"].get("group_in_two_splits", []))
    r = _roles(f, ids)
    grp = dict(zip(t["sample_id"], t["group"], strict=True))
    gs = {k: {grp[s] for s in v} for k, v in r.items()}
    assert not (gs["train"] & gs["test"]) and not (gs["val"] & gs["test"]) and not (gs["train"] & gs["val"])
    assert notes["excluded"]["group_in_two_splits"]  # random splits over groups of 4 leak: caught
    assert not f.held_out.any()  # every test domain was also trained on


def test_split_marks_unseen_test_domains_as_held_out():
    t = _table()
    t.loc[t["domain"] == "d2", "split"] = "test"
    t.loc[(t["domain"] != "d2") & (t["split"] == "test"), "split"] = "train"
    (f,), _ = make_folds(t, "split", seed=0)
    ids = t["sample_id"].to_numpy()
    dom = dict(zip(t["sample_id"], t["domain"], strict=True))
    held = {dom[s] for s, h in zip(ids[f.test_idx], f.held_out, strict=True) if h}
    assert held == {"d2"}


def test_lodo_without_domains_falls_back_to_split_and_transfer_refuses():
    t = _table(n_domains=1).drop(columns=["split"])
    folds, notes = make_folds(t, "lodo", seed=0)
    assert notes["protocol"] == "split" and "fallback" in notes
    assert len(folds) == 1 and len(folds[0].val_idx) and len(folds[0].test_idx)
    with pytest.raises(UsageError, match="transfer needs"):
        make_folds(t, "transfer")
    with pytest.raises(UsageError, match="unknown --protocol"):
        make_folds(t, "kfold")


def test_missing_domain_rows_are_recorded_not_silently_dropped():
    t = _table()
    t.loc[:4, "domain"] = pd.NA
    folds, notes = make_folds(t, "lodo", seed=0)
    assert notes["excluded"]["missing_domain"] == ["s0", "s1", "s2", "s3", "s4"]
    used = set()
    for f in folds:
        used |= set(t["sample_id"].to_numpy()[np.concatenate([f.train_idx, f.val_idx, f.test_idx])])
    assert not used & {"s0", "s1", "s2", "s3", "s4"}


def test_normalize_split():
    s = normalize_split(pd.Series(["Train", " validation", "TEST", None, "x"], dtype="string"))
    assert s.tolist()[:3] == ["train", "val", "test"] and pd.isna(s.iloc[3]) and pd.isna(s.iloc[4])
