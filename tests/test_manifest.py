"""Manifest: role mapping, validation errors (one line each), missing values, fingerprint, Parquet round trip."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from audit.errors import InputError
from audit.manifest import (
    Roles,
    build_manifest,
    check_paths,
    fingerprint,
    flag_rows,
    flagged_rows_error,
    read_manifest,
    resolve_path,
    validate_manifest,
    write_manifest,
)


def _table():
    return pd.DataFrame(
        {
            "path": ["a/1.jpg", "a/2.jpg", "b/3.jpg"],
            "cls": ["cat", "dog", None],
            "site": ["x", "y", "nan"],
            "skin": ["I", "", "III"],
        }
    )


def test_roles_are_mapped_and_attrs_prefixed():
    df = build_manifest(_table(), Roles(filepath="path", label="cls", domain="site", attrs=["skin"]))
    assert list(df.columns) == ["sample_id", "filepath", "label", "domain", "group", "attr.skin"]
    assert df["sample_id"].tolist() == ["a/1.jpg", "a/2.jpg", "b/3.jpg"]
    assert df["group"].tolist() == df["sample_id"].tolist()  # group defaults to sample_id


def test_missing_values_stay_missing_never_nan_string():
    df = build_manifest(_table(), Roles(filepath="path", label="cls", domain="site", attrs=["skin"]))
    assert df["label"].isna().tolist() == [False, False, True]
    assert df["domain"].isna().tolist() == [False, False, True]
    assert df["attr.skin"].isna().tolist() == [False, True, False]
    assert "nan" not in set(df["domain"].dropna())


def test_unknown_column_suggests_closest():
    with pytest.raises(InputError) as e:
        build_manifest(_table(), Roles(filepath="path", label="clss"))
    msg = str(e.value)
    assert "'clss'" in msg and "did you mean 'cls'" in msg and "\n" not in msg


def test_unknown_attr_column():
    with pytest.raises(InputError, match="--attr"):
        build_manifest(_table(), Roles(filepath="path", attrs=["skn"]))


def test_filepath_is_guessed_or_reported():
    t = _table().rename(columns={"path": "image"})
    assert build_manifest(t, Roles()).shape[0] == 3
    with pytest.raises(InputError, match="filepath"):
        build_manifest(_table().rename(columns={"path": "zzz"}), Roles())


def test_a_file_listed_twice_is_two_flagged_rows_with_stable_ids():
    t = pd.DataFrame({"path": ["a.jpg", "a.jpg", "b.jpg", "./a.jpg"], "id": [None, None, None, None]})
    df = build_manifest(t, Roles(filepath="path"))
    assert df["sample_id"].tolist() == ["a.jpg", "a.jpg#2", "b.jpg", "./a.jpg"]
    assert df["listing_of"].tolist()[1] == "a.jpg" and df["listing_of"].tolist()[3] == "a.jpg"
    assert df["flag"].fillna("").tolist() == ["", "duplicate_listing", "", "duplicate_listing"]
    # the same id for different files: made unique, flagged, never a collision with an existing id
    t = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "id": ["s1", "s1", "s1#2"]})
    df = build_manifest(t, Roles(filepath="path", sample_id="id"))
    assert df["sample_id"].tolist() == ["s1", "s1#3", "s1#2"] and df["sample_id"].is_unique
    assert df["flag"].fillna("").tolist() == ["", "duplicate_id", ""]
    assert validate_manifest(df).equals(df)  # idempotent


def test_empty_manifest_is_an_error():
    with pytest.raises(InputError, match="empty"):
        validate_manifest(pd.DataFrame({"sample_id": [], "filepath": []}))


def test_missing_filepath_values_are_flagged_rows():
    t = pd.DataFrame({"path": ["a.jpg", None, ""]})
    df = build_manifest(t, Roles(filepath="path"))
    assert df["sample_id"].tolist() == ["a.jpg", "(row 2: empty path)", "(row 3: empty path)"]
    assert df["flag"].fillna("").tolist() == ["", "empty_path", "empty_path"] and len(df) == 3


def test_paths_escaping_root_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="outside the dataset root"):
        resolve_path(root, "../secret.jpg")
    with pytest.raises(InputError, match="--allow-outside-root"):
        resolve_path(root, str(tmp_path / "secret.jpg"))
    assert resolve_path(root, "../secret.jpg", allow_outside_root=True).name == "secret.jpg"
    # a symlink inside the root pointing outside is an escape too
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    with pytest.raises(InputError):
        resolve_path(root, "link.jpg")
    df = validate_manifest(pd.DataFrame({"sample_id": ["s"], "filepath": ["../secret.jpg"]}))
    with pytest.raises(InputError, match="row 's'"):
        check_paths(df, root)
    check_paths(df, root, allow_outside_root=True)


def test_flag_rows_marks_every_file_problem_and_never_raises(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(b"x")
    (root / "notes.txt").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", root / "link.png")
    os.symlink(tmp_path, root / "linkdir")
    paths = ["a.png", "../secret.png", str(tmp_path / "secret.png"), "link.png", "linkdir/secret.png", "sub",
             "gone.png", "notes.txt", None]
    df = validate_manifest(pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(paths))], "filepath": paths}))
    out, stats = flag_rows(df, root, extensions={".png"})
    assert out["flag"].fillna("").tolist() == ["", "outside_root", "outside_root", "outside_root", "outside_root",
                                               "directory", "missing_file", "unsupported_extension", "empty_path"]
    assert stats.shape == (len(paths), 2) and stats[0, 0] == 1 and (stats[1:5] == -3).all()
    allowed, _ = flag_rows(df, root, allow_outside_root=True, extensions={".png"})
    # allowed, the four spellings of secret.png are one file listed four times (found on the resolved path)
    assert allowed["flag"].fillna("").tolist()[:5] == ["", "", "duplicate_listing", "duplicate_listing",
                                                       "duplicate_listing"]
    clean, _ = flag_rows(df.iloc[:1], root, extensions={".png"})
    assert "flag" not in clean.columns
    err = flagged_rows_error(out)
    assert err is not None and "8 of 9" in str(err) and "'s1', 's2', 's3', 's4'" in str(err)
    assert "\n" not in str(err) and flagged_rows_error(clean) is None


def test_fingerprint_changes_with_content_and_files(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"123")
    df = validate_manifest(pd.DataFrame({"sample_id": ["a"], "filepath": ["a.jpg"], "label": ["x"]}))
    f1 = fingerprint(df, tmp_path)
    assert f1 == fingerprint(df.copy(), tmp_path)
    df2 = df.copy()
    df2["label"] = pd.array(["y"], dtype="string")
    assert fingerprint(df2, tmp_path) != f1
    (tmp_path / "a.jpg").write_bytes(b"12345")
    assert fingerprint(df, tmp_path) != f1


def test_parquet_round_trip_keeps_missing(tmp_path):
    df = build_manifest(_table(), Roles(filepath="path", label="cls", domain="site", attrs=["skin"]))
    write_manifest(df, tmp_path / "m.parquet")
    back = read_manifest(tmp_path / "m.parquet")
    pd.testing.assert_frame_equal(df, back)
    assert str(back["label"].dtype) == "string"
