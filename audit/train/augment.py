"""Batch augmentation written with torch ops: runs wherever the batch is (on the GPU when training there).

One random affine per sample (scale + translation, optional horizontal flip) applied with ``grid_sample``
to images and, with NEAREST sampling, to masks; then brightness / contrast / saturation jitter. Every draw
comes from an explicit ``torch.Generator``, so a seed fixes the augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "augment_batch", "normalize", "IMAGENET_MEAN", "IMAGENET_STD", "EXTRA_AUGMENTS",
           "extra_augment"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentConfig:
    """``scale``: smallest zoom-in area factor; ``translate``: max shift as a fraction of the side."""

    enabled: bool = True
    scale: float = 0.8
    translate: float = 0.1
    hflip: bool = False
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def augment_batch(x: torch.Tensor, masks: torch.Tensor | None, cfg: AugmentConfig, gen: torch.Generator,
                  ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment float images ``x [B, 3, H, W]`` in [0, 1] (and index masks ``[B, H, W]``) on their device."""
    if not cfg.enabled:
        return x, masks
    b, dev = x.shape[0], x.device
    s = torch.sqrt(_uniform(b, cfg.scale, 1.0, gen, dev))  # side factor of the sampled window
    slack = (1 - s) + cfg.translate
    tx = _uniform(b, -1.0, 1.0, gen, dev) * slack
    ty = _uniform(b, -1.0, 1.0, gen, dev) * slack
    sx = s
    if cfg.hflip:
        flip = torch.rand(b, generator=gen, device=dev) < 0.5
        sx = torch.where(flip, -s, s)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = sx
    theta[:, 1, 1] = s
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if masks is not None:
        m = F.grid_sample(masks.unsqueeze(1).to(x.dtype), grid, mode="nearest", padding_mode="border",
                          align_corners=False)
        masks = m.squeeze(1).round().to(masks.dtype)
    shape = (b, 1, 1, 1)
    if cfg.brightness:
        x = x * _uniform(b, 1 - cfg.brightness, 1 + cfg.brightness, gen, dev).view(shape).to(x.dtype)
    if cfg.contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        c = _uniform(b, 1 - cfg.contrast, 1 + cfg.contrast, gen, dev).view(shape).to(x.dtype)
        x = (x - mean) * c + mean
    if cfg.saturation:
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        f = _uniform(b, 1 - cfg.saturation, 1 + cfg.saturation, gen, dev).view(shape).to(x.dtype)
        x = (x - gray) * f + gray
    return x.clamp_(0, 1), masks


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalization (what torchvision's pretrained weights expect)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


# ---------------------------------------------------------------------------------------------- targeted (issue 21)
# Chosen by ``audit mitigate --method augment`` from the profile's covariate-shift / shortcut findings; each is
# applied per sample with its probability, after :func:`augment_batch` (images only: masks are unchanged).
EXTRA_AUGMENTS = ("grayscale", "color_jitter", "blur", "sharpen")


def _blur3(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    k2 = (k[:, None] * k[None, :] / 16.0).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2, groups=x.shape[1])


def extra_augment(x: torch.Tensor, spec, gen: torch.Generator) -> torch.Tensor:
    """``spec``: ``((name, probability), ...)`` with names from :data:`EXTRA_AUGMENTS`. ``grayscale``: luminance in
    all channels; ``color_jitter``: per-channel gains in [0.6, 1.4] (shifts hue and colour balance); ``blur``: 3x3
    binomial blur; ``sharpen``: unsharp mask of strength 1.5."""
    b, dev = x.shape[0], x.device
    for name, prob in spec:
        hit = (torch.rand(b, generator=gen, device=dev) < float(prob)).view(b, 1, 1, 1)
        if name == "grayscale":
            y = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        elif name == "color_jitter":
            y = x * _uniform(b * x.shape[1], 0.6, 1.4, gen, dev).view(b, x.shape[1], 1, 1).to(x.dtype)
        elif name == "blur":
            y = _blur3(x)
        elif name == "sharpen":
            y = x + 1.5 * (x - _blur3(x))
        else:
            raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(EXTRA_AUGMENTS)}")
        x = torch.where(hit, y, x).clamp(0, 1)
    return x
