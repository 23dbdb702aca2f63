"""The "What closes the gap" section of report.html (``audit mitigate``; docs/mitigation.md): the methods side by
side with their verdicts, the tradeoff between held-out and worst-group accuracy, the paired differences per
metric and what each variant changed. The numbers and the verdicts come from :mod:`audit.views.mitigation` (the
dashboard's page reads the same); everything user-controlled is escaped by :mod:`audit.report.blocks`."""

from __future__ import annotations

import math

import pandas as pd

from audit.errors import AuditError
from audit.report.blocks import MAX_GROUPS, ci, e, num, section, table
from audit.report.svg import interval_chart, tradeoff_chart
from audit.rundir import RunDir
from audit.views.mitigation import VERDICT_RULE, mitigation_diffs, mitigation_meta, mitigation_notes, mitigation_view

__all__ = ["mitigation_section", "VERDICT_COLOURS"]

TITLE = "What closes the gap (mitigation experiments)"
VERDICT_COLOURS = {"helps": "#2e7d32", "no measurable effect": "#777777", "hurts": "#c0392b"}
_BADGE = {"helps": "#e3f4e4", "no measurable effect": "#f0f0f0", "hurts": "#fde2e1"}
_PRIMARY = {"worst_group_accuracy": "worst group", "worst_group_miou": "worst group", "ood_accuracy": "held-out",
            "ood_miou": "held-out", "gap": "gap", "gap_miou": "gap"}


def _badge(word: str) -> str:
    bg, fg = _BADGE.get(word, "#f0f0f0"), VERDICT_COLOURS.get(word, "#555")
    return f'<span class="sev" style="background:{bg};color:{fg}">{e(word)}</span>'


def _diff(d, lo, hi) -> str:
    return f"{num(d)} {ci(lo, hi)}" if not (isinstance(d, float) and math.isnan(d)) else "n/a"


def _hint(run: RunDir) -> str:
    if not run.finished("train"):
        return ""
    return section("mitigation", TITLE, (
        '<p class="muted">No mitigation experiments yet. Retrain the model under the same protocol with a few '
        f"methods and re-audit it on the same held-out images: <code>audit mitigate {e(run.path)} --method "
        "group_balance --method reweight --method groupdro --method augment --method dedup</code> "
        "(add <code>--groups COLUMN</code> to balance over an attribute instead of the domain), then "
        "<code>audit report</code> again.</p>"))


def _side_by_side(v: pd.DataFrame, unit: str) -> str:
    head = ("<table><tr><th>method</th><th>verdict</th><th>worst group (grouping)</th><th>baseline</th>"
            f"<th>mitigated</th><th>difference [95% CI]</th><th>held-out {e(unit)} baseline</th><th>mitigated</th>"
            "<th>difference [95% CI]</th><th>gap difference [95% CI]</th><th>training time</th></tr>")
    rows = []
    for r in v.to_dict("records"):
        secs = r["train_seconds"]
        t = "" if math.isnan(secs) else f"{num(secs, 1)} s"
        if not math.isnan(r["time_vs_baseline"]):
            t += f" ({num(r['time_vs_baseline'], 2)}x baseline)"
        rows.append(
            f"<tr><td><b>{e(r['method'])}</b></td><td>{_badge(r['verdict'])}</td><td>{e(r['worst_by'])}</td>"
            f'<td class="num">{num(r["worst_baseline"])}</td><td class="num">{num(r["worst_mitigated"])}</td>'
            f"<td>{_diff(r['worst_diff'], r['worst_ci_low'], r['worst_ci_high'])}</td>"
            f'<td class="num">{num(r["ood_baseline"])}</td><td class="num">{num(r["ood_mitigated"])}</td>'
            f"<td>{_diff(r['ood_diff'], r['ood_ci_low'], r['ood_ci_high'])}</td>"
            f"<td>{_diff(r['gap_diff'], r['gap_ci_low'], r['gap_ci_high'])}</td><td>{e(t)}</td></tr>")
    return head + "".join(rows) + "</table>"


def _differences(d: pd.DataFrame) -> str:
    prim = d[d["metric"].isin(list(_PRIMARY))].head(MAX_GROUPS)
    vals = [abs(float(x)) for x in pd.concat([prim["ci_low"], prim["ci_high"], prim["diff"]]) if pd.notna(x)]
    r = max(vals + [0.02]) * 1.1
    chart = interval_chart([(f"{m} · {_PRIMARY[k]} ({b})", x, lo, hi, n) for m, k, b, x, lo, hi, n in
                            prim[["method", "metric", "by", "diff", "ci_low", "ci_high", "n"]].itertuples(index=False)],
                           lo=-r, hi=r, ref=0.0)
    full = d.assign(interval=[ci(lo, hi) for lo, hi in zip(d["ci_low"], d["ci_high"], strict=True)])
    return ("<h3>Paired differences per metric (mitigated - baseline)</h3>"
            "<p class='note'>Point = difference, bar = paired 95% interval, dashed line = no change. For gap and the "
            "fairness differences lower is better; the verdict column applies each metric's direction.</p>"
            + chart + table(full, ["method", "metric", "by", "baseline", "mitigated", "diff", "interval", "n", "p",
                                   "verdict"]))


def mitigation_section(run: RunDir) -> str:
    """The section, a hint how to run ``audit mitigate`` on a trained run without a summary, or ``""``."""
    try:
        v = mitigation_view(run)
        if v is None:
            return _hint(run)
        meta, notes, d = mitigation_meta(run), mitigation_notes(run), mitigation_diffs(run)
    except AuditError as ex:  # a damaged summary: one line, the rest of the report still renders
        return section("mitigation", TITLE, f'<p class="muted">cannot read the mitigation summary: {e(ex)}</p>')
    unit = "mIoU" if run.task == "segment" or v["worst_metric"].eq("worst_group_miou").any() else "accuracy"
    groups = ", ".join(str(g).removeprefix("attr.") for g in meta.get("groups") or []) or "domain"
    body = [
        f"<p>Each method retrained the run's model under the run's own protocol, folds, seeds and plan, and was "
        f"re-audited on the very same held-out images as the baseline (groups balanced over: {e(groups)}). "
        f"Differences are mitigated - baseline with 95% intervals from a paired bootstrap over those images "
        f"({num(meta.get('n_boot'), 0)} resamples; clusters = the manifest's group ids when it has them): both models "
        "are resampled together, so an interval reflects only how the two models disagree and is much tighter than "
        "two separate intervals would be.</p>",
        f"<p><b>Verdict rule.</b> {e(VERDICT_RULE)}</p>",
    ]
    if len(v):
        body.append(f"<h3>Methods side by side</h3>{_side_by_side(v, unit)}")
        body.append("<h3>In plain words</h3><ul>" + "".join(
            f"<li><b>{e(r['method'])}</b> {_badge(r['verdict'])} {e(r['sentence'].split(': ', 1)[-1])}</li>"
            for r in v.to_dict("records"))
            + "</ul>")
        pts = [(r["method"], r["ood_diff"], r["ood_ci_low"], r["ood_ci_high"], r["worst_diff"], r["worst_ci_low"],
                r["worst_ci_high"], VERDICT_COLOURS.get(r["verdict"])) for r in v.to_dict("records")]
        body.append(f"<h3>Tradeoff: held-out average vs worst group</h3><p class='note'>Each method's difference in "
                    f"held-out {e(unit)} (x) against its difference in worst-group {e(unit)} (y), with both paired "
                    "intervals; colour = verdict. Up and to the right helps on both; up and to the left buys the worst "
                    "group with average accuracy (the <code>mitigation_tradeoff</code> policy rule bounds that "
                    "price).</p>" + tradeoff_chart(pts, x_title=f"held-out {unit} difference",
                                                    y_title=f"worst-group {unit} difference",
                                                    legend=list(VERDICT_COLOURS.items())))
    if d is not None and len(d):
        body.append(_differences(d))
    if len(notes):
        body.append("<h3>What each variant changed</h3>" + table(notes, ["method", "changed", "notes", "error"]))
    return section("mitigation", TITLE, "".join(body))
