"""The verdict machinery of ``audit check``: items, the result of one rule, the tables it reads, :func:`judge`.

Every check turns its table into *items* (one per group, attribute, held-out domain, column...), each with the
number compared to the threshold (the point value or an end of its 95% interval), the interval and ``n``.
:func:`judge` then applies the operator, the ``min_n`` / ``on_insufficient`` policy and the severity.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from audit.check.policy import Policy, Rule
from audit.core.numfmt import format_number
from audit.errors import AuditError
from audit.rundir import RunDir

__all__ = ["Item", "RuleResult", "RuleContext", "GateResult", "fmt", "failing_status", "missing", "judge"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_NEG = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


def fmt(v: Any, digits: int = 3) -> str:
    """A number for messages: 3 decimals, ``nan`` for missing, no thousands separator."""
    return format_number(v, digits, nan="nan", thousands=False)


@dataclass
class Item:
    """One thing a rule judges (a group, an attribute, a held-out domain...)."""

    label: str
    value: float  # the number compared with the threshold (per the rule's bound)
    point: float  # the point estimate
    ci: tuple[float, float] | None = None
    n: int | None = None
    insufficient: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class RuleResult:
    """The verdict on one rule. ``status`` is pass, fail, warn or skip."""

    id: str
    rule: str
    severity: str
    status: str
    message: str
    value: float | None = None
    threshold: float | None = None
    op: str | None = None
    bound: str | None = None
    ci: list | None = None
    n: int | None = None
    group: str | None = None
    line: int | None = None
    n_items: int = 0
    n_violations: int = 0
    n_insufficient: int = 0
    details: list[dict] = field(default_factory=list)
    description: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("value", "threshold"):
            if isinstance(d[k], float) and math.isnan(d[k]):
                d[k] = None
        return d


class RuleContext:
    """Tables of a run (and of the baseline), read once."""

    def __init__(self, run: RunDir, policy: Policy, baseline: RunDir | None = None):
        self.run = run
        self.policy = policy
        self.baseline = baseline
        self._cache: dict[tuple[str, str], pd.DataFrame | None] = {}
        self.task = run.task

    def table(self, rel: str, *, base: bool = False) -> pd.DataFrame | None:
        run = self.baseline if base else self.run
        key = (str(run.path), rel)
        if key not in self._cache:
            try:
                self._cache[key] = run.read_table(rel, required=False)  # damaged -> RunDirError -> exit 2
            except AuditError as e:
                if base:  # say which of the two runs is damaged
                    raise type(e)(f"--baseline {run.path}: {e}") from None
                raise
        return self._cache[key]


# ------------------------------------------------------------------ judging
def failing_status(rule: Rule) -> str:
    return "fail" if rule.severity == "error" else "warn"


def missing(rule: Rule, why: str) -> RuleResult:
    """The verdict when the data a rule needs is absent (``on_missing``)."""
    status = {"fail": failing_status(rule), "warn": "warn", "skip": "skip"}[rule.on_missing]
    return RuleResult(
        rule.id,
        rule.check,
        rule.severity,
        status,
        f"no data: {why}",
        threshold=rule.threshold,
        op=rule.op,
        bound=rule.bound,
        line=rule.line,
        description=rule.description,
    )


def _describe(it: Item, rule: Rule, what: str) -> str:
    ci = f", 95% CI [{fmt(it.ci[0])}, {fmt(it.ci[1])}]" if it.ci else ""
    n = f", n={it.n}" if it.n is not None else ""
    bound = f"{rule.bound} " if rule.bound != "value" else ""
    if rule.bound != "value":
        extra = f" (value {fmt(it.point)}{ci}{n})"
    else:
        extra = f" ({(ci + n).lstrip(', ')})" if (ci or n) else ""
    return f"{it.label}: {what} {bound}{fmt(it.value)}{extra}"


def _detail(it: Item) -> dict:
    """One violating (or doubtful) item as ``RuleResult.details`` lists it."""
    return {
        "label": it.label,
        "value": it.value,
        "point": it.point,
        "ci": list(it.ci) if it.ci else None,
        "n": it.n,
        "insufficient": it.insufficient,
        **it.extra,
    }


def judge(
    rule: Rule,
    items: list[Item],
    *,
    what: str,
    violates: Callable[[Item], bool] | None = None,
    doubtful: Callable[[Item], bool] | None = None,
    empty_ok: bool = False,
) -> RuleResult:
    """Apply a rule to its items.

    ``violates(item)`` defaults to ``not (item.value OP threshold)``. ``doubtful(item)`` marks items that do
    not violate but deserve a warning (a regression whose interval includes the margin). With
    ``empty_ok`` a rule with nothing to judge passes (e.g. no significant association at all); otherwise it
    is treated as missing data.
    """
    op = rule.op or ">="
    if violates is None:
        thr = float(rule.threshold)

        def violates(it: Item) -> bool:
            return not _OPS[op](it.value, thr)

    evaluable = [it for it in items if not math.isnan(it.value)]
    n_nan = len(items) - len(evaluable)
    if not evaluable:
        if empty_ok:
            return RuleResult(
                rule.id,
                rule.check,
                rule.severity,
                "pass",
                f"nothing to check ({what})",
                threshold=rule.threshold,
                op=rule.op,
                bound=rule.bound,
                line=rule.line,
                description=rule.description,
            )
        return missing(rule, f"no evaluable {what} values" + (f" ({n_nan} empty)" if n_nan else ""))
    sufficient = [it for it in evaluable if not it.insufficient]
    insufficient = [it for it in evaluable if it.insufficient]
    viol = [it for it in sufficient if violates(it)]
    if rule.on_insufficient == "fail":
        viol += [it for it in insufficient if violates(it)]
    doubt = [it for it in sufficient if it not in viol and doubtful is not None and doubtful(it)]
    # the item shown: the worst violation, else the worst item overall
    lower_bad = op in (">=", ">")
    pool = viol or doubt or sufficient or evaluable
    worst = min(pool, key=lambda it: it.value) if lower_bad else max(pool, key=lambda it: it.value)
    thr_txt = f"{op} {fmt(rule.threshold)}"
    checked = f"{len(evaluable)} checked" + (f", {n_nan} empty" if n_nan else "")
    if insufficient:
        checked += f", {len(insufficient)} under min_n={rule.min_n}"
    if viol:
        status = failing_status(rule)
        msg = f"{_describe(worst, rule, what)} violates {thr_txt}; {len(viol)} of {len(evaluable)} fail ({checked})"
    elif doubt:
        status = "warn"
        msg = f"{_describe(worst, rule, what)}: inconclusive versus {thr_txt} ({checked})"
    elif insufficient and rule.on_insufficient == "warn" and any(violates(it) for it in insufficient):
        status = "warn"
        small = [it for it in insufficient if violates(it)]
        msg = (
            f"{len(small)} group(s) under min_n={rule.min_n} would violate {thr_txt}, e.g. "
            f"{_describe(small[0], rule, what)}; worst of the rest {fmt(worst.value)} ({checked})"
        )
    elif not sufficient and rule.on_insufficient != "fail":
        status = "warn" if rule.on_insufficient == "warn" else "skip"
        msg = f"every group is under min_n={rule.min_n}; no verdict ({checked})"
    else:
        status = "pass"
        msg = f"worst {_describe(worst, rule, what)} satisfies {thr_txt} ({checked})"
    details = [_detail(it) for it in (viol + doubt)[:20]]
    return RuleResult(
        rule.id,
        rule.check,
        rule.severity,
        status,
        msg,
        value=worst.value,
        threshold=rule.threshold,
        op=op,
        bound=rule.bound,
        ci=list(worst.ci) if worst.ci else None,
        n=worst.n,
        group=worst.label,
        line=rule.line,
        n_items=len(evaluable),
        n_violations=len(viol),
        n_insufficient=len(insufficient),
        details=details,
        description=rule.description,
    )


@dataclass
class GateResult:
    """Outcome of ``audit check``. ``exit_code``: 0 pass, 1 failed, 2 invalid policy or run (see ``error``)."""

    exit_code: int
    rules: list[RuleResult] = field(default_factory=list)
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    annotations: list[str] = field(default_factory=list)
    #: problems of the policy that do not change the verdict, e.g. a rule that can never fail
    warnings: list[str] = field(default_factory=list)
    #: remarks on the outputs, e.g. that $GITHUB_STEP_SUMMARY is not set
    notes: list[str] = field(default_factory=list)
    #: why RUN/check/* (or the copies) could not be written; the verdict stands
    output_error: str | None = None

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "error": self.error,
            "warnings": list(self.warnings),
            "rules": [r.to_dict() for r in self.rules],
        }
