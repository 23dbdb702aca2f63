"""Synthetic run directories for the dashboard tests, written column by column per docs/formats.md.

``build_run(out, kind)`` writes a classification, segmentation or profile-only run with real small PNG
files (so thumbnails load), every table a page reads, and user-controlled strings that must be escaped
(an attribute value holding HTML, a domain holding markdown). ``build_big_run`` writes a 1,000,000-row
manifest / images / predictions run without image files, for the responsiveness check.

The tests at the bottom check that the synthetic tables carry the documented columns, so the fixture
cannot silently drift from the contract the real stages follow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.rundir import RunDir

HTML_ATTR = "<img src=x onerror=alert(1)>"
MD_DOMAIN = "**bold**_site"
DOMAINS = ["alpha", "beta", MD_DOMAIN]
CLASSES = ["cat", "dog", "owl"]
SEG_CLASSES = ["background", "road", "car"]


def _wilson(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = 1.959964
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        den = 1 + z**2 / n
        mid = (p + z**2 / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / den
    return mid - half, mid + half


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def _manifest(n: int, rng: np.random.Generator, *, seg: bool) -> pd.DataFrame:
    dom = rng.choice(DOMAINS, size=n, p=[0.45, 0.4, 0.15])
    df = pd.DataFrame(
        {
            "sample_id": [f"img_{i:04d}" for i in range(n)],
            "filepath": [f"images/{i:04d}.png" for i in range(n)],
        }
    )
    if seg:
        df["mask"] = [f"masks/{i:04d}.png" for i in range(n)]
    else:
        df["label"] = rng.choice(CLASSES, size=n, p=[0.5, 0.35, 0.15])
    df["split"] = rng.choice(["train", "val", "test"], size=n, p=[0.6, 0.2, 0.2])
    df["domain"] = dom
    df["group"] = [f"g{i // 3}" for i in range(n)]
    df["attr.background"] = rng.choice(["warm", "cool", HTML_ATTR], size=n, p=[0.5, 0.45, 0.05])
    for c in df.columns:
        df[c] = df[c].astype("string")
    # one sample with a missing attribute: stays missing, never becomes a group called "nan"
    df.loc[5, "attr.background"] = pd.NA
    return df


def _images(df: pd.DataFrame, root: Path, rng: np.random.Generator, *, seg: bool, write_files: bool) -> pd.DataFrame:
    n = len(df)
    bright = rng.normal(120, 20, n) + np.where(df["domain"] == "beta", 25, 0)
    rows = {
        "sample_id": df["sample_id"].astype(str),
        "filepath": df["filepath"].astype(str),
        "readable": np.ones(n, dtype=bool),
        "error": pd.Series([None] * n, dtype="string"),
        "format": "PNG",
        "ext": "png",
        "ext_mismatch": False,
        "width": 24,
        "height": 24,
        "aspect": 1.0,
        "mode": "RGB",
        "channels": 3,
        "bit_depth": 8,
        "bytes": rng.integers(600, 2000, n),
        "exif_orientation": pd.Series([None] * n, dtype="Int64"),
        "brightness": bright,
        "contrast": rng.normal(40, 8, n),
        "saturation": rng.uniform(0, 1, n),
        "colorfulness": rng.uniform(0, 80, n),
        "sharpness": rng.gamma(2, 50, n),
        "entropy": rng.uniform(4, 7.5, n),
        "md5": [f"{i:032x}" for i in range(n)],
        "pixel_md5": [f"{i:032x}" for i in range(n)],
        "phash": rng.integers(-(2**62), 2**62, n, dtype=np.int64),
    }
    out = pd.DataFrame(rows)
    out.loc[3, ["readable", "error"]] = [False, "truncated"]
    out.loc[4, ["readable", "error"]] = [False, "missing_file"]
    if seg:
        out["mask_readable"] = True
        out["mask_error"] = pd.Series([None] * n, dtype="string")
        out["mask_width"], out["mask_height"] = 24, 24
        out["mask_classes"] = "0,1,2"
        out["mask_empty"] = False
        out.loc[7, ["mask_readable", "mask_error"]] = [False, "size_mismatch"]
    if write_files:
        colours = {"warm": (236, 196, 150), "cool": (150, 190, 232)}
        for i, (rel, bg) in enumerate(zip(df["filepath"], df["attr.background"], strict=True)):
            if i == 4:
                continue  # the missing file
            base = np.array(colours.get(str(bg), (200, 200, 200)), dtype=np.float32)
            arr = np.clip(base + rng.normal(0, 12, (24, 24, 3)), 0, 255).astype(np.uint8)
            arr[6:18, 9:15] = (30, 30, 30)
            if i == 3:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(b"\x89PNG\r\n\x1a\n")  # truncated
            else:
                _png(root / rel, arr)
            if seg:
                m = np.zeros((24, 24), dtype=np.uint8)
                m[6:18, 9:15] = 1 + (i % 2)
                _png(root / df["mask"].iloc[i], m)
    return out


def _distribution(df: pd.DataFrame, cols: list[str], min_n: int) -> pd.DataFrame:
    rows = []
    n = len(df)
    for c in cols:
        parts = c.split(" x ")
        if len(parts) == 1:
            vc = df[c].value_counts(dropna=False)
            for g, k in vc.items():
                rows.append((c, None if g is pd.NA else str(g), int(k)))
        else:
            a, b = parts
            vc = df.groupby([a, b], dropna=False).size()
            for (ga, gb), k in vc.items():
                rows.append((c, f"{ga} | {gb}", int(k)))
    out = pd.DataFrame(rows, columns=["column", "group", "n"])
    out["group"] = out["group"].astype("string")
    out["share"] = out["n"] / n
    out["status"] = np.where(out["n"] == 0, "empty", np.where(out["n"] < min_n, "under_min_n", "ok"))
    return out


def _profile_tables(run: RunDir, df: pd.DataFrame, images: pd.DataFrame, *, seg: bool, min_n: int = 30) -> None:
    single = [c for c in ("label", "domain", "split", "attr.background") if c in df.columns]
    inter = ["domain x attr.background"] + (["label x attr.background", "domain x label"] if not seg else [])
    dist = _distribution(df, single + inter, min_n)
    run.write_table("profile/images.parquet", images)
    run.write_table("profile/distribution.parquet", dist)
    imb = []
    for c in single:
        d = dist[dist["column"] == c]
        imb.append(
            (
                c,
                len(d),
                d["n"].max() / d["n"].min(),
                0.9,
                float(d["n"].min() * len(d)),
                str(d.loc[d["n"].idxmin(), "group"]),
                str(d.loc[d["n"].idxmax(), "group"]),
            )
        )
    run.write_table(
        "profile/imbalance.parquet",
        pd.DataFrame(
            imb,
            columns=[
                "column",
                "n_groups",
                "imbalance_ratio",
                "normalized_entropy",
                "effective_n",
                "min_group",
                "max_group",
            ],
        ),
    )
    pairs = (
        [
            ("label", "attr.background", None, 0.41),
            ("domain", "attr.background", None, 0.12),
            ("label", "domain", None, 0.08),
            ("label", "attr.background", "alpha", 0.55),
        ]
        if not seg
        else [("domain", "attr.background", None, 0.1)]
    )
    run.write_table(
        "profile/associations.parquet",
        pd.DataFrame(
            [
                {
                    "a": a,
                    "b": b,
                    "within": w,
                    "stat": "cramers_v",
                    "value": v,
                    "ci_low": v - 0.06,
                    "ci_high": v + 0.06,
                    "chi2": 50 * v,
                    "dof": 2,
                    "p": 1e-4 * v**40,
                    "q": 3e-4 * v**40,
                    "nmi": v / 2,
                    "n": len(df),
                }  # tiny p too
                for a, b, w, v in pairs
            ]
        ).astype({"within": "string"}),
    )
    run.write_table(
        "profile/residuals.parquet",
        pd.DataFrame([{"a": "label", "b": "attr.background", "within": None, "a_value": "cat", "b_value": "warm",
                       "observed": 40, "expected": 25.0, "std_residual": 3.0, "lift": 1.6}]),
    )
    shift = []
    for stat in ("brightness", "contrast"):
        for d in DOMAINS:
            shift.append({"by": "domain", "group": d, "statistic": stat, "effect": 0.8 if d == "beta" else -0.2,
                          "ks": 0.3, "p": 0.001, "q": 0.004, "n": int((df["domain"] == d).sum())})
    run.write_table("profile/image_stats_shift.parquet", pd.DataFrame(shift))
    run.write_table(
        "profile/duplicates.parquet",
        pd.DataFrame(
            {
                "a": ["img_0010", "img_0012", "img_0020"],
                "b": ["img_0011", "img_0013", "img_0004"],
                "kind": ["exact", "near", "exact"],
                "distance": [0, 4, 0],
                "cross_split": [True, False, True],
                "label_conflict": [True, False, False],
            }
        ),
    )
    run.write_table(
        "profile/shortcuts.parquet",
        pd.DataFrame(
            [
                {
                    "target": "domain",
                    "features": "image_stats",
                    "balanced_accuracy": 0.81,
                    "ci_low": 0.75,
                    "ci_high": 0.86,
                    "chance": 1 / 3,
                    "n": len(df),
                    "folds": 5,
                },
                {
                    "target": "domain",
                    "features": "file_properties",
                    "balanced_accuracy": 0.36,
                    "ci_low": 0.3,
                    "ci_high": 0.42,
                    "chance": 1 / 3,
                    "n": len(df),
                    "folds": 5,
                },
                # a visible attribute predictable from pixels: expected, not a shortcut warning
                {
                    "target": "attr.background",
                    "features": "image_stats",
                    "balanced_accuracy": 0.95,
                    "ci_low": 0.93,
                    "ci_high": 0.96,
                    "chance": 1 / 3,
                    "n": len(df),
                    "folds": 5,
                },
            ]
        ),
    )


def _classify_predictions(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for held in DOMAINS:
        test = df[(df["split"] == "test") | (df["domain"] == held)]
        for _, r in test.iterrows():
            out_dom = r["domain"] == held
            p_right = 0.55 if out_dom else 0.85
            right = rng.random() < p_right
            y_true = str(r["label"])
            y_pred = y_true if right else str(rng.choice([c for c in CLASSES if c != y_true]))
            probs = rng.dirichlet(np.ones(len(CLASSES)))
            conf = float(rng.uniform(0.4, 0.99))
            probs = probs * (1 - conf) / probs.sum()
            probs[CLASSES.index(y_pred)] = conf
            rows.append(
                {
                    "sample_id": r["sample_id"],
                    "model": "resnet18",
                    "protocol": "lodo",
                    "fold": f"holdout={held}",
                    "seed": 0,
                    "role": "test",
                    "held_out": bool(out_dom),
                    "train_domains": "|".join(d for d in DOMAINS if d != held),
                    "test_domain": r["domain"],
                    "y_true": y_true,
                    "y_pred": y_pred,
                    "confidence": conf,
                    **{f"p_{c}": float(p) for c, p in zip(CLASSES, probs, strict=True)},
                }
            )
    return pd.DataFrame(rows)


def _seg_predictions(df: pd.DataFrame, run: RunDir, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for held in DOMAINS:
        test = df[(df["split"] == "test") | (df["domain"] == held)]
        for i, r in test.iterrows():
            pred_rel = f"predictions/masks/{held.replace('*', '_')}/{r['sample_id']}.png"
            m = np.zeros((24, 24), dtype=np.uint8)
            m[7:19, 9:16] = 1 + (int(i) % 2)
            if not (run.path / pred_rel).exists():
                _png(run.path / pred_rel, m)
            row = {
                "sample_id": r["sample_id"],
                "model": "unet_small",
                "protocol": "lodo",
                "fold": f"holdout={held}",
                "seed": 0,
                "role": "test",
                "held_out": r["domain"] == held,
                "train_domains": "|".join(d for d in DOMAINS if d != held),
                "test_domain": r["domain"],
                "pixel_acc": float(rng.uniform(0.7, 0.99)),
                "pred_mask": pred_rel,
            }
            for c in range(3):
                union = int(rng.integers(20, 200)) if c != 2 or i % 2 else 0
                row.update({f"inter_{c}": int(union * rng.uniform(0.3, 0.95)), f"union_{c}": union,
                            f"pred_{c}": union, f"true_{c}": union})
            rows.append(row)
    return pd.DataFrame(rows)


def _metrics_tables(run: RunDir, df: pd.DataFrame, pred: pd.DataFrame, *, seg: bool, min_n: int = 30) -> None:
    model = pred["model"].iloc[0]
    metric = "miou" if seg else "accuracy"
    p = pred.merge(df.drop(columns=["split"]), on="sample_id", how="left", suffixes=("", "_m"))
    if seg:
        p["_score"] = (p["inter_1"] / p["union_1"].where(p["union_1"] > 0)).fillna(0.5)
    else:
        p["_score"] = (p["y_true"] == p["y_pred"]).astype(float)
    rows = []
    for fold in ["all", *sorted(p["fold"].unique())]:
        pf = p if fold == "all" else p[p["fold"] == fold]
        for scope, ps in (("ood", pf[pf["held_out"]]), ("id", pf[~pf["held_out"]]), ("all", pf)):
            bys = [("overall", pd.Series("all", index=ps.index))]
            for c in ("domain", "attr.background") + (() if seg else ("label",)):
                bys.append((c, ps[c].astype("string")))
            bys.append(
                (
                    "domain x attr.background",
                    ps["domain"].astype(str) + " | " + ps["attr.background"].astype("string").fillna("(missing)"),
                )
            )
            for by, keys in bys:
                grouped = ps.groupby(keys.fillna("(missing)"))["_score"].agg(["sum", "count"])
                for g, r in grouped.iterrows():
                    k, n = float(r["sum"]), int(r["count"])
                    lo, hi = _wilson(np.array(k), np.array(n))
                    rows.append(
                        {
                            "model": model,
                            "protocol": "lodo",
                            "fold": fold,
                            "scope": scope,
                            "by": by,
                            "group": str(g),
                            "metric": metric,
                            "value": k / n,
                            "ci_low": float(lo),
                            "ci_high": float(hi),
                            "n": n,
                            "status": "ok" if n >= min_n else "insufficient_evidence",
                        }
                    )
                    if not seg:
                        rows.append(
                            {
                                "model": model,
                                "protocol": "lodo",
                                "fold": fold,
                                "scope": scope,
                                "by": by,
                                "group": str(g),
                                "metric": "ece",
                                "value": 0.08 + 0.1 * (k / n < 0.7),
                                "ci_low": 0.03,
                                "ci_high": 0.2,
                                "n": n,
                                "status": "ok" if n >= min_n else "insufficient_evidence",
                            }
                        )
    # an empty group: NaN, never 0
    rows.append({"model": model, "protocol": "lodo", "fold": "all", "scope": "ood", "by": "domain", "group": "gamma",
                 "metric": metric, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0, "status": "empty"})
    run.write_table("metrics/groups.parquet", pd.DataFrame(rows))
    gen = []
    for held in DOMAINS:
        pf = p[p["fold"] == f"holdout={held}"]
        i, o = pf[~pf["held_out"]]["_score"], pf[pf["held_out"]]["_score"]
        gen.append(
            {
                "model": model,
                "protocol": "lodo",
                "fold": f"holdout={held}",
                "train_domains": "|".join(d for d in DOMAINS if d != held),
                "test_domain": held,
                "metric": metric,
                "in_domain": i.mean(),
                "in_ci_low": max(0, i.mean() - 0.05),
                "in_ci_high": min(1, i.mean() + 0.05),
                "n_in": len(i),
                "out_domain": o.mean(),
                "out_ci_low": max(0, o.mean() - 0.06),
                "out_ci_high": min(1, o.mean() + 0.06),
                "n_out": len(o),
                "gap": i.mean() - o.mean(),
                "gap_ci_low": i.mean() - o.mean() - 0.08,
                "gap_ci_high": i.mean() - o.mean() + 0.08,
                "seeds": 1,
            }
        )
    run.write_table("metrics/generalization.parquet", pd.DataFrame(gen))
    run.write_table(
        "metrics/transfer.parquet",
        pd.DataFrame(
            [
                {
                    "model": model,
                    "train_domain": a,
                    "test_domain": b,
                    "metric": metric,
                    "value": 0.9 if a == b else 0.6,
                    "ci_low": 0.85 if a == b else 0.5,
                    "ci_high": 0.95 if a == b else 0.7,
                    "n": 40,
                }
                for a in DOMAINS
                for b in DOMAINS
            ]
        ),
    )
    if not seg:
        # like the metrics stage: domain rows first in file order, attribute rows after, the most serious one
        # (attr.background eo_diff, interval [0.4, 0.7]) neither first nor largest by value alone
        fair = [
            ("domain", "dp_diff", "macro", 0.30, 0.02, 0.58, 0.04),
            ("domain", "dp_ratio", "macro", 0.7, 0.5, 0.9, np.nan),
            ("attr.background", "dp_diff", "macro", 0.12, 0.07, 0.17, 1e-3),
            ("attr.background", "dp_ratio", "macro", 0.8, 0.75, 0.85, np.nan),
            ("attr.background", "eo_diff", "cat", 0.62, 0.40, 0.70, 3e-120),
            ("attr.background", "eo_diff", "macro", 0.2, 0.15, 0.25, 2e-6),
        ]
        run.write_table(
            "metrics/fairness.parquet",
            pd.DataFrame(
                [
                    {
                        "model": model,
                        "protocol": "lodo",
                        "fold": "all",
                        "scope": sc,
                        "attribute": a,
                        "metric": m,
                        "class": c,
                        "value": v,
                        "ci_low": lo,
                        "ci_high": hi,
                        "n": len(p),
                        "p": pv,
                    }
                    for sc in ("ood", "id", "all")
                    for a, m, c, v, lo, hi, pv in fair
                ]
            ),
        )
        cal = []
        for scope, ps in (("ood", p[p["held_out"]]), ("id", p[~p["held_out"]]), ("all", p)):
            for by, col in (("overall", None), ("domain", "domain")):
                keys = pd.Series("all", index=ps.index) if col is None else ps[col]
                for g, pg in ps.groupby(keys):
                    b = np.minimum((pg["confidence"] * 10).astype(int), 9)
                    for k, pb in pg.groupby(b):
                        cal.append(
                            {
                                "model": model,
                                "protocol": "lodo",
                                "fold": "all",
                                "scope": scope,
                                "by": by,
                                "group": str(g),
                                "bin": int(k),
                                "confidence": float(pb["confidence"].mean()),
                                "accuracy": float(pb["_score"].mean()),
                                "count": len(pb),
                            }
                        )
        run.write_table("metrics/calibration.parquet", pd.DataFrame(cal))


def _findings(*, model: bool, seg: bool) -> list[dict]:
    f = [
        {
            "kind": "label_attribute_association",
            "severity": "critical",
            "title": f"label is tied to background ({HTML_ATTR})",
            "detail": "Cramér's V 0.41",
            "columns": ["label", "attr.background"],
            "groups": [],
            "value": 0.41,
            "ci": [0.35, 0.47],
            "n": 300,
            "score": 0.41,
        },
        {
            "kind": "split_leakage",
            "severity": "critical",
            "title": "2 exact duplicates across splits",
            "columns": ["split"],
            "groups": [],
            "value": 2,
            "ci": None,
            "n": 2,
            "score": 2,
        },
        {
            "kind": "unreadable_file",
            "severity": "warning",
            "title": "2 files cannot be read",
            "columns": [],
            "groups": [],
            "value": 2,
            "ci": None,
            "n": 2,
            "score": 2,
        },
        {
            "kind": "intersection_underrepresented",
            "severity": "info",
            "title": f"{MD_DOMAIN} x cool has few samples",
            "columns": ["domain", "attr.background"],
            "groups": [MD_DOMAIN],
            "value": 12,
            "ci": None,
            "n": 12,
            "score": 1,
        },
        {
            "kind": "shortcut",
            "severity": "warning",
            "title": "domain is predictable from image statistics: balanced accuracy 0.81",
            "columns": ["domain"],
            "groups": ["image_stats"],
            "value": 0.81,
            "ci": [0.75, 0.86],
            "n": 300,
            "score": 0.5,
        },
        {
            "kind": "shortcut",
            "severity": "info",
            "title": "attr.background is predictable from image statistics: balanced accuracy 0.95",
            "columns": ["attr.background"],
            "groups": ["image_stats"],
            "value": 0.95,
            "ci": [0.93, 0.96],
            "n": 300,
            "score": 0.1,
        },
    ]
    if model:
        f += [
            {
                "kind": "generalization_gap",
                "severity": "critical",
                "title": "accuracy drops 0.30 on held-out beta",
                "columns": ["domain"],
                "groups": ["beta"],
                "value": 0.3,
                "ci": [0.2, 0.4],
                "n": 80,
                "score": 0.3,
                "stage": "metrics",
            },
            {
                "kind": "worst_group",
                "severity": "warning",
                "title": "worst group: domain = beta",
                "columns": ["domain"],
                "groups": ["beta"],
                "value": 0.55,
                "ci": [0.45, 0.65],
                "n": 80,
                "score": 0.2,
                "stage": "metrics",
            },
        ]
        if not seg:
            ev = {"model": "resnet18", "protocol": "lodo", "fold": "all", "scope": "ood"}
            f.append(
                {
                    "kind": "miscalibration",
                    "severity": "warning",
                    "title": "over-confident on beta",
                    "columns": ["domain"],
                    "groups": ["beta"],
                    "value": 0.18,
                    "ci": [0.1, 0.25],
                    "n": 80,
                    "score": 0.18,
                    "stage": "metrics",
                    "evidence": {**ev, "scope": "id", "metric": "ece"},
                }
            )
            # findings whose evidence names the grouping and metric: their links preselect them
            f.append(
                {
                    "kind": "fairness_violation",
                    "severity": "critical",
                    "title": "eo_diff 0.62 across attr.background (class cat)",
                    "columns": ["attr.background"],
                    "groups": ["warm", "cool"],
                    "value": 0.62,
                    "ci": [0.4, 0.7],
                    "n": 300,
                    "score": 0.4,
                    "stage": "metrics",
                    "evidence": {**ev, "metric": "eo_diff", "class": "cat"},
                }
            )
            f.append({"kind": "worst_group", "severity": "critical", "title": "worst label group owl: accuracy 0.41",
                      "columns": ["label"], "groups": ["owl"], "value": 0.3, "ci": [0.2, 0.4], "n": 40, "score": 0.2,
                      "stage": "metrics", "evidence": {**ev, "metric": "accuracy"}})
    from audit.findings import Finding, rank

    out = []
    for d in f:
        stage = d.pop("stage", "profile")
        out.append({**Finding(**d).to_dict(), "stage": stage})
    return rank(out)


def build_run(
    out: Path, kind: str = "classify", *, n: int = 300, seed: int = 0, data_root: Path | None = None
) -> RunDir:
    """Write a synthetic run directory: ``kind`` is ``classify``, ``segment`` or ``profile`` (profile-only classify)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    seg = kind == "segment"
    root = Path(data_root) if data_root else out.parent / f"{out.name}_data"
    df = _manifest(n, rng, seg=seg)
    run = RunDir.create(
        out,
        command=["audit", "synthetic", kind],
        config={"seed": seed, "profile": {"min_n": 30}, "metrics": {"min_n": 30}},
    )
    run.write_manifest(df)
    stages = {
        "manifest": {"status": "ok", "seconds": 0.1, "n": n},
        "profile": {"status": "ok", "seconds": 1.0},
    }
    run.update_info(
        dataset={
            "source": str(root),
            "root": str(root.resolve()),
            "format": "table",
            "n": n,
            "columns": list(df.columns),
            "roles": {
                "filepath": "path",
                "label": None if seg else "label",
                "domain": "domain",
                "attrs": ["background"],
            },
            "task": "segment" if seg else "classify",
            "classes": SEG_CLASSES if seg else CLASSES,
            "fingerprint": "0" * 16,
            "allow_outside_root": False,
            "notes": [],
        },
        seed=seed,
    )
    images = _images(df, root, rng, seg=seg, write_files=True)
    _profile_tables(run, df, images, seg=seg)
    model = kind != "profile"
    if model:
        pred = _seg_predictions(df, run, rng) if seg else _classify_predictions(df, rng)
        run.write_table("predictions.parquet", pred)
        _metrics_tables(run, df, pred, seg=seg)
        stages["train"] = {"status": "ok", "seconds": 5.0}
        stages["metrics"] = {"status": "ok", "seconds": 2.0}
    else:
        stages["train"] = {"status": "skipped", "reason": "profile only"}
    run.update_info(stages=stages)
    run.write_json("findings.json", _findings(model=model, seg=seg))
    return run


def build_big_run(out: Path, *, n: int = 1_000_000, seed: int = 0) -> RunDir:
    """A classification run with ``n`` manifest / images / prediction rows and no image files (responsiveness check)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    root = out.parent / f"{out.name}_data"
    root.mkdir(parents=True, exist_ok=True)
    ids = pd.Series([f"s{i:07d}" for i in range(n)], dtype="string")
    dom = pd.Series(rng.choice(DOMAINS, size=n), dtype="string")
    lab = pd.Series(rng.choice(CLASSES, size=n), dtype="string")
    df = pd.DataFrame(
        {
            "sample_id": ids,
            "filepath": ("img/" + ids + ".jpg").astype("string"),
            "label": lab,
            "split": pd.Series(rng.choice(["train", "test"], size=n), dtype="string"),
            "domain": dom,
            "group": ids,
            "attr.background": pd.Series(rng.choice(["warm", "cool"], size=n), dtype="string"),
        }
    )
    run = RunDir.create(out, command=["audit", "synthetic", "big"], config={"seed": seed})
    run.write_manifest(df)
    run.update_info(dataset={"root": str(root.resolve()), "n": n, "columns": list(df.columns), "task": "classify",
                             "classes": CLASSES, "fingerprint": "0" * 16, "format": "table"})
    images = pd.DataFrame(
        {
            "sample_id": ids,
            "filepath": df["filepath"],
            "readable": rng.random(n) > 0.001,
            "error": pd.Series([None] * n, dtype="string"),
            "format": "JPEG",
            "width": 64,
            "height": 64,
            "bytes": rng.integers(1000, 5000, n),
            "brightness": rng.normal(120, 20, n),
            "contrast": rng.normal(40, 8, n),
            "saturation": rng.uniform(0, 1, n),
            "sharpness": rng.gamma(2, 50, n),
            "entropy": rng.uniform(4, 7.5, n),
        }
    )
    images.loc[~images["readable"], "error"] = "truncated"
    run.write_table("profile/images.parquet", images)
    run.write_table(
        "profile/distribution.parquet",
        _distribution(df, ["label", "domain", "split", "attr.background", "domain x label"], 30),
    )
    run.write_table(
        "profile/duplicates.parquet",
        pd.DataFrame(
            {
                "a": ids[:50:2].tolist(),
                "b": ids[1:50:2].tolist(),
                "kind": "exact",
                "distance": 0,
                "cross_split": True,
                "label_conflict": False,
            }
        ),
    )
    y_pred = lab.where(rng.random(n) < 0.8, pd.Series(rng.choice(CLASSES, size=n), dtype="string"))
    pred = pd.DataFrame(
        {
            "sample_id": ids,
            "model": "resnet18",
            "protocol": "lodo",
            "fold": ("holdout=" + dom).astype(str),
            "seed": 0,
            "role": "test",
            "held_out": True,
            "train_domains": "x",
            "test_domain": dom,
            "y_true": lab,
            "y_pred": y_pred,
            "confidence": rng.uniform(0.3, 1.0, n),
        }
    )
    run.write_table("predictions.parquet", pred)
    small = pred.head(3000).copy()
    _metrics_tables(run, df, small.assign(held_out=small.index % 2 == 0), seg=False)
    run.update_info(
        stages={
            "manifest": {"status": "ok"},
            "profile": {"status": "ok"},
            "train": {"status": "ok"},
            "metrics": {"status": "ok"},
        }
    )
    run.write_json("findings.json", _findings(model=True, seg=False))
    return run


# ------------------------------------------------------------------------------------------------ contract checks
FORMATS = Path(__file__).resolve().parent.parent / "docs" / "formats.md"

REQUIRED = {
    "profile/images.parquet": [
        "sample_id",
        "filepath",
        "readable",
        "error",
        "format",
        "width",
        "height",
        "brightness",
        "md5",
        "phash",
    ],
    "profile/distribution.parquet": ["column", "group", "n", "share", "status"],
    "profile/associations.parquet": ["a", "b", "within", "stat", "value", "ci_low", "ci_high", "p", "q", "n"],
    "profile/duplicates.parquet": ["a", "b", "kind", "distance", "cross_split", "label_conflict"],
    "profile/shortcuts.parquet": ["target", "features", "balanced_accuracy", "ci_low", "ci_high", "chance", "n"],
    "predictions.parquet": [
        "sample_id",
        "model",
        "protocol",
        "fold",
        "seed",
        "role",
        "held_out",
        "train_domains",
        "test_domain",
    ],
    "metrics/groups.parquet": [
        "model",
        "protocol",
        "fold",
        "scope",
        "by",
        "group",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "status",
    ],
    "metrics/generalization.parquet": [
        "model",
        "protocol",
        "fold",
        "test_domain",
        "metric",
        "in_domain",
        "out_domain",
        "gap",
        "gap_ci_low",
        "gap_ci_high",
    ],
}


@pytest.mark.parametrize("kind", ["classify", "segment", "profile"])
def test_synthetic_run_follows_formats(tmp_path, kind):
    run = build_run(tmp_path / kind, kind)
    text = FORMATS.read_text()
    for rel, cols in REQUIRED.items():
        if not run.has(rel):
            assert kind == "profile" and not rel.startswith("profile/"), rel
            continue
        got = set(run.read_table(rel).columns)
        missing = [c for c in cols if c not in got]
        assert not missing, (rel, missing)
        for c in cols:  # every column this fixture relies on is documented
            assert c in text, c
    assert json.loads((run.path / "findings.json").read_text())[0]["severity"] == "critical"
    m = run.manifest()
    assert m["attr.background"].isna().sum() == 1 and not (m["attr.background"] == "nan").any()
