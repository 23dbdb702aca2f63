"""Linear probe: a logistic-regression head per fold and seed on frozen, cached backbone features.

The features (:mod:`audit.train.features`) are computed once per image; each fold then fits a standardized
multinomial logistic regression on its train rows, picks the inverse regularization ``C`` on its validation rows
(accuracy, smallest ``C`` wins ties), and predicts its validation and test rows. The rows are the standard
predictions schema (:func:`audit.train.predictions.classify_rows`), so every downstream stage is unchanged.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from audit.train.predictions import classify_rows

__all__ = ["C_GRID", "fit_probe", "probe_predictions"]

C_GRID = (0.01, 0.1, 1.0)


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=500, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def _full_probs(clf, x: np.ndarray, k: int) -> np.ndarray:
    """Probabilities over all ``k`` classes (classes absent from the train rows get 0)."""
    out = np.zeros((len(x), k))
    if len(x):
        out[:, clf.classes_.astype(int)] = clf.predict_proba(x)
    return out


def fit_probe(feats: np.ndarray, y: np.ndarray, train_idx, val_idx, eval_idx, k: int, *, seed: int,
              grid=C_GRID) -> tuple[np.ndarray, dict]:
    """Fit on ``train_idx``, choose C on ``val_idx``, return ``(probs [len(eval_idx), k], info)``."""
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    train_idx, val_idx, eval_idx = (np.asarray(a, dtype=np.int64) for a in (train_idx, val_idx, eval_idx))
    ytr = y[train_idx]
    if len(np.unique(ytr)) < 2:
        probs = np.zeros((len(eval_idx), k))
        probs[:, int(ytr[0]) if len(ytr) else 0] = 1.0
        return probs, {"C": None, "val_accuracy": None, "seconds": 0.0,
                       "note": "one class in the train rows: the probe predicts it everywhere"}
    scaler = StandardScaler().fit(feats[train_idx])
    xtr = scaler.transform(feats[train_idx])
    scores = {}
    best = None
    for c in grid if len(val_idx) else grid[-1:]:
        clf = _fit(xtr, ytr, c, seed)
        if len(val_idx):
            acc = float((_full_probs(clf, scaler.transform(feats[val_idx]), k).argmax(1) == y[val_idx]).mean())
        else:
            acc = float("nan")
        scores[c] = acc
        if best is None or acc > best[1]:
            best = (clf, acc, c)
    clf, acc, c = best
    probs = _full_probs(clf, scaler.transform(feats[eval_idx]), k)
    return probs, {"C": c, "val_accuracy": None if np.isnan(acc) else acc, "val_by_C": scores,
                   "seconds": round(time.perf_counter() - t0, 3)}


def probe_predictions(feats: np.ndarray, y_idx: np.ndarray, classes: list[str], folds, sample_ids, domains, *,
                      model: str, protocol: str) -> tuple[pd.DataFrame, list[dict]]:
    """Predictions of one probe per fold (``folds`` from :func:`audit.train.protocols.make_folds`).

    ``feats``, ``y_idx``, ``sample_ids`` and ``domains`` are aligned with the table the folds index.
    Returns the predictions (val and test rows of every fold) and one record per fold.
    """
    ids = np.asarray(sample_ids, dtype=object)
    dom = np.asarray(domains, dtype=object)
    frames, records = [], []
    for fold in folds:
        eval_idx = np.concatenate([fold.val_idx, fold.test_idx]).astype(np.int64)
        roles = ["val"] * len(fold.val_idx) + ["test"] * len(fold.test_idx)
        held = np.concatenate([np.zeros(len(fold.val_idx), bool), fold.held_out])
        probs, info = fit_probe(feats, y_idx, fold.train_idx, fold.val_idx, eval_idx, len(classes), seed=fold.seed)
        frames.append(classify_rows(ids[eval_idx], probs, y_idx[eval_idx], classes, model=model, protocol=protocol,
                                    fold=fold.name, seed=fold.seed, role=roles, held_out=held,
                                    train_domains=fold.train_domains_str, test_domain=dom[eval_idx]))
        records.append({"fold": fold.name, "seed": fold.seed, "n_train": len(fold.train_idx), **info})
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return df, records
