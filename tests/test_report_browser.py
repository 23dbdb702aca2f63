"""Open report.html in headless Chromium with the network cut off; the key sections render from the file alone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from audit.report import write_report
from audit.testing import make_fake_run

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium (apt-get install chromium)"),
]


def test_report_renders_offline_in_chromium(tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    run = make_fake_run(tmp_path / "demo_run", hostile=True)
    html_path, _ = write_report(run)
    requests: list[str] = []
    dialogs: list[str] = []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
            ctx.route(lambda url: not url.startswith(("file:", "data:")),
                      lambda route: (requests.append(route.request.url), route.abort()))
            page = ctx.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(html_path.as_uri())
            page.wait_for_selector("#overview")
            for sid, text in [("overview", "Overview"), ("findings", "Findings"), ("datasheet", "Datasheet"),
                              ("associations", "Associations"), ("duplicates", "Duplicates"),
                              ("group-metrics", "Per-group metrics"), ("generalization", "Generalization"),
                              ("fairness", "Fairness"), ("calibration", "Calibration"), ("provenance", "Provenance")]:
                assert text in page.locator(f"#{sid} h2").inner_text()
            # hostile label rendered as text, nothing executed
            assert "<script>alert(1)</script>" in page.locator("#datasheet").inner_text()
            assert page.locator("svg").count() > 5
            # thumbnails decoded from data: URIs
            widths = page.eval_on_selector_all("img.thumb", "els => els.map(e => e.naturalWidth)")
            assert widths and all(w > 0 for w in widths)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert requests == [] and dialogs == []
    # Refresh the docs screenshot only on request, so a test run never dirties the checkout.
    docs = Path(__file__).resolve().parents[1] / "docs" / "img"
    if os.environ.get("AUDIT_UPDATE_SCREENSHOTS") and docs.is_dir():
        shutil.copy(shot, docs / "report.png")
