"""A generated image set with a planted spurious attribute, for the mitigation tests and benchmark.

Two classes (``h``: a faint horizontal bar, ``v``: a faint vertical bar) on a ``warm`` or ``cool`` background
(attribute ``bg``). In the training domains ``d1`` and ``d2`` the background agrees with the class in a share
``corr`` of the images (``h`` on warm, ``v`` on cool); in ``d3`` it is independent of the class (or reversed with
``reverse=True``). A model that reads the background instead of the bar does well in ``d1``/``d2`` and fails the
minority cells (``h`` on cool, ``v`` on warm), which is what worst-group accuracy over ``label x bg`` measures.
``duplicates=N`` adds N exact copies of training-domain images (``<site>/copy_*.png``), a share ``conflict`` of them
with the other label (label noise for ``dedup`` to remove); the other files do not change. Same seed -> identical
files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

__all__ = ["make_spurious", "ingest_spurious", "ROLES"]

ROLES = {"filepath": "path", "label": "shape", "domain": "site", "attrs": ["bg"]}
_BG = {"warm": (170, 120, 95), "cool": (95, 120, 170)}


def _image(label: str, bg: str, size: int, contrast: float, rng: np.random.Generator) -> np.ndarray:
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = np.asarray(_BG[bg], dtype=np.float32) + rng.normal(0, 12, 3)
    pos = int(rng.integers(2, size - 4))
    lo, hi = sorted(rng.integers(1, size - 1, 2))
    hi = max(hi, lo + size // 2)
    if label == "h":
        img[pos:pos + 2, lo:hi] += contrast
    else:
        img[lo:hi, pos:pos + 2] += contrast
    img += rng.normal(0, 14, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_spurious(out: Path, *, per_domain: int = 120, size: int = 16, corr: float = 0.95, contrast: float = 40.0,
                  reverse: bool = False, seed: int = 0, duplicates: int = 0, conflict: float = 0.5) -> pd.DataFrame:
    """Write PNGs under ``out`` and return the table (``path, shape, site, bg``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for site in ("d1", "d2", "d3"):
        agree = corr if site != "d3" else (1 - corr if reverse else 0.5)
        for i in range(per_domain):
            label = "h" if i % 2 == 0 else "v"
            aligned = rng.random() < agree
            bg = ("warm" if label == "h" else "cool") if aligned else ("cool" if label == "h" else "warm")
            rel = f"{site}/{site}_{i:04d}.png"
            (out / site).mkdir(exist_ok=True)
            Image.fromarray(_image(label, bg, size, contrast, rng)).save(out / rel)
            rows.append({"path": rel, "shape": label, "site": site, "bg": bg})
    if duplicates:
        rows += _copies(out, rows, duplicates, conflict, np.random.default_rng([seed, 1]))
    return pd.DataFrame(rows)


def _copies(out: Path, rows: list[dict], n: int, conflict: float, rng: np.random.Generator) -> list[dict]:
    """Byte-identical copies of ``n`` training-domain images; a share ``conflict`` relabelled."""
    train = [r for r in rows if r["site"] != "d3"]
    picks = rng.choice(len(train), size=min(n, len(train)), replace=False)
    extra = []
    for j, i in enumerate(sorted(picks)):
        src = train[int(i)]
        label = src["shape"]
        if j < round(conflict * len(picks)):
            label = "v" if label == "h" else "h"
        rel = f"{src['site']}/copy_{j:04d}.png"
        (out / rel).write_bytes((out / src["path"]).read_bytes())
        extra.append({**src, "path": rel, "shape": label})
    return extra


def ingest_spurious(data_dir: Path, run_dir: Path, **kwargs):
    """:func:`make_spurious` into ``data_dir``, ingested into a run directory ``run_dir`` (manifest + run.json)."""
    from audit.ingest import ingest
    from audit.manifest import Roles
    from audit.readers import ReadOptions

    table = make_spurious(data_dir, **kwargs)
    csv = Path(data_dir) / "labels.csv"
    table.to_csv(csv, index=False)
    opts = ReadOptions(roles=Roles(filepath="path", label="shape", domain="site", attrs=["bg"]), root=Path(data_dir))
    run = ingest(csv, out=Path(run_dir), format="table", options=opts, seed=0, command=["audit", "mitigate-bench"])
    run.unlock()
    return run
