"""Whether a metric is better high or low: one rule for specs, check, views and pages.

A metric is *lower-is-better* when its name is one of :data:`LOWER_IS_BETTER`, or is derived from one of
those words (``ece_fold``, ``fold_gap``, ``dp_diff``). Everything else (accuracy, recall, IoU, Dice, F1...) is
higher-is-better.
"""

from __future__ import annotations

__all__ = ["LOWER_IS_BETTER", "higher_is_better", "lower_is_better"]

#: base names (and name parts) of metrics where a smaller value is better
LOWER_IS_BETTER: tuple[str, ...] = (
    "ece", "mce", "brier", "nll", "loss", "error", "error_rate", "diff", "dp_diff", "eo_diff", "eop_diff", "gap",
)


def lower_is_better(metric: str) -> bool:
    """True when smaller values of ``metric`` are better.

    >>> lower_is_better("ece"), lower_is_better("eop_diff"), lower_is_better("accuracy"), lower_is_better("gap")
    (True, True, False, True)
    """
    m = str(metric).lower()
    return any(m == k or m.startswith(k + "_") or m.endswith("_" + k) for k in LOWER_IS_BETTER)


def higher_is_better(metric: str) -> bool:
    """True when larger values of ``metric`` are better (the complement of :func:`lower_is_better`)."""
    return not lower_is_better(metric)
