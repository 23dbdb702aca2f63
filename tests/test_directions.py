"""Metric direction has one source, audit.core.directions: the metric specs and the check policy read it."""

from __future__ import annotations

import pytest

from audit.check.policy import parse_policy
from audit.core import directions
from audit.core.directions import higher_is_better, lower_is_better
from audit.metrics import registry
from audit.metrics._stats import Data, MetricSpec
from audit.metrics.registry import build_metric_specs, metric_names, register_metric


def _all_specs(classes: list[str], seg_classes: list[str]) -> list[MetricSpec]:
    d = Data(n=4, classes=classes, seg_classes=seg_classes)
    return build_metric_specs(list(metric_names()), d)


@pytest.mark.parametrize("classes, seg_classes", [
    (["cat", "dog"], ["background", "vessel"]),
    # per-class specs take their base metric's direction, whatever the classes are called
    (["error", "tumor_gap", "dp_diff"], ["background", "lesion_loss", "ece"]),
])
def test_every_registered_spec_has_the_direction_of_core_directions(classes, seg_classes):
    specs = _all_specs(classes, seg_classes)
    assert {s.name.split(".")[0] for s in specs} >= {"accuracy", "ece", "brier", "nll", "miou", "recall", "iou"}
    for s in specs:
        assert isinstance(s.higher_is_better, bool), s.name
        assert s.higher_is_better == higher_is_better(s.name) == (not lower_is_better(s.name)), s.name
    lower = {s.name for s in specs if not s.higher_is_better}
    assert lower == {"ece", "brier", "nll"}


def test_a_spec_whose_flag_disagrees_with_the_rule_is_refused():
    with pytest.raises(ValueError, match=r"'ece'.*audit.core.directions"):
        MetricSpec("ece", "calib", lambda S: S, lambda S: S, higher_is_better=True)
    assert MetricSpec("accuracy", "correct", lambda S: S, lambda S: S, higher_is_better=True).higher_is_better


def test_a_new_lower_is_better_metric_is_declared_once_for_every_reader(monkeypatch):
    monkeypatch.setattr(directions, "_DECLARED", {})
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert higher_is_better("hausdorff")

    @register_metric("hausdorff", task="segment", lower_is_better=True)
    def _hausdorff(d, pos_label):
        return [MetricSpec("hausdorff", "seg_img", lambda S: S[..., 0], lambda S: S[..., 2])]

    spec = build_metric_specs(["hausdorff"], Data(n=1, seg_classes=["bg", "fg"]))[0]
    assert spec.higher_is_better is False
    assert lower_is_better("hausdorff")  # views, check and pages read the same answer
    assert _op("group_metric", "hausdorff") == "<="


def _op(check: str, metric: str) -> str:
    return parse_policy(f'[[rule]]\ncheck = "{check}"\nmetric = "{metric}"\nthreshold = 0.5\n').rules[0].op


@pytest.mark.parametrize("metric", ["accuracy", "ece", "mce", "brier", "nll", "loss", "error_rate", "accuracy_gap",
                                    "fold_gap", "dp_diff", "eo_diff", "miou", "fg_dice", "recall.cat"])
def test_policy_default_op_follows_core_directions(metric):
    assert _op("group_metric", metric) == ("<=" if lower_is_better(metric) else ">=")


@pytest.mark.parametrize("metric", ["dp_diff", "dp_ratio", "eo_diff", "eop_diff"])
def test_fairness_default_op_follows_core_directions(metric):
    assert _op("fairness", metric) == ("<=" if lower_is_better(metric) else ">=")
    assert _op("fairness", metric) == (">=" if metric == "dp_ratio" else "<=")


def test_policy_has_no_direction_rule_of_its_own():
    import inspect

    import audit.check.policy as policy

    assert policy.lower_is_better is lower_is_better
    src = inspect.getsource(policy)
    assert '"error_rate"' not in src and "endswith(\"_diff\")" not in src
