"""Helpers for teams that gate datasets and models from their own pytest suite, and for imgaudit's tests.

Public helpers::

    from audit.testing import assert_policy, assert_no_leakage

    def test_dataset_policy():
        assert_policy("runs/nightly", "audit-policy.toml")      # AssertionError listing the failed rules

    def test_no_leakage():
        assert_no_leakage("runs/nightly")                       # duplicates / shared groups across splits

:func:`make_fake_run` writes a small, fake-but-valid run directory (every table of docs/formats.md, with
numbers computed from simulated predictions), so the report, check and dashboard can be tested without
training anything.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from audit.core.intervals import wilson_interval
from audit.metrics.fairness import fairness_report
from audit.rundir import RunDir

__all__ = ["assert_policy", "assert_no_leakage", "make_fake_run", "HOSTILE"]

HOSTILE = "<script>alert(1)</script>"


# ---------------------------------------------------------------------------------------------- pytest helpers
def assert_policy(run_dir: str | Path, policy: str | Path, *, baseline: str | Path | None = None) -> None:
    """Assert that a run passes a policy file.

    Parameters
    ----------
    run_dir
        The run directory.
    policy
        The policy TOML file (see docs/policy.md).
    baseline
        Optional previous run for regression rules.

    Raises
    ------
    AssertionError
        When a rule with severity ``error`` fails, or the policy or run directory is invalid; the message
        lists every failed rule with its value, threshold, interval and n.
    """
    from audit.check import run_check

    result = run_check(Path(run_dir), Path(policy), baseline=Path(baseline) if baseline else None, write=False)
    if result.exit_code == 2:
        raise AssertionError(f"invalid policy or run: {result.error}")
    if result.exit_code != 0:
        lines = [f"{r.id}: {r.message}" for r in result.rules if r.status == "fail"]
        raise AssertionError(f"{len(lines)} policy rule(s) failed:\n  " + "\n  ".join(lines))


def assert_no_leakage(run_dir: str | Path) -> None:
    """Assert that no image (exact/near duplicate) and no ``group`` is shared between splits.

    Reads ``profile/duplicates.parquet`` and the manifest of the run; raises ``AssertionError`` naming up to
    five offending pairs or groups.
    """
    run = RunDir.open(run_dir)
    problems: list[str] = []
    dups = run.read_table("profile/duplicates.parquet", required=False)
    if dups is None and not run.finished("profile"):
        raise AssertionError(f"{run.path} has no profile/duplicates.parquet; run `audit profile` first")
    if dups is not None and "cross_split" in dups.columns:
        leak = dups[dups["cross_split"].fillna(False).astype(bool)]
        if len(leak):
            ex = ", ".join(f"{a} ~ {b}" for a, b in leak[["a", "b"]].head(5).itertuples(index=False))
            problems.append(f"{len(leak)} duplicate pair(s) across splits (e.g. {ex})")
    m = run.manifest()
    if {"group", "split", "sample_id"} <= set(m.columns):
        g = m.dropna(subset=["group", "split"])
        g = g[g["group"] != g["sample_id"]]  # the default group (= sample id) cannot leak
        per = g.groupby("group")["split"].nunique()
        shared = per[per > 1]
        if len(shared):
            ex = ", ".join(map(str, shared.index[:5]))
            problems.append(f"{len(shared)} group(s) appear in more than one split (e.g. {ex})")
    if problems:
        raise AssertionError("split leakage: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------- fake runs
def _wilson(k: float, n: float) -> tuple[float, float, float]:
    """Proportion and its Wilson interval (audit.core.intervals), NaN for n = 0."""
    if n <= 0:
        return (math.nan, math.nan, math.nan)
    lo, hi = wilson_interval(k, n)
    return k / n, float(lo), float(hi)


def _png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8)).save(path)


def make_fake_run(
    out: str | Path,
    *,
    task: str = "classify",
    profile_only: bool = False,
    biased: bool = True,
    hostile: bool = False,
    n: int = 360,
    seed: int = 0,
) -> RunDir:
    """Write a fake-but-valid run directory following docs/formats.md.

    Parameters
    ----------
    out
        Run directory to create (images go to ``out/../<name>_data``).
    task
        ``classify`` or ``segment``.
    profile_only
        Stop after the profile tables (no predictions or metrics).
    biased
        Plant problems (spurious background/label association, a weak held-out domain, leakage, an unreadable
        file); ``False`` gives a clean control.
    hostile
        Use HTML-hostile labels, attribute values and file names (for escaping tests).
    n
        Number of samples (a multiple of 3 is tidy: three domains).
    seed
        Seed of every random choice.
    """
    from audit.findings import Finding

    rng = np.random.default_rng(seed)
    out = Path(out)
    root = out.parent / f"{out.name}_data"
    manifest, lab_idx, classes, domains = _fake_manifest(root, rng, task=task, biased=biased, hostile=hostile, n=n)
    run = RunDir.create(out, command=["audit", "fake", str(out)], config={"seed": seed, "metrics": {"min_n": 30}})
    run.write_manifest(manifest)
    run.update_info(
        seed=seed,
        dataset={
            "source": str(root), "root": str(root.resolve()), "format": "table",
            "roles": {"filepath": "path", "label": "label" if task == "classify" else None,
                      "domain": "domain", "split": "split", "group": "writer",
                      "attrs": ["background", "ink"]},
            "n": n, "columns": list(manifest.columns), "task": task, "classes": classes,
            "fingerprint": f"{seed:016x}", "allow_outside_root": False, "notes": [],
        },
    )
    run.mark_stage("manifest", "ok", n=n, seconds=0.01)
    findings: list[Finding] = []
    _fake_profile(run, manifest, rng, biased=biased, task=task, findings=findings)
    run.mark_stage("profile", "ok", seconds=0.5)
    run.set_findings("profile", findings)
    if profile_only:
        run.mark_stage("train", "skipped", reason="profile only")
        return run
    preds = _fake_predictions(manifest, lab_idx, classes, domains, rng, biased=biased, task=task)
    run.write_table("predictions.parquet", preds)
    run.update_info(device={"type": "cpu", "name": "fake", "torch": "none"})
    run.mark_stage("train", "ok", seconds=1.0, model="small_cnn")
    mfind: list[Finding] = []
    _fake_metrics(run, preds, classes, task=task, rng=rng, findings=mfind)
    run.mark_stage("metrics", "ok", seconds=0.3)
    run.set_findings("metrics", mfind)
    return run


def _fake_manifest(root: Path, rng, *, task: str, biased: bool, hostile: bool, n: int):
    """Real image (and mask) files under ``root`` and their manifest: ``(manifest, label index, classes, domains)``."""
    domains = ["studio", "phone", "scanner"] if task == "classify" else ["day", "dusk", "fog"]
    if hostile:
        domains[2] = 'fog"><img src=x onerror=alert(2)>'
    classes = ["cat", "dog", HOSTILE if hostile else "bird"] if task == "classify" else ["background", "low", "high"]
    dom = np.array([domains[i % 3] for i in range(n)])
    if task == "classify":
        lab_idx = rng.integers(0, 3, n)
    else:
        lab_idx = rng.integers(1, 3, n)  # the dominant foreground class of the image
    warm_p = np.where(lab_idx == 0, 0.9, 0.15) if biased else np.full(n, 0.5)
    warm_p = np.where(dom == domains[2], 0.5, warm_p)  # the held-out domain breaks the shortcut
    bg = np.where(rng.random(n) < warm_p, "warm", "cool").astype(object)
    if hostile:
        bg = np.where(bg == "warm", "<b>warm</b>", bg)
    ink = np.where(rng.random(n) < 0.5, "black", "navy")
    writer = np.array([f"w{i // 3:04d}" for i in range(n)])
    # one split per writer: no group leakage unless planted
    split = rng.choice(["train", "val", "test"], (n + 2) // 3, p=[0.6, 0.2, 0.2])[np.arange(n) // 3]
    rows = []
    for i in range(n):
        name = f"{i:05d}.png"
        if hostile and i == 1:
            name = "<img src=x onerror=alert(1)>.png"
        rel = f"{dom[i].replace('/', '_')}/{name}"
        base = (
            np.array([230, 190, 150])
            if str(bg[i]).endswith("warm</b>") or bg[i] == "warm"
            else np.array([150, 190, 230])
        )
        img = np.clip(base + rng.normal(0, 12, (12, 12, 3)), 0, 255)
        img[3:9, 3 + lab_idx[i] : 6 + lab_idx[i]] = 20
        _png(root / rel, img)
        rows.append(rel)
    manifest = pd.DataFrame(
        {
            "sample_id": rows,
            "filepath": rows,
            "split": split,
            "domain": dom,
            "group": writer,
            "attr.background": bg,
            "attr.ink": ink,
        }
    )
    if task == "classify":
        manifest.insert(2, "label", [classes[k] for k in lab_idx])
    else:
        masks = [f"masks/{i:05d}.png" for i in range(n)]
        for i, mp in enumerate(masks):
            _png(root / mp, np.full((12, 12, 3), lab_idx[i], dtype=np.uint8))
        manifest.insert(2, "mask", masks)
    for c in manifest.columns:
        manifest[c] = manifest[c].astype("string")

    return manifest, lab_idx, classes, domains


def _fake_profile(run: RunDir, m: pd.DataFrame, rng, *, biased: bool, task: str, findings: list) -> None:

    n = len(m)
    readable = np.ones(n, dtype=bool)
    error = [None] * n
    if biased:
        readable[[5, 17]] = False
        error[5], error[17] = "truncated", "not_an_image"
    brightness = rng.normal(0.6, 0.05, n) - np.where(m["domain"].to_numpy() == m["domain"].iloc[2], 0.2, 0)
    images = pd.DataFrame(
        {
            "sample_id": m["sample_id"],
            "filepath": m["filepath"],
            "readable": readable,
            "error": error,
            "format": "PNG",
            "ext": ".png",
            "ext_mismatch": False,
            "width": 12,
            "height": 12,
            "aspect": 1.0,
            "mode": "RGB",
            "channels": 3,
            "bit_depth": 8,
            "bytes": rng.integers(300, 600, n),
            "exif_orientation": None,
            "brightness": brightness,
            "contrast": rng.normal(0.2, 0.03, n),
            "saturation": rng.normal(0.3, 0.05, n),
            "colorfulness": rng.normal(0.3, 0.05, n),
            "sharpness": rng.normal(50, 5, n),
            "entropy": rng.normal(6, 0.3, n),
            "noise": rng.normal(3, 0.5, n),
            "md5": [f"{i:032x}" for i in range(n)],
            "pixel_md5": [f"{i:032x}" for i in range(n)],
            "phash": rng.integers(0, 2**62, n),
        }
    )
    if biased:
        images.loc[[5, 17], ["brightness", "contrast", "saturation", "width", "height"]] = np.nan
    run.write_table("profile/images.parquet", images)
    target = _fake_tables(run, m)
    _fake_associations(run, m, target, findings)
    _fake_shift_and_duplicates(run, m, images, rng, biased=biased, task=task, findings=findings)


def _fake_tables(run: RunDir, m: pd.DataFrame) -> str:
    """profile/distribution and profile/imbalance; returns the association target (label, else domain)."""
    n = len(m)
    cols = ["domain", "split"] + (["label"] if "label" in m.columns else []) + ["attr.background", "attr.ink"]
    dist = []
    for c in cols + ["domain x attr.background"]:
        if " x " in c:
            a, b = c.split(" x ")
            keys = m[a].astype(str) + " | " + m[b].astype(str)
        else:
            keys = m[c].astype(str)
        vc = keys.value_counts()
        for g, k in vc.items():
            dist.append(
                {"column": c, "group": g, "n": int(k), "share": k / n, "status": "ok" if k >= 30 else "under_min_n"}
            )
    dist_df = pd.DataFrame(dist)
    run.write_table("profile/distribution.parquet", dist_df)
    imb = []
    for c in cols:
        vc = m[c].value_counts()
        p = vc / vc.sum()
        ent = float(-(p * np.log(p)).sum() / np.log(len(p))) if len(p) > 1 else 1.0
        imb.append({"column": c, "n_groups": len(vc), "imbalance_ratio": float(vc.max() / vc.min()),
                    "normalized_entropy": ent, "effective_n": float(1 / (p**2).sum()),
                    "min_group": str(vc.idxmin()), "max_group": str(vc.idxmax())})
    run.write_table("profile/imbalance.parquet", pd.DataFrame(imb))
    return "label" if "label" in m.columns else "domain"


def _fake_associations(run: RunDir, m: pd.DataFrame, target: str, findings: list) -> None:
    from scipy.stats import chi2_contingency

    from audit.findings import Finding

    n = len(m)
    assoc, resid = [], []
    pairs = [(target, "attr.background"), (target, "attr.ink"), ("domain", "attr.background")]
    for a, b in pairs:
        if a == b:
            continue
        ct = pd.crosstab(m[a], m[b])
        chi2, p, dof, exp = chi2_contingency(ct, correction=False)
        v = math.sqrt(chi2 / (n * (min(ct.shape) - 1)))
        half = 1.96 / math.sqrt(n)
        assoc.append({"a": a, "b": b, "within": None, "stat": "cramers_v", "value": v, "ci_low": max(0, v - half),
                      "ci_high": min(1, v + half), "chi2": chi2, "dof": dof, "p": p, "q": min(1.0, p * len(pairs)),
                      "nmi": v * v, "n": n})
        for i, av in enumerate(ct.index):
            for j, bv in enumerate(ct.columns):
                o, e = ct.iloc[i, j], exp[i, j]
                resid.append(
                    {
                        "a": a,
                        "b": b,
                        "within": None,
                        "a_value": str(av),
                        "b_value": str(bv),
                        "observed": int(o),
                        "expected": float(e),
                        "std_residual": float((o - e) / math.sqrt(e)),
                        "lift": float(o / e),
                    }
                )
        if v > 0.3 and p < 0.05:
            findings.append(Finding("label_attribute_association", "critical" if v > 0.5 else "warning",
                                    f"{a} is associated with {b} (Cramer's V {v:.2f})", detail="spurious correlation",
                                    columns=[a, b], value=v, ci=[max(0, v - half), min(1, v + half)], n=n, score=v,
                                    evidence={"p": p}))
    run.write_table("profile/associations.parquet", pd.DataFrame(assoc))
    run.write_table("profile/residuals.parquet", pd.DataFrame(resid))


def _fake_shift_and_duplicates(run: RunDir, m: pd.DataFrame, images: pd.DataFrame, rng, *, biased: bool, task: str,
                               findings: list) -> None:
    from audit.findings import Finding

    n = len(m)
    target = "label" if "label" in m.columns else "domain"
    shift = []
    for d in m["domain"].unique():
        sel = (m["domain"] == d).to_numpy()
        for stat in ("brightness", "contrast"):
            x = images[stat].to_numpy(dtype=float)
            eff = (np.nanmean(x[sel]) - np.nanmean(x[~sel])) / (np.nanstd(x) or 1)
            shift.append(
                {
                    "by": "domain",
                    "group": str(d),
                    "statistic": stat,
                    "effect": eff,
                    "ks": abs(eff) / 3,
                    "p": 0.001 if abs(eff) > 0.5 else 0.5,
                    "q": 0.003 if abs(eff) > 0.5 else 0.6,
                    "n": int(sel.sum()),
                }
            )
    run.write_table("profile/image_stats_shift.parquet", pd.DataFrame(shift))
    dups = []
    if biased:
        ids = m["sample_id"].tolist()
        sp = m["split"].tolist()
        for a, b, kind in ((0, 3, "exact"), (1, 4, "exact"), (6, 9, "near")):
            dups.append({"a": ids[a], "b": ids[b], "kind": kind, "distance": 0 if kind == "exact" else 4,
                         "cross_split": sp[a] != sp[b] or kind == "exact", "label_conflict": a == 1})
        findings.append(Finding("split_leakage", "critical", "2 duplicate pairs across splits", columns=["split"],
                                n=2, value=2, score=2, evidence={"pairs": [[ids[0], ids[3]], [ids[1], ids[4]]]}))
        findings.append(Finding("label_conflict", "critical", "1 duplicate pair with different labels", n=1, value=1,
                                evidence={"pairs": [[ids[1], ids[4]]]}))
        findings.append(Finding("unreadable_file", "warning", "2 files cannot be read", n=2, value=2,
                                evidence={"sample_ids": [ids[5], ids[17]]}))
    run.write_table("profile/duplicates.parquet", pd.DataFrame(
        dups, columns=["a", "b", "kind", "distance", "cross_split", "label_conflict"]).astype(
        {"cross_split": bool, "label_conflict": bool}))
    run.write_table("profile/shortcuts.parquet", pd.DataFrame([
        {"target": "domain", "features": "image_stats", "balanced_accuracy": 0.8 if biased else 0.4, "ci_low": 0.74,
         "ci_high": 0.85, "chance": 1 / 3, "n": n, "folds": 5},
        {"target": target, "features": "file_properties", "balanced_accuracy": 0.35, "ci_low": 0.3, "ci_high": 0.4,
         "chance": 1 / 3, "n": n, "folds": 5},
    ]))
    if task == "segment":
        mk = []
        for d in m["domain"].unique():
            for ci, c in enumerate(run.classes()):
                mk.append({"by": "domain", "group": str(d), "class": c, "pixel_share": [0.7, 0.15, 0.15][ci],
                           "mean_object_size": 18.0, "n_images": int((m["domain"] == d).sum())})
        run.write_table("profile/masks.parquet", pd.DataFrame(mk))


def _fake_predictions(m, lab_idx, classes, domains, rng, *, biased: bool, task: str) -> pd.DataFrame:
    n = len(m)
    dom = m["domain"].to_numpy().astype(str)
    bg = m["attr.background"].astype(str).to_numpy()
    warm = np.char.find(bg.astype(str), "warm") >= 0
    frames = []
    for held in domains:
        is_held = dom == held
        test = is_held | (m["split"].to_numpy() == "test")
        p_ok = np.full(n, 0.9)
        if biased:
            # the model learnt the background shortcut: wrong when background disagrees with the usual label
            mismatch = (lab_idx == 0) != warm
            p_ok = np.where(mismatch, 0.55, 0.93)
            p_ok = np.where(is_held & (held == domains[2]), p_ok - 0.2, p_ok)
        ok = rng.random(n) < p_ok
        idx = np.flatnonzero(test)
        base = pd.DataFrame({
            "sample_id": m["sample_id"].to_numpy()[idx], "model": "small_cnn", "protocol": "lodo",
            "fold": f"holdout={held}", "seed": 0, "role": "test", "held_out": is_held[idx],
            "train_domains": "|".join(d for d in domains if d != held), "test_domain": dom[idx],
        })
        if task == "classify":
            k = len(classes)
            y_true = lab_idx[idx]
            y_pred = np.where(ok[idx], y_true, (y_true + rng.integers(1, k, len(idx))) % k)
            conf = np.clip(np.where(ok[idx], rng.uniform(0.6, 1.0, len(idx)), rng.uniform(0.4, 0.9, len(idx))), 0, 1)
            base["y_true"] = [classes[i] for i in y_true]
            base["y_pred"] = [classes[i] for i in y_pred]
            base["confidence"] = conf
            for ci, c in enumerate(classes):
                base[f"p_{c}"] = np.where(y_pred == ci, conf, (1 - conf) / (k - 1))
        else:
            pix = 144
            for ci in range(len(classes)):
                true = np.where(lab_idx[idx] == ci, 30, 0) if ci else np.full(len(idx), pix - 30)
                inter = np.round(true * np.where(ok[idx], 0.9, 0.4)).astype(int)
                pred = inter + rng.integers(0, 5, len(idx))
                base[f"inter_{ci}"] = inter
                base[f"union_{ci}"] = true + pred - inter
                base[f"pred_{ci}"] = pred
                base[f"true_{ci}"] = true
            base["pixel_acc"] = np.where(ok[idx], 0.95, 0.7)
            base["pred_mask"] = None
        frames.append(base)
    return pd.concat(frames, ignore_index=True)


def _fake_metrics(run: RunDir, preds: pd.DataFrame, classes: list[str], *, task: str, rng, findings: list) -> None:
    from audit.findings import Finding

    m = run.manifest().set_index("sample_id")
    p = preds.join(m[["domain", "attr.background", "attr.ink"] + (["label"] if "label" in m.columns else [])],
                   on="sample_id")
    if task == "classify":
        p["_score"] = (p["y_true"] == p["y_pred"]).astype(float)
        metric = "accuracy"
    else:
        ious = [p[f"inter_{c}"] / p[f"union_{c}"].where(p[f"union_{c}"] > 0) for c in range(len(classes))]
        p["_score"] = pd.concat(ious, axis=1).mean(axis=1)
        metric = "miou"
    p["domain x attr.background"] = p["domain"].astype(str) + " | " + p["attr.background"].astype(str)
    bys = ["domain", "attr.background", "attr.ink", "domain x attr.background"] + (
        ["label"] if task == "classify" else []
    )
    rows = []

    def add(scope, by, group, s):
        k, nn = float(s.sum()), len(s)
        if task == "classify":
            v, lo, hi = _wilson(k, nn)
        else:
            v = float(s.mean()) if nn else math.nan
            se = float(s.std(ddof=1) / math.sqrt(nn)) if nn > 1 else math.nan
            lo, hi = v - 1.96 * se, v + 1.96 * se
        status = "empty" if nn == 0 else ("ok" if nn >= 30 else "insufficient_evidence")
        rows.append({"model": "small_cnn", "protocol": "lodo", "fold": "all", "scope": scope, "by": by,
                     "group": group, "metric": metric, "value": v, "ci_low": lo, "ci_high": hi, "n": nn,
                     "status": status})

    for scope, sel in (("ood", p["held_out"]), ("id", ~p["held_out"]), ("all", p["held_out"] | True)):
        q = p[sel]
        add(scope, "overall", "all", q["_score"])
        for by in bys:
            for g, s in q.groupby(q[by].astype(str))["_score"]:
                add(scope, by, g, s)
    if task == "classify":
        ece = float(np.abs(p["confidence"] - p["_score"]).mean() * 0.5)
        rows.append({"model": "small_cnn", "protocol": "lodo", "fold": "all", "scope": "all", "by": "overall",
                     "group": "all", "metric": "ece", "value": ece, "ci_low": ece - 0.02, "ci_high": ece + 0.02,
                     "n": len(p), "status": "ok"})
    groups = pd.DataFrame(rows)
    run.write_table("metrics/groups.parquet", groups)
    ok = groups[(groups["status"] == "ok") & (groups["by"] != "overall") & (groups["metric"] == metric)]
    worst = ok.sort_values("value").iloc[0]
    findings.append(Finding("worst_group", "warning" if worst["value"] < 0.8 else "info",
                            f"worst group {worst['by']}={worst['group']}: {metric} {worst['value']:.2f}",
                            columns=[worst["by"]], groups=[worst["group"]], value=worst["value"],
                            ci=[worst["ci_low"], worst["ci_high"]], n=int(worst["n"]), score=1 - worst["value"]))

    gen = []
    for fold, q in p.groupby("fold"):
        i, o = q[~q["held_out"]]["_score"], q[q["held_out"]]["_score"]
        vi, li, hi_ = _wilson(i.sum(), len(i)) if task == "classify" else (i.mean(), i.mean() - 0.03, i.mean() + 0.03)
        vo, lo, ho = _wilson(o.sum(), len(o)) if task == "classify" else (o.mean(), o.mean() - 0.03, o.mean() + 0.03)
        gap = vi - vo
        half = math.sqrt(((hi_ - li) / 2) ** 2 + ((ho - lo) / 2) ** 2)
        gen.append({"model": "small_cnn", "protocol": "lodo", "fold": fold, "train_domains": q["train_domains"].iloc[0],
                    "test_domain": fold.split("=", 1)[1], "metric": metric, "in_domain": vi, "in_ci_low": li,
                    "in_ci_high": hi_, "n_in": len(i), "out_domain": vo, "out_ci_low": lo, "out_ci_high": ho,
                    "n_out": len(o), "gap": gap, "gap_ci_low": gap - half, "gap_ci_high": gap + half, "seeds": 1})
        if gap - half > 0.05:
            findings.append(Finding("generalization_gap", "critical" if gap > 0.15 else "warning",
                                    f"{metric} drops by {gap:.2f} on held-out {fold.split('=', 1)[1]}",
                                    columns=["domain"], groups=[fold.split("=", 1)[1]], value=gap,
                                    ci=[gap - half, gap + half], n=len(o), score=gap))
    run.write_table("metrics/generalization.parquet", pd.DataFrame(gen))
    if task != "classify":
        return
    fair = []
    for attr in ("attr.background", "attr.ink"):
        # the package's own definitions (fairlearn's), with bootstrap intervals
        rep = fairness_report(y_true=p["y_true"].to_numpy(), y_pred=p["y_pred"].to_numpy(), classes=classes,
                              sensitive=pd.Series(p[attr].astype(str).to_numpy(), name=attr), n_boot=100, min_n=1)
        for r in rep[(rep["class"] == "worst") & rep["metric"].isin(["dp_diff", "eo_diff"])].itertuples():
            fair.append({"model": "small_cnn", "protocol": "lodo", "fold": "all", "attribute": attr, "metric": r.metric,
                         "class": "worst", "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": len(p)})
            if r.value > 0.1:
                findings.append(Finding("fairness_violation", "warning", f"{r.metric} {r.value:.2f} across {attr}",
                                        columns=[attr], value=r.value, n=len(p), score=r.value))
    run.write_table("metrics/fairness.parquet", pd.DataFrame(fair))
    cal = []
    bins = np.minimum((p["confidence"].to_numpy() * 10).astype(int), 9)
    for b in range(10):
        s = bins == b
        cal.append({"model": "small_cnn", "protocol": "lodo", "by": "overall", "group": "all", "bin": b,
                    "confidence": float(p["confidence"][s].mean()) if s.any() else math.nan,
                    "accuracy": float(p["_score"][s].mean()) if s.any() else math.nan, "count": int(s.sum())})
    run.write_table("metrics/calibration.parquet", pd.DataFrame(cal))
