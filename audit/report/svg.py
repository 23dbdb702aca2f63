"""Tiny inline-SVG charts for the static report (no plotting library, no external resources).

Every label goes through :func:`html.escape`; numbers are formatted here. Each function returns an ``<svg>``
string sized in CSS pixels.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from audit.core.numfmt import format_number

__all__ = ["bar_chart", "interval_chart", "heatmap", "reliability", "colour", "tradeoff_chart"]

FONT = 'font-family="system-ui,sans-serif" font-size="11"'
BLUE, RED, GREY, INK = "#3b6ea8", "#c0392b", "#b0b0b0", "#222"


def _t(s: object, limit: int = 38) -> str:
    s = "" if s is None else str(s)
    return html.escape(s if len(s) <= limit else s[: limit - 1] + "…")


def _f(v: float | None, d: int = 3) -> str:
    """A chart label: ``n/a`` for missing, whole numbers from 1 up without decimals."""
    return format_number(v, d, whole_from=1)


def _ok(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def bar_chart(
    labels: Sequence,
    values: Sequence[float],
    *,
    width: int = 520,
    fmt: str = "{:,.0f}",
    note: Sequence[str] | None = None,
    colour_: str = BLUE,
) -> str:
    """Horizontal bars, one per label (values >= 0)."""
    rows = len(labels)
    lw, bh, pad = 170, 16, 4
    h = rows * (bh + pad) + 6
    vmax = max([v for v in values if _ok(v)] or [1]) or 1
    out = [f'<svg class="chart" width="{width}" height="{h}" viewBox="0 0 {width} {h}" role="img" {FONT}>']
    for i, (lab, v) in enumerate(zip(labels, values, strict=False)):
        y = i * (bh + pad) + 3
        out.append(f'<text x="{lw - 6}" y="{y + bh - 4}" text-anchor="end" fill="{INK}">{_t(lab, 28)}</text>')
        if _ok(v):
            w = max(1.0, (width - lw - 90) * float(v) / vmax)
            out.append(f'<rect x="{lw}" y="{y}" width="{w:.1f}" height="{bh}" fill="{colour_}"/>')
            txt = fmt.format(v) + (f" {note[i]}" if note else "")
            out.append(f'<text x="{lw + w + 4:.1f}" y="{y + bh - 4}" fill="{INK}">{html.escape(txt)}</text>')
        else:
            out.append(f'<text x="{lw + 4}" y="{y + bh - 4}" fill="{GREY}">empty</text>')
    out.append("</svg>")
    return "".join(out)


def interval_chart(
    rows: Sequence[tuple],
    *,
    lo: float | None = None,
    hi: float | None = None,
    width: int = 820,
    ref: float | None = None,
    label_width: int = 250,
) -> str:
    """Points with 95% interval bars: rows of ``(label, value, ci_low, ci_high, n, style)``.

    ``style``: falsy = normal, ``True``/``"muted"`` = a group under min_n (grey, noted), ``"alt"`` = the
    second series (grey, no note). ``ref`` draws a dashed reference line (e.g. the overall value).
    """
    vals = [x for r in rows for x in r[1:4] if _ok(x)] + ([ref] if _ok(ref) else [])
    if lo is None:
        lo = min(vals + [0.0])
    if hi is None:
        hi = max(vals + [1.0])
    if hi <= lo:
        hi = lo + 1
    bh = 18
    plot_w = width - label_width - 150
    h = len(rows) * bh + 24

    def x(v: float) -> float:
        return label_width + plot_w * (min(max(v, lo), hi) - lo) / (hi - lo)

    out = [f'<svg class="chart" width="{width}" height="{h}" viewBox="0 0 {width} {h}" role="img" {FONT}>']
    for t in (lo, (lo + hi) / 2, hi):
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="0" y2="{h - 16}" stroke="#eee"/>')
        out.append(f'<text x="{x(t):.1f}" y="{h - 4}" text-anchor="middle" fill="#777">{_f(t, 2)}</text>')
    if _ok(ref):
        out.append(
            f'<line x1="{x(ref):.1f}" x2="{x(ref):.1f}" y1="0" y2="{h - 16}" stroke="#999" stroke-dasharray="3,3"/>'
        )
    for i, r in enumerate(rows):
        label, v, a, b, n, muted = (list(r) + [None] * 6)[:6]
        y = i * bh + 12
        c = GREY if muted else BLUE
        small = bool(muted) and muted != "alt"
        out.append(f'<text x="{label_width - 6}" y="{y + 4}" text-anchor="end" fill="{INK}">{_t(label, 40)}</text>')
        if _ok(a) and _ok(b):
            out.append(f'<line x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="2"/>')
        if _ok(v):
            out.append(f'<circle cx="{x(v):.1f}" cy="{y}" r="4" fill="{c}"/>')
        txt = f"{_f(v)}  n={_f(n) if _ok(n) else '?'}" + (" (n < min_n)" if small else "")
        out.append(f'<text x="{label_width + plot_w + 8}" y="{y + 4}" fill="{INK}">{html.escape(txt)}</text>')
    out.append("</svg>")
    return "".join(out)


def colour(v: float, vmax: float = 1.0) -> str:
    """White -> red for 0 -> vmax."""
    if not _ok(v):
        return "#f4f4f4"
    t = max(0.0, min(1.0, float(v) / (vmax or 1)))
    g = int(255 - 170 * t)
    return f"rgb(255,{g},{g})" if t < 1 else "rgb(200,60,60)"


def heatmap(
    row_labels: Sequence, col_labels: Sequence, matrix: Sequence[Sequence[float]], *, vmax: float = 1.0, cell: int = 46
) -> str:
    """A table-like heatmap with the value in each cell (NaN cells grey)."""
    lw, th = 170, 110
    w = lw + cell * len(col_labels) + 4
    h = th + cell * len(row_labels) + 4
    out = [f'<svg class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" {FONT}>']
    for j, c in enumerate(col_labels):
        cx = lw + j * cell + cell / 2
        out.append(f'<text transform="translate({cx:.1f},{th - 6}) rotate(-45)" fill="{INK}">{_t(c, 22)}</text>')
    for i, r in enumerate(row_labels):
        y = th + i * cell
        out.append(f'<text x="{lw - 6}" y="{y + cell / 2 + 4:.1f}" text-anchor="end" fill="{INK}">{_t(r, 26)}</text>')
        for j, _ in enumerate(col_labels):
            v = matrix[i][j]
            out.append(
                f'<rect x="{lw + j * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{colour(v, vmax)}"/>'
            )
            if _ok(v):
                out.append(
                    f'<text x="{lw + j * cell + cell / 2 - 1:.1f}" y="{y + cell / 2 + 3:.1f}" '
                    f'text-anchor="middle" fill="{INK}">{_f(v, 2)}</text>'
                )
    out.append("</svg>")
    return "".join(out)


def reliability(conf: Sequence[float], acc: Sequence[float], count: Sequence[int], *, size: int = 260) -> str:
    """Reliability diagram: accuracy against confidence per bin (dot area ~ count), with the diagonal and ticks;
    points above the diagonal are under-confident bins, below it over-confident ones."""
    m = 40  # room for the tick labels
    s = size - m - 10
    tot = max(1, sum(c for c in count if _ok(c)))

    def px(v: float) -> float:
        return m + s * v

    def py(v: float) -> float:
        return 10 + s * (1 - v)

    out = [
        f'<svg class="chart" width="{size}" height="{size + 12}" viewBox="0 0 {size} {size + 12}" role="img" {FONT}>',
        f'<rect x="{m}" y="10" width="{s}" height="{s}" fill="none" stroke="#ccc"/>',
        f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#999" stroke-dasharray="3,3"/>',
        f'<text x="{m + s / 2}" y="{size + 10}" text-anchor="middle" fill="#555">confidence</text>',
        f'<text transform="translate(10,{10 + s / 2}) rotate(-90)" text-anchor="middle" fill="#555">accuracy</text>',
    ]
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):  # ticks on both axes
        out.append(f'<text x="{px(t):.1f}" y="{py(0) + 12:.1f}" text-anchor="middle" fill="#777">{t:g}</text>')
        out.append(f'<text x="{m - 4}" y="{py(t) + 3:.1f}" text-anchor="end" fill="#777">{t:g}</text>')
    out.append(f'<text x="{px(0.03):.1f}" y="{py(0.93):.1f}" fill="#999">under-confident</text>')
    out.append(f'<text x="{px(0.97):.1f}" y="{py(0.05):.1f}" text-anchor="end" fill="#999">over-confident</text>')
    pts = [(c, a, n) for c, a, n in zip(conf, acc, count, strict=False) if _ok(c) and _ok(a) and _ok(n) and n > 0]
    if pts:
        path = " ".join(f"{px(c):.1f},{py(a):.1f}" for c, a, _ in sorted(pts))
        out.append(f'<polyline points="{path}" fill="none" stroke="{BLUE}" stroke-width="1.5"/>')
        for c, a, n in pts:
            r = 2 + 8 * math.sqrt(n / tot)
            out.append(
                f'<circle cx="{px(c):.1f}" cy="{py(a):.1f}" r="{r:.1f}" fill="{BLUE}" fill-opacity="0.6">'
                f"<title>confidence {_f(c)}, accuracy {_f(a)}, n={int(n)}</title></circle>"
            )
    out.append("</svg>")
    return "".join(out)


def tradeoff_chart(
    points: Sequence[tuple],
    *,
    x_title: str = "held-out accuracy difference",
    y_title: str = "worst-group accuracy difference",
    size: int = 420,
    legend: Sequence[tuple[str, str]] = (),
) -> str:
    """Differences of two metrics against each other with both 95% intervals (a cross per point), axes through 0.

    ``points``: rows of ``(label, x, x_low, x_high, y, y_low, y_high, colour)``; a missing value leaves the point
    out. The upper left quadrant is a tradeoff (worst group up, average down); upper right helps on both.
    ``legend``: ``(name, colour)`` entries drawn beside the plot (e.g. what the colours mean).
    """
    m, pad = 46, 12
    s = size - m - pad
    rx = max([abs(float(v)) for p in points for v in p[1:4] if _ok(v)] + [0.02]) * 1.1  # each axis its own range
    ry = max([abs(float(v)) for p in points for v in p[4:7] if _ok(v)] + [0.02]) * 1.1

    def px(v: float) -> float:
        return m + s * (min(max(v, -rx), rx) + rx) / (2 * rx)

    def py(v: float) -> float:
        return pad + s * (1 - (min(max(v, -ry), ry) + ry) / (2 * ry))

    h = size + 14
    out = [
        f'<svg class="chart" width="{size + 230}" height="{h}" viewBox="0 0 {size + 230} {h}" role="img" {FONT}>',
        f'<rect x="{m}" y="{pad}" width="{s}" height="{s}" fill="none" stroke="#ccc"/>',
        f'<line x1="{px(0):.1f}" x2="{px(0):.1f}" y1="{pad}" y2="{pad + s}" stroke="#999" stroke-dasharray="3,3"/>',
        f'<line x1="{m}" x2="{m + s}" y1="{py(0):.1f}" y2="{py(0):.1f}" stroke="#999" stroke-dasharray="3,3"/>',
        f'<text x="{m + s / 2}" y="{size + 10}" text-anchor="middle" fill="#555">{_t(x_title, 60)}</text>',
        f'<text transform="translate(10,{pad + s / 2}) rotate(-90)" text-anchor="middle" fill="#555">'
        f"{_t(y_title, 60)}</text>",
        f'<text x="{m + 4}" y="{pad + 12}" fill="#999">worst group up, average down</text>',
        f'<text x="{m + s - 4}" y="{pad + 12}" text-anchor="end" fill="#999">both up</text>',
        f'<text x="{m + s - 4}" y="{pad + s - 4}" text-anchor="end" fill="#999">worst group down</text>',
    ]
    for tx, ty in zip((-rx, 0.0, rx), (-ry, 0.0, ry), strict=True):
        out.append(f'<text x="{px(tx):.1f}" y="{pad + s + 12}" text-anchor="middle" fill="#777">{_f(tx, 2)}</text>')
        out.append(f'<text x="{m - 4}" y="{py(ty) + 3:.1f}" text-anchor="end" fill="#777">{_f(ty, 2)}</text>')
    for i, p in enumerate(points):
        label, x, xl, xh, y, yl, yh, c = (list(p) + [None] * 8)[:8]
        if not (_ok(x) and _ok(y)):
            continue
        c = html.escape(str(c or BLUE))
        if _ok(xl) and _ok(xh):
            out.append(f'<line x1="{px(xl):.1f}" x2="{px(xh):.1f}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                       f'stroke="{c}" stroke-width="1.5"/>')
        if _ok(yl) and _ok(yh):
            out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{py(yl):.1f}" y2="{py(yh):.1f}" '
                       f'stroke="{c}" stroke-width="1.5"/>')
        tip = f"{label}: x {_f(x)} [{_f(xl)}, {_f(xh)}], y {_f(y)} [{_f(yl)}, {_f(yh)}]"
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4.5" fill="{c}"><title>{html.escape(tip)}</title>'
                   "</circle>")
        dy = -5 if i % 2 == 0 else 13  # alternate above / below so neighbours stay readable
        out.append(f'<text x="{px(x) + 7:.1f}" y="{py(y) + dy:.1f}" fill="{INK}">{_t(label, 20)}</text>')
    for i, (name, c) in enumerate(legend):
        lx = size + 80  # clear of the labels of points at the right edge
        out.append(f'<rect x="{lx}" y="{pad + i * 16}" width="10" height="10" fill="{html.escape(str(c))}"/>'
                   f'<text x="{lx + 14}" y="{pad + i * 16 + 9}" fill="{INK}">{_t(name, 24)}</text>')
    out.append("</svg>")
    return "".join(out)
