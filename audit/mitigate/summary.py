"""``RUN/mitigations/summary.parquet`` (one row per method x metric) and ``summary.json`` (per method: what was
chosen and why, training time, verdict in words), from the variants' prediction files and the baseline's.

Groupings: worst-group metrics over ``domain`` (the held-out domain of each row) and over ``label x <column>`` for
each mitigation group column other than domain (segmentation: ``<column>``); fairness gaps over each attribute and
group column. The bootstrap clusters are the manifest's ``group`` ids when present, else the images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.errors import InputError
from audit.mitigate.paired import SUMMARY_COLUMNS, pair_predictions, paired_metrics
from audit.mitigate.verdict import RULE, WORST_METRICS, method_verdict
from audit.rundir import RunDir

__all__ = ["write_summary", "baseline_predictions", "build_spec", "method_verdict", "PRIMARY"]

PRIMARY = WORST_METRICS  # the worst-group metrics the verdict reads (audit.mitigate.verdict)


def baseline_predictions(run: RunDir, model: str | None = None, protocol: str | None = None) -> pd.DataFrame:
    """The baseline's rows of ``RUN/predictions.parquet`` (the model and protocol its training stage recorded)."""
    preds = run.read_table("predictions.parquet")
    tr = run.info.get("stages", {}).get("train", {})
    model, protocol = model or tr.get("model"), protocol or tr.get("protocol")
    if model and "model" in preds:
        preds = preds[preds["model"].astype(str) == str(model)]
    if protocol and "protocol" in preds:
        preds = preds[preds["protocol"].astype(str) == str(protocol)]
    return preds.reset_index(drop=True)


def _codes(values: pd.Series) -> tuple[np.ndarray, int, list[str]]:
    s = values.astype("string")
    codes, uniq = pd.factorize(s, sort=True)
    return codes.astype(np.int64), len(uniq), [str(u) for u in uniq]


def build_spec(paired: pd.DataFrame, manifest: pd.DataFrame, columns: list[str], task: str,
               classes: list[str]) -> dict:
    """Row masks, groupings and clusters of the paired test rows (see :func:`paired_metrics`)."""
    from audit.manifest import attribute_columns

    man = manifest.drop_duplicates("sample_id").set_index(manifest["sample_id"].astype(str).drop_duplicates())
    ids = paired["sample_id"].astype(str)
    held = paired["held_out_b"].fillna(False).astype(bool).to_numpy()
    spec: dict = {"ood": held, "ind": ~held, "groups": [], "fair": [], "classes": list(classes)}
    if "test_domain_b" in paired and paired["test_domain_b"].notna().any():
        c, n, _ = _codes(paired["test_domain_b"])
        spec["groups"].append(("domain", c, n))
    for col in columns:
        if col == "domain" or col not in man.columns:
            continue
        vals = man[col].reindex(ids).reset_index(drop=True)
        key = vals.astype("string")
        name = col.removeprefix("attr.")
        if task == "classify":
            key = paired["y_true_b"].astype(str).str.cat(key.fillna("<missing>").astype(str), sep=" | ")
            name = f"label x {name}"
        c, n, _ = _codes(key)
        spec["groups"].append((name, c, n))
    if task == "classify":
        fair_cols = list(dict.fromkeys([*attribute_columns(manifest), *[c for c in columns if c != "domain"]]))
        for col in fair_cols:
            vals = man[col].reindex(ids).reset_index(drop=True)
            c, n, _ = _codes(vals)
            if n >= 2:
                spec["fair"].append((col.removeprefix("attr."), c, n))
    if "group" in man.columns and man["group"].notna().any():
        g = man["group"].reindex(ids).astype("string")
        spec["cluster"] = g.fillna("sample:" + ids).astype(str).to_numpy()
    else:
        spec["cluster"] = ids.to_numpy()
    spec["n_classes"] = len(classes)
    return spec


def _variant_methods(run: RunDir, records: dict) -> list[str]:
    base = run.path / "mitigations"
    found = sorted(p.name for p in base.iterdir() if (p / "predictions.parquet").is_file()) if base.is_dir() else []
    return list(dict.fromkeys([*records, *found]))


def write_summary(run: RunDir, records: dict, *, columns: list[str], n_boot: int | None = None,
                  min_n: int | None = None, seed: int | None = None, max_drop: float = 0.02) -> pd.DataFrame:
    """Compare every variant under ``RUN/mitigations/`` with the baseline; write and return the summary."""
    mcfg = (run.config or {}).get("metrics") or {}
    n_boot = int(n_boot if n_boot is not None else mcfg.get("n_boot", 1000))
    min_n = int(min_n if min_n is not None else mcfg.get("min_n", 30))
    seed = int(seed if seed is not None else mcfg.get("seed", 0))
    base = baseline_predictions(run)
    man, task, classes = run.manifest(), run.task, [str(c) for c in run.classes()]
    frames, meta = [], {}
    prev = run.read_json("mitigations/summary.json", default={}) or {}
    for method in _variant_methods(run, records):
        rec = dict(records.get(method) or (prev.get("methods") or {}).get(method) or {"method": method})
        child = RunDir(run.path / "mitigations" / method)
        if "error" in rec or not child.has("predictions.parquet"):
            rec.setdefault("error", "no predictions.parquet")
            meta[method] = rec
            continue
        tr = child.info.get("stages", {}).get("train", {})
        mit = baseline_predictions(child, tr.get("model"), tr.get("protocol"))
        try:
            paired = pair_predictions(base, mit)
        except InputError as e:
            meta[method] = {**rec, "error": str(e)}
            continue
        spec = build_spec(paired, man, columns, task, classes)
        rows = paired_metrics(paired, spec, task=task, n_boot=n_boot, seed=seed, min_n=min_n)
        rows.insert(0, "method", method)
        frames.append(rows)
        word, sentence = method_verdict(rows)
        meta[method] = {**rec, "verdict": word, "sentence": sentence, "n_paired_rows": int(len(paired)),
                        "train_seconds": tr.get("train_seconds", rec.get("train_seconds"))}
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUMMARY_COLUMNS)
    out = out[SUMMARY_COLUMNS]
    run.write_table("mitigations/summary.parquet", out)
    base_secs = run.info.get("stages", {}).get("train", {}).get("train_seconds")
    run.write_json("mitigations/summary.json", {
        "groups": columns, "n_boot": n_boot, "min_n": min_n, "seed": seed, "max_drop": max_drop,
        "baseline_train_seconds": base_secs, "methods": meta,
        "pairing": "same (sample_id, fold, seed) test rows as the baseline; paired cluster bootstrap",
        "verdict_rule": RULE,
    })
    return out
