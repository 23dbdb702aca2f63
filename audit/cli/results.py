"""The commands that read a finished run: ``audit report``, ``audit check``, ``audit init-policy`` and
``audit findings``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from audit.cli.base import app, handle_errors, summary_console
from audit.cli.jsonout import check_document, policy_document, run_document
from audit.cli.options import JsonOpt, RunArg

__all__ = ["report", "check", "init_policy", "findings", "Severity"]


class Severity(StrEnum):
    critical = "critical"
    warning = "warning"
    info = "info"


@app.command()
@handle_errors
def report(run_dir: RunArg, json_out: JsonOpt = False) -> dict | None:
    """Write RUN/report.html (one self-contained file) and RUN/summary.md."""
    from audit import console, pipeline
    from audit.rundir import RunDir

    rd = RunDir.open(run_dir)
    pipeline.report_stage(rd, required=True)
    console.print_summary(rd, stages=["report"], console=summary_console(stderr=json_out))
    return run_document(rd.path, command="report") if json_out else None


@app.command()
@handle_errors
def check(
    run_dir: RunArg,
    policy: Annotated[Path, typer.Option("--policy", help="Policy file (TOML).")],
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="A previous run directory.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write JUnit XML here.")] = None,
    github: Annotated[bool, typer.Option("--github", help="GitHub step summary and annotations.")] = False,
    json_out: JsonOpt = False,
) -> dict | None:
    """Gate CI on a fairness / bias policy: exit 0 pass, 1 a rule failed, 2 invalid policy or run."""
    from audit.check import run_check
    from audit.check.output import show

    result = show(run_check(run_dir, policy, baseline=baseline, junit=junit, github=github),
                  summary_console(stderr=json_out))
    if json_out:  # the document carries the gate's exit code; --json exits with it
        from audit.api.policy import CheckResult

        return check_document(CheckResult(result), run_dir=run_dir, policy=policy)
    raise typer.Exit(result.exit_code)


@app.command("init-policy")
@handle_errors
def init_policy(
    run_dir: RunArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Policy file to write.")] = Path("audit-policy.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_out: JsonOpt = False,
) -> dict | None:
    """Write a starter policy from a run's current values with sensible margins."""
    from audit.check import init_policy as _init
    from audit.console import echo
    from audit.rundir import RunDir

    rd = RunDir.open(run_dir)
    path = _init(rd, out, force=force)
    echo(f"wrote {path}; gate CI with: audit check {run_dir} --policy {path}")
    return policy_document(path, run_dir=rd.path) if json_out else None


@app.command()
@handle_errors
def findings(
    run_dir: RunArg,
    severity: Annotated[Optional[Severity], typer.Option(
        "--severity", help="Only findings at this level or above: critical, warning or info.")] = None,
    checks: Annotated[Optional[list[str]], typer.Option(
        "--check", help="Only findings of this check, e.g. split_leakage (repeatable).")] = None,
    json_out: JsonOpt = False,
) -> dict | None:
    """List a run's findings, most serious first: severity, check, title, effect [95% CI], n and why."""
    from audit.api.run import Run
    from audit.cli.jsonout import filter_findings, findings_document
    from audit.console import print_findings
    from audit.rundir import RunDir

    rd = RunDir.open(run_dir)
    level = severity.value if severity else None
    if json_out:
        return findings_document(rd.path, severity=level, checks=list(checks) if checks else None)
    df = filter_findings(Run(rd.path).findings, severity=level, checks=list(checks) if checks else None)
    print_findings(df, total=len(rd.findings()))
    return None
