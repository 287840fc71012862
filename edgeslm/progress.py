"""Progress events: what an export tells its ``status`` callback, beyond the message text.

A ``status`` callback gets one ``str`` per stage, as it always has; the strings may be these subclasses, which
say more for a display that wants it (``edgeslm.progress_view`` draws a bar and a time left from them):

* :class:`Stage` — a stage begins (and the previous one ends), with the forecast's share of its time;
* :class:`Note` — a notice, not a stage (the current stage goes on); :class:`Plan` is the whole run's forecast.

Counts within a stage (modules quantized, prompts observed, bench runs) go to the callback's ``count``
method, where it has one (:func:`counter`); a plain function gets the messages only. Nothing here names a
backend or imports anything of edgeslm's: the model, parity, backends, latency and the pipeline all report
through it.
"""

from __future__ import annotations

from typing import Callable

Count = Callable[[int, int], None]
COUNT_LINE = "count "  # a child process's count on its stdout, "count DONE TOTAL" (the bench worker's runs)


class Stage(str):
    """A stage's message; ``forecast_s``: the export forecast's share of it (None: not forecast)."""

    forecast_s: float | None

    def __new__(cls, text: str, forecast_s: float | None = None) -> Stage:
        self = super().__new__(cls, text)
        self.forecast_s = forecast_s
        return self


class Note(str):
    """A notice (a context length capped, a recipe applying to some backends): printed, the stage goes on."""


class Plan(Note):
    """The forecast of the whole run, printed before the heavy work: ``seconds`` is what the time left starts
    from."""

    seconds: float

    def __new__(cls, text: str, seconds: float) -> Plan:
        self = super().__new__(cls, text)
        self.seconds = seconds
        return self


def counter(status: Callable[[str], None], unit: str) -> Count:
    """``count(done, total)`` for work counted in ``unit`` within the current stage: passed on to
    ``status.count(done, total, unit)`` where the callback has that method, dropped otherwise."""
    take = getattr(status, "count", None)
    if take is None:
        return no_count
    return lambda done, total: take(done, total, unit)


def no_count(done: int, total: int) -> None:
    """A count nobody asked for."""
