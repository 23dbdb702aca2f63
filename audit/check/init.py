"""``audit init-policy RUN``: a starter policy from a run's current values, with margins.

The starter passes on the run it was made from (a ratchet): rules that already hold are errors with a
margin; profile rules the data already violates are written as warnings with a comment, so CI can start
gating today and be tightened as the data is fixed. One exception: ``no-degenerate-model`` is always an error,
so a starter made from a run whose model learned nothing fails on that run (a gate set up on a model that
learned nothing must not go green; its gap rules are warnings there, as check never passes them on it).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from audit.check.bounds import bounds_warning
from audit.check.policy import PolicyError, parse_policy
from audit.check.rules import MODEL_CHECKS, degenerate_models, evaluate
from audit.check.verdict import RuleContext, fmt
from audit.errors import UsageError
from audit.headline import primary_metric
from audit.rundir import RunDir, atomic_write_text

__all__ = ["init_policy", "starter_policy"]

# margins added to the current value (the direction that makes the rule easier to pass)
METRIC_MARGIN = 0.05
ECE_MARGIN = 0.03
IMBALANCE_FACTOR = 1.25
TARGET_CRAMERS_V = 0.3
# the [policy] defaults of a starter (the probes that measure "now" use the same)
STARTER_DEFAULTS = {"min_n": 30, "on_insufficient": "warn", "on_missing": "fail"}
# a threshold far beyond any value: a probe with it reports the worst item and never a violation
_FAR = 1e300


def _down(x: float) -> float:
    """``x`` rounded down to 2 decimals (the easy direction of a ``>=`` rule); never below 0."""
    return max(0.0, math.floor(x * 100 + 1e-9) / 100)


def _up(x: float, cap: float | None = 1.0) -> float:
    """``x`` rounded up to 2 decimals (the easy direction of a ``<=`` rule), at most ``cap``."""
    v = math.ceil(x * 100 - 1e-9) / 100
    return min(cap, v) if cap is not None else v


def _q(s: str) -> str:
    """A TOML basic string."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _rule_lines(kv: dict) -> list[str]:
    out = ["[[rule]]"]
    for k, v in kv.items():
        if isinstance(v, str):
            out.append(f"{k} = {_q(v)}")
        elif isinstance(v, bool):
            out.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, (list, tuple)):
            out.append(f"{k} = [" + ", ".join(_q(x) for x in v) + "]")
        else:
            out.append(f"{k} = {v!r}")
    return out


def _head_lines(name: str) -> list[str]:
    d = STARTER_DEFAULTS
    return [
        "[policy]",
        f"name = {_q(name)}",
        f"min_n = {d['min_n']}                 # groups with fewer samples get no verdict",
        f'on_insufficient = "{d["on_insufficient"]}"   # skip | warn | fail',
        f'on_missing = "{d["on_missing"]}"        # a rule whose table is absent fails (skip to allow partial runs)',
    ]


def _why(e: Exception, rid: str) -> str:
    """A policy error's message without its ``file:line: rule 'id':`` prefix."""
    return str(e).split(f"rule {rid!r}: ", 1)[-1]


class _Probe:
    """Evaluates a candidate rule exactly as ``audit check`` will (same parser, defaults and evaluator).

    The candidate is written as TOML with a threshold no item can violate and evaluated with
    :func:`audit.check.rules.evaluate`: the value it reports is the worst item the rule selects, which is the
    value ``audit check`` reports for the final rule as long as it passes. A damaged or malformed table raises
    (exit code 2): a starter must not silently lose a rule.
    """

    def __init__(self, run: RunDir):
        self.run = run
        self.ctx = None

    def table(self, rel: str) -> pd.DataFrame | None:
        self._context(None)
        return self.ctx.table(rel)

    def _context(self, pol):
        if pol is None:
            pol = parse_policy('[[rule]]\ncheck = "findings"\n', "starter.toml")
        if self.ctx is None:
            self.ctx = RuleContext(self.run, pol)
        self.ctx.policy = pol
        return self.ctx

    def __call__(self, kv: dict):
        """(result, None) when the rule has a current value, else (None, why)."""
        pol = parse_policy("\n".join(_head_lines("probe") + _rule_lines(kv)) + "\n", "starter.toml")
        try:
            res = evaluate(pol.rules[0], self._context(pol), strict=True)
        except PolicyError as e:  # a name the rule needs (a metric, a grouping) is not in the run
            return None, _why(e, kv["id"])
        if res.value is None or math.isnan(res.value):
            return None, res.message.removeprefix("no data: ")
        return res, None


def _where(res) -> str:
    """``(group, 95% CI [a, b], n=N)`` of the item a probe reported."""
    parts = [res.group] if res.group else []
    if res.ci:
        parts.append(f"95% CI [{fmt(res.ci[0])}, {fmt(res.ci[1])}]")
    if res.n is not None:
        parts.append(f"n={res.n}")
    return f" ({', '.join(parts)})" if parts else ""


class _Starter:
    """The lines of a starter policy being written, and the probe that measures each rule's "now"."""

    def __init__(self, run: RunDir):
        self.run = run
        self.probe = _Probe(run)
        self.out = [
            "# imgaudit policy: generated by `audit init-policy` from the run",
            f"#   {str(run.path)}",
            '# Thresholds are the values `audit check` reports for each rule on this run ("now") plus a margin, so',
            "# this run passes; tighten them over time.",
            "# Format: docs/policy.md.  Use: audit check RUN --policy THIS_FILE [--baseline OLD_RUN]",
            "",
            *_head_lines("starter policy for " + run.path.name),
            "",
        ]

    def rule(self, comment: str, **kv) -> bool:
        """Write a rule (True), or a comment instead when it could never fail (False). A model rule on a run whose
        model learned nothing is a warning (check never passes it on that model): the starter still passes."""
        bad = degenerate_models(self.probe._context(None)) if kv.get("check") in MODEL_CHECKS else []
        if bad and kv.get("severity", "error") == "error":
            kv = {**kv, "severity": "warn"}
            comment += f"; a warning while {', '.join(bad)} learned nothing usable: make it an error after retraining"
        lines = _rule_lines(kv)
        w = bounds_warning(parse_policy("\n".join(lines) + "\n", "starter.toml").rules[0])
        if w:  # never write a rule that gates nothing
            self.left_out(kv["id"], f"{comment}, but that rule {w.split(':', 1)[0]}")
            return False
        self.out.append(f"# {comment}")
        self.out.extend(lines)
        self.out.append("")
        return True

    def left_out(self, rid: str, why: str) -> None:
        self.out.append(f"# {rid}: left out: {why}")
        self.out.append("")

    def measured(self, kv: dict, threshold: float):
        """The rule's current result as check computes it (``threshold`` far enough to flag nothing), or None
        after writing why the rule is left out."""
        res, why = self.probe({**kv, "threshold": threshold})
        if res is None:
            self.left_out(kv["id"], why)
        return res


def _profile_rules(s: _Starter) -> None:
    """Profile rules: gate as errors what holds today, warn on what the data already violates."""
    run, probe = s.run, s.probe
    for check, table in (
        ("no_split_leakage", "profile/duplicates.parquet"),
        ("no_label_conflicts", "profile/duplicates.parquet"),
        ("no_unreadable_files", "profile/images.parquet"),
    ):
        if not run.has(table):
            continue
        rid = check.replace("_", "-")
        res, why = probe({"id": rid, "check": check})
        if res is None:
            s.left_out(rid, why)
            continue
        c = int(res.value)
        if c == 0:
            s.rule(f"{check}: now 0", id=rid, check=check, severity="error")
        else:
            s.rule(f"{check}: now {c}: fix the data, then make this an error", id=rid, check=check, severity="warn")
    if run.has("profile/imbalance.parquet"):
        kv = {"id": "imbalance", "check": "imbalance_ratio"}
        res = s.measured(kv, _FAR)
        if res is not None:
            s.rule(
                f"largest imbalance ratio: now {res.value:.3f}{_where(res)}; threshold = {IMBALANCE_FACTOR} x now",
                **kv,
                threshold=_up(res.value * IMBALANCE_FACTOR, None),
                severity="warn",
            )
    if run.has("profile/associations.parquet"):
        kv = {"id": "spurious-association", "check": "association"}
        res, _ = probe({**kv, "threshold": _FAR, "max_q": 0.05})
        if res is None:  # nothing significant to judge
            s.rule(
                f"no significant association now (q <= 0.05); threshold {TARGET_CRAMERS_V}",
                **kv,
                threshold=TARGET_CRAMERS_V,
                max_q=0.05,
            )
        elif res.value <= TARGET_CRAMERS_V - 0.02:
            s.rule(
                f"strongest significant association: now {res.value:.3f}{_where(res)}; threshold {TARGET_CRAMERS_V}",
                **kv,
                threshold=TARGET_CRAMERS_V,
                max_q=0.05,
            )
        else:
            s.rule(
                f"strongest significant association: now {res.value:.3f}{_where(res)}; threshold = now + "
                f"{METRIC_MARGIN}; tighten toward {TARGET_CRAMERS_V} as the data is fixed",
                **kv,
                threshold=_up(res.value + METRIC_MARGIN, None),
                max_q=0.05,
            )


def _worst_group_rule(s: _Starter, metric: str | None) -> bool:
    """The worst-group rule; True when one was written (then a worst-group regression rule follows)."""
    probe = s.probe
    kv = {"id": "worst-group", "check": "worst_group"} | ({"metric": metric} if metric else {})
    # gate the 95% lower bound; when lower bound - margin is 0 (a rule that can never fail), the point
    # value; when that is 0 too, nothing
    lo, why = probe({**kv, "bound": "ci_low", "op": ">=", "threshold": -_FAR})
    if lo is not None and _down(lo.value - METRIC_MARGIN) > 0:
        return s.rule(
            f"worst group by its 95% CI lower bound: now {lo.value:.3f}{_where(lo)}; threshold = now - {METRIC_MARGIN}",
            **kv,
            bound="ci_low",
            op=">=",
            threshold=_down(lo.value - METRIC_MARGIN),
        )
    pt, why2 = probe({**kv, "bound": "value", "op": ">=", "threshold": -_FAR})
    if pt is None:
        s.left_out("worst-group", why2 or why)
        return False
    if _down(pt.value - METRIC_MARGIN) <= 0:
        s.left_out(
            "worst-group",
            f"the worst group is now {pt.value:.3f}{_where(pt)}: now - {METRIC_MARGIN} "
            "is 0, and `>= 0` can never fail; add a worst_group rule once the model "
            "does better",
        )
        return False
    why_pt = (
        f"its 95% CI lower bound {lo.value:.3f} - {METRIC_MARGIN} would be 0, which can never "
        "fail, so the point value is gated"
        if lo is not None
        else f"no 95% CI lower bound ({why}), so the point value is gated"
    )
    return s.rule(
        f"worst group: now {pt.value:.3f}{_where(pt)}; {why_pt}; threshold = now - {METRIC_MARGIN}",
        **kv,
        bound="value",
        op=">=",
        threshold=_down(pt.value - METRIC_MARGIN),
    )


def _model_rules(s: _Starter, groups: pd.DataFrame | None, metric: str | None) -> None:
    """Generalization gap, calibration, per-domain (segmentation) and fairness rules."""
    run, probe = s.run, s.probe
    if run.has("metrics/generalization.parquet"):
        kv = {"id": "generalization-gap", "check": "generalization_gap"}
        res, why = probe({**kv, "threshold": _FAR})
        if res is None:
            gen = probe.table("metrics/generalization.parquet")
            s.left_out(
                "generalization-gap",
                "metrics/generalization.parquet has no rows (no domain was held out in training)"
                if gen is not None and gen.empty
                else why,
            )
        else:
            g = res.value
            s.rule(
                f"largest in-domain minus out-of-domain gap: now {g:.3f}{_where(res)}; threshold = "
                + (f"now + {METRIC_MARGIN}" if g >= 0 else f"0 + {METRIC_MARGIN} (the gap is negative)"),
                **kv,
                threshold=_up(max(g, 0.0) + METRIC_MARGIN, None),
            )
    if groups is not None and "metric" in groups.columns and "ece" in set(groups["metric"].astype(str)):
        kv = {"id": "calibration", "check": "ece"}
        res = s.measured(kv, _FAR)
        if res is not None:
            s.rule(
                f"expected calibration error: now {res.value:.3f}{_where(res)}; threshold = now + {ECE_MARGIN}",
                **kv,
                threshold=_up(res.value + ECE_MARGIN, None),
                severity="warn",
            )
    if run.task == "segment" and metric and groups is not None and "domain" in set(groups["by"].astype(str)):
        rid = "per-domain-" + metric
        kv = {"id": rid, "check": "group_metric", "metric": metric, "by": ["domain"], "op": ">="}
        res = s.measured(kv, -_FAR)
        if res is not None:
            s.rule(
                f"lowest {metric} of a domain: now {res.value:.3f}{_where(res)}; threshold = now - {METRIC_MARGIN}",
                **kv,
                threshold=_down(res.value - METRIC_MARGIN),
            )
    fair = probe.table("metrics/fairness.parquet")
    if fair is not None and len(fair):
        for m in ("dp_diff", "eo_diff"):
            rid = m.replace("_", "-")
            if "metric" in fair.columns and m not in set(fair["metric"].astype(str)):
                continue
            kv = {"id": rid, "check": "fairness", "metric": m, "op": "<="}
            res = s.measured(kv, _FAR)
            if res is not None:
                s.rule(
                    f"largest {m}: now {res.value:.3f}{_where(res)}; threshold = now + {METRIC_MARGIN}",
                    **kv,
                    threshold=_up(res.value + METRIC_MARGIN, None),
                )


def _regression_rules(s: _Starter, groups: pd.DataFrame | None, metric: str | None, gated_worst: bool) -> None:
    """Regressions against a baseline run: the overall value (the most precise), each domain, the worst group."""
    if groups is not None and metric:
        s.rule(
            f"with --baseline OLD_RUN: overall {metric} may not drop by more than 0.02 (judged on the intervals)",
            id="no-regression-overall",
            check="regression",
            of="overall",
            metric=metric,
            max_drop=0.02,
        )
        if "domain" in set(groups["by"].astype(str)):
            s.rule(
                f"with --baseline OLD_RUN: no domain's {metric} may drop by more than 0.05 (judged on the intervals)",
                id="no-regression-domains",
                check="regression",
                of="groups",
                by=["domain"],
                metric=metric,
                max_drop=0.05,
            )
    if gated_worst:
        s.rule(
            "with --baseline OLD_RUN: the worst group (whichever it is in each run) may not drop by more than "
            "0.02 (judged on the intervals)",
            id="no-regression",
            check="regression",
            of="worst_group",
            max_drop=0.02,
        )


def _degenerate_rule(s: _Starter) -> None:
    """Gate on models that learned nothing (metrics/sanity.py): every gap of such a model is meaningless."""
    kv = {"id": "no-degenerate-model", "check": "findings", "kinds": ["degenerate_model"], "min_severity": "critical",
          "max_count": 0}
    res, why = s.probe(kv)
    if res is None:
        s.left_out(kv["id"], why)
        return
    c = int(res.value or 0)
    what = "models no better than their trivial baseline (degenerate_model)"
    # always an error, also on a run whose model is degenerate now: a CI gate set up on a model that learned
    # nothing must not go green (issue 25); `audit check` fails on this run until the model is retrained
    if c == 0:
        s.rule(f"{what}: now 0", **kv)
    else:
        s.rule(f"{what}: now {c}: this run FAILS this rule until the model is retrained (see the finding)", **kv)


def _slice_rule(s: _Starter) -> None:
    """Largest confirmed slice gap (slices/slices.parquet): now + the metric margin."""
    if not s.run.has("slices/slices.parquet"):
        return
    kv = {"id": "max-slice-gap", "check": "max_slice_gap"}
    res = s.measured(kv, _FAR)
    if res is not None:
        g = max(res.value, 0.0)
        s.rule(f"largest confirmed slice gap (rest - slice accuracy): now {res.value:.3f}{_where(res)}; "
               f"threshold = now + {METRIC_MARGIN}", **kv, threshold=_up(g + METRIC_MARGIN, None))


def _mitigation_rule(s: _Starter) -> None:
    """A mitigation that raises worst-group accuracy may cost at most 0.02 of held-out accuracy (issue 21)."""
    if not s.run.has("mitigations/summary.parquet"):
        return
    s.rule("a mitigation that raises worst-group accuracy may not lower held-out accuracy by more than 0.02 "
           "(paired intervals, mitigations/summary.parquet)", id="mitigation-tradeoff", check="mitigation_tradeoff",
           max_drop=0.02)


def starter_policy(run: RunDir) -> str:
    """The text of a starter policy for ``run`` (see module docstring).

    Every threshold comes from the value ``audit check`` reports for the same rule on ``run`` ("now" in the
    comment above it) plus the margin of docs/policy.md. A rule that could never fail (a threshold at the end
    of the quantity's range) is left out with a comment saying why.
    """
    s = _Starter(run)
    _profile_rules(s)
    groups = s.probe.table("metrics/groups.parquet")
    metric = None
    if groups is not None and "metric" in groups.columns:
        metric = primary_metric(groups["metric"], run.task)
    gated_worst = _worst_group_rule(s, metric) if groups is not None else False
    _model_rules(s, groups, metric)
    if groups is not None:
        _degenerate_rule(s)
    _regression_rules(s, groups, metric, gated_worst)
    _slice_rule(s)
    _mitigation_rule(s)
    if not any(line == "[[rule]]" for line in s.out):
        s.rule(
            "the run has no profile or metric tables yet: at least gate on critical findings",
            id="no-critical-findings",
            check="findings",
            min_severity="critical",
        )
    return "\n".join(s.out)


def init_policy(run: RunDir, out: Path, *, force: bool = False) -> Path:
    """Write a starter policy for ``run`` to ``out`` (refuses to overwrite unless ``force``)."""
    out = Path(out)
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    text = starter_policy(run)
    parse_policy(text, out)  # the starter must be valid by construction
    atomic_write_text(out, text)
    return out
