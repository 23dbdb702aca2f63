"""The plain-language verdict of one mitigation method (helps / no measurable effect / hurts), decided from the
paired 95% intervals of ``RUN/mitigations/summary.parquet``. ``summary.json``, ``audit mitigate``'s output, the
report's "What closes the gap" section and the dashboard page all call :func:`method_verdict`, so they agree.

The rule (:data:`RULE`), on the method's worst-group row (worst-group accuracy, or mIoU for segmentation, of the
first grouping after ``domain``, else over domains) and its held-out average (``ood_accuracy`` / ``ood_miou``):

* **hurts** when the interval of either difference lies below 0;
* **helps** when the worst-group interval lies above 0 (and, by the line above, the held-out average does not
  drop significantly);
* **no measurable effect** otherwise: every interval reaches 0, or none could be computed.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["VERDICTS", "RULE", "WORST_METRICS", "AVERAGE_METRICS", "primary_rows", "method_summary", "method_verdict"]

VERDICTS = ("helps", "no measurable effect", "hurts")
WORST_METRICS = ("worst_group_accuracy", "worst_group_miou")
AVERAGE_METRICS = ("ood_accuracy", "ood_miou")
RULE = ("helps: the paired 95% interval of the worst-group difference (mitigated - baseline) lies above 0 and the "
        "held-out average does not drop significantly (its interval does not lie below 0); hurts: the interval of "
        "either difference lies below 0; no measurable effect: every interval reaches 0 (or none could be computed).")


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _side(r: pd.Series | None) -> int:
    """+1 when the paired interval lies above 0, -1 below 0, 0 when it reaches 0 or is missing."""
    if r is None:
        return 0
    lo, hi = _num(r.get("ci_low")), _num(r.get("ci_high"))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def primary_rows(rows: pd.DataFrame) -> tuple[pd.Series | None, pd.Series | None]:
    """The worst-group row (first grouping after ``domain``, else ``domain``) and the held-out average row."""
    wg = rows[rows["metric"].isin(WORST_METRICS)]
    if (wg["by"].astype(str) != "domain").any():
        wg = wg[wg["by"].astype(str) != "domain"]
    avg = rows[rows["metric"].isin(AVERAGE_METRICS)]
    return (wg.iloc[0] if len(wg) else None), (avg.iloc[0] if len(avg) else None)


def _points(r: pd.Series) -> str:
    if not (math.isfinite(_num(r.get("baseline", 0.0))) and math.isfinite(_num(r.get("mitigated", 0.0)))
            and math.isfinite(_num(r["diff"]))):
        return "not measurable (undefined for the baseline or the variant, e.g. no group with n >= min_n)"
    return (f"{_num(r['diff']) * 100:+.1f} points [{_num(r['ci_low']) * 100:+.1f}, "
            f"{_num(r['ci_high']) * 100:+.1f}]")


def method_summary(rows: pd.DataFrame) -> dict:
    """Verdict word, one sentence, and the worst-group and held-out numbers of one method's summary rows."""
    wg, avg = primary_rows(rows)
    sw, sa = _side(wg), _side(avg)
    word = "hurts" if sw < 0 or sa < 0 else "helps" if sw > 0 else "no measurable effect"
    seg = (wg is not None and wg["metric"] == "worst_group_miou") or (avg is not None and avg["metric"] == "ood_miou")
    unit = "mIoU" if seg else "accuracy"
    parts = []
    if wg is not None:
        parts.append(f"worst-group {unit} ({wg['by']}) {_points(wg)}")
    else:
        parts.append("no worst-group metric could be computed")
    if avg is not None:
        how = "a significant drop" if sa < 0 else "a significant rise" if sa > 0 else "no significant change"
        parts.append(f"held-out {unit} {_points(avg)} ({how})")
    sentence = f"{word}: " + "; ".join(parts)
    if word == "hurts" and sw > 0:
        sentence += " - the worst group gains, but the held-out average pays for it"
    out = {"verdict": word, "sentence": sentence, "worst_metric": None if wg is None else str(wg["metric"]),
           "worst_by": None if wg is None else str(wg["by"])}
    for pre, r in (("worst", wg), ("ood", avg)):
        for k in ("baseline", "mitigated", "diff", "ci_low", "ci_high"):
            out[f"{pre}_{k}"] = math.nan if r is None else _num(r.get(k))
    out["n"] = math.nan if avg is None else _num(avg.get("n"))
    return out


def method_verdict(rows: pd.DataFrame) -> tuple[str, str]:
    """``(word, sentence)`` for one method's rows of the summary (see :data:`RULE`)."""
    s = method_summary(rows)
    return s["verdict"], s["sentence"]
