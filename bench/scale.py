"""Scale benchmark: local vs Ray throughput, and time/peak memory of every stage at 10k / 100k / 1M manifest rows.

Printed in one run, on this machine:

1. **local vs Ray (2 workers), same files**: the profile's image scan (:func:`audit.profile.scan.scan_items`,
   2 worker processes vs a 2-CPU local Ray cluster running the Ray Data pipeline) and model inference
   (decode + predict: the local engine's decode-once cache + :func:`audit.train.trainer.predict` in this process
   with 2 threads vs :func:`audit.train.ray_infer.predict_paths` on 2 single-threaded Ray actors). Alternating,
   best of ``--rounds``.
2. **large manifests**: a synthetic dataset of N rows whose images are a few hundred tiny PNGs referenced many
   times, taken through each step in its own fresh process so that the peak resident memory (``ru_maxrss``)
   belongs to that step alone (the process's import baseline is printed too):

   * ``ingest``    - read the table, build and validate the manifest, check every path, fingerprint, write;
   * ``profile``   - profile aggregation on the manifest columns (distribution, associations);
   * ``neardup``   - near-duplicate search over N 64-bit perceptual hashes with the multi-index
     (:func:`audit.profile.neardup.hamming_pairs`, radius 6);
   * ``metrics``   - the metrics stage on N synthetic predictions (lodo, 4 held-out domains, 10 classes);
   * ``dashboard`` - what the dashboard loads (:mod:`audit.views`): overview, findings, distribution bars,
     group bars, image-statistic histogram by domain, duplicate pairs, broken files, failure gallery.

Usage::

    python bench/scale.py [--sizes 10000,100000,1000000] [--images 2000] [--rounds 2] [--n-boot 200]
    python bench/scale.py --step metrics --n 100000 --work DIR      # one step (what the driver runs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `python bench/scale.py` puts bench/ first on sys.path, where bench/profile.py would shadow the stdlib `profile`
# that cProfile (imported by torch._dynamo) needs
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

STEPS = ("ingest", "profile", "neardup", "metrics", "dashboard")
DOMAINS = ("north", "south", "east", "west")
CLASSES = [str(c) for c in range(10)]
ROLES = {"filepath": "path", "label": "digit", "domain": "site", "split": "split", "group": "writer",
         "attrs": ["background", "ink"]}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM: per address space, unlike ru_maxrss it is not
    inherited from the parent across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------- synthetic data
def tiny_images(folder: Path, k: int = 256, side: int = 16, seed: int = 0) -> list[str]:
    """``k`` tiny PNGs (relative paths under ``folder``) that a large manifest references many times."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rels = []
    for i in range(k):
        rel = f"img/{i // 100:02d}/{i:04d}.png"
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(p)
        rels.append(rel)
    return rels


def synth_table(n: int, rels: list[str], seed: int = 0) -> pd.DataFrame:
    """A user table of ``n`` rows: imbalanced labels, 4 domains, a label-tied attribute, missing values."""
    rng = np.random.default_rng(seed)
    label = rng.choice(10, size=n, p=np.r_[np.full(8, 0.11), 0.08, 0.04])
    site = rng.choice(len(DOMAINS), size=n, p=[0.4, 0.3, 0.2, 0.1])
    bg = np.where(rng.random(n) < np.where(label < 5, 0.8, 0.2), "warm", "cool").astype(object)
    bg[rng.random(n) < 0.01] = None  # missing stays missing
    return pd.DataFrame({
        "path": np.asarray(rels, dtype=object)[np.arange(n) % len(rels)],
        "id": [f"s{i:07d}" for i in range(n)],
        "digit": label.astype(str),
        "site": np.asarray(DOMAINS, dtype=object)[site],
        "split": np.where(rng.random(n) < 0.8, "train", "test"),
        "writer": [f"w{i:06d}" for i in rng.integers(0, max(1, n // 5), size=n)],
        "background": bg,
        "ink": np.where(rng.random(n) < 0.5, "black", "navy"),
    })


def synth_images(man: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """An ``images.parquet`` for the manifest (no decoding): statistics, hashes, 0.1% unreadable, near twins."""
    rng = np.random.default_rng(seed)
    n = len(man)
    phash = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=n, dtype=np.int64)
    twins = rng.choice(n, size=min(n // 100, 10_000) * 2, replace=False).reshape(-1, 2)
    flips = np.left_shift(np.int64(1), rng.integers(0, 63, size=len(twins)).astype(np.int64))
    phash[twins[:, 1]] = phash[twins[:, 0]] ^ flips  # planted near duplicates (1 bit apart)
    bad = rng.random(n) < 0.001
    df = pd.DataFrame({
        "sample_id": man["sample_id"].astype("string"),
        "filepath": man["filepath"].astype("string"),
        "readable": ~bad,
        "error": pd.array(np.where(bad, "truncated", None), dtype="string"),
        "format": pd.array(["PNG"] * n, dtype="string"),
        "width": pd.array(np.full(n, 16), dtype="Int64"),
        "height": pd.array(np.full(n, 16), dtype="Int64"),
        "bytes": pd.array(rng.integers(300, 900, n), dtype="Int64"),
        "brightness": rng.normal(0.5, 0.1, n),
        "contrast": rng.normal(0.2, 0.05, n),
        "sharpness": rng.gamma(2.0, 1.0, n),
        "phash": pd.array(phash, dtype="Int64"),
    })
    for c in ("brightness", "contrast", "sharpness"):
        df.loc[bad, c] = np.nan
    return df


def synth_predictions(man: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One lodo test row per sample: held out when its fold holds out its domain (75%), else in-domain."""
    rng = np.random.default_rng(seed)
    n = len(man)
    dom = man["domain"].astype(str).to_numpy()
    held = rng.random(n) < 0.75
    other = np.asarray(DOMAINS, dtype=object)[(np.searchsorted(DOMAINS, dom, sorter=np.argsort(DOMAINS)) +
                                               rng.integers(1, len(DOMAINS), n)) % len(DOMAINS)]
    fold_dom = np.where(held, dom, other)
    y = man["label"].astype(str).to_numpy()
    p_ok = np.where(held, 0.7, 0.9) - np.where(man["attr.background"].astype(str).to_numpy() == "cool", 0.1, 0.0)
    right = rng.random(n) < p_ok
    wrong = (y.astype(int) + rng.integers(1, 10, n)) % 10
    pred = np.where(right, y.astype(int), wrong)
    logits = rng.normal(0, 1, (n, 10))
    logits[np.arange(n), pred] += 3.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    train_domains = np.array(["|".join(d for d in sorted(DOMAINS) if d != f) for f in fold_dom], dtype=object)
    df = pd.DataFrame({
        "sample_id": man["sample_id"].astype("string"),
        "model": "small_cnn", "protocol": "lodo",
        "fold": pd.array(["holdout=" + f for f in fold_dom], dtype="string"),
        "seed": np.zeros(n, dtype=np.int64), "role": "test", "held_out": held,
        "train_domains": pd.array(train_domains, dtype="string"), "test_domain": pd.array(dom, dtype="string"),
        "y_true": pd.array(y, dtype="string"), "y_pred": pd.array(pred.astype(str), dtype="string"),
        "confidence": probs.max(1),
    })
    for j, c in enumerate(CLASSES):
        df[f"p_{c}"] = probs[:, j]
    for c in ("model", "protocol", "role"):
        df[c] = df[c].astype("string")
    return df


def prepare(work: Path, n: int, n_images: int = 256) -> None:
    """Write the synthetic input table and tiny images under ``work`` (not timed)."""
    work.mkdir(parents=True, exist_ok=True)
    rels = tiny_images(work / "data", k=n_images)
    synth_table(n, listing_paths(work / "data", rels, n)).to_parquet(work / "data" / "table.parquet", index=False)


def listing_paths(folder: Path, rels: list[str], n: int) -> list[str]:
    """``n`` distinct paths under ``folder``, hard links to the ``rels`` in turn: every row of the table names its
    own file (a file listed twice is one sample, evaluated once), while only ``len(rels)`` images are written."""
    import os

    out = []
    for i in range(n):
        rel = f"rows/{i // 10_000:03d}/{i:07d}.png"
        p = folder / rel
        if i % 10_000 == 0:
            p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            os.link(folder / rels[i % len(rels)], p)
        out.append(rel)
    return out


# ---------------------------------------------------------------------------------------------- the steps
def step(name: str, work: Path, *, n_boot: int) -> dict:
    """Run one step on the dataset under ``work``; returns seconds, peaks and a few result counts."""
    from audit.rundir import RunDir

    base = peak_rss_mb()
    run_path = work / "run"
    out: dict = {"step": name}
    t0 = time.perf_counter()
    if name == "ingest":
        from audit.ingest import ingest
        from audit.manifest import Roles
        from audit.readers import ReadOptions

        if run_path.exists():
            shutil.rmtree(run_path)
        opts = ReadOptions(roles=Roles(filepath=ROLES["filepath"], label=ROLES["label"], domain=ROLES["domain"],
                                       split=ROLES["split"], group=ROLES["group"], attrs=list(ROLES["attrs"]),
                                       sample_id="id"),
                           root=work / "data")
        run = ingest(work / "data" / "table.parquet", out=run_path, format="table", options=opts)
        run.unlock()
        out["rows"] = int(run.dataset["n"])
    elif name == "profile":
        from audit.profile import ProfileConfig, run_profile

        run = RunDir.open(run_path)
        findings = run_profile(run, ProfileConfig(checks=["distribution", "associations"], n_boot=n_boot))
        out["findings"] = len(findings)
        out["distribution_rows"] = len(run.read_table("profile/distribution.parquet"))
        # the images table the dashboard reads (synthetic: decoding 1M files is the scan benchmark's business)
        run.write_table("profile/images.parquet", synth_images(run.manifest()))
    elif name == "neardup":
        from audit.profile.neardup import hamming_pairs, plan_blocks

        run = RunDir.open(run_path)
        h = run.read_table("profile/images.parquet", columns=["phash"])["phash"].dropna().to_numpy(np.int64)
        i, j, d = hamming_pairs(h, 6)
        out["pairs"] = int(len(i))
        out["blocks"] = plan_blocks(len(h), 6)
        dups = pd.DataFrame({"a": run.manifest()["sample_id"].to_numpy()[i],
                             "b": run.manifest()["sample_id"].to_numpy()[j],
                             "kind": "near", "distance": d, "cross_split": False, "label_conflict": False})
        run.write_table("profile/duplicates.parquet", dups)
    elif name == "metrics":
        from audit.metrics import MetricsConfig, run_metrics

        run = RunDir.open(run_path)
        run.write_table("predictions.parquet", synth_predictions(run.manifest()))
        t0 = time.perf_counter()  # the predictions are input, not part of the stage
        run.lock()
        with run.stage("metrics"):
            findings = run_metrics(run, MetricsConfig(n_boot=n_boot))
        run.set_findings("metrics", findings)
        run.unlock()
        out["groups_rows"] = len(run.read_table("metrics/groups.parquet"))
        out["findings"] = len(findings)
    elif name == "dashboard":
        from audit import views

        run = RunDir.open(run_path)
        ov = views.overview(run)
        ff = views.findings_frame(run)
        dist = views.read(run, "profile/distribution.parquet")
        bars = views.distribution_bars(dist, "label")
        groups = views.read(run, "metrics/groups.parquet")
        gb = views.group_bars(groups, by="domain", metric="accuracy")
        hist = views.image_stat_histogram(run, stat="brightness", by="domain")
        dups, n_dups = views.duplicate_pairs(run)
        imgs = views.read(run, "profile/images.parquet", columns=["sample_id", "filepath", "readable", "error"])
        broken, n_broken = views.broken_files(imgs)
        gallery, n_wrong = views.failure_sample(run, group_col="attr.background", group_value="cool")
        out.update(findings=len(ff), bars=len(bars), group_bars=len(gb), hist_rows=len(hist), dup_pairs=n_dups,
                   broken=n_broken, wrong=n_wrong, gallery=len(gallery), headline=bool(ov))
    else:
        raise SystemExit(f"unknown step {name!r}")
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["baseline_rss_mb"] = round(base, 0)
    out["peak_rss_mb"] = round(peak_rss_mb(), 0)
    return out


# ---------------------------------------------------------------------------------------------- local vs Ray
def throughput(n_images: int, rounds: int, work: Path) -> list[dict]:
    """Image scan and inference img/s, local (2 processes / 2 threads) vs Ray (2 CPUs), same files."""
    import importlib.util

    import ray
    import torch

    spec = importlib.util.spec_from_file_location("bench_profile", Path(__file__).with_name("profile.py"))
    bench_profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_profile)  # bench/profile.py ("profile" itself is a stdlib module name)

    from audit.integrations.ray_engine import init_ray
    from audit.io.tensor_cache import build_cache
    from audit.profile.scan import scan_items
    from audit.train.models import build_model
    from audit.train.ray_infer import predict_paths
    from audit.train.trainer import BatchSource, FitConfig, predict

    paths = bench_profile.make_images(work / "jpeg", n_images, 128)  # crops of scikit-learn's sample photos
    items = [(p, None, None, None) for p in paths]
    chunk = int(np.clip(len(items) // 16, 16, 256))
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    init_ray()
    ray_start = time.perf_counter() - t0
    torch.manual_seed(0)
    model, _ = build_model("resnet18", 10, task="classify")
    cfg = FitConfig(task="classify", n_classes=10, epochs=1, batch_size=32, lr=1e-3)
    size = 64

    def scan_local():
        scan_items(items, max_pixels=10**8, workers=2, chunk_size=chunk, progress=False)

    def scan_ray():
        scan_items(items, max_pixels=10**8, workers=2, chunk_size=chunk, engine="ray", progress=False)

    def infer_local():
        torch.set_num_threads(2)
        cache = build_cache([Path(p) for p in paths], size=size, key="bench", workers=2, exif=True)
        src = BatchSource(cache.images, torch.zeros(len(paths), dtype=torch.long), torch.device("cpu"))
        return predict(model, src, np.arange(len(paths)), cfg).numpy()

    def infer_ray():
        return predict_paths(model, paths, task="classify", size=size, exif=True, batch_size=64, concurrency=2).numpy()

    t0 = time.perf_counter()  # what a local scan pays before its first image: starting its 2 worker processes
    scan_items(items[:32], max_pixels=10**8, workers=2, chunk_size=16, progress=False)
    pool_start = time.perf_counter() - t0
    a, b = infer_local(), infer_ray()  # warm-up, and the equality check
    max_diff = float(np.abs(a - b).max())
    rows = []
    for what, loc, rem in (("image scan", scan_local, scan_ray), ("inference resnet18 64px", infer_local, infer_ray)):
        best = {"local": 0.0, "ray": 0.0}
        for _ in range(rounds):
            for eng, fn in (("local", loc), ("ray", rem)):
                t0 = time.perf_counter()
                fn()
                best[eng] = max(best[eng], len(paths) / (time.perf_counter() - t0))
        rows.append({"work": what, "local": best["local"], "ray": best["ray"]})
    ray.shutdown()
    rows.append({"work": "max |p_local - p_ray|", "local": max_diff, "ray": max_diff})
    rows.append({"work": "ray cluster start (s)", "local": ray_start, "ray": ray_start})
    rows.append({"work": "local scan of 32 images (s)", "local": pool_start, "ray": pool_start})
    return rows


# ---------------------------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--images", type=int, default=2000, help="JPEGs for the local-vs-Ray throughput part (0: skip)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates in profile and metrics")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--step", help="run one step in this process (used by the driver)")
    ap.add_argument("--n", type=int)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the synthetic data")
    args = ap.parse_args(argv)

    if args.step:
        print(json.dumps(step(args.step, args.work, n_boot=args.n_boot)))
        return

    import torch

    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} usable CPUs, "
          f"Python {platform.python_version()}, "
          f"torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    root = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        if args.images:
            print(f"\n## local vs Ray, {args.images} JPEGs 128x128, 2 workers each, best of {args.rounds}")
            print(f"{'work':<28}{'local img/s':>14}{'ray img/s':>14}{'ray/local':>11}")
            for r in throughput(args.images, args.rounds, root / "tp"):
                if r["work"].startswith("max"):
                    print(f"{r['work']:<28}{r['local']:>14.2e}")
                elif r["work"].startswith("local scan of 32"):
                    print(f"{r['work']:<28}{r['local']:>14.1f}   "
                          "(mostly starting the local engine's 2 worker processes)")
                elif r["work"].startswith("ray cluster"):
                    print(f"{r['work']:<28}{r['local']:>14.1f}   (not in the Ray figures; the local engine's process"
                          " pool start is in its figures)")
                else:
                    print(f"{r['work']:<28}{r['local']:>14.0f}{r['ray']:>14.0f}{r['ray'] / r['local']:>11.2f}")
        steps = [s for s in args.steps.split(",") if s]
        print(f"\n## large manifests: each step in a fresh process (n_boot={args.n_boot})")
        print(f"{'rows':>10} {'step':<10}{'seconds':>9}{'peak MB':>9}{'base MB':>9}  result")
        for n in [int(s) for s in args.sizes.split(",") if s]:
            work = root / f"n{n}"
            t0 = time.perf_counter()
            prepare(work, n)
            print(f"{n:>10,} {'(prepare)':<10}{time.perf_counter() - t0:>9.1f}")
            for s in steps:
                cmd = [sys.executable, __file__, "--step", s, "--n", str(n), "--work", str(work),
                       "--n-boot", str(args.n_boot)]
                env = {**os.environ, "AUDIT_NO_PROGRESS": "1"}
                p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if p.returncode != 0:
                    print(f"{n:>10,} {s:<10} FAILED: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
                    break
                r = json.loads(p.stdout.strip().splitlines()[-1])
                extra = {k: v for k, v in r.items() if k not in ("step", "seconds", "peak_rss_mb", "baseline_rss_mb")}
                print(f"{n:>10,} {s:<10}{r['seconds']:>9.1f}{r['peak_rss_mb']:>9.0f}{r['baseline_rss_mb']:>9.0f}  "
                      f"{extra}", flush=True)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
