"""Diagnostics through :mod:`logging`: every module logs to a child of the ``audit`` logger.

The package logger has only a :class:`logging.NullHandler` (added in :mod:`audit`), so nothing is shown until the
application configures logging, as the logging HOWTO asks of libraries. Progress lines (:mod:`audit.progress`)
and the console summaries are output, not diagnostics: they do not go through here.

>>> import logging
>>> logging.getLogger("audit.train").parent.name
'audit'

To see them from a script or a notebook::

    import audit.log
    audit.log.enable("DEBUG")          # or logging.basicConfig(level=logging.INFO)
"""

from __future__ import annotations

import logging
from typing import IO

__all__ = ["LOGGER_NAME", "get_logger", "enable"]

LOGGER_NAME = "audit"
_FORMAT = "%(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` under the ``audit`` hierarchy (``__name__`` of an ``audit.*`` module)."""
    if name != LOGGER_NAME and not name.startswith(LOGGER_NAME + "."):
        name = f"{LOGGER_NAME}.{name}"
    return logging.getLogger(name)


def enable(level: int | str = "INFO", *, stream: IO[str] | None = None) -> logging.Handler:
    """Show imgaudit's diagnostics at ``level`` and above on ``stream`` (default: stderr).

    Adds one ``logging.StreamHandler`` to the ``audit`` logger (a second call replaces it) and returns it.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        if getattr(h, "_audit_enable", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler._audit_enable = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    return handler
