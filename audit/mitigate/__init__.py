"""Mitigation experiments with a paired re-audit (issue 21; docs/mitigation.md).

``audit mitigate RUN --method NAME ...`` retrains the run's model under its own protocol, folds, seeds and plan
once per method (:mod:`audit.mitigate.methods`: group_balance, reweight, groupdro, augment, dedup), each into
``RUN/mitigations/<method>/`` (a run directory with its own predictions and metrics: :mod:`audit.mitigate.runner`),
and compares each variant with the baseline on the same held-out images with a paired bootstrap
(:mod:`audit.mitigate.paired`) into ``RUN/mitigations/summary.parquet`` (:mod:`audit.mitigate.summary`).
"""

from audit.mitigate.methods import METHODS
from audit.mitigate.paired import SUMMARY_COLUMNS, pair_predictions, paired_metrics, verdict
from audit.mitigate.runner import MitigateConfig, run_mitigations
from audit.mitigate.summary import write_summary

__all__ = ["METHODS", "SUMMARY_COLUMNS", "MitigateConfig", "run_mitigations", "write_summary", "pair_predictions",
           "paired_metrics", "verdict"]
