"""The train plan's estimate against the actual wall time, on small and large images (issue 18 item 3).

For each case, writes ``--n`` synthetic JPEG photos (crops of scikit-learn's sample images, 4 labels, 3 domains:
``make_photos`` of bench/train.py) at the case's file size, ingests them, runs ``audit train RUN`` as a user would
(a subprocess, progress off) with the case's model, image size and epochs (``--time-budget none``: the plan is not
cut), and reads ``stages.train.estimate_seconds`` (the calibrated estimate printed in the plan line) and
``stages.train.seconds`` (the stage's actual wall time) from run.json. Target: the ratio actual / estimate within
[0.5, 2] on each. The third case is the plan a CPU gets by default: a linear probe on the packaged
efficientnet_lite0 (one feature pass, then a logistic regression per fold).

Usage::

    python bench/estimate.py [--n 96] [--epochs 2] [--workers 2] [--small 48:small_cnn:48]
                             [--large 192:resnet18:160] [--probe 227:efficientnet_lite0:224:probe]
                             [--protocol lodo]

A case is ``FILE_PX:MODEL:TRAIN_PX[:MODE]`` (mode ``auto`` unless given: with ``--model``, from scratch).
Prints one Markdown table (docs/benchmarks.md, "Train estimate vs actual").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def _make_photos():
    spec = importlib.util.spec_from_file_location("bench_train", _HERE / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_photos


def run_case(tmp: Path, name: str, case: str, args) -> dict:
    from audit.ingest import ingest
    from audit.manifest import Roles
    from audit.readers import ReadOptions
    from audit.rundir import RunDir

    file_px, model, train_px, *rest = case.split(":")
    mode = rest[0] if rest else "auto"  # with --model given: trained from scratch (the first two cases)
    root = tmp / f"{name}_data"
    table = _make_photos()(root, args.n, int(file_px), seed=args.seed)
    opts = ReadOptions(roles=Roles(filepath="path", label="label", domain="domain", group="group"), root=root)
    run = ingest(table, out=tmp / f"{name}_run", format="table", options=opts, seed=args.seed,
                 command=["bench/estimate.py"])
    run.unlock()
    cmd = [sys.executable, "-m", "audit", "train", str(run.path), "--model", model, "--image-size", train_px,
           "--mode", mode, "--epochs", str(args.epochs), "--protocol", args.protocol, "--time-budget", "none",
           "--workers", str(args.workers), "--device", args.device]
    env = {**os.environ, "AUDIT_PROGRESS": "none"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name}: audit train failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    st = RunDir(run.path).stages()["train"]
    est, actual = float(st["estimate_seconds"]), float(st["seconds"])
    plan = st.get("plan") or {}
    folds = [f for f in st.get("folds") or [] if isinstance(f, dict)]
    return {"case": name, "images": args.n, "file_px": int(file_px), "model": model, "train_px": int(train_px),
            "mode": mode, "epochs": args.epochs if mode != "probe" else "-", "folds": plan.get("folds", len(folds)),
            "device": str(plan.get("device", args.device)),
            "estimate_seconds": round(est, 1), "seconds": round(actual, 1),
            "ratio": round(actual / est, 2) if est > 0 else None, "process_seconds": round(wall, 1),
            "calibration": plan.get("calibration"),
            "features_images_per_s": (st.get("features") or {}).get("images_per_s")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96, help="images per case")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--protocol", default="lodo")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", default="48:small_cnn:48", help="FILE_PX:MODEL:TRAIN_PX")
    ap.add_argument("--large", default="192:resnet18:160", help="FILE_PX:MODEL:TRAIN_PX")
    ap.add_argument("--probe", default="227:efficientnet_lite0:224:probe",
                    help="FILE_PX:MODEL:TRAIN_PX:MODE, the CPU default plan (a linear probe); '' to skip")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="audit-estimate-") as d:
        for name, case in (("small", args.small), ("large", args.large), ("probe", args.probe)):
            if not case:
                continue
            rows.append(run_case(Path(d), name, case, args))
            print(f"{name}: done ({rows[-1]['seconds']} s)", file=sys.stderr, flush=True)
    try:
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load}; protocol {args.protocol}")
    print()
    print("| images | file px | model | train px | mode | epochs | folds | device | estimate_seconds | seconds | "
          "seconds / estimate |")
    print("|---|---|---|---|---|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['images']} | {r['file_px']} | {r['model']} | {r['train_px']} | {r['mode']} | {r['epochs']} | "
              f"{r['folds']} | "
              f"{r['device']} | {r['estimate_seconds']} | {r['seconds']} | {r['ratio']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
