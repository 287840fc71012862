"""Command line: parsing and printing over ``edgeslm.api`` (one function per command, which does the work).
Status goes to stderr, results to stdout."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from edgeslm import api  # torch-free to import: only api.export loads torch (when called), so gate/report stay light
from edgeslm.backends import backend_names, recipes_help
from edgeslm.errors import EXIT_ERROR, EXIT_GATE_FAILED, EXIT_OK, EXIT_SIGNAL_BASE, EdgeslmError, Interrupted
from edgeslm.eta import duration
from edgeslm.fleet.matrix import FORMATS, dump
from edgeslm.memory import skip_exit_collection
from edgeslm.parity.report import parity_tables
from edgeslm.progress_view import export_view
from edgeslm.quiet import native_output_silenced
from edgeslm.records import Check, ExportCost, Status, Validation
from edgeslm.reports.gate import Tolerance
from edgeslm.request import ExportRequest

JSON_FLAG = "--json"


def json_option(help: str = "Print JSON on stdout."):  # noqa: A002 — click's own keyword
    return click.option(JSON_FLAG, "as_json", is_flag=True, help=help)


bundle_argument = click.argument("bundle", type=click.Path(path_type=Path))
reports_argument = click.argument("reports", nargs=-1, required=True, type=click.Path(path_type=Path))
REPORTS_HELP = ("REPORTS is a --report-dir folder, a bundle, or a folder of bundles; several of them, or a folder "
                "of --report-dir folders (a fleet's jobs, each named by its folder), are read as one fleet.")
strict_option = click.option("--strict", is_flag=True, help="Refuse (exit 1, nothing run) an artifact the export "
                             "did not clear: a failed parity stage or bundle, or a stage not run where it was "
                             "exported [default: run it after a warning line].")


def _warner(stream=None):
    """An API ``warn`` callback: each message as one ``warning:`` line (never wrapped) on ``stream`` [default:
    stderr; inside ``native_output_silenced``, the stderr it yields]."""
    def warn(msg: str) -> None:
        click.echo(f"warning: {msg}", file=stream, err=stream is None)

    return warn


def _console(stderr: bool = True) -> Console:
    return Console(stderr=stderr, highlight=False)


@contextmanager
def _spinner():
    """An API ``status`` callback: a transient spinner on stderr, shown from the first message on."""
    shown = []

    def update(msg: str) -> None:
        if shown:
            shown[0].update(msg)
        else:
            shown.append(_console().status(msg))
            shown[0].start()

    try:
        yield update
    finally:
        if shown:
            shown[0].stop()


def _disk_full(e: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT error behind ``e``, if a full disk is what failed (upstream libraries wrap it)."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        if "No space left on device" in str(e):
            return e if isinstance(e, OSError) else OSError(errno.ENOSPC, str(e))
        e = e.__cause__ or e.__context__
    return None


def _classify(e: BaseException, command: str) -> tuple[str, str, int]:
    """(problem, fix, exit code) for anything that ends a command other than a normal exit."""
    if isinstance(e, Interrupted):
        name = signal.Signals(e.signum).name
        if e.written:
            return f"interrupted by {name} while cleaning up: {e.written}", "", e.exit_code
        return f"interrupted by {name}; nothing was written (an existing bundle is left as it was)", "", e.exit_code
    if isinstance(e, click.exceptions.Abort):  # click's form of a KeyboardInterrupt outside our handler
        return "interrupted by SIGINT; nothing was written", "", EXIT_SIGNAL_BASE + signal.SIGINT
    if isinstance(e, click.ClickException):
        return e.format_message(), f"see `edgeslm {command} --help`".replace("  ", " "), e.exit_code
    if isinstance(e, EdgeslmError):
        return e.problem, e.hint, e.exit_code
    full = _disk_full(e)
    if full is not None:
        where = f" writing {full.filename}" if full.filename else ""
        return (f"disk full: no space left on device{where}",
                "free space on that disk, or write elsewhere (-o, --report-dir, TMPDIR)", EXIT_ERROR)
    if isinstance(e, OSError) and e.filename:  # the machine refused a path: almost always the path given
        return (f"cannot use {e.filename}: {e.strerror or e}",
                "check the path and its permissions; if it is not a path you gave, please report this "
                "(EDGESLM_DEBUG=1 prints the traceback)", EXIT_ERROR)
    return (f"internal error: {type(e).__name__}: {e}",
            "please report this with the traceback (set EDGESLM_DEBUG=1 to print it)", EXIT_ERROR)


class _Interrupt:
    """The signal that arrived, if one did: set by ``_signals_raise``'s handler."""

    signum: int | None = None


def _raise_if_interrupted() -> None:
    """Raise the interruption again where one was swallowed on its way out (a signal landing in a finalizer, whose
    exceptions Python only prints): the export's next stage or count stops it, a single Ctrl-C is enough."""
    if _Interrupt.signum is not None:
        raise Interrupted(_Interrupt.signum)


@contextmanager
def _signals_raise():
    """SIGINT and SIGTERM raise ``Interrupted`` in the main thread, so temp folders are removed on the way out;
    repeats are ignored while that cleanup runs. The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM)

    def handler(signum, frame):
        if _Interrupt.signum is not None:
            return  # a repeat: the first is unwinding, or is raised again at the next progress event
        _Interrupt.signum = signum
        raise Interrupted(signum)

    old = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _Interrupt.signum = None


class _RegistryHelp(click.Option):
    """An option whose help names the registered backends and their recipes, read from the backend registry when
    the help is shown (``help`` is a function)."""

    def __init__(self, *args, help, **kwargs):  # noqa: A002 — click's keyword
        super().__init__(*args, **kwargs)
        self._help = help

    def get_help_record(self, ctx):
        self.help = self._help()
        return super().get_help_record(ctx)


class _Cli(click.Group):
    """The one place errors become output: one ``error: PROBLEM — fix: HINT`` line on stderr and the exit code
    (2 for bad input, 130/143 for SIGINT/SIGTERM); with ``--json`` also one JSON object on stdout. A command
    exits 0/1 itself (``sys.exit``) on success or a failed gate."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        skip_exit_collection()
        try:
            with _signals_raise():
                rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 — every way out gets one line and a defined exit code
            command = next((a for a in argv if a in self.commands), "")
            problem, fix, code = _classify(e, command)
            if os.environ.get("EDGESLM_DEBUG") and not isinstance(e, (EdgeslmError, click.ClickException)):
                click.echo("".join(traceback.format_exception(e)), err=True)
            click.echo(f"error: {problem}" + (f" — fix: {fix}" if fix else ""), err=True)
            if JSON_FLAG in argv:
                click.echo(json.dumps({"error": problem, "fix": fix or None, "exit_code": code}))
            sys.exit(code)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


@click.group(cls=_Cli)
@click.version_option(package_name="edgeslm")
def main() -> None:
    """Export small language models to on-device runtimes, with staged parity reports."""
    import logging
    import warnings

    # Upstream compilers are chatty (deprecations, optional kernels not built for this CPU); keep stderr readable.
    warnings.filterwarnings("ignore")
    for name in ("torchao", "torch._export", "executorch", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)


@main.command()
@click.argument("model")
@click.option("--target", "-t", "targets", multiple=True, help="Built-in target name or a .toml file; repeat for "
              "several targets in one run (loading and the fp32 reference are shared) [default: android].")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Bundle folder [default: out/MODEL-TARGET]; "
              "with several targets, the parent of one bundle per target [default: out/MODEL].")
@click.option("--report-dir", type=click.Path(path_type=Path), help="Also write the release reports there: "
              "summary.json, junit.xml, summary.md, index.html, and each target's JSON reports.")
@click.option("--backend", "-b", "backends", multiple=True, cls=_RegistryHelp,
              help=lambda: "Backend(s) to build instead of the target's: {} (repeatable).".format(
                  ", ".join(backend_names())))
@click.option("--recipe", "recipes", multiple=True, metavar="[BACKEND=]RECIPE", cls=_RegistryHelp,
              help=lambda: "Quantization recipe instead of the target's (repeatable). A bare RECIPE applies to every "
              "backend being built that supports it (the others keep the target's); BACKEND=RECIPE sets one "
              f"backend's. Recipes: {recipes_help()}.")
@click.option("--group-size", type=int, help="Group size for 4-bit rules (default from the recipe: 32).")
@click.option("--revision", help="Hub revision (branch, tag or commit) to resolve from the HF cache.")
@click.option("--gguf-file", metavar="FILE.gguf", help="The GGUF file to take from the Hub repo MODEL (converted "
              "once to a cached fp32 folder; a local .gguf is passed as MODEL itself).")
@click.option("--context-length", type=int, help="Max positions (prompt + generation) the artifact supports "
              "[default: the target's, capped at the model's max_position_embeddings].")
@click.option("--no-bench", is_flag=True, help="Do not time the artifacts here (latency.json: prediction only).")
@click.option("--no-memory-check", is_flag=True, help="Go on even when the predicted peak memory exceeds what this "
              "machine has available.")
@click.option("--force", is_flag=True, help="Replace the output folder(s) and --report-dir if they exist; only "
              "folders edgeslm wrote (bundles, reports) or empty ones are ever replaced.")
@click.option("--adapter", "adapters", multiple=True, metavar="PATH_OR_HUB_ID",
              help="A PEFT LoRA adapter (folder or Hub id in the HF cache) to merge into MODEL; repeat for one "
              "artifact per adapter in the same bundle (shared tokenizer).")
@click.option("--draft", metavar="DRAFT_MODEL", help="A small model (same tokenizer) to ship with MODEL as a "
              "speculative-decoding draft: both lowered for the target, acceptance measured for k = 2, 4, 6.")
@json_option("Print the result as JSON on stdout.")
def export(model, targets, output, report_dir, backends, recipes, group_size, revision, gguf_file, context_length,
           no_bench, no_memory_check, force, adapters, draft, as_json):
    """Export MODEL (`demo`, a local folder, a .gguf file, or a Hub id in the HF cache) to an app-ready bundle per
    target.

    Exit code: 0 when every parity gate and latency budget passes, 1 when one fails (the bundles are still
    written, marked failed), 2 on bad input or an internal error.
    """
    request = ExportRequest.of(model, targets, output, report_dir=report_dir, backends=backends, recipes=recipes,
                               group_size=group_size, revision=revision, context_length=context_length,
                               bench=not no_bench, memory_check=not no_memory_check, force=force,
                               adapters=adapters, draft=draft, gguf_file=gguf_file)
    with native_output_silenced() as (_, err):
        live = not as_json and Console(file=err).is_terminal  # a CI log or --json: plain lines
        with export_view(err, live, _raise_if_interrupted) as status:
            results = api.export(request, status)
    passed = all(r.passed for r in results)
    if as_json:
        items = [r.to_json() for r in results]
        click.echo(json.dumps(items[0] if len(items) == 1 else {"passed": passed, "targets": items}, default=str))
    else:
        con = _console(stderr=False)
        for r in results:
            _print_summary(r, con)
        if report_dir:
            click.echo(f"reports: {', '.join(str(w) for w in results[0].reports)}")
    sys.exit(EXIT_OK if passed else EXIT_GATE_FAILED)


def _print_summary(res, con: Console) -> None:
    """The parity table (rich on a terminal; elsewhere, e.g. a CI log, parity.md's Markdown tables, which keep
    full names at any width), the artifacts, latency, the forecast against the run, and the bundle."""
    validations = [Validation.from_json(v) for v in res.parity.get("validations", [])]
    not_run = [v for v in validations if v.status is Status.NOT_RUN]
    verdict = "PASSED" if res.passed else "FAILED"
    if not_run:
        verdict += f" ({len(not_run)} stage{'s' if len(not_run) > 1 else ''} not run on this platform)"
    title = f"{res.parity['target']} parity: {verdict}"
    if con.is_terminal:
        con.print(_parity_table(res.parity, validations, title))
    else:
        click.echo("\n".join([title, "", *parity_tables(res.parity), ""]))
    for text, style in _summary_lines(res):
        if con.is_terminal:
            con.print(text, style=style, markup=False)
        else:
            click.echo(text)


def _parity_table(parity: dict, validations: list[Validation], title: str) -> Table:
    checks = [Check.from_json(c) for c in parity["checks"]]
    table = Table(title=title)
    for col in ("artifact", "stage", "top-1", "mean KL", "SQNR dB", "ppl Δ", "greedy", "gate"):
        table.add_column(col)

    def num(v, fmt):
        return "—" if v is None else fmt.format(v)

    words = {Status.PASSED: "pass", Status.INFO: "[dim]info, not gated[/dim]"}
    for c in checks:
        m = c.metrics
        gate = words.get(c.status) or "[red]FAIL[/red] " + "; ".join(c.gate.failures)
        if c.status is Status.INFO and c.gate.failures:  # e.g. non-finite logits: shown though not gated
            gate += " [red]" + "; ".join(c.gate.failures) + "[/red]"
        table.add_row(c.artifact or "—", c.stage, num(m.get("top1_agreement"), "{:.3f}"),
                      num(m.get("kl_mean"), "{:.2g}"), num(m.get("logit_sqnr_db"), "{:.1f}"),
                      num(m.get("ppl_rise"), "{:+.1%}"), num(m.get("greedy_agreement"), "{:.3f}"), gate)
    for v in validations:
        if v.status is Status.NOT_RUN:
            table.add_row(v.artifact, v.stage, "", "", "", "[yellow]NOT RUN[/yellow] on this platform")
        else:
            failed = [c["check"] for c in v.checks if not c["passed"]]
            table.add_row(v.artifact, v.stage, "", "", "",
                          "pass" if not failed else "[red]FAIL[/red] " + "; ".join(failed))
    return table


def _summary_lines(res) -> list[tuple[str, str | None]]:
    """(text, style on a terminal): the artifacts, latency here and on the device, failed budgets, the forecast
    against the run, the bundle."""
    lines: list[tuple[str, str | None]] = [
        (f"{res.out / a.name}  {a.size / 1e6:.2f} MB  {a.backend}/{a.recipe}  parity {a.status.parity_word}", None)
        for a in res.artifacts]
    lat = res.latency
    measured = {m.artifact: m for m in (lat.measured or [])} if lat else {}
    for p in lat.predicted if lat else []:
        here = measured.get(p.artifact)
        here_txt = (f"here {here.figures['decode_tok_s']['median']:.0f} tok/s" if here and here.measured
                    else "here: not measured")
        there = (f"on {lat.device} ~{_rng(p.figures['decode_tok_s'], '{:.0f}')} tok/s decode, TTFT "
                 f"~{p.figures['ttft_ms']['point']:.0f} ms" if p.predicted else p.reason)
        lines.append((f"latency {p.artifact}: {here_txt}; {there}", None))
    for b in lat.budgets if lat else []:
        if not b.passed:
            lines.append((f"latency budget failed {b.artifact}: {b.budget} {b.limit} "
                          f"(predicted {b.predicted:.1f} on {b.device})", "red"))
    cost = lat.export_cost if lat else None
    if cost is not None:
        lines.append((_cost_line(cost), "dim"))
    lines.append((f"bundle: {res.out}  ({res.timings['total_s']:.1f} s)", None))
    return lines


def _cost_line(cost: ExportCost) -> str:
    """The forecast against the run: time, and peak memory where it was read."""
    text = (f"forecast: {duration(cost.predicted_s)}, took {duration(cost.measured_s)}{_pct(cost.seconds_error)}; "
            f"peak memory {cost.predicted_peak_mib:.0f} MiB forecast")
    if cost.measured_peak_mib is not None:
        text += f", {cost.measured_peak_mib:.0f} MiB measured{_pct(cost.peak_error)}"
    return text


def _pct(error: float | None) -> str:
    return "" if error is None else f" ({error:+.0%})"


@main.command()
@bundle_argument
@click.option("--prompt", "-p", required=True)
@click.option("--max-new-tokens", "-n", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(min=0), help="0 = greedy.")
@click.option("--artifact", help="Which artifact to run, by file or package name (default: the first in the "
              "manifest that can run on this machine).")
@strict_option
def run(bundle, prompt, max_new_tokens, temperature, artifact, strict):
    """Generate text from a bundle through its real runtime, streaming tokens to stdout. An artifact whose
    export failed, or had a stage not run, is named in a warning first (refused with --strict)."""
    chosen = api.choose_artifact(bundle, artifact)
    _console().print(f"[dim]{chosen.name} in {chosen.runtime}[/dim]")

    with native_output_silenced() as (out, err):

        def on_token(piece: str) -> None:
            out.write(piece)
            out.flush()

        api.run(bundle, prompt, max_new_tokens, temperature, chosen, on_token, strict=strict, warn=_warner(err))
        out.write("\n")


@main.command()
@bundle_argument
@json_option()
def inspect(bundle, as_json):
    """Show each artifact's inputs/outputs, opset, ops and weight bytes by dtype, read from the files."""
    with native_output_silenced() as (out, _):
        arts = api.inspect(bundle)
        if as_json:
            out.write(json.dumps(arts, indent=2) + "\n")
            return
        for a in arts:
            out.write(f"{a['file']}  [{a['backend']} / {a['recipe']}]  {a['bytes']:,} bytes  parity {a['parity']}\n")
            if "opset" in a:
                out.write(f"  opset: {a['opset']}\n")
            if "minimum_deployment_target" in a:
                out.write(f"  Core ML {a['format']}, minimum deployment target {a['minimum_deployment_target']}, "
                          f"{len(a['states'])} states {a['states'][0]['shape'] if a['states'] else ''}\n")
            for kind in ("inputs", "outputs"):
                for v in a[kind][:6]:
                    rng = f"  range {v['range']}" if v.get('range') else ''
                    out.write(f"  {kind[:-1]:6} {v.get('name', ''):28} {v['dtype']:8} {v['shape']}{rng}\n")
                if len(a[kind]) > 6:
                    out.write(f"  ... {len(a[kind]) - 6} more {kind}\n")
            if "weight_bytes_by_dtype" in a:
                w = ", ".join(f"{k} {v:,}" for k, v in a["weight_bytes_by_dtype"].items())
                out.write(f"  weights by dtype: {w}\n")
                top = ", ".join(f"{k} {v}" for k, v in list(a["ops"].items())[:8])
                out.write(f"  ops: {top}\n")
            if a.get("metadata"):
                out.write(f"  metadata: {a['metadata']}\n")
            if "runner_metadata" in a:
                out.write(f"  runner metadata: {a['runner_metadata']}\n")


@main.command()
@bundle_argument
def verify(bundle):
    """Re-check a bundle: manifest schema, every listed file present with its size and sha256."""
    problems = api.verify(bundle)
    for p in problems:
        click.echo(f"FAIL {p}")
    if problems:
        sys.exit(EXIT_GATE_FAILED)
    click.echo(f"OK {bundle}: manifest valid, all hashes match")


@main.command()
@bundle_argument
@click.option("--serial", "-s", help="Which device, when adb sees several (`adb devices`).")
@click.option("--device-dir", default="/data/local/tmp/edgeslm", show_default=True,
              help="Folder on the device; the demo app lists the bundles in it.")
def push(bundle, serial, device_dir):
    """Verify BUNDLE and copy it onto an Android device with adb (replacing an earlier copy of the same name),
    readable by apps: then open it in android_demo (docs/apps.md)."""
    with _console().status(f"pushing {bundle}"):
        remote = api.push(bundle, serial, device_dir)
    click.echo(f"pushed {bundle} to {remote}")


def _rng(band: dict, fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(band['point'])} ({fmt.format(band['low'])}–{fmt.format(band['high'])})"


@main.command()
@bundle_argument
@click.option("--prompt-len", default=128, show_default=True, type=click.IntRange(min=1), help="Prompt tokens prefilled per run.")
@click.option("--gen-len", default=64, show_default=True, type=click.IntRange(min=1), help="Tokens decoded per run.")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0), help="Untimed runs first.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1), help="Timed runs (median, min and max reported).")
@strict_option
@json_option()
def bench(bundle, prompt_len, gen_len, warmup, repeats, strict, as_json):
    """Time every artifact of BUNDLE in its real runtime here: TTFT, prefill and decode tok/s, peak RSS. An
    artifact whose export failed, or had a stage not run, is named in a warning first (refused with --strict)."""
    with _spinner() as status:
        doc = api.bench(bundle, prompt_len, gen_len, warmup, repeats, status=status, strict=strict, warn=_warner())
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    con = _console(stderr=False)
    host = doc["host"]
    bw = host["memory_bandwidth"]["read_gb_s"]
    con.print(f"host: {host['cpu']}, {host['cores']} cores, {host['memory_gb']} GB, measured read bandwidth "
              f"{bw} GB/s, fp32 GEMM {host['fp32_gemm_gflops']} GFLOP/s")
    table = Table(title=f"measured here: prompt {prompt_len}, {gen_len} new tokens, median (min–max) of {repeats}")
    for col in ("artifact", "runtime", "TTFT ms", "prefill tok/s", "decode tok/s", "RSS MiB (over runtime)"):
        table.add_column(col)
    for r in doc["artifacts"]:
        if not r["measured"]:
            table.add_row(r["artifact"], r["runtime"], "[yellow]not measured[/yellow]", r["reason"], "", "")
            continue
        sp = {k: {"point": r[k]["median"], "low": r[k]["min"], "high": r[k]["max"]}
              for k in ("ttft_ms", "prefill_tok_s", "decode_tok_s")}
        table.add_row(r["artifact"], r["runtime"], _rng(sp["ttft_ms"]), _rng(sp["prefill_tok_s"], "{:.0f}"),
                      _rng(sp["decode_tok_s"], "{:.0f}"), f"{r['peak_rss_mib']:.0f}")
    con.print(table)


@main.command()
@bundle_argument
@click.option("--device", "-d", help="Device profile (name or .toml), or `host` for this machine "
              "[default: the bundle's target device].")
@click.option("--prompt-len", default=512, show_default=True, type=click.IntRange(min=1))
@click.option("--gen-len", default=128, show_default=True, type=click.IntRange(min=1))
@json_option()
def predict(bundle, device, prompt_len, gen_len, as_json):
    """Predict TTFT, prefill/decode speed and memory of every artifact of BUNDLE on a device, from the artifacts'
    own bytes and FLOPs (performance model calibrated on published figures: docs/latency.md)."""
    with _spinner() as status:
        doc = api.predict(bundle, device, prompt_len, gen_len, status=status)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    table = Table(title=f"predicted on {doc['device']} ({doc['description']}): prompt {prompt_len}, "
                  f"{gen_len} new tokens")
    for col in ("artifact", "TTFT ms", "prefill tok/s", "decode tok/s", "memory MB", "fits"):
        table.add_column(col)
    for r in doc["artifacts"]:
        if not r["predicted"]:
            table.add_row(r["artifact"], "[yellow]no prediction[/yellow]", r["reason"], "", "", "")
            continue
        table.add_row(r["artifact"], _rng(r["ttft_ms"]), _rng(r["prefill_tok_s"], "{:.0f}"),
                      _rng(r["decode_tok_s"], "{:.0f}"), f"{r['memory_mb']:.0f}", "yes" if r["fits_in_memory"] else
                      "[red]no[/red]")
    con = _console(stderr=False)
    con.print(table)
    con.print("[dim]assumptions:[/dim]")
    for a in doc["assumptions"]:
        con.print(f"[dim]- {a}[/dim]")


@main.command(help="Render REPORTS as HTML, JUnit XML and Markdown [default: index.html, junit.xml, summary.md "
              "inside REPORTS]; a fleet's summary is one table of models × targets (verdict, bytes, ppl Δ, "
              "measured and predicted decode speed). " + REPORTS_HELP)
@reports_argument
@click.option("--html", "html_path", type=click.Path(path_type=Path), help="Write the HTML report here.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), help="Write JUnit XML here.")
@click.option("--markdown", "md_path", type=click.Path(path_type=Path), help="Write the Markdown summary here.")
def report(reports, html_path, junit_path, md_path):
    with native_output_silenced():
        done = api.report(reports, html_path, junit_path, md_path)
    click.echo(f"{'PASSED' if done.passed else 'FAILED'}: " + ", ".join(str(w) for w in done.written))


@main.command(help="Exit 0 if REPORTS may ship, 1 if a check failed or (with --baseline) something regressed; a "
              "table says what and by how much (for a fleet, after its models × targets summary, each row naming "
              "its job). " + REPORTS_HELP)
@reports_argument
@click.option("--baseline", type=click.Path(path_type=Path), help="Earlier reports (e.g. the last release's): "
              "fail on regressions beyond tolerance; a fleet's are matched job by job.")
@click.option("--gates", "gate_file", type=click.Path(path_type=Path), help="TOML file with [gates.*] tables "
              "(as in target files) to judge parity metrics by, on top of the targets' own gates.")
@click.option("--fleet", "fleet_file", type=click.Path(path_type=Path), metavar="FLEET.toml",
              help="The fleet file the reports come from: a job of it with no reports (it crashed, or its "
              "reports were not collected) fails the gate.")
@click.option("--top1-drop", default=0.02, show_default=True, type=click.FloatRange(0, 1), help="Tolerated absolute drop in top-1 agreement.")
@click.option("--kl-rise", default=0.25, show_default=True, type=click.FloatRange(min=0), help="Tolerated relative rise in mean KL.")
@click.option("--greedy-drop", default=0.10, show_default=True, type=click.FloatRange(0, 1), help="Tolerated absolute drop in greedy agreement.")
@click.option("--decode-drop", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="Tolerated relative drop in predicted decode tok/s (measured: 0.30, timings are noisy).")
@json_option("Print the failures and regressions (and a fleet's jobs and summary rows) as JSON on stdout.")
def gate(reports, baseline, gate_file, fleet_file, top1_drop, kl_rise, greedy_drop, decode_drop, as_json):
    with native_output_silenced():
        verdict = api.gate(reports, baseline, gate_file, Tolerance(top1_drop, kl_rise, greedy_drop, decode_drop),
                           fleet_file)
    rows = verdict.problems
    if as_json:
        click.echo(json.dumps(verdict.to_json(), indent=2, default=str))
        sys.exit(EXIT_OK if verdict.passed else EXIT_GATE_FAILED)
    con = _console(stderr=False)
    if verdict.jobs is not None:
        con.print(_fleet_table(verdict))
    if rows:
        table = Table(title=f"gate: FAILED ({len(rows)} problem{'s' if len(rows) > 1 else ''})")
        cols = ("target", "artifact", "check", "what", "baseline", "current", "limit")
        cols = ("job", *cols) if verdict.jobs is not None else cols
        for col in cols:
            table.add_column(col, no_wrap=col == "job")
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("—" if v is None else str(v))  # noqa: E731
        for r in rows:
            table.add_row(*(fmt(r[c]) if c in ("baseline", "current") else r[c] for c in cols))
        con.print(table)
        if verdict.jobs is not None:  # one plain line a CI log shows whole, however narrow
            con.print(f"failed jobs: {', '.join(dict.fromkeys(r['job'] for r in rows))}", soft_wrap=True)
    else:
        n = verdict.counts
        jobs = f"{len(verdict.jobs)} jobs, " if verdict.jobs is not None else ""
        con.print(f"gate: PASSED ({jobs}{n['passed']} checks passed, {n['not_run']} not run on this platform, "
                  f"{n['info']} reported without a gate"
                  + (", no regression against the baseline" if verdict.baseline else "") + ")")
    sys.exit(EXIT_OK if verdict.passed else EXIT_GATE_FAILED)


def _fleet_table(verdict) -> Table:
    """The fleet's models × targets summary, one row per (job, target, artifact); narrow enough for a CI log
    (the model is in the job's name; `report` writes the full table)."""
    table = Table(title=f"fleet: {len(verdict.jobs)} jobs (decode tok/s measured here, predicted on the target's "
                  "device)")
    for col in ("job", "target", "artifact", "verdict", "MB", "ppl Δ", "here", "device"):
        table.add_column(col, no_wrap=col == "job")
    words = {Status.FAILED: "[red]FAILED[/red]", Status.NOT_RUN: "[yellow]not run[/yellow]"}
    for r in verdict.summary:
        table.add_row(r.job, r.target, r.artifact, words.get(r.status, r.status.value), f"{r.bytes / 1e6:.2f}",
                      "—" if r.ppl_rise is None else f"{r.ppl_rise:+.1%}",
                      "—" if r.decode_here is None else f"{r.decode_here:.0f}",
                      "—" if r.decode_predicted is None else f"{r.decode_predicted:.0f}")
    return table


@main.command()
@click.argument("fleet", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="github", show_default=True,
              help="github: strategy.matrix JSON on one line (for $GITHUB_OUTPUT and fromJSON); gitlab: a hidden "
              "job's parallel:matrix as YAML, to append to a child pipeline that extends it.")
@click.option("--job", help="Print this job's command line instead (a GitLab matrix job reads its command so).")
def matrix(fleet, fmt, job):
    """Print the CI matrix of FLEET (a fleet TOML file: models × targets × recipes, docs/ci.md): one job per
    `edgeslm export ... -o out/JOB --report-dir reports/JOB`, each with a stable name, in the form a CI engine's
    matrix takes. `edgeslm gate reports --fleet FLEET` then gives the fleet one verdict."""
    click.echo(api.job_command(fleet, job) if job else dump(api.matrix(fleet, fmt), fmt))


if __name__ == "__main__":
    main()
