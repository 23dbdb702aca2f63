"""The "What closes the gap" section of report.html (issue 21): methods side by side, paired differences, the
tradeoff chart and one verdict per method by the rule of audit.mitigate.verdict; everything escaped; a hint when
``audit mitigate`` has not run; the numbers of a real (tiny) mitigation run."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from audit.mitigate.verdict import RULE, method_summary, method_verdict
from audit.report import write_report
from audit.report.mitigation import mitigation_section
from audit.rundir import RunDir
from audit.testing import HOSTILE, make_fake_run
from audit.views import mitigation_diffs, mitigation_notes, mitigation_view

BY = f"label x {HOSTILE}"


def _rows(method: str, wg: tuple[float, float, float], ood: tuple[float, float, float], *, by: str = BY,
          seg: bool = False) -> list[dict]:
    """Summary rows of one method: worst-group over ``by`` and over domain, held-out average, gap."""
    names = ("worst_group_miou", "ood_miou", "gap_miou") if seg else ("worst_group_accuracy", "ood_accuracy", "gap")
    out = []
    gap = (-wg[0], -wg[2], -wg[1])
    for metric, b, (d, lo, hi) in ((names[0], by, wg), (names[0], "domain", (0.0, -0.01, 0.01)),
                                   (names[1], "held_out", ood), (names[2], "in_domain - held_out", gap)):
        base = 0.3 if "worst" in metric else 0.8
        verdict = ("no measurable effect" if lo <= 0 <= hi
                   else "helps" if (lo > 0) != metric.startswith("gap") else "hurts")
        out.append({"method": method, "metric": metric, "by": b, "baseline": base, "mitigated": base + d, "diff": d,
                    "ci_low": lo, "ci_high": hi, "n": 240, "p": 0.01, "verdict": verdict})
    return out


CASES = {  # method: (worst-group diff, ci), (held-out diff, ci), expected verdict
    "group_balance": ((0.20, 0.10, 0.30), (0.005, -0.01, 0.02), "helps"),
    "groupdro": ((0.20, 0.10, 0.30), (-0.05, -0.08, -0.03), "hurts"),  # the worst group bought with the average
    "reweight": ((0.02, -0.03, 0.07), (0.0, -0.01, 0.01), "no measurable effect"),
    "dedup": ((-0.10, -0.18, -0.02), (0.01, -0.01, 0.03), "hurts"),
}


def write_fake_summary(run: RunDir, *, hostile_method: bool = True) -> None:
    """A summary.parquet / summary.json as ``audit mitigate`` writes them, with hostile strings in them."""
    rows = [r for m, (wg, ood, _) in CASES.items() for r in _rows(m, wg, ood)]
    if hostile_method:
        rows += _rows(HOSTILE, (0.0, -0.01, 0.01), (0.0, -0.01, 0.01))
    run.write_table("mitigations/summary.parquet", pd.DataFrame(rows))
    methods = {m: {"method": m, "train_seconds": 2.0, "groups": [f"attr.{HOSTILE}"], "cells": 4} for m in CASES}
    methods["groupdro"]["eta"] = 0.1
    methods["dedup"].update(rows_left_out=7, duplicate=5, label_conflict=4, cross_split=0)
    methods["augment"] = {"method": "augment", "error": f"RuntimeError: {HOSTILE}"}
    run.write_json("mitigations/summary.json", {"groups": [f"attr.{HOSTILE}"], "n_boot": 500, "min_n": 5,
                                                "baseline_train_seconds": 4.0, "methods": methods})


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    run = make_fake_run(tmp_path_factory.mktemp("mitrep") / "run")
    write_fake_summary(run)
    return run


def _section(text: str) -> str:
    s = text[text.index('<section id="mitigation">'):]
    return s[:s.index("</section>") + len("</section>")]


# ---------------------------------------------------------------------------------------------- verdict rule
@pytest.mark.parametrize("method", list(CASES))
def test_verdict_rule(method):
    wg, ood, want = CASES[method]
    word, sentence = method_verdict(pd.DataFrame(_rows(method, wg, ood)))
    assert word == want and sentence.startswith(f"{want}: worst-group accuracy ({BY})")
    if method == "groupdro":
        assert "significant drop" in sentence and "pays for it" in sentence


def test_verdict_reads_the_grouping_after_domain_segmentation_and_missing_rows():
    rows = pd.DataFrame(_rows("m", (0.1, 0.05, 0.2), (0.0, -0.01, 0.01), seg=True))
    s = method_summary(rows)
    assert s["verdict"] == "helps" and s["worst_by"] == BY and s["worst_metric"] == "worst_group_miou"
    assert "worst-group mIoU" in s["sentence"] and s["worst_diff"] == pytest.approx(0.1)
    only_domain = rows[rows["by"] != BY]
    assert method_summary(only_domain)["worst_by"] == "domain"
    none = rows[rows["metric"] == "gap"]
    assert method_verdict(none) == ("no measurable effect", "no measurable effect: no worst-group metric could be "
                                    "computed")
    nan = rows.assign(ci_low=math.nan, ci_high=math.nan)
    assert method_verdict(nan)[0] == "no measurable effect"


def test_view_one_row_per_method_with_the_shared_verdict(fake):
    v = mitigation_view(fake)
    assert list(v["method"]) == ["group_balance", "reweight", "groupdro", "dedup", HOSTILE]  # METHODS' order first
    s = fake.read_table("mitigations/summary.parquet")
    for r in v.to_dict("records"):
        assert (r["verdict"], r["sentence"]) == method_verdict(s[s["method"] == r["method"]])
        if r["method"] in CASES:
            assert r["verdict"] == CASES[r["method"]][2]
            assert r["train_seconds"] == 2.0 and r["time_vs_baseline"] == pytest.approx(0.5)
    g = v.set_index("method").loc["group_balance"]
    assert ((g["worst_diff"], g["worst_ci_low"], g["ood_ci_high"], g["gap_diff"])
            == pytest.approx((0.2, 0.1, 0.02, -0.2)))
    d = mitigation_diffs(fake)
    assert len(d) == len(s) and d["metric"].iloc[0] == "worst_group_accuracy" and d["metric"].iloc[-1] == "gap"
    notes = mitigation_notes(fake).set_index("method")
    assert (notes.loc["augment", "error"].endswith(HOSTILE)
            and "7 training rows left out" in notes.loc["dedup", "changed"])


# ---------------------------------------------------------------------------------------------- the section
def test_section_content_and_escaping(fake):
    text = write_report(fake)[0].read_text()
    sec = _section(text)
    assert '<a href="#mitigation">What closes the gap</a>' in text  # in the navigation
    assert "Methods side by side" in sec and "Paired differences per metric" in sec and "Tradeoff" in sec
    from html import escape

    assert escape(RULE) in sec  # the rule is stated
    for m, (_, _, want) in CASES.items():
        row = re.search(rf"<tr><td><b>{m}</b></td><td><span[^>]*>([^<]+)</span>", sec)
        assert row and row.group(1) == want, m
    # the paired difference and its interval, as the summary holds them
    assert "0.200 [0.100, 0.300]" in sec and "-0.050 [-0.080, -0.030]" in sec
    assert "2 s (0.50x baseline)" in sec
    assert sec.count("<svg") == 2  # tradeoff scatter, paired-difference intervals
    # hostile method name, grouping, group column and error text: escaped everywhere, never markup
    assert "<script" not in sec.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sec
    assert f"label x {escape(HOSTILE)}" in sec and f"RuntimeError: {escape(HOSTILE)}" in sec


def test_segmentation_section_speaks_of_miou(tmp_path):
    run = make_fake_run(tmp_path / "s", task="segment")
    rows = _rows("group_balance", (0.1, 0.05, 0.2), (0.0, -0.01, 0.01), seg=True, by="domain")
    run.write_table("mitigations/summary.parquet", pd.DataFrame(rows))
    v = mitigation_view(run)
    assert v["verdict"].tolist() == ["helps"] and v["gap_diff"].iloc[0] == pytest.approx(-0.1)
    sec = mitigation_section(run)
    assert "held-out mIoU" in sec and "worst-group mIoU (domain) +10.0 points" in sec


def test_section_hint_without_summary_and_absent_without_a_model(tmp_path):
    run = make_fake_run(tmp_path / "c")
    sec = _section(write_report(run)[0].read_text())
    assert "No mitigation experiments yet" in sec and f"audit mitigate {run.path}" in sec
    prof = make_fake_run(tmp_path / "p", profile_only=True)
    assert 'id="mitigation"' not in write_report(prof)[0].read_text()
    assert mitigation_view(prof) is None and mitigation_section(prof) == ""


def test_damaged_summary_is_one_line(tmp_path):
    run = make_fake_run(tmp_path / "c")
    (run.path / "mitigations").mkdir()
    (run.path / "mitigations" / "summary.parquet").write_bytes(b"not parquet")
    sec = _section(write_report(run)[0].read_text())
    assert "cannot read the mitigation summary" in sec


def test_real_mitigation_run_numbers_match_the_summary(tmp_path):
    from audit.mitigate import MitigateConfig, run_mitigations
    from audit.mitigate.synthetic import ingest_spurious
    from audit.train import TrainConfig, run_training

    run = ingest_spurious(tmp_path / "data", tmp_path / "run", per_domain=30, size=16, seed=2)
    with run:
        with run.stage("train"):
            run_training(run, TrainConfig(epochs=1, model="small_cnn", device="cpu"))
    with run:
        s = run_mitigations(run, MitigateConfig(methods=("group_balance", "reweight"), groups=("bg",), device="cpu",
                                                n_boot=100, min_n=5))
    sec = _section(write_report(run)[0].read_text())
    meta = run.read_json("mitigations/summary.json")["methods"]
    for r in mitigation_view(run).to_dict("records"):
        assert r["verdict"] == meta[r["method"]]["verdict"]  # summary.json, report and dashboard agree
        assert re.search(rf"<b>{r['method']}</b></td><td><span[^>]*>{r['verdict']}</span>", sec)
    from audit.report.blocks import ci, num

    for r in s.to_dict("records"):
        assert num(r["baseline"]) in sec and ci(r["ci_low"], r["ci_high"]) in sec
