"""Recipes: TOML files (``datasets/*.toml``) saying how a public dataset's download becomes a manifest.

``audit profile --recipe datasets/pacs.toml --root /data/PACS`` or ``--recipe pacs`` (bare names are looked up
in ``./datasets``, the repository's ``datasets/`` and the installed package's ``audit/_recipes/``).

A recipe has::

    [dataset]   name, title, url, citation, license, task (classify|segment), classes (segment), notes
    [domains]   names = [...] (expected domain values; others are reported), description
    [protocol]  default = "lodo" | "split" | "transfer", held_out = [...], notes
    [roles]     label / domain / split / group / mask = a table column or pattern field, attrs = [...]
    [values.<column>]  raw value -> name ("" = missing), e.g. [values.race] "0" = "White"
    [bins.<column>]    edges = [0, 20, 40], labels = [...] (optional): numeric values -> intervals [a, b)
    [[parts]]   one or more sources, concatenated (a single [reader] table is the same as one part):
        format   imagefolder | pattern | segdir | table
        subdir   folder under the root (a list = candidates; "." = the root). See "Finding the folder" below.
        optional true = a missing subdir is noted instead of an error
        set      {domain = "DRIVE", split = "train"}: constant columns for this part
        layout   (imagefolder, segdir)   pattern (pattern)
        image_dir, mask_dir, image_pattern, mask_pattern (segdir)
        tables = [{file, sep, skiprows, header, columns, index_name}], join = "key column" (file candidates
                 in another format than the first, e.g. .csv for .txt, are read as tables with a header row),
        path = "img/{image_id}" (a list = candidates: the one under which most of the first 50 rows exist),
        mask_path (table); roles whose columns come from an optional table that is absent are left unset
        split_lists = [{file = "glob", split = "train"}]: text files whose lines start with a path (file may be a
                 list of globs: the first that matches is used)
        roles    per-part [roles] override

Role flags given on the command line (``--label Smiling``) override the recipe's roles for table and pattern
parts; ``--attr`` adds attributes.

Finding the folder of a part (deterministic; no search beyond the listed candidates):

* each ``subdir`` candidate is resolved one path component at a time, the exact name first, else the first
  folder in name order that differs only by case (``drive/Training`` for ``DRIVE/training``);
* the first candidate that exists *and fits* the part is used: a segdir part's ``image_dir`` / ``mask_dir`` exist
  there (and a file matches its ``image_pattern``), a pattern part has a file matching its pattern, a table part
  has one of its first table's files. So a wrapper folder (``CHASEDB1/CHASEDB1/``) is passed over for the
  candidate below it. When none fits, the first that exists is read, and its reader says what is missing there;
* when no candidate exists, :class:`InputError` names every candidate, the nearest folders that do exist (up to
  3 levels below the root, by similarity of the relative path) and, when it can tell, the folder to pass as
  ``--root`` (the root given may be the dataset folder itself, or the download may sit one level deeper).

A pattern part never falls back to reading everything: when more than half of the image files of its folder do
not match the pattern (another dataset beside it), it is an :class:`InputError` naming the folder that holds the
matching files. A minority of non-matching files is kept with those roles missing, and noted.
"""

from __future__ import annotations

import glob as _glob
import re
import tomllib
from pathlib import Path, PurePosixPath

import pandas as pd

from audit.core.protocols import TASKS
from audit.errors import InputError, UsageError
from audit.manifest import ATTR_PREFIX, Roles, build_manifest, closest, normalize_missing, validate_manifest
from audit.readers import Reader, ReadOptions, ReadResult, register
from audit.readers.layout import as_list as _as_list
from audit.readers.layout import find_subdir as _find_subdir
from audit.readers.layout import refuse_mostly_unmatched as _refuse_mostly_unmatched

__all__ = ["RecipeReader", "load_recipe", "find_recipe", "list_recipes", "recipe_dirs", "read_recipe"]

_TOP_KEYS = {"dataset", "domains", "protocol", "roles", "values", "bins", "parts", "reader"}
_PART_KEYS = {
    "format", "subdir", "optional", "set", "layout", "pattern", "image_dir", "mask_dir", "image_pattern",
    "mask_pattern", "tables", "join", "path", "mask_path", "split_lists", "roles", "name",
}
_TABLE_KEYS = {"file", "sep", "skiprows", "header", "columns", "index_name", "optional"}
_FORMATS = ("imagefolder", "pattern", "segdir", "table")
_ROLE_NAMES = ("label", "domain", "split", "group", "mask")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def recipe_dirs() -> list[Path]:
    """Folders searched for recipes by bare name: ./datasets, the repository's datasets/, the package's _recipes/."""
    here = Path(__file__).resolve().parent.parent  # audit/
    dirs = [Path.cwd() / "datasets", here.parent / "datasets", here / "_recipes"]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def list_recipes() -> dict[str, Path]:
    """Every recipe found by bare name: stem -> path (earlier folders win)."""
    out: dict[str, Path] = {}
    for d in recipe_dirs():
        for p in sorted(d.glob("*.toml")):
            out.setdefault(p.stem, p)
    return out


def find_recipe(name: str | Path) -> Path:
    """A recipe path from a path or a bare name (``pacs``, ``office-home``); clear error listing the known ones."""
    p = Path(name)
    if p.is_file():
        return p
    if p.suffix == ".toml" and (len(p.parts) > 1 or p.is_absolute()):
        raise UsageError(f"recipe file {p} does not exist")
    known = list_recipes()
    key = _norm(p.stem if p.suffix == ".toml" else str(name))
    for stem, path in known.items():
        if _norm(stem) == key:
            return path
    best = closest(str(name), list(known))
    hint = f" (did you mean {best!r}?)" if best else ""
    avail = ", ".join(sorted(known)) or "none found"
    raise UsageError(f"no recipe {str(name)!r}{hint}; known recipes: {avail}")


def load_recipe(path: str | Path) -> dict:
    """Parse and check a recipe; return it with ``parts`` always a list and ``path`` set."""
    path = find_recipe(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"recipe {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise UsageError(f"cannot read recipe {path}: {e.strerror or e}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise UsageError(f"recipe {path}: unknown section(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(_TOP_KEYS))}")
    if "parts" in data and "reader" in data:
        raise UsageError(f"recipe {path}: give either [reader] or [[parts]], not both")
    parts = data.get("parts") or ([data["reader"]] if "reader" in data else [])
    if not parts:
        raise UsageError(f"recipe {path}: no [reader] or [[parts]] section")
    for i, part in enumerate(parts):
        bad = set(part) - _PART_KEYS
        if bad:
            raise UsageError(f"recipe {path}: part {i + 1}: unknown key(s) {', '.join(sorted(bad))}")
        fmt = part.get("format")
        if fmt not in _FORMATS:
            raise UsageError(f"recipe {path}: part {i + 1}: format must be one of {', '.join(_FORMATS)}, not {fmt!r}")
        if fmt == "table" and not part.get("tables"):
            raise UsageError(f"recipe {path}: part {i + 1}: a table part needs tables = [{{file = ...}}]")
        if fmt == "table" and not part.get("path"):
            raise UsageError(f"recipe {path}: part {i + 1}: a table part needs path = '...{{column}}...'")
        if fmt == "pattern" and not part.get("pattern"):
            raise UsageError(f"recipe {path}: part {i + 1}: a pattern part needs pattern = '...'")
        for t in part.get("tables", []):
            bad = set(t) - _TABLE_KEYS
            if bad:
                raise UsageError(f"recipe {path}: part {i + 1}: unknown table key(s) {', '.join(sorted(bad))}")
    data["parts"] = parts
    data.pop("reader", None)
    data["path"] = str(Path(path).resolve())
    ds = data.setdefault("dataset", {})
    ds.setdefault("name", Path(path).stem)
    task = ds.get("task", "classify")
    if task not in TASKS:
        raise UsageError(f"recipe {path}: dataset.task must be classify or segment, not {task!r}")
    return data


def _merge_roles(recipe_roles: dict, part_roles: dict, cli: Roles) -> Roles:
    r = {**recipe_roles, **part_roles}
    attrs = list(r.get("attrs", []))
    out = Roles(
        label=r.get("label"), domain=r.get("domain"), split=r.get("split"), group=r.get("group"),
        mask=r.get("mask"), attrs=attrs,
    )
    for role in _ROLE_NAMES:
        v = getattr(cli, role)
        if v is not None:
            setattr(out, role, v)
    for a in cli.attrs:
        if a not in out.attrs:
            out.attrs.append(a)
    return out


def _cli_roles_given(cli: Roles) -> bool:
    return any(getattr(cli, r) is not None for r in _ROLE_NAMES) or bool(cli.attrs)


def _read_one_table(folder: Path, spec: dict) -> pd.DataFrame | None:
    from audit.readers.table import read_table_file

    files = _as_list(spec.get("file"))
    path = next((folder / f for f in files if (folder / f).is_file()), None)
    if path is None:
        if spec.get("optional"):
            return None
        raise InputError(f"no table {' or '.join(str(folder / f) for f in files)}")
    sep = spec.get("sep")
    plain = sep is None and spec.get("columns") is None and spec.get("skiprows") is None and spec.get("header", True)
    if plain or (path.suffix.lower() in (".csv", ".parquet", ".jsonl") and path.suffix != Path(files[0]).suffix):
        # a candidate of another format than the first (Kaggle's list_attr_celeba.csv for the .txt): a
        # self-describing table with a header row, read as such; the parse settings belong to the first format
        df = read_table_file(path)
    else:
        kw: dict = {"dtype": str, "keep_default_na": False, "encoding": "utf-8-sig"}
        kw["sep"] = r"\s+" if sep in (None, "whitespace") else sep
        if spec.get("skiprows"):
            kw["skiprows"] = int(spec["skiprows"])
        if spec.get("columns"):
            kw["header"] = None
            kw["names"] = list(spec["columns"])
        elif spec.get("header", True) is False:
            kw["header"] = None
        try:
            df = pd.read_csv(path, **kw)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"cannot read table {path}: {msg}") from None
        if spec.get("index_name") and not isinstance(df.index, pd.RangeIndex):
            # a header one field shorter than the rows (CelebA's list_attr_celeba.txt): pandas made the
            # first field the index; give it a name
            df = df.reset_index(names=spec["index_name"])
    df.columns = [str(c).strip() for c in df.columns]
    return df


_FIELD_RE = re.compile(r"\{([^{}]+)\}")
_TEMPLATE_SAMPLE = 50


def _format_paths(df: pd.DataFrame, template: str) -> pd.Series:
    cols = _FIELD_RE.findall(template)
    for c in cols:
        if c not in df.columns:
            best = closest(c, [str(x) for x in df.columns])
            hint = f" (did you mean {best!r}?)" if best else ""
            raise InputError(f"path template {template!r}: no column {c!r}{hint}")
    out = []
    for row in df[cols].astype("object").itertuples(index=False, name=None):
        vals = dict(zip(cols, row, strict=True))
        if any(v is None or (isinstance(v, float) and v != v) or v == "" for v in vals.values()):
            out.append(None)
            continue
        out.append(_FIELD_RE.sub(lambda m, vals=vals: str(vals[m.group(1)]).strip(), template))
    return pd.Series(out, index=df.index, dtype="object")


def _read_table_part(folder: Path, part: dict, roles: Roles, notes: list[str]) -> pd.DataFrame:
    read = [(s, _read_one_table(folder, s)) for s in part["tables"]]
    tables = [t for _s, t in read if t is not None]
    missing = [s for s, t in read if t is None]
    if not tables:
        raise InputError(f"none of the tables of this recipe exist under {folder}")
    df = tables[0]
    key = part.get("join")
    for t in tables[1:]:
        if key is None:
            raise UsageError("a table part with several tables needs join = 'key column'")
        for side in (df, t):
            if key not in side.columns:
                raise InputError(f"join column {key!r} missing from a table (columns: {', '.join(side.columns[:20])})")
        n0 = len(df)
        t = t.drop_duplicates(subset=[key])
        df = df.merge(t, on=key, how="left", suffixes=("", "_dup"))
        if len(df) != n0:  # pragma: no cover - guarded by drop_duplicates
            raise InputError(f"joining on {key!r} changed the number of rows")
    templates = _as_list(part["path"])
    paths = _format_paths(df, templates[0])
    if len(templates) > 1:
        # the template under which most of a sample of rows exist (a few failed downloads must not pick the wrong one)
        best_hits = -1
        for tpl in templates:
            cand = _format_paths(df, tpl)
            sample = cand.dropna().iloc[:_TEMPLATE_SAMPLE]
            hits = sum((folder / str(p)).exists() for p in sample)
            if hits > best_hits:
                paths, best_hits = cand, hits
    if paths.isna().any():
        n = int(paths.isna().sum())
        raise InputError(f"{n} rows of the table have an empty value in the path template {templates[0]!r}")
    df = df.copy()
    df["__path__"] = paths
    r = Roles(filepath="__path__", **{k: getattr(roles, k) for k in _ROLE_NAMES}, attrs=list(roles.attrs))
    if missing:
        # an optional table is absent: the roles it would have provided are left unset, and the notes say so
        what = " or ".join(str(f) for f in _as_list(missing[0].get("file")))
        for k in _ROLE_NAMES:
            col = getattr(r, k)
            if col and col not in df.columns:
                setattr(r, k, None)
                notes.append(f"{k} not set: its column {col!r} comes from an optional table that is absent ({what})")
        gone = [a for a in r.attrs if a not in df.columns]
        if gone:
            r.attrs = [a for a in r.attrs if a in df.columns]
            notes.append(f"attributes {', '.join(gone)} not set: "
                         f"they come from an optional table that is absent ({what})")
    if part.get("mask_path"):
        df["__mask__"] = _format_paths(df, part["mask_path"])
        r.mask = "__mask__"
    return build_manifest(df, r, source=str(folder))


def _prefix(df: pd.DataFrame, rel: str) -> pd.DataFrame:
    if rel in ("", "."):
        return df
    df = df.copy()
    for col in ("sample_id", "filepath", "mask"):
        if col in df.columns:
            df[col] = df[col].map(lambda p: None if p is None or p is pd.NA else f"{rel}/{p}").astype("string")
    return df


def _read_part(root: Path, part: dict, recipe: dict, cli: Roles, notes: list[str], idx: int) -> pd.DataFrame | None:
    folder = _find_subdir(root, part, idx)
    if folder is None:
        notes.append(f"part {part.get('name', idx + 1)}: none of {_as_list(part.get('subdir'))} exists under {root}; "
                     "skipped")
        return None
    try:
        df, part_notes = _read_part_frame(folder, part, recipe, cli, notes)
    except InputError as e:
        if not part.get("optional"):
            raise
        notes.append(f"part {part.get('name', idx + 1)} skipped: {e}")
        return None
    df = df.drop(columns=["group"]) if "group" in df.columns and (df["group"] == df["sample_id"]).all() else df
    rel = folder.relative_to(root).as_posix() if folder != root else "."
    where = f" ({rel})" if rel != "." else ""
    notes.extend(f"{n}{where}" for n in part_notes)
    for spec in part.get("split_lists", []):
        _apply_split_list(df, folder, spec, notes)
    for col, val in part.get("set", {}).items():
        name = col if col in _ROLE_NAMES or col.startswith(ATTR_PREFIX) else ATTR_PREFIX + col
        df[name] = pd.Series([str(val)] * len(df), dtype="string")
    return _prefix(df, rel)


def _read_part_frame(folder: Path, part: dict, recipe: dict, cli: Roles,
                     notes: list[str]) -> tuple[pd.DataFrame, list[str]]:
    from audit.readers.imagefolder import ImageFolderReader
    from audit.readers.pattern import compile_pattern, read_pattern
    from audit.readers.segdir import read_segdir

    fmt = part["format"]
    roles = _merge_roles(recipe.get("roles", {}), part.get("roles", {}), cli)
    if fmt == "imagefolder":
        res = ImageFolderReader().read(folder, ReadOptions(layout=part.get("layout")))
        df, part_notes = res.manifest, res.notes
    elif fmt == "pattern":
        got = read_pattern(folder, compile_pattern(part["pattern"]), roles)
        _refuse_mostly_unmatched(folder, got)
        df, part_notes = validate_manifest(got.frame, source=str(folder)), got.notes
    elif fmt == "segdir":
        df, part_notes, _ = read_segdir(
            folder, image_dir=part.get("image_dir"), mask_dir=part.get("mask_dir"),
            image_pattern=part.get("image_pattern"), mask_pattern=part.get("mask_pattern"),
            layout=part.get("layout"), roles=roles,
        )
    else:
        df, part_notes = _read_table_part(folder, part, roles, notes), []
    return df, part_notes


def _apply_split_list(df: pd.DataFrame, folder: Path, spec: dict, notes: list[str]) -> None:
    """Set ``split`` from text files listing relative paths (first token of each line); first list wins.

    ``spec["file"]`` is a glob, or a list of globs tried in order (the first that matches is used)."""
    patterns = _as_list(spec["file"])
    files: list[str] = []
    for pat in patterns:
        files = sorted(_glob.glob(str(folder / pat)))
        if files:
            break
    if not files:
        shown = " or ".join(repr(p) for p in patterns)
        notes.append(f"no split list matches {shown} under {folder}; split {spec['split']!r} not set from it")
        return
    listed: set[str] = set()
    for f in files:
        for line in Path(f).read_text(encoding="utf-8", errors="replace").splitlines():
            tok = line.strip().split()
            if tok:
                listed.add(PurePosixPath(tok[0]).as_posix())  # PurePosixPath drops a leading "./"
    if "split" not in df.columns:
        df["split"] = pd.Series([pd.NA] * len(df), dtype="string")
    hit = df["filepath"].isin(listed)
    free = df["split"].isna()
    df.loc[hit & free, "split"] = spec["split"]
    unknown = len(listed - set(df["filepath"].tolist()))
    if unknown:
        notes.append(f"{unknown} paths listed in {', '.join(repr(p) for p in patterns)} "
                     "are not among the images found; ignored")


def _column_name(key: str, columns) -> str:
    if key in columns:
        return key
    if ATTR_PREFIX + key in columns:
        return ATTR_PREFIX + key
    return key if key in _ROLE_NAMES else ATTR_PREFIX + key


def _apply_values(df: pd.DataFrame, values: dict, notes: list[str]) -> None:
    for key, mapping in values.items():
        col = _column_name(key, df.columns)
        if col not in df.columns:
            continue
        m = {str(k): str(v) for k, v in mapping.items()}
        s = df[col]
        present = s.notna()
        unmapped = present & ~s.isin(list(m))
        if unmapped.any():
            ex = s[unmapped].drop_duplicates().head(3).tolist()
            notes.append(
                f"{int(unmapped.sum())} values of {col} are not in the recipe's value map; kept as they are "
                f"(e.g. {', '.join(map(repr, ex))})"
            )
        df[col] = normalize_missing(s.astype("object").map(lambda v, m=m: m.get(v, v) if v is not pd.NA else v))


def _bin_labels(edges: list[float]) -> list[str]:
    out = []
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        last = i == len(edges) - 2
        if float(a).is_integer() and float(b).is_integer():
            out.append(f"{int(a)}-{int(b) if last else int(b) - 1}")
        else:
            out.append(f"[{a}, {b}{']' if last else ')'}")
    return out


def _apply_bins(df: pd.DataFrame, bins: dict, notes: list[str]) -> None:
    for key, spec in bins.items():
        col = _column_name(key, df.columns)
        if col not in df.columns:
            continue
        edges = [float(e) for e in spec["edges"]]
        if len(edges) < 2 or sorted(edges) != edges:
            raise UsageError(f"recipe bins.{key}: edges must be at least two increasing numbers")
        labels = list(spec.get("labels") or _bin_labels(edges))
        if len(labels) != len(edges) - 1:
            raise UsageError(f"recipe bins.{key}: {len(edges) - 1} bins but {len(labels)} labels")
        raw = df[col]
        num = pd.to_numeric(raw.astype("object"), errors="coerce")
        cut = pd.cut(num, bins=edges, labels=labels, right=False, include_lowest=True)
        # the last bin includes its right edge
        cut = cut.astype("object").where(~(num == edges[-1]), labels[-1])
        lost = raw.notna() & pd.Series(cut, index=df.index).isna()
        if lost.any():
            ex = raw[lost].drop_duplicates().head(3).tolist()
            notes.append(
                f"{int(lost.sum())} values of {col} are not numbers within [{edges[0]:g}, {edges[-1]:g}]; "
                f"left missing (e.g. {', '.join(map(repr, ex))})"
            )
        df[col] = normalize_missing(pd.Series(cut, index=df.index).astype("object"))


def read_recipe(recipe: dict | str | Path, root: Path, *, roles: Roles | None = None) -> ReadResult:
    """Build the manifest of the dataset at ``root`` following ``recipe`` (a loaded dict, a path or a name)."""
    if not isinstance(recipe, dict):
        recipe = load_recipe(recipe)
    cli = roles or Roles()
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root {root} is not a folder")
    if _cli_roles_given(cli) and all(p["format"] in ("imagefolder",) for p in recipe["parts"]):
        raise UsageError(
            f"recipe {recipe['dataset']['name']!r} reads roles from folders; "
            "role flags (--label, --attr...) do not apply"
        )
    notes: list[str] = []
    frames = [df for i, p in enumerate(recipe["parts"])
              if (df := _read_part(root, p, recipe, cli, notes, i)) is not None]
    if not frames:
        raise InputError(f"no part of recipe {recipe['dataset']['name']!r} was found under {root}")
    df = pd.concat(frames, ignore_index=True)
    for c in df.columns:
        if (c in ("sample_id", "filepath", "mask", "label", "domain", "split", "group")
                or str(c).startswith(ATTR_PREFIX)):
            df[c] = normalize_missing(df[c])
    # a role the command line gave to another column keeps that column's raw values
    rroles = recipe.get("roles", {})
    overridden = {r for r in _ROLE_NAMES if getattr(cli, r) is not None and getattr(cli, r) != rroles.get(r)}
    _apply_bins(df, {k: v for k, v in recipe.get("bins", {}).items() if k not in overridden}, notes)
    _apply_values(df, {k: v for k, v in recipe.get("values", {}).items() if k not in overridden}, notes)
    names = recipe.get("domains", {}).get("names")
    if names and "domain" in df.columns:
        odd = df["domain"].notna() & ~df["domain"].isin([str(n) for n in names])
        if odd.any():
            ex = df.loc[odd, "domain"].drop_duplicates().head(3).tolist()
            notes.append(f"{int(odd.sum())} samples have a domain the recipe does not list "
                         f"(e.g. {', '.join(map(repr, ex))})")
        absent = [n for n in names if n not in set(df["domain"].dropna())]
        if absent:
            notes.append(f"domains listed by the recipe but absent under {root}: {', '.join(map(str, absent))}")
    manifest = validate_manifest(df, source=str(root))
    ds = recipe["dataset"]
    eff_roles = _merge_roles(recipe.get("roles", {}), {}, cli).as_dict()
    info = {
        "name": ds.get("name"),
        "path": recipe.get("path"),
        **{k: ds[k] for k in ("title", "url", "citation", "license", "notes") if k in ds},
        "protocol": recipe.get("protocol", {}),
        "domains": recipe.get("domains", {}),
        "roles": {k: v for k, v in eff_roles.items() if v},
    }
    extra: dict = {"recipe": info}
    if "mask_values" in ds:
        extra["mask_values"] = {str(k): int(v) for k, v in ds["mask_values"].items()}
    return ReadResult(
        manifest=manifest, root=root.resolve(), format="recipe", notes=notes, task=ds.get("task"),
        classes=list(ds["classes"]) if ds.get("classes") else None, extra=extra,
    )


@register
class RecipeReader(Reader):
    name = "recipe"
    description = "a public dataset read with a datasets/*.toml recipe: --recipe pacs --root /data/PACS"

    def detect(self, source: Path, options: ReadOptions) -> bool:
        return options.recipe is not None or (source.is_file() and source.suffix.lower() == ".toml")

    def read(self, source: Path | None, options: ReadOptions) -> ReadResult:
        recipe = options.recipe
        root = options.root
        if recipe is None:
            if source is None or Path(source).suffix.lower() != ".toml":
                raise UsageError("--format recipe needs --recipe NAME_OR_FILE (e.g. --recipe pacs)")
            recipe = source
        elif root is None:
            root = source
        if root is None:
            raise UsageError(f"--recipe {recipe} needs the dataset folder: give it as DATA or with --root")
        return read_recipe(load_recipe(recipe), Path(root), roles=options.roles)
