"""Time left in an export: the forecast of the stages not yet done, rescaled by how the finished ones went.

The export's :class:`~edgeslm.progress.Plan` gives the run's forecast; each :class:`~edgeslm.progress.Stage`
carries the forecast's share of it. Time left = (forecast not yet begun + the current stage's share not yet
used) x (measured / forecast of the stages finished so far, damped: both sides start from a fifth of the plan, so
a first short stage twice as slow as its share moves the rest a little, not twice); a stage running past its
share counts as it goes. A stage that is one upstream call (lowering a model) has no count to go by: its share of
the forecast is what its bar fills against. Counts only draw the bar; the time left always comes from the
forecast, so two counts in one stage (layers, then prompts) cannot throw it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from edgeslm.progress import Stage

# How far finished stages may rescale the rest: a first stage much faster or slower than forecast (a warm or
# cold file cache) should not multiply the rest of the run by more than this.
SCALE_LIMITS = (0.25, 4.0)
# The evidence the forecast itself counts as, in its own seconds: a fifth of the plan (measured on the demo export:
# a reference taking 3.9 s for a 1 s share turned "about 64 s" into "about 4 min left"; the run took 85 s).
PRIOR_SHARE = 0.2


@dataclass(frozen=True)
class Finished:
    """One stage done: its message, its time, and the time left after it (None before the forecast)."""

    text: str
    seconds: float
    left_s: float | None

    def line(self) -> str:
        left = f" · {left_words(self.left_s)}" if self.left_s is not None else ""
        return f"· {self.text} — done in {duration(self.seconds)}{left}"


@dataclass(frozen=True)
class Counted:
    done: int
    total: int
    unit: str

    def words(self) -> str:
        return f"{self.done}/{self.total} {self.unit}".rstrip()


class Eta:
    """The stage running now and what is left (``now``: a clock, injectable in tests)."""

    def __init__(self, now: Callable[[], float] = time.monotonic):
        self._now = now
        self.plan_s: float | None = None
        self.stage: Stage | None = None
        self.counted: Counted | None = None
        self._started = now()
        self._begun_s = 0.0  # forecast of every stage begun, the current one included
        self._forecast_done = 0.0  # forecast and measured time of the finished stages that had a forecast
        self._measured_done = 0.0

    def plan(self, seconds: float) -> None:
        self.plan_s = seconds

    def begin(self, text: str) -> Finished | None:
        """``text`` starts (a plain string: a stage without a forecast); returns the stage it ended."""
        done = self.end()
        self.stage = text if isinstance(text, Stage) else Stage(text)
        self._started = self._now()
        self._begun_s += self.stage.forecast_s or 0.0
        return done

    def end(self) -> Finished | None:
        """The current stage is over (None if there is none)."""
        if self.stage is None:
            return None
        took = self.elapsed()
        if self.stage.forecast_s:
            self._forecast_done += self.stage.forecast_s
            self._measured_done += took
        text, self.stage, self.counted = str(self.stage), None, None
        return Finished(text, took, self.left())

    def count(self, done: int, total: int, unit: str = "") -> None:
        self.counted = Counted(done, total, unit)

    def elapsed(self) -> float:
        """Seconds the current stage has run."""
        return self._now() - self._started

    def scale(self, measured: float = 0.0, forecast: float = 0.0) -> float:
        """Measured / forecast time of the finished stages (plus ``measured`` / ``forecast`` of the running one),
        each side starting from the prior (``PRIOR_SHARE`` of the plan), within ``SCALE_LIMITS``; 1 before any."""
        prior = PRIOR_SHARE * (self.plan_s or 0.0)
        m, f = self._measured_done + measured, self._forecast_done + forecast
        return _clamp((m + prior) / (f + prior)) if f else 1.0

    def left(self) -> float | None:
        """Seconds left in the run, or None before the forecast. A stage already past its rescaled share
        rescales the rest by how it is going (its share of the rest is then spent)."""
        if self.plan_s is None:
            return None
        k, elapsed = self.scale(), self.elapsed()
        ahead = max(self.plan_s - self._begun_s, 0.0)
        share = self.stage.forecast_s if self.stage is not None and self.stage.forecast_s else 0.0
        if share and elapsed > k * share:
            return ahead * self.scale(elapsed, share)
        return k * ahead + (k * share - elapsed if share else 0.0)

    def fraction(self) -> float | None:
        """How far the current stage is: its count, else its time against its share of the forecast (never
        full before it ends); None when it has neither."""
        if self.counted is not None and self.counted.total:
            return self.counted.done / self.counted.total
        if self.stage is not None and self.stage.forecast_s:
            return min(self.elapsed() / (self.scale() * self.stage.forecast_s), 0.99)
        return None


def _clamp(ratio: float) -> float:
    low, high = SCALE_LIMITS
    return min(max(ratio, low), high)


def duration(seconds: float) -> str:
    """12.3 s, 4 min 12 s."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s"


def about(seconds: float) -> str:
    """A forecast's rounding: 40 s, 8 min."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def left_words(seconds: float) -> str:
    return "a few seconds left" if seconds < 10 else f"about {about(seconds)} left"
