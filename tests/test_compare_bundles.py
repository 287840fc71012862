"""scripts/compare_bundles.py, which shows that a refactor leaves the bundle's JSON as it was: timings and
timestamps may differ, anything else is reported and fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_bundles.py"


def _bundle(folder: Path, kl: float, total_s: float, created: str) -> Path:
    folder.mkdir(parents=True)
    parity = {"kind": "edgeslm-parity", "status": "passed", "checks": [{"stage": "quantization",
                                                                       "metrics": {"kl_mean": kl}}]}
    manifest = {"kind": "edgeslm-bundle", "created": created, "status": "passed",
                "timings": {"total_s": total_s}, "artifacts": [{"file": "m.pte", "bytes": 10, "sha256": "a" * 64}]}
    (folder / "parity.json").write_text(json.dumps(parity))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)


def test_timings_and_timestamps_do_not_count(tmp_path):
    a = _bundle(tmp_path / "a", 0.05, 12.0, "2026-12-06T00:00:00+00:00")
    b = _bundle(tmp_path / "b", 0.05, 99.0, "2026-12-07T00:00:00+00:00")
    res = _compare(a, b)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SAME" in res.stdout


def test_a_changed_metric_fails(tmp_path):
    a = _bundle(tmp_path / "a", 0.05, 12.0, "2026-12-06T00:00:00+00:00")
    b = _bundle(tmp_path / "b", 0.06, 12.0, "2026-12-06T00:00:00+00:00")
    res = _compare(a, b)
    assert res.returncode == 1
    assert "parity.json" in res.stdout and "kl_mean" in res.stdout
