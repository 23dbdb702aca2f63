"""Rules that cannot fail (or cannot pass): the range of the quantity a rule compares, and the warning."""

from __future__ import annotations

import math

from audit.check.policy import Rule
from audit.check.verdict import fmt

__all__ = ["metric_range", "quantity_range", "bounds_warning"]

# metrics whose values are proportions in [0, 1] (names compared case-insensitively; "recall.3" -> "recall")
_UNIT_METRICS = {
    "accuracy",
    "acc",
    "balanced_accuracy",
    "macro_f1",
    "micro_f1",
    "weighted_f1",
    "f1",
    "precision",
    "recall",
    "miou",
    "mean_iou",
    "fg_iou",
    "fg_dice",
    "iou",
    "iou_image",
    "dice",
    "pixel_acc",
    "pixel_accuracy",
    "ece",
    "mce",
    "error_rate",
    "auroc",
    "auc",
    "specificity",
    "sensitivity",
    "tpr",
    "fpr",
    "tnr",
    "fnr",
}
_COUNT_CHECKS = ("no_split_leakage", "no_label_conflicts", "no_unreadable_files", "findings")


def metric_range(metric: str | None) -> tuple[float, float] | None:
    """The values a metric of metrics/groups.parquet can take, or None when unknown."""
    if metric is None:
        return None
    m = str(metric).lower()
    if m in _UNIT_METRICS or m.split(".", 1)[0] in _UNIT_METRICS or (m.startswith("top") and m.endswith("_accuracy")):
        return 0.0, 1.0
    if m == "brier":
        return 0.0, 2.0
    if m == "nll":
        return 0.0, math.inf
    return None


def quantity_range(rule: Rule) -> tuple[str, float, float] | None:
    """(name, lowest, highest) of the quantity a rule compares with its threshold, or None when unknown.

    The ends of a 95% interval lie in the same range as the quantity.
    """
    c = rule.check
    metric = rule.params.get("metric")
    if c in ("worst_group", "group_metric", "ece", "regression", "generalization_gap"):
        if c == "ece":
            metric = metric or "ece"
        if metric is None and c != "group_metric":
            rng, name = (0.0, 1.0), "the primary metric"  # accuracy, mIoU... (headline.PRIMARY_METRICS): all in [0, 1]
        else:
            rng, name = metric_range(metric), str(metric)
        if rng is None:
            return None
        if c in ("regression", "generalization_gap"):
            span = rng[1] - rng[0]
            return (f"{name} drop" if c == "regression" else f"{name} gap"), -span, span
        return name, rng[0], rng[1]
    if c == "fairness":
        return str(metric), 0.0, 1.0  # dp_diff, eo_diff, eop_diff, dp_ratio
    if c == "association":
        return "Cramer's V", 0.0, 1.0
    if c == "imbalance_ratio":
        return "an imbalance ratio", 1.0, math.inf
    if c == "shortcut":
        return "balanced accuracy above chance", -1.0, 1.0
    if c in _COUNT_CHECKS:
        return "a count", 0.0, math.inf
    return None


def bounds_warning(rule: Rule) -> str | None:
    """Why ``rule`` can never fail (or never pass) whatever the run, or None.

    ``accuracy >= 0``, ``ci_low >= 0`` or ``dp_diff <= 1`` always hold, so they gate nothing; ``accuracy >= 70``
    (a percentage for a fraction) never holds.
    """
    q = quantity_range(rule)
    if q is None or rule.threshold is None:
        return None
    name, lo, hi = q
    thr = float(rule.threshold)
    # a regression rule fails when the drop's interval lies above max_drop: it behaves like `drop <= max_drop`
    op = "<=" if rule.check == "regression" else (rule.op or ">=")
    bound = f" {rule.bound}" if rule.bound not in (None, "value") and rule.check != "regression" else ""
    expr = f"`{name}{bound} {op} {fmt(thr)}`" if rule.check != "regression" else f"`max_drop = {fmt(thr)}`"
    if (op == ">=" and thr <= lo) or (op == ">" and thr < lo):
        return f"can never fail: {name} is never below {fmt(lo)}, so {expr} always holds; raise the threshold"
    if (op == "<=" and thr >= hi) or (op == "<" and thr > hi):
        return f"can never fail: {name} is never above {fmt(hi)}, so {expr} always holds; lower the threshold"
    if (op == ">=" and thr > hi) or (op == ">" and thr >= hi):
        return f"can never pass: {name} is never above {fmt(hi)}, so {expr} never holds" + (
            " (a percentage where a fraction is meant?)" if hi == 1.0 and thr > 1 else ""
        )
    if (op == "<=" and thr < lo) or (op == "<" and thr <= lo):
        return f"can never pass: {name} is never below {fmt(lo)}, so {expr} never holds"
    return None
