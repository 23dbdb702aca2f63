"""Training objectives beyond plain ERM, used by ``audit mitigate`` (:mod:`audit.mitigate`, issue 21).

Both take per-row arrays indexed like the :class:`~audit.train.trainer.BatchSource` rows and are called per batch
as ``objective(logits, targets, rows)``:

* :class:`WeightedLoss`: the mean of ``w_i * loss_i`` (loss reweighting; the weights have mean 1 over the rows);
* :class:`GroupDRO`: online GroupDRO (Sagawa et al. 2020, Algorithm 1): per-group mean losses in the batch, group
  weights ``q_g <- q_g * exp(eta * loss_g)`` renormalized, loss ``sum_g q_g * loss_g``; ``q`` lives for the whole fit
  (saved in the epoch checkpoint, so a resumed fit continues with the same ``q``).

Per-sample losses are cross-entropy (segmentation: per-image mean pixel cross-entropy over non-ignored pixels).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["WeightedLoss", "GroupDRO", "per_sample_loss", "make_objective"]


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, task: str, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy per sample ``[B]`` (segmentation: mean over the image's labelled pixels)."""
    if task == "classify":
        return F.cross_entropy(logits, y, reduction="none")
    pix = F.cross_entropy(logits, y, reduction="none", ignore_index=ignore_index)
    valid = (y != ignore_index).to(pix.dtype)
    return (pix * valid).sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp_min(1.0)


class WeightedLoss:
    """``mean(w[rows] * loss)``: per-row loss weights."""

    def __init__(self, weights, task: str, device: torch.device, ignore_index: int = 255):
        self.w = torch.as_tensor(np.asarray(weights, dtype=np.float32), device=device)
        self.task, self.ignore_index = task, ignore_index

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        w = self.w[rows.to(self.w.device)]
        return (w * per_sample_loss(logits, y, self.task, self.ignore_index)).mean()


class GroupDRO:
    """Online GroupDRO over the group id of each row (``q`` starts uniform, step size ``eta``)."""

    def __init__(self, groups, eta: float, task: str, device: torch.device, ignore_index: int = 255):
        g = np.asarray(groups, dtype=np.int64)
        self.g = torch.as_tensor(g, device=device)
        self.n_groups = int(g.max()) + 1 if len(g) else 1
        self.q = torch.full((self.n_groups,), 1.0 / self.n_groups, device=device)
        self.eta, self.task, self.ignore_index = float(eta), task, ignore_index

    def state_dict(self) -> dict:
        """What a resumed fit needs to continue with the same group weights (saved in the epoch checkpoint)."""
        return {"q": self.q.detach().to("cpu", copy=True)}

    def load_state_dict(self, state: dict) -> None:
        q = torch.as_tensor(state["q"], dtype=self.q.dtype)
        if q.shape != self.q.shape:
            raise ValueError(f"GroupDRO state has {q.numel()} groups, this fit has {self.n_groups}")
        self.q = q.to(self.q.device)

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        losses = per_sample_loss(logits, y, self.task, self.ignore_index)
        g = self.g[rows.to(self.g.device)]
        sums = torch.zeros(self.n_groups, device=losses.device, dtype=losses.dtype).index_add(0, g, losses)
        counts = torch.bincount(g, minlength=self.n_groups).to(losses.dtype)
        group_loss = sums / counts.clamp_min(1.0)
        with torch.no_grad():
            present = (counts > 0).to(losses.dtype)
            q = self.q * torch.exp(self.eta * group_loss.detach() * present)
            self.q = q / q.sum()
        return (self.q * group_loss).sum()


def make_objective(cfg, device: torch.device, ignore_index: int = 255):
    """The objective a :class:`~audit.train.trainer.FitConfig` asks for, or None for the plain loss.

    ``loss="groupdro"`` needs ``row_groups``; ``row_weights`` other than 0/1 give a :class:`WeightedLoss`
    (0/1 weights only leave rows out, which the trainer does itself)."""
    if cfg.loss == "groupdro":
        if cfg.row_groups is None:
            raise ValueError("loss='groupdro' needs row_groups")
        return GroupDRO(cfg.row_groups, cfg.dro_eta, cfg.task, device, ignore_index)
    if cfg.loss != "erm":
        raise ValueError(f"unknown loss {cfg.loss!r}; choose erm or groupdro")
    if cfg.row_weights is not None:
        w = np.asarray(cfg.row_weights, dtype=np.float64)
        if not np.isin(w, (0.0, 1.0)).all():
            return WeightedLoss(w, cfg.task, device, ignore_index)
    return None
