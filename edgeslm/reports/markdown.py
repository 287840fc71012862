"""A Markdown summary fit for a pull-request comment: the verdict, one line per target and artifact, failures."""

from __future__ import annotations

from edgeslm.records import Report, Status


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
        lat = t.latency or {}
        here = {a["artifact"]: a for a in ((lat.get("measured_here") or {}).get("artifacts") or [])}
        pred = {a["artifact"]: a for a in (lat.get("predicted_on_device") or {}).get("artifacts", [])}
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
