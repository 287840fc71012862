"""The export forecast against real runs: predicted vs measured wall time and peak RSS of each export, read from
the ``export_cost`` every export writes into latency.json (schema 1.2), so the forecast's coefficients
(edgeslm/preflight.py) can be recalibrated from the runs a suite or a CI job has made.

    .venv/bin/python benchmarks/forecast_error.py out/                 # every bundle under out/
    .venv/bin/python benchmarks/forecast_error.py reports/ out/demo-android --json

Each PATH is a bundle, a folder of bundles or a --report-dir folder (read as ``edgeslm report`` reads them).
Prints a Markdown table, one row per bundle (time and peak RSS, predicted / measured / error, where error =
measured / predicted - 1), and the median error of each column; ``--json`` prints the rows instead. Bundles
written before latency.json 1.2 have no export_cost: they are named on stderr and left out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from edgeslm.errors import EdgeslmError
from edgeslm.records import Latency
from edgeslm.reports.collect import load_report


def rows(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """One row per bundle with an export_cost, and the bundles without one."""
    out, missing = [], []
    for path in paths:
        report = load_report(path)
        for t in report.targets:
            cost = Latency.from_json(t.latency).export_cost if t.latency else None
            if cost is None:
                missing.append(t.folder or t.target)
                continue
            out.append({"bundle": t.folder or t.target, "model": t.model, "target": t.target,
                        "backends": cost.backends, "cpu_count": cost.cpu_count, **cost.to_json()})
    return out, missing


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.0%}"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def markdown(table: list[dict]) -> str:
    lines = ["| bundle | model | backends | CPUs | time predicted s | measured s | error | peak predicted MiB "
             "| measured MiB | error |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        t, m = r["seconds"], r["peak_rss_mib"]
        lines.append(f"| {r['bundle']} | {r['model']} | {', '.join(r['backends'])} | {r['cpu_count'] or 'n/a'} "
                     f"| {_num(t['predicted'])} | {_num(t['measured'])} | {_pct(t['error'])} "
                     f"| {_num(m['predicted'], '{:.0f}')} | {_num(m['measured'], '{:.0f}')} | {_pct(m['error'])} |")
    medians = []
    for key, label in (("seconds", "time"), ("peak_rss_mib", "peak RSS")):
        errors = [r[key]["error"] for r in table if r[key]["error"] is not None]
        if errors:
            medians.append(f"median {label} error over {len(errors)} export{'s' if len(errors) > 1 else ''}: "
                           f"{_pct(statistics.median(errors))}")
    return "\n".join(lines + ([""] + medians if medians else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    try:
        table, missing = rows(args.paths)
    except EdgeslmError as e:
        print(f"error: {e.problem} — fix: {e.hint}", file=sys.stderr)
        return 2
    for m in missing:
        print(f"{m}: no export_cost in its latency.json (written before schema 1.2); left out", file=sys.stderr)
    print(json.dumps(table, indent=2) if args.json else markdown(table), end="" if not args.json else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
