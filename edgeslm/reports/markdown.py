"""A Markdown summary fit for a pull-request comment: the verdict, one line per target and artifact, failures;
for a fleet, one line per job, target and artifact."""

from __future__ import annotations

from edgeslm.records import FleetReport, FleetRow, Report, Status
from edgeslm.reports.collect import latency_rows


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def to_markdown(report: Report) -> str:
    verdict = "✅ PASSED" if report.passed else "❌ FAILED"
    n = report.counts
    lines = [f"## edgeslm: {report.model}: {verdict}", "",
             f"{n['passed']} checks passed, {n['failed']} failed, {n['not_run']} not run on this platform, "
             f"{n['info']} reported without a gate.", "",
             "| target | artifact | size | parity | quantization top-1 / KL / SQNR | decode tok/s here | predicted on device |",
             "|---|---|---|---|---|---|---|"]
    for t in report.targets:
        here, pred = latency_rows(t.latency)
        for a in t.artifacts:
            q = next((c for c in t.checks if c.artifact == a.name and c.check == "quantization"), None)
            qtxt = (f"{_fmt(q.metrics.get('top1_agreement'))} / {_fmt(q.metrics.get('kl_mean'))} / "
                    f"{_fmt(q.metrics.get('logit_sqnr_db'))} dB" if q else "—")
            h = here.get(a.name, {})
            htxt = f"{h['decode_tok_s']['median']:.0f}" if h.get("measured") else "not run here" if h else "—"
            p = pred.get(a.name, {})
            ptxt = (f"{p['decode_tok_s']['point']:.0f} tok/s on {p['device']}" if p.get("predicted") else "—")
            lines.append(f"| {t.target} | `{a.name}` | {a.bytes / 1e6:.2f} MB | {a.parity} | {qtxt} | "
                         f"{htxt} | {ptxt} |")
    failed = [c for c in report.rows if c.status is Status.FAILED]
    if failed:
        lines += ["", "### Failed", ""]
        lines += [f"- **{c.target}** `{c.artifact}` {c.check}: {c.message}" for c in failed]
    not_run = [c for c in report.rows if c.status is Status.NOT_RUN]
    if not_run:
        lines += ["", "### Not run on this platform (not counted as passed)", ""]
        lines += [f"- {c.target} `{c.artifact}` {c.check}: {c.message}" for c in not_run]
    return "\n".join(lines) + "\n"


def _or_dash(x, fmt: str) -> str:
    return "—" if x is None else fmt.format(x)


def fleet_markdown(fleet: FleetReport, rows: list[FleetRow]) -> str:
    """A fleet's summary: the verdict, the failed jobs, one line per (job, target, artifact), the failures."""
    verdict = "✅ PASSED" if fleet.passed else "❌ FAILED"
    n, failed = fleet.counts, fleet.failed_jobs
    lines = [f"## edgeslm fleet: {verdict}", "",
             f"{len(fleet.jobs)} jobs, {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else "") +
             f"; {n['passed']} checks passed, {n['failed']} failed, {n['not_run']} not run on this platform, "
             f"{n['info']} reported without a gate.", "",
             "| job | model | target | artifact | verdict | size | ppl Δ | decode tok/s here | predicted on device |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        word = "**FAILED**" if r.status is Status.FAILED else r.status.value.replace("_", " ")
        pred = f"{r.decode_predicted:.0f} tok/s on {r.device}" if r.decode_predicted is not None else "—"
        lines.append(f"| {r.job} | {r.model} | {r.target} | `{r.artifact}` | {word} | {r.bytes / 1e6:.2f} MB | "
                     f"{_or_dash(r.ppl_rise, '{:+.1%}')} | {_or_dash(r.decode_here, '{:.0f}')} | {pred} |")
    if fleet.failed_rows:
        lines += ["", "### Failed", ""]
        lines += [f"- **{job}** {c.target} `{c.artifact}` {c.check}: {c.message}" for job, c in fleet.failed_rows]
    return "\n".join(lines) + "\n"
