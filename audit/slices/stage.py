"""``audit slices RUN``: per (model, protocol, fold, seed) of the held-out predictions, discover slices on one
half and confirm them on the other; write ``RUN/slices/*`` and one ``hidden_slice`` finding per confirmed slice.

Outputs (docs/formats.md, "Slices"): ``slices.parquet`` (one row per candidate), ``members.parquet`` (which rows of
which half each candidate holds), ``examples.parquet`` (16 members per slice for the gallery), ``features.parquet``
(the known columns and image statistics that separate each slice, with effect sizes) and the rules
(``rules.json`` + ``rules.npz``: projection and balls, applied to later runs by :func:`audit.slices.rules.apply`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.errors import InputError
from audit.findings import Finding
from audit.slices.core import Candidate, SliceConfig, finalize, slice_fold
from audit.slices.describe import KNOWN, describe_slice, is_labeled, labeled_feature, lead_feature, pick_examples

__all__ = ["run_slices", "fold_inputs", "severity", "KEY"]

KEY = ["model", "protocol", "fold", "seed"]


def _correctness(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(correct, confidence, label)`` per row: classification from y_true/y_pred; segmentation: an image is
    correct when its mean IoU over the classes present is >= 0.5 (confidence: its pixel accuracy)."""
    if "y_pred" in df.columns:
        correct = (df["y_true"].astype(str) == df["y_pred"].astype(str)).to_numpy()
        conf = pd.to_numeric(df.get("confidence", pd.Series(np.nan, index=df.index)), errors="coerce").to_numpy()
        return correct, conf, df["y_true"].astype(str).to_numpy()
    inter = [c for c in df.columns if c.startswith("inter_")]
    if not inter:
        raise InputError("the predictions have neither y_pred nor inter_<c>/union_<c> columns")
    i = df[inter].to_numpy(dtype=np.float64)
    u = df[["union_" + c[len("inter_"):] for c in inter]].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        miou = np.nanmean(np.where(u > 0, i / u, np.nan), axis=1)
    conf = pd.to_numeric(df.get("pixel_acc", pd.Series(np.nan, index=df.index)), errors="coerce").to_numpy()
    return np.nan_to_num(miou, nan=0.0) >= 0.5, conf, np.zeros(len(df), dtype=int)


def _vectors(run, cfg: SliceConfig, preds: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Predictions joined with their embedding row (``_row``); the vectors; where they came from."""
    from audit.slices.embed import load_backbone_features, load_run_embeddings, load_user_embeddings

    if cfg.embeddings:
        index, vec = load_user_embeddings(cfg.embeddings)
        j = preds.merge(index.rename(columns={"row": "_row"}), on="sample_id", how="left")
        return j, vec, f"file {cfg.embeddings}"
    got = load_run_embeddings(run.path)
    if got is None:  # --mode probe: the frozen backbone's features, one vector per image for every fold
        feats = load_backbone_features(run.path, sorted(preds["model"].astype(str).unique())
                                       if "model" in preds.columns else None)
        if feats is not None:
            index, vec = feats
            j = preds.merge(index.rename(columns={"row": "_row"}), on="sample_id", how="left")
            return j, vec, "stored (frozen backbone features of the probe)"
        raise InputError("no embeddings: this run's predictions were made before embeddings were stored, or by an "
                         "engine that does not store them; retrain, or pass --embeddings FILE")
    index, vec = got
    index = index.rename(columns={"row": "_row"})
    index["sample_id"] = index["sample_id"].astype(str)
    keys = ["sample_id", *KEY, "role"]
    for c in KEY + ["role"]:
        index[c] = index[c].astype(str)
    left = preds.assign(**{c: preds[c].astype(str) for c in KEY + ["role"]})
    j = left.merge(index[keys + ["_row"]].drop_duplicates(keys), on=keys, how="left")
    return j, vec, "stored (penultimate layer)"


def fold_inputs(run, cfg: SliceConfig) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Held-out predictions with correctness, vectors, manifest columns and image statistics joined on."""
    preds = run.read_table("predictions.parquet", required=False)
    if preds is None or not len(preds):
        raise InputError(f"{run.path} has no predictions.parquet; run `audit train` first")
    preds = preds[preds["role"].astype(str).isin(cfg.roles)].reset_index(drop=True)
    if not len(preds):
        raise InputError(f"the predictions have no rows with role in {list(cfg.roles)}")
    preds["sample_id"] = preds["sample_id"].astype(str)
    preds["_correct"], preds["_conf"], preds["_label"] = _correctness(preds)
    frame, vec, source = _vectors(run, cfg, preds)
    man = run.manifest()
    man = man.assign(sample_id=man["sample_id"].astype(str))
    extra = [c for c in man.columns if c in KNOWN or str(c).startswith("attr.") or c in ("filepath", "group")]
    extra += [c for c in ([cfg.group] if cfg.group else []) if c in man.columns and c not in extra]
    if cfg.group and cfg.group not in man.columns:
        raise InputError(f"group column {cfg.group!r} is not in the manifest")
    frame = frame.merge(man[["sample_id", *extra]].drop_duplicates("sample_id"), on="sample_id", how="left",
                        suffixes=("", "_manifest"))
    images = run.read_table("profile/images.parquet", required=False)
    if images is not None:
        from audit.slices.describe import IMAGE_STATS

        cols = [c for c in IMAGE_STATS if c in images.columns]
        images = images.assign(sample_id=images["sample_id"].astype(str))[["sample_id", *cols]]
        frame = frame.merge(images.drop_duplicates("sample_id"), on="sample_id", how="left")
    info = {"embeddings": source, "rows": int(len(frame)), "without_vectors": int(frame["_row"].isna().sum())}
    return frame, vec, info


def _group_col(frame: pd.DataFrame, cfg: SliceConfig) -> str | None:
    col = cfg.group or ("group" if "group" in frame.columns else None)
    if not col or not frame[col].notna().any():
        return None
    # one group per row (the default when none is given) is the row bootstrap: cheaper without the groups
    return None if cfg.group is None and frame[col].nunique() == len(frame) else col


def _run_folds(frame: pd.DataFrame, vec: np.ndarray, cfg: SliceConfig):
    """Every fold's candidates, with the fold rows and discovery mask they refer to."""
    from audit.progress import Bar

    have = frame[frame["_row"].notna()]
    gcol = _group_col(frame, cfg)
    out = []
    folds = list(have.groupby(KEY, sort=True, dropna=False))
    with Bar(len(folds), "slices: discover and confirm", unit="fold") as bar:
        for key, rows in folds:
            bar.advance(0, info="now " + " ".join(map(str, key)))
            rows = rows.reset_index(drop=True)
            x = np.asarray(vec[rows["_row"].astype(np.int64).to_numpy()], dtype=np.float32)
            groups = rows[gcol].astype(str).fillna("").to_numpy() if gcol else None
            disc, cands = slice_fold(x, rows["_correct"].to_numpy(), rows["_conf"].to_numpy(),
                                     rows["_label"].to_numpy(), cfg, key=tuple(map(str, key)), groups=groups)
            out.append((dict(zip(KEY, key, strict=True)), rows, disc, cands))
            bar.advance(1)
    return out, gcol


def _slice_id(meta: dict, j: int) -> str:
    return f"{meta['model']}/{meta['protocol']}/{meta['fold']}/s{meta['seed']}#{j}"


#: the columns of each table (docs/formats.md), written even when there is no candidate: ``(name, dtype)``
SCHEMAS = {
    "slices": [("slice_id", "object"), ("model", "object"), ("protocol", "object"), ("fold", "object"),
               ("seed", "int64"), ("method", "object"), ("n_discover", "int64"), ("n_confirm", "int64"),
               ("accuracy", "float64"), ("rest_accuracy", "float64"), ("gap", "float64"), ("ci_low", "float64"),
               ("ci_high", "float64"), ("p", "float64"), ("q", "float64"), ("confirmed", "bool"),
               ("description", "object"), ("bootstrap", "object"), ("discover_accuracy", "float64"),
               ("balls", "int64"), ("lead_column", "object"), ("lead_value", "object"), ("lead_effect", "float64"),
               ("labeled", "bool"), ("labeled_by", "object"), ("labeled_share", "object")],
    "members": [("slice_id", "object"), ("sample_id", "object"), ("fold", "object"), ("seed", "int64"),
                ("half", "object")],
    "examples": [("slice_id", "object"), ("sample_id", "object"), ("filepath", "object"), ("correct", "bool"),
                 ("rank", "int64")],
    "features": [("slice_id", "object"), ("column", "object"), ("value", "object"), ("kind", "object"),
                 ("effect", "float64"), ("share_in", "float64"), ("share_rest", "float64"), ("mean_in", "float64"),
                 ("mean_rest", "float64")],
}


def _with_schema(name: str, frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames concatenated, every documented column present (first, in order; extra columns after), and typed
    empty columns when there is no row."""
    schema = SCHEMAS[name]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in schema})
    out = pd.concat(frames, ignore_index=True)
    cols = [c for c, _ in schema]
    for c, t in schema:
        if c not in out.columns:
            out[c] = np.nan if t == "float64" else None
    return out[cols + [c for c in out.columns if c not in cols]]


def _tables(folds) -> dict[str, pd.DataFrame]:
    """slices, members, examples and features tables from the finished candidates."""
    rows, members, examples, feats = [], [], [], []
    for meta, fr, disc, cands in folds:
        for j, c in enumerate(cands):
            sid = _slice_id(meta, j)
            text, fl = describe_slice(fr, c.inside)
            lead = lead_feature(fl) or {}
            by = labeled_feature(fl) or (lead if lead and is_labeled(lead["column"]) else {})
            r = c.confirmation
            rows.append({"slice_id": sid, **{k: str(meta[k]) for k in ("model", "protocol", "fold")},
                         "seed": int(meta["seed"]), "method": "error-aware kmeans (PCA, balls)",
                         "n_discover": int(c.discovery["n"]), "n_confirm": int(r["n"]),
                         "accuracy": r["accuracy"], "rest_accuracy": r["rest_accuracy"], "gap": r["gap"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p": r["p"], "q": c.q,
                         "confirmed": c.confirmed, "description": text, "bootstrap": r["bootstrap"],
                         "discover_accuracy": 1 - c.discovery["error_rate"], "balls": int(len(c.rule.radii)),
                         "lead_column": str(lead.get("column", "")), "lead_value": str(lead.get("value", "")),
                         "lead_effect": float(lead.get("effect", np.nan)),
                         "labeled": bool(by),
                         "labeled_by": f"{by['column']}={by['value']}" if by else "",
                         "labeled_share": f"{by['share_in']:.0%} vs {by['share_rest']:.0%}" if by else ""})
            idx = np.flatnonzero(c.inside)
            members.append(pd.DataFrame({"slice_id": sid, "sample_id": fr["sample_id"].to_numpy()[idx],
                                         "fold": str(meta["fold"]), "seed": int(meta["seed"]),
                                         "half": np.where(disc[idx], "discover", "confirm")}))
            ex = pick_examples(fr["sample_id"].to_numpy()[idx], fr["_correct"].to_numpy()[idx], c.distance[idx])
            paths = fr["filepath"] if "filepath" in fr.columns else fr["sample_id"]
            ex["filepath"] = ex["sample_id"].map(dict(zip(fr["sample_id"], paths, strict=True)))
            examples.append(ex.assign(slice_id=sid))
            feats.extend({"slice_id": sid, **f} for f in fl)
    return {"slices": _with_schema("slices", [pd.DataFrame(rows)]), "members": _with_schema("members", members),
            "examples": _with_schema("examples", examples), "features": _with_schema("features", [pd.DataFrame(feats)])}


def _lead(r) -> str:
    """The slice's strongest separating feature as ``column=value`` (a statistic: its name; none: "")."""
    return f"{r.lead_column}={r.lead_value}" if r.lead_value else r.lead_column


def severity(r, cfg: SliceConfig) -> tuple[str, str]:
    """``(severity, why)`` of a confirmed slice's finding. Critical needs strong evidence on the confirmation half:
    q < ``critical_q``, the interval's low bound above ``critical_gap``, at least 2 ``min_n`` rows, and a slice no
    labeled column explains (one where a domain, label, split or attribute value is over-represented by at least
    ``LABELED_SHARE`` points, or is the strongest separating feature, is labeled structure, which the per-group
    metrics measure too: at most a warning). A false critical costs more
    trust than a missed warning."""
    lead = _lead(r)
    short = []
    if not r.q < cfg.critical_q:
        short.append(f"q={r.q:.2g} is not below {cfg.critical_q:g}")
    if not r.ci_low > cfg.critical_gap:
        short.append(f"the interval's low bound {r.ci_low:+.1%} is not above {cfg.critical_gap:.0%}")
    if r.n_confirm < 2 * cfg.min_n:
        short.append(f"{r.n_confirm} rows are fewer than 2 x min_n = {2 * cfg.min_n}")
    if r.labeled:
        by = getattr(r, "labeled_by", "") or lead
        share = getattr(r, "labeled_share", "")
        short.append(f"the labeled column {by} separates it{f' ({share})' if share else ''}: labeled structure, "
                     "which the per-group metrics measure")
    if short:
        return "warning", "Warning, not critical: " + "; ".join(short) + "."
    what = f"its strongest separating feature ({lead}) is no labeled column" if r.lead_column else \
        "no labeled column explains it"
    return "critical", (f"Critical: q={r.q:.2g} < {cfg.critical_q:g}, interval low bound {r.ci_low:+.1%} above "
                        f"{cfg.critical_gap:.0%}, {r.n_confirm} >= 2 x min_n = {2 * cfg.min_n} rows, and {what}.")


def _findings(slices: pd.DataFrame, cfg: SliceConfig) -> list[Finding]:
    out = []
    for r in slices[slices["confirmed"]].itertuples() if len(slices) else []:
        sev, why = severity(r, cfg)
        lead = _lead(r)
        tied = getattr(r, "labeled_by", "") or lead
        title = (f"{r.model} errs on a discovered slice tied to {tied} ({r.fold})" if r.labeled
                 else f"{r.model} errs on a hidden slice ({r.fold})")
        detail = (f"On the confirmation half (rows never used to find it), {r.n_confirm} images of this slice are "
                  f"{r.accuracy:.1%} accurate vs {r.rest_accuracy:.1%} for the rest: gap {r.gap:+.1%} "
                  f"[{r.ci_low:+.1%}, {r.ci_high:+.1%}], p={r.p:.2g}, q={r.q:.2g}. What separates it: "
                  f"{r.description}. {why} Members in slices/members.parquet; examples on the dashboard's Slices "
                  "page.")
        out.append(Finding(kind="hidden_slice", severity=sev, title=title, detail=detail, columns=["embedding"],
                           groups=[r.slice_id], value=float(r.gap),
                           ci=[float(r.ci_low), float(r.ci_high)], n=int(r.n_confirm), score=float(r.gap),
                           evidence={"slice_id": r.slice_id, "model": r.model, "protocol": r.protocol,
                                     "fold": r.fold, "p": float(r.p), "q": float(r.q),
                                     "accuracy": float(r.accuracy), "rest_accuracy": float(r.rest_accuracy),
                                     "description": r.description, "lead_column": r.lead_column,
                                     "labeled": bool(r.labeled), "severity_rule": why,
                                     "critical_q": cfg.critical_q, "critical_gap": cfg.critical_gap,
                                     "min_n": cfg.min_n}))
    return out


def run_slices(run, config: SliceConfig | None = None) -> list[Finding]:
    """Discover and confirm slices of every fold; write ``RUN/slices/``; return the findings."""
    from audit.slices.rules import write_rules

    cfg = config or SliceConfig()
    frame, vec, info = fold_inputs(run, cfg)
    folds, gcol = _run_folds(frame, vec, cfg)
    cands: list[Candidate] = [c for _, _, _, cs in folds for c in cs]
    finalize(cands, cfg)
    tables = _tables(folds)
    for name, df in tables.items():
        run.write_table(f"slices/{name}.parquet", df.reset_index(drop=True))
    write_rules(run, folds, info)
    slices = tables["slices"]
    n_conf = int(slices["confirmed"].sum()) if len(slices) else 0
    run.write_json("slices/summary.json", {**info, "group_column": gcol, "folds": len(folds),
                                           "candidates": int(len(slices)), "confirmed": n_conf,
                                           "config": {k: v for k, v in cfg.__dict__.items()}})
    return _findings(slices, cfg)
