"""Messy-manifest benchmark: what the per-row checks (issue 23) cost on a large manifest, against ingest itself.

A synthetic table of N rows (default 1M), every row its own file on disk (hard links to a few dozen tiny PNGs, so the
files are real and distinct without writing N images), with 0.1% of each problem mixed in: a ``../`` path, a
missing file, a folder, an unsupported extension, an empty path and a second listing of a file. Both variants
run the whole ingest (:func:`audit.pipeline.ingest`: read the table, build and validate the manifest, check the
rows, fingerprint, write ``manifest.parquet`` and ``run.json``), alternating, best of ``--rounds``:

* ``with checks``: as shipped. :func:`audit.manifest.flag_rows` does one ``lstat`` per row (plus a ``realpath``
  per folder and per symlink) and hands the stats to the fingerprint, which used to stat every file itself.
* ``checks off``: ``flag_rows`` replaced by a no-op, so the fingerprint stats every file as before; the lexical
  checks in ``validate_manifest`` (ids for empty paths, ``path#2`` for listings) are timed on their own.

The cost of the checks is ``with checks - checks off`` plus the lexical part; the ratio to the ingest time is the
figure of merit (target < 5%).

Usage::

    python bench/manifest.py [--n 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PROBLEMS = ("outside", "missing", "folder", "extension", "empty", "listed_twice")


def prepare(work: Path, n: int, seed: int = 0) -> tuple[Path, dict[str, int]]:
    """``work/ds/table.parquet`` with ``n`` rows over distinct files (hard links), 0.1% of each problem."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ds = work / "ds"
    src = work / "src"
    src.mkdir(parents=True)
    n_src = max(4, n // 50_000 + 1)  # ext4 allows 65,000 hard links per file
    for k in range(n_src):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(src / f"{k}.png")
    (src / "notes.txt").write_text("x")
    paths = np.empty(n, dtype=object)
    kind = rng.choice(len(PROBLEMS) + 1, size=n, p=[0.001] * len(PROBLEMS) + [1 - 0.001 * len(PROBLEMS)])
    counts = {p: int((kind == i).sum()) for i, p in enumerate(PROBLEMS)}
    for i in range(n):
        d = ds / "img" / f"{i // 1000:04d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        k = kind[i]
        rel = f"img/{i // 1000:04d}/{i:07d}.png"
        if k == 0:
            paths[i] = f"../src/{i % 4}.png"
        elif k == 1:
            paths[i] = f"img/{i // 1000:04d}/gone_{i}.png"
        elif k == 2:
            paths[i] = f"img/{i // 1000:04d}"
        elif k == 3:
            os.link(src / "notes.txt", ds / f"{rel}.txt")
            paths[i] = f"{rel}.txt"
        elif k == 4:
            paths[i] = None
        elif k == 5 and i > 0 and paths[i - 1] is not None:
            paths[i] = paths[i - 1]
        else:
            os.link(src / f"{i % n_src}.png", ds / rel)
            paths[i] = rel
    table = pd.DataFrame({
        "path": paths,
        "label": rng.choice(["cat", "dog", "bird"], size=n),
        "site": rng.choice(["north", "south", "east", "west"], size=n),
        "split": np.where(rng.random(n) < 0.8, "train", "test"),
    })
    table.to_parquet(ds / "table.parquet", index=False)
    return ds / "table.parquet", counts


def ingest_once(table: Path, out: Path, *, checks: bool) -> dict:
    import audit.readers as readers
    from audit.ingest import ingest
    from audit.manifest import Roles
    from audit.readers import ReadOptions

    shutil.rmtree(out, ignore_errors=True)
    real = readers.flag_rows
    spent = {"flag_rows": 0.0}

    def timed(*a, **k):
        t = time.perf_counter()
        r = real(*a, **k)
        spent["flag_rows"] += time.perf_counter() - t
        return r

    readers.flag_rows = timed if checks else (lambda df, root, **k: (df, None))
    try:
        opts = ReadOptions(roles=Roles(filepath="path", label="label", domain="site", split="split"))
        t0 = time.perf_counter()
        run = ingest(table, out=out, format="table", options=opts)
        seconds = time.perf_counter() - t0
        run.unlock()
    finally:
        readers.flag_rows = real
    man = run.manifest()
    flagged = man["flag"].value_counts().to_dict() if "flag" in man.columns else {}
    return {"seconds": seconds, "flag_rows": spent["flag_rows"], "rows": len(man), "flagged": flagged}


def lexical_seconds(table: Path) -> float:
    """The per-row work validate_manifest does for the checks (ids for empty paths, path keys, listings, unique
    ids) on the same manifest; its one hashing pass replaces the duplicate-id pass that used to refuse the table."""
    from audit.manifest import _listings, _unique_ids, normalize_missing

    paths = normalize_missing(pd.read_parquet(table, columns=["path"])["path"])
    t0 = time.perf_counter()
    no_path = paths.isna().to_numpy()
    sid = paths.copy()
    sid[no_path] = [f"(row {i + 1}: empty path)" for i in np.flatnonzero(no_path)]
    _key, listing, dup_sid = _listings(paths, sid, ids_from_paths=True)
    _unique_ids(sid, dup_sid)
    return time.perf_counter() - t0


def bare_stat_seconds(table: Path, root: Path) -> float:
    """A bare loop of one os.stat per row (what the fingerprint needs), for comparison with flag_rows."""
    paths = pd.read_parquet(table, columns=["path"])["path"].tolist()
    t0 = time.perf_counter()
    for p in paths:
        if not isinstance(p, str):  # an empty path (None or NaN from parquet)
            continue
        try:
            os.stat(os.path.join(root, p))
        except OSError:
            pass
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("AUDIT_NO_PROGRESS", "1")
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} usable CPUs, Python "
          f"{platform.python_version()}, pandas {pd.__version__}")
    work = Path(tempfile.mkdtemp(prefix="manifest-bench-"))
    try:
        t0 = time.perf_counter()
        table, counts = prepare(work, args.n)
        print(f"prepared {args.n:,} rows ({', '.join(f'{k} {v}' for k, v in counts.items())}) in "
              f"{time.perf_counter() - t0:.1f} s")
        best: dict[str, dict] = {}
        for r in range(args.rounds):
            for variant in ("checks off", "with checks"):
                res = ingest_once(table, work / "run", checks=variant == "with checks")
                print(f"round {r + 1}  {variant:<12} ingest {res['seconds']:7.2f} s"
                      f"   flag_rows {res['flag_rows']:6.2f} s"
                      f"   rows {res['rows']:,}   flagged {res['flagged']}", flush=True)
                if variant not in best or res["seconds"] < best[variant]["seconds"]:
                    best[variant] = res
        lex = min(lexical_seconds(table) for _ in range(args.rounds))
        bare = min(bare_stat_seconds(table, table.parent) for _ in range(args.rounds))
        on, off = best["with checks"]["seconds"], best["checks off"]["seconds"]
        cost = max(0.0, on - off) + lex
        print(f"\n{'rows':>10} {'ingest, checks off':>19} {'ingest, with checks':>20} {'lexical':>8} "
              f"{'checks cost':>12} {'cost / ingest':>14}")
        print(f"{args.n:>10,} {off:>17.2f} s {on:>18.2f} s {lex:>6.2f} s {cost:>10.2f} s {cost / on:>13.1%}")
        print(f"(flag_rows itself, including the one stat per row the fingerprint now reuses: "
              f"{best['with checks']['flag_rows']:.2f} s; a bare os.stat loop over the same rows: {bare:.2f} s; "
              f"ingest with checks - checks off: {on - off:+.2f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
