"""The metrics stage: predictions + manifest -> metrics/*.parquet and ranked findings.

Reads ``RUN/predictions.parquet`` (or an external file), joins it with the manifest and writes
``metrics/groups.parquet``, ``generalization.parquet``, ``transfer.parquet``, ``fairness.parquet`` and
``calibration.parquet`` as docs/formats.md describes. Findings are raised on q-values (Benjamini-Hochberg over
every comparison considered for a finding) and on effect sizes (thresholds in :data:`THRESHOLDS`).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

import audit.metrics._validate as V
from audit.errors import InputError, UsageError
from audit.findings import Finding
from audit.manifest import ATTR_PREFIX, attribute_columns, missing_column_error
from audit.metrics._bootstrap import benjamini_hochberg, bootstrap_pvalue
from audit.metrics._stats import Data, build_metric_specs, primary_segment_metric
from audit.metrics.encoding import (
    SegmentationCounts,
    encode_clusters,
    encode_groups,
    encode_samples,
    prepare_data,
    resolve_metrics,
)
from audit.metrics.engine import block_statistics, compute_report
from audit.metrics.fairness import fairness_report
from audit.metrics.generalization import generalization_gap, transfer_matrix

__all__ = ["run_metrics", "resolve_groupings", "load_predictions", "THRESHOLDS"]

# Effect sizes (absolute metric points) above which a significant comparison becomes a finding.
THRESHOLDS = {
    "generalization_gap": {"warning": 0.05, "critical": 0.15},
    "worst_group": {"warning": 0.05, "critical": 0.15},
    "group_disparity": {"warning": 0.10, "critical": 0.20},
    "fairness_violation": {"warning": 0.10, "critical": 0.20},
    "miscalibration": {"warning": 0.05, "critical": 0.15},
}
Q_MAX = 0.05  # findings need q < Q_MAX (BH over the whole family of comparisons)
# Fairness p-values test "difference <= FAIRNESS_MARGIN" (half the warning threshold), not "no difference": with many
# classes, groups and two criteria, differences of a few points are significant by noise or by trivial real effects.
FAIRNESS_MARGIN = THRESHOLDS["fairness_violation"]["warning"] / 2
SCOPES = ("ood", "id", "all")
PRIMARY = {"classify": "accuracy", "segment": "miou"}  # segmentation: see primary_for (binary -> fg_dice)
GAP_METRICS = {"classify": ("accuracy", "balanced_accuracy", "macro_f1"), "segment": ("miou", "fg_iou")}


def primary_for(task: str, n_seg_classes: int = 0) -> str:
    """The metric findings and headlines use: accuracy; foreground Dice for binary segmentation, else mIoU."""
    return primary_segment_metric(n_seg_classes) if task == "segment" else PRIMARY[task]


def gap_metrics_for(task: str, n_seg_classes: int = 0) -> tuple[str, ...]:
    """Metrics of metrics/generalization.parquet. Binary segmentation: foreground Dice and IoU, then mIoU (with
    background, so a reader sees how much the background average hides)."""
    if task == "segment" and n_seg_classes == 2:
        return ("fg_dice", "fg_iou", "miou")
    if task == "segment" and n_seg_classes < 2:
        return ("miou",)
    return GAP_METRICS[task]

_MSG_NO_TEST = "the predictions have no test rows (role == 'test'); nothing to measure"
_MSG_PRED_FILE = "cannot read predictions file {path}: {err}"
_MSG_PRED_EXT = "predictions file {path} must be .parquet or .csv"
_MSG_PRED_COLS = "predictions.parquet lacks column(s) {cols}; it must follow docs/formats.md"
_MSG_IDS = "{k} sample id(s) in the predictions are not in the manifest: {ids}"
_MSG_DEPTH = "depth must be between 1 and 4 (got {value!r})"


# ---------------------------------------------------------------------------------------------- inputs
def load_predictions(run, manifest: pd.DataFrame, path: Path | None, classes: list[str]) -> pd.DataFrame:
    """The predictions table, validated against the manifest (external files are completed with defaults)."""
    if path is None:
        df = run.read_table("predictions.parquet")
        required = ["sample_id", "model", "protocol", "fold", "role", "held_out"]
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise InputError(_MSG_PRED_COLS.format(cols=", ".join(missing)))
        _check_ids(df, manifest)
        return df
    path = Path(path)
    if not path.is_file():
        raise InputError(f"predictions file {path} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype={"sample_id": str, "y_true": str, "y_pred": str, "fold": str, "model": str})
        else:
            raise UsageError(_MSG_PRED_EXT.format(path=path))
    except UsageError:
        raise
    except Exception as e:  # pyarrow / csv parsers raise many types
        raise InputError(_MSG_PRED_FILE.format(path=path, err=str(e).splitlines()[0] if str(e) else type(e).__name__)) from None
    try:
        from audit.train.predictions import validate_predictions
    except ImportError:
        validate_predictions = None
    if validate_predictions is not None:
        return validate_predictions(df, manifest, classes)
    return _validate_external(df, manifest)


def _store_external(run, preds: pd.DataFrame, path: Path, notes: list[str]) -> pd.DataFrame:
    """Add an external predictions file to the run's ``predictions.parquet`` (replacing rows of the same model and
    protocol, keeping the others), so the metrics, the report and the dashboard all describe the same models."""
    prev = run.read_table("predictions.parquet", required=False)
    pairs = sorted({(str(m), str(p)) for m, p in zip(preds["model"], preds["protocol"], strict=True)})
    merged = preds
    if prev is not None and len(prev) and {"model", "protocol"} <= set(prev.columns):
        same = pd.Series(list(zip(prev["model"].astype(str), prev["protocol"].astype(str), strict=True))).isin(pairs)
        kept = prev[~same.to_numpy()]
        if len(kept):
            merged = pd.concat([kept, preds], ignore_index=True)
            others = sorted({f"{m}/{p}" for m, p in zip(kept["model"].astype(str), kept["protocol"].astype(str), strict=True)})
            notes.append(f"predictions of {', '.join(others)} kept beside those from {path.name}")
    run.write_table("predictions.parquet", merged)
    notes.append(f"{len(preds)} predictions from {path.name} stored in predictions.parquet as "
                 f"{', '.join(f'{m}/{p}' for m, p in pairs)}")
    return merged


def _check_ids(df: pd.DataFrame, manifest: pd.DataFrame) -> None:
    known = pd.Index(manifest["sample_id"].astype(str))
    ids = df["sample_id"].astype(str)
    bad = ids[~ids.isin(known)].drop_duplicates()
    if len(bad):
        shown = ", ".join(repr(x) for x in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise InputError(_MSG_IDS.format(k=len(bad), ids=shown))


def _validate_external(df: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Minimal validation when audit.train is not part of the build."""
    df = df.copy()
    if "sample_id" not in df.columns:
        raise InputError("the predictions table has no 'sample_id' column")
    if "y_pred" not in df.columns and not any(str(c).startswith("inter_") for c in df.columns):
        raise InputError("the predictions table needs 'y_pred' or inter_<c>/union_<c> columns")
    _check_ids(df, manifest)
    defaults = {"model": "external", "protocol": "external", "fold": "external", "role": "test", "train_domains": "",
                "seed": 0, "held_out": False}
    for k, v in defaults.items():
        if k not in df.columns:
            df[k] = v
    if "y_true" not in df.columns and "y_pred" in df.columns:
        lab = manifest.set_index(manifest["sample_id"].astype(str))["label"]
        df["y_true"] = lab.reindex(df["sample_id"].astype(str)).to_numpy()
    return df


def resolve_groupings(by: list[str] | None, manifest: pd.DataFrame, *, depth: int = 2, task: str = "classify") -> list[list[str]]:
    """Grouping column lists: the ``--by`` values (``a:b`` = intersection) or the defaults.

    Defaults: domain, label, each attribute, then every intersection of 2..depth columns among domain and the
    attributes. Bare names resolve to ``attr.<name>``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 4:
        raise UsageError(_MSG_DEPTH.format(value=depth))
    cols = [str(c) for c in manifest.columns]
    usable = [c for c in cols if c not in ("sample_id", "filepath", "mask", "group") and manifest[c].notna().any()]
    if by:
        out = []
        for spec in by:
            parts = []
            for name in str(spec).split(":"):
                name = name.strip()
                if name in cols:
                    parts.append(name)
                elif ATTR_PREFIX + name in cols:
                    parts.append(ATTR_PREFIX + name)
                else:
                    raise missing_column_error(name, "by", [c for c in cols if c not in ("sample_id", "filepath")])
            if len(set(parts)) != len(parts):
                raise UsageError(f"--by {spec!r} repeats a column")
            if parts not in out:
                out.append(parts)
        return out
    attrs = [c for c in attribute_columns(manifest) if c in usable]
    base = (["domain"] if "domain" in usable else []) + attrs
    out = [[c] for c in (["domain"] if "domain" in usable else []) + (["label"] if "label" in usable and task == "classify" else []) + attrs]
    for k in range(2, depth + 1):
        for combo in itertools.combinations(base, k):
            out.append(list(combo))
    return out


_CATEGORIES: dict[tuple, list[str]] = {}


def _categories(manifest: pd.DataFrame, cols: list[str]) -> list[str]:
    """Every group of a grouping in the manifest, in natural order (intersections ordered by their parts)."""
    key = (id(manifest), tuple(cols))
    if key not in _CATEGORIES:
        orders = [{v: i for i, v in enumerate(V.natural_sorted(manifest[c].dropna()))} for c in cols]
        combos = manifest[cols].dropna().astype(str).drop_duplicates().itertuples(index=False, name=None)
        combos = sorted(combos, key=lambda t: tuple(o[v] for o, v in zip(orders, t, strict=True)))
        _CATEGORIES[key] = [" | ".join(t) for t in combos]
    return _CATEGORIES[key]


def _categorical(frame: pd.DataFrame, manifest: pd.DataFrame, cols: list[str]) -> pd.Categorical:
    """The grouping's values for ``frame``'s rows as a Categorical whose categories are every group in the manifest
    (so a group absent from these rows is reported as empty, NaN). Intersections join values with `` | ``."""
    values = frame[cols[0]].astype("string").astype(object)
    if len(cols) > 1:
        values = frame[cols[0]].astype("string").str.cat([frame[c].astype("string") for c in cols[1:]], sep=" | ")
        values = values.astype(object)
    values = values.where(values.notna(), None)
    return pd.Categorical(values.to_numpy(object), categories=_categories(manifest, cols))


# ---------------------------------------------------------------------------------------------- data of one slice
def _slice_data(frame: pd.DataFrame, task: str, classes: list[str]) -> tuple[Data, bool]:
    """Data (labels/probabilities or pixel counts) for a slice of the predictions; bool: probabilities present."""
    if task == "segment":
        idx = sorted(int(c.split("_", 1)[1]) for c in frame.columns if c.startswith("inter_") and c.split("_", 1)[1].isdigit())
        names = [classes[i] if i < len(classes) else str(i) for i in idx]
        seg = SegmentationCounts(
            inter=frame[[f"inter_{i}" for i in idx]].to_numpy(float),
            union=frame[[f"union_{i}" for i in idx]].to_numpy(float),
            pred=frame[[f"pred_{i}" for i in idx]].to_numpy(float) if all(f"pred_{i}" in frame for i in idx) else frame[[f"inter_{i}" for i in idx]].to_numpy(float),
            true=frame[[f"true_{i}" for i in idx]].to_numpy(float) if all(f"true_{i}" in frame for i in idx) else frame[[f"union_{i}" for i in idx]].to_numpy(float),
            classes=names,
        )
        return prepare_data(segmentation=seg), False
    pcols = [f"p_{c}" for c in classes]
    has_p = bool(classes) and all(c in frame.columns for c in pcols) and not frame[pcols].isna().any().any()
    return prepare_data(y_true=frame["y_true"].astype(str).to_numpy(object), y_pred=frame["y_pred"].astype(str).to_numpy(object),
                        y_prob=frame[pcols].to_numpy(float) if has_p else None, classes=classes or None), has_p


# ---------------------------------------------------------------------------------------------- the stage
def run_metrics(run, config) -> list[Finding]:
    """Compute every metrics table of the run and return the ranked findings (see module docstring)."""
    V.check_int(config.min_n, "min_n")
    V.check_int(config.n_boot, "n_boot")
    V.check_int(config.seed, "seed")
    manifest = run.manifest()
    task = run.task
    classes = [str(c) for c in run.classes()]
    preds = load_predictions(run, manifest, config.predictions, classes)
    groupings = resolve_groupings(config.by, manifest, depth=config.depth, task=task)
    notes: list[str] = []
    if config.predictions is not None:
        preds = _store_external(run, preds, Path(config.predictions), notes)
    dropped = {}

    keep_cols = ["sample_id", "group"] + [c for c in manifest.columns if c not in ("sample_id", "filepath", "mask", "group")]
    man = manifest[[c for c in keep_cols if c in manifest.columns]].copy()
    man["sample_id"] = man["sample_id"].astype(str)
    if "group" not in man.columns:
        man["group"] = man["sample_id"]
    man["group"] = man["group"].astype("string").fillna(man["sample_id"].astype("string"))
    p = preds.copy()
    p["sample_id"] = p["sample_id"].astype(str)
    p = p.drop(columns=[c for c in man.columns if c != "sample_id" and c in p.columns])
    df = p.merge(man, on="sample_id", how="left", validate="many_to_one")
    for col, val in (("seed", 0), ("train_domains", ""), ("test_domain", None)):
        if col not in df.columns:
            df[col] = val
    df["held_out"] = df["held_out"].astype("boolean").fillna(False).astype(bool)
    df["fold"] = df["fold"].astype(str)
    test = df[df["role"].astype(str) == "test"]
    if test.empty:
        raise InputError(_MSG_NO_TEST)
    if task == "classify":
        if not classes:
            classes = V.natural_sorted(pd.concat([test["y_true"], test["y_pred"]]).dropna())
        bad = test["y_pred"].isna() | test["y_true"].isna()
        if bad.any():
            dropped["no_prediction_or_label"] = int(bad.sum())
            notes.append(f"{int(bad.sum())} test rows without y_true or y_pred were left out")
            test = test[~bad]
        pcols = [f"p_{c}" for c in classes]
        if all(c in test.columns for c in pcols) and test[pcols].isna().any().any():
            lacking = sorted(test.loc[test[pcols].isna().any(axis=1), "model"].astype(str).unique())
            notes.append(f"some p_<class> values are missing: calibration metrics skipped for {', '.join(lacking)}")
    if test.empty:
        raise InputError(_MSG_NO_TEST)

    group_rows, gen_rows, fair_rows, cal_rows, tr_rows = [], [], [], [], []
    cands: list[dict] = []  # comparisons considered for findings (p-values for BH)
    for (model, protocol), mp in test.groupby([test["model"].astype(str), test["protocol"].astype(str)], sort=True):
        has_ood = bool(mp["held_out"].any())
        pref_scope = "ood" if has_ood else "all"
        folds = sorted(mp["fold"].unique())
        fold_list = folds + (["all"] if len(folds) > 1 else [])
        pooled = "all" if len(folds) > 1 else folds[0]
        for fold in fold_list:
            fdf = mp if fold == "all" else mp[mp["fold"] == fold]
            for scope in SCOPES:
                sdf = fdf if scope == "all" else fdf[fdf["held_out"] == (scope == "ood")]
                if sdf.empty:
                    continue
                # findings come from the pooled fold and the most telling scope (out-of-domain when there is one)
                fc = cands if (fold == pooled and scope == pref_scope) else None
                ctx = _Slice(model, protocol, fold, scope, sdf, task, classes, config, man)
                group_rows.append(ctx.groups(groupings, fc))
                if task == "classify":
                    fair_rows.append(ctx.fairness(groupings, fc))
                    if fold == pooled:
                        cal_rows.append(ctx.calibration(groupings, fc))
        gen_rows.extend(_generalization(mp, model, protocol, folds, task, classes, config, cands))
        if protocol == "transfer":
            tr_rows.append(_transfer(mp, model, task, classes, config))

    groups = _concat(group_rows, ["model", "protocol", "fold", "scope", "by", "group", "metric", "value", "ci_low", "ci_high", "n", "status", "ci_method"])
    run.write_table("metrics/groups.parquet", groups)
    gen = pd.DataFrame(gen_rows, columns=_GEN_COLS) if gen_rows else pd.DataFrame(columns=_GEN_COLS)
    run.write_table("metrics/generalization.parquet", gen)
    run.write_table("metrics/transfer.parquet", _concat(tr_rows, ["model", "train_domain", "test_domain", "metric", "value", "ci_low", "ci_high", "n", "status"]))
    run.write_table("metrics/fairness.parquet", _concat(fair_rows, ["model", "protocol", "fold", "scope", "attribute", "metric", "class", "value", "ci_low", "ci_high", "n", "n_groups", "n_excluded", "p", "groups", "positive"]))
    run.write_table("metrics/calibration.parquet", _concat(cal_rows, ["model", "protocol", "fold", "scope", "by", "group", "bin", "bin_low", "bin_high", "confidence", "accuracy", "count"]))

    _CATEGORIES.clear()
    findings = _findings(cands, config)
    findings = _sanity(run, test, task, classes, config, gen, findings)
    _record(run, config, notes, dropped, groupings, len(test), findings)
    return findings


_GEN_COLS = ["model", "protocol", "fold", "train_domains", "test_domain", "metric", "in_domain", "in_ci_low", "in_ci_high", "n_in",
             "out_domain", "out_ci_low", "out_ci_high", "n_out", "gap", "gap_ci_low", "gap_ci_high", "p", "seeds"]


def _sanity(run, test, task, classes, config, gen, findings: list[Finding]) -> list[Finding]:
    """Compare each model with trivial baselines (metrics/sanity.py); withhold the gap and group findings of a
    model that learned nothing, and mark its generalization rows not interpretable."""
    from audit.metrics.sanity import WITHHELD_KINDS, degenerate_findings, model_sanity

    table = model_sanity(test, task, classes, seed=config.seed)
    run.write_table("metrics/sanity.parquet", table)
    bad_findings, bad = degenerate_findings(table)
    gen = gen.copy()
    gen["interpretable"] = ~gen["model"].astype(str).isin(bad) if len(gen) else pd.Series(dtype=bool)
    run.write_table("metrics/generalization.parquet", gen)
    kept = [f for f in findings if not (f.kind in WITHHELD_KINDS and str(f.evidence.get("model")) in bad)]
    return bad_findings + kept


def _concat(frames: list[pd.DataFrame], cols: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    out = pd.concat(frames, ignore_index=True)
    return out[[c for c in cols if c in out.columns] + [c for c in out.columns if c not in cols]]


def _record(run, config, notes, dropped, groupings, n_rows, findings) -> None:
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    run.update_info(config={"metrics": cfg})
    stages = run.info.get("stages", {})
    entry = stages.get("metrics", {})
    entry.update({"rows": int(n_rows), "groupings": [" x ".join(g) for g in groupings], "notes": notes, "dropped": dropped,
                  "findings": len(findings), "n_boot": config.n_boot, "seed": config.seed})
    stages["metrics"] = entry
    run.update_info(stages=stages)


class _Slice:
    """One (model, protocol, fold, scope) slice of the test predictions."""

    def __init__(self, model, protocol, fold, scope, frame, task, classes, config, man):
        self.model, self.protocol, self.fold, self.scope = model, protocol, fold, scope
        self.frame = frame.reset_index(drop=True)
        self.task = task
        self.config = config
        self.man = man
        self.data, self.has_p = _slice_data(self.frame, task, classes)
        self.cluster, self.n_clusters = encode_clusters(self.frame["group"].astype(str).to_numpy(object), len(self.frame))
        self.samples = encode_samples(self.frame["sample_id"].to_numpy(object), len(self.frame))
        self.names = resolve_metrics(None, self.data)
        self.specs = build_metric_specs(self.names, self.data)
        self.key = {"model": model, "protocol": protocol, "fold": fold, "scope": scope}

    def _report(self, cols, specs=None):
        cat = _categorical(self.frame, self.man, cols) if cols else None
        codes, groups, _ = encode_groups(cat, len(self.frame)) if cat is not None else encode_groups(None, len(self.frame))
        return compute_report(self.data, specs or self.specs, codes, groups, " x ".join(cols) or "overall", self.cluster,
                               self.n_clusters, n_boot=self.config.n_boot, min_n=self.config.min_n, seed=self.config.seed,
                               proportion_ci="auto", confidence=0.95, samples=self.samples)

    def groups(self, groupings, cands) -> pd.DataFrame:
        frames = []
        overall = self._report([])
        frames.append(overall.to_frame(include_overall=False))
        primary = primary_for(self.task, self.data.C)
        for cols in groupings:
            rep = self._report(cols)
            frames.append(rep.to_frame(include_overall=False))
            if cands is not None:
                self._group_candidates(rep, cols, primary, cands)
                if self.has_p and cols == ["domain"]:
                    self._calib_candidates(rep, cols, cands)
        out = pd.concat(frames, ignore_index=True)
        for k, v in reversed(list(self.key.items())):
            out.insert(0, k, v)
        return out

    def _group_candidates(self, rep, cols, metric, cands) -> None:
        by = rep.by
        st = rep.status()[metric]
        small = [g for g in rep.groups if st[g] == "insufficient_evidence"]
        if small:
            cands.append({"kind": "insufficient_evidence", "by": by, "cols": cols, "groups": small, "key": self.key,
                          "metric": metric, "n": [int(rep.n_by_group.loc[g, metric]) for g in small], "min_n": rep.min_n})
        ok = [g for g in rep.groups if st[g] == "ok"]
        if len(ok) < 2:
            return
        worst, best = rep.worst(metric), rep.best(metric)
        # an intersection must add to its marginals: the worst group is judged against its siblings too
        within = self._within_marginals(cols, metric, worst["group"], len(ok)) if len(cols) > 1 else None
        pair = rep.compare(metric, best["group"], worst["group"])
        n_pairs = len(ok) * (len(ok) - 1) // 2
        cands.append({"kind": "group_disparity", "by": by, "cols": cols, "groups": [worst["group"], best["group"]], "key": self.key,
                      "metric": metric, "effect": pair["difference"], "ci": [pair["ci_low"], pair["ci_high"]],
                      "p": min(1.0, pair["p"] * n_pairs) if np.isfinite(pair["p"]) else np.nan, "n": worst["n"],
                      "values": {worst["group"]: worst["value"], best["group"]: best["value"]}, "n_pairs": n_pairs,
                      "within": within})
        _intersection_union(cands[-1])
        if len(ok) >= 3:
            c = rep.compare(metric, worst["group"], "rest")
            cands.append({"kind": "worst_group", "by": by, "cols": cols, "groups": [worst["group"]], "key": self.key,
                          "metric": metric, "effect": -c["difference"], "ci": [-c["ci_high"], -c["ci_low"]],
                          "p": min(1.0, c["p"] * len(ok)) if np.isfinite(c["p"]) else np.nan, "n": worst["n"],
                          "values": {worst["group"]: worst["value"], "rest": worst["value"] - c["difference"]},
                          "worst_ci": [worst["ci_low"], worst["ci_high"]], "within": within})
            _intersection_union(cands[-1])

    def _within_marginals(self, cols, metric, group, n_ok) -> list[dict]:
        """The worst group of an intersection vs its siblings along each column: the groups that share its other
        values (``scanner | navy`` vs ``scanner | black`` for the ink column, vs ``phone | navy`` and
        ``studio | navy`` for the domain column). A finding fully explained by one marginal (no difference to
        the siblings within it) adds nothing to that marginal's own finding."""
        spec = next(s for s in self.specs if s.name == metric)
        cat = _categorical(self.frame, self.man, cols)
        mine = np.asarray(cat == group)
        vals = {c: self.frame[c].astype("string") for c in cols}
        first = int(np.flatnonzero(mine)[0])
        out = []
        for c in cols:
            others = [o for o in cols if o != c]
            parent = np.ones(len(self.frame), dtype=bool)
            for o in others:
                parent &= (vals[o] == vals[o].iloc[first]).fillna(False).to_numpy(bool)
            sib = parent & ~mine & vals[c].notna().to_numpy(bool)
            where = " & ".join(f"{o}={vals[o].iloc[first]}" for o in others)
            row = {"column": c, "within": where, "effect": np.nan, "ci": [np.nan, np.nan], "p": np.nan, "n": 0}
            if sib.any():
                codes = np.where(mine, 0, np.where(sib, 1, -1))
                r = compute_report(self.data, [spec], codes, ["group", "siblings"], c, self.cluster, self.n_clusters,
                                    n_boot=self.config.n_boot, min_n=self.config.min_n, seed=self.config.seed,
                                    proportion_ci="auto", confidence=0.95, rest=False, samples=self.samples)
                n_sib = int(r._n[1, 0])
                cmp_ = r.compare(metric, "siblings", "group")
                sign = 1.0 if spec.higher_is_better else -1.0
                lo, hi = sign * cmp_["ci_low"], sign * cmp_["ci_high"]
                row.update(effect=sign * cmp_["difference"], ci=[min(lo, hi), max(lo, hi)], n=n_sib,
                           p=min(1.0, cmp_["p"] * n_ok) if np.isfinite(cmp_["p"]) and n_sib >= self.config.min_n else np.nan)
            out.append(row)
        return out

    def _calib_candidates(self, rep, cols, cands) -> None:
        self._ece_candidate(self._report([], [s for s in self.specs if s.name == "ece"]), None, cands)
        ece = [s for s in self.specs if s.name == "ece"]
        if ece:
            self._ece_candidate(self._report(cols, ece), cols, cands)

    def _ece_candidate(self, rep, cols, cands) -> None:
        thr = THRESHOLDS["miscalibration"]["warning"]
        boot = rep.bootstrap("ece")
        targets = [("all", -1)] if cols is None else [(g, i) for i, g in enumerate(rep.groups) if rep.status()["ece"][g] == "ok"]
        for g, i in targets:
            v = float(rep.overall["ece"]) if i < 0 else float(rep.by_group["ece"].iloc[i])
            lo, hi = rep.interval("ece", None if i < 0 else g)
            n = int(rep._n[i, 0])
            p = float(bootstrap_pvalue(boot[:, i][:, None], np.array([v]), null=thr, alternative="greater")[0]) if boot is not None else np.nan
            cands.append({"kind": "miscalibration", "by": "overall" if cols is None else rep.by, "cols": cols or [],
                          "groups": [g], "key": self.key, "metric": "ece", "effect": v, "ci": [lo, hi], "p": p, "n": n})

    def fairness(self, groupings, cands) -> pd.DataFrame:
        frames = []
        worst: dict[tuple[str, str], float] = {}  # (attribute column, metric) -> its largest class difference
        pending: list[dict] = []
        for cols in groupings:
            if cols == ["label"] or "label" in cols:
                continue  # fairness is conditional on the label already
            cat = _categorical(self.frame, self.man, cols)
            f = fairness_report(y_true=np.asarray(self.data.classes, dtype=object)[self.data.y_true],
                                y_pred=np.asarray(self.data.classes, dtype=object)[self.data.y_pred],
                                sensitive=pd.Series(cat, name=" x ".join(cols)), classes=self.data.classes,
                                clusters=self.cluster, n_boot=self.config.n_boot, min_n=self.config.min_n, seed=self.config.seed,
                                sample_ids=self.frame["sample_id"].to_numpy(object), margin=FAIRNESS_MARGIN)
            frames.append(f)
            if len(cols) == 1:
                for metric in ("dp_diff", "eo_diff"):
                    v = pd.to_numeric(f.loc[f["metric"] == metric, "value"], errors="coerce").max()
                    if np.isfinite(v):
                        worst[(cols[0], metric)] = float(v)
            # Fairness findings are about attributes; domain differences are generalization findings already.
            if cands is not None and "domain" not in cols:
                pending.extend(fairness_candidates(f, cols, self.key))
        if cands is not None:
            cands.extend(c for c in pending if _adds_to_marginals(c, worst))
        if not frames:
            return None
        out = pd.concat(frames, ignore_index=True)
        for k, v in reversed(list(self.key.items())):
            out.insert(0, k, v)
        return out

    def calibration(self, groupings, cands) -> pd.DataFrame | None:
        if not self.has_p:
            return None
        d = self.data
        frames = []
        for cols in [[]] + [g for g in groupings if len(g) == 1 and g != ["label"]]:
            cat = _categorical(self.frame, self.man, cols) if cols else None
            codes, groups, by = encode_groups(cat, d.n) if cat is not None else encode_groups(None, d.n)
            G = len(groups)
            cell = np.where(codes < 0, G, codes)
            _, point = block_statistics(d, "calib", cell, G + 1, self.cluster, self.n_clusters)
            S = point[:G].reshape(G, -1, 3)
            e = d.bin_edges()
            nb = S.shape[1]
            lo_e = e[:nb]
            hi_e = np.append(e[1:], 1.0)[:nb]
            with np.errstate(invalid="ignore", divide="ignore"):
                conf = np.where(S[..., 0] > 0, S[..., 1] / np.maximum(S[..., 0], 1), np.nan)
                acc = np.where(S[..., 0] > 0, S[..., 2] / np.maximum(S[..., 0], 1), np.nan)
            frames.append(pd.DataFrame({
                "by": "overall" if not cols else " x ".join(cols), "group": np.repeat(groups, nb), "bin": np.tile(np.arange(nb), G),
                "bin_low": np.tile(lo_e, G), "bin_high": np.tile(hi_e, G), "confidence": conf.reshape(-1),
                "accuracy": acc.reshape(-1), "count": S[..., 0].reshape(-1).astype(np.int64)}))
        out = pd.concat(frames, ignore_index=True)
        for k, v in reversed(list(self.key.items())):
            out.insert(0, k, v)
        return out


def _adds_to_marginals(c: dict, worst: dict[tuple[str, str], float]) -> bool:
    """An intersection's fairness candidate (``background x ink``) is kept only when its interval lies above the
    largest difference of each of its attributes alone: otherwise it repeats a marginal's finding (the gap between
    two intersection cells is at least the gap its strongest attribute already shows)."""
    cols = c.get("cols") or []
    if len(cols) < 2:
        return True
    lo = c.get("ci", [np.nan])[0]
    lo = float(lo) if lo is not None else np.nan
    marg = [worst.get((col, c["metric"])) for col in cols]
    marg = [m for m in marg if m is not None]
    if not marg or not np.isfinite(lo):
        return True
    if lo <= max(marg):
        c.setdefault("evidence_extra", {})["explained_by_marginals"] = dict(zip(cols, marg, strict=False))
        return False
    return True


def _intersection_union(c: dict) -> None:
    """An intersection candidate is significant only if the main comparison and every within-marginal comparison
    are (intersection-union test): its p-value is the largest of theirs (a missing one counts as 1)."""
    if not c.get("within"):
        return
    c["p_main"] = c["p"]
    ps = [c["p"]] + [r["p"] for r in c["within"]]
    c["p"] = float(max(x if np.isfinite(x) else 1.0 for x in ps)) if np.isfinite(c["p"]) else np.nan


def fairness_candidates(f: pd.DataFrame, cols: list[str], key: dict) -> list[dict]:
    """Finding candidates (dp_diff, eo_diff) from one attribute's :func:`fairness_report` table.

    With more than two classes the candidate is one class, judged on its own difference, interval and p-value:
    the class with the largest difference among those significant after Bonferroni over the classes tested
    (on top of the group pairs), else the most significant one (which then fails the q test). Not the ``worst``
    row: a max over many classes is biased upward (with small groups some class exceeds the threshold by
    noise) and its p-value (the smallest over classes) may belong to another class than its value.
    """
    out = []
    for metric in ("dp_diff", "eo_diff"):
        rows = f[(f["metric"] == metric) & ~f["class"].isin(["macro", "worst"])]
        rows = rows[np.isfinite(rows["value"].to_numpy(float))]
        if rows.empty:
            continue
        p = rows["p"].to_numpy(float)
        tested = np.isfinite(p)
        k = max(1, int(tested.sum()))
        padj = np.where(tested, np.minimum(1.0, p * k), np.nan)
        v = rows["value"].to_numpy(float)
        sig = tested & (padj < Q_MAX)
        if sig.any():
            i = int(np.argmax(np.where(sig, v, -np.inf)))
        elif tested.any():
            i = int(np.nanargmin(padj))
        else:
            i = int(np.argmax(v))
        r = rows.iloc[i]
        binary = r["class"] == "binary"
        groups = [] if r["groups"] is None or isinstance(r["groups"], float) else str(r["groups"]).split(" vs ")
        out.append({"kind": "fairness_violation", "by": r["attribute"], "cols": cols, "groups": groups, "key": key,
                    "metric": metric, "cls": "binary" if binary else "worst", "class": str(r["class"]),
                    "n_classes": 1 if binary else k, "effect": float(r["value"]), "ci": [r["ci_low"], r["ci_high"]],
                    "p": float(padj[i]), "n": int(r["n"])})
    return out


def _generalization(mp, model, protocol, folds, task, classes, config, cands) -> list[dict]:
    rows = []
    pieces = [(f, mp[mp["fold"] == f]) for f in folds]
    if len(folds) > 1:
        pieces.append(("all", mp))
    for fold, fdf in pieces:
        ins = fdf[~fdf["held_out"]]
        outs = fdf[fdf["held_out"]]
        if ins.empty or outs.empty:
            continue
        targets = [("all", outs)] if fold == "all" else [(str(t), o) for t, o in outs.groupby(outs["test_domain"].astype(str), sort=True)]
        for test_domain, o in targets:
            sub = pd.concat([ins, o], ignore_index=True)
            data, has_p = _slice_data(sub, task, classes)
            train_domains = "all" if fold == "all" else "|".join(sorted({str(x) for x in fdf["train_domains"].dropna().unique()}))
            for metric in gap_metrics_for(task, data.C):
                kw = ({"segmentation": SegmentationCounts(data.inter, data.union, data.pred_px, data.true_px, data.seg_classes)}
                      if task == "segment" else {"y_true": np.asarray(data.classes, dtype=object)[data.y_true],
                                                 "y_pred": np.asarray(data.classes, dtype=object)[data.y_pred], "classes": data.classes})
                g = generalization_gap(held_out=sub["held_out"].to_numpy(bool), metric=metric, seeds=sub["seed"].to_numpy(),
                                       sample_ids=sub["sample_id"].astype(str).to_numpy(object),
                                       clusters=sub["group"].astype(str).to_numpy(object), n_boot=config.n_boot, seed=config.seed, **kw)
                row = {"model": model, "protocol": protocol, "fold": fold, "train_domains": train_domains, "test_domain": test_domain, **g}
                rows.append(row)
                if metric == primary_for(task, data.C) and fold != "all":
                    key = {"model": model, "protocol": protocol, "fold": fold, "scope": "ood"}
                    if min(row["n_in"], row["n_out"]) < config.min_n:
                        cands.append({"kind": "insufficient_evidence", "by": "domain", "cols": ["domain"], "groups": [test_domain],
                                      "key": key, "metric": metric, "n": [row["n_in"], row["n_out"]], "min_n": config.min_n, "gap": row})
                    else:
                        cands.append({"kind": "generalization_gap", "by": "domain", "cols": ["domain"], "groups": [test_domain],
                                      "key": key, "metric": metric, "effect": row["gap"], "ci": [row["gap_ci_low"], row["gap_ci_high"]],
                                      "p": row["p"], "n": row["n_out"], "row": row})
    return rows


def _transfer(mp, model, task, classes, config) -> pd.DataFrame | None:
    data, _ = _slice_data(mp.reset_index(drop=True), task, classes)
    train = mp["fold"].astype(str).str.replace(r"^train=", "", regex=True).to_numpy(object)
    kw = ({"segmentation": SegmentationCounts(data.inter, data.union, data.pred_px, data.true_px, data.seg_classes)}
          if task == "segment" else {"y_true": np.asarray(data.classes, dtype=object)[data.y_true],
                                     "y_pred": np.asarray(data.classes, dtype=object)[data.y_pred], "classes": data.classes})
    f = transfer_matrix(train_domain=train, test_domain=mp["test_domain"].to_numpy(object), metric=primary_for(task, data.C),
                        clusters=mp["group"].astype(str).to_numpy(object), n_boot=config.n_boot, min_n=config.min_n,
                        seed=config.seed, **kw)
    f.insert(0, "model", model)
    return f.drop(columns=["ci_method"], errors="ignore")


# ---------------------------------------------------------------------------------------------- findings
def _findings(cands: list[dict], config) -> list[Finding]:
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
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _finding(c: dict, config) -> Finding | None:
    kind = c["kind"]
    key = c["key"]
    where = f"{key['model']}/{key['protocol']}" + (f" fold {key['fold']}" if key["fold"] != "all" else "") + f" ({key['scope']})"
    extra = f"{key['model']}|{key['protocol']}|{key['fold']}|{key['scope']}|{c['metric']}|{c.get('cls', '')}"
    ev = {"model": key["model"], "protocol": key["protocol"], "fold": key["fold"], "scope": key["scope"], "metric": c["metric"],
          "n_boot": config.n_boot, "seed": config.seed, "id_extra": extra}
    if kind == "insufficient_evidence":
        if "gap" in c:
            r = c["gap"]
            return Finding("insufficient_evidence", "info",
                           f"too few samples to judge the {c['metric']} gap on held-out {c['groups'][0]} ({where})",
                           detail=f"in-domain n={r['n_in']}, out-of-domain n={r['n_out']} (min_n={c['min_n']}); gap {_fmt(r['gap'])} "
                                  f"[{_fmt(r['gap_ci_low'])}, {_fmt(r['gap_ci_high'])}] is reported without a verdict",
                           columns=c["cols"], groups=c["groups"], value=r["gap"], ci=[r["gap_ci_low"], r["gap_ci_high"]],
                           n=min(r["n_in"], r["n_out"]), score=0.0, evidence={**ev, "min_n": c["min_n"]})
        groups = c["groups"]
        shown = ", ".join(f"{g} (n={n})" for g, n in list(zip(groups, c["n"], strict=False))[:8]) + (" ..." if len(groups) > 8 else "")
        return Finding("insufficient_evidence", "info", f"{len(groups)} {c['by']} group(s) below min_n={c['min_n']} ({where})",
                       detail=f"{shown}: values are reported with intervals but get no verdict",
                       columns=c["cols"], groups=groups[:20], value=float(len(groups)), n=int(sum(c["n"])), score=0.0,
                       evidence={**ev, "min_n": c["min_n"], "n": c["n"][:50]})
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
        if kind in ("generalization_gap", "worst_group", "group_disparity"):
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
        return None
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
    g = ", ".join(map(str, c["groups"]))
    if kind == "generalization_gap":
        r = c["row"]
        title = f"{c['metric']} drops by {_fmt(eff)} on held-out domain {g} ({_fmt(r['in_domain'])} -> {_fmt(r['out_domain'])}; {where})"
        detail = (f"in-domain {_fmt(r['in_domain'])} (n={r['n_in']}), out-of-domain {_fmt(r['out_domain'])} (n={r['n_out']}); "
                  f"gap 95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}], q={_fmt(qv)}; trained on {r['train_domains']}")
    elif kind == "worst_group":
        title = f"worst {c['by']} group {g}: {c['metric']} {_fmt(c['values'][c['groups'][0]])}, {_fmt(eff)} below the rest ({note}{where})"
        detail = f"difference to the rest 95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}], q={_fmt(qv)} (Bonferroni for picking the worst)"
    elif kind == "group_disparity":
        title = f"{c['metric']} differs by {_fmt(eff)} across {c['by']} ({g}; {note}{where})"
        detail = f"best - worst 95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}], q={_fmt(qv)} ({c['n_pairs']} pairs, Bonferroni)"
    elif kind == "fairness_violation":
        multi = c.get("cls") not in (None, "binary")
        title = f"{c['metric']} {_fmt(eff)} across {c['by']}" + (f" (class {c['class']})" if multi else "") + f" ({where})"
        detail = f"95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}], q={_fmt(qv)} (test of a difference above {FAIRNESS_MARGIN:g}); extreme groups: {g}"
        ev.update(margin=FAIRNESS_MARGIN)
        if multi:
            detail += (f"; the largest difference among the classes significant after Bonferroni over "
                       f"{c['n_classes']} classes and the group pairs")
            ev.update({"class": c["class"], "n_classes": c["n_classes"]})
    else:  # miscalibration
        title = f"miscalibrated: ECE {_fmt(eff)}" + (f" for {c['by']}={g}" if c["by"] != "overall" else "") + f" ({where})"
        detail = f"95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}]; one-sided test of ECE > {thr['warning']}: q={_fmt(qv)}"
    return Finding(kind, severity, title, detail=detail, columns=c["cols"], groups=c["groups"], value=eff, ci=ci, n=c["n"],
                   score=score, evidence=ev)
