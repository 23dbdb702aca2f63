"""Issue 23, verified beyond tests/test_messy_manifest.py: listings that disagree on an attribute or the domain are
attribute conflicts; the FiftyOne export takes every flagged row; the per-row checks' fast path keeps splitext's
answers and the stats the fingerprint reuses."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from audit.cli import app
from audit.manifest import Roles, build_manifest, flag_rows
from audit.readers import IMAGE_EXTENSIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_fiftyone import fo  # noqa: E402, F401  (fixture: FiftyOne's database in a temporary folder)
from test_messy_manifest import FLAGS, make_messy  # noqa: E402


def cli(*args, code: int | None = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    if code is not None:
        assert res.exit_code == code, (args, res.exit_code, res.output, res.exception)
    return res


def _findings(out: Path) -> list[dict]:
    data = json.loads((out / "findings.json").read_text())
    return data["findings"] if isinstance(data, dict) else data


def test_listings_that_disagree_on_an_attribute_or_the_domain_are_attribute_conflicts(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(ds / f"{i}.png")
    table = ds / "t.csv"
    table.write_text("path,label,site,scanner\n0.png,a,P,x\n1.png,b,P,x\n2.png,a,Q,y\n"
                     "0.png,a,Q,y\n1.png,b,P,x\n2.png,a,Q,z\n")
    out = tmp_path / "run"
    cli("profile", table, "--label", "label", "--domain", "site", "--attr", "scanner", "--out", out,
        "--check", "manifest")
    conf = {f["columns"][0]: f for f in _findings(out) if f["kind"] == "attribute_conflict"}
    assert set(conf) == {"attr.scanner", "domain"}
    pairs = {(p["a"], p["b"]) for p in conf["attr.scanner"]["evidence"]["pairs"]}
    assert pairs == {("0.png", "0.png#2"), ("2.png", "2.png#2")} and conf["attr.scanner"]["n"] == 2
    assert {(p["a"], p["b"]) for p in conf["domain"]["evidence"]["pairs"]} == {("0.png", "0.png#2")}
    assert all(f["severity"] == "warning" and f["evidence"]["pairs"][0]["basis"] == "listing" for f in conf.values())
    (dl,) = [f for f in _findings(out) if f["kind"] == "duplicate_listing"]
    assert dl["evidence"]["disagree"] == {"domain": 1, "attr.scanner": 2}
    assert len({f["id"] for f in _findings(out)}) == len(_findings(out))  # stable, distinct finding ids


ODD = {  # relative path -> the flag flag_rows must give (None: usable); splitext decides the odd names
    "a.PNG": None, ".png": "unsupported_extension", "..png": "unsupported_extension", "b..png": None,
    ".hidden.png": None, "x.tar.gz": "unsupported_extension", "x.": "unsupported_extension",
    "noext": "unsupported_extension", "sub/c.jpeg": None, ".cache/d.png": None, "./e.JPG": None, "lnk.png": None,
    "broken.png": "missing_file", "sublink/f.png": None, "sub/": "directory", "a.PNG/x.png": "missing_file",
    "/etc/hostname": "outside_root", "../x.png": "outside_root", "missing.png": "missing_file",
}


def test_flag_rows_fast_path_keeps_splitext_answers_and_the_stats(tmp_path):
    d = tmp_path / "root"
    (d / "sub").mkdir(parents=True)
    (d / ".cache").mkdir()
    for name in ("a.PNG", ".png", "..png", "b..png", ".hidden.png", "x.tar.gz", "x.", "noext", "sub/c.jpeg",
                 ".cache/d.png", "e.JPG", "sub/f.png"):
        (d / name).write_bytes(b"x" * (len(name) + 1))
    os.symlink(d / "a.PNG", d / "lnk.png")
    os.symlink(d / "gone", d / "broken.png")
    os.symlink(d / "sub", d / "sublink")
    man = build_manifest(pd.DataFrame({"path": list(ODD)}), Roles(filepath="path"))
    out, stats = flag_rows(man, d, extensions=IMAGE_EXTENSIONS)
    got = dict(zip(out["filepath"], out["flag"].astype(object).where(out["flag"].notna(), None), strict=True))
    assert got == ODD
    assert stats.shape == (len(ODD), 2) and stats.dtype == np.int64 and stats.flags.c_contiguous
    for k, p in enumerate(out["filepath"]):
        if ODD[p] is None:
            st = os.stat(d / p)
            assert tuple(stats[k]) == (st.st_size, st.st_mtime_ns), p
        elif ODD[p] == "outside_root":
            assert tuple(stats[k]) == (-3, -3)  # never stat-ed
        elif ODD[p] == "missing_file":
            assert tuple(stats[k]) == (-1, -1)


def test_fiftyone_placeholder_paths_for_rows_it_cannot_take(tmp_path):
    from audit.integrations.fiftyone import _sample_paths
    from audit.rundir import RunDir

    table, rows, flags = make_messy(tmp_path)
    out = tmp_path / "run"
    cli("profile", table, *FLAGS, "--out", out, "--check", "manifest")
    run = RunDir.open(out)
    m = run.manifest()
    rels, paths = _sample_paths(run, m, lambda p: "image" if p.endswith((".png", ".jpg")) else "unknown")
    assert len(paths) == len(rows) and rels[[i for i, f in flags.items() if f == "empty_path"][0]] == ""
    root = Path(run.root).resolve()
    for k, (p, f) in enumerate(zip(paths, m["flag"].astype(object).where(m["flag"].notna(), None), strict=True)):
        assert Path(p).resolve().is_relative_to(root), (p, f)  # never a path outside the root
        if f in ("empty_path", "outside_root", "directory", "unsupported_extension"):
            assert p == str(Path(run.root) / ".audit-unresolved" / f"{k}.png"), (p, f)
        else:
            assert p.endswith(rels[k]), (p, f)


@pytest.mark.skipif(importlib.util.find_spec("fiftyone") is None, reason="fiftyone is not installed")
def test_fiftyone_export_takes_every_flagged_row(fo, tmp_path):  # noqa: F811 (the fixture)
    from audit.integrations.fiftyone import export_run

    table, rows, flags = make_messy(tmp_path)
    out = tmp_path / "run"
    cli("profile", table, *FLAGS, "--out", out, "--workers", "1", "--n-boot", "20")
    name = export_run(out, name="issue23-messy")
    try:
        ds = fo.load_dataset(name)
        assert len(ds) == len(rows)
        got = dict(zip(ds.values("audit_id"), ds.values("flag"), strict=True))
        man = pd.read_parquet(out / "manifest.parquet")
        assert got == dict(zip(man["sample_id"], man["flag"].astype(object).where(man["flag"].notna(), None),
                               strict=True))
    finally:
        fo.delete_dataset(name)


def test_a_mask_leaving_the_root_flags_its_row_outside_root(tmp_path):
    d = tmp_path / "root"
    (d / "m").mkdir(parents=True)
    for i in range(4):
        (d / f"{i}.png").write_bytes(b"x")
        (d / "m" / f"{i}.png").write_bytes(b"y")
    (tmp_path / "out.png").write_bytes(b"z")
    os.symlink(tmp_path / "out.png", d / "m" / "ln.png")
    os.symlink(tmp_path, d / "up")
    t = pd.DataFrame({"path": ["0.png", "1.png", "2.png", "3.png", "0.png", None],
                      "mask": ["m/0.png", "../out.png", "m/ln.png", "up/out.png", str(tmp_path / "out.png"),
                               "m/1.png"]})
    man = build_manifest(t, Roles(filepath="path", mask="mask"))
    out, _ = flag_rows(man, d, extensions=IMAGE_EXTENSIONS)
    assert out["flag"].astype(object).where(out["flag"].notna(), None).tolist() == [
        None, "outside_root", "outside_root", "outside_root", "outside_root", "empty_path"]
    out, _ = flag_rows(man, d, extensions=IMAGE_EXTENSIONS, allow_outside_root=True)
    assert out["flag"].astype(object).where(out["flag"].notna(), None).tolist() == [
        None, None, None, None, "duplicate_listing", "empty_path"]
