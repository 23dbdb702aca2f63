"""``audit check``: gate CI on a fairness / bias policy (TOML) evaluated against a run directory.

::

    result = run_check(Path("runs/x"), Path("audit-policy.toml"), junit=Path("junit.xml"))
    result.exit_code     # 0 pass, 1 a rule with severity "error" failed, 2 invalid policy or run directory

Writes ``RUN/check/result.json``, ``RUN/check/junit.xml`` and ``RUN/check/summary.md``; with ``github=True``
appends the summary to ``$GITHUB_STEP_SUMMARY`` and prints at most 10 ``::error``/``::warning`` annotations.
The policy format is documented in docs/policy.md.
"""

from __future__ import annotations

import time
from pathlib import Path

from audit.check.bounds import bounds_warning
from audit.check.init import init_policy
from audit.check.output import append_step_summary, github_annotations, junit_xml, show, summary_md
from audit.check.policy import CHECKS, Policy, PolicyError, Rule, load_policy, parse_policy
from audit.check.rules import evaluate
from audit.check.verdict import GateResult, RuleContext, RuleResult
from audit.errors import AuditError, RunDirError
from audit.report.markdown import summary_markdown
from audit.rundir import RunDir, atomic_write_text, to_json

__all__ = [
    "run_check",
    "show",
    "init_policy",
    "GateResult",
    "RuleResult",
    "Policy",
    "Rule",
    "PolicyError",
    "CHECKS",
    "load_policy",
    "parse_policy",
]


def run_check(
    run_dir: Path,
    policy: Path,
    *,
    baseline: Path | None = None,
    junit: Path | None = None,
    github: bool = False,
    write: bool = True,
) -> GateResult:
    """Evaluate a policy against a run directory.

    Parameters
    ----------
    run_dir
        The run directory to check.
    policy
        The policy file (TOML, see docs/policy.md).
    baseline
        A previous run directory for ``regression`` rules.
    junit
        Also write the JUnit XML here (it is always written to ``RUN/check/junit.xml``).
    github
        Append the summary to ``$GITHUB_STEP_SUMMARY`` and print workflow annotations.
    write
        Write ``RUN/check/*`` (False for :func:`audit.testing.assert_policy`).

    Returns
    -------
    GateResult
        Never raises for bad input: an invalid policy or run gives ``exit_code`` 2 and ``error``. Prints
        nothing: :func:`audit.check.output.show` hands it to :mod:`audit.console`.
    """
    t0 = time.perf_counter()
    try:
        pol = load_policy(policy)
        run = RunDir.open(run_dir)
        run.info  # noqa: B018 - a damaged run.json is an invalid run directory
        base = _open_baseline(Path(baseline)) if baseline is not None else None
        ctx = RuleContext(run, pol, base)
        results = [evaluate(rule, ctx) for rule in pol.rules]
    except AuditError as e:
        return GateResult(exit_code=2, error=str(e))
    failed = any(r.status == "fail" for r in results)
    res = GateResult(exit_code=1 if failed else 0, rules=results, warnings=policy_warnings(pol))
    if write or junit is not None or github:
        try:
            _write_outputs(
                res, run, pol, base, junit=junit, github=github, write=write, seconds=time.perf_counter() - t0
            )
        except AuditError as e:
            # the verdict stands; say loudly that the files could not be written
            res.output_error = str(e)
    return res


def policy_warnings(pol: Policy) -> list[str]:
    """One line per rule of ``pol`` that can never fail (or never pass), naming the file and line."""
    out = []
    for rule in pol.rules:
        w = bounds_warning(rule)
        if w:
            key = (
                "max_drop"
                if rule.check == "regression"
                else ("threshold" if "max_count" not in rule.params else "max_count")
            )
            out.append(f"{pol.where(rule, key)}: rule {rule.id!r} {w}")
    return out


def _open_baseline(path: Path) -> RunDir:
    """The ``--baseline`` run directory; errors say that it is the baseline that is wrong."""
    if not path.exists():
        raise RunDirError(
            f"--baseline {path}: run directory does not exist (give the run directory of an earlier "
            "audit, e.g. the last accepted run)"
        )
    try:
        base = RunDir.open(path)
        base.info  # noqa: B018 - a damaged run.json is an invalid baseline
    except AuditError as e:
        raise type(e)(f"--baseline {path}: {e}") from None
    return base


def _write_outputs(
    res: GateResult,
    run: RunDir,
    pol: Policy,
    base: RunDir | None,
    *,
    junit: Path | None,
    github: bool,
    write: bool,
    seconds: float,
) -> None:
    xml = junit_xml(res.rules, policy_name=pol.name, policy_path=pol.path, run_path=run.path, seconds=seconds)
    md = summary_md(
        res.rules,
        passed=res.passed,
        policy_name=pol.name,
        run_name=str(run.path),
        baseline=str(base.path) if base else None,
        warnings=res.warnings,
    )
    try:
        md += "\n" + summary_markdown(run, title=True, top=10)
    except AuditError as e:
        md += f"\n(run summary unavailable: {e})\n"
    if write:
        payload = res.to_dict()
        payload.update(policy=str(pol.path), run=str(run.path), baseline=str(base.path) if base else None)
        held = run._lock_fd is not None
        run.lock()  # never interleave check/ files with another writer of the run directory
        try:
            run.write_text("check/result.json", to_json(payload) + "\n")
            run.write_text("check/junit.xml", xml)
            run.write_text("check/summary.md", md)
        finally:
            if not held:
                run.unlock()
        res.outputs.update(
            result=str(run.file("check/result.json")),
            junit=str(run.file("check/junit.xml")),
            summary=str(run.file("check/summary.md")),
        )
    if junit is not None:
        atomic_write_text(Path(junit), xml)
        res.outputs["junit_copy"] = str(junit)
    if github:
        try:
            p = append_step_summary(md)
        except OSError as e:
            raise RunDirError(f"cannot append to $GITHUB_STEP_SUMMARY: {e}") from None
        if p is None:
            res.notes.append("GITHUB_STEP_SUMMARY is not set: summary not appended (not on GitHub Actions?)")
        res.annotations = github_annotations(res.rules, pol.path)
