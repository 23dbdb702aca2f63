"""Segmentation folders: an image folder and a mask folder, paired file by file.

``DATA/--image-dir`` (default ``images``) holds the images and ``DATA/--mask-dir`` (default ``masks``, else
``labels``, ``annotations``, ``gt``) the masks. They may be the same folder (CHASE_DB1 keeps
``Image_01L.jpg`` next to ``Image_01L_1stHO.png``): then files whose stem ends with a mask suffix are masks.

Pairing, by default: the path inside its folder without the extension, with a known mask suffix removed
(``_mask``, ``_segmentation``, ``_gt``, ``_label``, ``_1stHO``, ``_manual1``, ``_gtFine_labelIds``...); when
that pairs nothing, the bare stem. ``--pattern`` gives the pairing key explicitly: a ``{field}`` template or
regex (as for the pattern reader) with a ``key`` field, matched against both images and masks, e.g.
``{key}_{_}.{_}`` pairs DRIVE's ``21_training.tif`` with ``21_manual1.gif``. Its other fields (``domain``,
``split``, ``attr.*``) come from the image's path. Recipes may give different image and mask patterns.

Without a pattern, a sub-folder level of the image folder is the ``domain`` (``images/<site>/x.png``), or the
levels named by ``--layout`` (e.g. ``split/domain``).

Images without a mask are kept with ``mask`` missing; masks without an image are listed in the notes.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pandas as pd

from audit.errors import InputError, UsageError
from audit.manifest import Roles, validate_manifest
from audit.readers import IMAGE_EXTENSIONS, Reader, ReadOptions, ReadResult, register
from audit.readers.pattern import CompiledPattern, compile_pattern, fields_to_roles

__all__ = ["MASK_SUFFIXES", "MASK_DIR_NAMES", "SegDirReader", "read_segdir"]

MASK_SUFFIXES = (
    "_gtFine_labelTrainIds",
    "_gtFine_labelIds",
    "_gtCoarse_labelIds",
    "_segmentation",
    "_manual1",
    "_1stHO",
    "_2ndHO",
    "_masks",
    "_mask",
    "-mask",
    "_labels",
    "_label",
    "_annotation",
    "_seg",
    "_gt",
)
IMAGE_SUFFIXES = ("_leftImg8bit",)
MASK_DIR_NAMES = ("masks", "mask", "labels", "annotations", "gt", "ground_truth", "segmentations")
IMAGE_DIR_NAMES = ("images", "image", "imgs", "img")


def _files(folder: Path, follow_symlinks: bool) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=follow_symlinks):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if not fn.startswith(".") and Path(fn).suffix.lower() in IMAGE_EXTENSIONS:
                out.append(Path(os.path.relpath(os.path.join(dirpath, fn), folder)).as_posix())
    return sorted(out)


def _strip(stem: str, suffixes: tuple[str, ...]) -> str:
    for s in suffixes:
        if stem.endswith(s) and len(stem) > len(s):
            return stem[: -len(s)]
    return stem


def _is_mask_name(rel: str) -> bool:
    stem = PurePosixPath(rel).stem
    return any(stem.endswith(s) and len(stem) > len(s) for s in MASK_SUFFIXES)


def _default_key(rel: str, *, mask: bool, stem_only: bool) -> str:
    p = PurePosixPath(rel)
    stem = _strip(p.stem, MASK_SUFFIXES if mask else IMAGE_SUFFIXES)
    if stem_only:
        return stem
    return str(p.with_name(stem)) if str(p.parent) != "." else stem


def _pick_dir(base: Path, given: str | None, candidates: tuple[str, ...], what: str) -> Path:
    if given is not None:
        d = base / given
        if not d.is_dir():
            raise InputError(f"{what.replace('-', ' ')} {given!r}: no folder {d}")  # a flag or a recipe's key
        return d
    for c in candidates:
        if (base / c).is_dir():
            return base / c
    raise UsageError(
        f"no {what.replace('-', ' ')} under {base} (looked for {', '.join(candidates)}); pass --{what}"
    )


def read_segdir(
    root: Path,
    *,
    image_dir: str | None = None,
    mask_dir: str | None = None,
    image_pattern: str | None = None,
    mask_pattern: str | None = None,
    layout: str | None = None,
    roles: Roles | None = None,
    follow_symlinks: bool = True,
) -> tuple[pd.DataFrame, list[str], dict]:
    """Pair images with masks under ``root``; return the manifest (paths relative to ``root``), notes, extras."""
    roles = roles or Roles()
    root = Path(root)
    idir = _pick_dir(root, image_dir, IMAGE_DIR_NAMES, "image-dir")
    mdir = _pick_dir(root, mask_dir, MASK_DIR_NAMES, "mask-dir")
    ipat = compile_pattern(image_pattern) if image_pattern else None
    mpat = compile_pattern(mask_pattern) if mask_pattern else None
    for name, p in (("image", ipat), ("mask", mpat)):
        if p is not None and "key" not in p.fields:
            raise UsageError(f"the {name} pattern {p.text!r} needs a {{key}} field that pairs images with masks")
    notes: list[str] = []
    same = idir.resolve() == mdir.resolve()
    images, masks = _list_files(idir, mdir, same, ipat, mpat, follow_symlinks, notes)
    images, ikeys, mkeys, fields_df, mapping = _keys(images, masks, ipat, mpat, same, idir, roles, notes)
    df = _pair(images, masks, ikeys, mkeys, root, idir, mdir, notes)
    if fields_df is not None:
        for f, col in mapping.items():
            df[col] = fields_df[f].to_numpy()
    else:
        _folder_roles(df, images, layout, idir, notes)
    extras = {"image_dir": idir.relative_to(root).as_posix(), "mask_dir": mdir.relative_to(root).as_posix()}
    return df, notes, extras


def _list_files(idir: Path, mdir: Path, same: bool, ipat, mpat, follow_symlinks: bool,
                notes: list[str]) -> tuple[list[str], list[str]]:
    """Image and mask files (relative to their folders); one shared folder is split by the mask pattern/suffix."""
    all_images = _files(idir, follow_symlinks)
    all_masks = _files(mdir, follow_symlinks) if not same else list(all_images)
    own_mask_pattern = mpat is not None and (ipat is None or mpat.text != ipat.text)
    if same:
        # one folder: the mask pattern (or a mask suffix) says which files are masks
        masks = [f for f in all_masks if (mpat.match(f) is not None if own_mask_pattern else _is_mask_name(f))]
        mset = set(masks)
        images = [f for f in all_images if f not in mset]
    else:
        images, masks = all_images, all_masks
        if own_mask_pattern:
            # a mask folder often holds other renderings too (Cityscapes' _color, _instanceIds)
            masks = [f for f in all_masks if mpat.match(f) is not None]
            if len(masks) < len(all_masks):
                notes.append(
                    f"{len(all_masks) - len(masks)} files under {mdir.name}/ do not match the mask pattern "
                    f"{mpat.text!r}; not used as masks"
                )
    if not images:
        raise InputError(f"no image files under {idir}")
    return images, masks


def _key_of(pat: CompiledPattern | None, rel: str, *, mask: bool, stem_only: bool) -> str | None:
    if pat is None:
        return _default_key(rel, mask=mask, stem_only=stem_only)
    m = pat.match(rel)
    return None if m is None else m["key"]


def _keys(images, masks, ipat, mpat, same: bool, idir: Path, roles: Roles, notes: list[str]):
    """The pairing key of every image and mask (``{key}`` of the patterns, else the file stem), the pattern's other
    fields and their roles: ``(images, image keys, mask keys, fields or None, field -> column)``."""
    if ipat is None:
        ikeys = [_key_of(None, f, mask=False, stem_only=False) for f in images]
        mkeys = [_key_of(mpat, m, mask=True, stem_only=False) for m in masks]
        if mpat is None and not set(ikeys) & set(mkeys):
            ikeys = [_key_of(None, f, mask=False, stem_only=True) for f in images]
            mkeys = [_key_of(None, m, mask=True, stem_only=True) for m in masks]
        return images, ikeys, mkeys, None, {}
    mpat = mpat or ipat
    rows, bad = [], []
    for f in images:
        m = ipat.match(f)
        if m is None:
            bad.append(f)
        rows.append(m or dict.fromkeys(ipat.fields))
    if same:  # files of the shared folder that match neither pattern are not images
        images_kept = [f for f, r in zip(images, rows, strict=True) if r.get("key") is not None]
        if len(images_kept) < len(images):
            notes.append(
                f"{len(images) - len(images_kept)} files in {idir.name}/ match neither the image nor the mask "
                f"pattern; ignored (e.g. {', '.join(repr(b) for b in bad[:3])})"
            )
            rows = [r for r in rows if r.get("key") is not None]
            images = images_kept
    elif bad:
        notes.append(
            f"{len(bad)} of {len(images)} images do not match the image pattern {ipat.text!r}; kept without "
            f"a mask (e.g. {', '.join(repr(b) for b in bad[:3])})"
        )
    fields_df = pd.DataFrame(rows, columns=ipat.fields)
    extra_fields = [f for f in ipat.fields if f != "key"]
    mapping = fields_to_roles(extra_fields, roles, what="the image pattern") if extra_fields else {}
    mkeys = [_key_of(mpat, m, mask=True, stem_only=False) for m in masks]
    return images, fields_df["key"].tolist(), mkeys, fields_df, mapping


def _pair(images, masks, ikeys, mkeys, root: Path, idir: Path, mdir: Path, notes: list[str]) -> pd.DataFrame:
    """One manifest row per image with its mask (first in name order when several), notes on the unpaired."""
    by_key: dict[str, list[str]] = {}
    for m, k in zip(masks, mkeys, strict=True):
        if k is not None:
            by_key.setdefault(k, []).append(m)
    ambiguous = {k: v for k, v in by_key.items() if len(v) > 1}
    if ambiguous:
        k, v = next(iter(ambiguous.items()))
        notes.append(
            f"{len(ambiguous)} images have several candidate masks; the first in name order is used "
            f"(e.g. key {k!r}: {', '.join(v[:3])})"
        )
    mask_col, used = [], set()
    for k in ikeys:
        cand = by_key.get(k) if k is not None else None
        mask_col.append((mdir / cand[0]).relative_to(root).as_posix() if cand else None)
        if cand:
            used.add(cand[0])
    paths = [(idir / f).relative_to(root).as_posix() for f in images]
    df = pd.DataFrame({"sample_id": paths, "filepath": paths, "mask": mask_col})
    n_nomask = sum(m is None for m in mask_col)
    if n_nomask == len(images):
        raise InputError(
            f"no image under {idir} pairs with a mask under {mdir} (e.g. {images[0]!r} vs "
            f"{masks[0] if masks else 'no masks'!r}); give --pattern with a {{key}} field"
        )
    if n_nomask:
        ex = [f for f, m in zip(images, mask_col, strict=True) if m is None][:3]
        notes.append(
            f"{n_nomask} of {len(images)} images have no mask; kept with the mask missing "
            f"(e.g. {', '.join(repr(e) for e in ex)})"
        )
    in_ambiguous = {m for v in ambiguous.values() for m in v}
    orphans = [m for m in masks if m not in used and m not in in_ambiguous]
    if orphans:
        notes.append(
            f"{len(orphans)} masks under {mdir.name}/ have no image; not in the manifest "
            f"(e.g. {', '.join(repr(o) for o in orphans[:3])})"
        )
    return df


def _folder_roles(df: pd.DataFrame, images: list[str], layout: str | None, idir: Path, notes: list[str]) -> None:
    """Roles from the image folders (``--layout``; by default the first level is the domain)."""
    from audit.readers.imagefolder import parse_layout

    parents = [PurePosixPath(f).parts[:-1] for f in images]
    depth = max((len(p) for p in parents), default=0)
    levels = parse_layout(layout) if layout else (["domain"] + ["_"] * (depth - 1) if depth >= 1 else [])
    for i, lv in enumerate(levels):
        if lv == "_":
            continue
        df[lv] = [p[i] if len(p) > i else None for p in parents]
    short = sum(len(p) < len(levels) for p in parents)
    if short:
        notes.append(
            f"{short} of {len(images)} images sit fewer than {len(levels)} folders deep under {idir.name}/ "
            f"(layout {'/'.join(levels)}); their missing roles are left empty"
        )


@register
class SegDirReader(Reader):
    name = "segdir"
    description = "segmentation: an image folder + a mask folder paired by stem or --pattern '{key}_...'"

    def detect(self, source: Path, options: ReadOptions) -> bool:
        if not source.is_dir():
            return False
        if options.image_dir or options.mask_dir:
            return True
        has_img = any((source / d).is_dir() for d in IMAGE_DIR_NAMES)
        has_mask = any((source / d).is_dir() for d in MASK_DIR_NAMES)
        return has_img and has_mask

    def read(self, source: Path, options: ReadOptions) -> ReadResult:
        root = Path(source)
        if not root.is_dir():
            raise InputError(f"{root} is not a folder")
        df, notes, extras = read_segdir(
            root,
            image_dir=options.image_dir,
            mask_dir=options.mask_dir,
            image_pattern=options.pattern,
            mask_pattern=options.pattern,
            layout=options.layout,
            roles=options.roles,
            follow_symlinks=options.follow_symlinks,
        )
        return ReadResult(
            manifest=validate_manifest(df, source=str(root)), root=root.resolve(), format=self.name, notes=notes,
            task="segment", extra=extras,
        )
