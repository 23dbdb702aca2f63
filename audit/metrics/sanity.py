"""Model sanity: did the model learn anything? Compared with trivial baselines, per model, protocol, fold and seed.

A gap, a worst group or a fairness difference measured on a model that predicts the majority class (or background
everywhere) is not a property of the data: it is noise around a constant. Before any of those findings is drawn,
each trained model is compared, on its in-domain test rows (held-out rows when it has none), with

* classification: the majority-class predictor (accuracy = the largest class share) and chance (balanced accuracy
  = 1/K). The model *beats its baseline* when the lower end of its accuracy interval (Wilson) is above the
  majority share, or the lower end of its balanced-accuracy interval (row bootstrap) is above 1/K (a fold whose
  test rows hold one class only cannot be judged against these baselines: only a dead class flags it);
* segmentation: all-background (foreground IoU 0), all-foreground (IoU = the class's pixel share) and, when the
  training masks are known (``prior=``, from :func:`pixel_prior` / :func:`prior_counts`: the train stage passes
  them), the *per-pixel prior*: at every pixel of the prediction grid, the class most frequent there in the fold's
  training masks (for a binary task: foreground where at least half of the training masks are foreground), the
  "average layout" a model can predict without looking at the image. The model beats its baseline when the lower
  end of its per-class IoU interval (image bootstrap) is above the largest of them, for every foreground class
  present.

A class is *dead* when its recall (classification) or IoU (segmentation) is exactly 0 although it is present in at
least :data:`MIN_PRESENT` test samples (:data:`MIN_IMAGES` images; below those counts a 0 is no evidence). A model
that does not beat its baseline, **or** has a dead class, is **degenerate** (issue 25): one critical
``degenerate_model`` finding per model, naming the folds, the class (how often present, 0 recognized) and the
baseline with its interval, and every generalization, worst-group, fairness and calibration finding of that model
is withheld (its gaps are not interpretable; ``metrics/generalization.parquet`` says so in ``interpretable``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.core.intervals import wilson_interval
from audit.findings import Finding

__all__ = ["MIN_PRESENT", "SANITY_COLUMNS", "model_sanity", "degenerate_findings", "WITHHELD_KINDS", "pixel_prior",
           "prior_counts", "PRIOR_KEYS"]

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
                  "baseline", "baseline_name", "n", "degenerate", "status", "reason", "baseline_ci_low",
                  "baseline_ci_high"]
#: the columns that join a :func:`prior_counts` table to the test rows
PRIOR_KEYS = ["model", "protocol", "fold", "seed", "sample_id"]
#: mask value of unlabelled pixels (audit.io.tensor_cache.IGNORE_INDEX)
IGNORE = 255


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
    blo, bhi = wilson_interval(int(round(shares.max() * n)), n)  # the majority share measured on these rows
    rows = [
        {**key, "metric": "accuracy", "class": "", "value": acc, "ci_low": float(lo), "ci_high": float(hi),
         "baseline": float(shares.max()), "baseline_name": f"majority class {major!r}", "n": n,
         "baseline_ci_low": float(blo), "baseline_ci_high": float(bhi)},
        {**key, "metric": "balanced_accuracy", "class": "", "value": bal, "ci_low": _pct(bal_b, 0.025),
         "ci_high": _pct(bal_b, 0.975), "baseline": chance, "baseline_name": f"chance (1/{k})", "n": n,
         "baseline_ci_low": chance, "baseline_ci_high": chance},
    ]
    versus = (f"accuracy {acc:.3f} [{float(lo):.3f}, {float(hi):.3f}] vs the majority class {major!r} "
              f"{shares.max():.3f} [{float(blo):.3f}, {float(bhi):.3f}]")
    reasons = [] if beats else [
        f"{versus}: not above it, and balanced accuracy {bal:.3f} [{_pct(bal_b, 0.025):.3f}, "
        f"{_pct(bal_b, 0.975):.3f}] is not above chance ({chance:.3f})"]
    for j, c in enumerate(present):
        m = int(counts[j].sum())
        rl, rh = wilson_interval(int(counts[j, 1]), m)
        rows.append({**key, "metric": "recall", "class": c, "value": float(recall[j]), "ci_low": float(rl),
                     "ci_high": float(rh), "baseline": 0.0, "baseline_name": "never predicting the class", "n": m,
                     "baseline_ci_low": 0.0, "baseline_ci_high": 0.0})
        if counts[j, 1] == 0 and m >= MIN_PRESENT:
            reasons.append(f"class {c!r} is never recognized: present in {m} test samples, 0 recognized (recall 0, "
                           f"95% CI [0, {float(rh):.3f}]; {versus})")
    return _close(rows, reasons, beats=beats, n_dead=len(reasons) - (not beats))


def _segment_rows(key: dict, df: pd.DataFrame, classes: list[str], rng: np.random.Generator) -> list[dict]:
    n_cls = sum(1 for c in df.columns if c.startswith("inter_"))
    names = classes if len(classes) == n_cls else [str(i) for i in range(n_cls)]
    inter = np.stack([df[f"inter_{i}"].to_numpy(float) for i in range(n_cls)], 1)
    union = np.stack([df[f"union_{i}"].to_numpy(float) for i in range(n_cls)], 1)
    true = np.stack([df[f"true_{i}"].to_numpy(float) for i in range(n_cls)], 1)
    has_prior = all(f"prior_inter_{i}" in df.columns for i in range(n_cls)) and \
        not df[[f"prior_inter_{i}" for i in range(n_cls)]].isna().any().any()
    total = true.sum(1)  # labelled pixels per image
    rows, reasons = [], []
    for c in range(1, n_cls) if n_cls > 1 else range(n_cls):
        present = int((true[:, c] > 0).sum())
        if present == 0:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter[:, c].sum() / union[:, c].sum()
        # one set of image resamples for the model and its baselines: the same images in each draw
        pairs = [(inter[:, c], union[:, c]), (true[:, c], total)]  # model; all-c (IoU = the class's share)
        if has_prior:
            pairs.append((df[f"prior_inter_{c}"].to_numpy(float), df[f"prior_union_{c}"].to_numpy(float)))
        boots = _image_boot(rng, pairs)
        lo = _pct(boots[0], 0.025)
        share = float(true[:, c].sum() / total.sum()) if total.sum() else 0.0  # IoU of predicting c everywhere
        cands = [(share, boots[1], f"all-{names[c]}")]
        if has_prior:
            pi, pu = pairs[2][0].sum(), pairs[2][1].sum()
            cands.append((float(pi / pu) if pu else 0.0, boots[2], "per-pixel prior of the training masks"))
        base, bboot, bname = max(cands, key=lambda t: t[0])
        blo, bhi = _pct(bboot, 0.025), _pct(bboot, 0.975)
        if not np.isfinite(blo):
            blo = bhi = base
        name = f"all-background (0) / all-{names[c]} ({share:.3f})" + \
            (f" / per-pixel prior ({cands[1][0]:.3f})" if has_prior else "")
        rows.append({**key, "metric": "iou", "class": names[c], "value": float(iou), "ci_low": lo,
                     "ci_high": _pct(boots[0], 0.975), "baseline": base, "baseline_name": name, "n": present,
                     "baseline_ci_low": blo, "baseline_ci_high": bhi})
        versus = f"best baseline: {bname} IoU {base:.3f} [{blo:.3f}, {bhi:.3f}]; all-background IoU 0"
        if inter[:, c].sum() == 0 and present >= MIN_IMAGES:
            reasons.append(f"class {names[c]!r} is never segmented: present in {present} test image(s) "
                           f"({int(true[:, c].sum())} pixels), 0 pixels recognized (IoU 0; {versus})")
        elif present >= MIN_IMAGES and not lo > base:
            reasons.append(f"{names[c]!r} IoU {iou:.3f} [{lo:.3f}, {_pct(boots[0], 0.975):.3f}] is not above the "
                           f"{versus}")
    return _close(rows, reasons, beats=not reasons, n_dead=len(reasons))


def _image_boot(rng: np.random.Generator, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Ratios ``sum(num) / sum(den)`` of ``N_BOOT`` image resamples, one array per ``(num, den)`` pair, all on the
    same resamples; drawn in blocks so memory stays bounded (~40 MB) whatever the count."""
    n = len(pairs[0][0])
    step = max(1, 5_000_000 // max(n, 1))
    out: list[list[np.ndarray]] = [[] for _ in pairs]
    for start in range(0, N_BOOT, step):
        w = rng.multinomial(n, np.full(n, 1 / n), size=min(step, N_BOOT - start)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            for o, (num, den) in zip(out, pairs, strict=True):
                o.append((w @ num) / (w @ den))
    return [np.concatenate(o) for o in out]


def pixel_prior(train_masks, n_classes: int) -> np.ndarray:
    """The per-pixel prior of a fold's training masks (``[N, H, W]`` class indices, :data:`IGNORE` unlabelled, at
    the prediction resolution): at each pixel the class most frequent there (ties and pixels no mask labels go to
    background, class 0). For a binary task: foreground where more than half of the labelled training masks are
    foreground, the 0.5 threshold of the foreground frequency map. Returns the ``[H, W]`` index map."""
    m = np.asarray(train_masks)
    if m.ndim != 3 or not len(m):
        raise ValueError("pixel_prior needs a non-empty [N, H, W] stack of training masks")
    freq = np.stack([(m == c).sum(0) for c in range(n_classes)])  # [C, H, W] counts
    return freq.argmax(0).astype(np.int64)  # argmax takes the first of equal counts: background wins ties


def prior_counts(prior: np.ndarray, test_masks, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image ``(inter, union)`` ``[M, C]`` of predicting the ``prior`` map (:func:`pixel_prior`) on each test
    mask (``[M, H, W]``, same grid; :data:`IGNORE` pixels left out)."""
    t = np.asarray(test_masks)
    valid = t != IGNORE
    inter = np.zeros((len(t), n_classes), np.int64)
    union = np.zeros((len(t), n_classes), np.int64)
    for c in range(n_classes):
        pc, tc = (prior == c)[None] & valid, (t == c) & valid
        inter[:, c] = (pc & tc).sum((1, 2))
        union[:, c] = (pc | tc).sum((1, 2))
    return inter, union


def _close(rows: list[dict], reasons: list[str], *, beats: bool, n_dead: int) -> list[dict]:
    """``degenerate`` when the model does not beat its baseline or a class present in enough test samples is never
    recognized (issue 25: one dead class is enough; the minimum-support thresholds keep that evidence strong)."""
    text = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more class(es) likewise" if len(reasons) > 3 else "")
    degenerate = (not beats) or n_dead > 0
    status = "degenerate" if degenerate else "ok"
    for r in rows:
        r["degenerate"] = degenerate
        r["status"] = status
        r["reason"] = text
    return rows


def model_sanity(test: pd.DataFrame, task: str, classes: list[str], *, seed: int = 0,
                 prior: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (model, protocol, fold, seed, metric[, class]) with value, interval, baseline, degenerate flag.

    ``test`` is the test rows of the predictions table. Scope ``id`` (in-domain) when a fold has in-domain test rows,
    else ``all``. ``prior`` (segmentation, optional): per test image the ``prior_inter_<c>`` / ``prior_union_<c>``
    counts of the per-pixel prior baseline (:func:`prior_counts`), keyed by :data:`PRIOR_KEYS`.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    keys = ["model", "protocol", "fold", "seed"]
    t = test.copy()
    if "seed" not in t.columns:
        t["seed"] = 0
    if prior is not None and len(prior) and task == "segment":
        pcols = [c for c in prior.columns if c.startswith("prior_")]
        left = t[PRIOR_KEYS].astype(str)
        right = prior[PRIOR_KEYS].astype(str).assign(**{c: prior[c].to_numpy() for c in pcols})
        t = t.drop(columns=[c for c in pcols if c in t.columns])
        t[pcols] = left.merge(right, on=PRIOR_KEYS, how="left")[pcols].to_numpy()
    for vals, g in t.groupby([t[k].astype(str) for k in keys], sort=True):
        inside = g[~g["held_out"].astype(bool)]
        scope, sdf = ("id", inside) if len(inside) else ("all", g)
        key = dict(zip(keys, vals, strict=True)) | {"scope": scope}
        key["seed"] = int(key["seed"]) if str(key["seed"]).lstrip("-").isdigit() else key["seed"]
        fn = _classify_rows if task == "classify" else _segment_rows
        rows.extend(fn(key, sdf, classes, rng))
    return pd.DataFrame(rows, columns=SANITY_COLUMNS)


def degenerate_findings(sanity: pd.DataFrame) -> tuple[list[Finding], set[str]]:
    """One critical ``degenerate_model`` finding per degenerate model (its gap findings are then withheld) and the
    set of degenerate model names."""
    out: list[Finding] = []
    models: set[str] = set()
    bad = sanity[sanity["degenerate"].astype(bool)] if len(sanity) else sanity
    for (model, protocol), g in bad.groupby(["model", "protocol"], sort=True):
        every = sanity[(sanity["model"] == model) & (sanity["protocol"] == protocol)].drop_duplicates(["fold", "seed"])
        folds = g.drop_duplicates(["fold", "seed"])
        first = folds.iloc[0]
        where = ", ".join(f"{r.fold} (seed {r.seed})" for r in folds.itertuples())
        head = g[g["metric"].isin(["accuracy", "iou"])].iloc[0]
        bci = [_num(head.get("baseline_ci_low")), _num(head.get("baseline_ci_high"))]
        ev = {"model": str(model), "protocol": str(protocol), "folds": folds["fold"].tolist(),
              "baseline": float(head.baseline), "baseline_ci": bci, "baseline_name": str(head.baseline_name),
              "reason": str(first.reason), "min_present": MIN_PRESENT, "min_images": MIN_IMAGES,
              "id_extra": f"{model}|{protocol}"}
        models.add(str(model))
        title = (f"{model} learned nothing usable in {len(folds)} of {len(every)} fold(s): gaps and group "
                 f"findings of this model are withheld")
        detail = (f"{where}: {first.reason}. Train longer, use a pretrained backbone or a loss for rare classes; "
                  f"the generalization, fairness and worst-group numbers of this model are not interpretable.")
        out.append(Finding("degenerate_model", "critical", title, detail=detail, columns=["model"],
                           groups=[str(model)], value=float(head.value), ci=[float(head.ci_low), float(head.ci_high)],
                           n=int(head.n), score=1.0, evidence=ev))
    return out, models


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None
