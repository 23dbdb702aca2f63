"""Slice discovery benchmark (issue 20): how often clean data yields a confirmed slice, how well a planted slice
is recovered, and what a million predictions cost.

Synthetic embeddings (``tests/test_slices.py``'s generator, reproduced here): 4 classes as Gaussian clusters in
64 dimensions; the model errs on 10% of the rows at random. ``clean``: nothing else. ``hard class``: one class
errs at 30% (labeled structure: a confirmed slice there is real and its description names the label).
``planted``: a share of the rows (2%, 5%, 10%) shifted along one shared direction and erring at 60%; recovered =
a confirmed slice with precision >= 0.7 and recall >= 0.5 against the planted rows. Each setting runs over
``--seeds`` seeds through :func:`audit.slices.core.slice_fold` + :func:`~audit.slices.core.finalize` (the
whole discovery / confirmation path, no run directory). ``--scale N`` times one fold of N rows.

Usage::

    python bench/slices.py [--seeds 40] [--n 4000] [--scale 1000000] [--figure docs/img/slices-honesty.png]
    python bench/slices.py --seeds 0 --scale 1000000   # the timing only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from audit.core.intervals import wilson_interval
from audit.slices.core import SliceConfig, finalize, slice_fold


def make(n: int, seed: int, *, share: float = 0.0, hard_class: bool = False, d: int = 64):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    x = rng.normal(0, 3, (4, d))[labels] + rng.normal(0, 1, (n, d))
    planted = rng.random(n) < share
    x[planted] += rng.normal(0, 1, d) * 1.5
    p_err = np.where(planted, 0.6, np.where(hard_class & (labels == 0), 0.3, 0.1))
    correct = rng.random(n) > p_err
    conf = np.clip(np.where(correct, 0.9, 0.6) + rng.normal(0, 0.1, n), 0, 1)
    return x.astype(np.float32), correct, conf, labels, planted


def one(n: int, seed: int, **kw) -> dict:
    x, c, cf, lab, planted = make(n, seed, **kw)
    cfg = SliceConfig(seed=seed)
    _, cands = slice_fold(x, c, cf, lab, cfg, key=("bench", str(seed)))
    finalize(cands, cfg)
    conf = [k for k in cands if k.confirmed]
    out = {"candidates": len(cands), "confirmed": len(conf), "precision": 0.0, "recall": 0.0, "label0_share": []}
    for k in conf:
        out["label0_share"].append(float((lab[k.inside] == 0).mean()))
        if planted.any():
            tp = (k.inside & planted).sum()
            p, r = tp / k.inside.sum(), tp / planted.sum()
            if p + r > out["precision"] + out["recall"]:
                out["precision"], out["recall"] = float(p), float(r)
    return out


def honesty(seeds: int, n: int) -> dict:
    res = {}
    for name, kw in (("clean", {}), ("hard class", {"hard_class": True}), ("planted 2%", {"share": 0.02}),
                     ("planted 5%", {"share": 0.05}), ("planted 10%", {"share": 0.10})):
        runs = [one(n, s, **kw) for s in range(seeds)]
        any_conf = sum(r["confirmed"] > 0 for r in runs)
        lo, hi = wilson_interval(any_conf, seeds)
        row = {"seeds": seeds, "with_confirmed": any_conf, "rate": any_conf / seeds, "ci": [float(lo), float(hi)],
               "mean_confirmed": float(np.mean([r["confirmed"] for r in runs]))}
        if name.startswith("planted"):
            rec = sum(r["precision"] >= 0.7 and r["recall"] >= 0.5 for r in runs)
            rl, rh = wilson_interval(rec, seeds)
            row.update(recovered=rec, recovered_rate=rec / seeds, recovered_ci=[float(rl), float(rh)],
                       precision=float(np.mean([r["precision"] for r in runs])),
                       recall=float(np.mean([r["recall"] for r in runs])))
        if name == "hard class":
            shares = [s for r in runs for s in r["label0_share"]]
            row["confirmed_mostly_hard_class"] = float(np.mean([s >= 0.5 for s in shares])) if shares else None
        res[name] = row
        print(name, json.dumps(row))
    return res


def scale(n: int) -> dict:
    x, c, cf, lab, _ = make(n, 0, share=0.05)
    t0 = time.perf_counter()
    cfg = SliceConfig(seed=0)
    _, cands = slice_fold(x, c, cf, lab, cfg, key=("scale",))
    finalize(cands, cfg)
    dt = time.perf_counter() - t0
    row = {"rows": n, "dims": int(x.shape[1]), "seconds": round(dt, 2), "candidates": len(cands),
           "confirmed": int(sum(k.confirmed for k in cands))}
    print("scale", json.dumps(row))
    return row


def figure(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res)
    rate = [res[k]["rate"] for k in names]
    err = np.array([[res[k]["rate"] - res[k]["ci"][0], res[k]["ci"][1] - res[k]["rate"]] for k in names]).T
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].bar(names, rate, yerr=err, capsize=4, color=["#4a7", "#888", "#c75", "#c75", "#c75"])
    ax[0].set_ylabel("share of seeds with >= 1 confirmed slice")
    ax[0].set_ylim(0, 1.05)
    ax[0].set_title("confirmed slices (95% Wilson CI)")
    ax[0].tick_params(axis="x", rotation=20)
    pl = [k for k in names if k.startswith("planted")]
    xs = np.arange(len(pl))
    ax[1].bar(xs - 0.2, [res[k]["precision"] for k in pl], 0.4, label="precision (mean)")
    ax[1].bar(xs + 0.2, [res[k]["recall"] for k in pl], 0.4, label="recall (mean)")
    ax[1].plot(xs, [res[k]["recovered_rate"] for k in pl], "ko-", label="recovered (P>=.7, R>=.5)")
    ax[1].set_xticks(xs, pl)
    ax[1].set_ylim(0, 1.05)
    ax[1].set_title("planted slice recovery")
    ax[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("figure", path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40, help="seeds per setting (0: skip the honesty runs)")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--scale", type=int, default=0, help="also time one fold of this many rows")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}")
    res = {"honesty": honesty(a.seeds, a.n)} if a.seeds > 0 else {}
    if a.scale:
        res["scale"] = scale(a.scale)
    if a.figure and "honesty" in res:
        figure(res["honesty"], a.figure)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
