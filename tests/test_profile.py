"""Profile stage: planted problems of the demo found with the right columns and groups, a clean control
stays quiet, failure isolation, run-directory outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.errors import UsageError
from audit.pipeline import profile_stage
from audit.profile import REGISTRY, ProfileConfig, profile_frame
from audit.profile.base import Check, register

FORMATS_IMAGES = (
    "sample_id filepath readable error format ext ext_mismatch width height aspect mode channels bit_depth bytes "
    "exif_orientation brightness contrast saturation colorfulness sharpness entropy md5 pixel_md5 phash"
).split()


def _find(findings, kind, columns=None, group=None):
    out = [f for f in findings if f["kind"] == kind]
    if columns is not None:
        out = [f for f in out if f["columns"] == columns]
    if group is not None:
        out = [f for f in out if group in f["groups"]]
    return out


@pytest.fixture(scope="module")
def classify_profiled(demo_classify, tmp_path_factory):
    from conftest import ingest_demo

    run = ingest_demo(demo_classify, tmp_path_factory.mktemp("prof") / "run")
    profile_stage(run, min_n=30, seed=0, workers=2)
    return run


def test_demo_profile_writes_every_table_and_check_status(classify_profiled):
    run = classify_profiled
    man = run.manifest()
    im = run.read_table("profile/images.parquet")
    assert len(im) == len(man) and set(im["sample_id"]) == set(man["sample_id"])
    assert set(FORMATS_IMAGES) <= set(im.columns)
    for name in ("distribution", "imbalance", "associations", "residuals", "image_stats_shift", "duplicates",
                 "shortcuts"):
        assert run.has(f"profile/{name}.parquet"), name
    checks = run.info["stages"]["profile"]["checks"]
    assert {k: v["status"] for k, v in checks.items() if k != "masks"} == {k: "ok" for k in checks if k != "masks"}
    assert checks["masks"]["status"] == "skipped"
    assert run.info["config"]["profile"]["seed"] == 0


def test_demo_broken_files_each_recorded(classify_profiled):
    im = classify_profiled.read_table("profile/images.parquet").set_index("sample_id")
    assert im.loc["images/studio/3/broken_truncated.jpg", "error"] == "truncated"
    assert im.loc["images/studio/4/broken_empty.jpg", "error"] == "empty_file"
    assert im.loc["images/phone/1/broken_text.jpg", "error"] == "not_an_image"
    assert im.loc["images/phone/2/missing_file.jpg", "error"] == "missing_file"
    assert int((~im["readable"]).sum()) == 4
    f = classify_profiled.findings()
    assert {g for x in _find(f, "unreadable_file") for g in x["groups"]} == {"truncated", "empty_file", "not_an_image"}
    assert _find(f, "missing_file")[0]["evidence"]["sample_ids"] == ["images/phone/2/missing_file.jpg"]


def test_demo_class_imbalance_names_digit_9(classify_profiled):
    f = _find(classify_profiled.findings(), "class_imbalance", ["label"])
    assert len(f) == 1 and f[0]["severity"] in ("warning", "critical")
    assert f[0]["groups"][0] == "9"


def test_demo_background_association_and_conditional_shortcut(classify_profiled):
    f = classify_profiled.findings()
    whole = _find(f, "label_attribute_association", ["label", "attr.background"])
    assert whole and whole[0]["severity"] == "critical" and whole[0]["value"] > 0.4
    lo, hi = whole[0]["ci"]
    assert lo <= whole[0]["value"] <= hi
    cond = _find(f, "label_attribute_association", ["label", "attr.background", "domain"])
    assert len(cond) == 1
    assert set(cond[0]["groups"]) == {"phone", "studio"}
    assert set(cond[0]["evidence"]["absent_in"]) == {"scanner"}
    # ink is the control: no association, shift or shortcut above info mentions it
    assert not [x for x in f if any(c == "attr.ink" for c in x["columns"]) and x["severity"] != "info"]
    assert not _find(f, "domain_label_shift")
    assert not _find(f, "domain_attribute_association")


def test_demo_scanner_covariate_shift_and_png_shortcut(classify_profiled):
    f = classify_profiled.findings()
    shift = _find(f, "covariate_shift", ["domain"], "scanner")
    assert shift and shift[0]["severity"] == "critical"
    assert shift[0]["evidence"]["statistic"] in ("contrast", "sharpness")
    assert shift[0]["evidence"]["effects"]["contrast"][0] < -1
    sc = _find(f, "shortcut", ["domain"], "file_properties")
    assert sc and sc[0]["severity"] == "critical"
    assert any(t in ("format=PNG", "ext=png") for t in sc[0]["evidence"]["top_features"])
    tab = classify_profiled.read_table("profile/shortcuts.parquet")
    row = tab[(tab.target == "domain") & (tab.features == "file_properties")].iloc[0]
    assert row.ci_low > row.chance and abs(row.chance - 1 / 3) < 1e-9


def test_demo_duplicates_leakage_and_label_conflicts(classify_profiled):
    dup = classify_profiled.read_table("profile/duplicates.parquet")
    exact = dup[dup.kind == "exact"]
    near = dup[dup.kind == "near"]
    assert len(exact) == 8 and exact["cross_split"].all()
    assert exact["b"].str.endswith("_copy.jpg").all()
    assert int(exact["label_conflict"].sum()) == 2
    assert len(near) == 2 and near["b"].str.endswith("_near.jpg").all()
    f = classify_profiled.findings()
    leak = _find(f, "split_leakage", ["split"])
    assert leak and leak[0]["severity"] == "critical" and "test | train" in leak[0]["groups"]
    conf = _find(f, "label_conflict", ["label"])
    assert conf and conf[0]["n"] == 2
    assert _find(f, "exact_duplicate") and _find(f, "near_duplicate")


def test_demo_segment_wrong_size_mask(segment_run):
    profile_stage(segment_run, min_n=30, seed=0, workers=1)
    f = segment_run.findings()
    mm = _find(f, "mask_mismatch", ["mask"], "size_mismatch")
    assert len(mm) == 1 and mm[0]["evidence"]["count"] == 1
    masks = segment_run.read_table("profile/masks.parquet")
    overall = masks[masks.by == "overall"].set_index("class")
    assert set(overall.index) == {0, 1, 2}
    assert overall["pixel_share"].sum() == pytest.approx(1.0)
    assert (masks["pixel_ci_low"] <= masks["pixel_share"] + 1e-12).all()
    assert _find(f, "covariate_shift", ["domain"], "fog")


# ------------------------------------------------------------------------------------------- clean control
def _write_control(root, n_per_cell=25, seed=0):
    """Balanced control: 4 labels x 3 domains x 2 attributes, identical image process everywhere."""
    rng = np.random.default_rng(seed)
    rows = []
    k = 0
    labels, domains = ["a", "b", "c", "d"], ["d1", "d2", "d3"]
    for lab in labels:
        for dom in domains:
            attrs = rng.permutation(["x", "y"] * n_per_cell)
            for a in attrs:
                arr = rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
                rel = f"img/{k:05d}.jpg"
                (root / "img").mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / rel, quality=90)
                rows.append({"sample_id": rel, "filepath": rel, "label": lab, "domain": dom,
                             "split": rng.choice(["train", "val", "test"]), "attr.att": a})
                k += 1
    m = pd.DataFrame(rows)
    for c in m.columns:
        m[c] = m[c].astype("string")
    m["group"] = m["sample_id"]
    return m


def test_clean_balanced_control_has_no_warning(tmp_path):
    m = _write_control(tmp_path)
    tables, findings, status = profile_frame(m, root=tmp_path, config=ProfileConfig(seed=0, n_boot=200, workers=1))
    assert all(s["status"] == "ok" for k, s in status.items() if k != "masks"), status
    loud = [(f.kind, f.title) for f in findings if f.severity != "info"]
    assert loud == []
    assert len(tables["images"]) == len(m)


# ------------------------------------------------------------------------------------------- framework
def test_failing_check_is_recorded_and_others_run(tmp_path, monkeypatch):
    @register
    class Boom(Check):
        name = "boom_test"
        order = 25

        def run(self, ctx):
            raise RuntimeError("kaboom")

    try:
        m = _write_control(tmp_path, n_per_cell=3)
        tables, findings, status = profile_frame(m, root=tmp_path, config=ProfileConfig(n_boot=20, workers=1))
        assert status["boom_test"]["status"] == "failed" and "kaboom" in status["boom_test"]["error"]
        assert status["distribution"]["status"] == "ok" and status["duplicates"]["status"] == "ok"
        assert [f.groups for f in findings if f.kind == "check_failed"] == [["boom_test"]]
    finally:
        REGISTRY.pop("boom_test", None)


def test_failed_requirement_skips_dependents(tmp_path, monkeypatch):
    from audit.profile import scan

    def broken(self, ctx):
        raise OSError("disk on fire")

    monkeypatch.setattr(scan.ImageScan, "run", broken)
    m = _write_control(tmp_path, n_per_cell=3)
    _, findings, status = profile_frame(m, root=tmp_path, config=ProfileConfig(n_boot=20, workers=1))
    assert status["images"]["status"] == "failed"
    assert status["duplicates"]["status"] == "skipped" and "images" in status["duplicates"]["reason"]
    assert status["distribution"]["status"] == "ok"


def test_config_validation():
    with pytest.raises(UsageError, match="unknown profile check"):
        ProfileConfig(checks=["nope"])
    with pytest.raises(UsageError, match="near_radius"):
        ProfileConfig(near_radius=70)
    with pytest.raises(UsageError, match="engine"):
        ProfileConfig(engine="spark")
    assert ProfileConfig(checks=["duplicates"]).selected() == ["images", "duplicates"]


def test_only_selected_checks_run_and_stale_tables_are_removed(classify_run):
    from audit.profile import run_profile

    classify_run.write_table("profile/shortcuts.parquet", pd.DataFrame({"x": [1]}))
    with classify_run.stage("profile"):
        run_profile(classify_run, ProfileConfig(checks=["distribution"], n_boot=10))
    assert classify_run.has("profile/distribution.parquet")
    assert not classify_run.has("profile/shortcuts.parquet")
    assert set(classify_run.info["stages"]["profile"]["checks"]) == {"distribution"}
