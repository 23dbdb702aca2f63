"""The model sanity check right after ``audit train`` (issue 25): did the model learn anything?

The metrics stage compares every model with trivial baselines (:mod:`audit.metrics.sanity`); this runs the same
check on the test predictions the training stage has just written, so ``audit train`` on its own never ends with
"no findings from this step" for a model that predicts the majority class or background everywhere. Its
``degenerate_model`` findings are stage ``train`` findings (findings.json, the terminal); the table is
``train/sanity.parquet`` and run.json ``stages.train.sanity`` says what was found.

For segmentation this is also where the *per-pixel prior* baseline is computed: the training masks are at hand
here, at the prediction resolution (the decoded cache), so for each fold the prior map of its training masks
(:func:`audit.metrics.sanity.pixel_prior`) is scored on its test masks, per image, into ``train/prior.parquet``
(``model, protocol, fold, seed, sample_id, prior_inter_<c>, prior_union_<c>``), which ``model_sanity(prior=...)``
takes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["sanity_after_training", "prior_table"]


def prior_table(st: Any, data: Any, folds: list) -> pd.DataFrame | None:
    """Per test image of each trained fold, the pixel counts of predicting its training masks' per-pixel prior."""
    from audit.metrics.sanity import pixel_prior, prior_counts

    if st.task != "segment" or st.cache is None or getattr(st.cache, "masks", None) is None:
        return None
    masks = st.cache.masks
    cp = data.cache_pos
    frames = []
    for fold in folds:
        if fold.notes.get("skipped") or len(fold.train_idx) < 2 or not len(fold.test_idx):
            continue
        train = masks.index_select(0, _rows(cp[fold.train_idx], masks)).cpu().numpy()
        prior = pixel_prior(train, int(st.n_classes))
        test_rows = cp[np.asarray(fold.test_idx, dtype=np.int64)]
        inter, union = prior_counts(prior, masks.index_select(0, _rows(test_rows, masks)).cpu().numpy(),
                                    int(st.n_classes))
        df = pd.DataFrame({"model": st.model, "protocol": st.protocol, "fold": fold.name, "seed": fold.seed,
                           "sample_id": data.ids[np.asarray(fold.test_idx, dtype=np.int64)]})
        for c in range(int(st.n_classes)):
            df[f"prior_inter_{c}"] = inter[:, c]
            df[f"prior_union_{c}"] = union[:, c]
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else None


def _rows(idx: np.ndarray, like) -> Any:
    import torch

    return torch.as_tensor(np.asarray(idx, dtype=np.int64), dtype=torch.long, device=like.device)


def sanity_after_training(st: Any, data: Any, folds: list) -> list:
    """Run the sanity check on this training run's test predictions and record it as stage ``train`` findings.

    Returns the findings (also written: ``findings.json`` stage ``train``, ``train/sanity.parquet``, run.json
    ``stages.train.sanity``). A run whose model passes clears the train findings of an earlier run."""
    from audit.metrics.sanity import degenerate_findings, model_sanity

    frames = [df for df, _ in st.slots if df is not None]
    preds = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    test = preds[preds["role"].astype(str) == "test"] if len(preds) else preds
    if st.task == "classify" and len(test):
        test = test[test["y_pred"].notna() & test["y_true"].notna()]
    if not len(test):
        st.run.set_findings("train", [])
        return []
    prior = prior_table(st, data, folds)
    if prior is not None:
        st.run.write_table("train/prior.parquet", prior)
    table = model_sanity(test, st.task, list(st.classes), seed=0, prior=prior)
    st.run.write_table("train/sanity.parquet", table)
    found, bad = degenerate_findings(table)
    from audit.findings import make_id

    for f in found:  # its own id: the metrics stage's finding on the same model is another finding
        f.title = f"after training: {f.title}"
        f.evidence = {**f.evidence, "checked": "after training (test predictions of audit train)",
                      "id_extra": f"{f.evidence.get('id_extra', '')}|train"}
        f.id = make_id(f.kind, f.columns, f.groups, f.evidence["id_extra"])
    stages = st.run.info.get("stages", {})
    entry = stages.get("train", {})
    entry["sanity"] = {"checked": int(table.drop_duplicates(["fold", "seed"]).shape[0]) if len(table) else 0,
                       "degenerate_models": sorted(bad), "per_pixel_prior": prior is not None,
                       "reasons": sorted({str(r) for r in table.loc[table["degenerate"], "reason"]})[:3]}
    stages["train"] = entry
    st.run.update_info(stages=stages)
    st.run.set_findings("train", found)
    return found
