"""Errors users see, each with an exit code and a hint that names the fix.

Exit codes: 0 ok, 1 a gate failed (artifacts written, marked failed), 2 usage / input / internal error,
130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM (how CI cancels a job): 128 + the signal, as shells report it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_ERROR = 2
EXIT_SIGNAL_BASE = 128


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


class GateFailed(EdgeslmError):
    """What was asked to be refused unless its export passed (``--strict``) did not pass: exit 1, as a failed gate."""

    exit_code = EXIT_GATE_FAILED


class InternalError(EdgeslmError):
    """An upstream compiler or runtime failed on input we accepted."""


class Interrupted(BaseException):
    """Raised in the main thread when SIGINT or SIGTERM arrives, so every ``finally`` and temp-folder cleanup on
    the way out runs; a BaseException so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int, written: str | None = None):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = EXIT_SIGNAL_BASE + signum
        self.written = written  # what was already in place when the signal came (None: nothing was written)
