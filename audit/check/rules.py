"""Evaluation of policy rules against a run directory's tables: one evaluator per check kind.

Each evaluator selects its table's rows, turns them into :class:`~audit.check.verdict.Item` s and lets
:func:`~audit.check.verdict.judge` give the verdict. Metric direction (of a regression) comes from
:mod:`audit.core.directions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from audit.check.policy import PolicyError, Rule, _hint
from audit.check.tracked import eval_tracked_slices
from audit.check.verdict import Item, RuleContext, RuleResult, failing_status, judge, missing
from audit.core.directions import lower_is_better
from audit.errors import AuditError, RunDirError
from audit.findings import KINDS
from audit.headline import SCOPE_PREFERENCE, prefer, primary_metric

__all__ = ["evaluate", "EVALUATORS", "MODEL_CHECKS", "degenerate_models"]

#: checks that judge a model's numbers (groups, gaps, fairness, calibration, slices). On a model that learned nothing
#: (``degenerate`` in metrics/sanity.parquet) those numbers are noise around a constant: such a rule never passes
#: on it (issue 25), it fails (or warns, per its severity) saying why.
MODEL_CHECKS = frozenset({"worst_group", "group_metric", "ece", "fairness", "generalization_gap", "regression",
                          "max_slice_gap", "tracked_slices"})


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


# ------------------------------------------------------------------ selection helpers
def _choose(df: pd.DataFrame, col: str, wanted, rule: Rule, ctx: RuleContext, key: str) -> pd.DataFrame:
    """Keep rows whose ``col`` is in ``wanted``; a value absent from the table is a policy error."""
    if wanted is None or col not in df.columns or df.empty:
        return df  # an empty table has nothing to select: the rule reports "no data" (on_missing)
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    have = sorted(set(df[col].dropna().astype(str)))
    unknown = [w for w in wanted if w not in have]
    if unknown:
        raise ctx.policy.error(
            rule,
            key,
            f"{key} {unknown[0]!r} is not in the run{_hint(unknown[0], have)}; "
            f"available: {', '.join(have[:20]) or '(none)'}",
        )
    return df[df[col].astype(str).isin(wanted)]


def _model_sel(df: pd.DataFrame, rule: Rule, ctx: RuleContext, *, fold_default: bool = True) -> pd.DataFrame:
    df = _choose(df, "model", rule.params.get("model"), rule, ctx, "model")
    df = _choose(df, "protocol", rule.params.get("protocol"), rule, ctx, "protocol")
    if rule.params.get("fold") is not None:
        df = _choose(df, "fold", rule.params["fold"], rule, ctx, "fold")
    elif fold_default:
        df = prefer(df, "fold", ("all",))
    return df


def _prefix(r: pd.Series, df: pd.DataFrame) -> str:
    """'model/protocol/scope ' prefix when a table holds several of them."""
    parts = [str(r[c]) for c in ("model", "protocol", "scope") if c in df.columns and df[c].nunique() > 1]
    return ("[" + "/".join(parts) + "] ") if parts else ""


def _bounded(r: pd.Series, rule: Rule, lo: str = "ci_low", hi: str = "ci_high", val: str = "value") -> tuple:
    point = _num(r.get(val))
    ci = (_num(r.get(lo)), _num(r.get(hi))) if lo in r.index else None
    if ci is not None and all(math.isnan(c) for c in ci):
        ci = None
    compared = {"value": point, "ci_low": ci[0] if ci else math.nan, "ci_high": ci[1] if ci else math.nan}[rule.bound]
    return compared, point, ci


def _n(v) -> int | None:
    f = _num(v)
    return None if math.isnan(f) else int(f)


# ------------------------------------------------------------------ metric rules
def _group_rows(rule: Rule, ctx: RuleContext, *, base: bool = False) -> tuple[pd.DataFrame | None, str]:
    """Rows of metrics/groups.parquet selected by the rule; (None, reason) when absent."""
    g = ctx.table("metrics/groups.parquet", base=base)
    if g is None:
        return None, "metrics/groups.parquet is absent (run `audit metrics RUN`)"
    metric = rule.params.get("metric")
    if rule.check == "ece":
        metric = metric or "ece"
    if metric is None:
        if rule.check == "group_metric":
            raise ctx.policy.error(rule, None, "group_metric needs a 'metric' key")
        metric = primary_metric(g["metric"], ctx.task)
        if metric is None:
            return None, f"no accuracy or mIoU metric in metrics/groups.parquet (have {sorted(set(g['metric']))})"
    g = _choose(g, "metric", metric, rule, ctx, "metric")
    g = _model_sel(g, rule, ctx)
    scope = rule.params.get("scope")
    g = _choose(g, "scope", scope, rule, ctx, "scope") if scope else prefer(g, "scope", SCOPE_PREFERENCE)
    by = rule.params.get("by")
    if by is not None:
        g = _choose(g, "by", by, rule, ctx, "by")
    else:
        g = g[g["by"].astype(str) != "overall"]
    g = _choose(g, "group", rule.params.get("groups"), rule, ctx, "groups")
    return g, str(metric)


def _group_items(g: pd.DataFrame, rule: Rule) -> list[Item]:
    items = []
    for _, r in g.iterrows():
        compared, point, ci = _bounded(r, rule)
        n = _n(r.get("n"))
        status = str(r.get("status", "ok"))
        if status == "empty" or n == 0:
            compared = math.nan  # empty groups are NaN, never a verdict
        insufficient = status == "insufficient_evidence" or (n is not None and n < rule.min_n)
        label = f"{_prefix(r, g)}{r['by']}={r['group']}" if str(r["by"]) != "overall" else f"{_prefix(r, g)}overall"
        items.append(Item(label, compared, point, ci, n, insufficient))
    return items


def eval_group(rule: Rule, ctx: RuleContext) -> RuleResult:
    g, metric = _group_rows(rule, ctx)
    if g is None:
        return missing(rule, metric)
    return judge(rule, _group_items(g, rule), what=metric)


def eval_fairness(rule: Rule, ctx: RuleContext) -> RuleResult:
    f = ctx.table("metrics/fairness.parquet")
    if f is None:
        return missing(
            rule, "metrics/fairness.parquet is absent (a classification run with attributes and `audit metrics`)"
        )
    if f.empty:
        return missing(rule, _no_fairness_rows(ctx))
    f = _choose(f, "metric", rule.params["metric"], rule, ctx, "metric")
    f = _model_sel(f, rule, ctx)
    f = _choose(f, "attribute", rule.params.get("attribute"), rule, ctx, "attribute")
    scope = rule.params.get("scope")
    f = _choose(f, "scope", scope, rule, ctx, "scope") if scope else prefer(f, "scope", SCOPE_PREFERENCE)
    if rule.params.get("class") is not None:
        f = _choose(f, "class", rule.params["class"], rule, ctx, "class")
    else:  # the summary row over classes; per-class rows only when there is none
        f = prefer(f, "class", ("worst", "binary"))
    items = []
    for _, r in f.iterrows():
        compared, point, ci = _bounded(r, rule)
        n = _n(r.get("n"))
        cls = f" ({r['class']})" if "class" in f.columns and f["class"].nunique() > 1 else ""
        items.append(
            Item(f"{_prefix(r, f)}{r['attribute']}{cls}", compared, point, ci, n, n is not None and n < rule.min_n)
        )
    return judge(rule, items, what=rule.params["metric"])


def _no_fairness_rows(ctx: RuleContext) -> str:
    """Why metrics/fairness.parquet has no rows, and what to do about it."""
    what = "metrics/fairness.parquet has no rows"
    if ctx.task != "classify":
        return f"{what}: fairness metrics are computed for classification runs only; remove this rule"
    try:
        cols = [str(c) for c in ctx.run.manifest().columns]
    except AuditError:
        cols = []
    if not any(c.startswith("attr.") for c in cols):
        return (
            f"{what} because the run has no attributes (and no domain) to compare groups on; declare one with "
            "`--attr COLUMN` when creating the run (or `audit metrics RUN --by COLUMN`), or remove this rule "
            '(on_missing = "skip" allows runs without attributes)'
        )
    return f"{what}; recompute them with `audit metrics RUN`"


def eval_gap(rule: Rule, ctx: RuleContext) -> RuleResult:
    g = ctx.table("metrics/generalization.parquet")
    if g is None:
        return missing(rule, "metrics/generalization.parquet is absent (train across domains and run `audit metrics`)")
    metric = rule.params.get("metric") or primary_metric(g["metric"], ctx.task) if "metric" in g.columns else None
    if metric is not None and "metric" in g.columns:
        g = _choose(g, "metric", metric, rule, ctx, "metric")
    g = _model_sel(g, rule, ctx, fold_default=False)
    g = _choose(g, "test_domain", rule.params.get("test_domain"), rule, ctx, "test_domain")
    items = []
    for _, r in g.iterrows():
        compared, point, ci = _bounded(r, rule, "gap_ci_low", "gap_ci_high", "gap")
        n_in, n_out = _n(r.get("n_in")), _n(r.get("n_out"))
        small = any(x is not None and x < rule.min_n for x in (n_in, n_out))
        items.append(
            Item(
                f"{_prefix(r, g)}{r.get('fold', '')} (test {r['test_domain']})",
                compared,
                point,
                ci,
                n_out,
                small,
                {"in_domain": _num(r.get("in_domain")), "out_domain": _num(r.get("out_domain")), "n_in": n_in},
            )
        )
    return judge(rule, items, what=f"{metric or 'metric'} gap (in - out)")


# ------------------------------------------------------------------ profile rules
def _count_result(rule: Rule, count: int, n: int | None, what: str, examples: list[str]) -> RuleResult:
    it = Item(what, float(count), float(count), None, n)
    res = judge(rule, [it], what="count")
    ex = f"; e.g. {', '.join(examples[:5])}" if examples and count else ""
    res.message = f"{count} {what} (allowed {rule.op} {int(rule.threshold)}){ex}"
    res.details = [{"example": e} for e in examples[:20]]
    return res


def eval_leakage(rule: Rule, ctx: RuleContext) -> RuleResult:
    d = ctx.table("profile/duplicates.parquet")
    if d is None:
        return missing(rule, "profile/duplicates.parquet is absent (run `audit profile`)")
    leak = d[d["cross_split"].fillna(False).astype(bool)] if "cross_split" in d.columns else d.iloc[:0]
    if not rule.params.get("include_near", True) and "kind" in leak.columns:
        leak = leak[leak["kind"] == "exact"]
    examples = [f"{a} ~ {b}" for a, b in leak[["a", "b"]].itertuples(index=False)]
    count = len(leak)
    what = "duplicate pair(s) across splits"
    if rule.params.get("include_groups", True):
        m = ctx.run.manifest()
        if {"group", "split"} <= set(m.columns):
            g = m.dropna(subset=["group", "split"])
            g = g[g["group"] != g["sample_id"]]
            per = g.groupby("group")["split"].nunique()
            shared = [str(x) for x in per[per > 1].index]
            if shared:
                count += len(shared)
                examples += [f"group {s}" for s in shared]
                what = "duplicate pair(s) or group(s) across splits"
    return _count_result(rule, count, len(d), what, examples)


def eval_conflicts(rule: Rule, ctx: RuleContext) -> RuleResult:
    d = ctx.table("profile/duplicates.parquet")
    if d is None:
        return missing(rule, "profile/duplicates.parquet is absent (run `audit profile`)")
    c = d[d["label_conflict"].fillna(False).astype(bool)] if "label_conflict" in d.columns else d.iloc[:0]
    return _count_result(
        rule,
        len(c),
        len(d),
        "duplicate pair(s) with different labels",
        [f"{a} ~ {b}" for a, b in c[["a", "b"]].itertuples(index=False)],
    )


def eval_unreadable(rule: Rule, ctx: RuleContext) -> RuleResult:
    im = ctx.table("profile/images.parquet")
    if im is None:
        return missing(rule, "profile/images.parquet is absent (run `audit profile`)")
    bad = im[~im["readable"].fillna(False).astype(bool)]
    ex = (
        [f"{r.sample_id} ({r.error})" for r in bad[["sample_id", "error"]].itertuples(index=False)]
        if "error" in bad
        else []
    )
    return _count_result(rule, len(bad), len(im), "unreadable or missing file(s)", ex)


def eval_imbalance(rule: Rule, ctx: RuleContext) -> RuleResult:
    t = ctx.table("profile/imbalance.parquet")
    if t is None:
        return missing(rule, "profile/imbalance.parquet is absent (run `audit profile`)")
    t = _choose(t, "column", rule.params.get("columns"), rule, ctx, "columns")
    items = [
        Item(
            f"{r['column']} ({r.get('max_group')} vs {r.get('min_group')})",
            _num(r["imbalance_ratio"]),
            _num(r["imbalance_ratio"]),
            None,
            None,
        )
        for _, r in t.iterrows()
    ]
    return judge(rule, items, what="imbalance ratio")


def eval_association(rule: Rule, ctx: RuleContext) -> RuleResult:
    a = ctx.table("profile/associations.parquet")
    if a is None:
        return missing(rule, "profile/associations.parquet is absent (run `audit profile`)")
    if "stat" in a.columns:
        a = a[a["stat"].astype(str) == "cramers_v"]
    within = rule.params.get("within")
    if "within" in a.columns:
        if within is None:
            a = a[a["within"].isna()]
        elif within != "any":
            a = _choose(a, "within", within, rule, ctx, "within")
    cols = rule.params.get("columns")
    if cols:
        have = set(a["a"].astype(str)) | set(a["b"].astype(str))
        unknown = [c for c in cols if c not in have]
        if unknown:
            raise ctx.policy.error(
                rule,
                "columns",
                f"column {unknown[0]!r} is in no association"
                f"{_hint(unknown[0], have)}; available: {', '.join(sorted(have))}",
            )
        a = a[a["a"].astype(str).isin(cols) | a["b"].astype(str).isin(cols)]
    max_q = rule.params.get("max_q", 0.05)
    items = []
    n_ns = 0
    for _, r in a.iterrows():
        q = _num(r.get("q", r.get("p")))
        if not math.isnan(q) and q > max_q:
            n_ns += 1  # not significant: no evidence of an association
            continue
        compared, point, ci = _bounded(r, rule)
        w = f" within {r['within']}" if "within" in a.columns and pd.notna(r.get("within")) else ""
        items.append(Item(f"{r['a']} x {r['b']}{w}", compared, point, ci, _n(r.get("n")), extra={"q": q}))
    res = judge(rule, items, what="Cramer's V", empty_ok=True)
    if n_ns:
        res.message += f"; {n_ns} pair(s) not significant at q <= {max_q} ignored"
    return res


def eval_shortcut(rule: Rule, ctx: RuleContext) -> RuleResult:
    s = ctx.table("profile/shortcuts.parquet")
    if s is None:
        return missing(rule, "profile/shortcuts.parquet is absent (run `audit profile`)")
    s = _choose(s, "target", rule.params.get("target"), rule, ctx, "target")
    s = _choose(s, "features", rule.params.get("features"), rule, ctx, "features")
    items = []
    for _, r in s.iterrows():
        chance = _num(r.get("chance"))
        compared, point, ci = _bounded(r, rule, val="balanced_accuracy")
        ci2 = (ci[0] - chance, ci[1] - chance) if ci else None
        items.append(
            Item(f"{r['target']} from {r['features']}", compared - chance, point - chance, ci2, _n(r.get("n")))
        )
    return judge(rule, items, what="balanced accuracy above chance")


def eval_findings(rule: Rule, ctx: RuleContext) -> RuleResult:
    kinds = rule.params.get("kinds")
    if kinds:
        for k in kinds:
            if k not in KINDS:
                raise ctx.policy.error(rule, "kinds", f"unknown finding kind {k!r}{_hint(k, KINDS)}")
    if not ctx.run.has("findings.json") and not ctx.run.finished("profile"):
        return missing(rule, "findings.json is absent (run `audit profile`)")
    order = {"info": 0, "warning": 1, "critical": 2}
    least = order[rule.params.get("min_severity", "warning")]
    fs = [
        f
        for f in ctx.run.findings()
        if (not kinds or f.get("kind") in kinds) and order.get(f.get("severity"), 0) >= least
    ]
    return _count_result(
        rule,
        len(fs),
        None,
        "finding(s)" + (f" of kind {', '.join(kinds)}" if kinds else ""),
        [f"{f.get('severity')}: {f.get('title')}" for f in fs],
    )


# ------------------------------------------------------------------ regression against a baseline
def _se(ci) -> float:
    if not ci or any(math.isnan(c) for c in ci):
        return math.nan
    return (ci[1] - ci[0]) / (2 * 1.959964)


def _regression_item(label: str, new: Item, old: Item, lower_better: bool) -> Item:
    drop = (new.point - old.point) if lower_better else (old.point - new.point)
    se = math.sqrt(_se(new.ci) ** 2 + _se(old.ci) ** 2)
    ci = (drop - 1.959964 * se, drop + 1.959964 * se) if not math.isnan(se) else None
    return Item(
        label,
        drop,
        drop,
        ci,
        new.n,
        new.insufficient or old.insufficient,
        {"new": new.point, "old": old.point, "new_ci": new.ci, "old_ci": old.ci, "old_n": old.n},
    )


def eval_regression(rule: Rule, ctx: RuleContext) -> RuleResult:
    if ctx.baseline is None:
        return RuleResult(
            rule.id,
            rule.check,
            rule.severity,
            "skip",
            "no --baseline given; regression not checked",
            threshold=rule.threshold,
            line=rule.line,
            description=rule.description,
        )
    of = rule.params.get("of", "worst_group")
    proxy = Rule(
        **{
            **rule.__dict__,
            "check": "worst_group",
            "bound": "value",
            "op": ">=",
            "params": {**rule.params, "by": ["overall"] if of == "overall" else rule.params.get("by")},
        }
    )
    new, metric = _group_rows(proxy, ctx)
    if new is None:
        return missing(rule, metric)
    try:
        old, _ = _group_rows(proxy, ctx, base=True)
    except PolicyError as e:
        return missing(rule, f"baseline: {e}")
    if old is None:
        return missing(rule, "the baseline has no metrics/groups.parquet")
    lower_better = lower_is_better(metric)
    margin = float(rule.params["max_drop"])
    ni, oi = _group_items(new, proxy), _group_items(old, proxy)
    items: list[Item] = []
    if of == "groups":
        olds = {it.label: it for it in oi}
        items = [_regression_item(it.label, it, olds[it.label], lower_better) for it in ni if it.label in olds]
    else:

        def worst(its: list[Item]) -> Item | None:
            ok = [it for it in its if not math.isnan(it.point) and not it.insufficient]
            if not ok:
                return None
            return max(ok, key=lambda it: it.point) if lower_better else min(ok, key=lambda it: it.point)

        wn, wo = worst(ni), worst(oi)
        if wn is None or wo is None:
            return missing(rule, f"no {metric} group with n >= {rule.min_n} in the run or the baseline")
        items = [
            _regression_item(f"{wo.label} -> {wn.label}" if wo.label != wn.label else wn.label, wn, wo, lower_better)
        ]
    rule2 = Rule(**{**rule.__dict__, "op": "<=", "bound": "value"})
    res = judge(
        rule2,
        items,
        what=f"{metric} drop",
        # confident regression: the whole 95% interval of the drop lies above the allowed margin
        violates=lambda it: (it.ci[0] > margin) if it.ci else it.value > margin,
        doubtful=lambda it: it.value > margin,
    )
    res.op, res.threshold = "<=", margin
    return res


def eval_slice_gap(rule: Rule, ctx: RuleContext) -> RuleResult:
    """Each slice's accuracy gap (slices/slices.parquet, written by `audit slices`)."""
    s = ctx.table("slices/slices.parquet")
    if s is None:
        return missing(rule, "slices/slices.parquet is absent (run `audit slices`)")
    if rule.params.get("confirmed_only", True) and "confirmed" in s.columns:
        s = s[s["confirmed"].fillna(False).astype(bool)]
    s = _model_sel(s, rule, ctx, fold_default=False)
    items = []
    for _, r in s.iterrows():
        compared, point, ci = _bounded(r, rule, "ci_low", "ci_high", "gap")
        n = _n(r.get("n_confirm"))
        items.append(Item(f"{r['slice_id']} ({r.get('description', '')})", compared, point, ci, n,
                          n is not None and n < rule.min_n, {"accuracy": _num(r.get("accuracy")),
                                                            "rest_accuracy": _num(r.get("rest_accuracy"))}))
    if not items:
        items.append(Item("no confirmed slice", 0.0, 0.0, None, None))
    return judge(rule, items, what="slice accuracy gap (rest - slice)")


def eval_mitigation(rule: Rule, ctx: RuleContext) -> RuleResult:
    """Each mitigation that raises worst-group accuracy: its held-out accuracy drop (paired interval) <= max_drop."""
    s = ctx.table("mitigations/summary.parquet")
    if s is None:
        return missing(rule, "mitigations/summary.parquet is absent (run `audit mitigate`)")
    s = _choose(s, "method", rule.params.get("methods"), rule, ctx, "methods")
    margin, items = float(rule.params["max_drop"]), []
    for method, m in s.groupby("method", sort=True):
        wg = m[m["metric"].isin(("worst_group_accuracy", "worst_group_miou"))]
        if rule.params.get("by"):
            wg = wg[wg["by"] == rule.params["by"]]
        elif (wg["by"] != "domain").any():
            wg = wg[wg["by"] != "domain"]
        ood = m[m["metric"].isin(("ood_accuracy", "ood_miou"))]
        if wg.empty or ood.empty or not _num(wg.iloc[0]["diff"]) > 0:
            continue  # only a method that raises worst-group accuracy trades average accuracy for it
        w, o = wg.iloc[0], ood.iloc[0]
        drop = -_num(o["diff"])
        n = _n(o.get("n"))
        items.append(Item(f"{method} (worst group {w['by']} {_num(w['diff']):+.3f})", drop, drop,
                          (-_num(o["ci_high"]), -_num(o["ci_low"])), n, n is not None and n < rule.min_n,
                          {"baseline": _num(o["baseline"]), "mitigated": _num(o["mitigated"]), "p": _num(o["p"])}))
    if not items:
        items.append(Item("no method raised worst-group accuracy", 0.0, 0.0, None, None))
    rule2 = Rule(**{**rule.__dict__, "op": "<=", "bound": "value", "threshold": margin})
    res = judge(rule2, items, what="held-out accuracy drop",
                violates=lambda it: (it.ci[0] > margin) if it.ci else it.value > margin,
                doubtful=lambda it: it.value > margin)
    res.op, res.threshold = "<=", margin
    return res


EVALUATORS: dict[str, Callable[[Rule, RuleContext], RuleResult]] = {
    "worst_group": eval_group,
    "group_metric": eval_group,
    "ece": eval_group,
    "fairness": eval_fairness,
    "generalization_gap": eval_gap,
    "no_split_leakage": eval_leakage,
    "no_label_conflicts": eval_conflicts,
    "no_unreadable_files": eval_unreadable,
    "imbalance_ratio": eval_imbalance,
    "association": eval_association,
    "shortcut": eval_shortcut,
    "findings": eval_findings,
    "regression": eval_regression,
    "max_slice_gap": eval_slice_gap,
    "tracked_slices": eval_tracked_slices,
    "mitigation_tradeoff": eval_mitigation,
}


def degenerate_models(ctx: RuleContext, rule: Rule | None = None) -> list[str]:
    """Models of the run that learned nothing (metrics/sanity.parquet), restricted to the rule's ``model`` and
    ``protocol`` when it names them."""
    s = ctx.table("metrics/sanity.parquet")
    if s is None or s.empty or not {"model", "status"} <= set(s.columns):
        return []
    s = s[s["status"].astype(str) == "degenerate"]
    for key in ("model", "protocol"):
        wanted = rule.params.get(key) if rule is not None else None
        if wanted is not None and key in s.columns:
            s = s[s[key].astype(str).isin([wanted] if isinstance(wanted, str) else list(wanted))]
    return sorted(set(s["model"].astype(str)))


def _not_interpretable(res: RuleResult, rule: Rule, ctx: RuleContext) -> RuleResult:
    """A model rule on a degenerate model: never a pass (a gap of 0 on a constant model is not "no gap")."""
    bad = degenerate_models(ctx, rule)
    if not bad or res.status == "skip":
        return res
    res.status = "fail" if res.status == "fail" else failing_status(rule)
    res.message = (f"not interpretable: {', '.join(bad)} learned nothing usable (degenerate_model finding, "
                   f"metrics/sanity.parquet); retrain before judging it; {res.message}")
    return res


def evaluate(rule: Rule, ctx: RuleContext, *, strict: bool = False) -> RuleResult:
    """Evaluate one rule. Policy errors (names absent from the run) propagate; other problems are recorded.

    With ``strict`` a table that cannot be evaluated raises :class:`RunDirError` instead of being recorded
    (``audit init-policy`` must not silently leave a rule out).
    """
    try:
        res = EVALUATORS[rule.check](rule, ctx)
        return _not_interpretable(res, rule, ctx) if rule.check in MODEL_CHECKS else res
    except (PolicyError, AuditError):
        raise
    except Exception as e:  # a table that does not follow docs/formats.md: record it, keep checking the others
        if strict:
            raise RunDirError(
                f"{ctx.run.path}: cannot evaluate a {rule.check} rule: a table does not follow "
                f"docs/formats.md ({type(e).__name__}: {e})"
            ) from None
        res = missing(rule, f"cannot evaluate ({type(e).__name__}: {e})")
        res.status = failing_status(rule)
        return res
