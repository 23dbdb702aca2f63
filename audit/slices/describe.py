"""What a slice is, in words: the known columns and image statistics that most separate it from the rest.

Categorical columns (domain, label, split, ``attr.*``): the value whose share differs most between the slice and
the rest, with the difference of shares as its effect (``+0.62``: 62 points more common inside). Image statistics
(``profile/images.parquet``: brightness, contrast, saturation, colorfulness, sharpness, entropy, noise, width,
height, bytes): Cohen's d of slice vs rest. The description lists the strongest few (|effect| >= 0.2 for shares, >= 0.5
for d), and 16 examples (errors first, then correct ones) are picked for the gallery.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["describe_slice", "lead_feature", "labeled_feature", "is_labeled", "LABELED_SHARE", "pick_examples", "KNOWN",
           "IMAGE_STATS"]

KNOWN = ("domain", "label", "split")
IMAGE_STATS = ("brightness", "contrast", "saturation", "colorfulness", "sharpness", "entropy", "noise", "width",
               "height", "bytes")


def _categorical(frame: pd.DataFrame, inside: np.ndarray) -> list[dict]:
    cols = [c for c in frame.columns if c in KNOWN or str(c).startswith("attr.")]
    out = []
    for c in cols:
        v = frame[c].astype("string").fillna("(missing)")
        if v.nunique() < 2:
            continue
        share_in = v[inside].value_counts(normalize=True)
        share_out = v[~inside].value_counts(normalize=True)
        diff = share_in.sub(share_out, fill_value=0.0)
        top = diff.abs().idxmax()
        out.append({"column": str(c), "value": str(top), "share_in": float(share_in.get(top, 0.0)),
                    "share_rest": float(share_out.get(top, 0.0)), "effect": float(diff[top]), "kind": "share"})
    return out


def _numeric(frame: pd.DataFrame, inside: np.ndarray) -> list[dict]:
    out = []
    for c in IMAGE_STATS:
        if c not in frame.columns:
            continue
        x = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64)
        a, b = x[inside & np.isfinite(x)], x[~inside & np.isfinite(x)]
        if len(a) < 3 or len(b) < 3:
            continue
        sd = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
        if not sd > 0:
            continue
        out.append({"column": c, "value": "", "mean_in": float(a.mean()), "mean_rest": float(b.mean()),
                    "effect": float((a.mean() - b.mean()) / sd), "kind": "cohen_d"})
    return out


def _strong(feats: list[dict]) -> list[dict]:
    """The features strong enough to describe a slice, in the order the description names them (a share of 1.0
    ranks with a d of 2.5)."""
    strong = [f for f in feats if abs(f["effect"]) >= (0.2 if f["kind"] == "share" else 0.5)]
    return sorted(strong, key=lambda f: -abs(f["effect"]) / (1.0 if f["kind"] == "share" else 2.5))


def lead_feature(feats: list[dict]) -> dict | None:
    """The feature the description names first (None: nothing separates the slice)."""
    strong = _strong(feats)
    return strong[0] if strong else None


#: a labeled column's value over-represented in a slice by this many points (share inside - share outside) makes the
#: slice labeled structure, whatever statistic separates it more (Cohen's d and a share are not on one scale)
LABELED_SHARE = 0.3


def labeled_feature(feats: list[dict]) -> dict | None:
    """The labeled column's value that separates the slice most, when it does so by at least LABELED_SHARE."""
    lab = [f for f in feats if f["kind"] == "share" and is_labeled(f["column"]) and abs(f["effect"]) >= LABELED_SHARE]
    return max(lab, key=lambda f: abs(f["effect"])) if lab else None


def is_labeled(column: str) -> bool:
    """A column the user already named (domain, label, split, ``attr.*``): a slice it explains is labeled
    structure, which the per-group metrics measure too."""
    return column in KNOWN or str(column).startswith("attr.")


def describe_slice(frame: pd.DataFrame, inside: np.ndarray, *, top: int = 3) -> tuple[str, list[dict]]:
    """``(one-line description, every separating feature ranked by |effect|)``; ``frame`` holds the fold's rows
    with the manifest's known columns and the profile's image statistics joined on."""
    inside = np.asarray(inside, dtype=bool)
    feats = _categorical(frame, inside) + _numeric(frame, inside)
    strong = _strong(feats)
    parts = []
    for f in strong[:top]:
        if f["kind"] == "share":
            parts.append(f"{f['column']}={f['value']} {f['share_in']:.0%} vs {f['share_rest']:.0%}")
        else:
            parts.append(f"{f['column']} {'higher' if f['effect'] > 0 else 'lower'} (d={f['effect']:+.2f})")
    text = "; ".join(parts) if parts else "no known column or image statistic separates it (an unlabeled slice)"
    feats.sort(key=lambda f: -abs(f["effect"]))
    return text, feats


def pick_examples(sample_ids: np.ndarray, correct: np.ndarray, distance: np.ndarray, n: int = 16) -> pd.DataFrame:
    """Up to ``n`` members nearest the centroid: half errors, half correct (filled from the other when short)."""
    order = np.argsort(distance, kind="stable")
    err = [i for i in order if not correct[i]]
    ok = [i for i in order if correct[i]]
    n_err = min(len(err), max(n // 2, n - len(ok)))
    pick = err[:n_err] + ok[:n - n_err]
    return pd.DataFrame({"sample_id": np.asarray(sample_ids)[pick].astype(str),
                         "correct": np.asarray(correct, dtype=bool)[pick], "rank": np.arange(len(pick))})
