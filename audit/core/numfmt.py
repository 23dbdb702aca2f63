"""One number formatter for messages, reports, check results and the dashboard."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_number"]


def format_number(
    v: Any,
    digits: int = 3,
    *,
    nan: str = "n/a",
    thousands: bool = True,
    missing: str | None = None,
    whole_from: float = 0.0,
    signed: bool = False,
) -> str:
    """``v`` with ``digits`` decimals; whole numbers without decimals (``1,234`` with ``thousands``).

    ``None`` is ``n/a`` and anything that is not a number is ``str(v)``, unless ``missing`` names the text for
    both; NaN is ``nan``. Whole numbers are written without decimals when their magnitude is at least
    ``whole_from`` (``1000``: ``5.000`` but ``1,000``); ``digits=0`` rounds every value to a whole number.
    ``signed`` puts ``+`` before a value that is written above zero (``+3``, but ``0``).

    >>> format_number(1234.0), format_number(0.12345), format_number(float("nan"), nan="nan", thousands=False)
    ('1,234', '0.123', 'nan')
    >>> format_number(5.0, whole_from=1000), format_number(None, missing="—"), format_number(2.0, 0, signed=True)
    ('5.000', '—', '+2')
    """
    if v is None:
        return "n/a" if missing is None else missing
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v) if missing is None else missing
    if math.isnan(f):
        return nan
    if math.isinf(f):
        text = f"{f:.{digits}f}"
    elif digits == 0 or (f.is_integer() and abs(f) >= whole_from):
        k = round(f)
        text = f"{k:,}" if thousands else str(k)
    else:
        text = f"{f:.{digits}f}"
    if signed and f > 0 and text.strip("0.,"):
        text = "+" + text
    return text
