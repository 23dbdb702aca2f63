"""Slices as saved rules: ``RUN/slices/rules.json`` (which fold, which slice, confirmed or not, where the
embeddings came from) and ``RUN/slices/rules.npz`` (per fold the PCA projection, per slice its balls). A later run
(a retrained model on the same images, or new images) is tracked by applying them to its embeddings
(:func:`apply`): each slice's accuracy there, the rest's and the gap."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from audit.errors import InputError
from audit.slices.discover import Projection, Rule

__all__ = ["write_rules", "read_rules", "apply"]


def write_rules(run, folds, info: dict) -> None:
    from audit.core.atomic import atomic_write_bytes

    arrays: dict[str, np.ndarray] = {}
    entries = []
    for i, (meta, _rows, _disc, cands) in enumerate(folds):
        if not cands:
            continue
        p = cands[0].projection
        arrays.update({f"f{i}_mean": p.mean, f"f{i}_components": p.components, f"f{i}_scale": np.array(p.scale)})
        slices = []
        for j, c in enumerate(cands):
            arrays[f"f{i}_s{j}_centroids"] = c.rule.centroids
            arrays[f"f{i}_s{j}_radii"] = c.rule.radii
            slices.append({"index": j, "slice_id": f"{meta['model']}/{meta['protocol']}/{meta['fold']}/"
                                                   f"s{meta['seed']}#{j}", "confirmed": bool(c.confirmed)})
        entries.append({"fold_index": i, **{k: str(v) for k, v in meta.items()}, "slices": slices})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (run.path / "slices").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run.path / "slices" / "rules.npz", buf.getvalue())
    run.write_json("slices/rules.json", {"version": 1, "embeddings": info.get("embeddings"), "folds": entries})


def read_rules(slices_dir: Path) -> list[tuple[str, Projection, Rule, bool]]:
    """``(slice_id, projection, rule, confirmed)`` for every saved slice."""
    import json

    d = Path(slices_dir)
    try:
        meta = json.loads((d / "rules.json").read_text())
        arr = np.load(d / "rules.npz")
    except (OSError, ValueError) as e:
        raise InputError(f"no readable slice rules in {d} ({type(e).__name__}); run `audit slices` there first") \
            from None
    out = []
    for f in meta.get("folds", []):
        i = f["fold_index"]
        proj = Projection(arr[f"f{i}_mean"], arr[f"f{i}_components"], float(arr[f"f{i}_scale"]))
        for s in f["slices"]:
            j = s["index"]
            out.append((s["slice_id"], proj, Rule(arr[f"f{i}_s{j}_centroids"], arr[f"f{i}_s{j}_radii"]),
                        bool(s["confirmed"])))
    return out


def apply(slices_dir: Path, vectors: np.ndarray, correct: np.ndarray, *, seed: int = 0,
          n_boot: int = 2000) -> pd.DataFrame:
    """Each saved slice on new rows: members, accuracy inside and outside, the gap with its interval."""
    from audit.slices.confirm import confirm_gap

    rows = []
    for sid, proj, rule, confirmed in read_rules(slices_dir):
        if vectors.shape[1] != proj.components.shape[1]:
            raise InputError(f"slice {sid} was found on {proj.components.shape[1]}-d embeddings; these are "
                             f"{vectors.shape[1]}-d")
        inside = rule.members(proj.transform(vectors))
        res = confirm_gap(inside, correct, seed=seed, n_boot=n_boot)
        rows.append({"slice_id": sid, "confirmed_before": confirmed, **res})
    return pd.DataFrame(rows)
