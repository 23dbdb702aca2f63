"""Where a recipe's parts are on disk: candidate folders (case-tolerant), the cheap "does it fit" check, and the
errors that name what was looked for, the nearest folders that exist and the folder to pass.

Used by :mod:`audit.readers.recipe`; nothing outside the listed candidates is searched.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path, PurePosixPath

from audit.errors import InputError


def as_list(v) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


_SCAN_DEPTH = 3  # folder levels listed for the "nearest folders" of a layout that is not found
_SCAN_LIMIT = 5000  # at most this many folders are listed (breadth first, in name order)
_MOSTLY_UNMATCHED = 0.5  # a pattern part whose folder has more non-matching image files than this is refused


def _child_dir(parent: Path, name: str) -> Path | None:
    """``parent/name`` when it is a folder: the exact name, else the first in name order equal up to case."""
    if name in ("", "."):
        return parent
    if name == "..":
        return parent.parent
    try:
        names = sorted(e.name for e in os.scandir(parent) if e.is_dir())
    except OSError:
        return None
    if name in names:
        return parent / name
    low = name.lower()
    alt = next((n for n in names if n.lower() == low), None)
    return parent / alt if alt is not None else None


def _resolve_subdir(root: Path, rel: str) -> Path | None:
    """``root/rel`` as it is spelled on disk, each component matched exactly or else up to case; None if absent."""
    cur: Path | None = root
    for comp in PurePosixPath(rel).parts:
        cur = _child_dir(cur, comp)
        if cur is None:
            return None
    return cur


def _any_file(folder: Path, accept) -> bool:
    """Whether some image file under ``folder`` (relative POSIX path) is accepted; stops at the first."""
    from audit.readers import IMAGE_EXTENSIONS

    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith(".") or Path(fn).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if accept(Path(os.path.relpath(os.path.join(dirpath, fn), folder)).as_posix()):
                return True
    return False


def _fits(folder: Path, part: dict) -> bool:
    """Whether ``folder`` holds what ``part`` reads (cheap checks; the reader itself reports the details)."""
    from audit.readers.pattern import compile_pattern

    fmt = part["format"]
    if fmt == "segdir":
        for key in ("image_dir", "mask_dir"):
            if part.get(key) is not None and not (folder / part[key]).is_dir():
                return False
        if part.get("image_pattern"):
            pat = compile_pattern(part["image_pattern"])
            return _any_file(folder / (part.get("image_dir") or "."), lambda f: pat.match(f) is not None)
        return True
    if fmt == "pattern":
        pat = compile_pattern(part["pattern"])
        return _any_file(folder, lambda f: pat.match(f) is not None)
    if fmt == "table":
        return any((folder / f).is_file() for f in as_list(part["tables"][0].get("file")))
    return True


def _list_folders(root: Path) -> list[str]:
    """Folders under ``root`` up to :data:`_SCAN_DEPTH` levels, relative POSIX paths, breadth first in name order."""
    out: list[str] = []
    level = [""]
    for _ in range(_SCAN_DEPTH):
        nxt = []
        for rel in level:
            try:
                names = sorted(e.name for e in os.scandir(root / rel) if e.is_dir() and not e.name.startswith("."))
            except OSError:
                continue
            for n in names:
                nxt.append(f"{rel}/{n}" if rel else n)
                if len(out) + len(nxt) >= _SCAN_LIMIT:
                    return out + nxt
        out += nxt
        level = nxt
    return out


def _nearest_folders(cands: list[str], folders: list[str], n: int = 3) -> list[str]:
    """The existing folders most like a candidate: ratio of the lower-cased paths, a same last name first."""
    scored = []
    for f in folders:
        fl = f.lower()
        best = 0.0
        for c in cands:
            cl = c.lower().strip("/")
            r = difflib.SequenceMatcher(None, cl, fl).ratio()
            if PurePosixPath(cl).name == PurePosixPath(fl).name:
                r += 0.5  # DRIVE/datasets/training for DRIVE/training beats DRIVE/testing
            best = max(best, r)
        if best >= 0.6:
            scored.append((-best, f.count("/"), f))
    out: list[str] = []
    for _s, _d, f in sorted(scored):
        if not any(f.startswith(g + "/") or g.startswith(f + "/") for g in out):  # not a folder and its sub-folders
            out.append(f)
        if len(out) == n:
            break
    return out


def _root_to_pass(root: Path, cands: list[str], folders: list[str]) -> Path | None:
    """The folder that would make a candidate exist: ``root/x`` when ``x/<candidate>`` is there (the download
    sits deeper), ``root``'s parent when ``root`` is itself the candidate's first folder (the dataset folder was
    given instead of the folder holding it)."""
    for c in cands:
        cparts = PurePosixPath(c.lower()).parts
        if c in (".", "") or not cparts:
            continue
        for f in folders:  # shallowest first
            fparts = PurePosixPath(f).parts
            if len(fparts) > len(cparts) and tuple(x.lower() for x in fparts[-len(cparts):]) == cparts:
                return root.joinpath(*fparts[: len(fparts) - len(cparts)])
    for c in cands:
        cparts = PurePosixPath(c).parts
        if len(cparts) >= 1 and cparts[0].lower() == root.name.lower() and c not in (".", ""):
            rest = "/".join(cparts[1:]) or "."
            if _resolve_subdir(root, rest) is not None:
                return root.parent
    return None


def _not_found_error(root: Path, cands: list[str], name: str) -> InputError:
    folders = _list_folders(root)
    near = _nearest_folders(cands, folders)
    looked = ", ".join(repr(c) for c in cands)
    msg = f"{root} does not look like this dataset (part {name}): looked for {looked}, none exists"
    if near:
        msg += f"; nearest folders that exist: {', '.join(repr(f) for f in near)}"
    elif folders:
        msg += f"; folders there: {', '.join(repr(f) for f in folders[:5])}{', ...' if len(folders) > 5 else ''}"
    else:
        msg += "; it has no sub-folder"
    to_pass = _root_to_pass(root, cands, folders)
    if to_pass is not None:
        msg += f"; the folder to pass is --root {to_pass}"
    else:
        msg += f"; pass --root the folder the download was extracted to (the one holding {cands[0]!r})"
    return InputError(msg)


def find_subdir(root: Path, part: dict, idx: int) -> Path | None:
    """The folder of ``part`` under ``root`` (see the module docstring, "Finding the folder")."""
    cands = [str(c) for c in as_list(part.get("subdir", "."))] or ["."]
    found = [d for c in cands if (d := _resolve_subdir(root, c)) is not None]
    for d in found:
        if _fits(d, part):
            return d
    if found:
        return found[0]  # nothing fits: its reader says what is missing there
    if part.get("optional"):
        return None
    raise _not_found_error(root, cands, repr(part.get("name", idx + 1)))


def refuse_mostly_unmatched(folder: Path, got) -> None:
    """A recipe's pattern part does not read a folder most of whose images are not this dataset's."""
    from audit.readers.pattern import matching_folders

    n, bad = len(got.files), len(got.unmatched)
    if bad <= _MOSTLY_UNMATCHED * n:
        return
    where = matching_folders(got.files, got.unmatched)
    ex = ", ".join(repr(u) for u in got.unmatched[:3])
    msg = (f"{bad:,} of {n:,} image files under {folder} do not match this recipe's file names (e.g. {ex}): "
           "another dataset is probably beside it, so nothing is read")
    if len(where) == 1 and where[0][0] != ".":
        msg += f"; the files that match are in {where[0][0]}/: the folder to pass is --root {folder / where[0][0]}"
    else:
        shown = ", ".join(f"{d}/ ({k:,})" for d, k in where[:5])
        msg += (f"; the files that match are in {shown}: pass --root a folder that holds only them "
                "(move the other files out)")
    raise InputError(msg)
