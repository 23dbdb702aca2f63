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
from dataclasses import dataclass, field
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
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


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


# ------------------------------------------------------------------------------------------- whole datasets
HOSTILE_NAME = "<img src=x onerror=alert(1)>.jpg"
HOSTILE_LABEL = "<script>alert(2)</script>"
HOSTILE_ATTR = "<b onmouseover=alert(3)>bold</b>"


def _good(seed: int, side: int = 16, *, dark: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 120 if dark else 256, (side, side, 3), dtype=np.uint8)
    return _png(arr)


def _csv_field(v: str | None) -> str:
    if v is None:
        return ""
    if any(c in v for c in ',"\n') or v != v.strip():
        return '"' + v.replace('"', '""') + '"'
    return v


@dataclass
class BadDataset:
    """A classification dataset mixing good images with every bad case, described by a CSV table."""

    root: Path
    table: Path
    expected_error: dict[str, str | None]  # sample_id -> the error profile/images.parquet must carry
    labels: dict[str, str | None]
    domains: dict[str, str]
    flags: list[str] = field(default_factory=list)  # the CLI role flags for the table


def make_classify_dataset(root: Path, *, n_good: int = 12) -> BadDataset:
    """A small classification dataset for end-to-end runs: the image corpus, hostile names and values, a CSV with a
    UTF-8 BOM, quoted fields (commas, quotes), mixed types in a column, missing labels and a one-sample domain.

    Domains ``A`` and ``B`` get ``n_good`` good 16x16 images each (labels ``cat``/``dog``), domain ``solo`` one
    image. The bad files of :func:`make_image_corpus` sit in domain ``A`` and ``B``.
    """
    root = Path(root)
    img = root / "imgs"
    corpus = make_image_corpus(img)
    rows: list[dict] = []
    expected: dict[str, str | None] = {}
    for d, dom in enumerate(("A", "B")):
        for i in range(n_good):
            rel = f"imgs/{dom}/g{i:02d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(_good(100 * d + i, dark=(i % 2 == 1)))
            rows.append({"path": rel, "label": "dog" if i % 2 else "cat", "site": dom,
                         "bg": "grass" if i % 3 else "sand", "age": str(20 + i) if i % 4 else "unknown"})
    for k, (rel, exp) in enumerate(sorted(corpus.items())):
        rows.append({"path": f"imgs/{rel}", "label": "cat" if k % 2 else "dog", "site": "AB"[k % 2],
                     "bg": "grass", "age": f"{30 + k}.0" if k % 3 else str(30 + k)})
        expected[f"imgs/{rel}"] = exp["error"]
    (root / "imgs" / HOSTILE_NAME).write_bytes(_good(999))
    rows.append({"path": f"imgs/{HOSTILE_NAME}", "label": HOSTILE_LABEL, "site": "A", "bg": HOSTILE_ATTR, "age": "41"})
    (root / "imgs" / "solo.png").write_bytes(_good(555))
    rows.append({"path": "imgs/solo.png", "label": "cat", "site": "solo", "bg": "sand", "age": "50"})
    (root / "imgs" / "nolabel, \"quoted\".png").write_bytes(_good(777))
    rows.append({"path": 'imgs/nolabel, "quoted".png', "label": None, "site": "B", "bg": "sand, wet", "age": "NaN"})
    rows.append({"path": "imgs/not_there.jpg", "label": "dog", "site": "B", "bg": "grass", "age": "1"})
    expected["imgs/not_there.jpg"] = "missing_file"
    for r in rows:
        expected.setdefault(r["path"], None)
    cols = ["path", "label", "site", "bg", "age"]
    text = ",".join(cols) + "\r\n" + "".join(",".join(_csv_field(r[c]) for c in cols) + "\r\n" for r in rows)
    table = root / "table.csv"
    table.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return BadDataset(
        root=root, table=table, expected_error=expected, labels={r["path"]: r["label"] for r in rows},
        domains={r["path"]: r["site"] for r in rows},
        flags=["--path-col", "path", "--label", "label", "--domain", "site", "--attr", "bg", "--attr", "age"],
    )


MASK_RECIPE = """
[dataset]
name = "badmasks"
task = "segment"
classes = ["background", "object", "edge"]

[roles]
domain = "site"

[[parts]]
format = "table"
tables = [{file = "table.csv"}]
path = "{path}"
mask_path = "{mask}"
"""


def make_mask_dataset(root: Path) -> dict[str, str | None]:
    """A segmentation table (``root/table.csv``: path, mask, site) with good and bad masks, and a recipe
    (``root/badmasks.toml``) naming its three classes (0..2) so that wrong class values can be recognized.

    Returns ``{sample_id: expected mask_error}`` (None for a good mask).
    """
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "mask").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cases: dict[str, tuple[bytes, str | None]] = {}
    base = np.zeros((16, 16), np.uint8)
    base[4:10, 4:10] = 1
    base[12:, :] = 2
    for i in range(6):
        cases[f"good{i}"] = (_png(np.roll(base, i, axis=1)), None)
    cases["wrong_size"] = (_png(np.zeros((8, 12), np.uint8)), "size_mismatch")
    vals = base.copy()
    vals[0, 0] = 7
    cases["wrong_values"] = (_png(vals), "unexpected_classes")
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[base == 1] = (255, 0, 0)
    colour[base == 2] = (0, 128, 255)
    cases["rgb_encoded"] = (_png(colour), "color_mask")
    cases["truncated_mask"] = (_png(base)[:40], "truncated")
    cases["text_mask"] = (b"not a mask at all", "not_an_image")
    rows = ["path,mask,site"]
    expected: dict[str, str | None] = {}
    for k, (name, (mask_bytes, err)) in enumerate(sorted(cases.items())):
        (root / "img" / f"{name}.png").write_bytes(_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))
        (root / "mask" / f"{name}.png").write_bytes(mask_bytes)
        rows.append(f"img/{name}.png,mask/{name}.png,{'AB'[k % 2]}")
        expected[f"img/{name}.png"] = err
    (root / "img" / "no_mask.png").write_bytes(_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))
    rows.append("img/no_mask.png,,A")
    expected["img/no_mask.png"] = "missing_mask_path"  # no mask in the table: recorded, excluded from training
    (root / "table.csv").write_text("\n".join(rows) + "\n")
    (root / "badmasks.toml").write_text(MASK_RECIPE)
    return expected


def make_plain_dataset(root: Path, n: int = 200, *, side: int = 32, seed: int = 0) -> Path:
    """A clean classification table (``root/table.csv``: path, label, site) of ``n`` PNGs in two domains whose
    label shows in brightness (learnable), for fault tests that need a run to take a moment. Returns the table."""
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["path,label,site"]
    for i in range(n):
        lab = i % 2
        arr = rng.integers(0, 160, (side, side, 3), dtype=np.uint8) + np.uint8(80 * lab)
        (root / "img" / f"{i:05d}.png").write_bytes(_png(arr))
        lines.append(f"img/{i:05d}.png,{'ab'[lab]},{'PQ'[(i // 2) % 2]}")
    (root / "table.csv").write_text("\n".join(lines) + "\n")
    return root / "table.csv"


if __name__ == "__main__":  # pragma: no cover
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_corpus")
    for rel, exp in make_image_corpus(out / "images").items():
        print(f"{rel:40s} {exp}")
    ds = make_classify_dataset(out / "classify")
    print(f"classification dataset: {ds.table} ({len(ds.expected_error)} rows)")
    make_mask_dataset(out / "segment")
    print(f"segmentation dataset: {out / 'segment' / 'table.csv'}")
