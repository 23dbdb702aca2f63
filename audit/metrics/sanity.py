"""Model sanity: did the model learn anything? Compared with trivial baselines, per model, protocol, fold and seed.

A gap, a worst group or a fairness difference measured on a model that predicts the majority class (or background
everywhere) is not a property of the data: it is noise around a constant. Before any of those findings is drawn,
each trained model is compared, on its in-domain test rows (held-out rows when it has none), with

* classification: the majority-class predictor (accuracy = the largest class share) and chance (balanced accuracy
  = 1/K). The model *beats its baseline* when the lower end of its accuracy interval (Wilson) is above the
  majority share, or the lower end of its balanced-accuracy interval (row bootstrap) is above 1/K (a fold whose
  test rows hold one class only cannot be judged against these baselines: only a dead class flags it);
* segmentation: all-background (foreground IoU 0) and all-foreground (IoU = the class's pixel share). The model
  beats its baseline when the lower end of its per-class IoU interval (image bootstrap) is above both, for every
  foreground class present.

A class is *dead* when its recall (classification) or IoU (segmentation) is exactly 0 although it is present in at
least :data:`MIN_PRESENT` test samples (:data:`MIN_IMAGES` images). A model that does not beat its baseline, or
has at least half of its classes dead, is **degenerate**: one critical ``degenerate_model`` finding per model,
naming the folds, the class and the baseline, and every generalization, worst-group, fairness and calibration
finding of that model is withheld (its gaps are not interpretable; ``metrics/generalization.parquet`` says so in
``interpretable``). A model that beats its baseline but has a dead class gets a *warning* ``degenerate_model``
naming the class, and its findings stand: a false critical on a model that works would cost more trust than it
saves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.core.intervals import wilson_interval
from audit.findings import Finding

__all__ = ["MIN_PRESENT", "SANITY_COLUMNS", "model_sanity", "degenerate_findings", "WITHHELD_KINDS"]

#: a class must be present in at least this many test samples for "recall 0" / "IoU 0" to count as evidence
MIN_PRESENT = 10
#: ... and in at least this many test images for "IoU 0" (segmentation)
MIN_IMAGES = 3
#: bootstrap resamples for balanced accuracy and IoU intervals
N_BOOT = 400
#: findings not drawn from a degenerate model
WITHHELD_KINDS = frozenset({"generalization_gap", "worst_group", "group_disparity", "fairness_violation",
                            "miscalibration", "insufficient_evidence"})
SANITY_COLUMNS = ["model", "protocol", "fold", "seed", "scope", "metric", "class", "value", "ci_low", "ci_high",
                  "baseline", "baseline_name", "n", "degenerate", "status", "reason"]


def _pct(a: np.ndarray, q: float) -> float:
    a = a[np.isfinite(a)]
    return float(np.quantile(a, q)) if a.size else float("nan")


def _classify_rows(key: dict, df: pd.DataFrame, classes: list[str], rng: np.random.Generator) -> list[dict]:
    yt = df["y_true"].astype(str).to_numpy()
    yp = df["y_pred"].astype(str).to_numpy()
    present = [c for c in classes if (yt == c).any()] or sorted(set(yt))
    n = len(yt)
    idx = {c: i for i, c in enumerate(present)}
    ti = np.array([idx.get(c, -1) for c in yt])
    hit = yt == yp
    shares = np.bincount(ti[ti >= 0], minlength=len(present)) / max(n, 1)
    major = present[int(np.argmax(shares))]
    acc = float(hit.mean())
    lo, hi = wilson_interval(int(hit.sum()), n)
    k = len(present)
    chance = 1.0 / k
    # balanced accuracy and its row-bootstrap interval (one multinomial weight matrix, no Python loop per row)
    counts = np.zeros((k, 2))
    np.add.at(counts, (ti[ti >= 0], hit[ti >= 0].astype(int)), 1)
    # a row bootstrap over (class, correct) types: a multinomial draw of the 2k type counts is exactly a resample
    # of the rows, at a cost independent of n
    types = np.bincount(np.where(ti >= 0, 2 * ti + hit, 2 * k), minlength=2 * k + 1)
    w = rng.multinomial(n, types / max(n, 1), size=N_BOOT)[:, : 2 * k]  # (B, 2k)
    tot = w[:, 0::2] + w[:, 1::2]
    cor = w[:, 1::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        bal_b = np.nanmean(np.where(tot > 0, cor / tot, np.nan), axis=1)
        recall = counts[:, 1] / counts.sum(1)
    bal = float(np.nanmean(recall))
    # one class present: the majority predictor is perfect and chance is 1, so no model can beat them and "does not
    # beat its baseline" is no evidence; only a dead class (recall 0 on MIN_PRESENT samples) can flag such a fold
    beats = k < 2 or (float(lo) > shares.max()) or (_pct(bal_b, 0.025) > chance)
    rows = [
        {**key, "metric": "accuracy", "class": "", "value": acc, "ci_low": float(lo), "ci_high": float(hi),
         "baseline": float(shares.max()), "baseline_name": f"majority class {major!r}", "n": n},
        {**key, "metric": "balanced_accuracy", "class": "", "value": bal, "ci_low": _pct(bal_b, 0.025),
         "ci_high": _pct(bal_b, 0.975), "baseline": chance, "baseline_name": f"chance (1/{k})", "n": n},
    ]
    reasons = [] if beats else [
        f"accuracy {acc:.3f} [{float(lo):.3f}, {float(hi):.3f}] is not above the majority class {major!r} "
        f"({shares.max():.3f}) and balanced accuracy {bal:.3f} is not above chance ({chance:.3f})"]
    for j, c in enumerate(present):
        m = int(counts[j].sum())
        rl, rh = wilson_interval(int(counts[j, 1]), m)
        rows.append({**key, "metric": "recall", "class": c, "value": float(recall[j]), "ci_low": float(rl),
                     "ci_high": float(rh), "baseline": 0.0, "baseline_name": "never predicting the class", "n": m})
        if counts[j, 1] == 0 and m >= MIN_PRESENT:
            reasons.append(f"class {c!r} is never recognized: recall 0 of {m} (95% CI [0, {float(rh):.3f}])")
    return _close(rows, reasons, beats=beats, n_dead=len(reasons) - (not beats), n_classes=k)


def _segment_rows(key: dict, df: pd.DataFrame, classes: list[str], rng: np.random.Generator) -> list[dict]:
    n_cls = sum(1 for c in df.columns if c.startswith("inter_"))
    names = classes if len(classes) == n_cls else [str(i) for i in range(n_cls)]
    inter = np.stack([df[f"inter_{i}"].to_numpy(float) for i in range(n_cls)], 1)
    union = np.stack([df[f"union_{i}"].to_numpy(float) for i in range(n_cls)], 1)
    true = np.stack([df[f"true_{i}"].to_numpy(float) for i in range(n_cls)], 1)
    total = true.sum()
    rows, reasons = [], []
    for c in range(1, n_cls) if n_cls > 1 else range(n_cls):
        present = int((true[:, c] > 0).sum())
        if present == 0:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter[:, c].sum() / union[:, c].sum()
        boot = _image_boot(rng, inter[:, c], union[:, c])
        prior = float(true[:, c].sum() / total) if total else 0.0  # IoU of predicting class c everywhere
        lo = _pct(boot, 0.025)
        rows.append({**key, "metric": "iou", "class": names[c], "value": float(iou), "ci_low": lo,
                     "ci_high": _pct(boot, 0.975), "baseline": prior,
                     "baseline_name": f"all-background (0) / all-{names[c]} ({prior:.3f})", "n": present})
        if inter[:, c].sum() == 0 and present >= MIN_IMAGES:
            reasons.append(f"class {names[c]!r} is never segmented: IoU 0 on {present} image(s) that contain it "
                           f"(all-background baseline)")
        elif present >= MIN_IMAGES and not lo > prior:
            reasons.append(f"{names[c]!r} IoU {iou:.3f} (95% CI low {lo:.3f}) is not above predicting "
                           f"{names[c]!r} everywhere ({prior:.3f})")
    n_fg = len(rows)
    return _close(rows, reasons, beats=not reasons, n_dead=len(reasons), n_classes=max(n_fg, 1))


def _image_boot(rng: np.random.Generator, inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """IoU of ``N_BOOT`` image resamples, drawn in blocks so memory stays bounded (~40 MB) whatever the count."""
    n = len(inter)
    step = max(1, 5_000_000 // max(n, 1))
    out = []
    for start in range(0, N_BOOT, step):
        w = rng.multinomial(n, np.full(n, 1 / n), size=min(step, N_BOOT - start)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((w @ inter) / (w @ union))
    return np.concatenate(out)


def _close(rows: list[dict], reasons: list[str], *, beats: bool, n_dead: int, n_classes: int) -> list[dict]:
    """``degenerate`` when the model does not beat its baseline or at least half its classes are dead;
    ``partial`` when it beats its baseline but some present class is never recognized (a warning, gaps kept)."""
    text = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more class(es) likewise" if len(reasons) > 3 else "")
    degenerate = (not beats) or (n_dead > 0 and 2 * n_dead >= n_classes)
    status = "degenerate" if degenerate else ("partial" if n_dead else "ok")
    for r in rows:
        r["degenerate"] = degenerate
        r["status"] = status
        r["reason"] = text
    return rows


def model_sanity(test: pd.DataFrame, task: str, classes: list[str], *, seed: int = 0) -> pd.DataFrame:
    """One row per (model, protocol, fold, seed, metric[, class]) with value, interval, baseline, degenerate flag.

    ``test`` is the test rows of the predictions table. Scope ``id`` (in-domain) when a fold has in-domain test rows,
    else ``all``.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    keys = ["model", "protocol", "fold", "seed"]
    t = test.copy()
    if "seed" not in t.columns:
        t["seed"] = 0
    for vals, g in t.groupby([t[k].astype(str) for k in keys], sort=True):
        inside = g[~g["held_out"].astype(bool)]
        scope, sdf = ("id", inside) if len(inside) else ("all", g)
        key = dict(zip(keys, vals, strict=True)) | {"scope": scope}
        key["seed"] = int(key["seed"]) if str(key["seed"]).lstrip("-").isdigit() else key["seed"]
        fn = _classify_rows if task == "classify" else _segment_rows
        rows.extend(fn(key, sdf, classes, rng))
    return pd.DataFrame(rows, columns=SANITY_COLUMNS)


def degenerate_findings(sanity: pd.DataFrame) -> tuple[list[Finding], set[str]]:
    """One critical ``degenerate_model`` finding per degenerate model (its gap findings are then withheld), one
    warning per model that only misses some classes (gaps kept), and the set of degenerate model names."""
    out: list[Finding] = []
    models: set[str] = set()
    for (model, protocol), g in sanity[sanity["status"] != "ok"].groupby(["model", "protocol"], sort=True):
        every = sanity[(sanity["model"] == model) & (sanity["protocol"] == protocol)].drop_duplicates(["fold", "seed"])
        crit = g[g["degenerate"]]
        part = crit if len(crit) else g
        folds = part.drop_duplicates(["fold", "seed"])
        first = folds.iloc[0]
        where = ", ".join(f"{r.fold} (seed {r.seed})" for r in folds.itertuples())
        head = part[part["metric"].isin(["accuracy", "iou"])].iloc[0]
        ev = {"model": str(model), "protocol": str(protocol), "folds": folds["fold"].tolist(),
              "baseline": float(head.baseline), "baseline_name": str(head.baseline_name), "reason": str(first.reason),
              "min_present": MIN_PRESENT, "id_extra": f"{model}|{protocol}"}
        if len(crit):
            models.add(str(model))
            title = (f"{model} learned nothing usable in {len(folds)} of {len(every)} fold(s): gaps and group "
                     f"findings of this model are withheld")
            detail = (f"{where}: {first.reason}. Train longer, use a pretrained backbone or a loss for rare classes; "
                      f"the generalization, fairness and worst-group numbers of this model are not interpretable.")
            severity = "critical"
        else:
            title = f"{model} never recognizes some classes in {len(folds)} of {len(every)} fold(s)"
            detail = (f"{where}: {first.reason}. The model beats its baseline otherwise, so its gaps are reported; "
                      f"numbers for these classes mean little.")
            severity = "warning"
        out.append(Finding("degenerate_model", severity, title, detail=detail, columns=["model"], groups=[str(model)],
                           value=float(head.value), ci=[float(head.ci_low), float(head.ci_high)], n=int(head.n),
                           score=1.0 if len(crit) else 0.5, evidence=ev))
    return out, models
