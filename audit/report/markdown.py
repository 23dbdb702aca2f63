"""``summary.md``: the headline numbers and the findings of a run as Markdown (also used by ``audit check``)."""

from __future__ import annotations

import html
from typing import Any

from audit.headline import headline
from audit.numfmt import format_number
from audit.rundir import RunDir

__all__ = ["md_escape", "summary_markdown", "fmt_ci", "fmt_num"]


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


def _headline_rows(h: dict) -> list[tuple[str, str]]:
    rows = [
        ("samples", fmt_num(h.get("n"))),
        ("task", md_escape(h.get("task"))),
        ("domains", f"{h['n_domains']}: " + md_escape(", ".join(h["domains"][:12])) if h["domains"] else "none"),
        ("classes", f"{h['n_classes']}: " + md_escape(", ".join(h["classes"][:12])) if h["classes"] else "none"),
        ("attributes", md_escape(", ".join(h["attributes"])) or "none"),
    ]
    if h.get("n_unreadable") is not None:
        rows.append(("unreadable files", fmt_num(h["n_unreadable"]) if h["n_unreadable"] else "0"))
    if h.get("models"):
        rows.append(("models", md_escape(", ".join(h["models"]))))
    o = h.get("overall")
    if o:
        rows.append((f"overall {md_escape(o['metric'])} ({md_escape(o.get('scope') or 'all')})",
                     f"{fmt_num(o['value'])} {fmt_ci(o['ci_low'], o['ci_high'])}, n={fmt_num(o['n'])}"))
    w = h.get("worst_group")
    if w:
        rows.append((f"worst group ({md_escape(w['metric'])})",
                     f"{md_escape(w['by'])} = {md_escape(w['group'])}: {fmt_num(w['value'])} "
                     f"{fmt_ci(w['ci_low'], w['ci_high'])}, n={fmt_num(w['n'])}"))
    g = h.get("largest_gap")
    if g:
        rows.append(("largest generalization gap",
                     f"{fmt_num(g['gap'])} {fmt_ci(g['ci_low'], g['ci_high'])} on held-out {md_escape(g['test_domain'])} "
                     f"(in {fmt_num(g['in_domain'])}, out {fmt_num(g['out_domain'])}, n_out={fmt_num(g['n_out'])})"))
    f = h.get("largest_fairness_gap")
    if f:
        rows.append(("largest fairness gap", f"{md_escape(f['metric'])} {fmt_num(f['value'])} "
                     f"{fmt_ci(f['ci_low'], f['ci_high'])} across {md_escape(f['attribute'])}"))
    a = h.get("biggest_association")
    if a:
        rows.append(("strongest association", f"{md_escape(a['a'])} x {md_escape(a['b'])}: Cramer's V "
                     f"{fmt_num(a['value'])} {fmt_ci(a['ci_low'], a['ci_high'])}, n={fmt_num(a['n'])}"))
    c = h["findings"]
    rows.append(("findings", f"{c['critical']} critical, {c['warning']} warning, {c['info']} info"))
    rows.append(("stages", md_escape(", ".join(f"{k}={v}" for k, v in h["stages"].items()))))
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
    out += [f"| {k} | {v} |" for k, v in _headline_rows(h)]
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
