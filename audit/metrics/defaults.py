"""What the metrics stage judges by: finding thresholds, the q-value bar, scopes and each task's primary metric."""




from audit.metrics.registry import primary_segment_metric

__all__ = ["THRESHOLDS", "Q_MAX", "FAIRNESS_MARGIN", "SCOPES", "primary_for", "gap_metrics_for"]

# Effect sizes (absolute metric points) above which a significant comparison becomes a finding.
THRESHOLDS = {
    "generalization_gap": {"warning": 0.05, "critical": 0.15},
    "worst_group": {"warning": 0.05, "critical": 0.15},
    "group_disparity": {"warning": 0.10, "critical": 0.20},
    "fairness_violation": {"warning": 0.10, "critical": 0.20},
    "miscalibration": {"warning": 0.05, "critical": 0.15},
}
Q_MAX = 0.05  # findings need q < Q_MAX (BH over the whole family of comparisons)


# Fairness p-values test "difference <= FAIRNESS_MARGIN" (half the warning threshold), not "no difference": with many
# classes, groups and two criteria, differences of a few points are significant by noise or by trivial real effects.
FAIRNESS_MARGIN = THRESHOLDS["fairness_violation"]["warning"] / 2
SCOPES = ("ood", "id", "all")
PRIMARY = {"classify": "accuracy", "segment": "miou"}  # segmentation: see primary_for (binary -> fg_dice)
GAP_METRICS = {"classify": ("accuracy", "balanced_accuracy", "macro_f1"), "segment": ("miou", "fg_iou")}


def primary_for(task: str, n_seg_classes: int = 0) -> str:
    """The metric findings and headlines use: accuracy; foreground Dice for binary segmentation, else mIoU."""
    return primary_segment_metric(n_seg_classes) if task == "segment" else PRIMARY[task]


def gap_metrics_for(task: str, n_seg_classes: int = 0) -> tuple[str, ...]:
    """Metrics of metrics/generalization.parquet. Binary segmentation: foreground Dice and IoU, then mIoU (with
    background, so a reader sees how much the background average hides)."""
    if task == "segment" and n_seg_classes == 2:
        return ("fg_dice", "fg_iou", "miou")
    if task == "segment" and n_seg_classes < 2:
        return ("miou",)
    return GAP_METRICS[task]
