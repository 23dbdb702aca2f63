"""Messy manifests (issue 23): a bad row is a flagged row and a finding, never a refusal of the whole dataset.

One hand-made table with real files on disk: truncated, HTML saved as .jpg, 16-bit, CMYK, EXIF-rotated and unicode
names (tests/badcorpus.py), a symlink leaving the dataset folder, a ``../`` path, an absolute path elsewhere, files
listed twice (conflicting labels, splits), an empty path, a folder, a missing file and an unsupported extension.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from audit.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from badcorpus import _good, make_image_corpus  # noqa: E402

FAST = ["--epochs", "1", "--model", "small_cnn", "--device", "cpu", "--workers", "1"]


def cli(*args, code: int | None = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    if code is not None:
        assert res.exit_code == code, (args, res.exit_code, res.output, res.exception)
    return res


def _csv(v) -> str:
    return "" if v is None else ('"' + v.replace('"', '""') + '"' if any(c in v for c in ',"') else v)


def make_messy(base: Path) -> tuple[Path, list[dict], dict[int, str | None]]:
    """The dataset under ``base/ds`` (table ``base/ds/table.csv``); returns the table, its rows, and per row the
    flag the manifest must carry."""
    ds = base / "ds"
    (ds / "data").mkdir(parents=True)
    rows: list[dict] = []
    flags: dict[int, str | None] = {}

    def row(path, label, split, site, flag=None):
        flags[len(rows)] = flag
        rows.append({"path": path, "label": label, "split": split, "site": site})

    for i in range(24):
        (ds / "data" / f"good_{i:02d}.png").write_bytes(_good(i, dark=i % 2 == 1))
        row(f"data/good_{i:02d}.png", "ab"[i % 2], "train" if i % 4 else "test", "PQ"[(i // 2) % 2])
    for k, rel in enumerate(sorted(make_image_corpus(ds / "data" / "corpus"))):
        row(f"data/corpus/{rel}", "ab"[k % 2], "train", "PQ"[k % 2])
    Image.new("RGB", (8, 8), (200, 10, 10)).save(base / "outside.png")
    os.symlink(base / "outside.png", ds / "data" / "link.png")
    row("../outside.png", "a", "train", "P", "outside_root")
    row("data/link.png", "b", "train", "Q", "outside_root")
    row(str(base / "outside.png"), "a", "train", "P", "outside_root")
    row("data/good_00.png", "b", "train", "P", "duplicate_listing")  # good_00 is test/a: label and split differ
    row("data/good_01.png", None, "test", "P", "duplicate_listing")  # good_01 is train/b: no label here
    row(None, "a", "train", "P", "empty_path")
    row("data/corpus/bad", "a", "train", "P", "directory")
    row("data/gone.png", "b", "train", "Q", "missing_file")
    (ds / "data" / "notes.txt").write_text("not an image list entry\n")
    row("data/notes.txt", "a", "train", "Q", "unsupported_extension")
    table = ds / "table.csv"
    cols = ["path", "label", "split", "site"]
    table.write_text(",".join(cols) + "\n" + "".join(",".join(_csv(r[c]) for c in cols) + "\n" for r in rows),
                     encoding="utf-8")
    return table, rows, flags


FLAGS = ["--path-col", "path", "--label", "label", "--split", "split", "--domain", "site"]


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    base = tmp_path_factory.mktemp("messy")
    table, rows, flags = make_messy(base)
    out = base / "run"
    res = cli("profile", table, *FLAGS, "--out", out, "--workers", "1", "--n-boot", "50")
    return base, table, rows, flags, out, res


def _empty_id(flags: dict) -> str:
    return f"(row {next(i for i, f in flags.items() if f == 'empty_path') + 1}: empty path)"


def _findings(out: Path) -> list[dict]:
    data = json.loads((out / "findings.json").read_text())
    return data["findings"] if isinstance(data, dict) else data


def test_profile_exits_0_and_accounts_for_every_row(messy):
    base, table, rows, flags, out, res = messy
    man = pd.read_parquet(out / "manifest.parquet")
    assert len(man) == len(rows)  # no row lost
    assert man["filepath"].fillna("").tolist() == [r["path"] or "" for r in rows]  # table order, empty path kept
    assert man["sample_id"].is_unique
    assert man["flag"].fillna("").tolist() == [flags[i] or "" for i in range(len(rows))]
    ids = man["sample_id"].tolist()
    assert "data/good_00.png#2" in ids and "data/good_01.png#2" in ids and _empty_id(flags) in ids
    assert man.loc[man["sample_id"] == "data/good_00.png#2", "listing_of"].item() == "data/good_00.png"
    im = pd.read_parquet(out / "profile" / "images.parquet")
    assert sorted(im["sample_id"]) == sorted(ids)
    err = im.set_index("sample_id")["error"]
    for sid, fl in zip(ids, man["flag"].fillna(""), strict=True):
        if fl and fl != "duplicate_listing":
            assert err[sid] == fl, (sid, fl, err[sid])
    # never opened: no bytes read, no hash, for every row outside the root
    outside = im[im["error"] == "outside_root"]
    assert len(outside) == 3 and outside["md5"].isna().all() and outside["bytes"].isna().all()
    # odd but valid files are kept readable; broken ones flagged by the scan
    ok = im.set_index("filepath")
    for rel in ("modes/gray16.png", "modes/cmyk.jpg", "exif/rotated.jpg", "unicode dir/ïmage ünï 😀.jpg"):
        assert bool(ok.loc[f"data/corpus/{rel}", "readable"]), rel
    assert ok.loc["data/corpus/bad/truncated.jpg", "error"] == "truncated"
    assert ok.loc["data/corpus/bad/html_as.jpg", "error"] == "not_an_image"
    assert int(ok.loc["data/corpus/exif/rotated.jpg", "exif_orientation"]) == 6
    run = json.loads((out / "run.json").read_text())
    assert run["stages"]["manifest"]["flagged"] == {"outside_root": 3, "duplicate_listing": 2, "empty_path": 1,
                                                    "directory": 1, "missing_file": 1, "unsupported_extension": 1}


def test_each_problem_is_a_finding_with_its_count(messy):
    out = messy[4]
    fs = _findings(out)
    by = {}
    for f in fs:
        by.setdefault(f["kind"], []).append(f)
    (o,) = by["outside_root"]
    assert o["severity"] == "warning" and o["evidence"]["count"] == 3 and "--allow-outside-root" in o["detail"]
    assert {e["filepath"] for e in o["evidence"]["examples"]} >= {"../outside.png", "data/link.png"}
    (d,) = by["duplicate_listing"]
    assert d["evidence"]["files"] == 2 and d["evidence"]["extra_rows"] == 2
    assert d["evidence"]["disagree"] == {"label": 2, "split": 2}
    rows = {f["groups"][0]: f["evidence"]["count"] for f in by["flagged_row"]}
    assert rows == {"empty_path": 1, "directory": 1, "unsupported_extension": 1}
    assert [f["evidence"]["count"] for f in by["missing_file"]] == [1]
    unread = {f["groups"][0]: f["evidence"]["count"] for f in by["unreadable_file"]}
    assert unread["truncated"] == 1 and unread["not_an_image"] == 2 and "outside_root" not in unread
    # the listing in another split is leakage, with another label a label conflict, like a byte-identical copy
    pairs = {(e["a"], e["b"]) for f in by["split_leakage"] for e in f["evidence"]["examples"]}
    assert ("data/good_00.png", "data/good_00.png#2") in pairs and ("data/good_01.png", "data/good_01.png#2") in pairs
    conflicts = {(p["a"], p["b"]) for f in by["label_conflict"] for p in f["evidence"]["pairs"]}
    assert ("data/good_00.png", "data/good_00.png#2") in conflicts
    dups = pd.read_parquet(out / "profile" / "duplicates.parquet")
    assert set(dups.loc[dups["basis"] == "listing", "a"]) == {"data/good_00.png", "data/good_01.png"}
    assert not any("listed" in f["title"] for f in by.get("exact_duplicate", []))


def test_strict_exits_2_listing_every_flagged_row(messy, tmp_path):
    table, rows, flags = messy[1], messy[2], messy[3]
    res = cli("profile", table, *FLAGS, "--out", tmp_path / "r", "--strict", code=2)
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.output
    text = " ".join(res.output.split())
    assert f"9 of {len(rows)} manifest rows are flagged" in text
    for sid in ("../outside.png", "data/link.png", "data/good_00.png#2", "data/good_01.png#2", _empty_id(flags),
                "data/corpus/bad", "data/gone.png", "data/notes.txt"):
        assert repr(sid) in text, sid
    assert not (tmp_path / "r" / "profile").exists()  # stopped before profiling
    (table.parent / "clean.csv").write_text("\n".join(table.read_text().splitlines()[:25]) + "\n")
    cli("profile", table.parent / "clean.csv", *FLAGS, "--out", tmp_path / "ok", "--strict", "--check", "manifest")


def test_allow_outside_root_reads_them(messy, tmp_path):
    table = messy[1]
    out = tmp_path / "r"
    cli("profile", table, *FLAGS, "--out", out, "--allow-outside-root", "--workers", "1", "--check", "integrity")
    im = pd.read_parquet(out / "profile" / "images.parquet").set_index("filepath")
    assert bool(im.loc["../outside.png", "readable"]) and bool(im.loc["data/link.png", "readable"])
    assert not any(f["kind"] == "outside_root" for f in _findings(out))


def test_training_excludes_flagged_rows_with_the_reason(messy, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(messy[4], out)
    cli("train", out, "--protocol", "split", *FAST)
    ex = pd.read_parquet(out / "train" / "excluded.parquet").set_index("sample_id")
    man = pd.read_parquet(out / "manifest.parquet")
    for sid, fl in zip(man["sample_id"], man["flag"].fillna(""), strict=True):
        if fl:
            assert ex.loc[sid, "reason"] == fl, (sid, ex.loc[sid].to_dict())
    pred = pd.read_parquet(out / "predictions.parquet")
    assert not set(pred["sample_id"]) & set(man.loc[man["flag"].notna(), "sample_id"])


def test_report_shows_the_flagged_rows(messy):
    out, flags = messy[4], messy[3]
    cli("report", out)
    html = (out / "report.html").read_text()
    assert "Flagged manifest rows" in html
    assert "data/notes.txt" in html and "unsupported_extension" in html and _empty_id(flags) in html


def test_dashboard_profile_page_shows_the_flagged_rows(messy, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from audit import views
    from audit.rundir import RunDir

    out = messy[4]
    rows, total, counts = views.flagged_rows(RunDir.open(out))
    assert total == 9 and counts["outside_root"] == 3 and set(rows["flag"]) >= {"empty_path", "duplicate_listing"}
    monkeypatch.setenv("IMGAUDIT_RUN", str(out))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/profile.py").run()
    assert not at.exception, [x.value for x in at.exception]
    warn = " ".join(w.value for w in at.warning)
    assert "9 flagged manifest rows" in warn and "outside\\_root (3)" in warn  # markdown-escaped


def test_metrics_on_external_predictions_leave_the_flagged_rows_out(messy, tmp_path):
    """An external predictions file covering every manifest row: the flagged rows (never opened, a second listing
    with the other listing's label, a missing file, ...) are left out as training leaves them out, counted by flag
    in run.json and named in one note line; every other row is scored."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(messy[4], out)
    man = pd.read_parquet(out / "manifest.parquet")
    pred = pd.DataFrame({"sample_id": man["sample_id"].astype(str), "y_pred": "a"})
    pred.to_csv(tmp_path / "pred.csv", index=False)
    res = cli("metrics", out, "--predictions", tmp_path / "pred.csv", "--n-boot", "50")
    flagged = man["flag"].dropna().value_counts().to_dict()
    assert sum(flagged.values()) == 9
    st = json.loads((out / "run.json").read_text())["stages"]["metrics"]
    assert st["dropped"]["flagged"] == flagged
    notes = [n for n in st["notes"] if "flagged at ingest" in n]
    assert len(notes) == 1 and "duplicate_listing 2" in notes[0] and "outside_root 3" in notes[0]
    text = " ".join(res.output.split())
    assert text.count("flagged at ingest were left out") == 1, res.output
    usable = man[man["flag"].isna() & man["label"].notna()]
    assert st["rows"] == len(usable)
    g = pd.read_parquet(out / "metrics" / "groups.parquet")
    by_label = g[(g["by"] == "label") & (g["metric"] == "accuracy") & (g["scope"] == "all")]
    assert by_label.set_index("group")["n"].astype(int).to_dict() == usable["label"].value_counts().to_dict()


def test_one_file_under_several_path_strings_is_one_file_listed_several_times(messy, tmp_path):
    """With --allow-outside-root the ``../`` path, the symlink leading out and the absolute path name one file:
    the listings are found on the resolved path (the lexical check sees three strings), the later two are
    ``duplicate_listing`` rows of the first; so is a symlink to a listed file inside the root (with the flag; without
    it, listings stay lexical)."""
    base, table = messy[0], messy[1]
    out = tmp_path / "r"
    cli("profile", table, *FLAGS, "--out", out, "--allow-outside-root", "--workers", "1", "--check", "manifest")
    man = pd.read_parquet(out / "manifest.parquet").set_index("filepath", drop=False)
    first = "../outside.png"
    for fp in ("data/link.png", str(base / "outside.png")):
        assert man.loc[fp, "flag"] == "duplicate_listing" and man.loc[fp, "listing_of"] == first, fp
    assert pd.isna(man.loc[first, "flag"])
    run = json.loads((out / "run.json").read_text())
    assert run["stages"]["manifest"]["flagged"]["duplicate_listing"] == 4  # good_00#2, good_01#2 and these two
    (d,) = [f for f in _findings(out) if f["kind"] == "duplicate_listing"]
    assert d["evidence"]["files"] == 3 and d["evidence"]["extra_rows"] == 4
    # inside the root too (with the flag): a symlink to a listed file, and a folder symlink
    ds = tmp_path / "in"
    (ds / "img").mkdir(parents=True)
    for k in range(3):
        (ds / "img" / f"{k}.png").write_bytes(_good(k))
    os.symlink(ds / "img" / "0.png", ds / "alias.png")
    os.symlink(ds / "img", ds / "same")
    (ds / "t.csv").write_text("path,label\nimg/0.png,a\nimg/1.png,b\nalias.png,b\nsame/1.png,b\nimg/2.png,a\n")
    cli("profile", ds / "t.csv", "--path-col", "path", "--label", "label", "--out", tmp_path / "r2",
        "--allow-outside-root", "--check", "manifest")
    m2 = pd.read_parquet(tmp_path / "r2" / "manifest.parquet")
    assert m2["flag"].fillna("").tolist() == ["", "", "duplicate_listing", "duplicate_listing", ""]
    assert m2["listing_of"].fillna("").tolist() == ["", "", "img/0.png", "img/1.png", ""]
