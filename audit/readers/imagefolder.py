"""Image folders: ``root/label/file``, ``root/domain/label/file`` or any order given by ``--layout``.

``--layout`` names the folder levels from the root, separated by ``/``: roles (``label``, ``domain``,
``split``, ``group``) or ``attr.NAME``; ``_`` ignores a level. Without a layout, one level of folders
means ``label``, two levels mean ``domain/label``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from audit.errors import InputError, UsageError
from audit.manifest import ATTR_PREFIX, validate_manifest
from audit.readers import IMAGE_EXTENSIONS, Reader, ReadOptions, ReadResult, register

_ROLE_NAMES = {"label", "domain", "split", "group"}


def list_images(root: Path, *, follow_symlinks: bool = True, skipped: list[str] | None = None) -> list[str]:
    """Relative paths of image files under ``root``, sorted (so the manifest order is stable).

    Files that are not images by extension (hidden files aside) are appended to ``skipped`` when it is given, so
    the caller can say what was left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.startswith("."):
                continue
            if Path(fn).suffix.lower() in IMAGE_EXTENSIONS:
                out.append(os.path.relpath(os.path.join(dirpath, fn), root))
            elif skipped is not None:
                skipped.append(os.path.relpath(os.path.join(dirpath, fn), root))
    return sorted(out)


def skipped_note(skipped: list[str]) -> str | None:
    """A note naming the non-image files left out of the manifest (a few examples and the extensions)."""
    if not skipped:
        return None
    exts = sorted({Path(f).suffix.lower() or "(none)" for f in skipped})
    ex = ", ".join(sorted(skipped)[:3])
    return f"non-image files left out: {len(skipped)} ({', '.join(exts[:8])}; e.g. {ex})"


def parse_layout(layout: str) -> list[str]:
    levels = [p.strip() for p in layout.strip("/").split("/") if p.strip()]
    for lv in levels:
        if lv != "_" and lv not in _ROLE_NAMES and not lv.startswith(ATTR_PREFIX):
            raise UsageError(
                f"--layout level {lv!r} is not one of label, domain, split, group, attr.NAME or _ (ignored)"
            )
    return levels


@register
class ImageFolderReader(Reader):
    name = "imagefolder"
    description = "folders of images: root/label/file, root/domain/label/file, or --layout"

    def detect(self, source: Path, options: ReadOptions) -> bool:
        return source.is_dir()

    def read(self, source: Path, options: ReadOptions) -> ReadResult:
        root = Path(source)
        if not root.is_dir():
            raise InputError(f"{root} is not a folder")
        skipped: list[str] = []
        files = list_images(root, follow_symlinks=options.follow_symlinks, skipped=skipped)
        if not files:
            raise InputError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {root}")
        depth = pd.Series([len(Path(f).parts) - 1 for f in files])
        if options.layout:
            levels = parse_layout(options.layout)
        else:
            d = int(depth.mode().iloc[0])
            levels = {0: [], 1: ["label"], 2: ["domain", "label"]}.get(d)
            if levels is None:
                levels = ["domain", "label"] + ["_"] * (d - 2)
        notes = [n for n in (skipped_note(skipped),) if n]
        rows = []
        bad = 0
        for f in files:
            parts = Path(f).parts[:-1]
            row = {"sample_id": f, "filepath": f}
            if len(parts) < len(levels):
                bad += 1
            for lv, val in zip(levels, parts, strict=False):
                if lv != "_":
                    row[lv] = val
            rows.append(row)
        if bad:
            notes.append(
                f"{bad} files sit fewer than {len(levels)} folders deep (layout {'/'.join(levels)}); "
                "their missing roles are left empty"
            )
        df = pd.DataFrame(rows)
        for lv in levels:
            if lv != "_" and lv not in df.columns:
                df[lv] = pd.NA
        return ReadResult(manifest=validate_manifest(df, source=str(root)), root=root.resolve(), format=self.name,
                          notes=notes)
