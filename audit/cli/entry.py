"""The console-script entry point: signal handlers, global flags anywhere on the command line, then the app."""

from __future__ import annotations

import os
import sys

from audit.cli.base import app

__all__ = ["main", "hoist_global_flags"]


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    from audit.core.signals import install

    install()  # SIGTERM/SIGHUP unwind like Ctrl+C: stages record "interrupted", exit 128 + signal
    app(args=hoist_global_flags(sys.argv[1:]), prog_name="audit")


_GLOBAL_FLAGS = ("--quiet", "-q", "--debug")


def hoist_global_flags(args: list[str]) -> list[str]:
    """Let ``--quiet``/``--debug`` appear anywhere (``audit profile DATA --quiet``), not only before the command."""
    if "--" in args:
        cut = args.index("--")
        head, tail = args[:cut], args[cut:]
    else:
        head, tail = args, []
    flags, rest, i = [], [], 0
    while i < len(head):
        a = head[i]
        if a in _GLOBAL_FLAGS or a.startswith("--progress="):
            flags.append(a)
        elif a == "--progress" and i + 1 < len(head):
            flags += [a, head[i + 1]]
            i += 1
        else:
            rest.append(a)
        i += 1
    return flags + rest + tail
