"""CUDA paths: AMP, channels_last, nvJPEG decode, the GPU-resident cache. Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ingest_demo
from PIL import Image

pytestmark = pytest.mark.gpu


def test_amp_channels_last_training_step_on_cuda():
    from audit.io.gpu import amp_dtype
    from audit.train.models import build_model
    from audit.train.trainer import BatchSource, FitConfig, fit

    dev = torch.device("cuda")
    dtype = amp_dtype(dev)
    assert dtype in (torch.bfloat16, torch.float16)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (64,), generator=g)
    imgs = (torch.rand(64, 3, 32, 32, generator=g) * 80).to(torch.uint8)
    imgs[:, 0] += (y * 50).to(torch.uint8).view(-1, 1, 1)
    src = BatchSource(imgs.to(dev), y.to(dev), dev)
    model, _ = build_model("resnet18", 3)
    cfg = FitConfig(task="classify", n_classes=3, epochs=3, batch_size=16, lr=1e-3, amp_dtype=dtype)
    res = fit(model, src, np.arange(48), np.arange(48, 64), cfg, seed=0)
    assert all(np.isfinite(h["train_loss"]) for h in res.history)
    assert next(model.parameters()).is_cuda
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = src.prepare(src.get(torch.arange(4))[0])
    assert x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)


def test_nvjpeg_decode_matches_cpu(tmp_path):
    from audit.io.tensor_cache import build_cache, decode_image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(p, quality=95)
        paths.append(p)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")
    paths.append(tmp_path / "bad.jpg")
    c = build_cache(paths, size=32, key="g", device=torch.device("cuda"))
    assert c.location == "cuda" and c.images.is_cuda and c.gpu_decoded == 5
    assert c.ok.tolist() == [True] * 5 + [False]
    for i in range(5):
        ref = torch.from_numpy(decode_image(paths[i], 32)).float()
        assert (c.images[i].cpu().float() - ref).abs().mean() < 12  # decoders and resamplers differ slightly


def test_run_training_on_cuda(demo_classify, tmp_path):
    from audit.train import TrainConfig, run_training

    run = ingest_demo(demo_classify, tmp_path / "run")
    run_training(run, TrainConfig(epochs=2, image_size=32, device="cuda"))
    info = run.info
    assert info["device"]["type"] == "cuda" and info["device"]["amp"] in ("bfloat16", "float16")
    assert info["device"]["cache"] == "cuda" and info["device"]["nvjpeg_decoded"] > 0
    p = pd.read_parquet(run.path / "predictions.parquet")
    assert len(p) and set(p["fold"]) == {"holdout=phone", "holdout=scanner", "holdout=studio"}


def test_compile_trains_or_falls_back(demo_segment, tmp_path):
    from audit.train import TrainConfig, run_training

    run = ingest_demo(demo_segment, tmp_path / "run")
    run_training(run, TrainConfig(epochs=1, image_size=32, device="cuda", compile=True, protocol="split"))
    assert run.has("predictions.parquet")
