"""``summary.md``: the headline numbers and the findings of a run as Markdown (also used by ``audit check``)."""

from __future__ import annotations

import html
from typing import Any

from audit.core.numfmt import format_number
from audit.headline import headline
from audit.rundir import RunDir

__all__ = ["md_escape", "summary_markdown", "fmt_ci", "fmt_num", "fmt_value_ci", "headline_rows", "metric_label"]

#: how a metric name is shown where it could be misread (issue 25: mIoU averages the background class in, so on a
#: small foreground it is about 0.5 for a model that predicts background everywhere)
METRIC_LABELS = {"miou": "mIoU (background included)"}


def metric_label(name: Any) -> str:
    """The displayed name of a metric: ``miou`` says that the background class is included."""
    return METRIC_LABELS.get(str(name), "" if name is None else str(name))


def md_escape(text: Any, limit: int = 300) -> str:
    """Text safe inside a Markdown table cell: HTML escaped, pipes and newlines neutralised, length capped."""
    s = "" if text is None else str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    s = html.escape(s, quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    # Markdown emphasis / links / images from user text would render: escape the active characters
    for ch in ("`", "*", "_", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s


def fmt_num(v: Any, digits: int = 3) -> str:
    return format_number(v, digits)


def fmt_ci(lo: Any, hi: Any) -> str:
    if lo is None or hi is None:
        return ""
    return f"[{fmt_num(lo)}, {fmt_num(hi)}]"


def fmt_value_ci(v: Any, lo: Any, hi: Any) -> str:
    """``0.812 [0.790, 0.833]``, or ``0.812 (no interval)`` where the interval is missing (too few samples)."""
    ci = fmt_ci(lo, hi)
    return f"{fmt_num(v)} {ci}" if ci else f"{fmt_num(v)} (no interval)"


def headline_rows(h: dict, esc=md_escape) -> list[tuple[str, str]]:
    """The headline numbers as (label, text) rows; ``esc`` escapes user-controlled text for the target format
    (Markdown by default; the terminal summary passes a plain one)."""
    rows = [
        ("samples", fmt_num(h.get("n"))),
        ("task", esc(h.get("task"))),
        ("domains", f"{h['n_domains']}: " + esc(", ".join(h["domains"][:12])) if h["domains"] else "none"),
        ("classes", f"{h['n_classes']}: " + esc(", ".join(h["classes"][:12])) if h["classes"] else "none"),
        ("attributes", esc(", ".join(h["attributes"])) or "none"),
    ]
    if h.get("n_unreadable") is not None:
        rows.append(("unreadable files", fmt_num(h["n_unreadable"]) if h["n_unreadable"] else "0"))
    if h.get("models"):
        rows.append(("models", esc(", ".join(h["models"]))))
    o = h.get("overall")
    if o:
        rows.append(
            (
                f"overall {esc(metric_label(o['metric']))} ({esc(o.get('scope') or 'all')})",
                f"{fmt_value_ci(o['value'], o['ci_low'], o['ci_high'])}, n={fmt_num(o['n'])}",
            )
        )
    b = h.get("overall_balanced")
    if b:
        rows.append((f"balanced accuracy (classes imbalanced {b['class_ratio']:.1f}:1)",
                     f"{fmt_value_ci(b['value'], b['ci_low'], b['ci_high'])}, n={fmt_num(b['n'])}"))
    for d in h.get("degenerate_models") or []:
        rows.append((f"model sanity: {esc(d['model'])}", "learned nothing usable (" + esc(d.get("reason") or "")
                     + "): its gaps and group numbers are not interpretable"))
    w = h.get("worst_group")
    if w:
        rows.append(
            (
                f"worst group ({esc(metric_label(w['metric']))})",
                f"{esc(w['by'])} = {esc(w['group'])}: "
                f"{fmt_value_ci(w['value'], w['ci_low'], w['ci_high'])}, n={fmt_num(w['n'])}",
            )
        )
    g = h.get("largest_gap")
    if g:
        rows.append(
            (
                "largest generalization gap" + (f" ({esc(metric_label(g['metric']))})" if g.get("metric") else ""),
                f"{fmt_value_ci(g['gap'], g['ci_low'], g['ci_high'])} on held-out {esc(g['test_domain'])} "
                f"(in {fmt_num(g['in_domain'])}, out {fmt_num(g['out_domain'])}, n_out={fmt_num(g['n_out'])})",
            )
        )
    f = h.get("largest_fairness_gap")
    if f:
        rows.append(
            (
                "largest fairness gap",
                f"{esc(metric_label(f['metric']))} {fmt_value_ci(f['value'], f['ci_low'], f['ci_high'])} "
                f"across {esc(f['attribute'])}",
            )
        )
    a = h.get("biggest_association")
    if a:
        rows.append(
            (
                "strongest association",
                f"{esc(a['a'])} x {esc(a['b'])}: Cramer's V "
                f"{fmt_value_ci(a['value'], a['ci_low'], a['ci_high'])}, n={fmt_num(a['n'])}",
            )
        )
    c = h["findings"]
    rows.append(("findings", f"{c['critical']} critical, {c['warning']} warning, {c['info']} info"))
    # the report stage is what is being written while these rows are made: leave it out instead of "running"
    rows.append(
        ("stages", esc(", ".join(f"{k}={v}" for k, v in h["stages"].items() if not (k == "report" and v == "running"))))
    )
    return rows


def summary_markdown(run: RunDir, *, h: dict | None = None, top: int = 20, title: bool = True) -> str:
    """The run's headline numbers and top findings as Markdown.

    Parameters
    ----------
    run
        The run directory.
    h
        A precomputed :func:`audit.headline.headline` (computed when omitted).
    top
        How many findings to list (the rest are counted).
    title
        Start with a level-2 title naming the run.
    """
    h = h or headline(run)
    out = []
    if title:
        out.append(f"## imgaudit summary: `{md_escape(run.path.name)}`\n")
    out.append("| | |\n|---|---|")
    out += [f"| {k} | {v} |" for k, v in headline_rows(h)]
    findings = run.findings()
    out.append("")
    if findings:
        out.append(f"### Findings ({len(findings)})\n")
        out.append("| severity | kind | finding | value | 95% CI | n |\n|---|---|---|---|---|---|")
        for f in findings[:top]:
            ci = f.get("ci") or [None, None]
            out.append(
                f"| {md_escape(f.get('severity'))} | {md_escape(f.get('kind'))} | {md_escape(f.get('title'), 200)} | "
                f"{fmt_num(f.get('value'))} | {fmt_ci(ci[0], ci[1]) if len(ci) == 2 else ''} | {fmt_num(f.get('n'))} |"
            )
        if len(findings) > top:
            out.append(f"\n{len(findings) - top} more findings in `findings.json` and `report.html`.")
    else:
        out.append("No findings.")
    if h.get("problems"):
        out.append("\nProblems reading the run: " + "; ".join(md_escape(p) for p in h["problems"]))
    return "\n".join(out) + "\n"
