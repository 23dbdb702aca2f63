"""Small foregrounds: Dice + cross-entropy when the foreground is rare, and an early warning when a segmenter still
predicts background everywhere (issue 25)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from audit.train.segloss import DiceCELoss, choose_seg_loss, foreground_iou, stuck_message


def test_dice_ce_is_cross_entropy_plus_foreground_soft_dice():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, generator=g, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 5), generator=g)
    target[0, 0, 0] = 255  # ignored pixel
    loss = DiceCELoss(ignore_index=255)(logits, target)
    ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    valid = target != 255
    p = logits.softmax(1)
    dices = []
    for c in (1, 2):
        pc, tc = p[:, c][valid], (target[valid] == c).float()
        dices.append((2 * (pc * tc).sum() + 1) / (pc.sum() + tc.sum() + 1))
    ref = ce + (1 - torch.stack(dices)).mean()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_the_loss_choice_follows_the_foreground_share():
    small = torch.zeros(4, 20, 20, dtype=torch.uint8)
    small[:, :2, :] = 1  # 10% foreground
    assert choose_seg_loss(small, 2) == ("dice_ce", pytest.approx(0.1))
    big = torch.zeros(4, 20, 20, dtype=torch.uint8)
    big[:, :8, :] = 1
    assert choose_seg_loss(big, 2)[0] == "ce"
    assert choose_seg_loss(small, 2, requested="ce")[0] == "ce"  # an explicit choice wins
    ign = small.clone()
    ign[:, 10:, :] = 255  # ignored pixels are not counted as background
    assert choose_seg_loss(ign, 2)[1] == pytest.approx(0.2)


def test_the_stuck_warning_fires_only_on_an_exact_zero_after_two_epochs():
    assert foreground_iou(np.array([90, 0]), np.array([100, 10])) == 0.0
    assert stuck_message(0, 0.0) is None
    assert "background everywhere" in stuck_message(1, 0.0)
    assert stuck_message(5, 0.01) is None and stuck_message(5, float("nan")) is None


def _thin_lines(root, n=24, size=32, seed=0):
    """Thin bright lines on noise (~6% foreground), two sites; masks 0/1 PNGs."""
    rng = np.random.default_rng(seed)
    for site in ("east", "west"):
        for i in range(n):
            img = rng.normal(90 if site == "east" else 120, 20, (size, size)).clip(0, 255)
            mask = np.zeros((size, size), np.uint8)
            for _ in range(2):
                if rng.random() < 0.5:
                    mask[int(rng.integers(2, size - 2)), :] = 1
                else:
                    mask[:, int(rng.integers(2, size - 2))] = 1
            img[mask == 1] = 220
            for sub, arr in (("images", img.astype(np.uint8)), ("masks", mask)):
                p = root / sub / site / f"{i:03d}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(p)


def test_a_small_foreground_trains_with_dice_ce_and_says_so(tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app

    _thin_lines(tmp_path / "data")
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["profile", str(tmp_path / "data"), "--out", str(run)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["train", str(run), "--task", "segment", "--model", "small_unet", "--epochs", "3",
                                 "--protocol", "split"])
    assert r.exit_code == 0, r.output
    info = json.loads((run / "run.json").read_text())
    cfg = info["config"]["train"]
    assert cfg["seg_loss"] == "dice_ce" and 0.03 < cfg["foreground_share"] < 0.1
    assert any("Dice + cross-entropy" in n for n in info["stages"]["train"]["notes"])
    folds = info["stages"]["train"]["folds"]
    hist = json.loads(next((run / "train" / "folds").glob("*.json")).read_text())["history"]
    assert folds and all("val_fg_iou" in h for h in hist)
