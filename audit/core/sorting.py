"""The natural sort key: numbers by value before text, text by its characters."""

from __future__ import annotations

__all__ = ["natural_key", "natural_sorted"]


def natural_key(s: object) -> tuple[int, float, str]:
    """Sort key that orders ``"2"`` before ``"10"`` and numbers before text.

    >>> sorted(["10", "b", "2", "a"], key=natural_key)
    ['2', '10', 'a', 'b']
    """
    try:
        return (0, float(s), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(s))


def natural_sorted(values) -> list[str]:
    """The distinct values as strings, naturally sorted.

    >>> natural_sorted([3, "1", 1, "x"])
    ['1', '3', 'x']
    """
    return sorted({str(v) for v in values}, key=natural_key)
