"""How ``edgeslm export`` shows its progress on stderr.

On a terminal: a live rich row (spinner, stage, a bar, the stage's count, the export's elapsed time and the time
left) and one line kept per finished stage. Anywhere else (a CI log, a pipe) or with ``--json``: plain lines
only, one per finished stage with its time and the time left, no colour and no cursor movement, so a log reads
top to bottom. The time left comes from the export's forecast (:mod:`edgeslm.eta`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import Callable, TextIO

from rich.console import Console, RenderableType
from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress_bar import ProgressBar
from rich.text import Text

from edgeslm.eta import Eta, duration, left_words
from edgeslm.progress import Note, Plan

BAR_WIDTH = 24


class ExportView:
    """An export's ``status`` callback (:mod:`edgeslm.progress`): a message begins a stage and ends the last one
    (its line printed), a :class:`Note` is printed as it comes, a :class:`Plan` also sets the forecast;
    ``count`` counts within the stage. ``live``: draw the rich row (a terminal), else write lines only.
    ``checkpoint`` runs first on every event (the CLI raises an interruption there that was swallowed)."""

    def __init__(self, file: TextIO, live: bool, now: Callable[[], float] = time.monotonic,
                 checkpoint: Callable[[], None] = lambda: None):
        self.file = file
        self.checkpoint = checkpoint
        self.eta = eta = Eta(now)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), _Drawn(eta, _bar), _Drawn(eta, _count),
            TimeElapsedColumn(), _Drawn(eta, _left), console=Console(file=file, highlight=False), transient=True,
            redirect_stdout=False, redirect_stderr=False,  # libraries' Python-level chatter: to fd 1/2 (silenced)
        ) if live else None
        self.task = self.progress.add_task("starting", total=None) if self.progress is not None else None

    def __call__(self, msg: str) -> None:
        self.checkpoint()
        if isinstance(msg, Plan):
            self.eta.plan(msg.seconds)
        if isinstance(msg, Note):
            self._line(f"· {msg}")
            return
        done = self.eta.begin(msg)
        if done is not None:
            self._line(done.line())
        if self.progress is not None:
            self.progress.update(self.task, description=str(msg))

    def count(self, done: int, total: int, unit: str) -> None:
        self.checkpoint()
        first = self.eta.counted is None
        self.eta.count(done, total, unit)
        if first and self.progress is not None:
            self.progress.refresh()  # drawn now: a stage shorter than a refresh tick still shows its count once

    def close(self, finished: bool) -> None:
        """The last stage's line: done, or where the export stopped."""
        stage, took = self.eta.stage, self.eta.elapsed()
        done = self.eta.end()
        if done is not None:
            self._line(done.line() if finished else f"· {stage} — stopped after {duration(took)}")

    def _line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            self.file.write(text + "\n")
            self.file.flush()


class _Drawn(ProgressColumn):
    """A column drawn from the export's :class:`Eta` at each refresh (so a long upstream call still moves)."""

    def __init__(self, eta: Eta, draw: Callable[[Eta, float], RenderableType]):
        super().__init__()
        self.eta, self.draw = eta, draw

    def render(self, task) -> RenderableType:
        return self.draw(self.eta, task.get_time())


def _bar(eta: Eta, now: float) -> ProgressBar:
    """The stage's count, else its time against its share of the forecast; a pulse when it has neither."""
    frac = eta.fraction()
    return ProgressBar(total=1.0, completed=frac or 0.0, width=BAR_WIDTH, pulse=frac is None, animation_time=now)


def _count(eta: Eta, now: float) -> Text:
    counted = eta.counted
    return Text(counted.words() if counted else "", style="progress.download")


def _left(eta: Eta, now: float) -> Text:
    left = eta.left()
    return Text(left_words(left) if left is not None else "", style="progress.remaining")


@contextmanager
def export_view(file: TextIO, live: bool, checkpoint: Callable[[], None] = lambda: None):
    """The ``status`` callback of one export, writing to ``file``: live on a terminal (``live``), else lines;
    ``checkpoint``: see :class:`ExportView`."""
    view = ExportView(file, live, checkpoint=checkpoint)
    finished = False
    with view.progress or nullcontext():
        try:
            yield view
            finished = True
        finally:
            view.close(finished)
