"""Mitigation benchmark (issue 21): which methods close a planted spurious gap, by how much, at what cost in time.

Data: :func:`audit.mitigate.synthetic.make_spurious`: two classes (a faint horizontal or vertical bar) on a warm or
cool background; in the training domains d1/d2 the background agrees with the class in a share ``--corr`` of
the images, in d3 it is independent. ``--duplicates`` exact copies of training images are added, half of them
relabelled (label conflicts: what ``dedup`` removes). The run is profiled (the findings ``augment`` and ``dedup``
read), trained (small CNN, leave-one-domain-out, ``--epochs``), evaluated, then every method is retrained under
the same protocol with ``--groups bg`` and compared with the baseline on the same held-out images
(``RUN/mitigations/summary.parquet``).

The table: worst-group accuracy over label x bg and held-out (pooled) accuracy of the baseline and each variant,
their paired differences with 95% intervals, the width of the unpaired interval of the held-out difference for
comparison, the verdict (:mod:`audit.mitigate.verdict`) and the wall time per method.

Usage::

    python bench/mitigation.py [--per-domain 300] [--epochs 8] [--seeds 2] [--methods group_balance,groupdro]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# `python bench/mitigation.py` puts bench/ first on sys.path, where bench/profile.py would shadow the stdlib `profile`
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import audit  # noqa: E402
from audit.mitigate import METHODS, MitigateConfig, run_mitigations  # noqa: E402
from audit.mitigate.paired import pair_predictions, paired_metrics  # noqa: E402
from audit.mitigate.summary import baseline_predictions, build_spec  # noqa: E402
from audit.mitigate.synthetic import make_spurious  # noqa: E402
from audit.rundir import RunDir  # noqa: E402
from audit.views.mitigation import mitigation_view  # noqa: E402

WG_BY = "label x bg"


def prepare(root: Path, seed: int, args) -> tuple[RunDir, float]:
    """Generate, profile, train and evaluate the baseline; return the run and its wall time."""
    data = root / "data"
    table = make_spurious(data, per_domain=args.per_domain, size=args.size, corr=args.corr, contrast=args.contrast,
                          seed=seed, duplicates=args.duplicates)
    csv = data / "labels.csv"
    table.to_csv(csv, index=False)
    t0 = time.perf_counter()
    run = audit.profile(csv, out=root / "run", format="table", label="shape", domain="site", attrs=["bg"],
                        path_col="path", root=data, seed=seed, workers=1, n_boot=200, min_n=args.min_n)
    t1 = time.perf_counter()
    audit.train(run, model="small_cnn", epochs=args.epochs, device=args.device, seed=seed, workers=1)
    audit.metrics(run, n_boot=args.n_boot, min_n=args.min_n, seed=seed)
    print(f"seed {seed}: {len(table)} images, profile {t1 - t0:.1f} s, baseline train + metrics "
          f"{time.perf_counter() - t1:.1f} s", flush=True)
    return RunDir.open(run.path), time.perf_counter() - t1


def unpaired_width(run: RunDir, method: str, n_boot: int, min_n: int) -> float:
    """Width of the held-out accuracy difference's interval when the two sides are resampled independently."""
    base = baseline_predictions(run)
    child = RunDir(run.path / "mitigations" / method)
    tr = child.info.get("stages", {}).get("train", {})
    paired = pair_predictions(base, baseline_predictions(child, tr.get("model"), tr.get("protocol")))
    spec = build_spec(paired, run.manifest(), ["attr.bg"], run.task, [str(c) for c in run.classes()])
    rows = paired_metrics(paired, spec, task=run.task, n_boot=n_boot, min_n=min_n, paired_draws=False)
    r = rows[rows["metric"] == "ood_accuracy"].iloc[0]
    return float(r["ci_high"] - r["ci_low"])


def one_seed(root: Path, seed: int, args) -> list[dict]:
    run, base_secs = prepare(root, seed, args)
    walls: dict[str, float] = {}
    last = [time.perf_counter()]

    def on_method(method: str, rec: dict) -> None:
        now = time.perf_counter()
        walls[method] = now - last[0]
        last[0] = now
        print(f"  {method:14s} {walls[method]:6.1f} s  {rec.get('error', '')}", flush=True)

    with run:
        run_mitigations(run, MitigateConfig(methods=tuple(args.methods), groups=("bg",), device=args.device,
                                            eta=args.eta, n_boot=args.n_boot, min_n=args.min_n, seed=seed),
                        on_method=on_method)
    view = mitigation_view(run)
    meta = run.read_json("mitigations/summary.json", default={})
    out = [{"seed": seed, "method": "baseline", "worst": view["worst_baseline"].iloc[0],
            "ood": view["ood_baseline"].iloc[0], "wall_s": base_secs}]
    for r in view.to_dict("records"):
        assert r["worst_by"] == WG_BY, r["worst_by"]
        paired_w = r["ood_ci_high"] - r["ood_ci_low"]
        out.append({"seed": seed, "method": r["method"], "worst": r["worst_mitigated"], "ood": r["ood_mitigated"],
                    "worst_diff": r["worst_diff"], "worst_ci": (r["worst_ci_low"], r["worst_ci_high"]),
                    "ood_diff": r["ood_diff"], "ood_ci": (r["ood_ci_low"], r["ood_ci_high"]),
                    "paired_width": paired_w, "unpaired_width": unpaired_width(run, r["method"], args.n_boot,
                                                                               args.min_n),
                    "verdict": r["verdict"], "wall_s": walls.get(r["method"])})
    for method, rec in (meta.get("methods") or {}).items():
        if rec.get("error"):
            out.append({"seed": seed, "method": method, "error": rec["error"], "wall_s": walls.get(method)})
    return out


def _ci(d, ci) -> str:
    return f"{d:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"


def table(rows: list[dict]) -> str:
    lines = ["| seed | method | worst-group acc (label x bg) | held-out acc | worst-group diff [95% CI] | "
             "held-out diff [95% CI] | CI width paired / unpaired | verdict | wall time |",
             "|---|---|---:|---:|---|---|---|---|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['seed']} | {r['method']} | failed: {r['error'][:60]} | | | | | | |")
            continue
        diffs = ("", "", "", "") if r["method"] == "baseline" else (
            _ci(r["worst_diff"], r["worst_ci"]), _ci(r["ood_diff"], r["ood_ci"]),
            f"{r['paired_width']:.3f} / {r['unpaired_width']:.3f}", r["verdict"])
        wall = f"{r['wall_s']:.1f} s" if r.get("wall_s") is not None else ""
        lines.append(f"| {r['seed']} | {r['method']} | {r['worst']:.3f} | {r['ood']:.3f} | " + " | ".join(diffs)
                     + f" | {wall} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-domain", type=int, default=300, help="images per domain (3 domains)")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--corr", type=float, default=0.95, help="background-label agreement in d1/d2")
    ap.add_argument("--contrast", type=float, default=40.0, help="bar contrast (the real signal)")
    ap.add_argument("--duplicates", type=int, default=40, help="exact copies, half relabelled")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--eta", type=float, default=0.1, help="GroupDRO step")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--min-n", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", type=Path, help="keep the run directories here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"torch threads={os.environ.get('OMP_NUM_THREADS', 'default')}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mitigation-bench-") as tmp:
        base = args.keep or Path(tmp)
        for seed in range(args.seeds):
            rows += one_seed(base / f"seed{seed}", seed, args)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
