"""The dashboard's "What closes the gap" page (issue 21) under AppTest: verdict counts and sentences from the same
views as the report, the tradeoff and paired-difference charts, escaping, and what it says without a summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from audit.testing import HOSTILE, make_fake_run  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_mitigate_report import CASES, write_fake_summary  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "dashboards" / "app.py"
PAGE = "app_pages/mitigation.py"


def _page(run_path: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("IMGAUDIT_RUN", str(run_path))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["What closes the gap"]
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption] + [m.value for m in at.info]
    parts += [m.value for m in at.error]
    return "\n".join(map(str, parts))


def _charts(at: AppTest) -> int:
    n = 0

    def walk(node):
        nonlocal n
        ch = getattr(node, "children", None)
        for x in (ch.values() if isinstance(ch, dict) else ch or []):
            n += getattr(x, "type", "") == "vega_lite_chart"
            walk(x)

    walk(at._tree)
    return n


def test_page_shows_methods_verdicts_and_charts(tmp_path, monkeypatch):
    run = make_fake_run(tmp_path / "run")
    write_fake_summary(run)
    at = _page(run.path, monkeypatch)
    metrics = {m.label: m.value for m in at.metric}
    want = [v for *_, v in CASES.values()]
    assert metrics["Methods compared"] == str(len(CASES) + 1)  # + the hostile-named method
    assert metrics["Help"] == str(want.count("helps"))
    assert metrics["Hurt"] == str(want.count("hurts"))
    assert metrics["No measurable effect"] == str(want.count("no measurable effect") + 1)
    text = _texts(at)
    assert "Verdict rule" in text and "does not drop significantly" in text
    assert "**group\\_balance** :green[helps]" in text and "**groupdro** :red[hurts]" in text
    assert "pays for it" in text  # the tradeoff spelled out
    assert "Failed: augment" in text  # the failed method and its (escaped) error
    assert _charts(at) == 2  # tradeoff scatter, paired differences of the chosen metric
    assert len(at.dataframe) >= 3  # side by side, per-metric rows, what each variant changed
    side = at.dataframe[0].value
    assert list(side["method"]) == ["group_balance", "reweight", "groupdro", "dedup", HOSTILE]
    assert list(side["verdict"][:4]) == ["helps", "no measurable effect", "hurts", "hurts"]
    # user strings reach markdown escaped only, never as HTML
    assert "<script>" not in text.replace("\\<script\\>", "")
    for el in list(at.markdown) + list(at.caption):
        assert not el.proto.allow_html


def test_page_metric_choice_changes_the_rows(tmp_path, monkeypatch):
    run = make_fake_run(tmp_path / "run")
    write_fake_summary(run, hostile_method=False)
    at = _page(run.path, monkeypatch)
    at.selectbox(key="mg_metric").set_value("ood_accuracy").run()
    assert not at.exception
    rows = at.dataframe[1].value
    assert set(rows["by"]) == {"held_out"} and len(rows) == len(CASES)


def test_page_without_a_summary_says_what_to_run(tmp_path, monkeypatch):
    run = make_fake_run(tmp_path / "run")
    text = _texts(_page(run.path, monkeypatch))
    assert "No mitigation experiments yet" in text and "audit mitigate" in text
    prof = make_fake_run(tmp_path / "prof", profile_only=True)
    assert "audit train" in _texts(_page(prof.path, monkeypatch))
