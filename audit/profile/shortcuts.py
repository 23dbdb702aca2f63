"""Shortcuts: can the domain, the label or an attribute be predicted from cheap features?

Feature sets: ``image_stats`` (brightness, contrast, saturation, colorfulness, sharpness, entropy) and
``file_properties`` (format, extension, mode, log byte size, width, height, aspect, path depth). Model: a
depth-limited decision tree with balanced class weights, scored by 5-fold (grouped when ``group`` clusters
exist) cross-validated balanced accuracy of the pooled out-of-fold predictions, with a seeded bootstrap
interval and the chance level 1/K. Rows are sorted by sample id first, so results do not depend on row order.
At most 20,000 rows (a seeded stratified subsample) are used.

Finding when the interval's lower bound is above chance and the normalized lift
``(bacc - chance) / (1 - chance)`` is at least 0.3. Severity by what it means:

* file properties -> domain or label: critical from lift 0.6, else warning (metadata that no photo of the
  scene would share, e.g. one domain all PNG);
* file properties -> attribute: warning from lift 0.6, else info (compressed byte size follows content,
  so a visible attribute is often weakly predictable from it);
* image statistics -> domain: warning (a model can tell domains apart from global colour/contrast alone);
* image statistics -> label or attribute: info (labels and attributes are often visible by design).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.findings import Finding
from audit.profile._stats import balanced_accuracy_ci
from audit.profile.base import Check, CheckOutput, Context, register

__all__ = ["Shortcuts", "LIFT_MIN", "LIFT_CRITICAL", "MAX_ROWS", "feature_sets"]

LIFT_MIN, LIFT_CRITICAL = 0.3, 0.6
MAX_ROWS = 20_000
FOLDS = 5
IMAGE_FEATURES = ("brightness", "contrast", "saturation", "colorfulness", "sharpness", "entropy")


def feature_sets(images: pd.DataFrame, filepaths: pd.Series) -> dict[str, pd.DataFrame]:
    """The two feature matrices (one row per image)."""
    img = images[list(IMAGE_FEATURES)].astype(float).fillna(-1.0)
    cat = pd.get_dummies(
        pd.DataFrame({
            "format": images["format"].astype("string").fillna("?"),
            "ext": images["ext"].astype("string").fillna("?"),
            "mode": images["mode"].astype("string").fillna("?"),
        }),
        prefix_sep="=",
    ).astype(float)
    num = pd.DataFrame({
        "log_bytes": np.log1p(images["bytes"].astype(float).fillna(0)),
        "width": images["width"].astype(float).fillna(-1),
        "height": images["height"].astype(float).fillna(-1),
        "aspect": images["aspect"].astype(float).fillna(-1),
        "path_depth": filepaths.astype(str).str.count("/").astype(float).to_numpy(),
    }, index=images.index)
    return {"image_stats": img, "file_properties": pd.concat([cat, num], axis=1)}


@register
class Shortcuts(Check):
    name = "shortcuts"
    order = 60
    description = "cross-validated balanced accuracy of predicting domain/label/attributes from cheap features"
    requires = ("images",)

    def skip_reason(self, ctx: Context) -> str | None:
        if not [c for c in ("domain", "label", *ctx.attrs) if ctx.has(c)]:
            return "no domain, label or attribute column to predict"
        return super().skip_reason(ctx)

    def run(self, ctx: Context) -> CheckOutput:
        from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold
        from sklearn.tree import DecisionTreeClassifier

        im = ctx.images
        m = ctx.manifest
        ok = im["readable"].to_numpy(bool)
        feats = feature_sets(im, m["filepath"])
        rows, findings = [], []
        targets = [c for c in ("domain", "label", *ctx.attrs) if ctx.has(c)]
        for target in targets:
            y_all = m[target].astype("string")
            use = ok & y_all.notna().to_numpy()
            idx = np.flatnonzero(use)
            if len(idx) == 0:
                continue
            y_str = y_all.to_numpy(dtype=object, na_value=None)[idx]
            cats, y = np.unique(y_str.astype(str), return_inverse=True)
            # Classes too small for the folds are left out (recorded), not guessed.
            cnt = np.bincount(y)
            keepc = cnt >= FOLDS
            if keepc.sum() < 2:
                continue
            sel = keepc[y]
            idx, y = idx[sel], y[sel]
            dropped = [str(c) for c, k in zip(cats, keepc, strict=True) if not k]
            cats = cats[keepc]
            y = np.searchsorted(np.flatnonzero(keepc), y)
            rng = ctx.rng(f"shortcut|{target}")
            if len(idx) > MAX_ROWS:
                take = np.sort(_stratified_subsample(y, MAX_ROWS, rng))
                idx, y = idx[take], y[take]
            groups = m["group"].astype(str).to_numpy()[idx] if "group" in m.columns else None
            grouped = groups is not None and len(np.unique(groups)) < len(groups)
            seed = int(rng.integers(2**31 - 1))
            if grouped:
                try:
                    folds = list(StratifiedGroupKFold(FOLDS, shuffle=True, random_state=seed).split(idx, y, groups))
                except ValueError:
                    folds = list(GroupKFold(FOLDS).split(idx, y, groups))
            else:
                folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(idx, y))
            k = len(cats)
            chance = 1.0 / k
            for fname, X in feats.items():
                Xs = X.to_numpy(dtype=float)[idx]
                pred = np.full(len(y), -1)
                for tr, te in folds:
                    clf = DecisionTreeClassifier(max_depth=6, min_samples_leaf=5, class_weight="balanced",
                                                 random_state=seed)
                    clf.fit(Xs[tr], y[tr])
                    pred[te] = clf.predict(Xs[te])
                bacc, lo, hi = balanced_accuracy_ci(y, pred, k, int(ctx.config.n_boot), rng)
                full = DecisionTreeClassifier(max_depth=6, min_samples_leaf=5, class_weight="balanced",
                                              random_state=seed).fit(Xs, y)
                imp = pd.Series(full.feature_importances_, index=X.columns).sort_values(ascending=False)
                top = [f for f, v in imp.items() if v > 0.05][:5]
                lift = (bacc - chance) / (1 - chance)
                rows.append({"target": target, "features": fname, "balanced_accuracy": bacc, "ci_low": lo,
                             "ci_high": hi, "chance": chance, "lift": lift, "n": int(len(y)), "folds": len(folds),
                             "n_classes": k, "top_features": ", ".join(top), "grouped": grouped,
                             "dropped_classes": ", ".join(dropped)})
                f = self._finding(target, fname, bacc, lo, hi, chance, lift, len(y), top, imp, cats)
                if f is not None:
                    findings.append(f)
        cols = ["target", "features", "balanced_accuracy", "ci_low", "ci_high", "chance", "n", "folds", "lift",
                "n_classes", "top_features", "grouped", "dropped_classes"]
        return CheckOutput(tables={"shortcuts": pd.DataFrame(rows, columns=cols)}, findings=findings)

    @staticmethod
    def _finding(target, fname, bacc, lo, hi, chance, lift, n, top, imp, cats) -> Finding | None:
        if not (np.isfinite(lo) and lo > chance and lift >= LIFT_MIN):
            return None
        if fname == "file_properties":
            if target in ("domain", "label"):
                sev = "critical" if lift >= LIFT_CRITICAL else "warning"
            else:
                sev = "warning" if lift >= LIFT_CRITICAL else "info"
        else:
            sev = "warning" if target == "domain" else "info"
        feats = "file properties" if fname == "file_properties" else "image statistics"
        return Finding(
            kind="shortcut", severity=sev, n=int(n), value=float(bacc), ci=[float(lo), float(hi)], score=float(lift),
            title=f"{target} is predictable from {feats}: balanced accuracy {bacc:.2f} [{lo:.2f}, {hi:.2f}] vs "
                  f"chance {chance:.2f} (top: {', '.join(top[:3]) or 'several'})",
            detail=f"{FOLDS}-fold cross-validated decision tree; a model can learn {target} from these cheap "
                   "cues instead of the content.",
            columns=[target], groups=[fname],
            evidence={"features": fname, "chance": chance, "lift": float(lift), "top_features": top,
                      "importances": {k: round(float(v), 4) for k, v in imp.head(8).items()},
                      "classes": [str(c) for c in cats], "id_extra": fname},
        )


def _stratified_subsample(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a seeded subsample keeping class proportions (at least FOLDS per class)."""
    out = []
    frac = size / len(y)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = min(len(members), max(FOLDS, int(round(len(members) * frac))))
        out.append(rng.choice(members, size=k, replace=False))
    return np.concatenate(out)
