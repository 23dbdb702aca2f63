"""Building blocks of ``report.html``: escaping, numbers, tables, sections, cards and thumbnails.

Everything that comes from the data goes through :func:`e` (:func:`html.escape`).
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import numpy as np
import pandas as pd

from audit.report.markdown import fmt_num, metric_label
from audit.rundir import RunDir

__all__ = [
    "MAX_ROWS",
    "MAX_GROUPS",
    "MAX_THUMBS",
    "THUMB_PX",
    "MAX_FINDINGS",
    "MAX_JSON_CHARS",
    "e",
    "num",
    "ci",
    "table",
    "section",
    "card",
    "thumb",
]

MAX_ROWS = 50  # rows of any table
MAX_GROUPS = 30  # bars / intervals per chart
MAX_THUMBS = 12  # duplicate pairs shown with thumbnails
THUMB_PX = 64
MAX_FINDINGS = 200
MAX_JSON_CHARS = 20_000


def e(v: Any) -> str:
    """Escape anything for HTML text or attribute values."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return ""
    return html.escape(str(v), quote=True)


def num(v: Any, d: int = 3) -> str:
    """A number as the Markdown summary writes it (:func:`~audit.report.markdown.fmt_num`), escaped for HTML."""
    return "n/a" if v is pd.NA else e(fmt_num(v, d))


def ci(lo: Any, hi: Any) -> str:
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    return f"[{num(lo)}, {num(hi)}]"


def table(
    df: pd.DataFrame | None,
    cols: list[str] | None = None,
    *,
    limit: int = MAX_ROWS,
    headers: dict[str, str] | None = None,
) -> str:
    """An HTML table of ``df`` (escaped, numbers formatted, capped at ``limit`` rows with a note)."""
    if df is None or df.empty:
        return '<p class="muted">no rows</p>'
    cols = [c for c in (cols or list(df.columns)) if c in df.columns]
    headers = headers or {}
    out = ["<table><tr>" + "".join(f"<th>{e(headers.get(c, c))}</th>" for c in cols) + "</tr>"]
    for _, r in df.head(limit).iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, (bool, np.bool_)):
                cells.append(f"<td>{'yes' if v else 'no'}</td>")
            elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                cells.append(f'<td class="num">{num(v)}</td>')
            else:
                s = "" if v is None or v is pd.NA else str(v)
                if c == "metric":
                    s = metric_label(s)  # "mIoU (background included)", never a bare "miou"
                cells.append(f"<td>{e(s[:200])}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    if len(df) > limit:
        out.append(f'<p class="note">showing {limit} of {len(df):,} rows (all rows are in the run directory)</p>')
    return "".join(out)


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{e(title)}</h2>{body}</section>'


def card(k: str, v: str, d: str = "") -> str:
    return f'<div class="card"><div class="k">{e(k)}</div><div class="v">{v}</div><div class="d">{d}</div></div>'


def thumb(run: RunDir, rel: Any) -> str:
    """A small base64 PNG of a manifest file, or a note when it cannot be read."""
    from PIL import Image

    try:
        p = run.abspath(str(rel))
        with Image.open(p) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            im.save(buf, "PNG", optimize=True)
    except Exception as ex:  # missing, broken, or outside the root: show why instead of an image
        return f'<span class="muted">({e(type(ex).__name__)})</span>'
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="thumb" alt="{e(rel)}" title="{e(rel)}" src="data:image/png;base64,{data}">'
