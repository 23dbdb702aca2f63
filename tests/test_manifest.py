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


def test_duplicate_sample_id_is_an_error():
    t = pd.DataFrame({"path": ["a.jpg", "a.jpg", "b.jpg"]})
    with pytest.raises(InputError, match="duplicate sample_id 'a.jpg'"):
        build_manifest(t, Roles(filepath="path"))


def test_empty_manifest_is_an_error():
    with pytest.raises(InputError, match="empty"):
        validate_manifest(pd.DataFrame({"sample_id": [], "filepath": []}))


def test_missing_filepath_values_are_an_error():
    t = pd.DataFrame({"path": ["a.jpg", None]})
    with pytest.raises(InputError, match="no file path"):
        build_manifest(t, Roles(filepath="path"))


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
