"""``audit.check``: a run against a fairness / bias policy, as a Python object (``CheckResult``)."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from audit.api._common import RunLike, _keywords, _path

__all__ = ["check", "CheckResult", "RULE_COLUMNS"]

#: columns of ``CheckResult.rules`` and ``CheckResult.failures``, one row per policy rule
RULE_COLUMNS = ("id", "rule", "severity", "status", "message", "value", "threshold", "op", "group", "ci_low",
                "ci_high", "n", "line")


class CheckResult:
    """The verdict of ``audit.check``: did the run satisfy the policy, and which rules failed.

    Attributes
    ----------
    passed : bool
        True when no rule of severity ``error`` failed (``exit_code`` 0).
    exit_code : int
        0 pass, 1 a rule failed, 2 the policy or the run directory is invalid (see ``error``): the exit code of
        ``audit check``.
    error : str or None
        Why the policy or the run could not be checked.
    rules : pandas.DataFrame
        One row per rule (columns ``RULE_COLUMNS``): status ``pass``, ``fail``, ``warn`` or ``skip``.
    failures : pandas.DataFrame
        The rows of ``rules`` whose status is ``fail``.
    warnings : list of str
        Problems of the policy that do not change the verdict (a rule that can never fail).
    outputs : dict
        The files written (``result.json``, ``junit.xml``, ``summary.md`` under ``RUN/check/``).
    """

    def __init__(self, gate):
        self.gate = gate
        self.exit_code: int = int(gate.exit_code)
        self.error: str | None = gate.error
        self.warnings: list[str] = list(gate.warnings)
        self.outputs: dict[str, str] = dict(gate.outputs)
        rows = []
        for r in gate.rules:
            ci = list(r.ci or []) + [None, None]
            rows.append({"id": r.id, "rule": r.rule, "severity": r.severity, "status": r.status,
                         "message": r.message, "value": r.value, "threshold": r.threshold, "op": r.op,
                         "group": r.group, "ci_low": ci[0], "ci_high": ci[1], "n": r.n, "line": r.line})
        self.rules = pd.DataFrame(rows, columns=list(RULE_COLUMNS))
        for c in ("value", "threshold", "ci_low", "ci_high"):
            self.rules[c] = pd.to_numeric(self.rules[c], errors="coerce")
        self.rules["n"] = pd.to_numeric(self.rules["n"], errors="coerce").astype("Int64")

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    @property
    def failures(self) -> pd.DataFrame:
        return self.rules[self.rules["status"] == "fail"].reset_index(drop=True)

    def to_dict(self) -> dict:
        """The same content as ``RUN/check/result.json`` (passed, exit_code, error, warnings, rules)."""
        return self.gate.to_dict()

    def __repr__(self) -> str:
        if self.error is not None:
            return f"CheckResult(exit_code=2, error={self.error!r})"
        counts = self.rules["status"].value_counts()
        st = " ".join(f"{s}={int(counts.get(s, 0))}" for s in ("pass", "fail", "warn", "skip"))
        return f"CheckResult(passed={self.passed}, exit_code={self.exit_code}, {st})"

    def _repr_html_(self) -> str:
        esc = html.escape
        if self.error is not None:
            return f"<div><b>check: invalid</b> {esc(self.error)}</div>"
        verdict = "passed" if self.passed else "failed"
        rows = "".join(
            f"<tr><td>{esc(str(r.status))}</td><td>{esc(str(r.id))}</td><td>{esc(str(r.message))}</td></tr>"
            for r in self.rules.itertuples()
        )
        return (f"<div><b>check {verdict}</b> (exit code {self.exit_code})"
                f"<table><tr><th>status</th><th>rule</th><th>message</th></tr>{rows}</table></div>")


@_keywords
def check(
    run: RunLike,
    policy: str | os.PathLike,
    *,
    baseline: RunLike | None = None,
    junit: str | os.PathLike | None = None,
    github: bool = False,
) -> CheckResult:
    """Evaluate a fairness / bias policy (TOML, docs/policy.md) against a run (``audit check``).

    Never raises for a bad policy or run: those give ``exit_code`` 2 and ``error``, as the CLI exits 2.

    Parameters
    ----------
    run
        The run directory (a ``Run``, a path or a str).
    policy
        The policy file.
    baseline
        A previous run directory for ``regression`` rules.
    junit
        Also write the JUnit XML here (it is always written to ``RUN/check/junit.xml``).
    github
        Append the summary to ``$GITHUB_STEP_SUMMARY`` and print workflow annotations.

    Returns
    -------
    CheckResult
        ``passed``, ``exit_code``, ``failures`` (a DataFrame) and every rule's verdict in ``rules``.

    Examples
    --------
    >>> result = audit.check("runs/pets", "audit-policy.toml")  # doctest: +SKIP
    >>> result.passed, result.failures[["id", "message"]]       # doctest: +SKIP
    """
    from audit.check import run_check
    from audit.check.output import show

    path = _path(run)
    base = None if baseline is None else _path(baseline)
    gate = run_check(path, Path(os.fspath(policy)), baseline=base, junit=Path(junit) if junit else None,
                     github=github)
    show(gate)  # no console: only the workflow annotations (github) and a failure to write the outputs
    return CheckResult(gate)
