"""Fleets across CI runners: the fleet file, `edgeslm matrix` (GitHub strategy.matrix, GitLab parallel:matrix),
the workflows in docs/ci/ (they parse, and their own commands are what run here), docs/ci.md's commands and
forecast table, and (slow) a fleet of tiny models × two targets whose every job runs here, one after another,
then one gate over the union that fails on the one failing job and names it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from edgeslm.cli import main
from edgeslm.fleet.spec import load_fleet
from edgeslm.pipeline.checks import check_memory
from edgeslm.pipeline.plan import plan_target
from edgeslm.preflight import GiB
from edgeslm.target import load_target
from edgeslm.testing.shapes import SHAPES, parameters
from edgeslm.testing.targets import loose_target

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "docs" / "ci"
EDGESLM_BIN = Path(sys.executable).parent


def _env(**extra) -> dict:
    """What a CI runner's shell has: edgeslm on PATH (this checkout's code), no Hub access."""
    return dict(os.environ, PATH=f"{EDGESLM_BIN}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT),
                HF_HUB_OFFLINE="1", COLUMNS="200", **extra)


def _bash(script: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    """``script`` as a GitHub Actions ``run:`` step runs it (bash -eo pipefail)."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                          env=_env(**env), capture_output=True, text=True, timeout=900)


def _expand(run: str, matrix: dict | None = None) -> str:
    """A step's ``run`` with its ``${{ matrix.X }}`` expressions filled in; any other expression fails."""
    out = re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: str((matrix or {})[m.group(1)]), run)
    assert "${{" not in out, f"a step this test cannot run: {run!r}"
    return out


def _workflow(name: str) -> dict:
    return yaml.safe_load((CI / name).read_text())


def _edgeslm_steps(job: dict) -> list[str]:
    """The ``run`` scripts of a GitHub job's steps that call edgeslm (other than installing it)."""
    return [s["run"] for s in job["steps"] if "edgeslm " in s.get("run", "") and not s["run"].startswith("pip ")]


def _gitlab_script(job: dict) -> str:
    """A GitLab job's script lines, installing left out, as one shell script."""
    return "\n".join(line for line in job["script"] if not line.startswith("pip "))


def _github_plan(cwd: Path, fleet: str = "fleet.toml") -> dict:
    """Run the GitHub workflow's plan step as written; the matrix it hands the export jobs."""
    (step,) = _edgeslm_steps(_workflow("github-fleet.yml")["jobs"]["plan"])
    res = _bash(_expand(step), cwd, FLEET=fleet, GITHUB_OUTPUT=str(cwd / "github_output"))
    assert res.returncode == 0, res.stderr
    line = (cwd / "github_output").read_text().strip()
    assert line.startswith("matrix=") and "\n" not in line  # one line: what $GITHUB_OUTPUT takes
    return json.loads(line.removeprefix("matrix="))


def _gitlab_plan(cwd: Path, fleet: str = "fleet.toml") -> dict:
    """Run the GitLab plan job's script as written (the jobs file, the matrix appended); the child pipeline."""
    parent = yaml.safe_load((CI / "gitlab-fleet.yml").read_text())
    jobs_file = cwd / parent["variables"]["FLEET_JOBS"]
    jobs_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CI / "gitlab-fleet-jobs.yml", jobs_file)
    res = _bash(_gitlab_script(parent["edgeslm-plan"]), cwd, FLEET=fleet, FLEET_JOBS=str(jobs_file))
    assert res.returncode == 0, res.stderr
    (include,) = parent["edgeslm-fleet"]["trigger"]["include"]
    assert include == {"artifact": "edgeslm-fleet.yml", "job": "edgeslm-plan"}
    return yaml.safe_load((cwd / "edgeslm-fleet.yml").read_text())


def _example(tmp_path: Path) -> Path:
    shutil.copyfile(CI / "fleet.toml", tmp_path / "fleet.toml")
    return tmp_path / "fleet.toml"


# --- the fleet file ----------------------------------------------------------------------------------------

def test_fleet_file_makes_one_valid_export_per_model_target_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fleet = load_fleet(_example(tmp_path))
    names = [j.name for j in fleet.jobs]
    assert len(names) == len(set(names)) == sum(len(m.targets) * len(m.recipes) for m in fleet.models)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", n) for n in names)
    assert names == [j.name for j in load_fleet(tmp_path / "fleet.toml").jobs]  # stable
    export = main.commands["export"]
    for job in fleet.jobs:
        argv = shlex.split(job.command)
        assert argv[:3] == ["edgeslm", "export", job.model.source]
        params = export.make_context("export", argv[2:]).params  # the real CLI parses it
        assert params["targets"] == (job.target,) and params["recipes"] == ((job.recipe,) if job.recipe else ())
        assert params["output"] == Path("out", job.name) and params["report_dir"] == Path("reports", job.name)
        assert params["revision"] == job.model.revision and params["gguf_file"] == job.model.gguf_file
        assert params["adapters"] == job.model.adapters and params["draft"] == job.model.draft
        assert params["no_bench"]  # the example fleet says bench = false
    # a model's own targets and recipes replace the fleet's; its adapters name its variant
    support = next(m for m in fleet.models if m.adapters)
    assert support.targets == ("android", "ios") and support.name == "smollm2-135m-support"
    gguf = next(m for m in fleet.models if m.gguf_file)
    assert [j.name for j in fleet.jobs if j.model is gguf] == [
        "smollm2-135m-instruct-q8_0-jetson-orin-int4", "smollm2-135m-instruct-q8_0-jetson-orin-int8"]


GOOD = 'targets = ["android"]\n[[models]]\npath = "m"\n'


@pytest.mark.parametrize("text, says", [
    (GOOD + "revison = \"main\"\n", "unknown key 'revison' in [[models]] #1"),
    ("colour = 1\n" + GOOD, "supported keys are bench, context_length, models, recipes, targets"),
    (GOOD.replace("android", "andriod"), "did you mean 'android'?"),
    (GOOD.replace("android", "missing.toml"), "target file missing.toml does not exist"),
    ('recipes = ["int5"]\n' + GOOD, "unknown recipe 'int5'"),
    ('recipes = ["tpu=int4"]\n' + GOOD, "unknown backend 'tpu'"),
    (GOOD + '[[models]]\npath = "other/m"\n', "both make the job-name part 'm'"),
    (GOOD + 'revision = "main"\n', "revision in [[models]] #1 of fleet file fleet.toml applies to Hub models"),
    ('targets = ["android"]\n[[models]]\nhub = "no-org"\n', "must be a Hub id like org/name"),
    ('targets = ["android"]\n[[models]]\nhub = "a/b"\npath = "c"\n', "exactly one of hub or path"),
    (GOOD + 'name = "My Model"\n', "must be lowercase letters"),
    ('targets = "android"\n[[models]]\npath = "m"\n', "must be a non-empty list"),
    ('[[models]]\npath = "m"\n', "has no targets"),
    ('targets = ["android"]\n', "names no models"),
    (GOOD + 'gguf_file = "x.bin"\n', "applies to Hub models"),
    ('targets = ["android"]\n[[models]]\nhub = "a/b"\ngguf_file = "x.bin"\n', "must be a .gguf file name"),
    ("targets = [\n", "is not valid TOML"),
])
def test_bad_fleet_file_is_one_message_and_exit_2(tmp_path, monkeypatch, text, says):
    monkeypatch.chdir(tmp_path)
    Path("fleet.toml").write_text(text)
    res = CliRunner().invoke(main, ["matrix", "fleet.toml"])
    assert res.exit_code == 2 and says in res.stderr and res.stdout == "", res.output
    assert res.stderr.count("error:") == 1 and "— fix: " in res.stderr


def test_matrix_and_a_fleet_gate_never_load_torch(tmp_path):
    """The plan and gate jobs install edgeslm and read TOML and JSON only: no model stack is imported."""
    _example(tmp_path)
    (tmp_path / "reports").mkdir()
    code = ("import sys; from edgeslm.cli import main\n"
            "for args in (['matrix', 'fleet.toml'], ['gate', 'reports', '--fleet', 'fleet.toml']):\n"
            "    try: main(args)\n"
            "    except SystemExit as e: print('exit', e.code)\n"
            "print('torch loaded:', 'torch' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.stdout.count("exit ") == 2 and "exit 1" in res.stdout  # nothing collected: every job missing
    assert "torch loaded: False" in res.stdout, res.stdout + res.stderr


def test_matrix_refuses_more_jobs_than_the_engine_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models = "".join(f'[[models]]\npath = "m{i}"\n' for i in range(101))
    Path("fleet.toml").write_text('targets = ["android", "ios"]\n' + models)  # 202 jobs
    assert CliRunner().invoke(main, ["matrix", "fleet.toml"]).exit_code == 0  # GitHub runs 256
    res = CliRunner().invoke(main, ["matrix", "fleet.toml", "--format", "gitlab"])
    assert res.exit_code == 2 and "makes 202 jobs" in res.stderr and "at most 200" in res.stderr


# --- the matrix and the workflows ----------------------------------------------------------------------------

def test_github_workflow_parses_and_its_matrix_names_every_job_once(tmp_path):
    _example(tmp_path)
    wf = _workflow("github-fleet.yml")
    jobs = wf["jobs"]
    export, gate = jobs["export"], jobs["gate"]
    assert export["needs"] == "plan" and jobs["plan"]["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}"
    assert export["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert export["strategy"]["fail-fast"] is False and export["name"] == "${{ matrix.job }}"
    assert [s["run"] for s in export["steps"] if s.get("name") == "Export"] == ["${{ matrix.command }}"]
    cache = next(s for s in export["steps"] if s.get("with", {}).get("path") == ".hf")
    assert cache["with"]["key"] == "hf-${{ matrix.cache }}"
    upload = next(s for s in export["steps"] if s.get("with", {}).get("path") == "reports/")
    download = next(s for s in gate["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    assert re.fullmatch(download["with"]["pattern"].replace("*", ".*"),
                        upload["with"]["name"].replace("${{ matrix.job }}", "any-job"))
    assert download["with"]["merge-multiple"] is True and download["with"]["path"] == "reports"
    assert gate["needs"] == "export" and "!cancelled()" in gate["if"]

    matrix = _github_plan(tmp_path)
    names = [e["job"] for e in matrix["include"]]
    fleet = load_fleet(CI / "fleet.toml")
    assert sorted(names) == sorted(set(names)) == sorted(j.name for j in fleet.jobs)
    for e in matrix["include"]:
        assert e["command"] == fleet.job(e["job"]).command and e["cache"] == fleet.job(e["job"]).model.name
        assert f"--report-dir reports/{e['job']}" in e["command"]


def test_gitlab_child_pipeline_parses_and_runs_every_job_once(tmp_path):
    _example(tmp_path)
    child = _gitlab_plan(tmp_path)
    export = child["edgeslm-export"]
    entries = child[export["extends"]]["parallel"]["matrix"]
    names = [e["EDGESLM_JOB"] for e in entries]
    fleet = load_fleet(CI / "fleet.toml")
    assert names == [j.name for j in fleet.jobs] and len(set(names)) == len(names)
    assert child["stages"] == ["export", "gate"] and child["edgeslm-gate"]["when"] == "always"
    # GitLab names a matrix job after its values and drops pipelines whose names pass 255 characters
    assert max(len(f"edgeslm-export: [{', '.join(e.values())}]") for e in entries) < 255
    # each job's script asks for its command: the same line GitHub's matrix carries (the script's own line run
    # once, as written; every job through the CLI in-process)
    github = {e["job"]: e["command"] for e in _github_plan(tmp_path)["include"]}
    (line,) = [s for s in export["script"] if "edgeslm matrix" in s]
    inner = re.fullmatch(r'sh -c "\$\((.*)\)"', line).group(1)
    res = _bash(inner, tmp_path, FLEET="fleet.toml", EDGESLM_JOB=names[0])
    assert res.stdout.strip() == github[names[0]], res.stderr
    for name in names:
        res = CliRunner().invoke(main, ["matrix", str(tmp_path / "fleet.toml"), "--job", name])
        assert res.stdout.strip() == github[name], res.output


# --- docs/ci.md ----------------------------------------------------------------------------------------------

def _docs_commands() -> list[str]:
    """The edgeslm commands in docs/ci.md's ```sh blocks (each is run by a test here)."""
    text = (ROOT / "docs" / "ci.md").read_text()
    lines = [ln.split("  #")[0].strip() for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
             for ln in block.splitlines()]
    assert all(ln.startswith(("edgeslm matrix ", "edgeslm gate ", "edgeslm report ")) for ln in lines), lines
    return lines


def test_docs_matrix_commands_run_on_the_example_fleet(tmp_path):
    _example(tmp_path)
    outputs = {}
    for line in [c for c in _docs_commands() if c.startswith("edgeslm matrix")]:
        res = _bash(line, tmp_path)
        assert res.returncode == 0 and res.stdout.strip(), (line, res.stderr)
        outputs[line] = res.stdout
    shown = re.search(r"^```json\n(.*?)^```", (ROOT / "docs" / "ci.md").read_text(), re.S | re.M).group(1)
    assert json.loads(outputs["edgeslm matrix fleet.toml"])["include"][0] == json.loads(shown)


def test_docs_forecast_table_is_the_forecast():
    text = (ROOT / "docs" / "ci.md").read_text()
    header = re.search(r"^\| model \| (.*) \|$", text, re.M).group(1).split(" | ")
    targets = [h.split()[0] for h in header]
    rows = re.findall(r"^\| (SmolLM2-135M|Gemma-3-270M|Qwen2.5-0.5B|Llama-3.2-1B) \| (.*) \|$", text, re.M)
    assert len(rows) == 4
    for model, cells in rows:
        c = SHAPES[model.lower()][1]
        for target, cell in zip(targets, cells.split(" | ")):
            tgt = load_target(target)  # forecast as the export forecasts it (its plan, its backends' costs)
            ckpt = SimpleNamespace(parameters=parameters(model.lower()), config=SimpleNamespace(**c))
            fc = check_memory(ckpt, [tgt], [plan_target(tgt, None, None, None)], False, lambda m: None)
            assert cell == f"{fc.peak_bytes / GiB:.1f} GiB, ~{fc.seconds / 60:.0f} min", (model, target)


# --- a fleet run here, job after job, then one gate --------------------------------------------------------------

@pytest.mark.slow
def test_fleet_jobs_run_here_and_the_union_gate_names_the_failing_job(tiny_dir, tmp_path):
    """Two tiny models × two targets (the second model's second target gates strictly): the GitHub plan step
    makes the matrix; every job runs here one after another, alternately as the GitHub export step and the GitLab
    export script run it; then the gate steps of both workflows and docs/ci.md's gate and report commands judge
    the union: exit 1, naming the one failing job and no other. A job that never reported is named too."""
    for name, kl in (("edge-a", 0.05), ("edge-b", 0.05), ("strict", 0.0)):  # strict: any quantization fails
        (tmp_path / f"{name}.toml").write_text(loose_target(name, max_kl_mean=kl))
    (tmp_path / "fleet.toml").write_text(
        'targets = ["edge-a.toml", "edge-b.toml"]\nbench = false\n'
        f'[[models]]\npath = "{tiny_dir("llama")}"\n'
        f'[[models]]\npath = "{tiny_dir("qwen2")}"\ntargets = ["edge-a.toml", "strict.toml"]\n')
    matrix = _github_plan(tmp_path)
    print("edgeslm matrix fleet.toml:\n" + json.dumps(matrix, indent=1))
    jobs = [e["job"] for e in matrix["include"]]
    assert jobs == ["llama-edge-a", "llama-edge-b", "qwen2-edge-a", "qwen2-strict"]

    github_export = next(s["run"] for s in _workflow("github-fleet.yml")["jobs"]["export"]["steps"]
                         if s.get("name") == "Export")
    gitlab = yaml.safe_load((CI / "gitlab-fleet-jobs.yml").read_text())
    for i, entry in enumerate(matrix["include"]):
        if i % 2 == 0:
            res = _bash(_expand(github_export, entry), tmp_path)
        else:
            res = _bash(_gitlab_script(gitlab["edgeslm-export"]), tmp_path, FLEET="fleet.toml",
                        EDGESLM_JOB=entry["job"], EDGESLM_CACHE=entry["cache"])
        assert res.returncode == (1 if entry["job"] == "qwen2-strict" else 0), (entry["job"], res.stderr[-3000:])
        assert (tmp_path / "reports" / entry["job"] / "summary.json").is_file()

    (gate_step,) = [r for r in _edgeslm_steps(_workflow("github-fleet.yml")["jobs"]["gate"]) if "gate" in r]
    res = _bash(gate_step, tmp_path, FLEET="fleet.toml")
    print("edgeslm gate reports --fleet fleet.toml:\n" + res.stdout)
    assert res.returncode == 1 and res.stdout.splitlines()[-1] == "failed jobs: qwen2-strict", res.stdout
    verdict = json.loads(_bash("edgeslm gate reports --fleet fleet.toml --json", tmp_path).stdout)
    assert {p["job"] for p in verdict["problems"]} == {"qwen2-strict"} and verdict["jobs"] == sorted(jobs)
    assert {r["job"] for r in verdict["summary"] if r["status"] == "failed"} == {"qwen2-strict"}
    res = _bash(_gitlab_script(gitlab["edgeslm-gate"]), tmp_path, FLEET="fleet.toml")
    assert res.returncode == 1 and (tmp_path / "reports" / "junit.xml").is_file(), res.stderr

    shutil.copytree(tmp_path / "reports", tmp_path / "reports-main")
    expected = {"edgeslm gate": 1, "edgeslm report": 0}
    for line in [c for c in _docs_commands() if not c.startswith("edgeslm matrix")]:
        res = _bash(line, tmp_path)
        assert res.returncode == expected[" ".join(line.split()[:2])], (line, res.stdout, res.stderr)
        assert "qwen2-strict" in res.stdout or line.startswith("edgeslm report"), res.stdout
    md = (tmp_path / "reports" / "summary.md").read_text()
    assert "4 jobs, 1 failed (qwen2-strict)" in md and md.count("| qwen2-strict |") == 1

    shutil.rmtree(tmp_path / "reports" / "llama-edge-b")  # a job that crashed before writing its reports
    gone = json.loads(_bash("edgeslm gate reports --fleet fleet.toml --json", tmp_path).stdout)["problems"]
    assert {(p["job"], p["what"]) for p in gone} >= {("llama-edge-b", "missing")}
