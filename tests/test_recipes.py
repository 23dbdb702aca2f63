"""Every recipe in datasets/ on a tiny fake tree with that dataset's real layout and file naming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.errors import InputError, UsageError
from audit.manifest import Roles
from audit.readers import ReadOptions, read_dataset
from audit.readers.recipe import list_recipes, load_recipe, read_recipe

REPO = Path(__file__).resolve().parents[1]


def img(path: Path, *, mode: str = "RGB", size: int = 4, value: int = 0) -> Path:
    """A tiny image in the format the extension says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size, size, 3) if mode == "RGB" else (size, size), value, dtype=np.uint8)
    im = Image.fromarray(arr, mode=mode)
    fmt = {".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".gif": "GIF"}[path.suffix.lower()]
    im.save(path, format=fmt)
    return path


def read(recipe: str, root: Path, roles: Roles | None = None):
    opts = ReadOptions(recipe=Path(recipe), root=root, roles=roles or Roles())
    return read_dataset(None, options=opts)


def test_every_recipe_parses_and_is_tested():
    names = set(list_recipes())
    expected = {
        "pacs", "vlcs", "office_home", "domainnet", "waterbirds", "celeba", "utkface", "fairface",
        "fitzpatrick17k", "isic", "retina_vessels", "cityscapes",
    }
    assert expected <= names
    for name in expected:
        r = load_recipe(name)
        ds = r["dataset"]
        for key in ("title", "url", "citation", "license"):
            assert ds.get(key), f"{name}: dataset.{key} missing"
        assert r.get("protocol", {}).get("default") in ("lodo", "split", "transfer"), name
        assert f"test_{name}" in globals(), f"no fake-tree test for recipe {name}"


# ------------------------------------------------------------------------------------------ DG benchmarks
def test_pacs(tmp_path):
    root = tmp_path / "PACS"
    kf = root / "kfold"
    files = {
        ("art_painting", "dog"): ["pic_001.jpg", "pic_002.jpg"],
        ("cartoon", "horse"): ["pic_010.jpg"],
        ("photo", "giraffe"): ["n02439033_10279.jpg"],
        ("sketch", "person"): ["12106.png"],
    }
    for (d, c), names in files.items():
        for n in names:
            img(kf / d / c / n)
    sp = root / "train_test_splits"
    sp.mkdir()
    (sp / "art_painting_train_kfold.txt").write_text("art_painting/dog/pic_001.jpg 1\n")
    (sp / "art_painting_crossval_kfold.txt").write_text("art_painting/dog/pic_002.jpg 1\n")
    (sp / "art_painting_test_kfold.txt").write_text("art_painting/dog/pic_001.jpg 1\nart_painting/dog/pic_002.jpg 1\n")
    res = read("pacs", root)
    m = res.manifest.set_index("filepath")
    assert len(m) == 5
    assert m.loc["kfold/art_painting/dog/pic_001.jpg", "domain"] == "art_painting"
    assert m.loc["kfold/art_painting/dog/pic_001.jpg", "label"] == "dog"
    assert m.loc["kfold/art_painting/dog/pic_001.jpg", "split"] == "train"
    assert m.loc["kfold/art_painting/dog/pic_002.jpg", "split"] == "val"
    assert pd.isna(m.loc["kfold/sketch/person/12106.png", "split"])
    assert set(m["domain"]) == {"art_painting", "cartoon", "photo", "sketch"}
    assert res.extra["recipe"]["name"] == "pacs"
    assert res.extra["recipe"]["protocol"]["default"] == "lodo"
    # DomainBed's layout without kfold/ reads the same
    db = tmp_path / "db"
    img(db / "photo" / "dog" / "a.jpg")
    img(db / "sketch" / "dog" / "b.png")
    r2 = read("pacs", db)
    assert set(r2.manifest["domain"]) == {"photo", "sketch"}
    assert any("absent" in n and "cartoon" in n for n in r2.notes)


def test_vlcs(tmp_path):
    for d in ("Caltech101", "LabelMe", "SUN09", "VOC2007"):
        for c in ("bird", "car", "chair", "dog", "person"):
            img(tmp_path / "VLCS" / d / c / f"{d.lower()}_{c}_000.jpg")
    res = read("vlcs", tmp_path)
    m = res.manifest
    assert len(m) == 20
    assert m.groupby("domain").size().to_dict() == dict.fromkeys(["Caltech101", "LabelMe", "SUN09", "VOC2007"], 5)
    assert set(m["label"]) == {"bird", "car", "chair", "dog", "person"}
    assert m["filepath"].str.startswith("VLCS/").all()
    assert not res.notes


def test_office_home(tmp_path):
    root = tmp_path / "OfficeHomeDataset_10072016"
    for d in ("Art", "Clipart", "Product", "Real World"):
        for c in ("Alarm_Clock", "Backpack"):
            img(root / d / c / "00001.jpg")
    res = read("office_home", root)
    m = res.manifest
    assert len(m) == 8 and set(m["domain"]) == {"Art", "Clipart", "Product", "Real World"}
    assert "Real World/Backpack/00001.jpg" in set(m["filepath"])
    # DomainBed's renamed copy maps back to the official domain name
    db = tmp_path / "office_home"
    img(db / "Real_World" / "Mug" / "00003.jpg")
    img(db / "Art" / "Mug" / "00004.jpg")
    m2 = read("office_home", db).manifest
    assert set(m2["domain"]) == {"Real World", "Art"}


def test_domainnet(tmp_path):
    root = tmp_path / "domain_net"
    for d in ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"):
        img(root / d / "aircraft_carrier" / f"{d}_001_000001.jpg")
        img(root / d / "zebra" / f"{d}_345_000002.jpg")
        (root / f"{d}_train.txt").write_text(f"{d}/aircraft_carrier/{d}_001_000001.jpg 0\n")
        (root / f"{d}_test.txt").write_text(f"{d}/zebra/{d}_345_000002.jpg 344\n{d}/zebra/missing.jpg 344\n")
    res = read("domainnet", tmp_path)
    m = res.manifest.set_index("filepath")
    assert len(m) == 12
    assert m.loc["domain_net/quickdraw/aircraft_carrier/quickdraw_001_000001.jpg", "split"] == "train"
    assert m.loc["domain_net/real/zebra/real_345_000002.jpg", "split"] == "test"
    assert m.loc["domain_net/real/zebra/real_345_000002.jpg", "label"] == "zebra"
    assert any("not among the images found" in n for n in res.notes)  # listed but absent files are reported


# ------------------------------------------------------------------------------------------ bias benchmarks
def test_waterbirds(tmp_path):
    root = tmp_path / "waterbird_complete95_forest2water2"
    rows = [
        (1, "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", 1, 0, 1),
        (2, "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", 1, 1, 0),
        (3, "013.Bobolink/Bobolink_0001_9261.jpg", 0, 2, 0),
        (4, "013.Bobolink/Bobolink_0003_10117.jpg", 0, 0, 1),
    ]
    for _, f, *_ in rows:
        img(root / f)
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    lines += [f"{i},{f},{y},{s},{p},/o/ocean/00002178.jpg" for i, f, y, s, p in rows]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    res = read("waterbirds", tmp_path)
    m = res.manifest.set_index("filepath")
    f0 = "waterbird_complete95_forest2water2/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
    assert m.loc[f0, "label"] == "waterbird"
    assert m.loc[f0, "split"] == "train"
    assert m.loc[f0, "attr.place"] == "water" and m.loc[f0, "domain"] == "water"
    assert list(m["split"]) == ["train", "val", "test", "train"]
    assert not res.notes


def _celeba_tables(base: Path, anno: str, evald: str, n: int = 4) -> None:
    names = "5_o_Clock_Shadow Arched_Eyebrows Blond_Hair Male Smiling Young"
    attr_lines = [str(n), names + " "]
    for i in range(1, n + 1):
        vals = [-1, 1, 1 if i % 2 else -1, 1 if i <= 2 else -1, -1, 1]
        attr_lines.append(f"{i:06d}.jpg " + " ".join(f"{v:2d}" for v in vals))
    (base / anno).mkdir(parents=True, exist_ok=True)
    (base / anno / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (base / anno / "identity_CelebA.txt").write_text("".join(f"{i:06d}.jpg {100 + i // 3}\n" for i in range(1, n + 1)))
    (base / evald).mkdir(parents=True, exist_ok=True)
    (base / evald / "list_eval_partition.txt").write_text(
        "".join(f"{i:06d}.jpg {0 if i < 3 else (1 if i == 3 else 2)}\n" for i in range(1, n + 1))
    )


def test_celeba(tmp_path):
    root = tmp_path / "CelebA"
    _celeba_tables(root, "Anno", "Eval")
    for i in range(1, 5):
        img(root / "Img" / "img_align_celeba" / f"{i:06d}.jpg")
    res = read("celeba", root)
    m = res.manifest.set_index("filepath")
    assert list(m.index) == [f"Img/img_align_celeba/{i:06d}.jpg" for i in range(1, 5)]
    assert list(m["label"]) == ["blond", "not_blond", "blond", "not_blond"]
    assert list(m["attr.Male"]) == ["male", "male", "female", "female"]
    assert list(m["split"]) == ["train", "train", "val", "test"]
    assert list(m["group"]) == ["100", "100", "101", "101"]  # identity: the resampling cluster
    assert set(m["attr.Young"]) == {"young"}
    # torchvision's flat layout, and any attribute as the label from the command line
    tv = tmp_path / "tv"
    _celeba_tables(tv / "celeba", ".", ".")
    for i in range(1, 5):
        img(tv / "celeba" / "img_align_celeba" / f"{i:06d}.jpg")
    r2 = read("celeba", tv, Roles(label="Smiling", attrs=["Arched_Eyebrows"]))
    m2 = r2.manifest
    assert m2["filepath"].iloc[0] == "celeba/img_align_celeba/000001.jpg"
    assert set(m2["label"]) == {"-1"} and set(m2["attr.Arched_Eyebrows"]) == {"1"}
    with pytest.raises(UsageError, match="Blond_Hiar"):
        read("celeba", tv, Roles(label="Blond_Hiar"))


def test_utkface(tmp_path):
    root = tmp_path / "UTKFace"
    names = [
        "100_0_0_20170112213500903.jpg.chip.jpg",
        "26_1_2_20170116174525125.jpg.chip.jpg",
        "3_1_4_20161219203626546.jpg.chip.jpg",
        "45_0_3_20170119171417728.jpg.chip.jpg",
        "39_1_20170116174525125.jpg.chip.jpg",  # a real UTKFace file missing its race field
    ]
    for n in names:
        img(root / n)
    res = read("utkface", tmp_path)
    m = res.manifest.set_index("filepath")
    assert len(m) == 5  # the malformed name is kept, not dropped
    r = m.loc["UTKFace/26_1_2_20170116174525125.jpg.chip.jpg"]
    assert (r["label"], r["attr.race"], r["attr.age"]) == ("female", "Asian", "20-29")
    assert m.loc["UTKFace/100_0_0_20170112213500903.jpg.chip.jpg", "attr.age"] == "70-120"
    assert m.loc["UTKFace/3_1_4_20161219203626546.jpg.chip.jpg", "attr.race"] == "Others"
    bad = m.loc["UTKFace/39_1_20170116174525125.jpg.chip.jpg"]
    assert pd.isna(bad["label"]) and pd.isna(bad["attr.race"])
    assert any("1 of 5 files do not match" in n and "39_1_2017" in n for n in res.notes)
    assert "attr._id" not in m.columns and "attr.id" not in m.columns


def test_fairface(tmp_path):
    root = tmp_path / "fairface"
    hdr = "file,age,gender,race,service_test\n"
    (root).mkdir()
    (root / "fairface_label_train.csv").write_text(
        hdr + "train/1.jpg,50-59,Male,East Asian,True\ntrain/2.jpg,30-39,Female,Indian,False\n"
    )
    (root / "fairface_label_val.csv").write_text(hdr + "val/1.jpg,3-9,Male,Latino_Hispanic,False\n")
    for f in ("train/1.jpg", "train/2.jpg", "val/1.jpg"):
        img(root / f)
    res = read("fairface", root)
    m = res.manifest.set_index("filepath")
    assert list(m.index) == ["train/1.jpg", "train/2.jpg", "val/1.jpg"]
    assert list(m["split"]) == ["train", "train", "val"]
    assert m.loc["val/1.jpg", "attr.race"] == "Latino_Hispanic"
    assert m.loc["train/2.jpg", "label"] == "Female" and m.loc["train/1.jpg", "attr.age"] == "50-59"


def test_fitzpatrick17k(tmp_path):
    root = tmp_path / "fitzpatrick17k"
    root.mkdir()
    hdr = "md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,three_partition_label,qc,url,url_alphanum\n"
    rows = [
        ("5e82a45bc5d78bd24ae9202d194423f8", 3, 3, "drug induced pigmentary changes", "inflammatory", "non-neoplastic"),
        ("fa2911a9b13b6f8af79cb700937cc14f", 1, 1, "photodermatoses", "inflammatory", "non-neoplastic"),
        ("d2bac3c9e4499032ca8e9b07c7d3bc40", -1, 6, "melanoma", "malignant melanoma", "malignant"),
        ("0a94359e7eaacd7178e06b2823777789", 6, 5, "basal cell carcinoma", "malignant epidermal", "malignant"),
    ]
    (root / "fitzpatrick17k.csv").write_text(
        hdr + "".join(f"{h},{s},{c},{lab},{n9},{n3},,http://x/{h},x\n" for h, s, c, lab, n9, n3 in rows)
    )
    for h, *_ in rows[:3]:
        img(root / "images" / f"{h}.jpg")  # the last image failed to download: kept, reported by profile
    res = read("fitzpatrick17k", tmp_path)
    m = res.manifest.set_index("filepath")
    assert len(m) == 4
    assert list(m["domain"].astype(object).where(m["domain"].notna(), None)) == ["III-IV", "I-II", None, "V-VI"]
    assert pd.isna(m["attr.fitzpatrick_scale"].iloc[2])  # -1 (unknown) is missing, not a group
    assert m["label"].iloc[3] == "malignant"
    assert m.index[0] == "fitzpatrick17k/images/5e82a45bc5d78bd24ae9202d194423f8.jpg"


def test_isic(tmp_path):
    root = tmp_path / "isic2020"
    (root / "train").mkdir(parents=True)
    hdr = "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target\n"
    rows = [
        "ISIC_2637011,IP_7279968,male,45.0,head/neck,unknown,benign,0",
        "ISIC_0015719,IP_3075186,female,45.0,upper extremity,unknown,benign,0",
        "ISIC_0052212,IP_2842074,female,50.0,lower extremity,nevus,benign,0",
        "ISIC_0074268,IP_6890425,female,55.0,,melanoma,malignant,1",
        "ISIC_0074311,IP_2842074,female,,lower extremity,unknown,benign,0",
    ]
    (root / "train.csv").write_text(hdr + "\n".join(rows) + "\n")
    for r in rows:
        img(root / "train" / f"{r.split(',')[0]}.jpg")
    res = read("isic", tmp_path)
    m = res.manifest.set_index("filepath")
    assert m.index[0] == "isic2020/train/ISIC_2637011.jpg"
    assert list(m["group"]) == ["IP_7279968", "IP_3075186", "IP_2842074", "IP_6890425", "IP_2842074"]
    assert list(m["attr.age_approx"].iloc[:4]) == ["45-59", "45-59", "45-59", "45-59"]
    assert pd.isna(m["attr.age_approx"].iloc[4]) and pd.isna(m["attr.anatom_site_general_challenge"].iloc[3])
    assert m["label"].iloc[3] == "malignant"


# ------------------------------------------------------------------------------------------ segmentation
def test_retina_vessels(tmp_path):
    drive = tmp_path / "DRIVE"
    for i in (21, 22):
        img(drive / "training" / "images" / f"{i}_training.tif")
        img(drive / "training" / "1st_manual" / f"{i}_manual1.gif", mode="L", value=255)
        img(drive / "training" / "mask" / f"{i}_training_mask.gif", mode="L", value=255)
    img(drive / "test" / "images" / "01_test.tif")
    img(drive / "test" / "1st_manual" / "01_manual1.gif", mode="L")
    chase = tmp_path / "CHASE_DB1"
    for k in ("01L", "01R", "02L"):
        img(chase / f"Image_{k}.jpg")
        img(chase / f"Image_{k}_1stHO.png", mode="L")
        img(chase / f"Image_{k}_2ndHO.png", mode="L")
    res = read("retina_vessels", tmp_path)
    assert res.task == "segment" and res.classes == ["background", "vessel"]
    assert res.extra["mask_values"] == {"0": 0, "255": 1}
    m = res.manifest.set_index("filepath")
    assert len(m) == 6
    assert m.loc["DRIVE/training/images/21_training.tif", "mask"] == "DRIVE/training/1st_manual/21_manual1.gif"
    assert m.loc["DRIVE/test/images/01_test.tif", "split"] == "test"
    assert m.loc["CHASE_DB1/Image_01R.jpg", "mask"] == "CHASE_DB1/Image_01R_1stHO.png"
    assert m.groupby("domain").size().to_dict() == {"CHASE_DB1": 3, "DRIVE": 3}
    assert m.loc["CHASE_DB1/Image_01R.jpg", "group"] == m.loc["CHASE_DB1/Image_01L.jpg", "group"] == "01"
    assert m.loc["CHASE_DB1/Image_02L.jpg", "attr.eye"] == "L"
    assert not any(str(p).endswith("_mask.gif") for p in m["mask"].dropna())  # FOV masks are not targets
    # a copy of DRIVE without test labels: that part is skipped with a note, the rest still reads
    import shutil

    shutil.rmtree(drive / "test" / "1st_manual")
    r2 = read("retina_vessels", tmp_path)
    assert len(r2.manifest) == 5
    assert any("DRIVE test" in n and "skipped" in n for n in r2.notes)


def test_cityscapes(tmp_path):
    root = tmp_path / "cityscapes"
    items = [("train", "aachen", "aachen_000000_000019"), ("train", "zurich", "zurich_000121_000019"),
             ("val", "frankfurt", "frankfurt_000000_000294")]
    for split, city, stem in items:
        img(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
        for kind in ("labelIds", "color", "instanceIds"):
            img(root / "gtFine" / split / city / f"{stem}_gtFine_{kind}.png", mode="L")
        (root / "gtFine" / split / city / f"{stem}_gtFine_polygons.json").write_text("{}")
    res = read("cityscapes", tmp_path)
    assert res.task == "segment" and len(res.classes) == 34 and res.classes[26] == "car"
    m = res.manifest.set_index("filepath")
    f = "cityscapes/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    assert m.loc[f, "mask"] == "cityscapes/gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    assert list(m["domain"]) == ["aachen", "zurich", "frankfurt"]
    assert list(m["split"]) == ["train", "train", "val"]
    assert any("do not match the mask pattern" in n for n in res.notes)


# ------------------------------------------------------------------------------------------ the recipe reader
def test_recipe_by_bare_name_path_and_toml_source(tmp_path):
    for c in ("dog", "horse"):
        img(tmp_path / "photo" / c / "1.jpg")
    a = read("pacs", tmp_path).manifest
    b = read(str(REPO / "datasets" / "pacs.toml"), tmp_path).manifest
    c = read_dataset(REPO / "datasets" / "pacs.toml", options=ReadOptions(root=tmp_path)).manifest
    d = read_dataset(tmp_path, options=ReadOptions(recipe=Path("PACS"))).manifest  # DATA as the root
    for other in (b, c, d):
        pd.testing.assert_frame_equal(a, other)


def test_unknown_recipe_suggests_closest():
    with pytest.raises(UsageError, match="did you mean 'pacs'"):
        load_recipe("pacss")


def test_wrong_root_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not look like this dataset|no table"):
        read("waterbirds", tmp_path)
    with pytest.raises(UsageError, match="needs the dataset folder"):
        read_dataset(None, options=ReadOptions(recipe=Path("pacs")))


def test_bad_recipe_files(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[dataset]\nname='x'\n[reder]\nformat='imagefolder'\n")
    with pytest.raises(UsageError, match="unknown section"):
        load_recipe(p)
    p.write_text("[reader]\nformat='folders'\n")
    with pytest.raises(UsageError, match="format must be one of"):
        load_recipe(p)
    p.write_text("[reader\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_recipe(p)


def test_value_maps_bins_and_unmapped_values_are_reported(tmp_path):
    (tmp_path / "t.csv").write_text("f,c,age\na.jpg,0,5\nb.jpg,1,17\nc.jpg,7,abc\n")
    for n in "abc":
        img(tmp_path / f"{n}.jpg")
    rec = tmp_path / "r.toml"
    rec.write_text(
        "[reader]\nformat='table'\ntables=[{file='t.csv'}]\npath='{f}'\n"
        "[roles]\nlabel='c'\nattrs=['age']\n[values.label]\n'0'='cat'\n'1'='dog'\n"
        "[bins.age]\nedges=[0, 10, 20]\n"
    )
    res = read_recipe(rec, tmp_path)
    m = res.manifest
    assert list(m["label"]) == ["cat", "dog", "7"]
    assert list(m["attr.age"].iloc[:2]) == ["0-9", "10-20"] and pd.isna(m["attr.age"].iloc[2])
    assert any("not in the recipe's value map" in n and "'7'" in n for n in res.notes)
    assert any("not numbers" in n and "'abc'" in n for n in res.notes)


def test_cli_profile_with_recipe(tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app

    for d in ("photo", "sketch"):
        for c in ("dog", "horse"):
            img(tmp_path / "PACS" / "kfold" / d / c / "pic_001.jpg")
    out = tmp_path / "run"
    # the profile stage may not be built yet; ingest is what this part owns
    from audit.pipeline import ingest

    run = ingest(None, out=out, options=ReadOptions(recipe=REPO / "datasets" / "pacs.toml", root=tmp_path / "PACS"))
    run.unlock()
    ds = run.dataset
    assert ds["format"] == "recipe" and ds["n"] == 4 and ds["recipe"]["name"] == "pacs"
    assert ds["classes"] == ["dog", "horse"]
    res = CliRunner().invoke(app, ["profile", "--recipe", "nope", "--root", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 2 and "no recipe 'nope'" in res.output
