"""The error hierarchy.  The CLI turns each into one clear message and an exit status.

Exit statuses (documented in docs/cli.md):

==  =========================================================
0   success
1   a run failed (at least one run was recorded as failed/interrupted/lost)
2   the workflow or the command line is invalid (nothing ran)
3   a plugin could not be loaded (strict mode) or is missing
4   a host or the lab is unreachable / prerequisites missing
5   the results store could not be read or written
6   the hosts are reserved by another run (``migflow run --no-wait``)
70  internal error (an unexpected exception: a bug)
130 interrupted by Ctrl-C
==  =========================================================
"""

from __future__ import annotations

import os
from enum import IntEnum

__all__ = [
    "ExitCode",
    "HostError",
    "MigflowError",
    "PluginError",
    "PrerequisiteError",
    "StepError",
    "StoreError",
    "ValidationIssue",
    "WorkflowError",
    "debug_enabled",
]


class ExitCode(IntEnum):
    """The exit statuses of the ``migflow`` command (docs/cli.md)."""

    OK = 0
    RUN_FAILED = 1  #: a run was recorded failed, interrupted or lost
    INVALID = 2  #: the workflow or the command line is invalid; nothing ran
    PLUGIN = 3  #: a plugin could not be loaded (strict mode) or is missing
    HOST = 4  #: a host or the lab is unreachable, or prerequisites are missing
    STORE = 5  #: the results store could not be read or written
    BUSY = 6  #: the hosts are reserved by another run (``--no-wait``)
    INTERNAL = 70  #: an unexpected exception: a bug
    INTERRUPTED = 130  #: Ctrl-C


def debug_enabled() -> bool:
    """Show tracebacks of unexpected errors?  ``migflow --debug`` or ``MIGFLOW_DEBUG=1``."""
    return os.environ.get("MIGFLOW_DEBUG", "") not in ("", "0", "false", "no")


class MigflowError(Exception):
    """Base class: an expected failure with a message for the user."""

    exit_code: ExitCode = ExitCode.RUN_FAILED

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, then the hint
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ValidationIssue:
    """One problem found in a workflow: where it is and what was expected."""

    __slots__ = ("file", "line", "message", "path")

    def __init__(self, file: str, line: int | None, path: str, message: str):
        self.file, self.line, self.path, self.message = file, line, path, message

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}"

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class WorkflowError(MigflowError):
    """The workflow file is malformed or violates the schema.  Carries every issue."""

    exit_code = ExitCode.INVALID

    def __init__(self, issues: list[ValidationIssue], *, hint: str | None = None):
        self.issues = list(issues)
        n = len(self.issues)
        head = f"{n} problem{'s' if n != 1 else ''} found:"
        super().__init__("\n".join([head, *("  " + str(i) for i in self.issues)]), hint=hint)


class UsageError(MigflowError):
    """A command-line value is wrong."""

    exit_code = ExitCode.INVALID


class PluginError(MigflowError):
    """A plugin failed to load (strict mode), or something a workflow names is not provided."""

    exit_code = ExitCode.PLUGIN


class HostError(MigflowError):
    """A host cannot be reached or the lab is not usable."""

    exit_code = ExitCode.HOST


class PrerequisiteError(HostError):
    """Something the machine lacks (package, user, root, /dev/kvm); the message names the fix."""


class StoreError(MigflowError):
    """The results store could not be read or written."""

    exit_code = ExitCode.STORE


class StepError(MigflowError):
    """A step failed during a run (recorded in the results, not fatal to the command)."""


__all__.append("UsageError")
