"""Segmentation losses for small foregrounds, and the early "still background everywhere" warning.

Cross-entropy alone lets a segmenter reach 92% pixel accuracy on retinal vessels (7.5% of pixels) by predicting
background everywhere, and it often stays there for the few epochs a CPU plan affords. When the foreground is a
small share of the training pixels, the stage trains with Dice + cross-entropy (the usual nnU-Net choice): the
soft Dice term over the foreground classes is scale-free, so a missed thin structure costs as much as a missed
large one. The choice is recorded in run.json with the share that made it.

Example::

    name, share = choose_seg_loss(masks, n_classes=2)   # ("dice_ce", 0.075) for vessels
    loss_fn = make_seg_loss(name, ignore_index=255)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SMALL_FOREGROUND", "DiceCELoss", "choose_seg_loss", "make_seg_loss", "foreground_iou", "stuck_message"]

#: below this share of foreground pixels in the training masks, train with Dice + cross-entropy
SMALL_FOREGROUND = 0.15
#: epochs after which a foreground IoU of exactly 0 on the validation rows is worth a warning
WARN_AFTER_EPOCHS = 2


class DiceCELoss(nn.Module):
    """Cross-entropy plus ``1 - soft Dice`` averaged over the foreground classes (1..C-1) present in the batch."""

    def __init__(self, ignore_index: int, smooth: float = 1.0):
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth
        self.ce = nn.CrossEntropyLoss(ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = self.ce(logits, target)
        c = logits.shape[1]
        if c < 2:
            return ce
        valid = (target != self.ignore_index).unsqueeze(1)
        prob = logits.softmax(1) * valid
        onehot = F.one_hot(torch.where(valid.squeeze(1), target, 0).long(), c).permute(0, 3, 1, 2).to(prob.dtype)
        onehot = onehot * valid
        dims = (0, 2, 3)
        inter = (prob * onehot).sum(dims)[1:]
        denom = prob.sum(dims)[1:] + onehot.sum(dims)[1:]
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        present = onehot.sum(dims)[1:] > 0
        dice_loss = (1 - dice[present]).mean() if bool(present.any()) else dice.new_zeros(())
        return ce + dice_loss


def choose_seg_loss(masks: torch.Tensor, n_classes: int, *, requested: str = "auto",
                    ignore_index: int = 255) -> tuple[str, float]:
    """``("ce" | "dice_ce", foreground share of the valid pixels)``; ``requested`` other than "auto" wins."""
    m = masks.reshape(-1)
    step = max(1, m.numel() // 20_000_000)  # a strided sample keeps this cheap on a big cache
    m = m[::step]
    valid = m != ignore_index
    n_valid = int(valid.sum())
    share = float(((m > 0) & valid).sum()) / n_valid if n_valid else 0.0
    if requested != "auto":
        return requested, share
    return ("dice_ce" if n_classes >= 2 and share < SMALL_FOREGROUND else "ce"), share


def make_seg_loss(name: str, *, ignore_index: int) -> nn.Module:
    if name == "dice_ce":
        return DiceCELoss(ignore_index)
    return nn.CrossEntropyLoss(ignore_index=ignore_index)


def foreground_iou(inter: np.ndarray, union: np.ndarray) -> float:
    """Mean IoU over the foreground classes with a non-empty union (NaN when none is present)."""
    inter, union = np.asarray(inter, float)[1:], np.asarray(union, float)[1:]
    ok = union > 0
    return float((inter[ok] / union[ok]).mean()) if ok.any() else float("nan")


def stuck_message(epoch: int, fg_iou: float) -> str | None:
    """The early warning when the validation foreground IoU is still exactly 0 after a few epochs."""
    if epoch + 1 >= WARN_AFTER_EPOCHS and fg_iou == 0.0:
        return (f"foreground IoU on the validation rows is still 0 after {epoch + 1} epoch(s): the model predicts "
                "background everywhere; train longer, raise --lr, use a pretrained encoder, or check the masks")
    return None
