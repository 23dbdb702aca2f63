"""HEIF/HEIC and AVIF images: read through pillow-heif when it is installed, otherwise said so, not claimed.

Pillow decodes AVIF itself when its wheel is built with libavif (``PIL.features.check("avif")``); HEIF/HEIC needs
the pillow-heif plugin. :func:`enable` registers pillow-heif's opener once per process; importing :mod:`audit.io`
calls it, so the profile's worker processes (which import :mod:`audit.io.decode`) can read HEIF too. Without the
plugin such files are profiled as unreadable (``not_an_image``) and :func:`unreadable_note` says what to install.
:data:`HEIF_EXTENSIONS` and :data:`AVIF_EXTENSIONS` are the one list of these suffixes:
``audit.readers.IMAGE_EXTENSIONS`` includes them, so folders and tables of such files are always read (decoded or
noted), never skipped.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

__all__ = ["HEIF_EXTENSIONS", "AVIF_EXTENSIONS", "enable", "heif_readable", "avif_readable", "unreadable_note"]

HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
AVIF_EXTENSIONS = frozenset({".avif"})
INSTALL = "pip install pillow-heif (or 'imgaudit[heif]')"


@functools.cache
def enable() -> bool:
    """Register pillow-heif's HEIF opener with Pillow (once); False when pillow-heif is not installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def heif_readable() -> bool:
    """Whether this process can decode HEIF/HEIC files (pillow-heif installed and registered)."""
    return enable()


@functools.cache
def avif_readable() -> bool:
    """Whether Pillow can decode AVIF files here (its own AVIF plugin, or pillow-heif's where it has one)."""
    try:
        from PIL import features

        if features.check("avif"):
            return True
    except Exception:  # an old Pillow that does not know the feature name
        pass
    try:
        from pillow_heif import register_avif_opener  # older pillow-heif releases only
    except ImportError:
        return False
    register_avif_opener()
    return True


def _suffix(p: object) -> str:
    return os.path.splitext(str(p))[1].lower()


def unreadable_note(paths: Iterable[object]) -> str | None:
    """One line for the dataset notes when some of ``paths`` are HEIF or AVIF files this install cannot decode."""
    if hasattr(paths, "str"):  # a pandas Series (a manifest column): vectorized, millions of rows are common
        low = paths.astype(str).str.lower()
        n_heif = int(low.str.endswith(tuple(HEIF_EXTENSIONS)).sum())
        n_avif = int(low.str.endswith(tuple(AVIF_EXTENSIONS)).sum())
    else:
        suffixes = [_suffix(p) for p in paths]
        n_heif = sum(s in HEIF_EXTENSIONS for s in suffixes)
        n_avif = sum(s in AVIF_EXTENSIONS for s in suffixes)
    parts = []
    if n_heif and not heif_readable():
        parts.append(f"{n_heif} HEIF/HEIC file(s) cannot be decoded without pillow-heif: {INSTALL}")
    if n_avif and not avif_readable():
        parts.append(f"{n_avif} AVIF file(s) cannot be decoded: this Pillow has no AVIF support ({INSTALL} "
                     "or a Pillow wheel built with libavif)")
    if not parts:
        return None
    return "; ".join(parts) + "; until then they are profiled as unreadable files"
