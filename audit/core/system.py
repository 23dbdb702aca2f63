"""What this machine lets the process use."""

from __future__ import annotations

import os

__all__ = ["usable_cores", "cpu_workers"]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def cpu_workers(requested: int | None = None) -> int:
    """Worker count: the request, or the usable cores."""
    if requested:
        return max(1, int(requested))
    return usable_cores()
