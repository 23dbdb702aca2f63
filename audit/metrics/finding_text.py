"""Candidates -> findings: BH q-values over the family, effect thresholds, and the words that say why each fired."""



import math

import numpy as np

from audit.core.numfmt import format_number
from audit.findings import Finding
from audit.metrics._bootstrap import benjamini_hochberg
from audit.metrics.defaults import FAIRNESS_MARGIN, Q_MAX, THRESHOLDS

__all__ = ["findings_from"]

# ---------------------------------------------------------------------------------------------- findings
def findings_from(cands: list[dict], config) -> list[Finding]:
    tested = [c for c in cands if "p" in c]
    q = benjamini_hochberg([c["p"] for c in tested])
    for c, qv in zip(tested, q, strict=True):
        c["q"] = float(qv)
    out: list[Finding] = []
    for c in cands:
        f = _finding(c, config)
        if f is not None:
            out.append(f)
    return out


def _fmt(x) -> str:
    """Three decimals, whole numbers included (``1.000``); ``nan`` for a missing, NaN or infinite value."""
    finite = x is not None and bool(np.isfinite(x))
    return format_number(x if finite else None, 3, missing="nan", thousands=False, whole_from=math.inf)


def _finding(c: dict, config) -> Finding | None:
    kind, key = c["kind"], c["key"]
    where = (f"{key['model']}/{key['protocol']}" + (f" fold {key['fold']}" if key["fold"] != "all" else "")
             + f" ({key['scope']})")
    extra = f"{key['model']}|{key['protocol']}|{key['fold']}|{key['scope']}|{c['metric']}|{c.get('cls', '')}"
    ev = {"model": key["model"], "protocol": key["protocol"], "fold": key["fold"], "scope": key["scope"],
          "metric": c["metric"], "n_boot": config.n_boot, "seed": config.seed, "id_extra": extra}
    if kind == "insufficient_evidence":
        return _insufficient(c, where, ev)
    eff, qv, p = c["effect"], c.get("q", np.nan), c.get("p", np.nan)
    thr = THRESHOLDS[kind]
    if not np.isfinite(eff) or eff < thr["warning"]:
        return None
    within = c.get("within")
    if within and not all(np.isfinite(r["effect"]) and r["effect"] >= thr["warning"] for r in within):
        # An intersection must add to its marginals: its worst group also differs from its siblings within each
        # marginal by the threshold, else the marginal's own finding says it all.
        return None
    ci = [float(x) if x is not None and np.isfinite(x) else None for x in c["ci"]]
    ev.update(p=p, q=qv, threshold=thr["warning"], critical_threshold=thr["critical"], q_max=Q_MAX)
    if not (np.isfinite(qv) and qv < Q_MAX):
        return _noise(c, eff, qv, ci, where, ev)
    low = ci[0]
    note = ""
    if within:
        # p is already the largest of the main and sibling p-values (intersection-union test); the severity and
        # the score use the smallest lower bound
        b = min(within, key=lambda r: r["effect"])
        lows = [low] + [r["ci"][0] for r in within]
        low = None if any(x is None or not np.isfinite(x) for x in lows) else float(min(lows))
        note = f"{_fmt(b['effect'])} below the other {b['column']} groups within {b['within']}; "
        ev.update(within=[{**r, "ci": [float(x) for x in r["ci"]]} for r in within], p_main=c.get("p_main"))
    # Critical only when the interval's lower bound clears the critical threshold, not the point estimate alone.
    severity = "critical" if low is not None and low >= thr["critical"] else "warning"
    score = max(0.0, low) if low is not None else 0.0  # conservative effect size: the interval's lower bound
    title, detail = _words(c, eff, ci, qv, note, where, ev)
    return Finding(kind, severity, title, detail=detail, columns=c["cols"], groups=c["groups"], value=eff, ci=ci,
                   n=c["n"], score=score, evidence=ev)


def _insufficient(c: dict, where: str, ev: dict) -> Finding:
    """Too few samples for a verdict: the value is reported, no finding is drawn."""
    if "gap" in c:
        r = c["gap"]
        return Finding(
            "insufficient_evidence", "info",
            f"too few samples to judge the {c['metric']} gap on held-out {c['groups'][0]} ({where})",
            detail=f"in-domain n={r['n_in']}, out-of-domain n={r['n_out']} (min_n={c['min_n']}); "
                   f"gap {_fmt(r['gap'])} [{_fmt(r['gap_ci_low'])}, {_fmt(r['gap_ci_high'])}] is reported without "
                   "a verdict",
            columns=c["cols"], groups=c["groups"], value=r["gap"], ci=[r["gap_ci_low"], r["gap_ci_high"]],
            n=min(r["n_in"], r["n_out"]), score=0.0, evidence={**ev, "min_n": c["min_n"]})
    groups = c["groups"]
    shown = ", ".join(f"{g} (n={n})" for g, n in list(zip(groups, c["n"], strict=False))[:8]) + (
        " ..." if len(groups) > 8 else "")
    return Finding("insufficient_evidence", "info", f"{len(groups)} {c['by']} group(s) below min_n={c['min_n']} "
                   f"({where})", detail=f"{shown}: values are reported with intervals but get no verdict",
                   columns=c["cols"], groups=groups[:20], value=float(len(groups)), n=int(sum(c["n"])), score=0.0,
                   evidence={**ev, "min_n": c["min_n"], "n": c["n"][:50]})


def _noise(c: dict, eff: float, qv: float, ci: list, where: str, ev: dict) -> Finding | None:
    """An effect above the threshold whose q-value does not clear the bar: an info saying so (gaps and groups)."""
    kind, within = c["kind"], c.get("within")
    if kind not in ("generalization_gap", "worst_group", "group_disparity"):
        return None
    g = ", ".join(map(str, c["groups"]))
    what = {"worst_group": f"{c['by']}={g}: {c['metric']} {_fmt(eff)} below the rest",
            "group_disparity": f"{c['metric']} differs by {_fmt(eff)} across {c['by']} ({g})",
            "generalization_gap": f"{c['metric']} drop of {_fmt(eff)} on held-out {g}"}[kind]
    if within and np.isfinite(c.get("p_main", np.nan)) and c["p_main"] < Q_MAX:
        b = min(within, key=lambda r: r["effect"])
        title = (f"{what}, explained by {b['within']}: within it the {b['column']} groups differ by "
                 f"{_fmt(b['effect'])}, not distinguishable from noise ({where})")
    else:
        title = f"{what}, not distinguishable from noise ({where})"
    return Finding("insufficient_evidence", "info", title,
                   detail=f"q={_fmt(qv)} >= {Q_MAX}; 95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}]", columns=c["cols"],
                   groups=c["groups"], value=eff, ci=ci, n=c["n"], score=0.0, evidence={**ev, "would_be": kind})


def _words(c: dict, eff: float, ci: list, qv: float, note: str, where: str, ev: dict) -> tuple[str, str]:
    """Title and detail of a finding: what fired, by how much, on which evidence."""
    kind, g = c["kind"], ", ".join(map(str, c["groups"]))
    ci_txt = f"95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    if kind == "generalization_gap":
        r = c["row"]
        return (f"{c['metric']} drops by {_fmt(eff)} on held-out domain {g} "
                f"({_fmt(r['in_domain'])} -> {_fmt(r['out_domain'])}; {where})",
                f"in-domain {_fmt(r['in_domain'])} (n={r['n_in']}), out-of-domain {_fmt(r['out_domain'])} "
                f"(n={r['n_out']}); gap {ci_txt}, q={_fmt(qv)}; trained on {r['train_domains']}")
    if kind == "worst_group":
        return (f"worst {c['by']} group {g}: {c['metric']} {_fmt(c['values'][c['groups'][0]])}, {_fmt(eff)} below "
                f"the rest ({note}{where})",
                f"difference to the rest {ci_txt}, q={_fmt(qv)} (Bonferroni for picking the worst)")
    if kind == "group_disparity":
        return (f"{c['metric']} differs by {_fmt(eff)} across {c['by']} ({g}; {note}{where})",
                f"best - worst {ci_txt}, q={_fmt(qv)} ({c['n_pairs']} pairs, Bonferroni)")
    if kind == "fairness_violation":
        multi = c.get("cls") not in (None, "binary")
        title = f"{c['metric']} {_fmt(eff)} across {c['by']}" + (f" (class {c['class']})" if multi else "") \
            + f" ({where})"
        detail = (f"{ci_txt}, q={_fmt(qv)} (test of a difference above {FAIRNESS_MARGIN:g}); extreme groups: {g}")
        ev.update(margin=FAIRNESS_MARGIN)
        if multi:
            detail += (f"; the largest difference among the classes significant after Bonferroni over "
                       f"{c['n_classes']} classes and the group pairs")
            ev.update({"class": c["class"], "n_classes": c["n_classes"]})
        return title, detail
    # miscalibration
    return (f"miscalibrated: ECE {_fmt(eff)}" + (f" for {c['by']}={g}" if c["by"] != "overall" else "") + f" ({where})",
            f"{ci_txt}; one-sided test of ECE > {THRESHOLDS['miscalibration']['warning']}: q={_fmt(qv)}")
