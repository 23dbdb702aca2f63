"""HEIF/HEIC and AVIF files on disk: a folder or a table of them is profiled (decoded through pillow-heif / Pillow
where this install can, otherwise read as unreadable files with a note saying what to install, never skipped).

The fake-module tests of :mod:`audit.io.heif` itself are in tests/test_api_stages.py; these write real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import audit
from audit.io.heif import AVIF_EXTENSIONS, HEIF_EXTENSIONS
from audit.readers import IMAGE_EXTENSIONS


def _avif_writable() -> bool:
    from PIL import features

    try:
        return bool(features.check("avif"))
    except Exception:
        return False


def _write(root: Path, *, n: int = 3, seed: int = 0) -> list[str]:
    """``n`` images per label as .heic (pillow-heif) and .avif (Pillow, where it has AVIF); relative paths."""
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    rng = np.random.default_rng(seed)
    rels = []
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            rel = f"{label}/{i}.heic"
            pillow_heif.from_bytes(mode="RGB", size=(48, 40), data=arr.tobytes()).save(root / rel, quality=90)
            rels.append(rel)
            if _avif_writable():
                rel = f"{label}/{i}.avif"
                Image.fromarray(np.ascontiguousarray(arr[::-1])).save(root / rel)
                rels.append(rel)
    return rels


def test_image_extensions_include_heif_and_avif_from_one_list():
    assert HEIF_EXTENSIONS | AVIF_EXTENSIONS <= IMAGE_EXTENSIONS
    assert {".heic", ".heif", ".hif", ".avif"} <= IMAGE_EXTENSIONS


def _images(run: audit.Run) -> pd.DataFrame:
    return run.table("profile/images").set_index("filepath")


def test_real_heif_and_avif_folder_is_decoded_through_pillow_heif(tmp_path):
    rels = _write(tmp_path / "data")
    run = audit.profile(tmp_path / "data", out=tmp_path / "run")
    assert sorted(run.table("manifest")["filepath"]) == sorted(rels)
    im = _images(run)
    assert im["readable"].all(), im[["readable", "error"]]
    heic = im[im.index.str.endswith(".heic")]
    assert (heic["format"] == "HEIF").all() and (heic["width"] == 48).all() and (heic["height"] == 40).all()
    assert not heic["ext_mismatch"].astype(bool).any()
    if _avif_writable():
        avif = im[im.index.str.endswith(".avif")]
        assert len(avif) == 6 and (avif["format"] == "AVIF").all() and (avif["width"] == 48).all()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["dataset"]["notes"] == []


def test_real_heif_table_is_not_flagged_and_is_decoded(tmp_path):
    rels = _write(tmp_path / "data", n=2)
    table = tmp_path / "data" / "labels.csv"
    pd.DataFrame({"filepath": rels, "label": [r.split("/")[0] for r in rels]}).to_csv(table, index=False)
    run = audit.profile(table, out=tmp_path / "run")
    man = run.table("manifest")
    assert len(man) == len(rels)
    if "flag" in man.columns:
        assert man["flag"].isna().all(), man["flag"].value_counts()
    assert _images(run)["readable"].all()


def test_real_heif_without_pillow_heif_is_read_unreadable_with_a_note(tmp_path):
    """pillow-heif blocked in every process (an importable stub that raises, on PYTHONPATH, so the scan's workers get
    it too): the folder is still read, the .heic files are unreadable, and the dataset notes say what to install."""
    rels = _write(tmp_path / "data")
    stub = tmp_path / "stub" / "pillow_heif"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('pillow_heif blocked by the test')\n")
    code = f"""
        import audit, json
        run = audit.profile({str(tmp_path / 'data')!r}, out={str(tmp_path / 'run')!r})
        im = run.table("profile/images")
        print(json.dumps({{"rows": im["filepath"].tolist(), "readable": im["readable"].astype(bool).tolist()}}))
    """
    env = {**os.environ, "AUDIT_NO_PROGRESS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "stub"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert sorted(got["rows"]) == sorted(rels)  # read, not skipped (and not "no image files")
    readable = dict(zip(got["rows"], got["readable"]))
    assert not any(v for k, v in readable.items() if k.endswith(".heic"))
    if _avif_writable():  # Pillow decodes AVIF itself
        assert all(v for k, v in readable.items() if k.endswith(".avif"))
    notes = json.loads((tmp_path / "run" / "run.json").read_text())["dataset"]["notes"]
    assert any("6 HEIF/HEIC file(s) cannot be decoded without pillow-heif" in x and "pip install" in x for x in notes)


def test_avif_note_when_this_pillow_cannot_decode_it(monkeypatch):
    from audit.io import heif

    monkeypatch.setattr(heif, "avif_readable", lambda: False)
    note = heif.unreadable_note(pd.Series(["a/x.AVIF", "b/y.png"]))
    assert note.startswith("1 AVIF file(s) cannot be decoded") and "pillow-heif" in note
