"""The metrics stage: predictions + manifest -> metrics/*.parquet and ranked findings.

Reads ``RUN/predictions.parquet`` (or an external file), joins it with the manifest and writes
``metrics/groups.parquet``, ``generalization.parquet``, ``transfer.parquet``, ``fairness.parquet`` and
``calibration.parquet`` as docs/formats.md describes. Findings are raised on q-values (Benjamini-Hochberg over
every comparison considered for a finding) and on effect sizes (thresholds in :data:`THRESHOLDS`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pandas as pd

import audit.metrics._validate as V
from audit.errors import InputError
from audit.findings import Finding
from audit.metrics.candidates import PredictionSlice, generalization_rows, transfer_rows
from audit.metrics.defaults import SCOPES, THRESHOLDS
from audit.metrics.finding_text import findings_from
from audit.metrics.inputs import (
    _MSG_NO_TEST,
    clear_categories,
    load_predictions,
    resolve_groupings,
    store_external,
)

__all__ = ["run_metrics", "resolve_groupings", "load_predictions", "THRESHOLDS"]


# ---------------------------------------------------------------------------------------------- the stage
_COLUMNS = {
    "groups": ["model", "protocol", "fold", "scope", "by", "group", "metric", "value", "ci_low", "ci_high", "n",
               "status", "ci_method"],
    "transfer": ["model", "train_domain", "test_domain", "metric", "value", "ci_low", "ci_high", "n", "status"],
    "fairness": ["model", "protocol", "fold", "scope", "attribute", "metric", "class", "value", "ci_low", "ci_high",
                 "n", "n_groups", "n_excluded", "p", "groups", "positive"],
    "calibration": ["model", "protocol", "fold", "scope", "by", "group", "bin", "bin_low", "bin_high", "confidence",
                    "accuracy", "count"],
}


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
        preds = store_external(run, preds, Path(config.predictions), notes)
    dropped: dict = {}
    man = _manifest_columns(manifest)
    test, classes = _test_rows(preds, man, task, classes, notes, dropped)
    parts = [part for (model, protocol), mp in test.groupby([test["model"].astype(str), test["protocol"].astype(str)],
                                                            sort=True)
             for part in _model_parts(mp, model, protocol, task, classes, config, man, groupings)]
    rows, cands = _run_parts(run, parts, config, task, classes, groupings)
    for name in ("groups", "transfer", "fairness", "calibration"):
        run.write_table(f"metrics/{name}.parquet", _concat(rows[name], _COLUMNS[name]))
    gen = pd.DataFrame(rows["generalization"], columns=_GEN_COLS) if rows["generalization"] else \
        pd.DataFrame(columns=_GEN_COLS)
    run.write_table("metrics/generalization.parquet", gen)
    clear_categories()
    findings = findings_from(cands, config)
    findings = _sanity(run, test, task, classes, config, gen, findings)
    _record(run, config, notes, dropped, groupings, len(test), findings)
    run.clear_parts("metrics")
    return findings


def _manifest_columns(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest columns predictions are joined with; ``group`` (the resampling cluster) defaults to the sample."""
    keep_cols = ["sample_id", "group"] + [c for c in manifest.columns
                                          if c not in ("sample_id", "filepath", "mask", "group")]
    man = manifest[[c for c in keep_cols if c in manifest.columns]].copy()
    man["sample_id"] = man["sample_id"].astype(str)
    if "group" not in man.columns:
        man["group"] = man["sample_id"]
    man["group"] = man["group"].astype("string").fillna(man["sample_id"].astype("string"))
    return man


def _test_rows(preds, man, task: str, classes: list[str], notes: list[str], dropped: dict):
    """The test rows joined with the manifest (rows without a label or prediction left out, and counted), and the
    classes (from the labels when the run names none)."""
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
    test = _drop_flagged(test, notes, dropped)
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
    return test, classes


def _drop_flagged(test: pd.DataFrame, notes: list[str], dropped: dict) -> pd.DataFrame:
    """Leave out the predictions on rows flagged at ingest (manifest column ``flag``: outside the root, a missing
    file, a second listing of one file, ...), as training does (train/excluded.parquet): such a row was never a
    usable sample, and a second listing would count one image twice (with the label of the other listing).
    ``dropped["flagged"]`` counts the left-out predictions by flag; one note line says so."""
    if "flag" not in test.columns:
        return test
    fl = test["flag"].astype("string")
    bad = fl.notna().to_numpy()
    if not bad.any():
        return test
    counts = {str(k): int(v) for k, v in fl[bad].value_counts(sort=True).items()}
    dropped["flagged"] = counts
    note = (f"{int(bad.sum())} test predictions on rows flagged at ingest were left out ("
            + ", ".join(f"{k} {v}" for k, v in counts.items()) + "; manifest.parquet column flag)")
    notes.append(note)  # printed with the stage's other notes by audit.console (stages do not print)
    return test[~bad]


_TABLES = ("groups", "generalization", "fairness", "calibration", "transfer")


def _model_parts(mp, model, protocol, task, classes, config, man, groupings) -> list[tuple[str, Callable]]:
    """The work of one (model, protocol) as resumable parts: one per fold (and the pooled fold) with every scope,
    then the generalization gaps and transfer matrix. Findings come from the pooled fold and the most telling scope
    (out-of-domain when there is one). Each part is ``(name, fn(rows, cands))``."""
    pref_scope = "ood" if bool(mp["held_out"].any()) else "all"
    folds = sorted(mp["fold"].unique())
    pooled = "all" if len(folds) > 1 else folds[0]

    def fold_part(fold):
        def run_part(rows: dict, cands: list) -> None:
            fdf = mp if fold == "all" else mp[mp["fold"] == fold]
            for scope in SCOPES:
                sdf = fdf if scope == "all" else fdf[fdf["held_out"] == (scope == "ood")]
                if sdf.empty:
                    continue
                fc = cands if (fold == pooled and scope == pref_scope) else None
                ctx = PredictionSlice(model, protocol, fold, scope, sdf, task, classes, config, man)
                rows["groups"].append(ctx.groups(groupings, fc))
                if task == "classify":
                    rows["fairness"].append(ctx.fairness(groupings, fc))
                    if fold == pooled:
                        rows["calibration"].append(ctx.calibration(groupings, fc))
        return run_part

    def gap_part(rows: dict, cands: list) -> None:
        rows["generalization"].extend(generalization_rows(mp, model, protocol, folds, task, classes, config, cands))
        if protocol == "transfer":
            rows["transfer"].append(transfer_rows(mp, model, task, classes, config))

    parts = [(f"{model}|{protocol}|fold {fold}", fold_part(fold)) for fold in folds + (["all"] if len(folds) > 1
                                                                                        else [])]
    return parts + [(f"{model}|{protocol}|gaps", gap_part)]


def _run_parts(run, parts: list, config, task: str, classes: list, groupings) -> tuple[dict, list]:
    """Run the parts in order with a progress line, each stored under ``RUN/.partial/metrics/`` as it finishes
    (keyed by the settings, the manifest fingerprint and the predictions file); after an interruption the same
    command reuses the stored parts and says so in one line."""
    import hashlib

    from audit import __version__
    from audit.progress import Bar, message
    from audit.rundir import part_key

    pred = run.file("predictions.parquet")
    digest = hashlib.sha256(pred.read_bytes()).hexdigest() if pred.is_file() else ""
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    base = (__version__, str(run.dataset.get("fingerprint", "")), digest, cfg, task, classes,
            [list(g) for g in groupings])
    keys = [f"{i:03d}" for i in range(len(parts))]
    hashes = [part_key(*base, i, name) for i, (name, _) in enumerate(parts)]
    ready = [run.has_part("metrics", k, h) for k, h in zip(keys, hashes, strict=True)]
    if any(ready):
        message(f"resuming metrics: {sum(ready)} of {len(parts)} parts reused (model x protocol x fold)")
    rows: dict[str, list] = {k: [] for k in _TABLES}
    cands: list[dict] = []  # comparisons considered for findings (p-values for BH)
    with Bar(len(parts) - sum(ready), "metrics: bootstrap intervals", unit="part") as bar:  # reused: not counted
        for (name, fn), key, h, ok in zip(parts, keys, hashes, ready, strict=True):
            stored = run.read_part("metrics", key, h) if ok else None
            if stored is not None:
                r, c = _unpack(stored)
            else:
                bar.advance(0, info=f"now {name}")
                r, c = {k: [] for k in _TABLES}, []
                fn(r, c)
                _pack(run, key, h, r, c)
                bar.advance(1)
            for k in _TABLES:
                rows[k].extend(r[k])
            cands.extend(c)
    return rows, cands


def _pack(run, key: str, h: str, rows: dict, cands: list) -> None:
    """Store one finished part: its frames as parquet (None kept as None), generalization rows and candidates as
    JSON."""
    tables, layout = {}, {}
    for k in ("groups", "fairness", "calibration", "transfer"):
        layout[k] = [None if f is None else f"{k}.{i}" for i, f in enumerate(rows[k])]
        tables.update({f"{k}.{i}": f for i, f in enumerate(rows[k]) if f is not None})
    state = {"layout": layout, "generalization": rows["generalization"], "cands": cands}
    with contextlib.suppress(Exception):  # a frame parquet cannot hold: computed again after an interruption
        run.write_part("metrics", key, h, state, tables=tables)


def _unpack(stored) -> tuple[dict, list]:
    state, tables, _ = stored
    rows = {k: [None if t is None else tables[t] for t in names] for k, names in state["layout"].items()}
    rows["generalization"] = list(state["generalization"])
    return rows, list(state["cands"])


_GEN_COLS = [
    "model",
    "protocol",
    "fold",
    "train_domains",
    "test_domain",
    "metric",
    "in_domain",
    "in_ci_low",
    "in_ci_high",
    "n_in",
    "out_domain",
    "out_ci_low",
    "out_ci_high",
    "n_out",
    "gap",
    "gap_ci_low",
    "gap_ci_high",
    "p",
    "seeds",
]


def _sanity(run, test, task, classes, config, gen, findings: list[Finding]) -> list[Finding]:
    """Compare each model with trivial baselines (metrics/sanity.py); withhold the gap and group findings of a
    model that learned nothing, and mark its generalization rows not interpretable."""
    from audit.metrics.sanity import WITHHELD_KINDS, degenerate_findings, model_sanity

    prior = run.read_table("train/prior.parquet", required=False)  # the per-pixel prior of the training masks
    table = model_sanity(test, task, classes, seed=config.seed, prior=prior)
    run.write_table("metrics/sanity.parquet", table)
    bad_findings, bad = degenerate_findings(table)
    _supersede_train_sanity(run)
    gen = gen.copy()
    gen["interpretable"] = ~gen["model"].astype(str).isin(bad) if len(gen) else pd.Series(dtype=bool)
    run.write_table("metrics/generalization.parquet", gen)
    kept = [f for f in findings if not (f.kind in WITHHELD_KINDS and str(f.evidence.get("model")) in bad)]
    return bad_findings + kept



def _supersede_train_sanity(run) -> None:
    """The metrics stage's sanity check replaces the one ``audit train`` recorded on the same predictions (stage
    ``train``, "after training: ..."): one degenerate_model finding per model in findings.json, not two."""
    train = [f for f in run.findings() if f.get("stage") == "train"]
    if any(f.get("kind") == "degenerate_model" for f in train):
        run.set_findings("train", [f for f in train if f.get("kind") != "degenerate_model"])


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
    entry.update(
        {
            "rows": int(n_rows),
            "groupings": [" x ".join(g) for g in groupings],
            "notes": notes,
            "dropped": dropped,
            "findings": len(findings),
            "n_boot": config.n_boot,
            "seed": config.seed,
        }
    )
    stages["metrics"] = entry
    run.update_info(stages=stages)
