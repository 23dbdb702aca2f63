"""Group metrics, generalization gaps and fairness, each with n and a 95% interval.

The functional core computes every metric from summed per-row sufficient statistics (correct/total, confusion
counts, calibration bins, pixel counts), so point estimates, bootstrap resamples and merges share one code
path. Intervals: Wilson for proportions (when rows are independent), otherwise a vectorized cluster bootstrap
over the manifest's ``group`` column. See docs/metrics.md for definitions and the findings rules.

Typical use::

    from audit.metrics import group_report
    rep = group_report(y_true=y, y_pred=yhat, sensitive=df["attr.skin_tone"], clusters=df["group"])
    rep.by_group, rep.worst("accuracy"), rep.difference("accuracy", with_ci=True), rep.to_frame()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audit.metrics._bootstrap import benjamini_hochberg, wilson_interval
from audit.metrics.encoding import SegmentationCounts
from audit.metrics.fairness import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    fairness_report,
)
from audit.metrics.functional import (
    accuracy,
    balanced_accuracy,
    brier_score,
    expected_calibration_error,
    foreground_dice,
    foreground_iou,
    macro_f1,
    mean_image_dice,
    mean_image_iou,
    mean_iou,
    negative_log_likelihood,
    per_class_iou,
    per_class_recall,
    reliability_curve,
    top_k_accuracy,
)
from audit.metrics.generalization import generalization_gap, transfer_matrix
from audit.metrics.group_report import GroupReport, group_report
from audit.metrics.registry import MetricSpec, metric_names, register_metric

__all__ = [
    "MetricsConfig",
    "run_metrics",
    "GroupReport",
    "group_report",
    "register_metric",
    "metric_names",
    "MetricSpec",
    "SegmentationCounts",
    "fairness_report",
    "generalization_gap",
    "transfer_matrix",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "per_class_recall",
    "top_k_accuracy",
    "expected_calibration_error",
    "brier_score",
    "negative_log_likelihood",
    "reliability_curve",
    "mean_iou",
    "per_class_iou",
    "foreground_dice",
    "foreground_iou",
    "mean_image_dice",
    "mean_image_iou",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "wilson_interval",
    "benjamini_hochberg",
]


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Settings of the metrics stage (``audit metrics RUN ...``).

    Attributes
    ----------
    by
        Grouping columns (``domain``, ``label``, ``attr.x`` or bare ``x``; ``a:b`` = intersection). None: the
        defaults (domain, label, each attribute, and intersections up to ``depth``).
    min_n
        Groups with fewer samples get status ``insufficient_evidence``.
    predictions
        An external predictions file (parquet or csv) to use instead of ``RUN/predictions.parquet``.
    n_boot
        Cluster-bootstrap resamples.
    depth
        Deepest default intersection (2: pairs).
    seed
        Seed of every bootstrap.
    """

    by: list[str] | None = None
    min_n: int = 30
    predictions: Path | None = None
    n_boot: int = 1000
    depth: int = 2
    seed: int = 0


def run_metrics(run, config: MetricsConfig) -> list:
    """Entry point of the metrics stage: write ``RUN/metrics/*.parquet`` and return the findings."""
    from audit.metrics._stage import run_metrics as _run

    return _run(run, config)
