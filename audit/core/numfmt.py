"""One number formatter for messages, reports and check results."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_number"]


def format_number(v: Any, digits: int = 3, *, nan: str = "n/a", thousands: bool = True) -> str:
    """``v`` with ``digits`` decimals; integers without decimals (``1,234`` with ``thousands``); ``None`` is
    ``n/a``, NaN is ``nan``; anything that is not a number is ``str(v)``.

    >>> format_number(1234.0), format_number(0.12345), format_number(float("nan"), nan="nan", thousands=False)
    ('1,234', '0.123', 'nan')
    """
    if v is None:
        return "n/a"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return nan
    if f.is_integer():
        return f"{int(f):,}" if thousands else str(int(f))
    return f"{f:.{digits}f}"
