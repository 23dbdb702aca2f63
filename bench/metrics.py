"""Benchmark: per-group metrics with bootstrap intervals, ours vs fairlearn's MetricFrame, same data, same run.

    .venv/bin/python bench/metrics.py                      # 1,000,000 predictions, 200 groups, 1,000 resamples
    .venv/bin/python bench/metrics.py --n 100000 --fairlearn-boot 5   # quicker

Both compute accuracy and balanced accuracy per group with 95% bootstrap intervals. fairlearn resamples rows;
ours does the same when every row is its own cluster (the manifest's default ``group``), so the two procedures
are the same statistics. fairlearn runs ``--fairlearn-boot`` resamples and its time is extrapolated linearly to
``--n-boot`` (its cost is the resampling loop). A second line times ours with real clusters (``--clusters``),
which fairlearn cannot do, and ``--with-probs`` adds ECE, Brier and NLL (continuous statistics). Peak memory
of our computation is measured with tracemalloc in a separate, untimed repetition.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
import tracemalloc

import numpy as np


def make_data(n: int, groups: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    yt = rng.integers(0, classes, n)
    acc = 0.6 + 0.3 * (g % 7) / 6  # groups differ in accuracy
    right = rng.random(n) < acc
    yp = np.where(right, yt, (yt + rng.integers(1, classes, n)) % classes)
    names = np.array([f"g{i:03d}" for i in range(groups)], dtype=object)
    return yt, yp, names[g], rng


def ours(yt, yp, sens, *, n_boot, clusters=None, probs=None, metrics=("accuracy", "balanced_accuracy")):
    from audit.metrics import group_report

    return group_report(
        y_true=yt,
        y_pred=yp,
        sensitive=sens,
        metrics=list(metrics),
        clusters=clusters,
        n_boot=n_boot,
        y_prob=probs,
        classes=[str(i) for i in range(int(max(yt.max(), yp.max())) + 1)] if probs is not None else None,
    )


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def peak_mb(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--fairlearn-boot", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=50_000, help="clusters for the clustered run (0 to skip)")
    ap.add_argument("--with-probs", action="store_true", help="also time ECE/Brier/NLL (continuous statistics)")
    ap.add_argument("--skip-fairlearn", action="store_true")
    args = ap.parse_args(argv)

    import os

    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    yt, yp, sens, rng = make_data(args.n, args.groups, args.classes)
    print(f"data: {args.n:,} predictions, {args.groups} groups, {args.classes} classes; {args.n_boot:,} resamples")

    # warm-up (imports, first-call overheads) on a small slice
    ours(yt[:1000], yp[:1000], sens[:1000], n_boot=10)
    t_ours, rep = timed(lambda: ours(yt, yp, sens, n_boot=args.n_boot))
    mem = peak_mb(lambda: ours(yt, yp, sens, n_boot=args.n_boot))
    worst = rep.worst("accuracy")
    print(
        f"ours (row bootstrap)      : {t_ours:8.2f} s for {args.n_boot} resamples; peak traced memory {mem:,.0f} MiB; "
        f"worst group {worst['group']} acc {worst['value']:.4f} [{worst['ci_low']:.4f}, {worst['ci_high']:.4f}]"
    )

    if args.clusters:
        cl = rng.integers(0, args.clusters, args.n)
        t_cl, _ = timed(lambda: ours(yt, yp, sens, n_boot=args.n_boot, clusters=cl))
        mem_cl = peak_mb(lambda: ours(yt, yp, sens, n_boot=args.n_boot, clusters=cl))
        print(
            f"ours (cluster bootstrap)  : {t_cl:8.2f} s ({args.clusters:,} clusters); "
            f"peak traced memory {mem_cl:,.0f} MiB"
        )

    if args.with_probs:
        probs = rng.dirichlet(np.ones(args.classes), args.n)
        t_p, _ = timed(lambda: ours(yt, yp, sens, n_boot=args.n_boot, probs=probs, metrics=("ece", "brier", "nll")))
        print(f"ours (ECE, Brier, NLL)    : {t_p:8.2f} s (row bootstrap; continuous statistics do not collapse)")

    if not args.skip_fairlearn:
        import pandas as pd
        from fairlearn.metrics import MetricFrame
        from sklearn.metrics import accuracy_score, balanced_accuracy_score

        def fl(n_boot):
            return MetricFrame(metrics={"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score},
                               y_true=yt, y_pred=yp, sensitive_features=pd.Series(sens, name="g"),
                               n_boot=n_boot, ci_quantiles=[0.025, 0.975] if n_boot else None, random_state=0)

        t0, mf0 = timed(lambda: fl(None))
        t_fl, mf = timed(lambda: fl(args.fairlearn_boot))
        per = (t_fl - t0) / args.fairlearn_boot
        extrap = t0 + per * args.n_boot
        diff = np.abs(
            mf0.by_group["accuracy"].to_numpy(float) - rep.by_group.loc[mf0.by_group.index, "accuracy"].to_numpy(float)
        ).max()
        print(
            f"fairlearn MetricFrame     : {t0:8.2f} s without bootstrap, "
            f"{t_fl:.2f} s with n_boot={args.fairlearn_boot} "
            f"({per:.2f} s per resample) -> {extrap:,.0f} s extrapolated to {args.n_boot} resamples"
        )
        print(f"speed-up (row bootstrap)  : {extrap / t_ours:,.0f}x   (point estimates agree to {diff:.1e})")
    print(f"process peak RSS          : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
