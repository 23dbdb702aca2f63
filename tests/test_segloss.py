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


class _Background(torch.nn.Module):
    """A segmenter stuck on background: a 1x1 conv whose background bias dwarfs everything it can learn."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.bias.copy_(torch.tensor([50.0, -50.0]))

    def forward(self, x):
        return self.conv(x)


def _masks(n=8, size=16):
    imgs = torch.full((n, 3, size, size), 100, dtype=torch.uint8)
    masks = torch.zeros(n, size, size, dtype=torch.uint8)
    masks[:, :4, :] = 1
    return imgs, masks


def test_without_validation_rows_no_val_score_is_stored_and_the_stuck_warning_uses_training_batches():
    from audit.train.trainer import BatchSource, FitConfig, fit

    imgs, masks = _masks()
    src = BatchSource(imgs, masks, torch.device("cpu"))
    cfg = FitConfig(task="segment", n_classes=2, epochs=3, batch_size=4, lr=1e-6)
    torch.manual_seed(0)
    res = fit(_Background(), src, np.arange(8), np.array([], dtype=np.int64), cfg, seed=0)
    # the selection rank (the epoch index) is never passed off as a score: no validation rows, no val score
    assert res.best_score is None and res.best_epoch == 2
    assert res.selection.startswith("last epoch")
    assert all("val_score" not in h for h in res.history)
    assert all(h["train_fg_iou"] == 0.0 for h in res.history)
    warned = [h for h in res.history if h.get("warning")]
    assert [h["epoch"] for h in warned] == [1]  # after 2 epochs, once
    assert "training batches" in warned[0]["warning"] and "background everywhere" in warned[0]["warning"]
    assert any(n.startswith("foreground IoU") for n in res.notes)


def test_the_console_prints_no_val_rows_instead_of_a_score(tmp_path):
    from rich.console import Console

    from audit.console import _print_train

    con = Console(record=True, width=200)
    _print_train(con, {"model": "m", "protocol": "lodo", "n_rows": 8, "n_used": 8, "folds": [
        {"fold": "holdout=P", "val_score": None, "val_metric": "fg_iou", "status": "trained", "n_val": 0},
        {"fold": "holdout=Q", "val_score": 0.25, "val_metric": "fg_iou", "status": "trained", "n_val": 4}]})
    text = con.export_text()
    assert "holdout=P: no val rows (last epoch)" in text and "holdout=Q: val fg_iou 0.250" in text
    assert "2.000" not in text


def test_groupdro_q_is_checkpointed_and_a_resumed_fit_continues_with_it(tmp_path):
    from audit.train.objectives import GroupDRO
    from audit.train.trainer import BatchSource, FitConfig, fit

    g = torch.Generator().manual_seed(0)
    n = 32
    imgs = (torch.rand(n, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 2, (n,), generator=g)
    groups = np.r_[np.zeros(24, np.int64), np.ones(8, np.int64)]
    src = BatchSource(imgs, y, torch.device("cpu"))
    cfg = FitConfig(task="classify", n_classes=2, epochs=4, batch_size=8, lr=1e-2, loss="groupdro",
                    row_groups=groups, dro_eta=0.5)
    tr, va = np.arange(n), np.arange(24, 32)

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))

    full = fit(model(), src, tr, va, cfg, seed=3)

    def boom(epoch, rec):
        if epoch == 1:
            raise RuntimeError("killed")

    ckpt = tmp_path / "f.pt"
    with pytest.raises(RuntimeError):
        fit(model(), src, tr, va, cfg, seed=3, ckpt_path=ckpt, ckpt_hash="h", on_epoch=boom)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    q = saved["objective"]["q"]
    assert q.shape == (2,) and float(q.sum()) == pytest.approx(1.0)
    assert not torch.allclose(q, torch.full((2,), 0.5))  # q moved during the first epochs: it must be kept
    res = fit(model(), src, tr, va, cfg, seed=3, ckpt_path=ckpt, ckpt_hash="h")
    assert res.resumed_from == 2
    # the same q after the resume: the same losses and weights as the uninterrupted fit
    assert [h["train_loss"] for h in res.history] == pytest.approx([h["train_loss"] for h in full.history], rel=1e-6)
    for k, v in full.best_state.items():
        assert torch.allclose(v, res.best_state[k]), k
    dro = GroupDRO(groups, 0.5, "classify", torch.device("cpu"))
    dro.load_state_dict({"q": q})
    assert torch.equal(dro.q, q)
    with pytest.raises(ValueError):
        dro.load_state_dict({"q": torch.ones(3) / 3})
