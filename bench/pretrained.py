"""Pretrained-backbone benchmark: speed of the frozen feature pass, and a leave-one-domain-out probe table.

1. Feature pass (``audit.train.features.compute_features``, no cache) of ``--model`` at ``--image-size`` on
   ``--n`` decoded images, in fp32 and bf16 autocast, NCHW and channels_last, at 1 and ``--threads`` threads, in
   batches of each of ``--batches`` (default 4 and 32);
   images/s is the best of ``--rounds`` after one warm-up batch. On CUDA (``--device cuda``) the same in fp32/bf16.
2. LODO probe on generated multi-domain data (:mod:`audit.train.synthetic`: 4 shapes x 4 styles photo, cartoon,
   art, sketch): one feature pass, then one logistic-regression head per held-out domain; held-out accuracy per
   domain with a 95% Wilson interval, and the in-domain test accuracy of the same folds.
3. Side by side through the real training stage (``run_training``, LODO, the same generated images): the CPU plan
   (``--mode probe``, efficientnet_lite0 at 224 px), ``--mode finetune`` (112 px, 3 epochs) and ``small_cnn``
   from scratch (64 px, 6 epochs): wall time and held-out / in-domain test accuracy with 95% Wilson intervals.

Usage::

    python bench/pretrained.py [--model efficientnet_lite0] [--image-size 224] [--n 64] [--per-class 20]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _speed(model, wid, name: str, size: int, n: int, threads: list[int], rounds: int, device: str,
           batches: list[int]) -> list[dict]:
    from audit.train.features import FeatureOptions, compute_features

    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    rows = []
    configs = [(t, bf, cl, b) for t in threads for bf in (False, True) for cl in (False, True) for b in batches]
    if device != "cpu":
        configs = [(threads[-1], bf, cl, b) for bf in (False, True) for cl in (False, True) for b in batches]
    model = model.to(device)
    for t, bf, cl, b in configs:
        opts = FeatureOptions(batch_size=b, threads=t, bf16=bf, channels_last=cl)
        best = 0.0
        get = (lambda r: images[torch.as_tensor(r)].to(device))  # noqa: E731
        compute_features(get, [str(i) for i in range(min(n, 8))], model_name=name, size=size, model=model,
                         weights_id=wid, options=opts)  # warm-up
        for _ in range(rounds):
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            compute_features(get, [str(i) for i in range(n)], model_name=name, size=size, model=model,
                             weights_id=wid, options=opts)
            if device != "cpu":
                torch.cuda.synchronize()
            best = max(best, n / (time.perf_counter() - t0))
        rows.append({"threads": t, "dtype": "bf16" if bf else "fp32", "layout": "channels_last" if cl else "NCHW",
                     "batch": b, "images_per_s": best})
    return rows


def _lodo(model, wid, name: str, size: int, per_class: int, seed: int) -> tuple[list[dict], float]:
    from audit.core.intervals import wilson_interval
    from audit.io.tensor_cache import decode_image
    from audit.train.features import compute_features
    from audit.train.probe import probe_predictions
    from audit.train.protocols import make_folds
    from audit.train.synthetic import make_domain_images

    model = model.to("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        table = make_domain_images(Path(tmp) / "data", per_class=per_class, size=max(96, size // 2), seed=seed)
        t0 = time.perf_counter()
        images = torch.from_numpy(np.stack([decode_image(p, size) for p in table["path"]]))
        fs = compute_features(images, table["sample_id"], model_name=name, size=size, cache_dir=Path(tmp) / "emb",
                              model=model, weights_id=wid)
        t_feat = time.perf_counter() - t0
    classes = sorted(table["label"].unique())
    y = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    folds, _ = make_folds(table, "lodo", seed=seed)
    t1 = time.perf_counter()
    preds, recs = probe_predictions(fs.features, y, classes, folds, table["sample_id"], table["domain"], model=name,
                                    protocol="lodo")
    t_heads = time.perf_counter() - t1
    rows = []
    test = preds[preds["role"] == "test"]
    for fold, rec in zip(folds, recs, strict=True):
        part = test[test["fold"] == fold.name]
        for held, label in ((True, "held_out"), (False, "in_domain")):
            p = part[part["held_out"] == held]
            k, m = int((p["y_pred"] == p["y_true"]).sum()), len(p)
            lo, hi = wilson_interval(k, m) if m else (float("nan"), float("nan"))
            rows.append({"domain": fold.name, "scope": label, "n": m, "acc": k / m if m else float("nan"),
                         "lo": lo, "hi": hi, "C": rec.get("C")})
    return rows, {"images": len(table), "feature_s": t_feat, "heads_s": t_heads}


# (label, TrainConfig keywords): the three ways to get a model on a CPU, through the real training stage
SETUPS = (
    ("probe efficientnet_lite0", {"mode": "probe"}),  # the CPU plan: 224 px, one feature pass
    ("finetune efficientnet_lite0", {"mode": "finetune", "image_size": 112, "epochs": 3}),
    ("small_cnn from scratch", {"model": "small_cnn", "image_size": 64, "epochs": 6}),
)


def _accuracy(p) -> tuple[float, float, float, int]:
    from audit.core.intervals import wilson_interval

    k, m = int((p["y_pred"] == p["y_true"]).sum()), len(p)
    lo, hi = wilson_interval(k, m) if m else (float("nan"), float("nan"))
    return (k / m if m else float("nan")), lo, hi, m


def _compare(per_class: int, seed: int) -> list[dict]:
    """Probe vs finetune vs small_cnn from scratch, LODO through ``run_training`` on the same generated images."""
    import pandas as pd

    from audit.ingest import ingest
    from audit.manifest import Roles
    from audit.readers import ReadOptions
    from audit.train import run_training
    from audit.train.config import train_config
    from audit.train.synthetic import make_domain_images

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        table = make_domain_images(root, per_class=per_class, size=96, seed=seed)
        csv = Path(tmp) / "table.csv"
        pd.DataFrame({"filepath": table["sample_id"], "label": table["label"], "domain": table["domain"]}).to_csv(
            csv, index=False)
        opts = ReadOptions(roles=Roles(filepath="filepath", label="label", domain="domain"), root=root)
        for i, (label, kw) in enumerate(SETUPS):
            run = ingest(csv, out=Path(tmp) / f"run{i}", format="table", options=opts, seed=seed,
                         command=["bench/pretrained.py"])
            t0 = time.perf_counter()
            run_training(run, train_config(device="cpu", seed=seed, **kw))
            secs = time.perf_counter() - t0
            st = run.info["stages"]["train"]
            preds = pd.read_parquet(run.path / "predictions.parquet")
            test = preds[preds["role"] == "test"]
            held, ind = test[test["held_out"]], test[~test["held_out"]]
            per_dom = {d: _accuracy(g)[0] for d, g in held.groupby("test_domain")}
            worst = min(per_dom, key=per_dom.get)
            run.unlock()
            rows.append({"setup": label, "mode": st.get("mode"), "size": st.get("image_size"),
                         "epochs": kw.get("epochs", "-"), "seconds": secs, "held": _accuracy(held),
                         "in": _accuracy(ind), "worst": (worst, per_dom[worst]), "n_images": len(table)})
    return rows


def _print_compare(rows: list[dict]) -> None:
    n = rows[0]["n_images"] if rows else 0
    print(f"\nProbe vs finetune vs from scratch, LODO on {n} generated images (4 shapes x 4 styles, chance 0.25), "
          "each through `run_training` (decode, folds, predictions) on this CPU:")
    print("\n| setup | mode | size | epochs | seconds | held-out acc [95% CI] | in-domain acc [95% CI] | "
          "worst held-out |"
          "\n|---|---|---:|---:|---:|---|---|---|")
    for r in rows:
        (h, hl, hh, hn), (i, il, ih, i_n) = r["held"], r["in"]
        print(f"| {r['setup']} | {r['mode']} | {r['size']} | {r['epochs']} | {r['seconds']:.1f} | {h:.2f} "
              f"[{hl:.2f}, {hh:.2f}] n={hn} | {i:.2f} [{il:.2f}, {ih:.2f}] n={i_n} | {r['worst'][0]} "
              f"{r['worst'][1]:.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--n", type=int, default=64, help="images for the speed test")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--batches", default="4,32", help="feature-pass batch sizes to time (the CPU default is 4)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--per-class", type=int, default=20, help="generated images per shape and style (LODO)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-lodo", action="store_true")
    ap.add_argument("--skip-compare", action="store_true", help="skip probe vs finetune vs small_cnn from scratch")
    ap.add_argument("--compare-per-class", type=int, default=8, help="generated images per shape and style there")
    a = ap.parse_args(argv)
    from audit.train.features import backbone

    model, wid = backbone(a.model)
    dev = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"# {a.model} at {a.image_size} px on {a.device} ({dev}, {os.cpu_count()} cores), torch {torch.__version__}")
    if not a.skip_speed:
        threads = sorted({1, a.threads})
        print("\n| threads | dtype | layout | batch | images/s |\n|---:|---|---|---:|---:|")
        batches = [int(b) for b in a.batches.split(",") if b.strip()]
        for r in _speed(model, wid, a.model, a.image_size, a.n, threads, a.rounds, a.device, batches):
            print(f"| {r['threads']} | {r['dtype']} | {r['layout']} | {r['batch']} | {r['images_per_s']:.1f} |")
    if not a.skip_lodo:
        torch.set_num_threads(a.threads)
        rows, t = _lodo(model, wid, a.model, a.image_size, a.per_class, a.seed)
        print(f"\nLODO probe on generated shapes ({t['images']} images, 4 classes, chance 0.25): feature pass "
              f"{t['feature_s']:.1f} s (decode included), all heads {t['heads_s']:.1f} s")
        print("\n| held-out domain | held-out acc [95% CI] | n | in-domain acc [95% CI] | n | C |"
              "\n|---|---|---:|---|---:|---:|")
        by = {(r["domain"], r["scope"]): r for r in rows}
        for d in sorted({r["domain"] for r in rows}):
            h, i = by[(d, "held_out")], by[(d, "in_domain")]
            print(f"| {d} | {h['acc']:.2f} [{h['lo']:.2f}, {h['hi']:.2f}] | {h['n']} | "
                  f"{i['acc']:.2f} [{i['lo']:.2f}, {i['hi']:.2f}] | {i['n']} | {h['C']} |")
    if not a.skip_compare:
        torch.set_num_threads(a.threads)
        _print_compare(_compare(a.compare_per_class, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
