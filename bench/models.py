"""Model throughput: training and inference images/s of registry models at a given size, with AMP and utilization.

For each model (default ResNet-18 and ResNet-50 at 224 px) and each precision (the device's AMP dtype and fp32),
side by side in one run on the same device:

* train: forward + backward + AdamW step on batches gathered from a device-resident uint8 cache (what
  ``audit train`` does when the cache fits on the GPU), with the same on-device augmentation, channels_last;
* infer: forward under ``torch.inference_mode`` on the same batches (batch x2, as ``audit train`` predicts).

Timing starts after ``--warmup`` steps (cuDNN autotuning, ``torch.compile``) and ends with a device sync. On CUDA the
GPU utilization and memory are sampled every 100 ms by ``nvidia-smi`` during each timed phase (mean and max
reported) and the peak allocated memory is read from ``torch.cuda``. Reference anchors (NVIDIA's published
figures): ~2,500 img/s ResNet-50 AMP training per A100; tens of thousands of img/s ResNet-18 inference.

Usage::

    python bench/models.py                                  # resnet18, resnet50 at 224 px on the auto device
    python bench/models.py --models resnet18 --batch-size 256 --compile
    python bench/models.py --device cpu --models resnet18 --image-size 64 --batch-size 16 --steps 3   # smoke
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402


class UtilSampler:
    """Samples GPU utilization (%) and memory (MiB) with ``nvidia-smi`` in a background thread (CUDA only)."""

    def __init__(self, device: torch.device, every_s: float = 0.1):
        self.device, self.every_s = device, every_s
        self.util: list[float] = []
        self.mem: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = device.type == "cuda" and shutil.which("nvidia-smi") is not None

    def _poll(self) -> None:
        idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
        cmd = ["nvidia-smi", f"--id={idx}", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
                u, m = (float(v) for v in out[0].split(","))
                self.util.append(u)
                self.mem.append(m)
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.every_s)

    def __enter__(self):
        if self.available:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> str:
        if not self.util:
            return "n/a"
        return f"{sum(self.util) / len(self.util):.0f}% mean, {max(self.util):.0f}% max"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, device: torch.device, size: int, batch: int, steps: int, warmup: int, amp: torch.dtype | None,
            compile_: bool, n_cache: int) -> dict:
    """Train and inference images/s of registry model ``name``; see the module docstring."""
    from audit.train.augment import AugmentConfig, augment_batch
    from audit.train.models import build_model, forward_logits
    from audit.train.trainer import BatchSource, _autocast

    torch.manual_seed(0)
    model, _ = build_model(name, 10)
    model = model.to(device).to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_cache, 3, size, size), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, 10, (n_cache,), generator=g).to(device)
    src = BatchSource(images, labels, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    loss_fn = torch.nn.CrossEntropyLoss()
    dev_gen = torch.Generator(device=device).manual_seed(1)
    run_model = torch.compile(model) if compile_ else model
    aug = AugmentConfig()

    def batch_idx(k: int, bs: int) -> torch.Tensor:
        return (torch.arange(bs) + k * bs) % n_cache

    def train_step(k: int):
        x, y = src.get(batch_idx(k, batch))
        x, _ = augment_batch(x, None, aug, dev_gen)
        with _autocast(device, amp):
            loss = loss_fn(forward_logits(run_model, src.prepare(x)).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def infer_step(k: int):
        x, _ = src.get(batch_idx(k, 2 * batch))
        with torch.inference_mode(), _autocast(device, amp):
            forward_logits(run_model, src.prepare(x))

    out = {}
    for phase, step, bs in (("train", train_step, batch), ("infer", infer_step, 2 * batch)):
        (run_model.train if phase == "train" else run_model.eval)()
        for k in range(warmup):
            step(k)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with UtilSampler(device) as util:
            t0 = time.perf_counter()
            for k in range(steps):
                step(k)
            _sync(device)
            dt = time.perf_counter() - t0
        out[phase] = {"img_s": steps * bs / dt, "util": util.summary(),
                      "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--cache-images", type=int, default=2048, help="rows of the device-resident uint8 cache")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile'd models")
    ap.add_argument("--no-fp32", action="store_true", help="skip the fp32 comparison rows")
    args = ap.parse_args(argv)

    from audit.io.gpu import amp_dtype, device_info, resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    info = device_info(device)
    amp = amp_dtype(device)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; device {device} = {info.name}"
          f"{f' ({info.memory_gib} GiB, CUDA {info.cuda}, capability {info.capability})' if info.cuda else ''}; "
          f"torch {torch.__version__}")
    print(f"{args.image_size} px, batch {args.batch_size} (inference {2 * args.batch_size}), {args.steps} timed steps "
          f"after {args.warmup} warm-up steps, channels_last, data in a {args.cache_images}-image uint8 cache on the "
          "device, on-device augmentation")
    precisions = [amp] + ([None] if amp is not None and not args.no_fp32 else [])
    variants = [(p, False) for p in precisions] + ([(amp, True)] if args.compile else [])
    print("\n| model | precision | compile | train img/s | train GPU util | train peak GiB | infer img/s | "
          "infer GPU util |\n|---|---|---|---|---|---|---|---|")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for prec, comp in variants:
            r = measure(name, device, args.image_size, args.batch_size, args.steps, args.warmup, prec, comp,
                        args.cache_images)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the model, optimizer and cache of this row are gone
            pk = f"{r['train']['peak_gib']:.1f}" if r["train"]["peak_gib"] is not None else "n/a"
            pname = str(prec).replace("torch.", "") if prec is not None else "fp32"
            print(f"| {name} | {pname} | {'yes' if comp else 'no'} | {r['train']['img_s']:,.0f} | "
                  f"{r['train']['util']} | {pk} | {r['infer']['img_s']:,.0f} | {r['infer']['util']} |", flush=True)


if __name__ == "__main__":
    main()
