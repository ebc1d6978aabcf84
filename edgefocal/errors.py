"""One exception family; cli.main maps it to exit codes (2 = bad input, 1 = a gate failed)."""
from __future__ import annotations


class EdgefocalError(Exception):
    """An error the user can fix: a message saying what was found, and a hint saying what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class BadInput(EdgefocalError):
    """A file, flag or recipe field that cannot be used as given."""


class MissingDependency(EdgefocalError):
    """An optional backend is not importable on this machine."""


class GateFailed(EdgefocalError):
    """A verification gate (accuracy drop, speedup, engine required) was not met."""

    exit_code = 1


class Interrupted(EdgefocalError):
    """The build was interrupted (Ctrl-C); nothing was written to the output directory."""

    exit_code = 130
