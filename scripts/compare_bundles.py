#!/usr/bin/env python3
"""Compare the JSON reports of two bundles (or two multi-target output folders, or two --report-dir folders):
same files, same keys in the same order, same values, ignoring what legitimately varies between two runs of the
same export (timings, timestamps, provenance versions, host facts).

    python scripts/compare_bundles.py OLD NEW [--ignore-artifact-bytes]

Prints each difference as ``file: path: old != new`` and exits 1 if there is any, else prints a summary and exits
0. Artifact bytes and sha256 are compared unless ``--ignore-artifact-bytes`` (exports are deterministic: two runs
of the same code write the same .pte / .onnx bytes).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPORTS = ("manifest.json", "parity.json", "latency.json", "summary.json", "golden.json")
# Keys whose values vary between runs of the same export: timestamps, durations, host facts, versions.
VOLATILE_KEYS = {"created", "elapsed", "seconds", "host", "provenance"}
VOLATILE_PATTERN = re.compile(r"^(?!.*tok_s$).*_s$")  # durations (total_s, latency_s...), not rates (decode_tok_s)
# Under these sections every number is a timing or memory figure measured on this machine.
TIMED_SECTIONS = ("measured_here",)
ARTIFACT_BYTES = {"sha256", "bytes", "size_bytes"}
# Files whose bytes legitimately differ between two runs (checked: two exports of the same code from the same
# checkout write identical .pte, .onnx and .onnx.data bytes, so those sha256 are compared):
#  - report files that carry a timestamp (latency.json's "created"): their sha256 and bytes in manifest.reports;
#  - Core ML packages: Manifest.json and model.mlmodel hold random UUIDs, so their sha256 (same bytes).
# ONNX graphs record the exporting checkout's source paths (torch stack traces in node metadata): compare bundles
# exported from the same checkout path, or pass --ignore-artifact-bytes.
TIMESTAMPED_REPORTS = {"latency.json"}
VARIES = "<varies between runs>"


def normalize(doc):
    """A manifest with the values that legitimately vary between runs replaced by a marker (in place)."""
    if not isinstance(doc, dict) or doc.get("kind") != "edgeslm-bundle":
        return doc
    for r in doc.get("reports") or []:
        if isinstance(r, dict) and r.get("file") in TIMESTAMPED_REPORTS:
            r.update({k: VARIES for k in ("sha256", "bytes") if k in r})
    for a in doc.get("artifacts") or []:
        if isinstance(a, dict) and a.get("backend") == "coreml":
            for f in [a, *(a.get("files") or [])]:
                if isinstance(f, dict) and "sha256" in f:
                    f["sha256"] = VARIES
    return doc


def volatile(key: str) -> bool:
    return key in VOLATILE_KEYS or bool(VOLATILE_PATTERN.match(key))


def diff(old, new, path: str, out: list[str], ignore_bytes: bool, timed: bool = False) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        ok, nk = [k for k in old if not volatile(k)], [k for k in new if not volatile(k)]
        if ok != nk:
            missing = [k for k in ok if k not in nk]
            extra = [k for k in nk if k not in ok]
            out.append(f"{path or '/'}: keys differ (missing {missing}, extra {extra})" if missing or extra
                       else f"{path or '/'}: key order differs: {ok} != {nk}")
        for k in ok:
            if k in new:
                if ignore_bytes and k in ARTIFACT_BYTES:
                    continue
                diff(old[k], new[k], f"{path}/{k}", out, ignore_bytes, timed or k in TIMED_SECTIONS)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            out.append(f"{path}: {len(old)} items != {len(new)} items")
        for i, (a, b) in enumerate(zip(old, new)):
            diff(a, b, f"{path}/{i}", out, ignore_bytes, timed)
    elif timed and isinstance(old, (int, float)) and isinstance(new, (int, float)) \
            and not isinstance(old, bool) and type(old) is type(new):
        return  # a timing on this machine
    elif type(old) is not type(new) or old != new:
        out.append(f"{path}: {json.dumps(old)[:120]} != {json.dumps(new)[:120]}")


def report_files(root: Path) -> dict[str, Path]:
    """Every report JSON under ``root``, keyed by its path relative to ``root``."""
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*.json"))
            if p.name in REPORTS and ".mlpackage" not in str(p)}


def compare(old_root: Path, new_root: Path, ignore_bytes: bool = False) -> tuple[list[str], list[str]]:
    old, new = report_files(old_root), report_files(new_root)
    problems = [f"{name}: only in {old_root}" for name in old if name not in new]
    problems += [f"{name}: only in {new_root}" for name in new if name not in old]
    compared = []
    for name in (n for n in old if n in new):
        found: list[str] = []
        diff(normalize(json.loads(old[name].read_text())), normalize(json.loads(new[name].read_text())), "", found,
             ignore_bytes)
        problems += [f"{name}: {f}" for f in found]
        compared.append(name)
    return compared, problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--ignore-artifact-bytes", action="store_true",
                    help="do not compare sha256 / bytes / size_bytes (artifacts not deterministic)")
    args = ap.parse_args(argv)
    compared, problems = compare(args.old, args.new, args.ignore_artifact_bytes)
    for p in problems:
        print(p)
    if not compared:
        print(f"no report JSON found under {args.old}")
        return 1
    print(f"{'DIFFERENT' if problems else 'SAME'}: {len(compared)} files compared ({', '.join(compared)}), "
          f"{len(problems)} difference{'s' if len(problems) != 1 else ''}; ignored: timings, timestamps, "
          "durations, host facts, provenance versions, sha256 of timestamped reports and Core ML packages"
          + (", artifact bytes" if args.ignore_artifact_bytes else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
