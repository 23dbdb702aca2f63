"""Static report of a run: one self-contained ``report.html`` and a Markdown ``summary.md``.

::

    html_path, md_path = write_report(RunDir.open("runs/x"))

Works on any run: profile-only, classification or segmentation; sections whose tables are absent are left out.
"""

from __future__ import annotations

from pathlib import Path

from audit.headline import headline
from audit.report.html import render_html
from audit.report.markdown import summary_markdown
from audit.rundir import RunDir

__all__ = ["write_report"]


def write_report(run: RunDir) -> tuple[Path, Path]:
    """Write ``RUN/report.html`` and ``RUN/summary.md``; return their paths."""
    from audit.progress import Bar

    with Bar(2, "report", unit="file") as bar:  # a start and an end line (and a heartbeat) in logs
        h = headline(run)
        html_path = run.write_text("report.html", render_html(run, h=h))
        bar.advance(1, info="report.html")
        md_path = run.write_text("summary.md", summary_markdown(run, h=h))
        bar.advance(1, info="summary.md")
    return html_path, md_path
