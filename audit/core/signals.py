"""Stopping a run: SIGTERM, SIGINT and SIGHUP unwind like Ctrl+C, so every stage records ``interrupted`` at once.

:func:`install` (called by the CLI) replaces the handlers of the three signals with one that raises
:class:`Interrupted`, a ``KeyboardInterrupt``: ``finally:`` blocks and atomic writes still run,
:meth:`audit.rundir.RunDir.stage` writes the stage ``interrupted`` (with the signal and the time) before the
exception leaves it, and the CLI exits ``128 + signal`` (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
A second signal while unwinding is ignored, so cleanup is not cut short.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["Interrupted", "install", "exit_code", "signal_name"]

_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGINT", "SIGHUP")) if s is not None)
_unwinding = False


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM, SIGINT or SIGHUP."""

    def __init__(self, signum: int = int(signal.SIGINT)):
        super().__init__(signal_name(signum))
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(signum).name
    return f"signal {signum}"


def exit_code(exc: BaseException) -> int:
    """The exit status for an interruption: ``128 + signal`` (130 for a plain ``KeyboardInterrupt``)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 130


def _handler(signum, frame) -> None:  # noqa: ARG001
    global _unwinding
    if _unwinding:
        return
    _unwinding = True
    raise Interrupted(signum)


def install() -> None:
    """Install the handler for SIGTERM, SIGINT and SIGHUP (main thread only; elsewhere a no-op)."""
    global _unwinding
    if threading.current_thread() is not threading.main_thread():
        return
    _unwinding = False
    for s in _SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(s, _handler)
