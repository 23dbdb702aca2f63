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
flag       string  (only when a row has a problem) why the row cannot be used: see :data:`FLAG_CODES`
listing_of string  (only when a file is listed twice) the sample id of the file's first listing
=========  ======  ==========================================================================

All role columns are stored as pandas ``string`` dtype; missing values stay missing (``<NA>``),
never the string ``"nan"``.

A bad row is a flagged row, never a refusal of the whole dataset: :func:`validate_manifest` gives rows without a
path an id (``(row N: empty path)``) and makes repeated ids unique (``a.png``, ``a.png#2``, ...), and
:func:`flag_rows` (called by every reader) marks rows whose path escapes the root, does not exist, is a folder or
has an unsupported extension. Flagged rows stay in the manifest; the profile reports them and training leaves
them out with the reason.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audit.core.pathcheck import _MSG_ESCAPE, resolve_path, resolve_paths  # noqa: F401  (re-exported)
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
    "FLAG_CODES",
    "UNOPENED_FLAGS",
    "flag_rows",
    "flagged_rows_error",
]

ROLE_COLUMNS = ("sample_id", "filepath", "label", "mask", "split", "domain", "group")
ATTR_PREFIX = "attr."

# Strings that mean "missing" in user tables. They become <NA>, never a group called "nan".
MISSING_STRINGS = frozenset({"", "nan", "NaN", "NAN", "none", "None", "null", "NULL", "NA", "N/A", "n/a", "<NA>"})

_MSG_EMPTY = "the manifest is empty: no samples were found in {source}"
# Why a row is flagged, strongest first (a row carries the first that applies). Every code but the last two means
# the file is never opened: the profile records the code as the row's error.
FLAG_CODES = ("empty_path", "outside_root", "missing_file", "directory", "not_a_file", "unsupported_extension",
              "duplicate_listing", "duplicate_id")
UNOPENED_FLAGS = frozenset(FLAG_CODES[:6])
_FS_FLAGS = FLAG_CODES[:6]
_MSG_NO_COL = "no column {col!r} for --{role}{hint}; available columns: {avail}"
_PATH_GUESSES = ("filepath", "path", "file", "image", "filename", "img")


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
    derived = "sample_id" not in out
    if derived:
        out["sample_id"] = out["filepath"]
    missing_id = out["sample_id"].isna()
    if missing_id.any():
        out.loc[missing_id, "sample_id"] = out.loc[missing_id, "filepath"]
    return validate_manifest(canonical_order(out), source=source, ids_from_paths=derived)


def canonical_order(df: pd.DataFrame) -> pd.DataFrame:
    """Role columns first in their fixed order, then ``attr.*`` columns, then anything else."""
    roles = [c for c in ROLE_COLUMNS if c in df.columns]
    attrs = attribute_columns(df)
    rest = [c for c in df.columns if c not in roles and c not in attrs]
    return df[roles + attrs + rest]


def validate_manifest(df: pd.DataFrame, *, source: str = "the input", ids_from_paths: bool = False) -> pd.DataFrame:
    """Check the invariants of a canonical manifest; raise :class:`InputError` with a one-line message.

    Only a manifest that cannot exist is refused (no rows, no path column). Per-row problems become flags
    (column ``flag``): a row without a path is ``empty_path`` (id ``(row N: empty path)``), the second and later
    listings of one file are ``duplicate_listing`` (ids ``path#2``, ``path#3``..., column ``listing_of``), and an
    id repeated for different files is made unique the same way and flagged ``duplicate_id``.
    ``ids_from_paths`` (a hint from :func:`build_manifest`): every present id is its row's path.
    """
    if len(df) == 0:
        raise InputError(_MSG_EMPTY.format(source=source))
    for col in ("sample_id", "filepath"):
        if col not in df.columns:
            raise missing_column_error(col, col, [str(c) for c in df.columns])
    df = df.reset_index(drop=True).copy()
    for col in df.columns:
        if col in ROLE_COLUMNS or str(col).startswith(ATTR_PREFIX) or col in ("flag", "listing_of"):
            if str(df[col].dtype) != "string":
                df[col] = normalize_missing(df[col])
    no_path = df["filepath"].isna().to_numpy()
    sid = df["sample_id"].fillna(df["filepath"])
    if sid.isna().any():
        rows = np.flatnonzero(sid.isna().to_numpy())
        sid[rows] = [f"(row {i + 1}: empty path)" for i in rows]
    flag = df["flag"].copy() if "flag" in df.columns else pd.Series(pd.NA, index=df.index, dtype="string")
    flag = flag.where(flag.isin((*_FS_FLAGS, "duplicate_id")), pd.NA)  # listings are recomputed below
    flag[no_path] = "empty_path"
    key, listing, dup_sid = _listings(df["filepath"], sid, ids_from_paths=ids_from_paths)
    has = key.notna().to_numpy()
    dup_id = dup_sid & ~listing
    df["sample_id"] = _unique_ids(sid, dup_sid)
    if listing.any():
        first = has & ~listing
        first_id = pd.Series(df["sample_id"][first].to_numpy(), index=key[first].to_numpy())
        of = pd.Series(pd.NA, index=df.index, dtype="string")
        of[listing] = first_id.reindex(key[listing].to_numpy()).to_numpy()
        df["listing_of"] = of
        flag[listing & flag.isna().to_numpy()] = "duplicate_listing"
    elif "listing_of" in df.columns:
        df = df.drop(columns="listing_of")
    flag[dup_id & flag.isna().to_numpy()] = "duplicate_id"
    if flag.notna().any():
        df["flag"] = flag.astype("string")
    elif "flag" in df.columns:
        df = df.drop(columns="flag")
    if "group" not in df.columns:
        df["group"] = df["sample_id"]
    else:
        df["group"] = df["group"].fillna(df["sample_id"])
    return canonical_order(df)


def _path_key(paths: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """The lexical identity of a path (``./a.png`` and ``a.png`` are one file; NA stays NA), and the positions of
    the paths that differ from it (few: ``../x.png`` is its own normal form)."""
    key = paths.astype("string")
    # only paths with '.', '..' or empty components, or a trailing '/', can differ from their normal form
    odd = np.flatnonzero(key.str.contains(r"(?:^|/)\.\.?(?:/|$)|//|/$", regex=True).fillna(False).to_numpy(bool))
    if not len(odd):
        return key, odd
    raw = key.iloc[odd].tolist()
    norm = [os.path.normpath(p) for p in raw]
    changed = np.array([a != b for a, b in zip(raw, norm, strict=True)], dtype=bool)
    if changed.any():
        key = key.copy()
        key.iloc[odd[changed]] = [b for b, c in zip(norm, changed, strict=True) if c]
    return key, odd[changed]


def _listings(paths: pd.Series, sid: pd.Series, *, ids_from_paths: bool = False):
    """``(path key, later listing of a file, repeated id)``: one hashing pass when the ids are the paths.

    When the ids are the paths, a listing is a repeated id, except around the few paths whose normal form differs
    (``./a.png``): only the rows sharing those normal forms are compared again, so a 1M-row table with a handful of
    such paths still costs one hashing pass over the ids."""
    key, changed = _path_key(paths)
    has = key.notna().to_numpy()
    dup_sid = sid.duplicated(keep="first").to_numpy()
    if ids_from_paths or bool((sid[has] == paths[has]).all()):
        listing = dup_sid & has
        # keys where a repeated id and a repeated file may differ: normalized paths, and the ids given to empty
        # rows (a path spelled "(row 3: empty path)" repeats that id, not a file); rows with those keys are
        # compared on the key among themselves
        special = set(key.iloc[changed].tolist())
        if listing.any() and (~has).any():
            special |= set(sid[~has].tolist())
        if special:
            near = np.flatnonzero(key.isin(special).fillna(False).to_numpy(bool) & has)
            listing[near] = key.iloc[near].duplicated(keep="first").to_numpy()
    else:
        listing = key.duplicated(keep="first").to_numpy() & has
    return key, listing, dup_sid


def _unique_ids(ids: pd.Series, dup: np.ndarray | None = None) -> pd.Series:
    """``ids`` with every repeat renamed ``id#2``, ``id#3``... (first come keeps its id; never a collision).

    ``dup``: ``ids.duplicated(keep="first")`` when the caller has it already. Work is proportional to the repeats
    (plus one vectorized ``isin``), so a clean 1M-row manifest costs nothing here."""
    dup = ids.duplicated(keep="first").to_numpy() if dup is None else dup
    pos = np.flatnonzero(dup)
    if not len(pos):
        return ids.astype("string")
    base = ids.iloc[pos].astype(str).tolist()
    count: dict[str, int] = {}
    cands = []
    for b in base:
        j = count.get(b, 1) + 1
        count[b] = j
        cands.append(f"{b}#{j}")
    clash = set(ids[ids.isin(cands)].tolist())  # an existing id that looks like a renamed one
    taken = clash | set(cands) if clash else set()
    for k, b in enumerate(base):
        if cands[k] in clash:
            j = count[b]
            while cands[k] in taken:
                j += 1
                cands[k] = f"{b}#{j}"
            count[b] = j
            taken.add(cands[k])
    out = ids.astype("string").copy()
    out.iloc[pos] = cands
    return out


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


def flag_rows(df: pd.DataFrame, root: Path, *, allow_outside_root: bool = False,
              extensions: Iterable[str] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Flag rows whose file cannot be used; return the manifest (column ``flag``) and each file's (size, mtime_ns).

    One ``lstat`` per row (plus a ``realpath`` per folder and per symlink): ``outside_root`` (``..``, an absolute
    path elsewhere, a symlink or symlinked folder leading out; never opened, not even stat-ed, unless
    ``allow_outside_root``), ``missing_file``, ``directory``, ``not_a_file`` (a device, socket or pipe: opening one
    could block) and ``unsupported_extension`` (not in ``extensions``). A mask path escaping the root flags its row
    ``outside_root`` too. The returned stats feed :func:`fingerprint` so that no file is stat-ed twice; rows not
    stat-ed get ``(-1, -1)`` (missing), ``(-2, -2)`` (no path) or ``(-3, -3)`` (outside the root).
    """
    exts = tuple(sorted({e.lower() for e in extensions})) if extensions is not None else None
    real_root = os.path.realpath(root)
    prefix = real_root.rstrip(os.sep) + os.sep
    # folder -> True (allowed, its own real path), False (outside the root) or its real path (allowed but spelled
    # otherwise: '..', '.', '//', a symlinked folder): the files in such a folder get a resolved key below
    dir_ok: dict[str, bool | str] = {}

    def inside_dir(d: str) -> bool | str:
        ok = dir_ok.get(d)
        if ok is None:
            real = os.path.realpath(d)
            ok = allow_outside_root or real == real_root or real.startswith(prefix)
            ok = dir_ok[d] = (real if ok and real != d else ok)
        return ok

    def inside(full: str) -> bool:
        real = os.path.realpath(full)
        return allow_outside_root or real == real_root or real.startswith(prefix)

    # ".png"-like extensions: a name ending in one is that extension (splitext's answer) unless it starts with a dot
    simple = exts is not None and all(e.startswith(".") and e.count(".") == 1 for e in exts)

    def bad_ext(low: str) -> bool:
        return os.path.splitext(low.rpartition(os.sep)[2])[1] not in exts

    paths = df["filepath"].to_numpy(dtype=object, na_value=None)
    n = len(paths)
    flags: dict[int, str] = {}  # row -> flag: few rows, so no per-row list of None to turn into a column
    sizes, mtimes = array("q", [-1]) * n, array("q", [-1]) * n  # read back by numpy without a copy
    real_of: dict[int, str] = {}  # row -> its real path, for the few rows whose path string is not their real path
    # The per-row loop of a 1M-row manifest: plain string operations (no os.path call), one lstat, one dict
    # lookup for the folder; everything else happens only on the rare rows with a problem.
    lstat, IFMT, IFREG, IFDIR, IFLNK = os.lstat, 0o170000, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK
    sep, dotdir = os.sep, os.sep + "."
    for i, p in enumerate(paths):
        if p is None:
            flags[i], sizes[i], mtimes[i] = "empty_path", -2, -2
            continue
        full = p if p.startswith(sep) else prefix + p
        d = full[:full.rfind(sep)] or sep
        ok = dir_ok.get(d)
        if ok is None:
            ok = inside_dir(d)
        if not ok:
            flags[i], sizes[i], mtimes[i] = "outside_root", -3, -3
            continue
        try:
            st = lstat(full)
            if st.st_mode & IFMT == IFLNK:
                real = os.path.realpath(full)
                if not (allow_outside_root or real == real_root or real.startswith(prefix)):
                    flags[i], sizes[i], mtimes[i] = "outside_root", -3, -3
                    continue
                st = os.stat(full)
                real_of[i] = real
        except (FileNotFoundError, NotADirectoryError):
            flags[i] = "missing_file"
            continue
        except OSError:  # permissions and the like: left to the profile, which records io_error
            continue
        fmt = st.st_mode & IFMT
        if fmt != IFREG:
            flags[i] = "directory" if fmt == IFDIR else "not_a_file"
        elif exts is not None:
            low = p.lower()
            # the common case in three C calls; names starting with a dot (or odd extensions) go to splitext
            if not (simple and low.endswith(exts) and dotdir not in low and low[0] != ".") and bad_ext(low):
                flags[i] = "unsupported_extension"
        sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
        if ok is not True and i not in real_of:  # a folder spelled otherwise than its real path (rare)
            real_of[i] = ok.rstrip(sep) + full[len(d):]
    stats = np.column_stack([np.frombuffer(sizes, dtype=np.int64), np.frombuffer(mtimes, dtype=np.int64)])
    if "mask" in df.columns and not allow_outside_root:
        for i, p in enumerate(df["mask"].to_numpy(dtype=object, na_value=None)):
            if p is not None and i not in flags:
                full = p if p.startswith(sep) else prefix + p
                if not inside_dir(full[:full.rfind(sep)] or sep) or os.path.islink(full) and not inside(full):
                    flags[i] = "outside_root"
    # with --allow-outside-root only: there a ``../`` path, a symlink leading out and an absolute path can name one
    # file, which the lexical check cannot see; inside the root the lexical check is the documented behaviour
    real_of = {i: r for i, r in real_of.items() if i not in flags} if allow_outside_root else {}
    return _with_flags(df, flags, real_of, prefix), stats


def _with_flags(df: pd.DataFrame, flags: dict[int, str], real_of: dict[int, str], prefix: str) -> pd.DataFrame:
    """The manifest with column ``flag``: the file flags of :func:`flag_rows`, the lexical flags already there
    (duplicate listing / id) where no file problem was found, and listings found on the resolved path."""
    new = pd.Series(pd.NA, index=df.index, dtype="string")
    if flags:
        new.iloc[list(flags)] = list(flags.values())
    if "flag" in df.columns:
        old = df["flag"]
        new = new.fillna(old.where(~old.isin(_FS_FLAGS)))
    out = df.copy()
    if real_of:
        new = _resolved_listings(out, new, real_of, prefix)
    if new.notna().any():
        out["flag"] = new.astype("string")
    elif "flag" in out.columns:
        out = out.drop(columns="flag")
    return canonical_order(out)


def _resolved_listings(df: pd.DataFrame, flag: pd.Series, real_of: dict[int, str], prefix: str) -> pd.Series:
    """Listings of one file under several path strings (``../x.png``, a symlink to it, its absolute path): rows
    whose path is not their real path (``real_of``: row -> real path) are compared on the real path with each other
    and with the rows spelling that real path directly (relative to the root, or absolute). Every later row of such
    a file becomes a ``duplicate_listing`` with ``listing_of`` = the file's first row, as the lexical check does
    (which sees only the path strings). Only rows opened without a problem take part. ``df`` gets ``listing_of``
    in place; the returned flags add the new listings. The cost is one ``isin`` over the paths, and only when some
    row's path is not its real path."""
    spell: dict[str, str] = {}
    for r in set(real_of.values()):
        spell[r] = r
        if r.startswith(prefix):
            spell[r[len(prefix):]] = r
    fp = df["filepath"].astype("string")
    ok = ~flag.isin(_FS_FLAGS).fillna(False).to_numpy(bool)
    key = {int(i): spell[fp.iloc[i]] for i in np.flatnonzero(fp.isin(list(spell)).fillna(False).to_numpy(bool) & ok)}
    key.update(real_of)  # positions -> real path
    rows = pd.Series(key).sort_index()
    rows = rows[rows.duplicated(keep=False)]
    if rows.empty:
        return flag
    pos = rows.index.to_numpy()
    first = rows.groupby(rows, sort=False).transform(lambda g: g.index[0]).to_numpy()
    later = pos[first != pos]
    sid = df["sample_id"].astype("string")
    of = (df["listing_of"].astype("string").copy() if "listing_of" in df.columns
          else pd.Series(pd.NA, index=df.index, dtype="string"))
    of.iloc[later] = sid.iloc[first[first != pos]].to_numpy()
    df["listing_of"] = of
    flag = flag.copy()
    flag.iloc[later] = flag.iloc[later].fillna("duplicate_listing").to_numpy()
    return flag


def flagged_rows_error(df: pd.DataFrame, *, limit: int = 200) -> InputError | None:
    """``--strict``: one error listing every flagged row (by reason; at most ``limit`` ids per reason)."""
    if "flag" not in df.columns or not df["flag"].notna().any():
        return None
    flagged = df[df["flag"].notna()]
    parts = []
    for code in [c for c in FLAG_CODES if c in set(flagged["flag"])]:
        ids = flagged.loc[flagged["flag"] == code, "sample_id"].astype(str).tolist()
        more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
        parts.append(f"{code} ({len(ids)}): " + ", ".join(map(repr, ids[:limit])) + more)
    return InputError(f"--strict: {len(flagged)} of {len(df)} manifest rows are flagged; " + "; ".join(parts)
                      + " (drop --strict to profile them as findings; every flag is in RUN/manifest.parquet)")


def fingerprint(df: pd.DataFrame, root: Path | None = None, *, allow_outside_root: bool = True,
                file_stats: np.ndarray | None = None) -> str:
    """A short hash of the manifest content plus each file's size and mtime.

    Two runs on the same files and the same manifest get the same fingerprint; touching or replacing a
    file changes it. Missing files contribute a marker, not an error. ``file_stats`` (from :func:`flag_rows`,
    one (size, mtime_ns) per row) stands for the image files' stats, so they are not stat-ed again.
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
            if col == "filepath" and file_stats is not None and len(file_stats) == len(df):
                h.update(np.ascontiguousarray(file_stats, dtype=np.int64).tobytes())
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
