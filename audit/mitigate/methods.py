"""The mitigation methods: what each changes in training (a :class:`~audit.train.trainer.FitConfig` and the settings
that enter the fold hash), chosen from the run's own findings where the method needs them.

* ``group_balance``: draws with replacement, equal mass per (label x group) cell (group: ``domain`` by default);
* ``reweight``: loss weight of a row = 1 / frequency of its (label x group) cell among the fold's training rows
  (mean 1; computed by the trainer per fold, since a held-out domain must not dilute the training cells' counts);
* ``groupdro``: online GroupDRO over the same cells, step ``eta``;
* ``augment``: grayscale + colour jitter when the profile found colour statistics (saturation, colorfulness,
  brightness, contrast) separating domains or predicting the label/domain (covariate_shift / shortcut findings),
  blur + sharpen when sharpness does; the findings that chose each are recorded;
* ``dedup``: weight 0 (never trained on, still evaluated) for the rows of ``profile/duplicates.parquet``: the
  second image of each duplicate pair, both images of a label-conflict pair and of a pair across splits.

Segmentation: groups are the group column alone (no label); GroupDRO and reweighting use per-image cross-entropy.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from audit.errors import UsageError

__all__ = ["METHODS", "resolve_group_columns", "group_ids", "augment_choice", "dedup_rows", "fit_adjuster"]

METHODS = ("group_balance", "reweight", "groupdro", "augment", "dedup")
COLOUR_STATS = ("saturation", "colorfulness", "brightness", "contrast")
SHARP_STATS = ("sharpness",)


def resolve_group_columns(groups: list[str] | None, manifest: pd.DataFrame) -> list[str]:
    """Manifest columns for ``--groups`` (bare names resolve to ``attr.<name>``); default ``["domain"]``."""
    from audit.manifest import ATTR_PREFIX

    cols = [str(c) for c in manifest.columns]
    if not groups:
        if "domain" not in cols:
            raise UsageError("the manifest has no domain column; give --groups COLUMN (an attribute) to mitigate over")
        return ["domain"]
    out = []
    for g in groups:
        name = g if g in cols else ATTR_PREFIX + g if ATTR_PREFIX + g in cols else None
        if name is None or name in ("sample_id", "filepath", "mask"):
            choices = [c for c in cols if c not in ("sample_id", "filepath", "mask")]
            raise UsageError(f"--groups {g!r} is not a manifest column; choose from {', '.join(choices)}")
        if name not in out:
            out.append(name)
    return out


def group_ids(table: pd.DataFrame, columns: list[str], task: str) -> tuple[np.ndarray, list[str]]:
    """Cell id per row of (label x groups) for classification, (groups) for segmentation; and the cell names."""
    parts = ([table["label"].astype(str)] if task == "classify" and "label" in table else []) + \
        [table[c].astype("string").fillna("<missing>").astype(str) for c in columns]
    key = parts[0].str.cat(parts[1:], sep=" | ") if len(parts) > 1 else parts[0]
    codes, uniq = pd.factorize(key, sort=True)
    return codes.astype(np.int64), [str(u) for u in uniq]


def augment_choice(findings: list[dict]) -> tuple[list[tuple[str, float]], list[dict]]:
    """Augmentations from covariate-shift / shortcut findings: ``(spec, reasons)``; reasons name the findings."""
    colour, sharp = [], []
    for f in findings:
        kind = f.get("kind")
        ev = f.get("evidence") or {}
        if kind == "covariate_shift":
            stats = set((ev.get("effects") or {}).keys()) | {str(ev.get("statistic", ""))}
        elif kind == "shortcut" and ev.get("features") == "image_stats":
            stats = set(ev.get("top_features") or [])
        else:
            continue
        ref = {"finding": f.get("id", ""), "kind": kind, "title": f.get("title", "")}
        if stats & set(COLOUR_STATS):
            colour.append({**ref, "statistics": sorted(stats & set(COLOUR_STATS))})
        if stats & set(SHARP_STATS):
            sharp.append({**ref, "statistics": sorted(stats & set(SHARP_STATS))})
    spec: list[tuple[str, float]] = []
    reasons = []
    if colour:
        spec += [("grayscale", 0.5), ("color_jitter", 0.8)]
        reasons.append({"chosen": ["grayscale", "color_jitter"], "because": colour})
    if sharp:
        spec += [("blur", 0.4), ("sharpen", 0.3)]
        reasons.append({"chosen": ["blur", "sharpen"], "because": sharp})
    return spec, reasons


def dedup_rows(dups: pd.DataFrame | None) -> tuple[set[str], dict]:
    """Sample ids to leave out of training, and counts by reason."""
    if dups is None or not len(dups):
        return set(), {"duplicate": 0, "label_conflict": 0, "cross_split": 0}
    a, b = dups["a"].astype(str), dups["b"].astype(str)
    conflict = dups["label_conflict"].fillna(False).astype(bool) if "label_conflict" in dups else a == "\0"
    cross = dups["cross_split"].fillna(False).astype(bool) if "cross_split" in dups else a == "\0"
    both = conflict | cross
    drop = set(b) | set(a[both])
    return drop, {"duplicate": int(b.nunique()), "label_conflict": int(pd.concat([a[conflict], b[conflict]]).nunique()),
                  "cross_split": int(pd.concat([a[cross], b[cross]]).nunique()), "rows_left_out": len(drop)}


def fit_adjuster(method: str, *, task: str, columns: list[str], eta: float, findings: list[dict],
                 dups: pd.DataFrame | None, record: dict):
    """The ``adjust_fit`` hook of :func:`audit.train.run_training` for ``method``; fills ``record`` (what was
    chosen and why) when training calls it."""
    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; choose from {', '.join(METHODS)}")

    def adjust(table: pd.DataFrame, cache_pos: np.ndarray, n_rows: int, fit_cfg, resolved: dict):
        if resolved.get("mode") == "probe":
            raise UsageError("the run was trained in probe mode (a linear probe on frozen features): mitigations "
                             "retrain the network; train the baseline with --mode finetune first")
        info: dict = {"method": method}
        if method in ("group_balance", "reweight", "groupdro"):
            gid, names = group_ids(table, columns, task)
            info.update(groups=columns, cells=len(names))
            groups = np.zeros(n_rows, dtype=np.int64)
            groups[cache_pos] = gid
            if method == "group_balance":
                fit_cfg = replace(fit_cfg, row_groups=groups, sampling="group_balanced")
            elif method == "groupdro":
                fit_cfg = replace(fit_cfg, row_groups=groups, loss="groupdro", dro_eta=float(eta))
                info["eta"] = float(eta)
            else:  # the trainer weighs each fold's training rows by their own cell counts (trainer.fold_weights)
                fit_cfg = replace(fit_cfg, row_groups=groups, loss="reweight")
                info["weights"] = "1 / frequency of the row's cell among the fold's training rows (mean 1)"
        elif method == "augment":
            spec, reasons = augment_choice(findings)
            fit_cfg = replace(fit_cfg, extra_augment=tuple(spec))
            info.update(augment=[list(s) for s in spec], reasons=reasons)
            if not spec:
                info["note"] = ("no covariate-shift or shortcut finding on colour or sharpness statistics: trained "
                                "with the run's own augmentation only")
        else:  # dedup
            drop, counts = dedup_rows(dups)
            weights = np.ones(n_rows)
            left_out = table["sample_id"].astype(str).isin(drop).to_numpy()
            weights[cache_pos[left_out]] = 0.0
            fit_cfg = replace(fit_cfg, row_weights=weights)
            info.update(counts, rows_left_out=int(left_out.sum()))
        record.update(info)
        return fit_cfg, {**resolved, "mitigation": info}

    return adjust
