"""Generate the bad-input corpus used by the robustness tests (small, deterministic, written to a temp dir).

``make_image_corpus(root)`` writes one file per case and returns ``{relative_path: expected}`` where expected is
``{"readable": bool, "error": str | None}`` (the error code profile/images.parquet must carry) plus notes.
Run as a script to write the corpus somewhere for a look: ``python tests/badcorpus.py /tmp/corpus``.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RGB = (np.arange(32 * 32 * 3, dtype=np.uint32).reshape(32, 32, 3) * 7 % 251).astype(np.uint8)


def _jpeg_bytes(arr=RGB, **kw) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr).save(b, format="JPEG", quality=90, **kw)
    return b.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (a decompression bomb); the pixel data is tiny/garbage."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def make_image_corpus(root: Path) -> dict[str, dict]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases: dict[str, dict] = {}

    def put(rel: str, data: bytes, readable: bool, error: str | None, note: str = "") -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        cases[rel] = {"readable": readable, "error": error, "note": note}

    def save(rel: str, im: Image.Image, fmt: str, note: str = "", **kw) -> None:
        b = io.BytesIO()
        im.save(b, format=fmt, **kw)
        put(rel, b.getvalue(), True, None, note)

    good = _jpeg_bytes()
    put("ok/good.jpg", good, True, None, "control")
    put("bad/truncated.jpg", good[: len(good) // 3], False, "truncated")
    put("bad/zero_byte.jpg", b"", False, "empty_file")
    put("bad/text_as_image.png", b"hello, I am text\n" * 4, False, "not_an_image")
    put("bad/html_as.jpg", b"<html><body><script>alert(1)</script></body></html>", False, "not_an_image")
    put("bad/bomb.png", _png_header_only(40000, 40000), False, "decompression_bomb", "1.6 gigapixels claimed")
    save("modes/gray16.png", Image.fromarray(np.arange(1024, dtype=np.uint16).reshape(32, 32) * 60), "PNG", "16-bit")
    save("modes/cmyk.jpg", Image.fromarray(RGB).convert("CMYK"), "JPEG", "CMYK")
    save("modes/palette.png", Image.fromarray(RGB).convert("P"), "PNG", "palette")
    save("modes/rgba.png", Image.fromarray(RGB).convert("RGBA"), "PNG", "RGBA")
    save("modes/gray.jpg", Image.fromarray(RGB).convert("L"), "JPEG", "grayscale")
    save("tiny/1x1.png", Image.new("RGB", (1, 1), (10, 20, 30)), "PNG", "1x1")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    save("exif/rotated.jpg", Image.fromarray(RGB), "JPEG", "EXIF orientation 6", exif=exif.tobytes())
    put("ext/png_named.jpg", _png(RGB), True, None, "extension does not match content")
    put("unicode dir/ïmage ünï 😀.jpg", good, True, None, "unicode and spaces")
    return cases


def _png(arr) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr).save(b, format="PNG")
    return b.getvalue()


if __name__ == "__main__":  # pragma: no cover
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_corpus")
    for rel, exp in make_image_corpus(out).items():
        print(f"{rel:40s} {exp}")
