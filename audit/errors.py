"""Exceptions shared by every stage.

`UsageError` (and subclasses) mean "the user asked for something that cannot work": the CLI prints the
message on one line and exits with code 2, without a traceback unless ``--debug``.
"""

from __future__ import annotations

__all__ = ["AuditError", "UsageError", "InputError", "RunDirError", "LockedError", "StageError"]


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


class StageError(AuditError):
    """A stage failed for a reason that is not the user's input (exit code 1)."""

    exit_code = 1
