"""The Python API (edgeslm/api.py) and ExportRequest (edgeslm/request.py): usable without click, the same data
and refusals as the CLI, and `gate`/`report` torch-free on a report folder."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeslm import api
from edgeslm.cli import main
from edgeslm.errors import InputError
from edgeslm.request import ExportRequest

ROOT = Path(__file__).resolve().parents[1]


def test_request_is_frozen_and_normalized():
    req = ExportRequest.of("demo", ["android"], recipes=["fp32"], backends=("executorch",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.force = True  # type: ignore[misc]
    assert req.targets == (("android", Path("out/demo-android")),)
    assert req.recipes == ("fp32",) and req.backends == ("executorch",) and req.adapters == ()
    assert ExportRequest("m", [("android", "o")], recipes={"onnx": "int4"}).recipes == ("onnx=int4",)
    assert ExportRequest("m", [("android", "o")], backends=()).backends is None


def test_request_names_bundle_folders_as_the_cli():
    assert ExportRequest.of("org/tiny").outputs == [Path("out/tiny-android")]
    assert ExportRequest.of("demo", ["ios"], Path("b")).outputs == [Path("b")]
    assert ExportRequest.of("demo", ["android", "targets/mine.toml"]).outputs == [
        Path("out/demo/android"), Path("out/demo/mine")]
    assert ExportRequest.of("demo", ["android", "ios"], Path("r")).outputs == [Path("r/android"), Path("r/ios")]


@pytest.mark.parametrize("option,value,needle", [
    ("context_length", 0, "--context-length must be a positive number of positions, not 0"),
    ("context_length", -5, "--context-length must be a positive number of positions, not -5"),
    ("group_size", 24, "--group-size must be a power of two of at least 16, not 24"),
    ("group_size", 0, "--group-size must be a power of two of at least 16, not 0"),
])
def test_request_refuses_bad_values_as_the_cli(option, value, needle, tmp_path):
    with pytest.raises(InputError) as e:
        ExportRequest.of("demo", ["android"], tmp_path / "o", **{option: value})
    assert e.value.problem == needle
    res = CliRunner().invoke(main, ["export", "demo", f"--{option.replace('_', '-')}", str(value),
                                    "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert f"error: {e.value.problem} — fix: {e.value.hint}" in res.stderr
    assert not (tmp_path / "o").exists()


def test_request_refuses_no_model_or_target():
    with pytest.raises(InputError, match="no model"):
        ExportRequest.of("")
    with pytest.raises(InputError, match="no target"):
        ExportRequest("demo", ())


@pytest.fixture(scope="module")
def bundle(demo_bundle, tmp_path_factory):
    """A private copy of the session's demo bundle (report writes into it)."""
    out, res = demo_bundle
    assert res.exit_code in (0, 1), res.output
    dst = tmp_path_factory.mktemp("api") / "demo-android"
    shutil.copytree(out, dst)
    return dst


@pytest.fixture(scope="module")
def reports(bundle, tmp_path_factory):
    """The bundle's release reports, as `export --report-dir` writes them."""
    from edgeslm.reports.write import write_reports

    folder = tmp_path_factory.mktemp("api-reports") / "reports"
    write_reports([bundle], folder)
    return folder


def _cli_json(*args):
    res = CliRunner().invoke(main, [*args, "--json"])
    return res.exit_code, json.loads(res.stdout)


def test_bundle_commands_return_what_the_cli_prints(bundle):
    assert api.verify(bundle) == []
    arts = api.inspect(bundle)
    assert arts and _cli_json("inspect", str(bundle)) == (0, arts)
    chosen = api.choose_artifact(bundle)
    assert chosen.entry["file"] == arts[0]["file"] or chosen.name
    with pytest.raises(InputError, match="no artifact 'nope'"):
        api.choose_artifact(bundle, "nope")
    said = []
    doc = api.predict(bundle, status=said.append)
    assert doc["artifacts"] and said == []  # a named device: nothing measured here
    assert _cli_json("predict", str(bundle)) == (0, json.loads(json.dumps(doc)))
    with pytest.raises(InputError):
        api.predict(bundle, "pixel-99")


def test_gate_and_report_return_data(bundle, tmp_path):
    verdict = api.gate(bundle)
    code, printed = _cli_json("gate", str(bundle))
    assert printed == json.loads(json.dumps(verdict.to_json(), default=str))
    assert code == (0 if verdict.passed else 1) and verdict.baseline is False
    assert api.gate(bundle, baseline=bundle).problems == verdict.problems  # no regression against itself
    done = api.report(bundle, html=tmp_path / "r.html", junit=tmp_path / "j.xml", markdown=tmp_path / "s.md")
    assert done.passed == verdict.passed
    assert sorted(done.written) == sorted([tmp_path / "r.html", tmp_path / "j.xml", tmp_path / "s.md"])
    with pytest.raises(InputError):
        api.gate(tmp_path / "nope")


_TORCH_FREE = """
import sys
from edgeslm.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
print("exit", code)
"""


@pytest.mark.parametrize("args", [["gate", "{b}"], ["gate", "{b}", "--json"],
                                  ["report", "{b}", "--html", "{t}/i.html", "--junit", "{t}/j.xml",
                                   "--markdown", "{t}/s.md"]])
def test_gate_and_report_do_not_import_torch(reports, tmp_path, args):
    argv = [a.format(b=reports, t=tmp_path) for a in args]
    res = subprocess.run([sys.executable, "-c", _TORCH_FREE, *argv], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().splitlines()[-1] in ("exit 0", "exit 1"), res.stdout
