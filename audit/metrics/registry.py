"""The metric registry: every metric name maps to a builder of :class:`~audit.metrics._stats.MetricSpec` objects.

A metric is a function of the summed sufficient statistics of one block (``correct``, ``confusion``, ``topk``,
``calib``, ``brier``, ``nll``, ``seg_iu``, ``seg_img``; see :mod:`audit.metrics._stats`), so every registered metric
gets per-group values, cluster-bootstrap intervals, distinct-sample n, statuses and ``worst``/``best`` for free.
A builder may expand one name into several specs (``recall`` -> ``recall.<class>``).

Example: specificity of a binary classifier, from the confusion block::

    from audit.metrics import MetricSpec, register_metric
    from audit.metrics.registry import confusion, div

    @register_metric("specificity", task="classify")
    def _specificity(d, pos_label=None):
        neg = 0 if pos_label in (None, d.K - 1) else d.K - 1
        def tn(S):
            C = confusion(S, d.K)
            return C[..., neg, neg], C[..., neg, :].sum(axis=-1)
        return [MetricSpec("specificity", "confusion", lambda S: div(*tn(S)), lambda S: tn(S)[1], tn,
                           description="true-negative rate")]

    audit.metrics.group_report(y_true=..., y_pred=..., sensitive=..., metrics=["accuracy", "specificity"])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audit.core.directions import declare_direction
from audit.core.protocols import TASKS
from audit.errors import UsageError
from audit.metrics._stats import (
    Data,
    MetricSpec,
    _all_rows,
    _conf,
    _div,
    balanced_accuracy_from_confusion,
    ece_from_bins,
    fg_dice_from_counts,
    fg_iou_from_counts,
    macro_f1_from_confusion,
    miou_from_counts,
)

__all__ = ["register_metric", "metric_names", "needs_probs", "build_metric_specs", "default_segment_metrics",
           "primary_segment_metric", "MetricDef", "MetricSpec", "confusion", "div"]

confusion = _conf  # confusion(S, K): the (..., K, K) confusion matrices of summed ``confusion`` statistics
div = _div  # NaN-safe a / b

Builder = Callable[[Data, "int | None"], list[MetricSpec]]


@dataclass(frozen=True)
class MetricDef:
    """A registered metric: its task (``classify`` or ``segment``), whether it needs class probabilities, its
    builder ``(data, pos_label) -> [MetricSpec, ...]``."""

    name: str
    task: str
    build: Builder
    needs_probs: bool = False


_REGISTRY: dict[str, MetricDef] = {}


def register_metric(name: str, *, task: str, needs_probs: bool = False,
                    lower_is_better: bool | None = None) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (re-registering a name replaces it).

    ``lower_is_better`` None: the direction :mod:`audit.core.directions` gives ``name`` (``ece``, ``*_diff``,
    ``*_gap``... lower; everything else higher); True or False records it there for a name the rule does not know,
    so the specs, check, views and pages all read the same direction.
    """
    if task not in TASKS:
        raise UsageError(f"task must be 'classify' or 'segment' (got {task!r})")
    if lower_is_better is not None:
        declare_direction(name, lower_is_better=lower_is_better)

    def deco(builder: Builder) -> Builder:
        _REGISTRY[name] = MetricDef(name, task, builder, needs_probs)
        return builder

    return deco


def metric_names(task: str | None = None) -> tuple[str, ...]:
    """Registered names, in registration order (``task`` None: all)."""
    return tuple(n for n, m in _REGISTRY.items() if task is None or m.task == task)


def needs_probs(name: str) -> bool:
    return _REGISTRY[name].needs_probs


def build_metric_specs(names: list[str], d: Data, *, pos_label: int | None = None) -> list[MetricSpec]:
    """Expand metric names (``recall`` -> one per class, ``iou`` -> one per segmentation class) into specs."""
    specs: list[MetricSpec] = []
    for name in names:
        specs.extend(_REGISTRY[name].build(d, pos_label))  # names are validated by the caller
    return specs


def default_segment_metrics(n_classes: int) -> list[str]:
    """What a segmentation audit reports by default. Binary (background + one class): the foreground Dice and IoU
    lead; no background-dominated per-image average is reported as "dice" (``dice``/``iou_image`` on request)."""
    if n_classes == 2:
        return ["fg_dice", "fg_iou", "miou", "iou", "pixel_accuracy"]
    return ["miou", "fg_iou", "iou", "pixel_accuracy"] if n_classes > 2 else ["miou", "iou", "pixel_accuracy"]


def primary_segment_metric(n_classes: int) -> str:
    """The headline metric of a segmentation task: foreground Dice when binary, mIoU (background included) else."""
    return "fg_dice" if n_classes == 2 else "miou"


# ---------------------------------------------------------------------------------------------- classification
def _ratio(name: str, block: str, description: str, *, proportion: bool = False) -> Builder:
    """A metric that is ``S[0] / S[1]`` of its block (accuracy, top-k, Brier, NLL); direction from the name."""
    def build(d: Data, pos_label: int | None) -> list[MetricSpec]:
        prop = (lambda S: (S[..., 0], S[..., 1])) if proportion else None
        return [MetricSpec(name.format(k=d.top_k), block, lambda S: _div(S[..., 0], S[..., 1]), lambda S: S[..., 1],
                           prop, description=description.format(k=d.top_k),
                           row_count=_all_rows)]
    return build


register_metric("accuracy", task="classify")(_ratio("accuracy", "correct", "share of correct predictions",
                                                    proportion=True))


@register_metric("balanced_accuracy", task="classify")
def _balanced_accuracy(d: Data, pos_label: int | None) -> list[MetricSpec]:
    return [MetricSpec("balanced_accuracy", "confusion", lambda S: balanced_accuracy_from_confusion(_conf(S, d.K)),
                       lambda S: S.sum(axis=-1), description="mean per-class recall", row_count=_all_rows)]


@register_metric("macro_f1", task="classify")
def _macro_f1(d: Data, pos_label: int | None) -> list[MetricSpec]:
    return [MetricSpec("macro_f1", "confusion", lambda S: macro_f1_from_confusion(_conf(S, d.K)),
                       lambda S: S.sum(axis=-1), description="unweighted mean F1 over classes", row_count=_all_rows)]


@register_metric("recall", task="classify")
def _recall(d: Data, pos_label: int | None) -> list[MetricSpec]:
    specs = []
    for k, cname in enumerate(d.classes):
        def rc(S, k=k):
            C_ = _conf(S, d.K)
            return C_[..., k, k], C_[..., k, :].sum(axis=-1)

        specs.append(MetricSpec(f"recall.{cname}", "confusion", lambda S, rc=rc: _div(*rc(S)),
                                lambda S, rc=rc: rc(S)[1], rc, description=f"recall of class {cname}",
                                row_count=lambda d, k=k: (d.y_true == k).astype(float)))
    return specs


register_metric("top_k", task="classify", needs_probs=True)(
    _ratio("top{k}_accuracy", "topk", "true class among the {k} most probable", proportion=True))


@register_metric("ece", task="classify", needs_probs=True)
def _ece(d: Data, pos_label: int | None) -> list[MetricSpec]:
    return [MetricSpec("ece", "calib", ece_from_bins, lambda S: S.reshape(S.shape[:-1] + (-1, 3))[..., 0].sum(axis=-1),
                       description="expected calibration error (top label)",
                       row_count=_all_rows)]


register_metric("brier", task="classify", needs_probs=True)(_ratio("brier", "brier", "Brier score"))
register_metric("nll", task="classify", needs_probs=True)(_ratio("nll", "nll", "negative log-likelihood"))


@register_metric("selection_rate", task="classify")
def _selection_rate(d: Data, pos_label: int | None) -> list[MetricSpec]:
    k = (d.K - 1) if pos_label is None else pos_label

    def sr(S):
        C_ = _conf(S, d.K)
        return C_[..., :, k].sum(axis=-1), C_.sum(axis=(-2, -1))

    return [MetricSpec("selection_rate", "confusion", lambda S: _div(*sr(S)), lambda S: sr(S)[1], sr,
                       description=f"share predicted {d.classes[k] if d.classes else k}", row_count=_all_rows)]


# ---------------------------------------------------------------------------------------------- segmentation
def _from_counts(name: str, fn, description: str) -> Builder:
    """A metric of the summed per-class pixel counts (block ``seg_iu``); n = images."""
    def build(d: Data, pos_label: int | None) -> list[MetricSpec]:
        C = d.C
        return [MetricSpec(name, "seg_iu", lambda S: fn(S, C), lambda S: S[..., 2 * C + 2], description=description,
                           row_count=_all_rows)]
    return build


register_metric("miou", task="segment")(_from_counts(
    "miou", miou_from_counts, "mean IoU over all classes, background included, from pixel counts summed over images"))
register_metric("fg_iou", task="segment")(_from_counts(
    "fg_iou", fg_iou_from_counts, "foreground IoU (background excluded; mean over the foreground classes), from "
    "pixel counts summed over images"))
register_metric("fg_dice", task="segment")(_from_counts(
    "fg_dice", fg_dice_from_counts, "foreground Dice (background excluded; mean over the foreground classes), from "
    "pixel counts summed over images"))


@register_metric("iou", task="segment")
def _iou(d: Data, pos_label: int | None) -> list[MetricSpec]:
    C = d.C
    return [MetricSpec(f"iou.{cname}", "seg_iu", lambda S, k=k: _div(S[..., k], S[..., C + k]),
                       lambda S: S[..., 2 * C + 2], description=f"IoU of class {cname} from summed pixel counts",
                       row_count=_all_rows) for k, cname in enumerate(d.seg_classes)]


register_metric("pixel_accuracy", task="segment")(_from_counts(
    "pixel_accuracy", lambda S, C: _div(S[..., 2 * C], S[..., 2 * C + 1]), "share of correctly labelled pixels"))


def _per_image(name: str, col: int, what: str) -> Builder:
    def build(d: Data, pos_label: int | None) -> list[MetricSpec]:
        return [MetricSpec(name, "seg_img", lambda S: _div(S[..., col], S[..., 2]), lambda S: S[..., 2],
                           description=f"mean per-image {what} over the classes present, background included")]
    return build


register_metric("dice", task="segment")(_per_image("dice", 0, "Dice"))
register_metric("iou_image", task="segment")(_per_image("iou_image", 1, "IoU"))
