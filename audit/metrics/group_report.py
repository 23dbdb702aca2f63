"""``group_report``: metrics overall and per group with n, 95% intervals and statuses (fairlearns MetricFrame, with
intervals). The result is a :class:`~audit.metrics.groupframe.GroupReport`."""

from __future__ import annotations

from collections.abc import Sequence

import audit.metrics._validate as V
from audit.errors import UsageError
from audit.metrics._stats import DEFAULT_BINS
from audit.metrics.encoding import (
    SegmentationCounts,
    encode_clusters,
    encode_groups,
    encode_samples,
    prepare_data,
    resolve_metrics,
)
from audit.metrics.engine import compute_report
from audit.metrics.groupframe import GroupReport
from audit.metrics.registry import build_metric_specs

__all__ = ["GroupReport", "SegmentationCounts", "group_report"]

def group_report(
    *,
    y_true=None,
    y_pred=None,
    sensitive=None,
    metrics: Sequence[str] | str | None = None,
    y_prob=None,
    classes: Sequence[str] | None = None,
    segmentation: SegmentationCounts | None = None,
    clusters=None,
    n_boot: int = 1000,
    min_n: int = 30,
    seed: int = 0,
    top_k: int = 3,
    n_bins: int = DEFAULT_BINS,
    bin_strategy: str = "quantile",
    proportion_ci: str = "auto",
    pos_label: str | None = None,
    confidence: float = 0.95,
    sample_ids=None,
) -> GroupReport:
    """Compute metrics overall and per group with n, 95% intervals and statuses.

    Parameters
    ----------
    y_true, y_pred
        Class labels (any hashable; compared as strings). Missing labels are an error.
    sensitive
        The grouping: an array/Series/Categorical, or a DataFrame/dict of several columns (their intersection).
        Missing values put a row in no group (it still counts in ``overall``; see ``n_missing``). A Categorical's
        unused categories are empty groups (NaN). None: one group ``all``.
    metrics
        Names from ``accuracy, balanced_accuracy, macro_f1, recall (per class), top_k, ece, brier, nll,
        selection_rate`` (classification) or ``miou, iou (per class), dice, iou_image, pixel_accuracy``
        (segmentation). Default: everything the inputs allow.
    y_prob
        Class probabilities ``(n, K)`` in ``classes`` order (a DataFrame's columns name the classes).
    classes
        Class names in order; default the sorted labels (numbers in numeric order).
    segmentation
        Per-image pixel counts for segmentation metrics (instead of labels).
    clusters
        Resampling clusters (patient, writer, ...); default every row is its own cluster.
    n_boot
        Bootstrap resamples (cluster bootstrap, vectorized; 0 disables bootstrap intervals).
    min_n
        Groups with fewer samples get status ``insufficient_evidence`` (the value is reported, no verdict).
    seed
        Seed of the bootstrap.
    proportion_ci
        ``auto`` (Wilson for proportions when every cluster is a single row, else the cluster bootstrap),
        ``wilson`` or ``bootstrap``.
    pos_label
        Positive class for ``selection_rate`` (default: the last class).
    sample_ids
        Sample identity per row when a sample is predicted several times (seeds, folds): ``n`` then counts
        distinct samples, not rows, exactly per metric (``recall.<c>``: the group's distinct samples of class c).
        Give ``clusters`` too so the repeats are resampled together.

    Returns
    -------
    GroupReport
    """
    n_boot = V.check_int(n_boot, "n_boot")
    min_n = V.check_int(min_n, "min_n")
    seed = V.check_int(seed, "seed")
    V.check_choice(proportion_ci, "proportion_ci", ("auto", "wilson", "bootstrap"))
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be in (0, 1) (got {confidence!r})")
    d = prepare_data(y_true=y_true, y_pred=y_pred, y_prob=y_prob, classes=classes, segmentation=segmentation,
                     top_k=top_k, n_bins=n_bins, bin_strategy=bin_strategy)
    names = resolve_metrics(metrics, d)
    pos = None
    if pos_label is not None:
        if str(pos_label) not in d.classes:
            raise UsageError(f"pos_label {pos_label!r} is not one of the classes {d.classes}")
        pos = d.classes.index(str(pos_label))
    specs = build_metric_specs(names, d, pos_label=pos)
    codes, groups, by = encode_groups(sensitive, d.n)
    cluster, n_clusters = encode_clusters(clusters, d.n)
    return compute_report(d, specs, codes, groups, by, cluster, n_clusters, n_boot=n_boot, min_n=min_n, seed=seed,
                           proportion_ci=proportion_ci, confidence=confidence, samples=encode_samples(sample_ids, d.n))
