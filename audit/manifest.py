"""The canonical manifest: one row per sample, role columns, validation and fingerprint.

Every reader produces a :class:`pandas.DataFrame` with the columns below; every later stage reads
``RUN/manifest.parquet`` through :func:`read_manifest`.

=========  ======  ==========================================================================
column     type    meaning
=========  ======  ==========================================================================
sample_id  string  stable unique id (relative path by default)
filepath   string  path relative to the dataset root (or absolute, inside the root unless allowed)
label      string  class label (classification)
mask       string  path of the segmentation mask (segmentation)
split      string  given split: train / val / test
domain     string  held-out unit for generalization
group      string  resampling / leakage cluster; defaults to sample_id
attr.<n>   string  any attribute to audit
=========  ======  ==========================================================================

All role columns are stored as pandas ``string`` dtype; missing values stay missing (``<NA>``),
never the string ``"nan"``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audit.errors import InputError

__all__ = [
    "ROLE_COLUMNS",
    "ATTR_PREFIX",
    "Roles",
    "attribute_columns",
    "build_manifest",
    "validate_manifest",
    "resolve_path",
    "fingerprint",
    "read_manifest",
    "write_manifest",
    "closest",
    "normalize_missing",
]

ROLE_COLUMNS = ("sample_id", "filepath", "label", "mask", "split", "domain", "group")
ATTR_PREFIX = "attr."

# Strings that mean "missing" in user tables. They become <NA>, never a group called "nan".
MISSING_STRINGS = frozenset({"", "nan", "NaN", "NAN", "none", "None", "null", "NULL", "NA", "N/A", "n/a", "<NA>"})

_MSG_EMPTY = "the manifest is empty: no samples were found in {source}"
_MSG_DUP = "duplicate sample_id {ids} ({n} duplicated rows); sample ids must be unique"
_MSG_NO_COL = "no column {col!r} for --{role}{hint}; available columns: {avail}"
_PATH_GUESSES = ("filepath", "path", "file", "image", "filename", "img")
_MSG_ESCAPE = (
    "row {sample!r}: path {path!r} resolves outside the dataset root {root}; "
    "pass --allow-outside-root to allow it"
)


@dataclass
class Roles:
    """Which user column plays which role. ``None`` means the role is absent."""

    filepath: str | None = None
    label: str | None = None
    mask: str | None = None
    split: str | None = None
    domain: str | None = None
    group: str | None = None
    sample_id: str | None = None
    attrs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "filepath": self.filepath,
            "label": self.label,
            "mask": self.mask,
            "split": self.split,
            "domain": self.domain,
            "group": self.group,
            "sample_id": self.sample_id,
            "attrs": list(self.attrs),
        }


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest existing name to ``name`` (case-insensitive), or None."""
    choices = list(choices)
    lower = {c.lower(): c for c in choices}
    if name.lower() in lower:
        return lower[name.lower()]
    match = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.5)
    return lower[match[0]] if match else None


# role -> the command-line flag that names its column
ROLE_FLAGS = {"filepath": "path-col", "sample_id": "id-col"}


def missing_column_error(col: str, role: str, available: Sequence[str]) -> InputError:
    """A one-line error for an unknown column, suggesting the closest existing name."""
    best = closest(col, available)
    hint = f" (did you mean {best!r}?)" if best else ""
    avail = ", ".join(map(str, available[:30])) + (" ..." if len(available) > 30 else "")
    return InputError(_MSG_NO_COL.format(col=col, role=ROLE_FLAGS.get(role, role), hint=hint, avail=avail))


def normalize_missing(values: pd.Series) -> pd.Series:
    """Convert a column to pandas ``string`` dtype, mapping NaN/None/'' and 'nan'-like strings to <NA>."""
    s = values.astype("object")
    mask = s.isna()
    out = s.where(mask, s.map(_to_str))
    out = out.mask(out.isin(MISSING_STRINGS))
    return out.astype("string")


def _to_str(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v).strip()


def attribute_columns(df: pd.DataFrame) -> list[str]:
    """The ``attr.*`` columns of a manifest, in order."""
    return [c for c in df.columns if str(c).startswith(ATTR_PREFIX)]


def build_manifest(table: pd.DataFrame, roles: Roles, *, source: str = "the input") -> pd.DataFrame:
    """Map user columns to roles and return a validated canonical manifest.

    Parameters
    ----------
    table
        The user's table (one row per sample).
    roles
        Which columns play which role. ``roles.filepath`` is required.
    source
        Name of the input, for error messages.
    """
    available = [str(c) for c in table.columns]
    table = table.copy()
    table.columns = available
    if roles.filepath is None:
        guess = next((c for c in _PATH_GUESSES if c in available), None)
        if guess is None:
            avail = ", ".join(map(str, available[:30])) + (" ..." if len(available) > 30 else "")
            raise InputError(f"no image path column found (looked for {', '.join(_PATH_GUESSES)}); name it with "
                             f"--path-col COLUMN; available columns: {avail}")
        roles.filepath = guess
    out = pd.DataFrame(index=range(len(table)))
    for role in ("filepath", "label", "mask", "split", "domain", "group", "sample_id"):
        col = getattr(roles, role)
        if col is None:
            continue
        if col not in table.columns:
            raise missing_column_error(col, role, available)
        out[role] = normalize_missing(table[col].reset_index(drop=True))
    seen_attr: set[str] = set()
    for col in roles.attrs:
        if col not in table.columns:
            raise missing_column_error(col, "attr", available)
        name = col[len(ATTR_PREFIX):] if col.startswith(ATTR_PREFIX) else col
        if name in seen_attr:
            continue
        seen_attr.add(name)
        out[ATTR_PREFIX + name] = normalize_missing(table[col].reset_index(drop=True))
    if "sample_id" not in out:
        out["sample_id"] = out["filepath"]
    missing_id = out["sample_id"].isna()
    if missing_id.any():
        out.loc[missing_id, "sample_id"] = out.loc[missing_id, "filepath"]
    return validate_manifest(canonical_order(out), source=source)


def canonical_order(df: pd.DataFrame) -> pd.DataFrame:
    """Role columns first in their fixed order, then ``attr.*`` columns, then anything else."""
    roles = [c for c in ROLE_COLUMNS if c in df.columns]
    attrs = attribute_columns(df)
    rest = [c for c in df.columns if c not in roles and c not in attrs]
    return df[roles + attrs + rest]


def validate_manifest(df: pd.DataFrame, *, source: str = "the input") -> pd.DataFrame:
    """Check the invariants of a canonical manifest; raise :class:`InputError` with a one-line message."""
    if len(df) == 0:
        raise InputError(_MSG_EMPTY.format(source=source))
    for col in ("sample_id", "filepath"):
        if col not in df.columns:
            raise missing_column_error(col, col, [str(c) for c in df.columns])
    if df["filepath"].isna().any():
        n = int(df["filepath"].isna().sum())
        raise InputError(f"{n} rows have no file path; every sample needs a filepath")
    if df["sample_id"].isna().any():
        df = df.copy()
        df["sample_id"] = df["sample_id"].fillna(df["filepath"])
    dup = df["sample_id"].duplicated(keep=False)
    if dup.any():
        ids = df.loc[dup, "sample_id"].drop_duplicates().head(3).tolist()
        raise InputError(_MSG_DUP.format(ids=", ".join(map(repr, ids)), n=int(dup.sum())))
    for col in df.columns:
        if col in ROLE_COLUMNS or str(col).startswith(ATTR_PREFIX):
            if str(df[col].dtype) != "string":
                df = df.copy()
                df[col] = normalize_missing(df[col])
    if "group" not in df.columns:
        df = df.copy()
        df["group"] = df["sample_id"]
    else:
        df = df.copy()
        df["group"] = df["group"].fillna(df["sample_id"])
    return canonical_order(df.reset_index(drop=True))


def resolve_path(root: Path, relpath: str, *, allow_outside_root: bool = False) -> Path:
    """Resolve ``relpath`` against ``root``; refuse paths that escape the root (``..``, symlinks, absolute)."""
    root = Path(root)
    p = Path(relpath)
    full = p if p.is_absolute() else root / p
    if allow_outside_root:
        return full
    real_root = os.path.realpath(root)
    real = os.path.realpath(full)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise InputError(_MSG_ESCAPE.format(sample=relpath, path=relpath, root=root))
    return full


def check_paths(df: pd.DataFrame, root: Path, *, allow_outside_root: bool = False) -> None:
    """Raise on the first path (image or mask) escaping ``root`` unless allowed."""
    if allow_outside_root:
        return
    real_root = os.path.realpath(root)
    prefix = real_root.rstrip(os.sep) + os.sep
    dir_ok: dict[str, bool] = {}

    def inside(real: str) -> bool:
        return real == real_root or real.startswith(prefix)

    for col in ("filepath", "mask"):
        if col not in df.columns:
            continue
        for sid, path in zip(df["sample_id"].tolist(), df[col].tolist(), strict=False):
            if path is pd.NA or path is None:
                continue
            # Fast path for 1M-row manifests: resolve each folder once, then only files that are symlinks.
            full = path if os.path.isabs(path) else os.path.join(real_root, path)
            norm = os.path.normpath(full)
            parent = os.path.dirname(norm)
            ok = dir_ok.get(parent)
            if ok is None:
                ok = dir_ok[parent] = inside(os.path.realpath(parent))
            if ok and os.path.islink(norm):
                ok = inside(os.path.realpath(norm))
            if not ok or not inside(norm) and not inside(os.path.realpath(norm)):
                raise InputError(_MSG_ESCAPE.format(sample=sid, path=path, root=root))


def fingerprint(df: pd.DataFrame, root: Path | None = None, *, allow_outside_root: bool = True) -> str:
    """A short hash of the manifest content plus each file's size and mtime.

    Two runs on the same files and the same manifest get the same fingerprint; touching or replacing a
    file changes it. Missing files contribute a marker, not an error.
    """
    h = hashlib.sha256()
    table = pd.util.hash_pandas_object(df.astype("string").fillna("\x00<NA>"), index=False).to_numpy()
    h.update(np.ascontiguousarray(table).tobytes())
    h.update(",".join(map(str, df.columns)).encode())
    if root is not None:
        root = Path(root)
        for col in ("filepath", "mask"):
            if col not in df.columns:
                continue
            stats = []
            for p in df[col].tolist():
                if p is pd.NA or p is None:
                    stats.append((-2, -2))
                    continue
                full = Path(p) if os.path.isabs(p) else root / p
                try:
                    st = os.stat(full)
                    stats.append((st.st_size, st.st_mtime_ns))
                except OSError:
                    stats.append((-1, -1))
            h.update(np.asarray(stats, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def write_manifest(df: pd.DataFrame, path: Path) -> None:
    """Write the manifest as Parquet, atomically."""
    from audit.core.atomic import atomic_write_parquet

    atomic_write_parquet(df, Path(path))


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest` (string dtypes restored)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no manifest at {path}")
    df = pd.read_parquet(path)
    for col in df.columns:
        if col in ROLE_COLUMNS or str(col).startswith(ATTR_PREFIX):
            df[col] = df[col].astype("string")
    return df
