"""Errors users see, each with an exit code and a hint that names the fix.

Exit codes: 0 ok, 1 a gate failed (artifacts written, marked failed), 2 usage / input / internal error.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_ERROR = 2


class EdgeslmError(Exception):
    """Base class: ``problem`` says what is wrong, ``hint`` how to fix it."""

    exit_code = EXIT_ERROR

    def __init__(self, problem: str, hint: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.problem}. {self.hint}" if self.hint else self.problem


class InputError(EdgeslmError):
    """The model, target, recipe or output path given cannot be used as it is."""


class InternalError(EdgeslmError):
    """An upstream compiler or runtime failed on input we accepted."""
