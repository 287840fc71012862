"""Export progress (issue 26): the time left from the forecast, corrected as stages finish; on a terminal a live
bar with the stage's count and the time left; anywhere else one plain line per finished stage and the parity
summary as Markdown (full names at any width); the forecast against the run in latency.json and
benchmarks/forecast_error.py."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from edgeslm.cli import _raise_if_interrupted, _signals_raise
from edgeslm.errors import Interrupted
from edgeslm.eta import Eta
from edgeslm.json_schemas import problems
from edgeslm.progress import Note, Plan, Stage, counter
from edgeslm.progress_view import ExportView

ROOT = Path(__file__).resolve().parent.parent
EDGESLM = Path(sys.executable).parent / "edgeslm"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STAGE_LINE = re.compile(r"^· .+ — (done in|stopped after) (\d+ min )?[\d.]+ s"
                        r"( · (about \d+ (s|min)|a few seconds) left)?$")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_time_left_follows_the_forecast_and_is_rescaled_by_finished_stages():
    clock = Clock()
    eta = Eta(clock)
    eta.begin("resolving model")
    clock.t = 2
    assert eta.left() is None  # no forecast yet
    eta.plan(100)
    done = eta.begin(Stage("running the transformers reference", 20))
    assert (done.text, done.seconds, done.left_s) == ("resolving model", 2, 100)
    clock.t = 12  # half its share used
    assert eta.left() == 80 + 10 and eta.fraction() == 0.5
    clock.t = 42  # twice its share, still running: the rest is rescaled as it goes; the bar stops short of full
    assert eta.left() == 80 * (40 + 20) / (20 + 20) and eta.fraction() == 0.99  # both sides from a prior of 20 s
    done = eta.begin(Stage("lowering", 60))  # one upstream call: its share is what it fills against
    assert done.seconds == 40 and eta.scale() == 1.5  # measured / forecast of the finished stages, damped
    assert eta.left() == 1.5 * 20 + 1.5 * 60
    clock.t += 30
    assert eta.fraction() == 30 / 90 and eta.left() == 1.5 * 20 + 1.5 * 60 - 30
    eta.count(3, 12, "prompts")  # a count draws the bar; the time left stays the forecast's
    assert eta.fraction() == 0.25 and eta.counted.words() == "3/12 prompts"
    eta.begin("writing bundle")  # not forecast; lowering took half its share, so the rest is rescaled again
    assert eta.counted is None and eta.scale() == (40 + 30 + 20) / (20 + 60 + 20) and eta.left() == 20 * eta.scale()
    slow = Eta(clock)
    slow.plan(10)
    slow.begin(Stage("a", 1))
    clock.t += 1000
    slow.begin(Stage("b", 1))
    assert slow.scale() == 4  # one very slow stage does not multiply the rest by more than SCALE_LIMITS


def _feed(view: ExportView, clock: Clock) -> None:
    view(Note("target android: context length 512 is above the model's max_position_embeddings (256); using 256"))
    view("resolving model")
    clock.t = 2.0
    view(Plan("predicted peak memory 0.9 GiB, about 2 min on this machine", 120))
    view(Stage("running the transformers reference", 30))
    counter(view, "prompts")(3, 12)
    clock.t = 12.0


def test_terminal_frame_shows_a_bar_a_count_and_the_time_left():
    clock = Clock()
    view = ExportView(io.StringIO(), live=True, now=clock)
    _feed(view, clock)
    frame = Console(force_terminal=True, width=140, record=True, file=io.StringIO())
    frame.print(view.progress.make_tasks_table(view.progress.tasks))
    text = frame.export_text()
    assert "running the transformers reference" in text and "━" in text
    assert re.search(r"3/12 prompts .* about 2 min left", text), text  # 90 s ahead + 20 s of its share


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_stage_s_first_count_is_drawn_at_once_on_a_terminal(monkeypatch):
    """A counted stage shorter than a refresh tick (the tiny models' parity passes) still shows its count: the
    first count of a stage draws the row then and there, not at the next tick."""
    monkeypatch.setenv("COLUMNS", "140")
    out = _Terminal()
    view = ExportView(out, live=True)
    view.progress.live.auto_refresh = False  # no ticking thread: only what the view draws itself reaches out
    with view.progress:
        view(Plan("about 10 s on this machine", 10))
        view(Stage("onnx: parity in ONNX Runtime", 2))
        drawn = len(out.getvalue())
        counter(view, "prompts")(1, 8)
        first = ANSI.sub("", out.getvalue()[drawn:])
        counter(view, "prompts")(2, 8)  # later counts wait for the tick
        assert ANSI.sub("", out.getvalue()[drawn:]) == first
    assert "1/8 prompts" in first and "━" in first and re.search(r"(about \d+ s|a few seconds) left", first), first


def test_lines_off_a_terminal_one_per_finished_stage():
    clock, out = Clock(), io.StringIO()
    view = ExportView(out, live=False, now=clock)
    _feed(view, clock)
    view(Stage("executorch: lowering to model-8da4w.pte", 60))
    clock.t = 100.0
    view.close(finished=False)
    lines = out.getvalue().splitlines()
    assert lines == [
        "· target android: context length 512 is above the model's max_position_embeddings (256); using 256",
        "· predicted peak memory 0.9 GiB, about 2 min on this machine",
        "· resolving model — done in 2.0 s · about 2 min left",
        "· running the transformers reference — done in 10.0 s · about 57 s left",  # 3x faster, damped: 90 s x 34/54
        "· executorch: lowering to model-8da4w.pte — stopped after 88.0 s",
    ]
    assert view.progress is None and "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def _signal_lost_in_a_finalizer() -> None:
    """SIGINT handled inside code that drops what it raises, as CPython does with a ``__del__``'s exception."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the handler runs here
    except BaseException:  # noqa: BLE001 — the finalizer's swallow
        pass


def test_an_interruption_lost_on_its_way_out_stops_the_next_progress_event():
    """One SIGINT whose exception is lost still stops the export at its next stage or count; the state is
    cleared once the command ends."""
    view = ExportView(io.StringIO(), live=False, checkpoint=_raise_if_interrupted)
    reached = False
    with pytest.raises(Interrupted) as caught:
        with _signals_raise():
            view(Stage("resolving model", 1))
            _signal_lost_in_a_finalizer()
            reached = True
            view.count(1, 2, "prompts")
    assert reached and caught.value.exit_code == 130
    _raise_if_interrupted()  # the next command starts clean


def _export_args(tiny_dir, tmp_path) -> list[str]:
    return [str(EDGESLM), "export", str(tiny_dir("llama")), "-o", str(tmp_path / "out"), "--backend", "onnx",
            "--no-bench"]


@pytest.mark.slow  # 38 s on 2 busy cores, most of it imports and the transformers reference before the row shows
def test_pseudo_terminal_export_shows_a_bar_with_a_count_and_time_left(tiny_dir, tmp_path):
    """A real export on a pseudo-terminal, stopped (SIGINT) once the live row has shown a count and the time
    left: the frame seen, then the stage it stopped in and the interruption."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="140")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(_export_args(tiny_dir, tmp_path), stdin=slave, stdout=slave, stderr=slave, env=env,
                            close_fds=True)
    os.close(slave)
    seen, frame, deadline = b"", None, time.monotonic() + 300
    try:
        while frame is None and time.monotonic() < deadline and proc.poll() is None:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
            frames = re.split(r"[\r\n]", ANSI.sub("", seen.decode("utf-8", "replace")))
            frame = next((f for f in frames if "━" in f and re.search(r"\d+/\d+ prompts", f)
                          and re.search(r"(about \d+ (s|min)|a few seconds) left", f)), None)
        proc.send_signal(signal.SIGINT)
        while True:
            ready = select.select([master], [], [], 60)[0]
            chunk = os.read(master, 65536) if ready else b""
            if not chunk:
                break
            seen += chunk
    except OSError:  # the child closed the terminal
        pass
    finally:
        proc.wait(timeout=120)
        os.close(master)
    text = ANSI.sub("", seen.decode("utf-8", "replace"))
    assert frame is not None, text[-3000:]
    print(f"terminal frame: {frame.strip()}")
    assert "\x1b[" in seen.decode("utf-8", "replace")  # drawn as a live display, colours and all
    assert proc.returncode == 128 + signal.SIGINT, text[-3000:]
    assert re.search(r"· .+ — stopped after [\d.]+ s", text) and "error: interrupted by SIGINT" in text


def test_piped_export_writes_plain_lines_only(tiny_dir, tmp_path):
    """The same export with stderr and stdout on pipes (a CI log), stopped after its first stages: every stderr
    line is a plain stage or notice line, no ANSI escape, no carriage-return redraw, nothing on stdout."""
    proc = subprocess.Popen(_export_args(tiny_dir, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if STAGE_LINE.match(line.rstrip("\n")) and "left" in line:  # a finished stage, after the forecast
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    text = "".join(lines) + err
    assert proc.returncode == 128 + signal.SIGINT, text
    assert out == "" and "\x1b" not in text and "\r" not in text
    for line in text.splitlines():
        assert STAGE_LINE.match(line) or line.startswith(("· ", "error: ")), line
    assert "on this machine" in text and re.search(r"— stopped after [\d.]+ s", text)


def test_export_summary_and_stage_lines_in_a_log(demo_bundle):
    """The demo export's output where no terminal is (click's runner): the parity table as parity.md's Markdown,
    full artifact and stage names on one line each, and one plain line per stage with its time."""
    out, res = demo_bundle
    text = res.output
    assert "\x1b" not in text and "…" not in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| artifact | stage |")
    assert "| model-8da4w-asym.pte | quantization |" in text and "| — | reauthoring |" in text
    assert any(row.endswith("| info (not gated) |") for row in table)
    stages = [line for line in text.splitlines() if " — done in " in line]
    assert all(STAGE_LINE.match(line) for line in stages), stages
    assert any("executorch: lowering to model-8da4w-asym.pte — done in" in line for line in stages)
    assert re.search(r"forecast: [\d.]+ s, took .*; peak memory \d+ MiB forecast, \d+ MiB measured", text)


def test_forecast_error_in_latency_and_benchmark(demo_bundle):
    out, _ = demo_bundle
    doc = json.loads((out / "latency.json").read_text())
    assert problems(doc, "latency") == []
    cost = doc["export_cost"]
    assert cost["backends"] == ["executorch", "onnx"] and cost["cpu_count"] >= 1
    t, m = cost["seconds"], cost["peak_rss_mib"]
    assert 0 < t["predicted"] and 0 < t["measured"] and 0 < m["predicted"] and 0 < m["measured"]
    assert t["error"] == round(t["measured"] / t["predicted"] - 1, 3)
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "forecast_error.py"), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    row = next(line for line in p.stdout.splitlines() if line.startswith(f"| {out.name} |"))
    assert f"| {t['predicted']:.1f} | {t['measured']:.1f} | {t['error']:+.0%} |" in row, row
    assert "median time error over 1 export:" in p.stdout
