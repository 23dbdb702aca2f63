"""Whether a metric is better high or low: one rule for specs, check, views and pages.

A metric is *lower-is-better* when its name is one of :data:`LOWER_IS_BETTER`, or is derived from one of
those words (``ece_fold``, ``fold_gap``, ``dp_diff``), or was declared so with :func:`declare_direction` (what
``register_metric(..., lower_is_better=True)`` does for a new metric). Everything else (accuracy, recall, IoU,
Dice, F1...) is higher-is-better. A per-class metric (``recall.<class>``, ``iou.<class>``) has the direction of
its base name, whatever the class is called.
"""

from __future__ import annotations

__all__ = ["LOWER_IS_BETTER", "higher_is_better", "lower_is_better", "declare_direction"]

#: base names (and name parts) of metrics where a smaller value is better
LOWER_IS_BETTER: tuple[str, ...] = (
    "ece", "mce", "brier", "nll", "loss", "error", "error_rate", "diff", "dp_diff", "eo_diff", "eop_diff", "gap",
)

# metrics registered with an explicit direction (base name -> lower is better), see declare_direction
_DECLARED: dict[str, bool] = {}


def _base(metric: str) -> str:
    return str(metric).lower().split(".", 1)[0]


def declare_direction(metric: str, *, lower_is_better: bool) -> None:
    """Record the direction of a metric whose name the rule does not cover (``hausdorff``: lower is better)."""
    _DECLARED[_base(metric)] = bool(lower_is_better)


def lower_is_better(metric: str) -> bool:
    """True when smaller values of ``metric`` are better.

    >>> lower_is_better("ece"), lower_is_better("eop_diff"), lower_is_better("accuracy"), lower_is_better("gap")
    (True, True, False, True)
    >>> lower_is_better("mce"), lower_is_better("accuracy_gap"), lower_is_better("recall.tumor_gap")
    (True, True, False)
    """
    m = _base(metric)
    if m in _DECLARED:
        return _DECLARED[m]
    return any(m == k or m.startswith(k + "_") or m.endswith("_" + k) for k in LOWER_IS_BETTER)


def higher_is_better(metric: str) -> bool:
    """True when larger values of ``metric`` are better (the complement of :func:`lower_is_better`)."""
    return not lower_is_better(metric)
