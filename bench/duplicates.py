"""Near-duplicate benchmark: recall per transform, precision, hard negatives, and profile vs bare decode.

One generated set (:mod:`bench.dupdata`, numpy + PIL, deterministic in the seed):

* ``--scenes`` varied procedural scenes (gradient, texture, shapes, noise), each saved as JPEG q90;
* for ``--copies`` of them one transformed copy each, cycling through :data:`dupdata.TRANSFORMS`
  (crop up to 25%, rescale 0.5-2x, JPEG q40, brightness / contrast +-15%, horizontal flip, rotation 2-5 degrees,
  crop + rescale + JPEG 60): the positives;
* for ``--lookalikes`` of them a similar scene (same background, palette and texture kind, shapes moved): hard
  negatives;
* ``--textures`` pairs of different scenes on one periodic texture (the same stripes or checker, other colours
  and shapes): hard negatives of the kind that paired 328 unrelated scenes of a 100,000-image set;
* ``--fundus`` homogeneous fundus-like images (same circular layout and colours, a different vessel tree):
  hard negatives of the kind that defeats a global hash.

``--photos DIR`` takes the scenes from a folder of real photos instead (every ``.jpg``/``.jpeg``/``.png`` under it,
sorted, re-saved as JPEG q90; no look-alikes, which need a generated layout): different photos are the hard
negatives, the same transforms make the copies. Nothing from DIR is kept.

The whole profile (``audit.profile.profile_frame``: scan + every check) runs on it; a pair counts as found when
``profile/duplicates.parquet`` holds it as ``near`` (or ``exact``). Then, on the same files and workers, a bare
``Image.open(path).convert("RGB")`` loop and the profile's scan alone, side by side.

Usage::

    python bench/duplicates.py [--scenes 1200] [--copies 400] [--lookalikes 200] [--textures 100] [--fundus 200]
                               [--workers 2] [--sizes 192,256,320] [--photos DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile import bare_loop, profile_scan  # noqa: E402  (bench/profile.py)

import dupdata  # noqa: E402


def build(root: Path, args) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the set; return the manifest and the planted pairs (a, b, kind, transform)."""
    rng = np.random.default_rng(args.seed)
    rows, truth = [], []
    names = list(dupdata.TRANSFORMS)
    (root / "img").mkdir(parents=True, exist_ok=True)

    def save(im, name):
        rel = f"img/{name}.jpg"
        im.save(root / rel, quality=90)
        rows.append({"sample_id": rel, "filepath": rel, "label": str(len(rows) % 5), "domain": f"d{len(rows) % 3}",
                     "split": ["train", "val", "test"][len(rows) % 3]})
        return rel

    photos = _photos(args.photos, args.scenes) if args.photos else None
    for k in range(len(photos) if photos else args.scenes):
        if photos:
            im, lay = photos[k], None
        else:
            w, h = (int(x) for x in rng.choice(args.sizes, 2))
            im, lay = dupdata.scene(rng, w, h)
        a = save(im, f"s{k:05d}")
        if k < args.copies:
            t = names[k % len(names)]
            b = save(dupdata.transform(im, t, rng), f"s{k:05d}_{t.replace('+', '_')}")
            truth.append((a, b, "copy", t))
        elif k < args.copies + args.lookalikes and lay is not None:
            b = save(dupdata.similar_scene(rng, lay, w, h), f"s{k:05d}_alike")
            truth.append((a, b, "lookalike", "similar scene"))
    for k in range(args.textures):
        w, h = (int(x) for x in rng.choice(args.sizes, 2))
        ta, tb = dupdata.texture_twins(rng, w, h)
        truth.append((save(ta, f"t{k:05d}_a"), save(tb, f"t{k:05d}_b"), "texture", "same periodic texture"))
    for k in range(args.fundus):
        save(dupdata.fundus(rng, int(np.median(args.sizes))), f"f{k:05d}")
    m = pd.DataFrame(rows)
    for c in m.columns:
        m[c] = m[c].astype("string")
    return m, pd.DataFrame(truth, columns=["a", "b", "kind", "transform"])


def _photos(folder: str, n: int) -> list:
    """The first ``n`` photos under ``folder`` (sorted), as RGB images."""
    from PIL import Image, ImageOps

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    if not files:
        raise SystemExit(f"no .jpg/.jpeg/.png under {folder}")
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(ImageOps.exif_transpose(im).convert("RGB"))
    return out


def score(dup: pd.DataFrame, truth: pd.DataFrame) -> dict:
    found = {frozenset(p) for p in zip(dup["a"], dup["b"], strict=True)}
    copies = truth[truth.kind == "copy"]
    hit = np.array([frozenset((a, b)) in found for a, b in zip(copies.a, copies.b, strict=True)])
    per = copies.assign(hit=hit).groupby("transform", sort=False)["hit"].agg(["sum", "count"])
    positives = {frozenset((a, b)) for a, b in zip(copies.a, copies.b, strict=True)}
    alike = {frozenset((a, b)) for a, b in zip(truth[truth.kind == "lookalike"].a, truth[truth.kind == "lookalike"].b,
                                                strict=True)}
    false = found - positives
    fundus_false = sum(1 for p in false if all(Path(x).name.startswith("f") for x in p))
    texture_false = sum(1 for p in false if all(Path(x).name.startswith("t") for x in p))
    tp = len(found & positives)
    return {"per_transform": per, "recall": tp / max(1, len(positives)), "tp": tp, "positives": len(positives),
            "found": len(found), "precision": tp / max(1, len(found)), "false": len(false),
            "lookalike_false": len(found & alike), "fundus_false": fundus_false, "texture_false": texture_false}


def _wilson(k: int, n: int) -> tuple[float, float]:
    from audit.core.intervals import wilson_interval

    lo, hi = wilson_interval(k, n)
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=1200)
    ap.add_argument("--copies", type=int, default=400)
    ap.add_argument("--lookalikes", type=int, default=200)
    ap.add_argument("--textures", type=int, default=100, help="pairs of scenes on one periodic texture")
    ap.add_argument("--fundus", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=None, help="near_dup_threshold (default: the profile's)")
    ap.add_argument("--sizes", default="192,256,320",
                    help="image sides to draw width and height from (e.g. 480,640,800 for photo-sized files)")
    ap.add_argument("--photos", default=None, help="a folder of real photos to use as the scenes")
    ap.add_argument("--show-false", action="store_true", help="list every false pair (basis, similarity, evidence)")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    from audit.profile import ProfileConfig, profile_frame

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        m, truth = build(root, args)
        alike = int((truth["kind"] == "lookalike").sum())
        print(f"built {len(m)} images ({int((truth['kind'] == 'copy').sum())} transformed copies, {alike} look-alikes, "
              f"{args.textures} pairs on one periodic texture, {args.fundus} fundus-like) "
              f"in {time.perf_counter() - t0:.1f}s")
        kw = {} if args.threshold is None else {"near_dup_threshold": args.threshold}
        cfg = ProfileConfig(seed=0, n_boot=50, workers=args.workers, checks=["images", "duplicates"], **kw)
        t0 = time.perf_counter()
        tables, _, status = profile_frame(m, root=root, config=cfg)
        t_prof = time.perf_counter() - t0
        dup = tables["duplicates"]
        s = score(dup, truth)
        paths = [str(root / p) for p in m["filepath"]]
        chunk = 64
        t_bare = bare_loop(paths, args.workers, chunk)
        t_scan = profile_scan(paths, args.workers, chunk)
    n = len(m)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; workers={args.workers}")
    print(f"\n{'transform':<22}{'found':>7}{'of':>5}{'recall':>9}  95% CI")
    for t, r in s["per_transform"].iterrows():
        lo, hi = _wilson(int(r["sum"]), int(r["count"]))
        print(f"{t:<22}{int(r['sum']):>7}{int(r['count']):>5}{r['sum'] / r['count']:>9.3f}  [{lo:.3f}, {hi:.3f}]")
    lo, hi = _wilson(s["tp"], s["positives"])
    print(f"{'all':<22}{s['tp']:>7}{s['positives']:>5}{s['recall']:>9.3f}  [{lo:.3f}, {hi:.3f}]")
    plo, phi = _wilson(s["tp"], s["found"])
    print(f"\nprecision {s['precision']:.4f} [{plo:.4f}, {phi:.4f}] ({s['found']} pairs reported, {s['false']} false); "
          f"false pairs among {int((truth['kind'] == 'lookalike').sum())} look-alikes: {s['lookalike_false']}; among "
          f"{2 * args.textures} images on shared periodic textures: {s['texture_false']}; among fundus-like images: "
          f"{s['fundus_false']}")
    if args.show_false:
        positives = {frozenset(p) for p in zip(truth.a, truth.b, strict=True) if p}
        kinds = {frozenset((a, b)): k for a, b, k in zip(truth.a, truth.b, truth.kind, strict=True)}
        for r in dup.itertuples():
            if frozenset((r.a, r.b)) not in positives or kinds.get(frozenset((r.a, r.b))) != "copy":
                print(f"  false: {r.a} {r.b}  {kinds.get(frozenset((r.a, r.b)), 'unplanted')}  basis={r.basis}  "
                      f"similarity={r.similarity:.3f}  evidence={r.evidence}  regions={r.regions}")
    info = status.get("duplicates", {})
    print(f"near-duplicate step: {info.get('seconds', float('nan')):.2f}s")
    print(f"\n{'step':<36}{'seconds':>9}{'img/s':>9}{'vs bare':>9}")
    for name, t in (("bare decode (PIL open+convert)", t_bare), ("profile scan (all per-image work)", t_scan),
                    ("whole profile (scan + duplicates)", t_prof)):
        print(f"{name:<36}{t:>9.2f}{n / t:>9.0f}{t_bare / t:>9.2f}")


if __name__ == "__main__":
    main()
