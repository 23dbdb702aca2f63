"""Inputs of the metrics stage: the predictions (the run's or an external file, validated against the manifest),
the groupings to report, and one slice of predictions as report data."""


import itertools
from pathlib import Path

import pandas as pd

import audit.metrics._validate as V
from audit.core.predictions import validate_predictions
from audit.errors import InputError, UsageError
from audit.manifest import ATTR_PREFIX, attribute_columns, missing_column_error
from audit.metrics._stats import Data
from audit.metrics.encoding import (
    SegmentationCounts,
    prepare_data,
)

__all__ = ["load_predictions", "resolve_groupings", "store_external", "slice_data", "categorical", "clear_categories"]

_MSG_NO_TEST = "the predictions have no test rows (role == 'test'); nothing to measure"
_MSG_PRED_FILE = "cannot read predictions file {path}: {err}"
_MSG_PRED_EXT = "predictions file {path} must be .parquet or .csv"
_MSG_PRED_COLS = "predictions.parquet lacks column(s) {cols}; it must follow docs/formats.md"
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
        raise InputError(
            _MSG_PRED_FILE.format(path=path, err=str(e).splitlines()[0] if str(e) else type(e).__name__)
        ) from None
    return validate_predictions(df, manifest, classes)


_MSG_IDS = "{k} sample id(s) in the predictions are not in the manifest: {ids}"


def _check_ids(df: pd.DataFrame, manifest: pd.DataFrame) -> None:
    known = pd.Index(manifest["sample_id"].astype(str))
    ids = df["sample_id"].astype(str)
    bad = ids[~ids.isin(known)].drop_duplicates()
    if len(bad):
        shown = ", ".join(repr(x) for x in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise InputError(_MSG_IDS.format(k=len(bad), ids=shown))


def store_external(run, preds: pd.DataFrame, path: Path, notes: list[str]) -> pd.DataFrame:
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
            others = sorted(
                {f"{m}/{p}" for m, p in zip(kept["model"].astype(str), kept["protocol"].astype(str), strict=True)}
            )
            notes.append(f"predictions of {', '.join(others)} kept beside those from {path.name}")
    run.write_table("predictions.parquet", merged)
    notes.append(f"{len(preds)} predictions from {path.name} stored in predictions.parquet as "
                 f"{', '.join(f'{m}/{p}' for m, p in pairs)}")
    return merged






def resolve_groupings(
    by: list[str] | None, manifest: pd.DataFrame, *, depth: int = 2, task: str = "classify"
) -> list[list[str]]:
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
    out = [
        [c]
        for c in (["domain"] if "domain" in usable else [])
        + (["label"] if "label" in usable and task == "classify" else [])
        + attrs
    ]
    for k in range(2, depth + 1):
        for combo in itertools.combinations(base, k):
            out.append(list(combo))
    return out
_CATEGORIES: dict[tuple, list[str]] = {}


def clear_categories() -> None:
    """Forget the category orders cached during one stage run."""
    _CATEGORIES.clear()


def _categories(manifest: pd.DataFrame, cols: list[str]) -> list[str]:
    """Every group of a grouping in the manifest, in natural order (intersections ordered by their parts)."""
    key = (id(manifest), tuple(cols))
    if key not in _CATEGORIES:
        orders = [{v: i for i, v in enumerate(V.natural_sorted(manifest[c].dropna()))} for c in cols]
        combos = manifest[cols].dropna().astype(str).drop_duplicates().itertuples(index=False, name=None)
        combos = sorted(combos, key=lambda t: tuple(o[v] for o, v in zip(orders, t, strict=True)))
        _CATEGORIES[key] = [" | ".join(t) for t in combos]
    return _CATEGORIES[key]


def categorical(frame: pd.DataFrame, manifest: pd.DataFrame, cols: list[str]) -> pd.Categorical:
    """The grouping's values for ``frame``'s rows as a Categorical whose categories are every group in the manifest
    (so a group absent from these rows is reported as empty, NaN). Intersections join values with `` | ``."""
    values = frame[cols[0]].astype("string").astype(object)
    if len(cols) > 1:
        values = frame[cols[0]].astype("string").str.cat([frame[c].astype("string") for c in cols[1:]], sep=" | ")
        values = values.astype(object)
    values = values.where(values.notna(), None)
    return pd.Categorical(values.to_numpy(object), categories=_categories(manifest, cols))


# ---------------------------------------------------------------------------------------------- data of one slice
def slice_data(frame: pd.DataFrame, task: str, classes: list[str]) -> tuple[Data, bool]:
    """Data (labels/probabilities or pixel counts) for a slice of the predictions; bool: probabilities present."""
    if task == "segment":
        idx = sorted(
            int(c.split("_", 1)[1]) for c in frame.columns if c.startswith("inter_") and c.split("_", 1)[1].isdigit()
        )
        names = [classes[i] if i < len(classes) else str(i) for i in idx]
        seg = SegmentationCounts(
            inter=frame[[f"inter_{i}" for i in idx]].to_numpy(float),
            union=frame[[f"union_{i}" for i in idx]].to_numpy(float),
            pred=frame[[f"pred_{i}" for i in idx]].to_numpy(float)
            if all(f"pred_{i}" in frame for i in idx)
            else frame[[f"inter_{i}" for i in idx]].to_numpy(float),
            true=frame[[f"true_{i}" for i in idx]].to_numpy(float)
            if all(f"true_{i}" in frame for i in idx)
            else frame[[f"union_{i}" for i in idx]].to_numpy(float),
            classes=names,
        )
        return prepare_data(segmentation=seg), False
    pcols = [f"p_{c}" for c in classes]
    has_p = bool(classes) and all(c in frame.columns for c in pcols) and not frame[pcols].isna().any().any()
    return prepare_data(
        y_true=frame["y_true"].astype(str).to_numpy(object),
        y_pred=frame["y_pred"].astype(str).to_numpy(object),
        y_prob=frame[pcols].to_numpy(float) if has_p else None,
        classes=classes or None,
    ), has_p
