"""The ``tracked_slices`` rule: a baseline run's saved slices (``audit slices`` there) applied to this run.

``audit check RUN --baseline OLD`` with ``check = "tracked_slices"``: each slice the baseline confirmed is applied to
this run's held-out predictions in the same embedding space (:mod:`audit.slices.track`); the gap (rest - slice
accuracy) must satisfy ``op threshold`` (default ``<=``), on the point value or an end of its interval (``bound``).
Without ``--baseline`` the rule is skipped; when the two runs' embeddings are not one space it is ``on_missing``
with the reason.
"""

from __future__ import annotations

import math

from audit.check.policy import Rule
from audit.check.verdict import Item, RuleContext, RuleResult, judge, missing
from audit.errors import InputError

__all__ = ["eval_tracked_slices"]


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def eval_tracked_slices(rule: Rule, ctx: RuleContext) -> RuleResult:
    from audit.slices.track import track_slices

    if ctx.baseline is None:
        return RuleResult(rule.id, rule.check, rule.severity, "skip", "no --baseline given; slices not tracked",
                          threshold=rule.threshold, line=rule.line, description=rule.description)
    try:
        t = track_slices(ctx.baseline.path, ctx.run.path, confirmed_only=bool(rule.params.get("confirmed_only", True)),
                         n_boot=int(rule.params.get("n_boot", 2000)))
    except InputError as e:
        return missing(rule, str(e))
    items = []
    for r in t.itertuples():
        ci = (_f(r.ci_low), _f(r.ci_high))
        ci = None if all(math.isnan(c) for c in ci) else ci
        point = _f(r.gap)
        compared = {"value": point, "ci_low": ci[0] if ci else math.nan, "ci_high": ci[1] if ci else math.nan}[
            rule.bound]
        n = None if math.isnan(_f(r.n)) else int(r.n)
        items.append(Item(f"{r.slice_id} ({r.description})", compared, point, ci, n,
                          n is not None and n < rule.min_n,
                          {"accuracy": _f(r.accuracy), "rest_accuracy": _f(r.rest_accuracy)}))
    if not items:
        items.append(Item("the baseline confirmed no slice", 0.0, 0.0, None, None))
    return judge(rule, items, what="accuracy gap (rest - slice) of the baseline's slices on this run")
