"""Recipes read the usual repackagings of their datasets (issue 18, "Real layouts"), on generated trees.

DRIVE as ``DRIVE/training|test``, ``DRIVE/datasets/training|testing`` and case variants; CHASE_DB1 as ``CHASE_DB1``
or ``CHASEDB1``, also nested one level; UTKFace names with two label fields; a clear error naming the nearest
folders when a layout is not found; no reading of a whole root that mostly holds another dataset.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.errors import InputError
from audit.manifest import Roles
from audit.readers import ReadOptions, read_dataset
from audit.train.protocols import TEST, TRAIN, VAL, make_folds


def img(path: Path, *, mode: str = "RGB", value: int = 0) -> Path:
    """A tiny real image in the format its extension says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((4, 4, 3) if mode == "RGB" else (4, 4), value, dtype=np.uint8)
    fmt = {".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".gif": "GIF"}[path.suffix.lower()]
    Image.fromarray(arr, mode=mode).save(path, format=fmt)
    return path


def read(recipe: str, root: Path):
    return read_dataset(None, options=ReadOptions(recipe=Path(recipe), root=root, roles=Roles()))


def drive_part(folder: Path, kind: str, keys: tuple[str, ...], *, labels: bool = True) -> None:
    """DRIVE's training/ or test/ folder: images/*.tif, 1st_manual/*_manual1.gif, mask/*_mask.gif (FOV)."""
    for k in keys:
        img(folder / "images" / f"{k}_{kind}.tif")
        img(folder / "mask" / f"{k}_{kind}_mask.gif", mode="L", value=255)
        if labels:
            img(folder / "1st_manual" / f"{k}_manual1.gif", mode="L", value=255)


def chase(folder: Path, children: range = range(1, 3)) -> list[str]:
    """CHASE_DB1: Image_01L.jpg with Image_01L_1stHO.png and _2ndHO.png side by side, both eyes of each child."""
    keys = [f"{c:02d}{eye}" for c in children for eye in "LR"]
    for k in keys:
        img(folder / f"Image_{k}.jpg")
        img(folder / f"Image_{k}_1stHO.png", mode="L", value=255)
        img(folder / f"Image_{k}_2ndHO.png", mode="L")
    return keys


# ------------------------------------------------------------------------------------------ DRIVE layouts
@pytest.mark.parametrize(
    ("train", "test"),
    [
        ("DRIVE/training", "DRIVE/test"),  # the original DRIVE.zip
        ("DRIVE/datasets/training", "DRIVE/datasets/testing"),
        ("DRIVE/datasets/training", "DRIVE/datasets/test"),
        ("DRIVE/training", "DRIVE/testing"),
        ("DRIVE/DRIVE/training", "DRIVE/DRIVE/test"),  # extracted into a folder of the same name
        ("drive/Training", "drive/Test"),  # case variants
    ],
)
def test_drive_layouts(tmp_path, train, test):
    drive_part(tmp_path / train, "training", ("21", "22"))
    drive_part(tmp_path / test, "test", ("01",))
    chase(tmp_path / "CHASE_DB1")
    res = read("retina_vessels", tmp_path)
    m = res.manifest.set_index("filepath")
    assert len(m) == 3 + 4
    tr = f"{train}/images/21_training.tif"
    assert m.loc[tr, "mask"] == f"{train}/1st_manual/21_manual1.gif"  # the spelling on disk, not the recipe's
    assert m.loc[tr, "split"] == "train" and m.loc[tr, "domain"] == "DRIVE"
    te = f"{test}/images/01_test.tif"
    assert m.loc[te, "mask"] == f"{test}/1st_manual/01_manual1.gif" and m.loc[te, "split"] == "test"
    assert not m["mask"].dropna().str.endswith("_mask.gif").any()  # FOV masks are not targets
    assert not any("skipped" in n for n in res.notes)


def test_drive_test_without_labels_is_skipped_with_a_note(tmp_path):
    # drive.grand-challenge.org's copy: test/ has images and FOV masks but no 1st_manual
    drive_part(tmp_path / "DRIVE" / "datasets" / "training", "training", ("21",))
    drive_part(tmp_path / "DRIVE" / "datasets" / "testing", "test", ("01",), labels=False)
    chase(tmp_path / "CHASEDB1")
    res = read("retina_vessels", tmp_path)
    assert len(res.manifest) == 1 + 4
    assert any("DRIVE test" in n and "skipped" in n and "1st_manual" in n for n in res.notes)


# ------------------------------------------------------------------------------------------ CHASE_DB1 layouts
@pytest.mark.parametrize("folder", ["CHASE_DB1", "CHASEDB1", "chasedb1", "CHASEDB1/CHASEDB1", "CHASE_DB1/CHASE_DB1",
                                    "CHASE_DB1/CHASEDB1"])
def test_chase_layouts(tmp_path, folder):
    drive_part(tmp_path / "DRIVE" / "training", "training", ("21",))
    chase(tmp_path / folder)
    res = read("retina_vessels", tmp_path)
    m = res.manifest.set_index("filepath")
    f = f"{folder}/Image_01R.jpg"
    assert m.loc[f, "mask"] == f"{folder}/Image_01R_1stHO.png"  # 1stHO is the target, 2ndHO is not used
    assert m.loc[f, "domain"] == "CHASE_DB1" and m.loc[f, "attr.eye"] == "R"
    assert m.loc[f, "group"] == m.loc[f"{folder}/Image_01L.jpg", "group"] == "01"
    assert (m["domain"] == "CHASE_DB1").sum() == 4
    assert not m["mask"].dropna().str.contains("2ndHO").any()


def _parts(fold) -> dict[int, np.ndarray]:
    return {TRAIN: fold.train_idx, VAL: fold.val_idx, TEST: fold.test_idx}


def test_chase_eyes_of_one_child_never_cross_splits(tmp_path):
    drive_part(tmp_path / "DRIVE" / "training", "training", tuple(str(i) for i in range(21, 41)))
    chase(tmp_path / "CHASEDB1", range(1, 15))  # 14 children x 2 eyes, as in the real set
    m = read("retina_vessels", tmp_path).manifest.reset_index(drop=True)
    ch = m[m["domain"] == "CHASE_DB1"].reset_index(drop=True)
    assert ch.groupby("group").size().eq(2).all() and ch["group"].nunique() == 14
    # the split protocol on CHASE_DB1 alone (no given split): a seeded split by group
    tables = [("split", ch.drop(columns=[c for c in ("split",) if c in ch.columns])), ("lodo", m), ("transfer", m)]
    for protocol, table in tables:
        for seed in range(6):
            folds, _notes = make_folds(table, protocol, seed=seed, val_fraction=0.2, test_fraction=0.3)
            for fold in folds:
                seen: dict[str, int] = {}
                for part, idx in _parts(fold).items():
                    for g in table["group"].to_numpy()[idx]:
                        assert seen.setdefault(g, part) == part, (protocol, seed, fold.name, g)
                if protocol == "split":
                    used = {table["group"].iloc[i] for idx in _parts(fold).values() for i in idx}
                    assert len(used) == 14  # nothing was dropped to mend a leak: the groups were kept whole
                    assert len(fold.test_idx) > 0 and len(fold.train_idx) > 0


# ------------------------------------------------------------------------------------------ not found
def test_missing_layout_names_candidates_and_nearest_folders(tmp_path):
    drive_part(tmp_path / "DRIVE" / "data" / "training", "training", ("21",))  # a layout the recipe does not list
    chase(tmp_path / "CHASE_DB1")
    with pytest.raises(InputError) as e:
        read("retina_vessels", tmp_path)
    msg = str(e.value)
    assert "'DRIVE/training'" in msg and "'DRIVE/datasets/training'" in msg  # what was looked for
    assert "nearest folders that exist: 'DRIVE/data/training'" in msg
    assert "pass --root" in msg and "\n" not in msg


def test_dataset_folder_given_as_root_names_the_folder_to_pass(tmp_path):
    drive_part(tmp_path / "DRIVE" / "training", "training", ("21",))
    chase(tmp_path / "CHASE_DB1")
    with pytest.raises(InputError, match=re.escape(f"the folder to pass is --root {tmp_path}")) as e:
        read("retina_vessels", tmp_path / "DRIVE")
    assert "'training'" in str(e.value)  # the nearest folder that exists


def test_download_one_level_deeper_names_the_folder_to_pass(tmp_path):
    drive_part(tmp_path / "retina" / "DRIVE" / "training", "training", ("21",))
    chase(tmp_path / "retina" / "CHASE_DB1")
    with pytest.raises(InputError) as e:
        read("retina_vessels", tmp_path)
    msg = str(e.value)
    assert "'retina/DRIVE/training'" in msg and f"the folder to pass is --root {tmp_path / 'retina'}" in msg
    assert len(read("retina_vessels", tmp_path / "retina").manifest) == 1 + 4


def test_missing_chase_names_the_nearest_folder(tmp_path):
    drive_part(tmp_path / "DRIVE" / "training", "training", ("21",))
    chase(tmp_path / "chase-db1")
    with pytest.raises(InputError) as e:
        read("retina_vessels", tmp_path)
    msg = str(e.value)
    assert "part 'CHASE_DB1'" in msg and "'CHASEDB1/CHASEDB1'" in msg
    assert "nearest folders that exist: 'chase-db1'" in msg


def test_empty_root_says_so(tmp_path):
    with pytest.raises(InputError, match="does not look like this dataset.*no sub-folder"):
        read("retina_vessels", tmp_path)


# ------------------------------------------------------------------------------------------ UTKFace
_UTK = [
    "26_1_2_20170116174525125.jpg.chip.jpg",
    "45_0_3_20170119171417728.jpg.chip.jpg",
    "1_0_0_20161219140623097.jpg.chip.jpg",
    "39_1_20170116174525125.jpg.chip.jpg",  # the real files with two label fields
    "61_1_20170109142408075.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
]


def test_utkface_two_label_fields_are_kept_with_race_unknown(tmp_path):
    for n in _UTK:
        img(tmp_path / "UTKFace" / n)
    res = read("utkface", tmp_path)
    m = res.manifest.set_index("filepath")
    assert len(m) == 6
    r = m.loc["UTKFace/61_1_20170109142408075.jpg.chip.jpg"]
    assert r["label"] == "female" and r["attr.age"] == "60-69" and pd.isna(r["attr.race"])
    assert m.loc["UTKFace/45_0_3_20170119171417728.jpg.chip.jpg", "attr.race"] == "Indian"
    note = next(n for n in res.notes if "without a 'race' field" in n)
    assert note.startswith("3 of 6 files") and "attr.race unknown" in note
    assert "'61_1_20170109142408075.jpg.chip.jpg'" in note and "'39_1_20170116174525125.jpg.chip.jpg'" in note
    assert not any("do not match" in n for n in res.notes)


@pytest.mark.parametrize("folder", ["UTKFace", "utkface", "utkface_aligned_cropped/UTKFace", "crop_part1",
                                    "utkface_aligned_cropped/crop_part1"])
def test_utkface_layouts(tmp_path, folder):
    for n in _UTK[:3]:
        img(tmp_path / folder / n)
    img(tmp_path / "other" / "cats" / "a.jpg")  # something else beside it is not read
    m = read("utkface", tmp_path).manifest
    assert sorted(m["filepath"]) == sorted(f"{folder}/{n}" for n in _UTK[:3])


def test_utkface_root_mostly_another_dataset_is_refused(tmp_path):
    for n in _UTK:
        img(tmp_path / "faces" / n)
    for i in range(8):
        img(tmp_path / "celeba" / "img_align_celeba" / f"{i:06d}.jpg")
    with pytest.raises(InputError) as e:
        read("utkface", tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"8 of 14 image files under {tmp_path} do not match")
    assert f"the folder to pass is --root {tmp_path / 'faces'}" in msg
    assert len(read("utkface", tmp_path / "faces").manifest) == 6


def test_utkface_matches_in_several_folders_beside_another_dataset(tmp_path):
    img(tmp_path / "part1" / "1_0_0_20161219140623097.jpg")
    img(tmp_path / "part2" / "80_1_1_20170110131953974.jpg")
    for i in range(3):
        img(tmp_path / "pets" / f"dog_{i}.jpg")
    with pytest.raises(InputError, match=r"in part1/ \(1\), part2/ \(1\): pass --root a folder that holds only them"):
        read("utkface", tmp_path)


def test_utkface_a_few_stray_files_are_kept_and_noted(tmp_path):
    for n in _UTK:
        img(tmp_path / n)  # --root is the image folder itself
    img(tmp_path / "thumbs" / "preview.png")
    res = read("utkface", tmp_path)
    m = res.manifest.set_index("filepath")
    assert len(m) == 7 and pd.isna(m.loc["thumbs/preview.png", "label"])
    assert any("1 of 7 files do not match" in n for n in res.notes)


def test_plain_pattern_read_with_most_files_unmatched_notes_where_matches_are(tmp_path):
    for n in _UTK[:2]:
        img(tmp_path / "faces" / n)
    for i in range(3):
        img(tmp_path / "pets" / f"dog_{i}.jpg")
    opts = ReadOptions(pattern=r"(?P<age>\d+)_(?P<gender>\d)_(?:(?P<race>\d)_)?\d+\.jpg", roles=Roles())
    res = read_dataset(tmp_path, format="pattern", options=opts)
    assert len(res.manifest) == 5  # a plain --pattern read keeps everything, and says where the matches are
    assert any("3 of 5 files do not match" in n and "those that do are in faces/ (2)" in n for n in res.notes)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_profile_retina_layouts(tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app

    root = tmp_path / "data"
    drive_part(root / "DRIVE" / "datasets" / "training", "training", ("21", "22"))
    drive_part(root / "DRIVE" / "datasets" / "testing", "test", ("01",))
    chase(root / "CHASEDB1" / "CHASEDB1")
    runner = CliRunner()
    res = runner.invoke(app, ["profile", "--recipe", "retina_vessels", "--root", str(root),
                              "--out", str(tmp_path / "r"), "--n-boot", "0"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    bad = runner.invoke(app, ["profile", "--recipe", "retina_vessels", "--root", str(root / "DRIVE"),
                              "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "nearest folders that exist: 'datasets/training'" in bad.output
