"""The Python API: one function per CLI command, returning data and raising ``edgeslm.errors`` exceptions.

    from edgeslm import api
    from edgeslm.request import ExportRequest

    results = api.export(ExportRequest.of("demo", ["android"]))
    verdict = api.gate(Path("reports"), baseline=Path("last-release"))
    jobs = api.matrix(Path("fleet.toml"))["include"]     # a fleet: one export per model × target
    verdict = api.gate(Path("reports"), fleet=Path("fleet.toml"))  # every job's reports/<job>, one verdict

Nothing here prints, exits or knows about click: ``edgeslm.cli`` parses arguments, calls these and prints what
they return. Status messages go to an optional ``status`` callback: one ``str`` per stage, which for ``export`` may
be an ``edgeslm.progress`` Stage (with the forecast's share of its time), Note or Plan (the run's forecast); a
callback with a ``count(done, total, unit)`` method also gets counts within a stage (edgeslm/progress_view.py
draws them). Only ``export`` loads torch: ``gate``, ``report`` and ``matrix`` stay light enough for a CI step with
no ML stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from edgeslm.backends import get_backend, unavailable_here
from edgeslm.bundle.caveats import clear
from edgeslm.bundle.inspect import inspect_bundle
from edgeslm.bundle.manifest import verify as verify_bundle
from edgeslm.bundle.push import DEVICE_DIR
from edgeslm.bundle.push import push as push_bundle
from edgeslm.errors import InputError
from edgeslm.fleet.matrix import matrix as fleet_matrix
from edgeslm.fleet.spec import load_fleet
from edgeslm.latency.bench import bench_bundle
from edgeslm.latency.devices import builtin_devices, host_device, load_device
from edgeslm.latency.host import host_facts
from edgeslm.latency.perf import ASSUMPTIONS
from edgeslm.latency.report import predict_bundle
from edgeslm.manifest import read_manifest
from edgeslm.records import FleetReport, FleetRow, Report, artifact_name
from edgeslm.reports.fleet import fleet_problems, load_jobs, load_reports, summary_rows
from edgeslm.reports.gate import Tolerance, current_failures, load_gate_file, regressions
from edgeslm.reports.write import render, render_fleet
from edgeslm.request import ExportRequest

if TYPE_CHECKING:
    from edgeslm.pipeline import ExportResult

Status = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


def export(request: ExportRequest, status: Status = _quiet) -> list[ExportResult]:
    """Run ``request``: one bundle per target (each ``ExportResult.passed`` says whether its gates passed)."""
    # The one deferred import: the pipeline loads torch and the compilers; every other command stays torch-free.
    from edgeslm.pipeline import export_targets

    return export_targets(request, status)


# --- run ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Choice:
    """The artifact ``run`` uses: its manifest entry, its file or package name, and the runtime it runs in."""

    entry: dict
    name: str
    runtime: str


def choose_artifact(bundle: Path, artifact: str | None = None) -> Choice:
    """``artifact`` by file or package name, or else the first in the manifest that can run on this machine
    (the first of all when none can: its runtime then says why)."""
    arts = read_manifest(bundle)["artifacts"]
    if artifact:
        chosen = next((a for a in arts if artifact in (a["file"], artifact_name(a))), None)
    else:
        chosen = next((a for a in arts if unavailable_here(a["backend"]) is None), arts[0])
    if chosen is None:
        raise InputError(f"no artifact {artifact!r} in {bundle}",
                         f"artifacts are {', '.join(artifact_name(a) for a in arts)}")
    return Choice(chosen, artifact_name(chosen), get_backend(chosen["backend"]).runtime)


def run(bundle: Path, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
        artifact: str | Choice | None = None, on_token: Callable[[str], None] | None = None, *,
        strict: bool = False, warn: Status = _quiet) -> str:
    """Generate from ``prompt`` with one artifact of ``bundle`` in its real runtime (``temperature`` 0: greedy);
    each piece goes to ``on_token`` as it is decoded. Returns the generated text. An artifact the export did not
    clear (a failed stage or bundle, a stage not run there) is named to ``warn`` first, or with ``strict``
    refused (GateFailed, exit 1) before it is loaded."""
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
    if temperature < 0:
        raise InputError(f"temperature must be 0 (greedy) or more, not {temperature}")
    chosen = artifact if isinstance(artifact, Choice) else choose_artifact(bundle, artifact)
    clear(read_manifest(bundle), [chosen.entry], strict, warn)
    pieces: list[str] = []

    def take(piece: str) -> None:
        pieces.append(piece)
        if on_token is not None:
            on_token(piece)

    get_backend(chosen.entry["backend"]).generate(bundle, chosen.entry, prompt, max_new_tokens, temperature, take)
    return "".join(pieces)


# --- inspect, verify, push ---------------------------------------------------------------------------------

def inspect(bundle: Path) -> list[dict]:
    """Each artifact's inputs/outputs, opset, ops and weight bytes by dtype, read from the files themselves."""
    return inspect_bundle(bundle)


def verify(bundle: Path) -> list[str]:
    """The bundle's problems (manifest schema, missing or changed files); empty when it is intact."""
    return verify_bundle(bundle)


def push(bundle: Path, serial: str | None = None, device_dir: str = DEVICE_DIR) -> str:
    """Verify ``bundle`` and copy it onto an Android device with adb; returns the folder it landed in there."""
    return push_bundle(bundle, serial, device_dir)


# --- bench, predict ----------------------------------------------------------------------------------------

def bench(bundle: Path, prompt_len: int = 128, gen_len: int = 64, warmup: int = 1, repeats: int = 3,
          status: Status = _quiet, *, strict: bool = False, warn: Status = _quiet) -> dict:
    """Time every artifact of ``bundle`` here: this machine's facts and one row per artifact (TTFT, prefill and
    decode tok/s as median/min/max of ``repeats`` runs, peak RSS), and ``warnings``: each artifact to be timed
    that the export did not clear (also named to ``warn`` first; with ``strict`` refused, GateFailed, before
    anything runs), as ``edgeslm bench --json`` prints it."""
    m = read_manifest(bundle)
    caveats = clear(m, [a for a in m["artifacts"] if unavailable_here(a["backend"]) is None], strict, warn)
    status("measuring this machine's memory bandwidth")
    host = host_facts()
    status("benchmarking")
    rows = bench_bundle(bundle, prompt_len, gen_len, warmup, repeats, status=status)
    return {"host": host, "prompt_len": prompt_len, "gen_len": gen_len, "warmup": warmup, "repeats": repeats,
            "artifacts": rows, "warnings": [c.to_json() for c in caveats]}


def predict(bundle: Path, device: str | Path | None = None, prompt_len: int = 512, gen_len: int = 128,
            status: Status = _quiet) -> dict:
    """Predicted TTFT, prefill/decode speed and memory of every artifact of ``bundle`` on ``device`` (a profile
    name or .toml, ``host`` for this machine; default: the bundle's target device), as ``edgeslm predict
    --json`` prints it. An artifact that cannot run there at all (over a hard limit) is an InputError."""
    name = device or read_manifest(bundle)["target"].get("device")
    if not name:
        raise InputError("the bundle's target names no device", f"pass --device ({', '.join(builtin_devices())})")
    if name == "host":
        status("measuring this machine's memory bandwidth")
        dev = host_device(host_facts())
    else:
        dev = load_device(name)
    rows = predict_bundle(bundle, dev, prompt_len, gen_len)
    refused = [r for r in rows if r.get("over_limit")]
    if refused:
        raise InputError(f"{refused[0]['artifact']} cannot run on {dev.name}: {refused[0]['over_limit']}",
                         "export with a shorter --context-length, a smaller model or a lower-bit recipe")
    return {"device": dev.name, "description": dev.description, "artifacts": rows, "assumptions": ASSUMPTIONS}


# --- matrix ----------------------------------------------------------------------------------------------

def matrix(fleet: Path, fmt: str = "github") -> dict:
    """The CI matrix of the fleet file ``fleet``: one job per (model, target[, recipe]), in the form ``fmt``'s
    engine takes (``github``: ``strategy.matrix``; ``gitlab``: ``parallel:matrix``)."""
    return fleet_matrix(load_fleet(fleet), fmt)


def job_command(fleet: Path, job: str) -> str:
    """The command line of the fleet's job named ``job`` (what a GitLab matrix job runs)."""
    return load_fleet(fleet).job(job).command


# --- report, gate ------------------------------------------------------------------------------------------

Reports = Path | Sequence[Path]


def _paths(reports: Reports) -> list[Path]:
    paths = [Path(reports)] if isinstance(reports, (str, Path)) else [Path(p) for p in reports]
    if not paths:
        raise InputError("no REPORTS given", "pass a --report-dir folder, a bundle, or a folder of job reports")
    return paths


@dataclass(frozen=True)
class Rendered:
    """What ``report`` wrote: the release verdict and the files."""

    passed: bool
    written: list[Path]
    report: Report | FleetReport = field(repr=False)


def report(reports: Reports, html: Path | None = None, junit: Path | None = None,
           markdown: Path | None = None) -> Rendered:
    """Render ``reports`` (a --report-dir folder, a bundle, or a folder of bundles) as HTML, JUnit XML and
    Markdown [default: index.html, junit.xml, summary.md inside ``reports``]. Several report folders, or a folder
    of them, are a fleet: one summary across its jobs [default: written into that one folder]."""
    paths = _paths(reports)
    doc = load_reports(paths)
    if isinstance(doc, FleetReport):
        written = render_fleet(doc, paths[0] if len(paths) == 1 else None, html, junit, markdown)
    else:
        written = render(doc, paths[0], html, junit, markdown)
    return Rendered(doc.passed, list(written), doc)


@dataclass(frozen=True)
class GateResult:
    """``gate``'s verdict: every failed check and (with a baseline) regression, one row each; for a fleet, each
    row names its job, and ``summary`` holds the models × targets rows."""

    problems: list[dict]
    counts: dict  # the current reports' checks: passed, not_run, info, ...
    baseline: bool  # whether a baseline was compared
    jobs: list[str] | None = None  # a fleet's jobs (None: one report)
    summary: list[FleetRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        doc = {"passed": self.passed, "problems": self.problems}
        if self.jobs is not None:
            doc.update(jobs=self.jobs, summary=[r.to_json() for r in self.summary])
        return doc


def gate(reports: Reports, baseline: Path | None = None, gate_file: Path | None = None,
         tolerance: Tolerance = Tolerance(), fleet: Path | None = None) -> GateResult:
    """Whether ``reports`` may ship: its failed checks (judged also by ``gate_file``'s [gates.*] tables) and,
    with ``baseline``, its regressions beyond ``tolerance``. A fleet's reports (several folders, or a folder of
    them) are judged job by job against the baseline's job of the same name; with ``fleet`` (its fleet file),
    a job that wrote no reports fails too."""
    paths = _paths(reports)
    gates = load_gate_file(gate_file) if gate_file else None
    expected = [j.name for j in load_fleet(fleet).jobs] if fleet else None
    current = load_jobs(paths, empty_ok=True) if expected is not None else load_reports(paths)
    base = load_reports([Path(baseline)]) if baseline else None
    if isinstance(current, Report):
        if isinstance(base, FleetReport):
            raise InputError(f"REPORTS hold one report but the baseline {baseline} holds {len(base.jobs)} jobs",
                             "pass the baseline's report of the same model and targets")
        rows = current_failures(current, gates)
        if base is not None:
            rows += regressions(current, base, tolerance)
        return GateResult(rows, current.counts, base is not None)
    if isinstance(base, Report):
        raise InputError(f"REPORTS hold {len(current.jobs)} jobs but the baseline {baseline} holds one report",
                         "pass the baseline's folder of job reports (as REPORTS), matched job by job")
    rows = fleet_problems(current, gates, base, tolerance, expected)
    return GateResult(rows, current.counts, base is not None, list(current.jobs), summary_rows(current))
