"""Training benchmark: our trainer vs a plain torchvision ImageFolder + DataLoader + fp32 loop.

Measured side by side in one run, on the same images, model, epochs, batch size, threads and device:

* plain: ``torchvision.datasets.ImageFolder`` with PIL transforms (resize, random affine, colour jitter,
  ToTensor, Normalize), a ``DataLoader`` (``--loader-workers`` processes), an fp32 loop; every epoch decodes
  every image again;
* ours:  :func:`audit.io.tensor_cache.build_cache` (decode once, uint8) + :func:`audit.train.trainer.fit`
  (gather from the cache, augmentation as batched tensor ops, channels_last; AMP on CUDA); the cache build is
  included in the time.

Then the cost of a k-fold leave-one-domain-out run (``run_training``: one shared decode, per-fold validation and
predictions) against k independent plain runs on the same per-fold training rows.

Data: ``--data demo`` is the bundled classification demo (~1,600 digit images, 32 x 32 JPEG/PNG, 3 domains): tiny
files, so both loops are compute-bound. ``--data photos`` writes ``--n`` synthetic ``--photo-size`` px JPEG photos
(crops of scikit-learn's sample images; 4 labels, 3 domains) that are trained at ``--image-size``: the common case
where decoding and resizing, not the model, limit a plain loop.

Usage::

    python bench/train.py [--data demo|photos] [--model small_cnn] [--image-size 32] [--epochs 6] [--threads 1]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# bench/profile.py would shadow the standard library's `profile` (which torch imports): drop this folder from
# the path, and put the repository root first
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def make_photos(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` JPEG crops of scikit-learn's sample photos with a label, domain and group column; returns the table."""
    import csv

    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        src = photos[k % len(photos)]
        side = int(min(src.shape[:2]) * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, src.shape[0] - side + 1), rng.integers(0, src.shape[1] - side + 1)
        im = Image.fromarray(src[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
        rel = f"img/{k:06d}.jpg"
        (root / "img").mkdir(parents=True, exist_ok=True)
        im.save(root / rel, quality=90)
        rows.append([rel, str(k % 4), f"d{k % 3}", f"g{k // 12}-{k % 3}"])  # groups stay inside a domain
    table = root / "photos.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "domain", "group"])
        w.writerows(rows)
    return table


def _usable(run):
    """Manifest rows PIL can decode (the plain loop would crash on the demo's broken files)."""
    from PIL import Image

    man = run.manifest()
    ok = []
    for rel in man["filepath"]:
        try:
            with Image.open(run.abspath(rel)) as im:
                im.convert("RGB")
            ok.append(True)
        except Exception:
            ok.append(False)
    return man[np.array(ok)].reset_index(drop=True)


def _image_folder(run, rows, root: Path) -> Path:
    """ImageFolder layout (root/<label>/<file>) of ``rows`` as symlinks."""
    for i, (rel, label) in enumerate(zip(rows["filepath"], rows["label"], strict=True)):
        d = root / str(label)
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(run.abspath(rel), d / f"{i:06d}{Path(rel).suffix}")
    return root


def plain_run(root: Path, model_name: str, size: int, epochs: int, batch: int, workers: int,
              device) -> tuple[float, int]:
    """The baseline: ImageFolder + DataLoader + fp32 loop. Returns (seconds, images trained)."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from audit.train.augment import IMAGENET_MEAN, IMAGENET_STD
    from audit.train.models import build_model

    t0 = time.perf_counter()
    tf = T.Compose([
        T.Resize((size, size)),
        T.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.0)),
        T.ColorJitter(0.2, 0.2, 0.2),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    ds = ImageFolder(str(root), transform=tf)
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                    persistent_workers=workers > 0, drop_last=False)
    torch.manual_seed(0)
    model, _ = build_model(model_name, len(ds.classes))
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = 0
    model.train()
    for _ in range(epochs):
        for x, y in dl:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, n


def our_run(run, rows, model_name: str, size: int, epochs: int, batch: int, workers: int, device,
            amp: bool = True) -> tuple[float, int]:
    """Decode-once cache + our fit loop, on the same rows. Returns (seconds, images trained)."""
    from audit.io.gpu import amp_dtype
    from audit.io.tensor_cache import build_cache
    from audit.train.models import build_model
    from audit.train.trainer import BatchSource, FitConfig, fit

    t0 = time.perf_counter()
    classes = sorted(rows["label"].unique())
    cache = build_cache([run.abspath(p) for p in rows["filepath"]], size=size, key=f"bench{time.time_ns()}",
                        device=device, workers=workers)
    y = torch.tensor(rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64))
    src = BatchSource(cache.images, y.to(cache.images.device), device)
    torch.manual_seed(0)
    model, _ = build_model(model_name, len(classes))
    cfg = FitConfig(task="classify", n_classes=len(classes), epochs=epochs, batch_size=batch, lr=1e-3,
                    amp_dtype=amp_dtype(device, amp))
    res = fit(model, src, np.arange(len(rows)), np.arange(0), cfg, seed=0)
    return time.perf_counter() - t0, res.train_images


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["demo", "photos"], default="demo")
    ap.add_argument("--n", type=int, default=2000, help="photos: number of images")
    ap.add_argument("--photo-size", type=int, default=256, help="photos: side of the JPEG files")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads, both loops (1: robust on shared cores)")
    ap.add_argument("--loader-workers", type=int, default=2, help="DataLoader worker processes of the plain loop")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-lodo", action="store_true")
    ap.add_argument("--ray", action="store_true", help="also time the LODO run with --engine ray (folds in parallel)")
    args = ap.parse_args(argv)

    os.environ.setdefault("AUDIT_NO_PROGRESS", "1")
    from audit.demo import build_classify
    from audit.ingest import ingest
    from audit.io.gpu import amp_dtype, device_info, resolve_device
    from audit.manifest import Roles
    from audit.readers import ReadOptions
    from audit.train import TrainConfig, run_training
    from audit.train.protocols import make_folds

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    if args.data == "demo":
        data = build_classify(tmp / "data", seed=0)
        r = data.roles
        table, data_root = data.table, data.root
        roles = Roles(filepath=r["filepath"], label=r["label"], domain=r["domain"], group=r["group"])
    else:
        table = make_photos(tmp / "data", args.n, args.photo_size)
        data_root = tmp / "data"
        roles = Roles(filepath="path", label="label", domain="domain", group="group")
    opts = ReadOptions(roles=roles, root=data_root)
    run = ingest(table, out=tmp / "run", format="table", options=opts, command=["bench"])
    run.unlock()
    rows = _usable(run)
    folder = _image_folder(run, rows, tmp / "imagefolder")
    dinfo = device_info(device)
    print(f"machine: {platform.machine()} {dinfo.name}, {os.cpu_count()} cpus, device {device}, "
          f"torch {torch.__version__}, threads {args.threads}")
    src_desc = "demo" if args.data == "demo" else f"{args.photo_size} px JPEG photos"
    print(f"data: {len(rows)} {src_desc} images trained at {args.image_size} px, model {args.model}, "
          f"{args.epochs} epochs, batch {args.batch_size}, plain DataLoader workers {args.loader_workers}")

    amp = amp_dtype(device)
    amp_name = str(amp).replace("torch.", "") if amp else "fp32"
    plain_best = ours_best = fp32_best = 0.0
    print(f"\n| round | plain img/s | ours ({amp_name}) img/s | ours forced fp32 img/s | ratio ours / plain |"
          "\n|---|---|---|---|---|")
    for k in range(args.rounds):
        ts, n = plain_run(folder, args.model, args.image_size, args.epochs, args.batch_size, args.loader_workers,
                          device)
        tp, m = our_run(run, rows, args.model, args.image_size, args.epochs, args.batch_size, args.threads, device)
        tf, f = our_run(run, rows, args.model, args.image_size, args.epochs, args.batch_size, args.threads, device,
                        amp=False)
        a, b, c = n / ts, m / tp, f / tf
        plain_best, ours_best, fp32_best = max(plain_best, a), max(ours_best, b), max(fp32_best, c)
        print(f"| {k + 1} | {a:,.0f} | {b:,.0f} | {c:,.0f} | {b / a:.2f} |")
    print(f"| best | {plain_best:,.0f} | {ours_best:,.0f} | {fp32_best:,.0f} | **{ours_best / plain_best:.2f}** "
          f"(fp32: {fp32_best / plain_best:.2f}) |")

    if args.skip_lodo:
        return
    # k-fold LODO with one shared decode vs k independent plain runs on the same training rows
    man = run.manifest()
    table = man[man["sample_id"].isin(set(rows["sample_id"]))].reset_index(drop=True)
    folds, _ = make_folds(table, "lodo", seed=0)
    t0 = time.perf_counter()
    for i, f in enumerate(folds):
        sub = table.iloc[f.train_idx]
        root = _image_folder(run, sub, tmp / f"fold{i}")
        del root
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain_n = 0
    for i, _f in enumerate(folds):
        _, n = plain_run(tmp / f"fold{i}", args.model, args.image_size, args.epochs, args.batch_size,
                         args.loader_workers, device)
        plain_n += n
    plain_lodo = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_training(run, TrainConfig(model=args.model, image_size=args.image_size, epochs=args.epochs,
                                  batch_size=args.batch_size, device=str(device), workers=args.threads))
    ours_lodo = time.perf_counter() - t0
    st = run.info["stages"]["train"]
    print(f"\nLODO, {len(folds)} folds x {args.epochs} epochs (plain: training only, {plain_n:,} images; ours: "
          f"training + per-epoch validation + predictions of val/test rows, one decode; folder prep {prep:.1f} s not "
          "counted)")
    print("| | seconds |\n|---|---|")
    print(f"| {len(folds)} independent plain runs | {plain_lodo:.1f} |")
    print(f"| run_training lodo | {ours_lodo:.1f} (decode {st['cache']['decode_seconds']:.2f} s) |")
    print(f"| ratio ours / plain | **{ours_lodo / plain_lodo:.2f}** |")
    if args.ray:
        import ray

        from audit.integrations.ray_engine import init_ray

        init_ray(None)
        # same run directory, fresh fold outputs: drop the local run's folds so every fold trains again
        import shutil

        cpus = ray.cluster_resources().get("CPU", 0)
        for label in ("cold: Ray worker start-up included", "warm workers"):
            shutil.rmtree(run.path / "train" / "folds", ignore_errors=True)
            shutil.rmtree(run.path / "train" / "ckpt", ignore_errors=True)
            t0 = time.perf_counter()
            run_training(run, TrainConfig(model=args.model, image_size=args.image_size, epochs=args.epochs,
                                          batch_size=args.batch_size, device=str(device), workers=args.threads,
                                          engine="ray"))
            ray_lodo = time.perf_counter() - t0
            print(f"| run_training lodo, --engine ray ({cpus:.0f} CPUs, {len(folds)} fold tasks; {label}) | "
                  f"{ray_lodo:.1f} (x{ours_lodo / ray_lodo:.2f} vs local) |")


if __name__ == "__main__":
    main()
