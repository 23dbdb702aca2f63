"""audit report: one self-contained HTML file + summary.md, for every kind of run; hostile input is escaped."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.cli import app
from audit.report import write_report
from audit.rundir import RunDir
from audit.testing import HOSTILE, make_fake_run

SECTIONS = {
    "classify": ["overview", "findings", "datasheet", "distributions", "associations", "image-stats", "duplicates",
                 "group-metrics", "generalization", "fairness", "calibration", "provenance"],
    "segment": ["overview", "findings", "datasheet", "masks", "group-metrics", "generalization", "provenance"],
    "profile": ["overview", "findings", "datasheet", "distributions", "associations", "duplicates", "provenance"],
}


class _Collect(HTMLParser):
    """Collects tags, attributes and script/style contents to look for anything active or external."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        self.tags.append((tag, d))
        if "id" in d:
            self.ids.add(d["id"])


def parse(text: str) -> _Collect:
    c = _Collect()
    c.feed(text)
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("rep")
    return {
        "classify": make_fake_run(base / "c"),
        "segment": make_fake_run(base / "s", task="segment"),
        "profile": make_fake_run(base / "p", profile_only=True),
        "hostile": make_fake_run(base / "h", hostile=True),
    }


def _no_external(doc: _Collect, text: str) -> None:
    for tag, attrs in doc.tags:
        assert tag not in ("script", "iframe", "object", "embed", "link", "base"), tag
        for k, v in attrs.items():
            assert not k.startswith("on"), (tag, k)
            if k in ("src", "href", "xlink:href", "action"):
                assert v.startswith(("data:", "#")), (tag, k, v[:60])
    assert not re.search(r"url\(\s*['\"]?https?:", text)


@pytest.mark.parametrize("kind", ["classify", "segment", "profile"])
def test_report_sections_and_self_contained(runs, kind):
    run = runs[kind]
    html_path, md_path = write_report(run)
    text = html_path.read_text()
    doc = parse(text)
    for sid in SECTIONS[kind]:
        assert sid in doc.ids, sid
    _no_external(doc, text)
    assert html_path.stat().st_size < 1_000_000
    md = md_path.read_text()
    assert "| samples | 360 |" in md and "### Findings" in md
    if kind == "profile":
        assert "group-metrics" not in doc.ids and "No model was trained" in text
    else:
        assert "worst group" in md
    if kind == "classify":
        assert text.count("data:image/png;base64,") == 6  # 3 duplicate pairs x 2 thumbnails
        assert "<svg" in text and "Cramér" in text


def test_report_numbers_match_tables(runs):
    run = runs["classify"]
    text = write_report(run)[0].read_text()
    g = run.read_table("metrics/generalization.parquet")
    for v in g["gap"]:
        assert f"{v:.3f}" in text
    a = run.read_table("profile/associations.parquet")
    assert f"{a['value'].max():.3f}" in text


def test_hostile_labels_and_file_names_are_escaped(runs):
    run = runs["hostile"]
    m = run.manifest()
    assert (m["filepath"].str.contains("<img src=x onerror=alert(1)>", regex=False)).any()
    # put hostile text into findings too
    run.set_findings("extra", [{"kind": "class_imbalance", "severity": "critical", "title": HOSTILE,
                                "detail": "<img src=x onerror=alert(3)>",
                                "evidence": {"x": "</pre><script>x()</script>"}}])
    text = write_report(run)[0].read_text()
    doc = parse(text)
    _no_external(doc, text)
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "onerror=alert(1)" not in text.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    assert not any(t == "img" and not a.get("src", "").startswith("data:") for t, a in doc.tags)
    md = (run.path / "summary.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_cli_report_and_stage_status(runs, tmp_path):
    import shutil

    dst = tmp_path / "r"
    shutil.copytree(runs["profile"].path, dst)
    r = CliRunner().invoke(app, ["report", str(dst)])
    assert r.exit_code == 0, r.output
    assert (dst / "report.html").exists() and (dst / "summary.md").exists()
    assert RunDir(dst).stage_status("report") == "ok"
    md = (dst / "summary.md").read_text()
    assert "report=running" not in md and "profile=ok" in md  # the stage being written is not listed as running
    r = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 2


def test_damaged_table_does_not_break_the_report(runs, tmp_path):
    import shutil

    dst = tmp_path / "d"
    shutil.copytree(runs["classify"].path, dst)
    (dst / "profile" / "associations.parquet").write_bytes(b"garbage")
    text = write_report(RunDir(dst))[0].read_text()
    assert "associations.parquet" in text and "problem:" in text
    assert 'id="group-metrics"' in text


def _big_run(path, n: int) -> RunDir:
    """A run with n manifest rows and large profile tables but no image files (size-bound test)."""
    rng = np.random.default_rng(0)
    run = RunDir.create(path, command=["audit", "big"])
    ids = pd.Series([f"img/{i:07d}.jpg" for i in range(n)], dtype="string")
    dom = pd.Series(np.array(["a", "b", "c", "d"])[rng.integers(0, 4, n)], dtype="string")
    lab = pd.Series(rng.integers(0, 1000, n).astype(str), dtype="string")
    m = pd.DataFrame({"sample_id": ids, "filepath": ids, "label": lab, "domain": dom, "group": ids})
    run.write_manifest(m)
    run.update_info(dataset={"root": str(path), "n": n, "task": "classify", "classes": sorted(set(lab))[:1000]})
    run.mark_stage("profile", "ok")
    run.write_table("profile/images.parquet", pd.DataFrame({
        "sample_id": ids, "filepath": ids, "readable": rng.random(n) > 0.001, "error": None, "format": "JPEG",
        "width": 64, "height": 64, "brightness": rng.random(n), "contrast": rng.random(n), "bytes": 1000}))
    vc = lab.value_counts()
    run.write_table("profile/distribution.parquet", pd.DataFrame({"column": "label", "group": vc.index, "n": vc.values,
                                                                  "share": vc.values / n, "status": "ok"}))
    k = n // 10
    run.write_table("profile/duplicates.parquet", pd.DataFrame({
        "a": ids[:k].to_numpy(), "b": ids[k: 2 * k].to_numpy(), "kind": "near", "distance": 3,
        "cross_split": True, "label_conflict": False}))
    run.set_findings("profile", [{"kind": "near_duplicate", "severity": "warning", "title": f"dup {i}"}
                                 for i in range(1000)])
    return run


def test_report_size_bounded_on_a_large_run(tmp_path):
    run = _big_run(tmp_path / "big", 200_000)
    t0 = time.perf_counter()
    html_path, _ = write_report(run)
    seconds = time.perf_counter() - t0
    size = html_path.stat().st_size
    assert size < 5_000_000, size
    assert seconds < 60
    text = html_path.read_text()
    assert "showing 50 of 19,988 rows" in text and "970 smaller groups not drawn" in text


@pytest.mark.slow
def test_report_size_bounded_on_a_million_rows(tmp_path):
    run = _big_run(tmp_path / "big", 1_000_000)
    html_path, _ = write_report(run)
    assert html_path.stat().st_size < 5_000_000
