"""``audit.group_metrics``: fairlearn-style per-group metrics, each value with an interval, n and a status."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["group_metrics"]

_STATS = ("value", "ci_low", "ci_high", "n", "status")


def _features(sensitive_features, n: int) -> pd.DataFrame:
    """Sensitive features as a DataFrame with one column per feature (fairlearn's names: ``sensitive_feature_0``)."""
    sf = sensitive_features
    if isinstance(sf, pd.DataFrame):
        df = sf.reset_index(drop=True)
    elif isinstance(sf, Mapping):
        df = pd.DataFrame({k: np.asarray(v) for k, v in sf.items()})
    elif isinstance(sf, pd.Series):
        df = sf.reset_index(drop=True).to_frame(sf.name if sf.name is not None else "sensitive_feature_0")
    else:
        arr = np.asarray(sf, dtype=object)
        if arr.ndim == 1:
            df = pd.DataFrame({"sensitive_feature_0": arr})
        elif arr.ndim == 2:
            df = pd.DataFrame({f"sensitive_feature_{i}": arr[:, i] for i in range(arr.shape[1])})
        else:
            raise ValueError("sensitive_features must be 1-d or 2-d")
    if len(df) != n:
        raise ValueError(f"sensitive_features has {len(df)} rows but y_true has {n}")
    if df.shape[1] == 0:
        raise ValueError("sensitive_features has no columns")
    return df


def _combined(df: pd.DataFrame) -> tuple[pd.Categorical, pd.Index, list[tuple]]:
    """One categorical over every combination of the features' values (empty combinations kept, like fairlearn)."""
    levels = [sorted(pd.unique(df[c].dropna()), key=lambda v: (str(type(v)), v)) for c in df.columns]
    combos = list(itertools.product(*levels))
    names = [f"g{i}" for i in range(len(combos))]
    lookup = {c: names[i] for i, c in enumerate(combos)}
    keys = [None if any(pd.isna(v) for v in row) else lookup[tuple(row)]
            for row in df.itertuples(index=False, name=None)]
    cat = pd.Categorical(keys, categories=names)
    if df.shape[1] == 1:
        index = pd.Index([c[0] for c in combos], name=df.columns[0])
    else:
        index = pd.MultiIndex.from_tuples(combos, names=list(df.columns))
    return cat, index, combos


def _label_name(v) -> str:
    """A label's name: numbers by value (``1``, ``1.0`` and ``np.int64(1)`` all give ``"1"``), the rest ``str``."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        if np.isfinite(f) and f.is_integer():
            return str(int(f))
    return str(v)


def _joint_labels(y_true, y_pred) -> tuple[pd.Series, pd.Series]:
    """Both label arrays as strings, equal values (by Python ``==``, across dtypes) giving equal strings.

    The union of the values is factorized jointly, so an int ``y_true`` and a float ``y_pred`` (or a Categorical and an
    object array) name the same class the same way. Missing values stay missing (``group_report`` refuses them).
    """
    yt = np.asarray(y_true, dtype=object).reshape(-1)
    yp = np.asarray(y_pred, dtype=object).reshape(-1)
    codes, uniq = pd.factorize(np.concatenate([yt, yp]))
    names = [_label_name(v) for v in uniq]
    seen = pd.Series(names).value_counts().to_dict()
    # distinct values with one printed form (1 and "1"): keep them apart by naming the type too
    names = [f"{name} ({type(v).__name__})" if seen[name] > 1 else name for name, v in zip(names, uniq, strict=True)]
    lookup = np.array(names + [None], dtype=object)  # code -1 (missing) -> None
    out = lookup[codes]
    return pd.Series(out[: len(yt)], dtype=object), pd.Series(out[len(yt):], dtype=object)


def _status(n: np.ndarray, min_n: int) -> np.ndarray:
    return np.where(n == 0, "empty", np.where(n < min_n, "insufficient_evidence", "ok"))


def _callable_metric(fn: Callable, y_true, y_pred, cat: pd.Categorical, *, n_boot: int, ci: float, seed: int):
    """Value and percentile-bootstrap interval of ``fn(y_true, y_pred)`` within each group (rows resampled)."""
    yt = np.asarray(y_true)
    yp = np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    out = []
    alpha = (1 - ci) / 2
    for g in range(len(cat.categories)):
        idx = np.flatnonzero(cat.codes == g)
        if idx.size == 0:
            out.append((np.nan, np.nan, np.nan, 0))
            continue
        value = float(fn(yt[idx], yp[idx]))
        lo = hi = np.nan
        if n_boot > 0 and idx.size > 1:
            draws = rng.integers(0, idx.size, size=(n_boot, idx.size))
            boot = np.array([fn(yt[idx[d]], yp[idx[d]]) for d in draws], dtype=float)
            boot = boot[np.isfinite(boot)]
            if boot.size:
                lo, hi = (float(x) for x in np.quantile(boot, [alpha, 1 - alpha]))
        out.append((value, lo, hi, int(idx.size)))
    return out


def group_metrics(
    y_true,
    y_pred,
    *,
    sensitive_features,
    metrics: Sequence[str | Callable] | Mapping[str, str | Callable] | str | Callable = ("accuracy",),
    y_prob=None,
    n_boot: int = 1000,
    min_n: int = 30,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Metrics per group, like fairlearn's ``MetricFrame(...).by_group``, with intervals, n and a status.

    Parameters
    ----------
    y_true, y_pred
        Labels (arrays, lists, Series or Categoricals). Named metrics compare them by value across dtypes, as
        fairlearn does: an int ``y_true`` and a float ``y_pred`` agree where ``1 == 1.0``.
    sensitive_features
        One feature (array/Series) or several (DataFrame, dict or 2-d array): several give intersectional groups,
        every combination of their values, empty ones included (NaN, status ``empty``) as fairlearn does.
    metrics
        Names known to ``audit.metrics.group_report`` (``accuracy``, ``balanced_accuracy``, ``macro_f1``,
        ``recall``, ``selection_rate``, ``ece``, ``brier``, ``nll``...), callables ``f(y_true, y_pred) -> float``
        (e.g. ``sklearn.metrics.f1_score``), or a dict ``{name: name_or_callable}``.
    y_prob
        Class probabilities ``(n, K)`` for calibration metrics.
    n_boot, ci, seed
        Bootstrap resamples, coverage and seed of the intervals (Wilson for proportions of independent rows).
    min_n
        Groups with fewer samples get status ``insufficient_evidence``.

    Returns
    -------
    pandas.DataFrame
        Indexed by the sensitive features' values (a MultiIndex for several), columns ``(metric, stat)`` with
        stat in ``value, ci_low, ci_high, n, status``. ``df["accuracy"]["value"]`` equals fairlearn's
        ``MetricFrame(metrics=accuracy_score, ...).by_group``.

    Examples
    --------
    >>> import audit
    >>> df = audit.group_metrics([1, 0, 1, 1], [1, 0, 0, 1], sensitive_features=["a", "a", "b", "b"], n_boot=0)
    >>> df["accuracy"]["value"].tolist()
    [1.0, 0.5]
    """
    from audit.errors import UsageError
    from audit.metrics import group_report

    if not 0 < ci < 1:
        raise ValueError(f"ci must be between 0 and 1, got {ci}")
    yt = pd.Series(np.asarray(y_true, dtype=object))
    yp = pd.Series(np.asarray(y_pred, dtype=object))
    if len(yt) != len(yp):
        raise ValueError(f"y_true has {len(yt)} rows but y_pred has {len(yp)}")
    feats = _features(sensitive_features, len(yt))
    cat, index, _ = _combined(feats)
    if isinstance(metrics, (str, Callable)) and not isinstance(metrics, Mapping):
        metrics = [metrics]
    items = list(metrics.items()) if isinstance(metrics, Mapping) else [
        (m if isinstance(m, str) else getattr(m, "__name__", f"metric_{i}"), m) for i, m in enumerate(metrics)]
    named = [(k, m) for k, m in items if isinstance(m, str)]
    columns: dict[tuple[str, str], list] = {}
    if named:
        lt, lp = _joint_labels(yt, yp)
        rep = group_report(y_true=lt, y_pred=lp, sensitive=pd.Series(cat, name="group"),
                           metrics=[m for _, m in named], y_prob=y_prob, n_boot=n_boot, min_n=min_n, seed=seed,
                           confidence=ci)
        frame = rep.to_frame(include_overall=False)
        for key, m in named:
            found = [x for x in rep.metrics if x == m or x.startswith(m + ".")]
            if not found:
                raise UsageError(f"metric {m!r} is not one of: {', '.join(rep.metrics)}")
            for name in found:
                col = key if name == m else f"{key}{name[len(m):]}"
                sub = frame[frame["metric"] == name].set_index("group").reindex(list(cat.categories))
                n = sub["n"].fillna(0).to_numpy().astype(int)
                columns[(col, "value")] = sub["value"].to_numpy(dtype=float)
                columns[(col, "ci_low")] = sub["ci_low"].to_numpy(dtype=float)
                columns[(col, "ci_high")] = sub["ci_high"].to_numpy(dtype=float)
                columns[(col, "n")] = n
                columns[(col, "status")] = _status(n, min_n)
    for key, fn in items:
        if isinstance(fn, str):
            continue
        res = _callable_metric(fn, np.asarray(y_true), np.asarray(y_pred), cat, n_boot=n_boot, ci=ci, seed=seed)
        for j, stat in enumerate(_STATS[:4]):
            columns[(key, stat)] = [r[j] for r in res]
        columns[(key, "status")] = _status(np.array([r[3] for r in res]), min_n)
    out = pd.DataFrame(columns, index=index)
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["metric", "stat"])
    return out
