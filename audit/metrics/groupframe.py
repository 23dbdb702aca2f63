"""``GroupReport``: metrics overall and per group, each with n, a 95% interval and a status (the result object)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.errors import UsageError
from audit.metrics._bootstrap import (
    bootstrap_pvalue,
    percentile_interval,
)
from audit.metrics._stats import (
    nanmax,
    nanmin,
    safe_div,
)

__all__ = ["GroupReport"]

_MSG_METRIC_LOOKUP = "no metric {metric!r} in this report; it has: {have}"


_MSG_GROUP_LOOKUP = "no group {group!r} in this report; it has: {have}"


_MSG_METHOD = "method must be 'between_groups' or 'to_overall' (got {value!r})"


class GroupReport:
    """Metrics overall and per group, with n, a 95% interval and a status for every number.

    Built by :func:`group_report`. Mirrors fairlearn's ``MetricFrame``: ``overall``, ``by_group``,
    ``difference()``, ``ratio()``, plus ``worst()``/``best()`` and intervals everywhere (``to_frame()``).

    Attributes
    ----------
    by : str
        Name of the grouping (``domain``, ``attr.x``, ``domain x attr.x``; ``overall`` without groups).
    groups : list of str
        Group names, in order (empty groups included, with NaN values).
    metrics : list of str
        Metric names (``recall`` expanded per class).
    min_n : int
        Groups with fewer samples get status ``insufficient_evidence``.
    n_missing : int
        Rows whose group is missing: counted in ``overall`` only.
    """

    def __init__(
        self, *, by, groups, specs, values, n, ci_low, ci_high, ci_method, boot, min_n, n_missing, n_boot, seed
    ):
        self.by = by
        self.groups = list(groups)
        self._specs = list(specs)
        self.metrics = [s.name for s in specs]
        self._values = values  # (G+1, M); row G = overall
        self._n = n
        self._lo = ci_low
        self._hi = ci_high
        self._method = ci_method
        self._boot = boot  # (B, G+1, M) or None
        self.min_n = min_n
        self.n_missing = int(n_missing)
        self.n_boot = n_boot
        self.seed = seed

    # ------------------------------------------------------------------ basic views
    def _m(self, metric: str | None) -> int:
        if metric is None:
            return 0
        try:
            return self.metrics.index(metric)
        except ValueError:
            raise UsageError(_MSG_METRIC_LOOKUP.format(metric=metric, have=", ".join(self.metrics))) from None

    def _g(self, group: str) -> int:
        if group in ("all", "overall") and group not in self.groups:
            return len(self.groups)
        try:
            return self.groups.index(str(group))
        except ValueError:
            raise UsageError(_MSG_GROUP_LOOKUP.format(group=group, have=", ".join(self.groups[:20]))) from None

    @property
    def overall(self) -> pd.Series:
        """Metric values on every row (groups and missing-group rows together)."""
        return pd.Series(self._values[-1], index=self.metrics, name="overall", dtype=float)

    @property
    def by_group(self) -> pd.DataFrame:
        """Metric values per group (rows) and metric (columns); empty groups are NaN."""
        return pd.DataFrame(self._values[:-1], index=pd.Index(self.groups, name=self.by), columns=self.metrics)

    @property
    def n_by_group(self) -> pd.DataFrame:
        """Samples behind each per-group value."""
        return pd.DataFrame(
            self._n[:-1].astype(np.int64), index=pd.Index(self.groups, name=self.by), columns=self.metrics
        )

    def status(self) -> pd.DataFrame:
        """``ok``, ``insufficient_evidence`` (n < min_n) or ``empty`` per group and metric."""
        n = self._n[:-1]
        st = np.where(n == 0, "empty", np.where(n < self.min_n, "insufficient_evidence", "ok"))
        return pd.DataFrame(st, index=pd.Index(self.groups, name=self.by), columns=self.metrics)

    def _status_array(self) -> np.ndarray:
        n = self._n
        return np.where(n == 0, "empty", np.where(n < self.min_n, "insufficient_evidence", "ok"))

    def interval(self, metric: str | None = None, group: str | None = None) -> tuple[float, float]:
        """The 95% interval of one value (``group=None`` or ``"all"`` for overall)."""
        m = self._m(metric)
        g = len(self.groups) if group is None else self._g(group)
        return float(self._lo[g, m]), float(self._hi[g, m])

    def bootstrap(self, metric: str | None = None) -> np.ndarray | None:
        """Bootstrap values ``(n_boot, n_groups + 1)`` of a metric (last column: overall); None without bootstrap."""
        if self._boot is None:
            return None
        return self._boot[:, :, self._m(metric)]

    # ------------------------------------------------------------------ group comparisons
    def _eligible(self, m: int, eligible_only: bool) -> np.ndarray:
        n = self._n[:-1, m]
        ok = (n >= max(1, self.min_n)) if eligible_only else (n > 0)
        return ok & np.isfinite(self._values[:-1, m])

    def _extreme(self, metric, *, worst: bool, eligible_only: bool) -> dict:
        m = self._m(metric)
        spec = self._specs[m]
        ok = self._eligible(m, eligible_only)
        out = {"metric": spec.name, "group": None, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0}
        if not ok.any():
            return out
        v = np.where(ok, self._values[:-1, m], np.nan)
        low_is_bad = spec.higher_is_better == worst
        g = int(np.nanargmin(v) if low_is_bad else np.nanargmax(v))
        out.update(group=self.groups[g], value=float(v[g]), ci_low=float(self._lo[g, m]), ci_high=float(self._hi[g, m]),
                   n=int(self._n[g, m]))
        return out

    def worst(self, metric: str | None = None, *, eligible_only: bool = True) -> dict:
        """The worst group of a metric (lowest; highest for losses such as ECE), among groups with n >= min_n.

        Returns a dict: metric, group (None when no group qualifies), value, ci_low, ci_high, n.
        """
        return self._extreme(metric, worst=True, eligible_only=eligible_only)

    def best(self, metric: str | None = None, *, eligible_only: bool = True) -> dict:
        """The best group of a metric (see :meth:`worst`)."""
        return self._extreme(metric, worst=False, eligible_only=eligible_only)

    def _spread(self, metric, method, kind, eligible_only):
        if method not in ("between_groups", "to_overall"):
            raise UsageError(_MSG_METHOD.format(value=method))
        m = self._m(metric)
        ok = self._eligible(m, eligible_only)

        def f(vals):  # vals: (..., G+1)
            g = np.where(ok, vals[..., :-1], np.nan)
            with np.errstate(all="ignore"):
                if method == "between_groups":
                    hi = nanmax(g)
                    lo = nanmin(g)
                    return hi - lo if kind == "difference" else safe_div(lo, hi)
                ov = vals[..., -1:]
                if kind == "difference":
                    return nanmax(np.abs(g - ov))
                return nanmin(np.fmin(safe_div(g, ov), safe_div(ov, g)))

        value = float(f(self._values[:, m])) if ok.any() else np.nan
        if self._boot is None or not ok.any():
            return value, np.nan, np.nan
        b = f(self._boot[:, :, m])
        lo, hi = percentile_interval(b[:, None], np.array([value]))
        return value, float(lo[0]), float(hi[0])

    def difference(self, metric: str | None = None, *, method: str = "between_groups", eligible_only: bool = False,
                   with_ci: bool = False):
        """Largest difference between groups (or to overall), as fairlearn's ``MetricFrame.difference``.

        Parameters
        ----------
        metric
            One metric, or None for every metric (a Series).
        method
            ``between_groups`` (max - min) or ``to_overall`` (max |group - overall|).
        eligible_only
            Only groups with n >= min_n (the default counts every non-empty group, as fairlearn).
        with_ci
            Return ``(value, ci_low, ci_high)`` (cluster bootstrap) instead of the value.
        """
        return self._apply(self._spread, metric, method, "difference", eligible_only, with_ci)

    def ratio(self, metric: str | None = None, *, method: str = "between_groups", eligible_only: bool = False,
              with_ci: bool = False):
        """Smallest ratio between groups (min / max, or to overall), as fairlearn's ``MetricFrame.ratio``."""
        return self._apply(self._spread, metric, method, "ratio", eligible_only, with_ci)

    def _apply(self, fn, metric, method, kind, eligible_only, with_ci):
        if metric is not None:
            r = fn(metric, method, kind, eligible_only)
            return r if with_ci else r[0]
        rows = {m: fn(m, method, kind, eligible_only) for m in self.metrics}
        if with_ci:
            return pd.DataFrame(rows, index=["value", "ci_low", "ci_high"]).T
        return pd.Series({m: r[0] for m, r in rows.items()}, dtype=float)

    def compare(self, metric: str | None, a: str, b: str = "rest") -> dict:
        """Paired bootstrap comparison of group ``a`` with group ``b`` (a group name, ``"all"`` or ``"rest"``).

        Returns a dict: difference (a - b), ci_low, ci_high, p (two-sided bootstrap p-value), n_a, n_b.
        ``"rest"`` is every row outside ``a`` (computed from the same resamples, so it is paired).
        """
        m = self._m(metric)
        ga = self._g(a)
        spec = self._specs[m]
        if b == "rest":
            if self._rest is None:
                raise UsageError("this report was built without rest-of-data statistics")
            va, vb = self._values[ga, m], self._rest_values[ga, m]
            ba = None if self._boot is None else self._boot[:, ga, m]
            bb = None if self._boot is None else self._rest[:, ga, m]
            n_b = int(self._rest_n[ga, m])
        else:
            gb = self._g(b)
            va, vb = self._values[ga, m], self._values[gb, m]
            ba = None if self._boot is None else self._boot[:, ga, m]
            bb = None if self._boot is None else self._boot[:, gb, m]
            n_b = int(self._n[gb, m])
        diff = float(va - vb)
        out = {
            "metric": spec.name,
            "a": a,
            "b": b,
            "difference": diff,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "p": np.nan,
            "n_a": int(self._n[ga, m]),
            "n_b": n_b,
        }
        if ba is not None:
            bd = ba - bb
            lo, hi = percentile_interval(bd[:, None], np.array([diff]))
            out.update(
                ci_low=float(lo[0]), ci_high=float(hi[0]), p=float(bootstrap_pvalue(bd[:, None], np.array([diff]))[0])
            )
        return out

    _rest = None
    _rest_values = None
    _rest_n = None

    # ------------------------------------------------------------------ tables
    def to_frame(self, *, include_overall: bool = True, by: str | None = None) -> pd.DataFrame:
        """Long table: by, group, metric, value, ci_low, ci_high, n, status, ci_method (overall: by "overall",
        group "all")."""
        G, M = len(self.groups), len(self.metrics)
        st = self._status_array()
        rows_g = np.repeat(np.arange(G), M)
        rows_m = np.tile(np.arange(M), G)
        df = pd.DataFrame(
            {
                "by": by or self.by,
                "group": np.array(self.groups, dtype=object)[rows_g] if G else np.array([], dtype=object),
                "metric": np.array(self.metrics, dtype=object)[rows_m],
                "value": self._values[rows_g, rows_m],
                "ci_low": self._lo[rows_g, rows_m],
                "ci_high": self._hi[rows_g, rows_m],
                "n": self._n[rows_g, rows_m].astype(np.int64),
                "status": st[rows_g, rows_m],
                "ci_method": np.array(self._method, dtype=object)[rows_g, rows_m],
            }
        )
        if include_overall and self.by == "overall":
            return df  # no grouping: the single group "all" is the overall
        if include_overall:
            ov = pd.DataFrame(
                {
                    "by": "overall",
                    "group": "all",
                    "metric": self.metrics,
                    "value": self._values[-1],
                    "ci_low": self._lo[-1],
                    "ci_high": self._hi[-1],
                    "n": self._n[-1].astype(np.int64),
                    "status": st[-1],
                    "ci_method": self._method[-1],
                }
            )
            df = pd.concat([ov, df], ignore_index=True)
        return df

    def summary(self) -> pd.DataFrame:
        """Per metric: overall, worst and best group (n >= min_n), largest difference and smallest ratio, with
        intervals."""
        rows = []
        for m in self.metrics:
            w, b = self.worst(m), self.best(m)
            d = self.difference(m, eligible_only=True, with_ci=True)
            r = self.ratio(m, eligible_only=True, with_ci=True)
            lo, hi = self.interval(m)
            rows.append({
                "metric": m, "overall": self._values[-1, self._m(m)], "overall_ci_low": lo, "overall_ci_high": hi,
                "n": int(self._n[-1, self._m(m)]), "worst_group": w["group"], "worst": w["value"],
                "worst_ci_low": w["ci_low"], "worst_ci_high": w["ci_high"], "worst_n": w["n"], "best_group": b["group"],
                "best": b["value"], "difference": d[0], "difference_ci_low": d[1], "difference_ci_high": d[2],
                "ratio": r[0], "ratio_ci_low": r[1], "ratio_ci_high": r[2],
            })
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        n = int(self._n[-1].max()) if self._n.size else 0
        return f"GroupReport(by={self.by!r}, groups={len(self.groups)}, metrics={self.metrics}, n={n})"
