"""TrainConfig: frozen, keyword-only, validated on construction; one option definition shared with DDP."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from audit.errors import UsageError
from audit.train import TrainConfig, train_config
from audit.train.ddp import _flags, _parser


def test_train_config_refuses_an_unknown_keyword_by_name():
    with pytest.raises(TypeError, match=r"train\(\) got an unexpected keyword argument 'epoch' .*'epochs'"):
        train_config(epoch=3)
    assert train_config(epochs=3).epochs == 3


def test_config_is_frozen_and_keyword_only():
    cfg = TrainConfig(epochs=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        TrainConfig("classify")  # type: ignore[misc]


@pytest.mark.parametrize("kw, msg", [
    ({"epochs": 0}, "--epochs"), ({"seeds": 0}, "--seeds"), ({"batch_size": 1}, "--batch-size"),
    ({"lr": float("nan")}, "--lr"), ({"lr": -1.0}, "--lr"), ({"image_size": 4}, "--image-size"),
    ({"patience": 0}, "patience"), ({"engine": "spark"}, "--engine"), ({"task": "detect"}, "--task"),
    ({"protocol": "kfold"}, "--protocol"), ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction"),
])
def test_invalid_values_are_usage_errors_at_construction(kw, msg):
    with pytest.raises(UsageError, match=msg):
        train_config(**kw)


def test_ddp_flags_are_the_config_fields():
    dests = {a.dest for a in _parser()._actions} - {"help", "run", "timeout"}
    assert dests == {f.name for f in dataclasses.fields(TrainConfig)}
    args = _parser().parse_args(["R", "--epochs", "2", "--balanced", "--no-amp", "--protocol", "split"])
    cfg = train_config(**{k: v for k, v in vars(args).items() if k not in ("run", "timeout")})
    assert (cfg.epochs, cfg.balanced, cfg.amp, cfg.protocol) == (2, True, False, "split")
    assert cfg == dataclasses.replace(TrainConfig(), epochs=2, balanced=True, amp=False, protocol="split")


def test_ddp_flags_round_trip_through_the_command_line():
    want = train_config(epochs=3, model="small_cnn", balanced=True, amp=False, lr=0.01, image_size=16)
    flags = {k: v for k, v in dataclasses.asdict(want).items() if v is not None}
    args = _parser().parse_args(["R", *_flags(flags)])
    got = train_config(**{k: v for k, v in vars(args).items() if k not in ("run", "timeout")})
    assert got == want
    with pytest.raises(SystemExit):
        _parser().parse_args(["R", "--protocol", "kfold"])  # choices from the same field


# one valid, non-default value per TrainConfig field: a new field fails the test below until it is added here
_NON_DEFAULT = {
    "task": "segment", "model": "small_unet", "protocol": "split", "epochs": 3, "batch_size": 4, "lr": 0.01,
    "image_size": 16, "device": "cpu", "seeds": 2, "seed": 5, "weights": Path("/tmp/w.pth"), "pretrained": True,
    "compile": True, "balanced": True, "workers": 3, "engine": "ray", "ray_address": "ray://head:10001",
    "amp": False, "val_fraction": 0.1, "test_fraction": 0.3, "patience": 2, "augment": False, "hflip": True,
    "mode": "finetune", "seg_loss": "dice_ce", "time_budget": "1h30m", "auto_epochs": True,
}


def _parse(argv: list[str]) -> TrainConfig:
    """What a DDP rank builds from its command line (as :func:`audit.train.ddp.main` does)."""
    args = _parser().parse_args(["R", *argv])
    return train_config(**{k: v for k, v in vars(args).items() if k not in ("run", "timeout")})


def test_every_config_field_survives_the_trip_to_the_ddp_ranks():
    fields = dataclasses.fields(TrainConfig)
    assert set(_NON_DEFAULT) == {f.name for f in fields}
    for f in fields:
        assert _NON_DEFAULT[f.name] != f.default, f.name
    want = train_config(**_NON_DEFAULT)
    assert _parse(_flags(want)) == want  # config -> argv -> config, every field at once
    for name, value in _NON_DEFAULT.items():  # and each field alone (nothing hides behind another)
        one = train_config(**{name: value})
        argv = _flags(one)
        assert argv and argv[0].replace("--no-", "--") == "--" + name.replace("_", "-"), (name, argv)
        assert _parse(argv) == one, name
    assert _flags(TrainConfig()) == []  # defaults need no flags


def test_ddp_flags_refuse_an_unknown_key_by_name():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'epoch' .*'epochs'"):
        _flags({"epoch": 3, "seg_loss": "dice_ce"})
    assert _flags({"seg_loss": "dice_ce", "timeout": 60}) == ["--seg-loss", "dice_ce", "--timeout", "60"]


def _capture_launch(monkeypatch) -> list:
    from audit.train import ddp

    seen: list = []
    monkeypatch.setattr(ddp, "launch", lambda run_dir, nproc, options=(), **kw: seen.append(list(options)) or 0)
    return seen


def test_cli_distributed_passes_every_option(classify_run, monkeypatch):
    from typer.testing import CliRunner

    from audit.cli import app

    seen = _capture_launch(monkeypatch)
    r = CliRunner().invoke(app, ["--quiet", "train", str(classify_run.path), "--distributed", "2", "--seg-loss",
                                 "dice_ce", "--time-budget", "1h", "--ray-address", "ray://h:1", "--mode", "finetune",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    cfg = _parse(seen[0])
    assert (cfg.seg_loss, cfg.time_budget, cfg.ray_address, cfg.mode) == ("dice_ce", "1h", "ray://h:1", "finetune")
    assert cfg.auto_epochs and cfg.epochs == 8  # --epochs not given: the plan may lower them, as in a local run


def test_api_distributed_passes_every_option(classify_run, monkeypatch):
    from audit.api.stages import train

    seen = _capture_launch(monkeypatch)
    train(classify_run.path, distributed=2, seg_loss="dice_ce", time_budget="20m", epochs=3)
    cfg = _parse(seen[0])
    assert (cfg.seg_loss, cfg.time_budget, cfg.epochs, cfg.auto_epochs) == ("dice_ce", "20m", 3, False)
