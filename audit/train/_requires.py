"""The training stage needs the ``[train]`` extra: importing :mod:`audit.train` without torch says which to install."""

from audit.errors import require_extra

REQUIRED = ("torch", "torchvision")

require_extra("training", "train", "PyTorch (torch and torchvision)", REQUIRED)
