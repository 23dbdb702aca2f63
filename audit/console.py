"""The console: everything a command prints when it is done (the summary of a run, the gate's verdict, the
findings table, the model and format lists, errors, the demo's lines).

Stages compute and return results; this module prints them. On a terminal rich renders colour; elsewhere (CI logs,
files) the same text comes out plain. The one other module that writes to the terminal is :mod:`audit.progress`,
which owns the live progress bars and progress lines while a stage runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing the console stays light (``audit --version``, error lines)
    from audit.rundir import RunDir

__all__ = ["make_console", "print_error", "echo", "print_summary", "print_demo_done", "print_demo_step",
           "show_gate", "print_findings", "print_models", "print_formats", "print_dashboard_address",
           "audit_command"]


def make_console(*, stderr: bool = False, soft_wrap: bool = False):
    """The rich console commands print with (no syntax highlighting of numbers and paths; no soft wrapping unless
    asked: one-line messages such as errors wrap softly)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=soft_wrap, stderr=stderr)


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr (red on a terminal)."""
    from rich.markup import escape

    make_console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")


def echo(line: str, *, err: bool = False) -> None:
    """One plain line on stdout (or stderr), never wrapped or styled: for lists meant to be read by scripts too."""
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


_SEV_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def print_summary(run: RunDir, *, stages: list[str] | None = None, console=None, top: int = 8) -> None:
    """The short terminal summary every command ends with: what the stage did, the headline numbers with their
    intervals, top findings, outputs and the next command."""
    from rich.markup import escape
    from rich.table import Table

    from audit.progress import is_quiet

    console = console or make_console()
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
    if stages and "metrics" in stages and isinstance(st.get("metrics"), dict):
        for note in (st["metrics"].get("notes") or [])[:4]:  # rows left out, metrics skipped: said, not hidden
            console.print(f"  [yellow]note:[/] {escape(str(note))}")
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
            if isinstance(vs, (int, float)):
                score = f"val {name} {vs:.3f}"
            elif f.get("n_val") == 0 and f.get("status") in ("trained", "resumed", "reused"):
                score = "no val rows (last epoch)"  # nothing to select on: never a score
            else:
                score = str(f.get("status", ""))
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


def print_demo_step(console, what: str) -> None:
    """One line of the demo's progress (``demo building ...``); nothing without a console."""
    from rich.markup import escape

    if console is not None:
        console.print(f"[bold]demo[/] {escape(what)}")


def print_demo_done(runs: list[RunDir], console=None) -> None:
    from rich.markup import escape

    console = console or make_console()
    for run in runs:
        print_summary(run, console=console)
        console.print()
    if runs:
        parent = runs[0].path.parent
        console.print(f"[bold green]demo done.[/] results: {escape(str(parent))}/")
        console.print(f"open the dashboard:  [bold]{escape(audit_command())} dashboard {escape(str(runs[0].path))}[/]")
        if any(r.has("report.html") for r in runs):
            console.print(f"or the static report: {escape(str(runs[0].path / 'report.html'))}")


_GATE_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def show_gate(res, rows: list[tuple[str, str, str, str, str]], *, console=None) -> None:
    """Print the result of ``audit check`` (a :class:`audit.check.GateResult`) with its table ``rows``
    (:func:`audit.check.output.gate_rows`: status, rule id, value, threshold, detail; worst first).

    On ``console`` (rich): an error on stderr, policy warnings, notes, the workflow annotations (plain lines on
    stdout, where GitHub reads them), a failure to write the outputs, the table of rules and the verdict. Without
    a console only the annotations and a failure to write the outputs are printed (plain).
    """
    from rich.markup import escape

    if res.error is not None:
        if console is not None:
            print_error(res.error)
        return
    if console is not None:
        for w in res.warnings:
            console.print(f"[bold yellow]warning:[/] {escape(w)}", soft_wrap=True)
        for note in res.notes:
            console.print(f"[dim]{escape(note)}[/]")
    for line in res.annotations:
        echo(line)
    if res.output_error is not None:
        if console is not None:
            console.print(f"[bold yellow]warning:[/] {escape(res.output_error)}")
        else:
            echo(f"warning: {res.output_error}", err=True)
    if console is not None:
        _print_gate_table(rows, passed=res.passed, console=console, outputs=res.outputs)


def _print_gate_table(rows, *, passed: bool, console, outputs: dict[str, str]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="audit check", title_justify="left")
    for c in ("status", "rule", "value", "threshold", "detail"):
        table.add_column(c, overflow="fold")
    for status, rule_id, value, threshold, detail in rows:
        table.add_row(f"[{_GATE_STYLE.get(status, '')}]{status}[/]", escape(rule_id), value, threshold, escape(detail))
    console.print(table)
    n_fail = sum(r[0] == "fail" for r in rows)
    n_warn = sum(r[0] == "warn" for r in rows)
    if passed:
        console.print(f"[bold green]PASSED[/] ({n_warn} warning(s))")
    else:
        console.print(f"[bold red]FAILED[/]: {n_fail} rule(s) failed, {n_warn} warning(s)")
    if outputs:
        console.print("outputs: " + ", ".join(escape(v) for v in outputs.values()))


def print_findings(df, *, total: int, console=None) -> None:
    """The table of ``audit findings`` (all rows of ``df``, a :attr:`audit.api.Run.findings` frame, already
    filtered; ``total``: how many the run has)."""
    from rich.markup import escape
    from rich.table import Table

    from audit.core.numfmt import format_number
    from audit.report.markdown import fmt_value_ci

    con = console or make_console()
    if df.empty:
        con.print("no findings" + (f" at this filter ({total} in all)" if total else ""))
        return
    title = f"findings ({len(df)}" + (f" of {total})" if len(df) < total else ")")
    table = Table(title=title, title_justify="left")
    for col, kw in (("severity", {"no_wrap": True}), ("check", {"no_wrap": True}), ("title", {"overflow": "fold"}),
                    ("effect [95% CI]", {"overflow": "fold"}), ("n", {"justify": "right"}),
                    ("why", {"overflow": "fold"})):
        table.add_column(col, **kw)
    for r in df.itertuples(index=False):
        sev = "" if r.severity is None else str(r.severity)
        style = _SEV_STYLE.get(sev)
        lo, hi = (None if _missing(x) else x for x in (r.ci_low, r.ci_high))
        effect = "" if _missing(r.effect) else fmt_value_ci(r.effect, lo, hi)
        n = "" if _missing(r.n) else format_number(int(r.n))
        table.add_row(f"[{style}]{escape(sev)}[/]" if style else escape(sev), escape(str(r.check or "")),
                      escape(str(r.title or "")), escape(effect), escape(n), escape(str(r.detail or "")))
    con.print(table)


def _missing(v) -> bool:
    import pandas as pd

    return v is None or bool(pd.isna(v))


def print_models(rows: list[dict]) -> None:
    """``audit models``: one plain line per model (name, task, where its pretrained weights are or how to get them);
    ``rows`` as :func:`audit.train.models.weights_available` returns them."""
    for row in rows:
        if row["available"]:
            weights = f"weights: {row['source']} ({row['path']})"
        elif row["how"]:
            weights = f"no weights here: {row['how']}"
        else:
            weights = "no pretrained weights exist" if row["source"] is None else "no weights here"
        echo(f"{row['name']:30s} {row['task']:9s} {weights}")


def print_formats(formats: list[tuple[str, str]]) -> None:
    """``audit formats``: one plain line per input format (name, description)."""
    for name, description in formats:
        echo(f"{name:12s} {description}")


def print_dashboard_address(path: Path, url: str) -> None:
    """The line ``audit dashboard`` prints before the server starts."""
    echo(f"imgaudit dashboard for {path}: {url}   (Ctrl+C to stop)")
