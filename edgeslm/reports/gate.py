"""``edgeslm gate``: decide from reports whether a model may ship.

Fails on (a) any failed check in the current reports (parity gates, package structure, latency budgets), after
optionally re-judging the parity metrics against a gate file's thresholds, and (b) with a baseline, on any
regression beyond tolerance: the same (target, backend, check) compared between the two reports, so swapping a
backend's recipe for a worse one is caught even though the artifact's name changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeslm.gates import Thresholds, judge, parse_gate_tables
from edgeslm.records import Report, Row, Status
from edgeslm.reports.collect import latency_rows
from edgeslm.datafiles import read_toml
from edgeslm.errors import InputError


@dataclass(frozen=True)
class Tolerance:
    top1_drop: float = 0.02  # absolute
    kl_rise: float = 0.25  # relative (and at least 0.002 absolute)
    greedy_drop: float = 0.10  # absolute
    predicted_decode_drop: float = 0.05  # relative; predictions are deterministic in the artifact's bytes
    measured_decode_drop: float = 0.30  # relative; timings on shared CI machines are noisy


def _row(c: Row, what: str, base, cur, limit: str) -> dict:
    return {"target": c.target, "artifact": c.artifact, "backend": c.backend, "check": c.check,
            "what": what, "baseline": base, "current": cur, "limit": limit}


def current_failures(report: Report, gates: dict | None = None) -> list[dict]:
    """Failed checks; with ``gates`` ({recipe or 'reauthoring': {stage: Thresholds}}), parity metrics are
    re-judged against those thresholds too."""
    rows = []
    for c in report.rows:
        if c.status is Status.FAILED:
            rows.append(_row(c, "failed", None, c.message, "must pass"))
        if gates and c.kind == "parity" and c.metrics:
            th = gates.get("reauthoring") if c.check == "reauthoring" else \
                gates.get(c.recipe or "", {}).get(c.check)
            if isinstance(th, Thresholds):
                failures, _ = judge(th, dict(c.metrics), [])
                rows += [_row(c, "gate file", None, f, "gate file") for f in failures]
    return rows


def _index(report: Report) -> dict[tuple, Row]:
    return {(t.target, c.backend, c.check): c for t in report.targets for c in t.checks}


def _latency(report: Report) -> dict:
    out = {}
    for t in report.targets:
        here, there = latency_rows(t.latency)
        backend = {a.name: a.backend for a in t.artifacts}
        for a in there.values():
            if a.get("predicted"):
                out.setdefault((t.target, backend.get(a["artifact"])), {})["predicted"] = \
                    (a["artifact"], a["decode_tok_s"]["point"])
        for a in here.values():
            if a.get("measured"):
                out.setdefault((t.target, backend.get(a["artifact"])), {})["measured"] = \
                    (a["artifact"], a["decode_tok_s"]["median"])
    return out


def regressions(current: Report, baseline: Report, tol: Tolerance = Tolerance()) -> list[dict]:
    rows = []
    base = _index(baseline)
    for key, c in _index(current).items():
        b = base.get(key)
        if b is None:
            continue
        # Only the metrics both rows have are compared: parity rows carry top-1 / KL / greedy, latency budget
        # rows {predicted, limit} (judged by their status below; decode speed is compared from latency.json).
        m, bm = c.metrics or {}, b.metrics or {}
        both = {k for k in ("top1_agreement", "kl_mean", "greedy_prefix_mean")
                if isinstance(m.get(k), (int, float)) and isinstance(bm.get(k), (int, float))}
        if "top1_agreement" in both and bm["top1_agreement"] - m["top1_agreement"] > tol.top1_drop:
            rows.append(_row(c, "top-1 agreement", bm["top1_agreement"], m["top1_agreement"],
                             f"drop ≤ {tol.top1_drop}"))
        if "kl_mean" in both and m["kl_mean"] > bm["kl_mean"] * (1 + tol.kl_rise) \
                and m["kl_mean"] - bm["kl_mean"] > 0.002:
            rows.append(_row(c, "mean KL", bm["kl_mean"], m["kl_mean"], f"rise ≤ {tol.kl_rise:.0%}"))
        if "greedy_prefix_mean" in both and bm["greedy_prefix_mean"] - m["greedy_prefix_mean"] > tol.greedy_drop:
            rows.append(_row(c, "greedy agreement", bm["greedy_prefix_mean"], m["greedy_prefix_mean"],
                             f"drop ≤ {tol.greedy_drop}"))
        if b.status is Status.PASSED and c.status in (Status.FAILED, Status.NOT_RUN):
            rows.append(_row(c, "status", b.status.value, c.status.value, "no longer passing"))
    base_lat = _latency(baseline)
    for key, cur in _latency(current).items():
        for kind, limit in (("predicted", tol.predicted_decode_drop), ("measured", tol.measured_decode_drop)):
            if kind in cur and kind in base_lat.get(key, {}):
                (art, now), (_, before) = cur[kind], base_lat[key][kind]
                if now < before * (1 - limit):
                    rows.append({"target": key[0], "artifact": art, "backend": key[1], "check": "latency",
                                 "what": f"{kind} decode tok/s", "baseline": before, "current": now,
                                 "limit": f"drop ≤ {limit:.0%}"})
    return rows


def load_gate_file(path: Path) -> dict:
    """A gate file holds ``[gates.*]`` tables exactly as target files do, checked the same way (types, ranges,
    recipe and stage names): bad input is an InputError naming the file and key, never a crash later."""
    data = read_toml(path, "gate file", "a gate file holds [gates.*] tables, as target files do")
    unknown = sorted(set(data) - {"gates"})
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r} at the top level of gate file {path}",
                         "a gate file holds only [gates.*] tables")
    return parse_gate_tables(data.get("gates", {}), path)
