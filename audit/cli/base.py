"""The ``audit`` Typer app, its global options and the error handling every command shares.

Exit codes: 0 ok, 1 policy failed (``audit check``) or a stage failed, 2 usage or input error
(one-line message, no traceback unless ``--debug``).
"""

from __future__ import annotations

import errno
import functools
from enum import StrEnum
from typing import Annotated, Optional

import typer

from audit import __version__
from audit.core.protocols import ENGINES, TASKS, TRAIN_PROTOCOLS
from audit.errors import AuditError

__all__ = ["app", "fiftyone_app", "handle_errors", "Task", "DemoTask", "Protocol", "Engine", "summary_console",
           "is_default", "last_error"]

app = typer.Typer(
    name="audit",
    help="Audit image datasets for bias and measure how models trained on them generalize.",
    no_args_is_help=True,
    add_completion=True,  # audit --install-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
fiftyone_app = typer.Typer(help="FiftyOne integration: export a run to a FiftyOne dataset.", no_args_is_help=True)
app.add_typer(fiftyone_app, name="fiftyone")

_STATE: dict = {"debug": False, "quiet": False, "error": None}


#: ``--task`` choices (and ``audit demo``'s, plus ``all``): the one list of :mod:`audit.core.protocols`
Task = StrEnum("Task", {t: t for t in TASKS})
DemoTask = StrEnum("DemoTask", {**{t: t for t in TASKS}, "all": "all"})


#: ``--protocol`` choices: the one list of :mod:`audit.core.protocols`
Protocol = StrEnum("Protocol", {p: p for p in TRAIN_PROTOCOLS})


Engine = StrEnum("Engine", {e: e for e in ENGINES})


def handle_errors(fn):
    """Turn :class:`AuditError` into a one-line message and its exit code (traceback only with --debug).

    With ``--json`` (a ``json_out`` keyword of the command) stdout gets one JSON document, also when the command
    fails (``{"error": ..., "exit_code": ...}``), and everything else the command prints goes to stderr.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _STATE["error"] = None
        if kwargs.get("json_out"):
            from audit.cli.jsonout import json_command

            return json_command(lambda: _handled(fn, args, kwargs), last_error=last_error)
        return _handled(fn, args, kwargs)

    return wrapper


def _handled(fn, args, kwargs):
    try:
        return _call(fn, *args, **kwargs)
    except AuditError as e:
        if _STATE["debug"]:
            raise
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt as e:  # Ctrl+C, SIGTERM, SIGHUP: the stage is already recorded "interrupted"
        from audit.core.signals import exit_code, signal_name

        sig = signal_name(e.signum) if hasattr(e, "signum") else "SIGINT"
        _fail(f"interrupted by {sig}; re-run the same command to resume", exit_code(e))
    except typer.Exit:
        raise
    except OSError as e:
        if _STATE["debug"] or e.errno not in _ENV_ERRNOS:
            raise
        # the machine, not the tool: a full disk, a read-only or forbidden folder -> one line, exit 2
        where = f" ({e.filename})" if e.filename else ""
        _fail(f"{e.strerror or e}{where}; earlier outputs are left as they were", 2)
    except Exception as e:  # an unexpected bug: still one line, with a hint
        if _STATE["debug"]:
            raise
        _fail(f"{type(e).__name__}: {e} (re-run with --debug for the traceback)", 1)


def _fail(msg: str, code: int):
    """Print the one-line error, remember it for ``--json`` and exit with ``code``."""
    line = msg.splitlines()[0] if msg else msg
    _STATE["error"] = line
    from audit.console import print_error

    print_error(line)
    raise typer.Exit(code) from None


def last_error() -> str | None:
    """The one-line message of the last failed command (what ``--json`` puts under ``error``)."""
    return _STATE.get("error")


_ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _call(fn, *args, **kwargs):
    """Run a command and release the run-directory locks it took, also when it fails."""
    from audit.rundir import release_locks

    try:
        return fn(*args, **kwargs)
    finally:
        release_locks()


def _version(value: bool) -> None:
    if value:
        from audit.console import echo

        echo(f"imgaudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, short output.")] = False,
    progress: Annotated[
        Optional[str],
        typer.Option("--progress", help="auto (bar on a terminal, plain lines elsewhere), bar, plain or none; "
                                        "default from AUDIT_PROGRESS."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _STATE["debug"] = debug
    _STATE["quiet"] = quiet
    from audit.progress import MODES, set_mode, set_quiet

    if progress is not None and progress not in MODES:
        raise typer.BadParameter(f"must be one of {', '.join(MODES)}", param_hint="--progress")
    set_quiet(quiet)
    set_mode(progress)


def summary_console(*, stderr: bool = False):
    """The console a command prints its summary on (stderr under ``--json``: stdout holds the document): the one
    factory :func:`audit.console.make_console`."""
    from audit.console import make_console

    return make_console(stderr=stderr)


def is_default(param: str) -> bool:
    """Whether the current command's option was left at its default (not given on the command line)."""
    src = (ctx := __import__("click").get_current_context(silent=True)) and ctx.get_parameter_source(param)
    return src is None or src.name in ("DEFAULT", "DEFAULT_MAP")
