"""Waiting on a condition in tests: poll until it holds, never a fixed sleep that decides the outcome."""

from __future__ import annotations

import time


def wait_for(cond, timeout: float, what: str, proc=None, *, exited: str = "check"):
    """Poll ``cond()`` every 50 ms until it returns something true, and return that value.

    ``proc`` (a ``subprocess.Popen``): when it has ended, ``exited="check"`` returns ``cond()`` once more (a
    process that wrote what was awaited and then exited is fine), ``exited="raise"`` fails the test with its exit
    code. Times out with an ``AssertionError`` naming ``what``.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            if exited == "raise":
                raise AssertionError(f"the process ended (rc={proc.returncode}) before {what}")
            return cond()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
