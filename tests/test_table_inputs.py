"""Table and folder inputs that real users hand over: BOMs, quoting, mixed types, unicode paths, one-class labels."""

from __future__ import annotations

import pandas as pd
import pytest

from audit.errors import InputError
from audit.manifest import Roles
from audit.readers import ReadOptions, read_dataset


def _read(path, **roles):
    attrs = roles.pop("attrs", [])
    return read_dataset(path, options=ReadOptions(roles=Roles(attrs=attrs, **roles)))


def test_csv_with_bom_quoting_and_mixed_types(tmp_path):
    text = 'path,label,site,age\n"a, b.jpg",1,x,30\nc.jpg,cat,"y ""quoted""",\nd.jpg,2.0,x,NaN\n'
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    r = _read(tmp_path / "m.csv", filepath="path", label="label", domain="site", attrs=["age"])
    m = r.manifest
    assert m["filepath"].tolist() == ["a, b.jpg", "c.jpg", "d.jpg"]
    assert m["label"].tolist() == ["1", "cat", "2.0"]  # kept as typed, never coerced through floats
    assert m["domain"].tolist()[1] == 'y "quoted"'
    assert m["attr.age"].isna().tolist() == [False, True, True]
    assert r.root == tmp_path.resolve()


def test_ids_with_leading_zeros_survive(tmp_path):
    (tmp_path / "m.csv").write_text("path,subject\na.jpg,007\nb.jpg,010\n")
    m = _read(tmp_path / "m.csv", filepath="path", group="subject").manifest
    assert m["group"].tolist() == ["007", "010"]


def test_parquet_and_jsonl_tables(tmp_path):
    df = pd.DataFrame({"file": ["a.jpg", "b.jpg"], "y": [0, 1], "d": ["p", None]})
    df.to_parquet(tmp_path / "m.parquet")
    df.to_json(tmp_path / "m.jsonl", orient="records", lines=True)
    for name in ("m.parquet", "m.jsonl"):
        m = _read(tmp_path / name, filepath="file", label="y", domain="d").manifest
        assert m["label"].tolist() == ["0", "1"]
        assert m["domain"].isna().tolist() == [False, True]


def test_damaged_table_is_a_one_line_error(tmp_path):
    (tmp_path / "m.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="cannot read table"):
        _read(tmp_path / "m.parquet")


def test_missing_label_values_and_single_class_are_kept(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.jpg,x\nb.jpg,\nc.jpg,x\n")
    m = _read(tmp_path / "m.csv", filepath="path", label="label").manifest
    assert len(m) == 3 and m["label"].isna().sum() == 1


def test_imagefolder_layouts_and_unicode(tmp_path):
    from PIL import Image

    for rel in ["siteA/cat/1.png", "siteA/dog/2.png", "siteB/cat/ü 3.png"]:
        p = tmp_path / "data" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(p)
    m = read_dataset(tmp_path / "data").manifest
    assert set(m.columns) >= {"domain", "label"}
    assert sorted(m["domain"].unique()) == ["siteA", "siteB"]
    assert "siteB/cat/ü 3.png" in set(m["filepath"])
    m2 = read_dataset(tmp_path / "data", options=ReadOptions(layout="attr.site/label")).manifest
    assert "attr.site" in m2.columns and "domain" not in m2.columns
    with pytest.raises(InputError, match="no image files"):
        (tmp_path / "empty").mkdir()
        read_dataset(tmp_path / "empty")


def test_repeated_header_column_and_unguessable_path_column_are_clear_errors(tmp_path):
    import subprocess
    import sys

    (tmp_path / "dup.csv").write_text("path,label,label\na.jpg,1,2\n")
    (tmp_path / "nopath.csv").write_text("a,b\n1,2\n")
    for name, needle in (("dup.csv", "column 'label' appears more than once"),
                         ("nopath.csv", "no image path column found (looked for filepath, path")):
        r = subprocess.run([sys.executable, "-m", "audit", "profile", str(tmp_path / name),
                            "--out", str(tmp_path / "r")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and needle in r.stdout + r.stderr, r.stdout + r.stderr
        assert "Traceback" not in r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "audit", "profile", str(tmp_path / "nopath.csv"), "--path-col", "image",
                        "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "for --path-col" in r.stdout + r.stderr
    assert not (tmp_path / "r").exists()  # nothing written on a usage error


def test_non_image_files_in_a_folder_are_noted(tmp_path):
    from PIL import Image

    from audit.readers import ReadOptions
    from audit.readers.imagefolder import ImageFolderReader

    for d in ("cat", "dog"):
        (tmp_path / d).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / d / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("x")
    res = ImageFolderReader().read(tmp_path, ReadOptions())
    assert len(res.manifest) == 4
    assert res.notes == ["non-image files left out: 1 (.txt; e.g. dog/notes.txt)"]
