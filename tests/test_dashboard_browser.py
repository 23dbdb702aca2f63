"""A real ``streamlit run`` subprocess visited page by page in headless Chromium (Playwright, system browser).

Checks each page's key text, that no Streamlit exception box appears, and saves a screenshot per page under
``$IMGAUDIT_SCREENSHOTS`` (default: the test's tmp dir). Skipped without /usr/bin/chromium or playwright.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_dashboard_synth import build_run  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
APP = REPO / "dashboards" / "app.py"

# page url path -> texts that must be visible once it has rendered
CHECKS = {
    "classify": {
        "overview": ["Overview", "Headline numbers", "Findings", "Worst group"],
        "profile": ["Data profile", "Distributions", "Duplicates & leakage"],
        "performance": ["Per-group performance", "Sorted worst-first"],
        "generalization": ["Generalization", "In-domain vs out-of-domain", "Transfer matrix"],
        "calibration": ["Calibration", "Expected calibration error per group"],
        "gallery": ["Failure gallery", "misclassified samples"],
        "compare": ["Compare runs", "Headline", "Per-group numbers"],
    },
    "segment": {
        "overview": ["Overview", "Headline numbers"],
        "gallery": ["Failure gallery", "per-image IoU"],
        "calibration": ["segmentation run"],
    },
    "profile": {
        "overview": ["Overview", "needs a model"],
        "performance": ["audit train"],
    },
}

TITLES = {
    "overview": "Overview", "profile": "Data profile", "performance": "Per-group performance",
    "generalization": "Generalization", "calibration": "Calibration", "gallery": "Failure gallery",
    "compare": "Compare runs",
}

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    base = tmp_path_factory.mktemp("browser") / "runs"
    for kind in CHECKS:
        build_run(base / kind, kind)
    build_run(base / "classify_v2", "classify", seed=1)  # something to compare with
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(base.parent / "streamlit.log", "w")  # noqa: SIM115 - closed in the teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.address", "127.0.0.1",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         "--client.toolbarMode", "viewer",
         "--", "--run", str(base / "classify")],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(base.parent),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit did not become healthy in 60 s")
    if proc.poll() is not None:
        log.close()
        pytest.fail("streamlit exited: " + (base.parent / "streamlit.log").read_text()[-2000:])
    yield url, base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _local(request_url: str, server_url: str) -> bool:
    """Whether a request stays on the dashboard's own server (or never leaves the browser: data:, blob:)."""
    from urllib.parse import urlsplit

    u = urlsplit(request_url)
    return u.scheme in ("data", "blob", "about") or u.netloc == urlsplit(server_url).netloc


def _wait_idle(page, timeout_ms: int = 30000) -> None:
    """Wait until Streamlit has finished running the script (no running indicator, charts drawn)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.match(/Running/i)",
        timeout=timeout_ms,
    )
    _wait_stable(page, timeout_ms)


# True once the main container (markup size, height, charts) has not changed for 4 polls in a row: charts are
# drawn. A condition, not a fixed sleep: on a loaded machine it simply takes more polls.
_STABLE_JS = """() => {
  const m = document.querySelector('[data-testid="stMain"]') || document.body;
  const sig = m.innerHTML.length + ':' + m.scrollHeight + ':' + m.querySelectorAll('canvas, svg, img').length;
  const w = window.__auditStable || (window.__auditStable = {sig: null, n: 0});
  if (w.sig === sig) { w.n += 1; } else { w.sig = sig; w.n = 0; }
  return w.n >= 4;
}"""


def _wait_stable(page, timeout_ms: int = 30000) -> None:
    page.evaluate("() => { window.__auditStable = null; }")
    page.wait_for_function(_STABLE_JS, polling=150, timeout=timeout_ms)


def _click_tab(page, name: str) -> None:
    """Open a tab and wait until it is the selected one and its content has settled."""
    tab = page.get_by_role("tab", name=name)
    tab.click()
    page.wait_for_function("(el) => el.getAttribute('aria-selected') === 'true'", arg=tab.element_handle(),
                           timeout=30000)
    _wait_stable(page)


def _screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main container, so grow the viewport to fit it first."""
    h = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]'); return m ? m.scrollHeight : 1000; }"
    )
    page.set_viewport_size({"width": 1400, "height": int(min(max(h, 900), 8000))})
    _wait_stable(page)  # the layout reflowed to the new size
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_every_page_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, base = server
    shots = Path(os.environ.get("IMGAUDIT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        console_errors: list[str] = []
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        # the dashboard works offline: no page load may ask any host but the server (fonts, favicons, CDNs)
        elsewhere: list[str] = []
        page.on("request", lambda r: elsewhere.append(r.url) if not _local(r.url, url) else None)
        for kind, pages in CHECKS.items():
            page.goto(url)
            _wait_idle(page)
            if kind != "classify":  # switch the run in the sidebar
                page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
                page.get_by_role("option", name=kind, exact=True).click()
                _wait_idle(page)
            for name, texts in pages.items():
                page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=TITLES[name]).first.click()
                _wait_idle(page)
                try:
                    page.get_by_text(texts[0], exact=False).first.wait_for(timeout=20000)
                except Exception:
                    problems.append(f"{kind}/{name}: {texts[0]!r} never appeared")
                body = page.inner_text("body")
                for t in texts:
                    if t.lower() not in body.lower():
                        problems.append(f"{kind}/{name}: missing text {t!r}")
                if page.locator('[data-testid="stException"]').count():
                    problems.append(f"{kind}/{name}: exception box: "
                                    f"{page.locator('[data-testid=stException]').first.inner_text()[:300]}")
                if "<img src=x" in page.content() and kind == "classify" and name == "overview":
                    # the hostile value must be visible as text, never as an element
                    if page.locator("img[src='x']").count():
                        problems.append("hostile attribute value rendered as an <img> element")
                _screenshot(page, shots / f"dashboard-{kind}-{name}.png")
                # docs: every tab
                if kind == "classify" and name == "profile" and os.environ.get("IMGAUDIT_SCREENSHOTS"):
                    for tab in ("Intersections", "Associations", "Image statistics", "Duplicates & leakage",
                                "Broken files", "Shortcuts"):
                        _click_tab(page, tab)
                        if page.locator('[data-testid="stException"]').count():
                            problems.append(f"profile/{tab}: exception box")
                        slug = tab.split()[0].lower()
                        _screenshot(page, shots / f"dashboard-{kind}-profile-{slug}.png")
        # a finding's link opens its page on the evidence: the fairness finding shows its attribute
        page.goto(url)
        _wait_idle(page)
        link = page.locator('[data-testid="stPageLink-NavLink"]:visible').filter(has_text="Performance")
        hrefs = [link.nth(i).get_attribute("href") or "" for i in range(link.count())]
        target = next((i for i, h in enumerate(hrefs) if "by=attr.background" in h), None)
        if target is None:
            problems.append(f"no finding link carries its grouping: {hrefs}")
        else:
            link.nth(target).click()
            _wait_idle(page)
            body = page.inner_text("body")
            if "grouping attr.background" not in body:
                problems.append("finding link did not preselect the grouping")
            if "Attribute shown: attr.background" not in body:
                problems.append("fairness table does not say which attribute it shows")
        browser.close()
    assert not problems, problems
    assert not console_errors, console_errors
    assert not elsewhere, sorted(set(elsewhere))


def docs_screenshots(run_folder: Path, out: Path, *, port: int | None = None) -> list[Path]:
    """Screenshots of every page for docs/img (``python tests/test_dashboard_browser.py RUNS OUT``).

    ``run_folder`` holds a ``classify`` and a ``segment`` run (``audit demo --out RUNS``).
    """
    from playwright.sync_api import sync_playwright

    port = port or _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.address", "127.0.0.1",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
         "--", "--run", str(Path(run_folder) / "classify")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    written = []
    try:
        deadline = time.time() + 60
        while True:  # poll until the server answers (a condition, not a fixed wait)
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("streamlit did not become healthy in 60 s") from None
                time.sleep(0.3)
        out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            _wait_idle(page)
            for name, title in TITLES.items():
                page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=title).first.click()
                _wait_idle(page)
                _screenshot(page, out / f"dashboard-{name}.png")
                written.append(out / f"dashboard-{name}.png")
                if name == "profile":
                    for tab in ("Intersections", "Associations", "Duplicates & leakage"):
                        _click_tab(page, tab)
                        _screenshot(page, out / f"dashboard-profile-{tab.split()[0].lower()}.png")
                        written.append(out / f"dashboard-profile-{tab.split()[0].lower()}.png")
            page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
            page.get_by_role("option", name="segment", exact=True).click()
            _wait_idle(page)
            page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=TITLES["gallery"]).first.click()
            _wait_idle(page)
            _screenshot(page, out / "dashboard-segment-gallery.png")
            written.append(out / "dashboard-segment-gallery.png")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return written


if __name__ == "__main__":  # pragma: no cover - a docs helper, not a test
    print("\n".join(map(str, docs_screenshots(Path(sys.argv[1]), Path(sys.argv[2])))))
