"""Input validation at the API boundary: one-line errors that name the offending argument."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from audit.errors import InputError, UsageError

_MSG_NOT_1D = "{arg} must be one-dimensional (got shape {shape})"
_MSG_LENGTH = "{arg} has {got} rows but y_true has {want}; every input needs one entry per sample"
_MSG_EMPTY = "{arg} is empty: there is nothing to measure"
_MSG_MISSING = "{arg} has {k} missing value(s) (first at row {row}); drop or fill them before measuring"
_MSG_PROB_SHAPE = "y_prob must have shape (n_samples, n_classes) = ({n}, {k}); got {shape}"
_MSG_PROB_RANGE = "y_prob must hold probabilities in [0, 1] without NaN; {bad} value(s) are not"
_MSG_PROB_SUM = "y_prob rows must sum to 1 (within 1e-3); {bad} row(s) do not (first: row {row}, sum {s:.4f})"
_MSG_UNKNOWN_CLASS = "{arg} holds {k} value(s) not in classes, e.g. {examples}; classes are {classes}"
_MSG_INT = "{arg} must be an integer >= {low} (got {value!r})"
_MSG_CHOICE = "{arg} must be one of {choices} (got {value!r})"
_MSG_METRIC = "unknown metric {value!r} in metrics; available: {choices}"
_MSG_NEED = "metric {metric!r} needs {what}; pass {arg}"
_MSG_SEG_SHAPE = "segmentation.{arg} must have shape (n_samples, n_classes) = ({n}, {k}); got {shape}"
_MSG_SEG_NEG = "segmentation.{arg} must hold non-negative pixel counts; {bad} value(s) do not"

__all__ = [
    "as_1d",
    "as_labels",
    "check_int",
    "check_choice",
    "check_length",
    "natural_sorted",
]


def natural_sorted(values) -> list[str]:
    """Strings sorted with numbers in numeric order ("2" before "10")."""
    from audit.core.sorting import natural_key

    uniq = pd.unique(pd.Series(np.asarray(values, dtype=object)))
    return sorted({str(v) for v in uniq}, key=natural_key)


def as_1d(x, arg: str) -> np.ndarray:
    """Any array-like (list, ndarray, Series, Categorical) as a 1-D object/number array."""
    if isinstance(x, (pd.Series, pd.Index)):
        arr = x.to_numpy(dtype=object) if not pd.api.types.is_numeric_dtype(x.dtype) else x.to_numpy()
    elif isinstance(x, pd.Categorical):
        arr = np.asarray(x, dtype=object)
    else:
        arr = np.asarray(x)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise UsageError(_MSG_NOT_1D.format(arg=arg, shape=arr.shape))
    return arr


def _missing_mask(arr: np.ndarray) -> np.ndarray:
    return (
        np.asarray(pd.isna(pd.Series(arr, dtype=object)), dtype=bool)
        if arr.dtype == object
        else np.isnan(arr)
        if arr.dtype.kind == "f"
        else np.zeros(len(arr), bool)
    )


def as_labels(x, arg: str, *, n: int | None = None) -> np.ndarray:
    """Class labels as strings; missing values are an error (nothing is silently dropped)."""
    arr = as_1d(x, arg)
    if n is not None:
        check_length(arr, arg, n)
    miss = _missing_mask(arr)
    if miss.any():
        raise InputError(_MSG_MISSING.format(arg=arg, k=int(miss.sum()), row=int(np.flatnonzero(miss)[0])))
    if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
        arr = arr.astype(np.int64)
    return arr.astype(str).astype(object)


def check_length(arr, arg: str, n: int) -> None:
    if len(arr) != n:
        raise UsageError(_MSG_LENGTH.format(arg=arg, got=len(arr), want=n))


def check_int(value, arg: str, *, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UsageError(_MSG_INT.format(arg=arg, low=low, value=value))
    return int(value)


def check_choice(value, arg: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise UsageError(_MSG_CHOICE.format(arg=arg, choices=", ".join(map(str, choices)), value=value))
    return value


def encode(labels: np.ndarray, classes: list[str], arg: str) -> np.ndarray:
    """Integer codes of ``labels`` in ``classes``; unknown labels are an error naming a few of them."""
    index = pd.Index(classes)
    codes = index.get_indexer(labels)
    bad = codes < 0
    if bad.any():
        ex = ", ".join(repr(v) for v in pd.unique(labels[bad])[:3])
        shown = ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
        raise InputError(_MSG_UNKNOWN_CLASS.format(arg=arg, k=int(bad.sum()), examples=ex, classes=shown))
    return codes.astype(np.int64)


def check_probs(y_prob, n: int, k: int) -> np.ndarray:
    p = np.asarray(y_prob.to_numpy() if isinstance(y_prob, pd.DataFrame) else y_prob, dtype=float)
    if p.shape != (n, k):
        raise UsageError(_MSG_PROB_SHAPE.format(n=n, k=k, shape=p.shape))
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        raise InputError(_MSG_PROB_RANGE.format(bad=int(bad.sum())))
    s = p.sum(axis=1)
    off = np.abs(s - 1) > 1e-3
    if off.any():
        r = int(np.flatnonzero(off)[0])
        raise InputError(_MSG_PROB_SUM.format(bad=int(off.sum()), row=r, s=s[r]))
    return p


def check_counts(x, arg: str, n: int, k: int) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.shape != (n, k):
        raise UsageError(_MSG_SEG_SHAPE.format(arg=arg, n=n, k=k, shape=a.shape))
    bad = ~np.isfinite(a) | (a < 0)
    if bad.any():
        raise InputError(_MSG_SEG_NEG.format(arg=arg, bad=int(bad.sum())))
    return a
