"""Release gating: several targets in one export, reports that follow their schemas, JUnit with a test case per
(target, artifact, check), Markdown and HTML (rendered in headless Chromium), and `gate --baseline` catching a
worse recipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeslm.cli import main
from edgeslm.json_schemas import problems
from edgeslm.testing.targets import loose_target


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    d = tmp_path_factory.mktemp("targets")
    paths = []
    for name, device in (("edge-a", "snapdragon-8-gen-3"), ("edge-b", "jetson-orin-nano-8gb")):
        (d / f"{name}.toml").write_text(loose_target(name, device))
        paths.append(str(d / f"{name}.toml"))
    return paths


def _export(model, targets, out, reports, recipe):
    args = ["export", str(model), "-o", str(out), "--report-dir", str(reports), "--recipe", recipe, "--no-bench"]
    for t in targets:
        args += ["--target", t]
    return CliRunner().invoke(main, args)


@pytest.fixture(scope="module")
def exported(tiny_dir, targets, tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    res = _export(tiny_dir("llama"), targets, root / "bundles", root / "reports", "int8")
    return root, res


def test_several_targets_one_run_with_reports(exported):
    root, res = exported
    assert res.exit_code == 0, res.output
    assert res.output.count("resolving model") == 1  # loading and the fp32 reference shared by both targets
    assert sorted(p.name for p in (root / "bundles").iterdir()) == ["edge-a", "edge-b"]
    rep = root / "reports"
    for f in ("summary.json", "junit.xml", "summary.md", "index.html"):
        assert (rep / f).is_file(), f
    for t in ("edge-a", "edge-b"):  # each target's JSON reports follow the published schemas
        for name, schema in (("manifest.json", "manifest"), ("parity.json", "parity"), ("latency.json", "latency")):
            assert problems(json.loads((rep / t / name).read_text()), schema) == [], (t, name)
    summary = json.loads((rep / "summary.json").read_text())
    assert problems(summary, "report") == [] and summary["passed"]
    assert [t["target"] for t in summary["targets"]] == ["edge-a", "edge-b"]
    # the same artifact predicted on each target's own device
    devices = [t["latency"]["predicted_on_device"]["device"] for t in summary["targets"]]
    assert devices == ["snapdragon-8-gen-3", "jetson-orin-nano-8gb"]
    # the identical ONNX folder is built once and reused for the second target, byte for byte
    a, b = (json.loads((root / "bundles" / t / "manifest.json").read_text())["artifacts"][0]
            for t in ("edge-a", "edge-b"))
    assert b["reused_from_target"] == "edge-a" and "reused_from_target" not in a
    assert a["sha256"] == b["sha256"] and [f["sha256"] for f in a["files"]] == [f["sha256"] for f in b["files"]]
    assert res.output.count("onnx: exporting") == 1
    assert CliRunner().invoke(main, ["verify", str(root / "bundles" / "edge-b")]).exit_code == 0


def test_reused_artifact_is_judged_by_each_targets_gates(tiny_dir, targets, tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text(loose_target("strict", "pixel-8-pro", max_kl_mean=0.0))
    res = _export(tiny_dir("llama"), [targets[0], str(strict)], tmp_path / "b", tmp_path / "r", "int8")
    assert res.exit_code == 1, res.output
    status = {t: json.loads((tmp_path / "b" / t / "manifest.json").read_text())["status"] for t in ("edge-a", "strict")}
    assert status == {"edge-a": "passed", "strict": "failed"}


def test_schemas_reject_broken_reports(exported):
    root, _ = exported
    parity = json.loads((root / "reports" / "edge-a" / "parity.json").read_text())
    parity["checks"][0]["metrics"]["top1_agreement"] = 1.5
    del parity["passed"]
    found = problems(parity, "parity")
    assert any("passed" in p for p in found) and any("1.5" in p for p in found)


def test_junit_has_a_case_per_target_artifact_check(exported):
    root, _ = exported
    summary = json.loads((root / "reports" / "summary.json").read_text())
    tree = ET.parse(root / "reports" / "junit.xml").getroot()
    suites = tree.findall("testsuite")
    assert [s.get("name") for s in suites] == ["edge-a", "edge-b"]
    for suite, t in zip(suites, summary["targets"]):
        cases = suite.findall("testcase")
        assert len(cases) == len(t["checks"]) >= 4
        names = {c.get("name") for c in cases}
        assert "onnx-int8/model.onnx: quantization" in names and "model: reauthoring" in names
        assert not suite.findall("testcase/failure")


def test_markdown_summary(exported):
    root, _ = exported
    md = (root / "reports" / "summary.md").read_text()
    assert "PASSED" in md.splitlines()[0]
    assert md.count("`onnx-int8/model.onnx`") == 2 and "jetson-orin-nano-8gb" in md


def test_gate_baseline_catches_a_worse_recipe(exported, tiny_dir, targets):
    """The same targets re-exported with int4 instead of int8: each passes its own gate, but against the int8
    baseline the quantization stage regressed, and gate names it."""
    root, _ = exported
    res = _export(tiny_dir("llama"), targets, root / "bundles-int4", root / "reports-int4", "int4")
    assert res.exit_code == 0, res.output
    ok = CliRunner().invoke(main, ["gate", str(root / "reports")])
    assert ok.exit_code == 0 and "PASSED" in ok.output
    same = CliRunner().invoke(main, ["gate", str(root / "reports"), "--baseline", str(root / "reports")])
    assert same.exit_code == 0, same.output
    bad = CliRunner().invoke(main, ["gate", str(root / "reports-int4"), "--baseline", str(root / "reports"),
                                    "--json"])
    assert bad.exit_code == 1, bad.output
    rows = json.loads(bad.stdout)["problems"]
    kl = [r for r in rows if r["check"] == "quantization" and r["what"] == "mean KL"]
    assert {r["target"] for r in kl} == {"edge-a", "edge-b"}
    assert all(r["current"] > r["baseline"] * 1.25 for r in kl)
    assert any(r["what"] == "predicted decode tok/s" for r in rows) is False  # int4 is smaller: faster, not slower
    table = CliRunner().invoke(main, ["gate", str(root / "bundles-int4"), "--baseline", str(root / "reports")])
    assert table.exit_code == 1 and "mean KL" in table.output  # bundles read as well as report folders


def test_gate_baseline_with_latency_budget_rows(exported, tmp_path):
    """Reports holding latency-budget rows (metrics {predicted, limit}, no parity metrics) gate against themselves
    cleanly; a budget that passed in the baseline and fails now, or a worse parity metric, is a regression."""
    root, _ = exported
    summary = json.loads((root / "reports" / "summary.json").read_text())
    budgets = [c for t in summary["targets"] for c in t["checks"] if c["kind"] == "latency"]
    assert budgets and all(c["status"] == "passed" and "predicted" in c["metrics"] for c in budgets)
    same = CliRunner().invoke(main, ["gate", str(root / "reports"), "--baseline", str(root / "reports")])
    assert same.exit_code == 0, same.output
    assert "no regression against the baseline" in " ".join(same.output.split())

    worse = tmp_path / "worse"
    shutil.copytree(root / "reports", worse)
    target = summary["targets"][0]
    budget = next(c for c in target["checks"] if c["kind"] == "latency")
    budget.update(status="failed", message="predicted 200000 vs limit 100000")
    budget["metrics"]["predicted"] = 200000.0
    quant = next(c for c in target["checks"] if c["check"] == "quantization")
    quant["metrics"]["top1_agreement"] -= 0.2
    (worse / "summary.json").write_text(json.dumps(summary))
    res = CliRunner().invoke(main, ["gate", str(worse), "--baseline", str(root / "reports"), "--json"])
    assert res.exit_code == 1, res.output
    rows = json.loads(res.stdout)["problems"]
    found = {(r["target"], r["check"], r["what"]) for r in rows}
    assert (target["target"], budget["check"], "failed") in found  # a failed check now
    assert (target["target"], budget["check"], "status") in found  # and passed in the baseline: a regression
    assert (target["target"], "quantization", "top-1 agreement") in found
    assert all(r["target"] == target["target"] for r in rows)


def test_gate_file_and_bad_input(exported, tmp_path):
    root, _ = exported
    strict = tmp_path / "strict.toml"
    strict.write_text("[gates.int8.quantization]\nmax_kl_mean = 0.0\n")
    res = CliRunner().invoke(main, ["gate", str(root / "reports"), "--gates", str(strict)])
    assert res.exit_code == 1 and "gate file" in res.output
    missing = CliRunner().invoke(main, ["gate", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_html_report_renders_in_headless_chromium(exported, tmp_path):
    assert shutil.which("chromium"), "chromium is missing: scripts/setup installs it (Debian package chromium)"
    root, _ = exported
    html = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["report", str(root / "reports"), "--html", str(html)]).exit_code == 0
    text = html.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(cmd + ["--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'id="verdict"' in dom and "PASSED" in dom.split('id="verdict"')[1][:200]
    assert dom.count("<svg") >= 4  # per-position plots and size bars rendered inline
    shot = tmp_path / "shot.png"
    subprocess.run(cmd + ["--window-size=1280,1600", f"--screenshot={shot}", html.as_uri()], capture_output=True,
                   timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_unwritable_report_path_is_one_error_line(exported):
    root, _ = exported
    res = CliRunner().invoke(main, ["report", str(root / "reports"), "--html", "/proc/edgeslm/index.html"])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot use /proc/edgeslm" in errors[0], res.stderr
    assert "internal error" not in res.output and "Traceback" not in res.output



JOBS = ("llama-edge-a", "llama-edge-b")  # what a fleet of one model × the two targets names its jobs


def _fleet_of(exported, root: Path, failing: str | None = None) -> Path:
    """Folder ``root`` holding the jobs' --report-dir folders (copies of the exported reports); ``failing``'s
    quantization check on edge-b is marked failed, as a failed gate writes it."""
    src, _ = exported
    for job in JOBS:
        shutil.copytree(src / "reports", root / job)
    if failing:
        path = root / failing / "summary.json"
        summary = json.loads(path.read_text())
        target = next(t for t in summary["targets"] if t["target"] == "edge-b")
        quant = next(c for c in target["checks"] if c["check"] == "quantization")
        quant.update(status="failed", message="mean KL 0.06 > 0.05")
        path.write_text(json.dumps(summary))
    return root


def test_fleet_gate_names_the_failing_job(exported, targets, tmp_path):
    """A folder of job reports (or the jobs' folders given one by one) is one fleet: one exit code, each problem
    naming its job, a models × targets summary; --baseline matches job by job; --fleet fails a job with no
    reports; a baseline of another shape is refused."""
    fleet = _fleet_of(exported, tmp_path / "reports", failing="llama-edge-b")
    clean = _fleet_of(exported, tmp_path / "reports-main")
    for args in ([str(fleet)], [str(fleet / "llama-edge-b"), str(fleet / "llama-edge-a")]):
        res = CliRunner().invoke(main, ["gate", *args, "--json"])
        assert res.exit_code == 1, res.output
        doc = json.loads(res.stdout)
        assert doc["jobs"] == [Path(a).name for a in args] if len(args) > 1 else list(JOBS)
        assert {(p["job"], p["target"], p["check"]) for p in doc["problems"]} == {
            ("llama-edge-b", "edge-b", "quantization")}
        rows = {(r["job"], r["target"]): r for r in doc["summary"]}
        assert len(rows) == 4 and rows[("llama-edge-b", "edge-b")]["status"] == "failed"
        assert rows[("llama-edge-a", "edge-b")]["status"] == "passed" and rows[("llama-edge-a", "edge-a")]["bytes"] > 0
        assert all(r["decode_predicted"] > 0 and r["decode_here"] is None for r in rows.values())  # --no-bench
    table = CliRunner().invoke(main, ["gate", str(fleet)])  # 80 columns, as a CI log
    assert table.exit_code == 1 and "fleet: 2 jobs" in table.output
    assert "│ llama-edge-b │" in table.output.split("gate: FAILED")[1], table.output
    assert table.output.splitlines()[-1] == "failed jobs: llama-edge-b"
    assert CliRunner().invoke(main, ["gate", str(clean)]).exit_code == 0

    base = CliRunner().invoke(main, ["gate", str(fleet), "--baseline", str(clean), "--json"])
    found = {(p["job"], p["what"]) for p in json.loads(base.stdout)["problems"]}
    assert base.exit_code == 1 and found == {("llama-edge-b", "failed"), ("llama-edge-b", "status")}  # regressed

    fleet_file = tmp_path / "fleet.toml"
    fleet_file.write_text(f"targets = {json.dumps(targets)}\n[[models]]\npath = \"llama\"\n"
                          "[[models]]\npath = \"qwen2\"\n")
    missing = CliRunner().invoke(main, ["gate", str(clean), "--fleet", str(fleet_file), "--json"])
    rows = json.loads(missing.stdout)["problems"]
    assert missing.exit_code == 1 and {(r["job"], r["what"]) for r in rows} == {
        ("qwen2-edge-a", "missing"), ("qwen2-edge-b", "missing")}
    empty = tmp_path / "none-collected"
    empty.mkdir()
    res = CliRunner().invoke(main, ["gate", str(empty), "--fleet", str(fleet_file)])
    assert res.exit_code == 1 and all(j in res.output for j in (*JOBS, "qwen2-edge-a"))  # every job missing

    for cur, old in ((fleet, exported[0] / "reports"), (exported[0] / "reports", clean)):
        res = CliRunner().invoke(main, ["gate", str(cur), "--baseline", str(old)])
        assert res.exit_code == 2 and "baseline" in res.stderr, res.output
    twice = CliRunner().invoke(main, ["gate", str(fleet / "llama-edge-a"), str(clean / "llama-edge-a")])
    assert twice.exit_code == 2 and "are both job 'llama-edge-a'" in twice.stderr


def test_fleet_report_is_one_table_of_models_by_targets(exported, tmp_path):
    fleet = _fleet_of(exported, tmp_path / "reports", failing="llama-edge-b")
    res = CliRunner().invoke(main, ["report", str(fleet)])
    assert res.exit_code == 0 and res.output.startswith("FAILED"), res.output
    assert not (fleet / "summary.json").exists()  # the folder still reads as a fleet
    md = (fleet / "summary.md").read_text()
    assert "FAILED" in md.splitlines()[0] and "2 jobs, 1 failed (llama-edge-b)" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| llama-")]
    assert len(rows) == 4 and sum("**FAILED**" in r for r in rows) == 1
    assert "- **llama-edge-b** edge-b `onnx-int8/model.onnx` quantization: mean KL 0.06 > 0.05" in md
    html = (fleet / "index.html").read_text()
    assert 'href="llama-edge-b/index.html"' in html and "<script" not in html and 'id="fleet"' in html
    suites = [s.get("name") for s in ET.parse(fleet / "junit.xml").getroot().findall("testsuite")]
    assert suites == [f"{j}/{t}" for j in JOBS for t in ("edge-a", "edge-b")]
    assert CliRunner().invoke(main, ["gate", str(fleet)]).exit_code == 1  # re-read after the summary pages
    several = CliRunner().invoke(main, ["report", *(str(fleet / j) for j in JOBS)])
    assert several.exit_code == 2 and "--markdown" in several.stderr
    md2 = tmp_path / "out" / "fleet.md"
    ok = CliRunner().invoke(main, ["report", *(str(fleet / j) for j in JOBS), "--markdown", str(md2)])
    assert ok.exit_code == 0 and md2.is_file() and not (tmp_path / "out" / "index.html").exists()
