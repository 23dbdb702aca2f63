"""Track a baseline run's saved slices on a later run (``audit check RUN --baseline OLD``, rule ``tracked_slices``).

A slice is a region of an embedding space (:mod:`audit.slices.rules`). Applying a baseline's slices to a later run
means something only when both runs embed their images in the *same* space:

* a user's own vectors (``audit slices --embeddings FILE``, e.g. CLIP features computed elsewhere): the later run's
  vectors come from the file its own slices used, else from the baseline's file;
* the frozen backbone's features of ``--mode probe`` (``RUN/embeddings/features-*``) of the same model and weights.

The penultimate layer of a network trained again is another space (its axes mean something else), so a baseline
whose slices were found there is refused with the reason, never silently compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from audit.errors import InputError

__all__ = ["track_slices", "TRACK_COLUMNS"]

TRACK_COLUMNS = ("slice_id", "confirmed_before", "description", "n", "n_rest", "accuracy", "rest_accuracy", "gap",
                 "ci_low", "ci_high", "p")
_PROBE = "stored (frozen backbone features of the probe)"


def _source(run_path: Path) -> str | None:
    try:
        return json.loads((Path(run_path) / "slices" / "rules.json").read_text()).get("embeddings")
    except (OSError, ValueError):
        return None


def _probe_model(run_path: Path) -> set[str]:
    out = set()
    for meta in (Path(run_path) / "embeddings").glob("features-*.json"):
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        out.add(f"{info.get('model')}@{info.get('weights')}")
    return out


def _vectors(baseline: Path, run: Path, src: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The later run's vectors in the baseline's space: ``(index with sample_id and row, vectors)``."""
    from audit.slices.embed import load_backbone_features, load_user_embeddings

    if src.startswith("file "):
        own = _source(run) or ""
        path = own[len("file "):] if own.startswith("file ") else src[len("file "):]
        return load_user_embeddings(Path(path))
    if src == _PROBE:
        base_m, run_m = _probe_model(baseline), _probe_model(run)
        if not base_m & run_m:
            raise InputError(f"the baseline's slices are in the features of {sorted(base_m) or 'no stored model'}; "
                             f"this run stores {sorted(run_m) or 'no probe features'}: not the same space")
        got = load_backbone_features(run, sorted(m.split("@")[0] for m in base_m & run_m))
        if got is None:
            raise InputError(f"{run} has no readable probe features (RUN/embeddings/features-*)")
        return got
    raise InputError(f"the baseline's slices were found in a trained network's own embeddings ({src}); a model "
                     "trained again embeds images in another space, so they cannot be applied to this run. Track "
                     "slices across runs with fixed embeddings: `audit slices --embeddings FILE` on both runs, or a "
                     "probe (`audit train --mode probe`) on the same backbone")


def track_slices(baseline: Path, run: Path, *, confirmed_only: bool = True, roles: tuple[str, ...] = ("test",),
                 seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Each of the baseline's saved slices applied to this run's predictions: members, accuracy inside and outside,
    the gap (rest - slice) with its bootstrap interval and one-sided p (columns :data:`TRACK_COLUMNS`).
    Raises :class:`~audit.errors.InputError` with the reason when the two runs' embeddings are not one space."""
    from audit.slices.confirm import confirm_gap
    from audit.slices.rules import read_rules
    from audit.slices.stage import _correctness

    baseline, run = Path(baseline), Path(run)
    src = _source(baseline)
    if src is None:
        raise InputError(f"--baseline {baseline} has no saved slices (run `audit slices` there first)")
    preds_path = run / "predictions.parquet"
    if not preds_path.is_file():
        raise InputError(f"{run} has no predictions.parquet to track the slices on")
    preds = pd.read_parquet(preds_path)
    preds = preds[preds["role"].astype(str).isin(roles)].reset_index(drop=True)
    index, vec = _vectors(baseline, run, src)
    row = dict(zip(index["sample_id"].astype(str), index["row"].astype(int), strict=True))
    at = preds["sample_id"].astype(str).map(row)
    preds, at = preds[at.notna()].reset_index(drop=True), at[at.notna()].astype(int).to_numpy()
    if not len(preds):
        raise InputError(f"none of {run}'s held-out predictions has a vector in the baseline's embedding space")
    correct = _correctness(preds)[0]
    x = np.asarray(vec, dtype=np.float32)[at]
    desc = _descriptions(baseline)
    rows = []
    for sid, proj, rule, confirmed in read_rules(baseline / "slices"):
        if confirmed_only and not confirmed:
            continue
        if x.shape[1] != proj.components.shape[1]:
            raise InputError(f"slice {sid} was found on {proj.components.shape[1]}-d embeddings; this run's are "
                             f"{x.shape[1]}-d")
        res = confirm_gap(rule.members(proj.transform(x)), correct, seed=seed, n_boot=n_boot)
        rows.append({"slice_id": sid, "confirmed_before": confirmed, "description": desc.get(sid, ""),
                     **{k: res[k] for k in TRACK_COLUMNS if k in res}})
    return pd.DataFrame(rows, columns=list(TRACK_COLUMNS))


def _descriptions(baseline: Path) -> dict[str, str]:
    try:
        s = pd.read_parquet(baseline / "slices" / "slices.parquet", columns=["slice_id", "description"])
    except (OSError, ValueError, KeyError):
        return {}
    return dict(zip(s["slice_id"].astype(str), s["description"].astype(str), strict=True))
