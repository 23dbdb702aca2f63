"""Exceptions shared by every stage.

`UsageError` (and subclasses) mean "the user asked for something that cannot work": the CLI prints the
message on one line and exits with code 2, without a traceback unless ``--debug``.
"""

from __future__ import annotations

__all__ = ["AuditError", "UsageError", "InputError", "RunDirError", "LockedError", "StageError", "MissingExtraError",
           "require_extra"]


class AuditError(Exception):
    """Base class of every error raised on purpose by imgaudit."""

    exit_code = 2


class UsageError(AuditError):
    """Bad arguments or configuration (exit code 2)."""


class InputError(UsageError):
    """The input data (manifest, table, folder) cannot be used as given (exit code 2)."""


class RunDirError(UsageError):
    """The run directory is missing, incomplete or not writable (exit code 2)."""


class LockedError(RunDirError):
    """Another process holds the run directory's lock."""


class MissingExtraError(UsageError, ImportError):
    """A feature needs an optional extra that is not installed; the message says what to ``pip install``.

    Also an ``ImportError``, so code that probes for an optional part (``try: import ... except
    ImportError``) keeps working.
    """

    def __init__(self, feature: str, extra: str, packages: str):
        self.extra = extra
        super().__init__(f"{feature} needs {packages}, which this installation lacks: pip install 'imgaudit[{extra}]'")


class StageError(AuditError):
    """A stage failed for a reason that is not the user's input (exit code 1)."""

    exit_code = 1


def require_extra(feature: str, extra: str, packages: str, modules: tuple[str, ...]) -> None:
    """Raise :class:`MissingExtraError` unless every one of ``modules`` can be imported (found, not imported)."""
    import importlib.util

    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder that refuses it; a module without a spec in sys.modules
            found = False
        if not found:
            raise MissingExtraError(feature, extra, packages)
