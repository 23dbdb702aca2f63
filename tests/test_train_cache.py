"""Decode-once tensor cache (memory and memmap), mask normalization, tensor augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from audit.io.gpu import amp_dtype, resolve_device
from audit.io.tensor_cache import build_cache, decode_image, decode_mask
from audit.train.augment import AugmentConfig, augment_batch


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        arr = rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)
        p = tmp_path / f"im{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(p)
        paths.append(p)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    paths.append(tmp_path / "bad.jpg")
    paths.append(tmp_path / "missing.png")
    return paths


def test_decode_image_matches_pil_reference(files):
    ref = np.asarray(Image.open(files[1]).convert("RGB").resize((16, 16), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(decode_image(files[1], 16), ref)


def test_cache_in_memory_records_errors(files):
    c = build_cache(files, size=16, key="k")
    assert c.location == "memory" and c.images.shape == (8, 3, 16, 16) and c.images.dtype == torch.uint8
    assert c.ok.tolist() == [True] * 6 + [False, False]
    assert c.errors[6].startswith("decode_error") and c.errors[7] == "missing_file"
    assert np.array_equal(c.images[1].numpy(), decode_image(files[1], 16))


def test_cache_goes_to_memmap_when_large_and_is_reused(files, tmp_path):
    d = tmp_path / "cache"
    a = build_cache(files, size=16, key="abc", cache_dir=d, memory_limit=0)
    assert a.location == "memmap" and not a.reused
    assert (d / "abc-16.images.u8").stat().st_size == 8 * 3 * 16 * 16
    b = build_cache(files, size=16, key="abc", cache_dir=d, memory_limit=0)
    assert b.reused and b.ok.tolist() == a.ok.tolist() and b.errors == a.errors
    assert torch.equal(a.images, b.images)
    b.images[0] += 1  # copy-on-write: the file is not modified through the cache
    c = build_cache(files, size=16, key="abc", cache_dir=d, memory_limit=0)
    assert torch.equal(c.images, a.images)
    assert not build_cache(files, size=8, key="abc", cache_dir=d, memory_limit=0).reused  # another size


def test_mask_normalization(tmp_path):
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:7] = 255
    Image.fromarray(m).save(tmp_path / "bin.png")
    out, resized, binary = decode_mask(tmp_path / "bin.png", 10, (12, 10), 2)
    assert binary and not resized and set(np.unique(out)) <= {0, 1} and out.sum() > 0
    m2 = np.array([[0, 1, 2, 7]] * 4, np.uint8)
    Image.fromarray(m2).save(tmp_path / "multi.png")
    out2, _, _ = decode_mask(tmp_path / "multi.png", 4, (4, 4), 3)
    assert out2[0].tolist() == [0, 1, 2, 255]  # out-of-range class -> ignore index
    out3, resized3, _ = decode_mask(tmp_path / "multi.png", 8, (8, 8), 3)
    assert resized3 and out3.shape == (8, 8) and set(np.unique(out3)) <= {0, 1, 2, 255}  # NEAREST: no new values
    rgb = np.stack([m2 * 10, m2, m2], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="colour mask"):
        decode_mask(tmp_path / "rgb.png", 4, None, 3)


def test_augmentation_is_seeded_and_keeps_mask_labels():
    x = torch.rand(4, 3, 16, 16)
    m = torch.randint(0, 3, (4, 16, 16), dtype=torch.uint8)
    cfg = AugmentConfig(hflip=True)
    a, ma = augment_batch(x.clone(), m.clone(), cfg, torch.Generator().manual_seed(0))
    b, mb = augment_batch(x.clone(), m.clone(), cfg, torch.Generator().manual_seed(0))
    c, _ = augment_batch(x.clone(), m.clone(), cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(ma, mb) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and set(ma.unique().tolist()) <= {0, 1, 2}
    same, msame = augment_batch(x, m, AugmentConfig(enabled=False), torch.Generator())
    assert same is x and msame is m


def test_identity_affine_keeps_the_image():
    x = torch.rand(2, 3, 8, 8)
    cfg = AugmentConfig(scale=1.0, translate=0.0, brightness=0, contrast=0, saturation=0)
    y, _ = augment_batch(x.clone(), None, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(x, y, atol=1e-5)


def test_device_resolution_and_amp_on_cpu():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    from audit.io.gpu import cpu_bf16_supported

    # bf16 only where the CPU has native bf16 kernels; never when AMP is off
    assert amp_dtype(torch.device("cpu")) == (torch.bfloat16 if cpu_bf16_supported() else None)
    assert amp_dtype(torch.device("cpu"), enabled=False) is None


def test_torchvision_batch_decode_path_on_cpu(tmp_path):
    """The nvJPEG path's logic (file triage, batch decode with a per-file retry, resize, copy into the cache) runs
    with torchvision's decoder on the CPU too; only the kernel differs on CUDA (tests/test_train_gpu.py)."""
    from audit.io.gpu import decode_jpegs_cuda
    from audit.io.tensor_cache import _gpu_decode_into, _nvjpeg_suitable

    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    plain, grey, rotated, png, bad, cmyk, upright = (tmp_path / n for n in
                                                    ("a.jpg", "g.jpg", "r.jpg", "p.png", "bad.jpg", "c.jpg", "u.jpg"))
    Image.fromarray(arr).save(plain, quality=95)
    Image.fromarray(arr[..., 0]).save(grey, quality=95)
    ex = Image.Exif()
    ex[0x0112] = 6  # rotated 90 degrees: nvJPEG would ignore it
    Image.fromarray(arr).save(rotated, quality=95, exif=ex.tobytes())
    ex[0x0112] = 1  # camera photos: EXIF present, upright
    Image.fromarray(arr).save(upright, quality=95, exif=ex.tobytes())
    Image.fromarray(arr).save(png)
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    Image.fromarray(arr).convert("CMYK").save(cmyk, quality=95)
    paths = [plain, grey, rotated, png, bad, cmyk, upright]
    assert [_nvjpeg_suitable(p.read_bytes()) for p in paths] == [True, True, False, False, False, False, True]
    assert not _nvjpeg_suitable(b"")

    size = 32
    images = torch.zeros((len(paths), 3, size, size), dtype=torch.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    done = _gpu_decode_into(paths, images, size, torch.device("cpu"), ok, None)
    assert done.tolist() == [True, True, False, False, False, False, True]
    assert ok.tolist() == done.tolist()
    for i in (0, 1, 6):
        ref = torch.from_numpy(decode_image(paths[i], size)).float()
        assert (images[i].float() - ref).abs().mean() < 12  # decoders and resamplers differ slightly
    assert images[2].sum() == 0  # left for the CPU decoder

    # a corrupt file in a batch: the batch is retried file by file and only that file comes back None
    datas = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in (plain, bad, grey)]
    out = decode_jpegs_cuda(datas, size, torch.device("cpu"))
    assert [o is None for o in out] == [False, True, False]
    assert all(o.shape == (3, size, size) and o.dtype == torch.uint8 for o in out if o is not None)
