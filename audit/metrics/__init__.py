"""Group metrics, generalization gaps and fairness, each with n and a 95% interval (placeholder, filled below)."""

from audit.metrics.report import GroupReport, SegmentationCounts, group_report

__all__ = ["GroupReport", "SegmentationCounts", "group_report"]
