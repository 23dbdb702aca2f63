"""Outputs of ``audit check``: JUnit XML, Markdown summary, GitHub annotations and the rows of the terminal table
(printed by :mod:`audit.console`)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from audit.check.verdict import GateResult, RuleResult, fmt
from audit.report.markdown import md_escape

__all__ = ["junit_xml", "summary_md", "github_annotations", "gate_rows", "show", "MAX_ANNOTATIONS"]

MAX_ANNOTATIONS = 10
_ICON = {"pass": "✅ pass", "fail": "❌ fail", "warn": "⚠️ warn", "skip": "⏭️ skip"}


def _ci(r: RuleResult) -> str:
    return f"[{fmt(r.ci[0])}, {fmt(r.ci[1])}]" if r.ci else ""


def _failure_text(r: RuleResult) -> str:
    return (
        f"{r.id}: {r.message} | value={fmt(r.value)} ({r.bound or 'value'}) threshold={r.op or ''} "
        f"{fmt(r.threshold)} ci={_ci(r) or 'n/a'} n={r.n if r.n is not None else 'n/a'}"
    )


def junit_xml(
    results: list[RuleResult], *, policy_name: str, policy_path: Path, run_path: Path, seconds: float = 0.0
) -> str:
    """JUnit XML with one testcase per rule (fail -> failure, skip -> skipped, warn -> system-out)."""
    n_fail = sum(r.status == "fail" for r in results)
    n_skip = sum(r.status == "skip" for r in results)
    root = ET.Element(
        "testsuites",
        name="audit check",
        tests=str(len(results)),
        failures=str(n_fail),
        errors="0",
        skipped=str(n_skip),
        time=f"{seconds:.3f}",
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"audit check: {policy_name}",
        tests=str(len(results)),
        failures=str(n_fail),
        errors="0",
        skipped=str(n_skip),
        time=f"{seconds:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="run", value=str(run_path))
    ET.SubElement(props, "property", name="policy", value=str(policy_path))
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"audit.policy.{r.rule}",
            name=r.id,
            time="0",
            file=str(policy_path),
            line=str(r.line or 0),
        )
        if r.status == "fail":
            f = ET.SubElement(case, "failure", message=_failure_text(r), type=f"policy.{r.rule}")
            f.text = "\n".join([r.message] + [str(d) for d in r.details[:20]])
        elif r.status == "skip":
            ET.SubElement(case, "skipped", message=r.message)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = ("WARNING: " if r.status == "warn" else "") + _failure_text(r)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def summary_md(
    results: list[RuleResult],
    *,
    passed: bool,
    policy_name: str,
    run_name: str,
    baseline: str | None = None,
    warnings: list[str] | None = None,
) -> str:
    """The rule table as Markdown (the run's summary.md is appended by the caller)."""
    n_fail = sum(r.status == "fail" for r in results)
    n_warn = sum(r.status == "warn" for r in results)
    n_skip = sum(r.status == "skip" for r in results)
    verdict = "PASSED" if passed else "FAILED"
    lines = [
        f"## audit check {verdict}: {n_fail} failed, {n_warn} warning(s), {n_skip} skipped, "
        f"{len(results) - n_fail - n_warn - n_skip} passed of {len(results)} rules\n",
        f"Policy `{md_escape(policy_name)}` on run `{md_escape(run_name)}`"
        + (f", baseline `{md_escape(baseline)}`" if baseline else "")
        + "\n",
        *(f"> ⚠️ policy warning: {md_escape(w, 400)}\n" for w in warnings or ()),
        "| status | rule | check | value | threshold | 95% CI | n | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = {"fail": 0, "warn": 1, "skip": 2, "pass": 3}
    for r in sorted(results, key=lambda r: order.get(r.status, 9)):
        lines.append(
            f"| {_ICON.get(r.status, r.status)} | {md_escape(r.id)} | {r.rule} | {fmt(r.value)} | "
            f"{r.op or ''} {fmt(r.threshold)} | {_ci(r)} | {r.n if r.n is not None else ''} | "
            f"{md_escape(r.message, 400)} |"
        )
    return "\n".join(lines) + "\n"


def _esc_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _esc_prop(s: str) -> str:
    return _esc_data(s).replace(":", "%3A").replace(",", "%2C")


def github_annotations(results: list[RuleResult], policy_path: Path) -> list[str]:
    """``::error``/``::warning`` workflow commands for failed and warned rules, at most :data:`MAX_ANNOTATIONS`."""
    out = []
    for r in sorted(results, key=lambda r: r.status != "fail"):
        if r.status not in ("fail", "warn") or len(out) >= MAX_ANNOTATIONS:
            continue
        level = "error" if r.status == "fail" else "warning"
        props = f"file={_esc_prop(str(policy_path))},line={r.line or 1},title={_esc_prop('audit check: ' + r.id)}"
        out.append(f"::{level} {props}::{_esc_data(r.message)}")
    return out


def append_step_summary(text: str) -> Path | None:
    """Append to ``$GITHUB_STEP_SUMMARY``; None when it is not set (not on GitHub Actions)."""
    p = os.environ.get("GITHUB_STEP_SUMMARY")
    if not p:
        return None
    with open(p, "a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    return Path(p)


def gate_rows(results: list[RuleResult]) -> list[tuple[str, str, str, str, str]]:
    """The terminal table of a check, worst first: (status, rule id, value, threshold, detail) as text."""
    order = {"fail": 0, "warn": 1, "skip": 2, "pass": 3}
    return [
        (r.status, r.id, fmt(r.value), f"{r.op or ''} {fmt(r.threshold)}", r.message)
        for r in sorted(results, key=lambda r: order.get(r.status, 9))
    ]


def show(res: GateResult, console=None) -> GateResult:
    """Hand a check result to the console, which prints it (:func:`audit.console.show_gate`). Returns ``res``.

    With ``console`` (rich): errors, warnings, notes, annotations, the table and the verdict. Without: only the
    workflow annotations and a failure to write the outputs, as plain lines.
    """
    from audit.console import show_gate

    show_gate(res, gate_rows(res.rules), console=console)
    return res
