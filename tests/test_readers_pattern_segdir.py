"""The path-pattern and segmentation-folder readers, through read_dataset and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_recipes import img  # noqa: E402  (pytest puts tests/ on sys.path)

from audit.errors import InputError, UsageError
from audit.manifest import Roles
from audit.readers import ReadOptions, read_dataset
from audit.readers.pattern import compile_pattern, fields_to_roles


def touch_images(root: Path, names: list[str]) -> None:
    for n in names:
        img(root / n)


# ------------------------------------------------------------------------------------------ pattern
def test_template_extracts_roles_and_attributes(tmp_path):
    touch_images(tmp_path, ["25_0_1_111.jpg", "30_1_2_222.jpg", "sub/41_0_0_333.jpg"])
    res = read_dataset(tmp_path, options=ReadOptions(pattern="{age}_{gender}_{race}_{id}.jpg"))
    assert res.format == "pattern"
    m = res.manifest.set_index("filepath")
    assert {"attr.age", "attr.gender", "attr.race"} <= set(m.columns)
    assert m.loc["30_1_2_222.jpg", "attr.gender"] == "1"
    assert m.loc["sub/41_0_0_333.jpg", "attr.race"] == "0"  # a template without '/' matches the file name
    assert "attr.id" not in m.columns  # ids are matched, not audited
    assert not res.notes


def test_role_flags_name_the_fields(tmp_path):
    touch_images(tmp_path, ["25_0_1_111.jpg", "30_1_2_222.jpg"])
    opts = ReadOptions(pattern="{age}_{gender}_{race}_{id}.jpg", roles=Roles(label="gender", group="id"))
    m = read_dataset(tmp_path, options=opts).manifest
    assert list(m["label"]) == ["0", "1"] and list(m["group"]) == ["111", "222"]
    assert "attr.gender" not in m.columns and "attr.race" in m.columns
    with pytest.raises(UsageError, match=r"--domain 'rase' is not a field.*did you mean 'race'"):
        read_dataset(tmp_path, options=ReadOptions(pattern="{age}_{gender}_{race}_{id}.jpg",
                                                   roles=Roles(domain="rase")))


def test_unmatched_files_are_kept_and_reported(tmp_path):
    good = [f"{i}_0_1_{i}.jpg" for i in range(5)]
    bad = ["39_1_20170116174525125.jpg", "notes.png", "x_y.jpg", "zz.jpg"]
    touch_images(tmp_path, good + bad)
    res = read_dataset(tmp_path, options=ReadOptions(pattern="{age:\\d+}_{gender:\\d}_{race:\\d}_{_}.jpg"))
    m = res.manifest
    assert len(m) == 9  # nothing dropped
    assert m["attr.age"].isna().sum() == 4
    (note,) = res.notes
    assert note.startswith("4 of 9 files do not match")
    examples = note.split("(e.g. ")[1]
    assert len(re.findall(r"'[^']+\.(?:jpg|png)'", examples)) == 3  # three examples


def test_path_template_with_folders(tmp_path):
    touch_images(tmp_path, ["train/site_a/cat/1.png", "test/site_b/dog/2.png", "loose.png"])
    res = read_dataset(tmp_path, options=ReadOptions(pattern="{split}/{domain}/{label}/{_}"))
    m = res.manifest.set_index("filepath")
    assert m.loc["test/site_b/dog/2.png", ["split", "domain", "label"]].tolist() == ["test", "site_b", "dog"]
    assert pd.isna(m.loc["loose.png", "label"])
    assert "1 of 3 files" in res.notes[0]


def test_regex_pattern(tmp_path):
    touch_images(tmp_path, ["img_cat_L.jpg", "img_dog_R.jpg"])
    m = read_dataset(tmp_path, options=ReadOptions(pattern=r"img_(?P<label>[a-z]+)_(?P<eye>[LR])\.jpg$")).manifest
    assert list(m["label"]) == ["cat", "dog"] and list(m["attr.eye"]) == ["L", "R"]


def test_bad_patterns_are_usage_errors(tmp_path):
    touch_images(tmp_path, ["a_1.jpg"])
    for pat, msg in [
        ("{label", "unbalanced"),
        ("no_fields.jpg", "has no {field}"),
        ("{a}_{a}.jpg", "appears twice"),
        ("{a:[}.jpg", "bad regex"),
        ("(?P<x>[)", "not a valid regular expression"),
    ]:
        with pytest.raises(UsageError, match=re.escape(msg)):
            read_dataset(tmp_path, format="pattern", options=ReadOptions(pattern=pat))
    with pytest.raises(InputError, match="no file .* matches"):
        read_dataset(tmp_path, format="pattern", options=ReadOptions(pattern="{x}-{y}.png"))
    with pytest.raises(UsageError, match="needs --pattern"):
        read_dataset(tmp_path, format="pattern")


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.text(alphabet="abcXYZ019-", min_size=1, max_size=6), min_size=2, max_size=4),
    sep=st.sampled_from(["_", "__", "+", " "]),
)
def test_template_round_trips_values_without_separator(parts, sep):
    """Fields built from values that do not contain the separator come back exactly (reference: str.split)."""
    if any(sep in p or (sep == "__" and "_" in p) for p in parts):
        return
    names = [f"f{i}" for i in range(len(parts))]
    pat = compile_pattern(sep.join(f"{{{n}}}" for n in names) + ".jpg")
    got = pat.match(sep.join(parts) + ".jpg")
    assert got == dict(zip(names, (sep.join(parts)).split(sep), strict=True))


def test_fields_to_roles_mapping():
    roles = fields_to_roles(["label", "domain", "skin", "_x", "id"], Roles())
    assert roles == {"label": "label", "domain": "domain", "skin": "attr.skin"}
    # a flag gives the label to another field: the field named 'label' becomes an attribute
    assert fields_to_roles(["label", "kind"], Roles(label="kind")) == {"label": "attr.label", "kind": "label"}


# ------------------------------------------------------------------------------------------ segdir
def test_segdir_pairs_by_stem_with_suffixes(tmp_path):
    for s in ("a", "b", "c"):
        img(tmp_path / "images" / f"{s}.jpg")
    img(tmp_path / "masks" / "a_mask.png", mode="L")
    img(tmp_path / "masks" / "b.png", mode="L")
    img(tmp_path / "masks" / "orphan_mask.png", mode="L")
    res = read_dataset(tmp_path)  # auto-detected from images/ + masks/
    assert res.format == "segdir" and res.task == "segment"
    m = res.manifest.set_index("filepath")
    assert m.loc["images/a.jpg", "mask"] == "masks/a_mask.png"
    assert m.loc["images/b.jpg", "mask"] == "masks/b.png"
    assert pd.isna(m.loc["images/c.jpg", "mask"])  # kept, mask missing
    assert any(n.startswith("1 of 3 images have no mask") and "'c.jpg'" in n for n in res.notes)
    assert any(n.startswith("1 masks under masks/ have no image") and "orphan_mask.png" in n for n in res.notes)


def test_segdir_domain_from_subfolder_and_layout(tmp_path):
    for site in ("clinic_a", "clinic_b"):
        for i in range(2):
            img(tmp_path / "imgs" / site / f"{i}.png")
            img(tmp_path / "gt" / site / f"{i}_gt.png", mode="L")
    opts = ReadOptions(image_dir="imgs", mask_dir="gt")
    m = read_dataset(tmp_path, options=opts).manifest.set_index("filepath")
    assert m.loc["imgs/clinic_b/1.png", "mask"] == "gt/clinic_b/1_gt.png"
    assert m.loc["imgs/clinic_b/1.png", "domain"] == "clinic_b"
    m2 = read_dataset(tmp_path, options=ReadOptions(image_dir="imgs", mask_dir="gt", layout="attr.site")).manifest
    assert set(m2["attr.site"]) == {"clinic_a", "clinic_b"} and "domain" not in m2.columns


def test_segdir_pattern_pairs_different_names(tmp_path):
    """DRIVE-style names: 21_training.tif pairs with 21_manual1.gif through a {key} field."""
    for i in (21, 22):
        img(tmp_path / "images" / f"{i}_training.tif")
        img(tmp_path / "masks" / f"{i}_manual1.gif", mode="L")
    m = read_dataset(tmp_path, format="segdir", options=ReadOptions(pattern="{key}_{_}.{_}")).manifest
    assert list(m["mask"]) == ["masks/21_manual1.gif", "masks/22_manual1.gif"]
    with pytest.raises(UsageError, match="needs a {key} field"):
        read_dataset(tmp_path, format="segdir", options=ReadOptions(pattern="{id}_{_}.{_}"))


def test_segdir_nothing_pairs_is_an_error(tmp_path):
    img(tmp_path / "images" / "x.png")
    img(tmp_path / "masks" / "y.png", mode="L")
    with pytest.raises(InputError, match="pairs with a mask"):
        read_dataset(tmp_path, format="segdir")
    with pytest.raises(InputError, match="no folder"):
        read_dataset(tmp_path, format="segdir", options=ReadOptions(mask_dir="nope"))


def test_segdir_then_ingest_records_segment_task(tmp_path):
    from audit.ingest import ingest

    for s in ("a", "b"):
        img(tmp_path / "data" / "images" / f"{s}.png")
        img(tmp_path / "data" / "masks" / f"{s}.png", mode="L")
    run = ingest(tmp_path / "data", out=tmp_path / "run")
    run.unlock()
    assert run.dataset["task"] == "segment" and run.dataset["format"] == "segdir"
    assert run.manifest()["mask"].notna().all()


def test_cli_profile_pattern_reports_notes(tmp_path):
    """The CLI reaches the pattern reader (the profile stage itself may be skipped or run)."""
    from typer.testing import CliRunner

    from audit.cli import app

    touch_images(tmp_path / "d", ["1_0_a.jpg", "2_1_b.jpg"])
    res = CliRunner().invoke(
        app, ["profile", str(tmp_path / "d"), "--pattern", "{age}_{gender}_{_}.jpg", "--label", "nope",
              "--out", str(tmp_path / "run")],
    )
    assert res.exit_code == 2 and "--label 'nope' is not a field" in res.output
