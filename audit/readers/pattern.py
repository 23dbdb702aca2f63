"""Path patterns: extract roles from file names or relative paths.

``--pattern`` is either

* a ``{field}`` template, e.g. ``{age}_{gender}_{race}_{_id}.jpg`` (UTKFace) or ``{domain}/{label}/{_}``.
  ``{name:REGEX}`` restricts what a field matches (``{age:\\d+}``); a plain ``{name}`` matches any run of
  characters without ``/`` (shortest first). A template containing ``/`` is matched against the whole
  relative path (POSIX separators), otherwise against the file name alone. The whole text must match.
* a regular expression with named groups, e.g. ``(?P<age>\\d+)_(?P<gender>\\d)_``; it is *searched* in the
  relative path (anchor it with ``^``/``$`` as needed). A text is a regex when it contains ``(?P<``.

Field names map to roles: ``label``, ``domain``, ``split``, ``group`` are those roles; ``id``, ``_`` and any name
starting with ``_`` are matched but not kept; every other name becomes ``attr.<name>``. The role flags say
which field is which: ``--label race`` makes the field ``race`` the label (instead of ``attr.race``), ``--group id``
keeps the ``id`` field as the cluster. Files whose path does not match are kept in the manifest with those roles
missing, and reported in the notes (count and three examples), never dropped; when most files do not match, the note
names the folder that holds the matching ones. A field in an optional group of a regex (``(?:(?P<race>\\d)_)?``)
may be absent from a matching name: the file is kept with that field unknown, and the notes say how many and which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from audit.errors import InputError, UsageError
from audit.manifest import ATTR_PREFIX, Roles, closest, validate_manifest
from audit.readers import Reader, ReadOptions, ReadResult, register

__all__ = [
    "CompiledPattern", "PatternRead", "compile_pattern", "extract_fields", "fields_to_roles", "matching_folders",
    "read_pattern", "PatternReader",
]

ROLE_FIELDS = ("label", "domain", "split", "group", "mask")
_DEFAULT_FIELD = r"[^/]+?"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass
class CompiledPattern:
    """A pattern ready to match: the regex, its field names (in order) and what it is matched against."""

    text: str
    regex: re.Pattern
    fields: list[str]
    whole_path: bool  # match the relative path (True) or the file name only (False)
    search: bool  # regex patterns are searched; templates must match the whole text
    group_of: dict[str, str]  # field name -> regex group name (templates rename to valid, unique names)

    def match(self, relpath: str) -> dict[str, str] | None:
        """The fields extracted from ``relpath`` (POSIX), or None when it does not match."""
        target = relpath if self.whole_path else PurePosixPath(relpath).name
        m = self.regex.search(target) if self.search else self.regex.fullmatch(target)
        if m is None:
            return None
        out = {}
        for name in self.fields:
            v = m.group(self.group_of[name])
            out[name] = v
        return out


def _is_regex(text: str) -> bool:
    return "(?P<" in text


def _parse_template(text: str) -> tuple[str, list[str], dict[str, str]]:
    """Turn a ``{field}`` template into a regex; braces inside ``{name:REGEX}`` may nest (``\\d{2}``)."""
    out: list[str] = []
    fields: list[str] = []
    group_of: dict[str, str] = {}
    i = 0
    n_ignored = 0
    while i < len(text):
        c = text[i]
        if c == "{":
            depth, j = 1, i + 1
            while j < len(text) and depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                raise UsageError(f"--pattern {text!r}: unbalanced '{{' at position {i}")
            body = text[i + 1 : j - 1]
            name, _, sub = body.partition(":")
            name = name.strip()
            if name in ("", "_"):
                name = f"_{n_ignored}"
                n_ignored += 1
            if not _NAME_RE.match(name):
                raise UsageError(f"--pattern {text!r}: field name {name!r} must be letters, digits, '_' or '.'")
            if name in group_of:
                raise UsageError(f"--pattern {text!r}: field {name!r} appears twice")
            group = f"g{len(fields)}"
            group_of[name] = group
            fields.append(name)
            sub = sub or _DEFAULT_FIELD
            try:
                re.compile(sub)
            except re.error as e:
                raise UsageError(f"--pattern {text!r}: bad regex for field {name!r}: {e}") from None
            out.append(f"(?P<{group}>{sub})")
            i = j
        elif c == "}":
            raise UsageError(f"--pattern {text!r}: unbalanced '}}' at position {i}")
        else:
            out.append(re.escape(c))
            i += 1
    if not fields:
        raise UsageError(f"--pattern {text!r} has no {{field}}; write e.g. '{{label}}_{{_}}.jpg'")
    return "".join(out), fields, group_of


def compile_pattern(text: str) -> CompiledPattern:
    """Compile a ``{field}`` template or a regex with named groups (see the module docstring)."""
    if not text or not text.strip():
        raise UsageError("--pattern is empty")
    if _is_regex(text):
        try:
            rx = re.compile(text)
        except re.error as e:
            raise UsageError(f"--pattern {text!r} is not a valid regular expression: {e}") from None
        fields = list(rx.groupindex)
        if not fields:
            raise UsageError(f"--pattern {text!r} has no named group (?P<name>...)")
        return CompiledPattern(text, rx, fields, True, True, {f: f for f in fields})
    body, fields, group_of = _parse_template(text)
    return CompiledPattern(text, re.compile(body), fields, "/" in text, False, group_of)


def extract_fields(paths: list[str], pattern: CompiledPattern) -> tuple[pd.DataFrame, list[str]]:
    """Match every path; return one row of fields per path (missing where unmatched) and the unmatched paths."""
    rows, unmatched = [], []
    for p in paths:
        m = pattern.match(PurePosixPath(Path(p).as_posix()).as_posix())
        if m is None:
            unmatched.append(p)
            rows.append(dict.fromkeys(pattern.fields))
        else:
            rows.append(m)
    return pd.DataFrame(rows, columns=pattern.fields), unmatched


def fields_to_roles(fields: list[str], roles: Roles, *, what: str = "--pattern") -> dict[str, str]:
    """Map extracted field names to manifest columns (``label``, ``attr.race``...), honouring the role flags.

    Raises :class:`UsageError` when a role flag names a field the pattern does not have.
    """
    fset = set(fields)
    explicit: dict[str, str] = {}
    for role in ROLE_FIELDS:
        col = getattr(roles, role, None)
        if col is None:
            continue
        if col not in fset:
            best = closest(col, fields)
            hint = f" (did you mean {best!r}?)" if best else ""
            raise UsageError(f"--{role} {col!r} is not a field of {what}{hint}; fields: {', '.join(fields)}")
        explicit[col] = role
    for a in roles.attrs:
        name = a[len(ATTR_PREFIX) :] if a.startswith(ATTR_PREFIX) else a
        if name not in fset:
            best = closest(name, fields)
            hint = f" (did you mean {best!r}?)" if best else ""
            raise UsageError(f"--attr {name!r} is not a field of {what}{hint}; fields: {', '.join(fields)}")
    taken = set(explicit.values())
    out: dict[str, str] = {}
    for f in fields:
        if f in explicit:
            out[f] = explicit[f]
        elif f in ROLE_FIELDS:
            if f not in taken:  # a field named like a role plays it unless a flag gave the role to another field
                out[f] = f
                taken.add(f)
            else:
                out[f] = ATTR_PREFIX + f
        elif f == "id" or f.startswith("_"):
            continue
        else:
            out[f] = f if f.startswith(ATTR_PREFIX) else ATTR_PREFIX + f
    return out


def unmatched_note(unmatched: list[str], total: int, pattern_text: str, *, what: str = "files") -> str:
    ex = ", ".join(repr(u) for u in unmatched[:3])
    return (
        f"{len(unmatched)} of {total} {what} do not match the pattern {pattern_text!r}; they are kept with "
        f"those roles missing (e.g. {ex})"
    )


def matching_folders(files: list[str], unmatched: list[str]) -> list[tuple[str, int]]:
    """Where the files that match sit: ``[(folder, n matching)]``, relative POSIX paths, most files first.

    The deepest folder holding every matching file when there is one below the top (``crop_part1``); else each
    top-level folder that holds some (``"."`` for files directly in the root)."""
    bad = set(unmatched)
    parents = [PurePosixPath(f).parent.parts for f in files if f not in bad]
    if not parents:
        return []
    common: list[str] = []
    for level in zip(*parents, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if common:
        return [("/".join(common), len(parents))]
    counts: dict[str, int] = {}
    for p in parents:
        counts[p[0] if p else "."] = counts.get(p[0] if p else ".", 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _mostly_unmatched_hint(files: list[str], unmatched: list[str]) -> str:
    where = matching_folders(files, unmatched)
    if not where:
        return ""
    shown = ", ".join(f"{d}/ ({n:,})" for d, n in where[:3])
    return f"; most files do not match: those that do are in {shown}"


def _absent_field_notes(files: list[str], fields: pd.DataFrame, unmatched: list[str],
                        mapping: dict[str, str]) -> list[str]:
    """Notes on kept fields absent from names that match (an optional group of the regex)."""
    if not len(files):
        return []
    ok = ~pd.Series(files).isin(set(unmatched)).to_numpy()
    out = []
    for f, col in mapping.items():
        absent = ok & fields[f].isna().to_numpy()
        if absent.any():
            names = [PurePosixPath(p).name for p, a in zip(files, absent, strict=True) if a]
            out.append(
                f"{len(names)} of {len(files)} files match the pattern without a {f!r} field; kept with {col} "
                f"unknown (e.g. {', '.join(repr(n) for n in names[:3])})"
            )
    return out


@dataclass
class PatternRead:
    """What :func:`read_pattern` found: the manifest frame, the notes, every image path and the unmatched ones."""

    frame: pd.DataFrame
    notes: list[str]
    files: list[str]
    unmatched: list[str]
    mapping: dict[str, str]


def read_pattern(root: Path, pattern: CompiledPattern, roles: Roles, *, follow_symlinks: bool = True) -> PatternRead:
    """The rows of every image under ``root`` with the fields of ``pattern`` (unmatched files kept, roles missing).

    Raises :class:`InputError` when there is no image or no file matches."""
    from audit.readers.imagefolder import list_images, skipped_note

    skipped: list[str] = []
    files = list_images(root, follow_symlinks=follow_symlinks, skipped=skipped)
    if not files:
        raise InputError(f"no image files under {root}")
    files = [Path(f).as_posix() for f in files]
    fields, unmatched = extract_fields(files, pattern)
    mapping = fields_to_roles(pattern.fields, roles)
    df = pd.DataFrame({"sample_id": files, "filepath": files})
    for f, col in mapping.items():
        df[col] = fields[f].to_numpy()
    if len(unmatched) == len(files):
        raise InputError(
            f"no file under {root} matches --pattern {pattern.text!r} (e.g. {files[0]!r}); "
            "a template without '/' matches file names, with '/' the relative path"
        )
    notes = [n for n in (skipped_note(skipped),) if n]
    if unmatched:
        hint = _mostly_unmatched_hint(files, unmatched) if 2 * len(unmatched) > len(files) else ""
        notes.append(unmatched_note(unmatched, len(files), pattern.text) + hint)
    notes.extend(_absent_field_notes(files, fields, unmatched, mapping))
    return PatternRead(df, notes, files, unmatched, mapping)


@register
class PatternReader(Reader):
    name = "pattern"
    description = "an image folder whose file names or paths carry the roles: --pattern '{age}_{gender}_{race}_{_}.jpg'"

    def detect(self, source: Path, options: ReadOptions) -> bool:
        return bool(options.pattern) and source.is_dir()

    def read(self, source: Path, options: ReadOptions) -> ReadResult:
        if not options.pattern:
            raise UsageError("--format pattern needs --pattern, e.g. --pattern '{label}_{_}.jpg'")
        root = Path(source)
        if not root.is_dir():
            raise InputError(f"{root} is not a folder")
        pat = compile_pattern(options.pattern)
        got = read_pattern(root, pat, options.roles, follow_symlinks=options.follow_symlinks)
        return ReadResult(
            manifest=validate_manifest(got.frame, source=str(root)), root=root.resolve(), format=self.name,
            notes=got.notes, extra={"pattern": pat.text, "pattern_fields": dict(got.mapping)},
        )
