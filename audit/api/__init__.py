"""The Python API behind ``import audit`` (see :mod:`audit` for the public names)."""

from audit.api.groups import group_metrics
from audit.api.run import Run, open_run

__all__ = ["Run", "open_run", "group_metrics"]
