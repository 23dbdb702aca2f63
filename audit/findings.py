"""Findings: the common currency of profile, metrics and check.

Each finding is a small record::

    {"id", "kind", "severity": "info|warning|critical", "title", "detail", "columns": [...],
     "groups": [...], "value", "ci": [lo, hi], "n", "score", "evidence": {...}, "stage"}

``score`` is the effect size used for ranking within a severity (bigger = worse). ``id`` is stable for the
same kind, columns and groups so runs can be compared.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Finding", "KINDS", "SEVERITIES", "TIERS", "rank", "make_id"]

SEVERITIES = ("critical", "warning", "info")
KINDS = frozenset(
    {
        "class_imbalance",
        "attribute_imbalance",
        "intersection_underrepresented",
        "label_attribute_association",
        "domain_label_shift",
        "domain_attribute_association",
        "covariate_shift",
        "shortcut",
        "exact_duplicate",
        "near_duplicate",
        "split_leakage",
        "group_leakage",
        "label_conflict",
        "attribute_conflict",
        "unreadable_file",
        "missing_file",
        "oversized_image",
        "image_mode_mix",
        "exif_orientation",
        "extension_mismatch",
        "mask_mismatch",
        "empty_mask",
        "generalization_gap",
        "worst_group",
        "group_disparity",
        "fairness_violation",
        "miscalibration",
        "insufficient_evidence",
        "check_failed",
        "degenerate_model",
        # manifest rows flagged at ingest (issue 23): kept, never opened, excluded from training
        "outside_root",
        "duplicate_listing",
        "flagged_row",
        # slice discovery (issue 20): an unlabeled region of embedding space where the model errs, confirmed
        "hidden_slice",
    }
)


def make_id(kind: str, columns: list | tuple = (), groups: list | tuple = (), extra: str = "") -> str:
    key = "|".join([kind, ",".join(map(str, columns)), ",".join(map(str, groups)), extra])
    return f"{kind}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


@dataclass
class Finding:
    """One finding. ``kind`` must be one of :data:`KINDS`; ``severity`` one of :data:`SEVERITIES`."""

    kind: str
    severity: str
    title: str
    detail: str = ""
    columns: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    value: float | None = None
    ci: list | None = None
    n: int | None = None
    score: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        self.columns = [str(c) for c in self.columns]
        self.groups = [str(g) for g in self.groups]
        if not self.id:
            self.id = make_id(self.kind, self.columns, self.groups, str(self.evidence.get("id_extra", "")))

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("value", "score"):
            v = d[k]
            if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
                d[k] = None
        return d


# Within a severity, what a model loses outside its data comes first, then data defects that corrupt
# training or evaluation, then spurious structure, then descriptive imbalance and shift. Scores of different
# kinds are on different scales (accuracy points, Cramer's V, Cohen's d), so they only order within a tier.
TIERS: dict[str, int] = {
    "degenerate_model": -1,
    "generalization_gap": 0,
    "worst_group": 0,
    "fairness_violation": 0,
    "group_disparity": 1,
    "hidden_slice": 1,
    "miscalibration": 1,
    "split_leakage": 1,
    "group_leakage": 1,
    "label_conflict": 1,
    "attribute_conflict": 1,
    "label_attribute_association": 2,
    "domain_label_shift": 2,
    "domain_attribute_association": 2,
    "shortcut": 2,
    "unreadable_file": 2,
    "missing_file": 2,
    "mask_mismatch": 2,
    "outside_root": 2,
    "duplicate_listing": 2,
    "flagged_row": 2,
    "insufficient_evidence": 9,
}


def rank(findings: list[dict]) -> list[dict]:
    """Sort findings: severity (critical first), then tier (see :data:`TIERS`), then score, then id."""

    def key(f: dict):
        s = f.get("score")
        s = -float(s) if isinstance(s, (int, float)) and not math.isnan(float(s)) else 0.0
        sev = {"critical": 0, "warning": 1, "info": 2}.get(f.get("severity"), 3)
        return (sev, TIERS.get(str(f.get("kind")), 3), s, str(f.get("id")))

    return sorted(findings, key=key)
