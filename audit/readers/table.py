"""Tables: CSV / TSV / Parquet / JSON Lines, one row per sample, roles mapped with flags.

Paths in the table are relative to ``--root`` (default: the table's folder).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audit.errors import InputError
from audit.manifest import build_manifest
from audit.readers import TABLE_EXTENSIONS, Reader, ReadOptions, ReadResult, register


def read_table_file(path: Path) -> pd.DataFrame:
    """Read a table by extension, all columns as strings (no type guessing that loses ids like '007')."""
    ext = path.suffix.lower()
    try:
        if ext in (".csv", ".tsv"):
            sep = "\t" if ext == ".tsv" else ","
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            _check_unique_header(path, sep)
            return df
        if ext in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if ext in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, dtype=False)
        if ext == ".json":
            try:
                return pd.read_json(path, lines=True, dtype=False)
            except ValueError:
                return pd.read_json(path, dtype=False)
    except InputError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot read table {path}: {msg}") from None
    except Exception as e:  # pyarrow errors on damaged parquet
        raise InputError(f"cannot read table {path}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    raise InputError(f"{path}: unsupported table extension {ext!r} (csv, tsv, parquet, jsonl)")


def _check_unique_header(path: Path, sep: str) -> None:
    """pandas renames a repeated column (``label``, ``label.1``) silently: refuse it instead, naming the column."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f, delimiter=sep), [])
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            raise InputError(f"{path}: column {name!r} appears more than once in the header; rename or drop one")
        seen.add(name)


@register
class TableReader(Reader):
    name = "table"
    description = "a CSV / TSV / Parquet / JSON Lines table with --label/--domain/--attr... column flags"

    def detect(self, source: Path, options: ReadOptions) -> bool:
        return source.is_file() and source.suffix.lower() in TABLE_EXTENSIONS

    def read(self, source: Path, options: ReadOptions) -> ReadResult:
        table = read_table_file(Path(source))
        if len(table) == 0:
            raise InputError(f"the manifest is empty: no rows in {source}")
        manifest = build_manifest(table, options.roles, source=str(source))
        root = Path(options.root) if options.root else Path(source).parent
        return ReadResult(manifest=manifest, root=root.resolve(), format=self.name)
