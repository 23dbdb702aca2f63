"""Every registry model trains one step and predicts on tiny inputs; weights loading and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.errors import UsageError
from audit.train.models import MODELS, build_model, default_model, forward_logits, hub_weights_path, load_weights

# ResNet-50-sized segmenters take a few seconds for one CPU step at 64 px; the rest run at 32 px
HEAVY = {"fcn_resnet50", "deeplabv3_resnet50"}


def _one_step(name: str, size: int) -> None:
    torch.manual_seed(0)
    spec = MODELS[name]
    k = 3
    model, info = build_model(name, k, task=spec.task)
    assert info["parameters"] > 0
    x = torch.rand(2, 3, size, size)
    if spec.task == "classify":
        y = torch.tensor([0, 2])
    else:
        y = torch.randint(0, k, (2, size, size))
        y[0, 0, 0] = 255  # ignore index must be accepted
    for m in model.modules():  # running stats = this batch's stats, so one step gives a sane eval-mode model
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    out = forward_logits(model, x)
    expected = (2, k) if spec.task == "classify" else (2, k, size, size)
    assert tuple(out.shape) == expected
    loss = torch.nn.functional.cross_entropy(out, y, ignore_index=255)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    opt.step()
    model.eval()
    with torch.inference_mode():
        pred = forward_logits(model, x[:1])
    assert tuple(pred.shape) == (1, *expected[1:])
    assert torch.isfinite(pred).all()


@pytest.mark.parametrize("name", sorted(n for n in MODELS if n not in HEAVY))
def test_every_model_trains_one_step_and_predicts(name):
    torch.set_num_threads(2)
    _one_step(name, 64 if MODELS[name].task == "classify" and not MODELS[name].small else 32)


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_heavy_models_train_one_step_and_predict(name):
    _one_step(name, 64)


def test_registry_covers_the_issue_list():
    want = {
        "classify": {"resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large",
                     "efficientnet_b0", "convnext_tiny", "small_cnn"},
        "segment": {"lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50",
                    "deeplabv3_resnet50", "small_unet"},
    }
    for task, names in want.items():
        assert names <= {n for n, s in MODELS.items() if s.task == task}


def test_small_unet_handles_odd_sizes():
    model, _ = build_model("small_unet", 2)
    assert tuple(model(torch.rand(1, 3, 30, 22)).shape) == (1, 2, 30, 22)


def test_default_model_by_image_size():
    assert default_model("classify", 32) == "small_cnn"
    assert default_model("classify", 224) == "resnet18"
    assert default_model("segment", 64) == "small_unet"
    assert default_model("segment", 512) == "lraspp_mobilenet_v3_large"


def test_unknown_model_and_wrong_task_are_usage_errors():
    with pytest.raises(UsageError, match="did you mean 'resnet18'"):
        build_model("resnet_18", 3)
    with pytest.raises(UsageError, match="segment model"):
        build_model("small_unet", 3, task="classify")


def test_weights_from_file_are_loaded_and_head_kept_random(tmp_path):
    torch.manual_seed(1)
    src, _ = build_model("small_cnn", 10)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    torch.manual_seed(2)
    model, info = build_model("small_cnn", 4, weights=path)  # other class count: head skipped
    w = info["weights"]
    assert w["loaded"] == w["total"] - 2 and w["skipped"] == 2  # classifier weight + bias
    a = dict(model.named_parameters())["features.0.0.weight"]
    assert torch.equal(a, dict(src.named_parameters())["features.0.0.weight"])
    # same class count: everything loads, predictions identical
    same, info2 = build_model("small_cnn", 10, weights=path)
    assert info2["weights"]["skipped"] == 0
    x = torch.rand(2, 3, 32, 32)
    src.eval()
    same.eval()
    assert torch.allclose(src(x), same(x))


def test_missing_or_mismatched_weights_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="does not exist"):
        build_model("small_cnn", 3, weights=tmp_path / "nope.pth")
    other, _ = build_model("small_unet", 3)
    p = tmp_path / "unet.pth"
    torch.save(other.state_dict(), p)
    with pytest.raises(UsageError, match="does not fit small_cnn"):
        build_model("small_cnn", 3, weights=p)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match="cannot read weights file"):
        build_model("small_cnn", 3, weights=junk)
    # --pretrained never downloads: an empty hub cache is a clear error naming the expected path
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UsageError, match="not in torch's cache"):
        build_model("resnet18", 3, pretrained=True)
    with pytest.raises(UsageError, match="no pretrained torchvision weights"):
        build_model("small_cnn", 3, pretrained=True)


def test_pretrained_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    import torchvision

    ref = torchvision.models.mobilenet_v3_small(weights=None)  # 1000-class layout, like the real file
    path = hub_weights_path(MODELS["mobilenet_v3_small"])
    assert path is not None and path.name.endswith(".pth") and str(tmp_path) in str(path)
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    model, info = build_model("mobilenet_v3_small", 5, pretrained=True)
    assert info["weights"]["skipped"] == 2  # the 1000-class head
    assert torch.equal(model.features[0][0].weight, ref.features[0][0].weight)


def test_load_weights_strips_ddp_and_compile_prefixes(tmp_path):
    src, _ = build_model("small_cnn", 3)
    sd = {"module." + k: v for k, v in src.state_dict().items()}
    torch.save(sd, tmp_path / "ddp.pth")
    dst, _ = build_model("small_cnn", 3)
    info = load_weights(dst, tmp_path / "ddp.pth")
    assert info["skipped"] == 0
    assert np.allclose(dst.classifier[1].weight.detach().numpy(), src.classifier[1].weight.detach().numpy())
