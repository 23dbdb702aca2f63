"""Readers: turn a dataset on disk (folder, table, pattern, recipe, FiftyOne) into a canonical manifest.

A registry of :class:`Reader` subclasses, one module each. ``read_dataset(source, format="auto")`` picks
the first reader whose :meth:`Reader.detect` accepts the source.

Adding a reader::

    @register
    class MyReader(Reader):
        name = "mine"
        def detect(self, source, options): ...
        def read(self, source, options) -> ReadResult: ...
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from audit.errors import InputError, UsageError
from audit.io.heif import AVIF_EXTENSIONS, HEIF_EXTENSIONS
from audit.manifest import Roles, flag_rows

__all__ = [
    "IMAGE_EXTENSIONS",
    "ReadOptions",
    "ReadResult",
    "Reader",
    "READERS",
    "register",
    "read_dataset",
    "available_formats",
]

# HEIF/HEIC and AVIF are listed whether or not this install can decode them: a folder or table of them is read, and
# without pillow-heif (or a Pillow with AVIF) the files are profiled as unreadable with a note saying what to install
# (audit.io.heif.unreadable_note), never skipped silently.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
) | HEIF_EXTENSIONS | AVIF_EXTENSIONS
TABLE_EXTENSIONS = frozenset({".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json"})


@dataclass
class ReadOptions:
    """Everything a reader may need; each reader uses the parts that concern it."""

    roles: Roles = field(default_factory=Roles)
    root: Path | None = None  # dataset root for tables whose paths are relative to another folder
    layout: str | None = None  # imagefolder: "label", "domain/label", "label/domain", ...
    pattern: str | None = None  # pattern reader: regex with named groups or a {field} template
    recipe: Path | None = None  # recipe reader: datasets/<name>.toml
    image_dir: str | None = None  # segdir reader
    mask_dir: str | None = None  # segdir reader
    dataset_name: str | None = None  # fiftyone reader
    allow_outside_root: bool = False
    follow_symlinks: bool = True
    strict: bool = False  # any flagged row is an InputError listing them all (checked by the pipeline's ingest)


@dataclass
class ReadResult:
    """A manifest plus where its paths are rooted and what the reader noticed."""

    manifest: pd.DataFrame
    root: Path
    format: str
    notes: list[str] = field(default_factory=list)
    task: str | None = None  # "classify" | "segment"; inferred when None
    classes: list[str] | None = None  # segmentation class names by index, when known
    extra: dict = field(default_factory=dict)
    file_stats: Any = None  # per row (size, mtime_ns) of the image file, from flag_rows (reused by the fingerprint)


class Reader:
    """Base class of readers."""

    name: str = ""
    description: str = ""

    def detect(self, source: Path, options: ReadOptions) -> bool:  # pragma: no cover - interface
        return False

    def read(self, source: Path, options: ReadOptions) -> ReadResult:  # pragma: no cover - interface
        raise NotImplementedError


READERS: dict[str, Reader] = {}
# Detection order for --format auto: the most specific first.
_AUTO_ORDER = ["recipe", "fiftyone", "table", "segdir", "pattern", "imagefolder"]
_MODULES = ["imagefolder", "table", "pattern", "segdir", "recipe", "fiftyone"]


def register(cls: type[Reader]) -> type[Reader]:
    """Class decorator adding a reader to :data:`READERS`."""
    READERS[cls.name] = cls()
    return cls


def _load_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(f"audit.readers.{mod}")
        except ModuleNotFoundError as e:  # a reader module not written yet, or its optional dep missing
            if e.name and e.name.startswith("audit.readers"):
                continue
            raise


def available_formats() -> list[str]:
    _load_all()
    return sorted(READERS)


def read_dataset(source: Path | str | None, *, format: str = "auto", options: ReadOptions | None = None) -> ReadResult:
    """Read ``source`` into a :class:`ReadResult` with a validated manifest.

    Raises :class:`InputError` / :class:`UsageError` with a one-line message on any problem.
    """
    _load_all()
    options = options or ReadOptions()
    src = Path(source) if source is not None else None
    if format == "auto":
        if options.recipe is not None:
            format = "recipe"
        elif options.dataset_name is not None:
            format = "fiftyone"
        else:
            if src is None:
                raise UsageError("give a DATA path (a folder or a table), --recipe, or --dataset")
            if not src.exists():
                raise InputError(f"{src} does not exist")
            for name in _AUTO_ORDER:
                r = READERS.get(name)
                if r is not None and r.detect(src, options):
                    format = name
                    break
            else:
                raise InputError(
                    f"cannot tell what {src} is; pass --format ({', '.join(sorted(READERS))})"
                )
    if format not in READERS:
        raise UsageError(f"unknown --format {format!r}; choose one of {', '.join(sorted(READERS))}")
    if src is not None and format not in ("fiftyone",) and not src.exists():
        raise InputError(f"{src} does not exist")
    result = READERS[format].read(src, options)
    # Per-row problems are flags, never a refusal of the whole dataset (see audit.manifest.flag_rows).
    result.manifest, result.file_stats = flag_rows(result.manifest, result.root,
                                                   allow_outside_root=options.allow_outside_root,
                                                   extensions=IMAGE_EXTENSIONS)
    if result.task is None:
        result.task = ("segment" if "mask" in result.manifest.columns and result.manifest["mask"].notna().any()
                       else "classify")
    return result
