"""The console: everything a command prints when it is done (the summary of a run, the demo's closing lines).

Stages compute and return; this module, ``audit.progress`` (progress lines and bars) and ``audit.check.output``
(the gate's verdict) are the only places that print. On a terminal rich renders colour; elsewhere (CI logs, files)
the same text comes out plain.
"""

from __future__ import annotations

import os
from pathlib import Path

from audit.rundir import RunDir

__all__ = ["make_console", "print_summary", "print_demo_done", "audit_command"]


def make_console(*, stderr: bool = False):
    """The rich console commands print with (no syntax highlighting of numbers and paths, no soft wrapping)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, stderr=stderr)


_SEV_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def print_summary(run: RunDir, *, stages: list[str] | None = None, console=None, top: int = 8) -> None:
    """The short terminal summary every command ends with: what the stage did, the headline numbers with their
    intervals, top findings, outputs and the next command."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from audit.progress import is_quiet

    console = console or Console()
    info = run.info
    findings = run.findings()
    shown = [f for f in findings if f.get("stage") in stages] if stages else findings
    ds = info.get("dataset", {})
    st = run.stages()
    status = ", ".join(f"{k}={v.get('status')}" for k, v in st.items())
    console.print(f"[bold]{escape(str(run.path))}[/]  {ds.get('n', '?')} samples, "
                  f"task {escape(str(ds.get('task', '?')))}  "
                  f"({escape(status)})")
    for note in (ds.get("notes") or [])[:5]:
        console.print(f"  [yellow]note:[/] {escape(str(note))}")
    for name, s in st.items():
        if s.get("status") == "skipped":
            console.print(f"  [dim]{escape(name)} skipped: {escape(str(s.get('reason', '')))}[/]")
        elif s.get("status") == "failed":
            console.print(f"  [red]{escape(name)} failed: {escape(str(s.get('error', ''))[:300])}[/]")
        elif s.get("status") == "stale":
            console.print(f"  [yellow]{escape(name)} is stale: {escape(str(s.get('reason', '')))}[/]")
    if stages and "train" in stages and isinstance(st.get("train"), dict) and st["train"].get("status") == "ok":
        _print_train(console, st["train"])
    if not is_quiet():
        _print_headline(run, console, stages)
    if shown and not is_quiet():
        if stages and len(shown) < len(findings):
            title = (f"top findings of this step ({len(shown)}; {len(findings)} in the run: findings.json, "
                     "report.html, dashboard)")
        else:
            title = f"top findings ({len(findings)} in all)"
        table = Table(title=title, show_lines=False, title_justify="left")
        table.add_column("severity")
        table.add_column("kind")
        table.add_column("finding", overflow="fold")
        table.add_column("value [95% CI]", overflow="fold")
        table.add_column("n", justify="right")
        for f in shown[:top]:
            sev = str(f.get("severity") or "?")
            style = _SEV_STYLE.get(sev)
            sev_txt = f"[{style}]{escape(sev)}[/]" if style else escape(sev)
            table.add_row(sev_txt, escape(str(f.get("kind", ""))), escape(str(f.get("title", ""))),
                          escape(_finding_value(f)), escape(_fmt_n(f.get("n"))))
        console.print(table)
    elif not shown and not is_quiet():
        console.print("no findings from this step" if stages and findings else "no findings")
    outputs = [p for p in ("manifest.parquet", "profile", "predictions.parquet", "metrics", "findings.json",
                           "report.html") if run.has(p)]
    console.print("outputs: " + ", ".join(escape(str(run.path / p)) for p in outputs))
    console.print("next: " + escape(_next_step(run)))


def _fmt_n(v) -> str:
    from audit.core.numfmt import format_number

    return "" if v is None else format_number(v)


def _finding_value(f: dict) -> str:
    from audit.report.markdown import fmt_value_ci

    v = f.get("value")
    if v is None:
        return ""
    ci = f.get("ci") or [None, None]
    lo, hi = (ci[0], ci[1]) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
    return fmt_value_ci(v, lo, hi)


def _print_train(console, s: dict) -> None:
    """What the training stage did: rows used and excluded (with reasons), the protocol, per-fold selection."""
    from rich.markup import escape

    n_rows, n_used = s.get("n_rows"), s.get("n_used")
    line = f"trained {escape(str(s.get('model')))} ({escape(str(s.get('protocol')))}) on {n_used} of {n_rows} rows"
    excl = s.get("excluded") or {}
    if excl:
        line += "; excluded: " + ", ".join(f"{escape(str(k))} {v}" for k, v in excl.items()) + \
            " (train/excluded.parquet)"
    console.print(line)
    for note in (s.get("notes") or [])[:4]:
        console.print(f"  [yellow]note:[/] {escape(str(note))}")
    folds = [f for f in (s.get("folds") or []) if isinstance(f, dict)]
    if folds:
        parts = []
        for f in folds[:8]:
            vs = f.get("val_score")
            name = f.get("val_metric") or "score"
            score = f"val {name} {vs:.3f}" if isinstance(vs, (int, float)) else str(f.get("status", ""))
            parts.append(f"{escape(str(f.get('fold')))}: {score}" + (f" ({f.get('status')})" if f.get("status") not in
                                                                       (None, "trained") else ""))
        more = f" (+{len(folds) - 8} more)" if len(folds) > 8 else ""
        console.print("  folds: " + "; ".join(parts) + more)


def _print_headline(run: RunDir, console, stages: list[str] | None) -> None:
    """The headline numbers with intervals (the same rows as summary.md), for the steps that produce them."""
    from rich.markup import escape

    from audit.errors import AuditError
    from audit.headline import headline
    from audit.report.markdown import headline_rows

    try:
        h = headline(run)
    except AuditError:
        return
    keep = ("overall", "balanced accuracy", "model sanity", "worst group", "largest generalization gap",
            "largest fairness gap", "strongest association", "unreadable files")
    model_rows = ("overall", "worst group", "largest generalization gap", "largest fairness gap")
    stale = h.get("stages", {}).get("metrics") == "stale"
    if stale or (stages and "profile" in stages and not {"train", "metrics", "report"} & set(stages)):
        keep = ("strongest association", "unreadable files")
    rows = [(k, v) for k, v in headline_rows(h, esc=lambda t: "" if t is None else str(t)) if k.startswith(keep)]
    for k, v in rows:
        console.print(f"  {escape(k)}: {escape(v)}")
    if stale and any(h.get(k) for k in ("overall", "worst_group", "largest_gap")):
        console.print(f"  [dim]model numbers ({', '.join(model_rows)}) not shown: the metrics are older than the "
                      "predictions[/]")


def audit_command() -> str:
    """How the user should type ``audit``: plain when it is on PATH, else the path of this environment's script
    (e.g. ``.venv/bin/audit`` after ``make demo`` without an activated venv)."""
    import shutil
    import sys

    script = Path(sys.prefix) / "bin" / "audit"
    found = shutil.which("audit")
    if not script.exists() or (found and Path(found).resolve() == script.resolve()):
        return "audit"
    rel = os.path.relpath(script)
    return rel if not rel.startswith("..") else str(script)


def _next_step(run: RunDir) -> str:
    p = str(run.path)
    a = audit_command()
    if not run.finished("profile"):
        return f"{a} profile DATA --out {p}"
    trainable = bool(run.dataset.get("classes")) or run.task == "segment"
    if not run.has("predictions.parquet") and trainable:
        return f"{a} train {p}   (then {a} metrics {p}; or explore now: {a} dashboard {p})"
    if run.has("predictions.parquet") and not run.finished("metrics"):
        return f"{a} metrics {p}" + ("   (the metrics are older than the predictions)"
                                     if run.stage_status("metrics") == "stale"
                                     else "   (per-group metrics, and the sanity check: did the model learn?)")
    if not run.has("report.html") or run.stage_status("report") == "stale":
        return f"{a} report {p}   or   {a} dashboard {p}"
    return f"{a} dashboard {p}   (or open {p}/report.html; gate CI with {a} init-policy {p})"


def print_demo_done(runs: list[RunDir], console=None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    for run in runs:
        print_summary(run, console=console)
        console.print()
    if runs:
        parent = runs[0].path.parent
        console.print(f"[bold green]demo done.[/] results: {escape(str(parent))}/")
        console.print(f"open the dashboard:  [bold]{escape(audit_command())} dashboard {escape(str(runs[0].path))}[/]")
        if any(r.has("report.html") for r in runs):
            console.print(f"or the static report: {escape(str(runs[0].path / 'report.html'))}")


