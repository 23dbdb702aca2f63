"""Demo data: deterministic by seed, with the planted problems present."""

from __future__ import annotations

import pandas as pd

from audit.demo import build_classify, build_segment, tree_digest


def test_classify_demo_is_byte_identical_for_a_seed(tmp_path):
    a = build_classify(tmp_path / "a", seed=3)
    b = build_classify(tmp_path / "b", seed=3)
    c = build_classify(tmp_path / "c", seed=4)
    assert tree_digest(a.root) == tree_digest(b.root)
    assert tree_digest(a.root) != tree_digest(c.root)


def test_segment_demo_is_byte_identical_for_a_seed(tmp_path):
    a = build_segment(tmp_path / "a", seed=1, n=60)
    b = build_segment(tmp_path / "b", seed=1, n=60)
    assert tree_digest(a.root) == tree_digest(b.root)


def test_classify_demo_plants_its_problems(demo_classify):
    t = pd.read_csv(demo_classify.table, dtype=str)
    counts = t["digit"].value_counts()
    assert counts["9"] < counts["1"] / 2  # class imbalance
    assert set(t["site"]) == {"studio", "phone", "scanner"}
    assert all(p.endswith(".png") for p in t.loc[t.site == "scanner", "path"] if "copy" not in p)
    # background tied to label outside the scanner domain only
    ns = t[t.site != "scanner"]
    low = ns["digit"].astype(int) < 5
    assert (ns.loc[low, "background"] == "warm").mean() > 0.8
    sc = t[t.site == "scanner"]
    assert 0.3 < (sc.loc[sc["digit"].astype(int) < 5, "background"] == "warm").mean() < 0.7
    assert t["path"].str.contains("_copy").sum() == 8
    assert not (demo_classify.root / "images/phone/2/missing_file.jpg").exists()
    assert (demo_classify.root / "images/studio/4/broken_empty.jpg").stat().st_size == 0
