"""TrainConfig: frozen, keyword-only, validated on construction; one option definition shared with DDP."""

from __future__ import annotations

import dataclasses

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
