"""The predictions contract (docs/formats.md): the columns every predictions table has, and the validation that
makes a table from any model (ours, or a user's external file) usable by the metrics stage.

Columns: ``sample_id, model, protocol, fold, seed, role, held_out, train_domains, test_domain``; classification
adds ``y_true, y_pred, confidence, p_<class>``; segmentation adds ``inter_<c>, union_<c>, pred_<c>, true_<c>``
(pixel counts per class index) and ``pixel_acc, pred_mask``. Writers of these tables live in
:mod:`audit.train.predictions`; this module needs no torch.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from audit.errors import InputError

__all__ = ["COMMON_COLUMNS", "ROLES", "mask_name", "validate_predictions"]

COMMON_COLUMNS = ["sample_id", "model", "protocol", "fold", "seed", "role", "held_out", "train_domains", "test_domain"]


ROLES = ("train", "val", "test")


def mask_name(fold_key: str, sample_id: str) -> str:
    """Relative path (under RUN) of a prediction mask: safe file names whatever the sample id holds."""
    h = hashlib.sha1(str(sample_id).encode()).hexdigest()[:16]
    return f"predictions/masks/{fold_key}/{h}.png"


def _ids_list(values, k: int = 3) -> str:
    return ", ".join(repr(str(v)) for v in list(values)[:k])


def validate_predictions(df: pd.DataFrame, manifest: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Check and complete an external predictions table so metrics can use it like our own.

    Required: ``sample_id`` and either ``y_pred`` (classification) or ``inter_<c>``/``union_<c>`` columns
    (segmentation). Filled when absent: ``y_true`` (and ``test_domain``) from the manifest, ``model="external"``,
    ``protocol="external"``, ``fold="external"``, ``seed=0``, ``role="test"``, ``held_out=False``,
    ``train_domains=""``, ``confidence`` (max ``p_<class>``, else NaN).

    Raises
    ------
    InputError
        One line naming the problem: missing columns, sample ids not in the manifest (up to 3 listed), labels
        not among the classes, probabilities outside [0, 1], duplicate rows, bad roles.
    """
    if not isinstance(df, pd.DataFrame) or len(df) == 0:
        raise InputError("the predictions table is empty")
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    if "sample_id" not in df.columns:
        raise InputError(f"the predictions table has no 'sample_id' column; columns: {', '.join(df.columns[:20])}")
    is_seg = any(c.startswith("inter_") for c in df.columns)
    if not is_seg and "y_pred" not in df.columns:
        raise InputError("the predictions table needs a 'y_pred' column (classification) or inter_<c>/union_<c> "
                         "pixel counts (segmentation)")
    if df["sample_id"].isna().any():
        raise InputError(f"{int(df['sample_id'].isna().sum())} predictions rows have no sample_id")
    df["sample_id"] = df["sample_id"].astype(str).astype("string")
    known = set(manifest["sample_id"].astype(str))
    unknown = df.loc[~df["sample_id"].isin(known), "sample_id"].drop_duplicates()
    if len(unknown):
        raise InputError(f"{len(unknown)} sample ids in the predictions are not in the manifest: "
                         f"{_ids_list(unknown)}{' ...' if len(unknown) > 3 else ''}")
    man = manifest.set_index(manifest["sample_id"].astype(str))
    defaults = {"model": "external", "protocol": "external", "fold": "external", "role": "test", "train_domains": ""}
    for col, val in defaults.items():
        if col not in df.columns:
            df[col] = val
        df[col] = df[col].astype("string").fillna(val)
    if "seed" not in df.columns:
        df["seed"] = 0
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").fillna(0).astype(np.int64)
    bad_role = ~df["role"].isin(ROLES)
    if bad_role.any():
        raise InputError(f"role must be one of {', '.join(ROLES)}; got {_ids_list(df.loc[bad_role, 'role'].unique())}")
    if "held_out" not in df.columns:
        df["held_out"] = False
    df["held_out"] = df["held_out"].astype("boolean").fillna(False).astype(bool)
    if "test_domain" not in df.columns:
        df["test_domain"] = (man.loc[df["sample_id"], "domain"].to_numpy() if "domain" in man.columns else pd.NA)
    df["test_domain"] = df["test_domain"].astype("string")
    key = ["sample_id", "model", "protocol", "fold", "seed", "role"]
    dup = df.duplicated(key, keep=False)
    if dup.any():
        raise InputError(f"{int(dup.sum())} predictions rows repeat the same (sample_id, model, protocol, fold, seed, "
                         f"role), e.g. {_ids_list(df.loc[dup, 'sample_id'].unique())}")
    if is_seg:
        for c in [
            c for c in df.columns if c.split("_", 1)[0] in ("inter", "union", "pred", "true") and c[-1:].isdigit()
        ]:
            v = pd.to_numeric(df[c], errors="coerce")
            if v.isna().any() or (v < 0).any():
                raise InputError(f"column {c!r} must hold non-negative pixel counts")
            df[c] = v.astype(np.int64)
        return df
    cls = [str(c) for c in classes]
    if "y_true" not in df.columns:
        if "label" not in man.columns:
            raise InputError("the predictions have no 'y_true' and the manifest has no label column")
        df["y_true"] = man.loc[df["sample_id"], "label"].to_numpy()
    for col in ("y_true", "y_pred"):
        df[col] = (
            df[col]
            .map(
                lambda v: pd.NA if pd.isna(v) else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
            )
            .astype("string")
        )
    if cls:
        odd = df.loc[df["y_pred"].notna() & ~df["y_pred"].isin(cls), "y_pred"].unique()
        if len(odd):
            raise InputError(f"y_pred values not among the classes ({', '.join(cls[:10])}): {_ids_list(odd)}")
    pcols = [c for c in df.columns if c.startswith("p_")]
    if cls:
        extra = [c for c in pcols if c[2:] not in cls]
        if extra:
            raise InputError(
                f"probability columns for unknown classes: {_ids_list(extra)}; "
                f"expected p_<class> for {', '.join(cls[:10])}"
            )
    for c in pcols:
        v = pd.to_numeric(df[c], errors="coerce")
        if ((v < 0) | (v > 1)).any():
            raise InputError(f"column {c!r} must hold probabilities in [0, 1]")
        df[c] = v.astype(float)
    if "confidence" not in df.columns:
        df["confidence"] = df[pcols].max(axis=1) if pcols else np.nan
    return df
