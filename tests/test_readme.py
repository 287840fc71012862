"""Every command README.md (then docs/*.md) shows runs: the ```bash blocks are parsed and each ``edgeslm`` command is run in README
order, in one working folder (later commands read earlier outputs), with the exit code the README documents.

The folder holds ``./my-model`` (a checkpoint in HF layout), ``./my-adapter`` (a LoRA adapter for it, trained
here for a few seconds with PEFT), ``./my-draft`` (a two-layer draft cut from it) and an offline HF cache in which the README's Hub id
resolves to the same checkpoint: the built-in demo model's files (a 1 M-parameter Llama, trained, so it meets the
built-in targets' 4-bit gates; random-weight tiny models may not). ``./scripts/setup`` and ``./scripts/test`` are
what CI itself runs, so only the ``edgeslm`` part of the set-up line runs here. A README line that is not an
``edgeslm`` command (nor one of those two scripts) fails the test, so a new README command cannot go untested;
every long option the README's prose names must appear in a tested command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EDGESLM = Path(sys.executable).parent / "edgeslm"
CI_SCRIPTS = ("./scripts/setup", "./scripts/test")  # run by CI itself (.ci/run), not by a test
HUB_COMMIT = "c" * 40


def readme_commands(text: str) -> list[tuple[str, list[str]]]:
    """(README line, edgeslm arguments) for every command in the ```bash blocks, in order."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            parts: list[list[str]] = [[]]
            for word in argv:
                if word == "&&":
                    parts.append([])
                else:
                    parts[-1].append(word)
            for part in filter(None, parts):
                if part[0] in CI_SCRIPTS:
                    continue
                assert Path(part[0]).name == "edgeslm", f"README command not covered by this test: {line!r}"
                out.append((line.split("  #")[0].strip(), part[1:]))
    return out


def documented_flags(text: str) -> set[str]:
    """Long options the README's prose names in backticks (`--recipe R`, `gate --baseline`, ...)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {f for code in re.findall(r"`([^`]+)`", prose) for f in re.findall(r"(?<![\w-])--[a-z][\w-]*", code)}


def test_readme_parser_sees_every_block():
    text = README.read_text()
    cmds = readme_commands(text)
    assert cmds[0][1][:2] == ["export", "demo"]  # the set-up line's edgeslm part
    assert sum(line.count("edgeslm ") for line, _ in cmds) == len(cmds)
    with pytest.raises(AssertionError, match="not covered"):
        readme_commands("```bash\nedgeslm verify x\nrm -rf out\n```\n")
    used = {w.split("=")[0] for _, args in cmds for w in args if w.startswith("--")}
    assert documented_flags(text) <= used, f"flags the README documents but no command uses: " \
                                           f"{sorted(documented_flags(text) - used)}"


@pytest.fixture
def workdir(tmp_path):
    """./my-model and an offline HF cache holding HuggingFaceTB/SmolLM2-135M at refs/main, both the demo model."""
    from edgeslm.model.source import DEMO_DIR

    shutil.copytree(DEMO_DIR, tmp_path / "my-model")
    repo = tmp_path / "hf-cache" / "models--HuggingFaceTB--SmolLM2-135M"
    shutil.copytree(DEMO_DIR, repo / "snapshots" / HUB_COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    from edgeslm.testing.lora import topic_text, train_lora  # ./my-adapter: a LoRA adapter trained here (docs)

    train_lora(DEMO_DIR, tmp_path / "my-adapter", topic_text("formatstrings", "string-methods"), steps=60, lr=2e-3)
    from edgeslm.testing.draft import layer_dropped  # ./my-draft: the demo with two of its layers (docs)

    layer_dropped(DEMO_DIR, tmp_path / "my-draft", (0, 3))
    return tmp_path


@pytest.mark.slow
def test_readme_commands_run(workdir):
    env = dict(os.environ, HF_HUB_CACHE=str(workdir / "hf-cache"), HF_HUB_OFFLINE="1", COLUMNS="160",
               PATH=f"{EDGESLM.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("HF_HOME", None)
    timings = []
    docs = [README, *sorted((ROOT / "docs").glob("*.md"))]  # README first: docs' commands read its outputs
    for line, args in [c for d in docs for c in readme_commands(d.read_text())]:
        t = time.perf_counter()
        res = subprocess.run([str(EDGESLM), *args], cwd=workdir, env=env, capture_output=True, text=True,
                             timeout=900)
        timings.append((time.perf_counter() - t, line))
        print(f"{timings[-1][0]:7.1f} s  exit {res.returncode}  {line}", flush=True)
        assert res.returncode == 0, f"{line}\nexit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        if "--json" in args:
            doc = json.loads(res.stdout)
            assert doc["passed"] and doc["artifacts"], line
        if args[0] == "run":
            assert res.stdout.strip(), line  # generated text
        if args[0] == "export":
            assert "bundle:" in res.stdout or "--json" in args, line
            _readable_in_a_log(line, args, res)
    # what the commands were meant to produce
    assert (workdir / "out" / "demo" / "ios" / "manifest.json").is_file()
    assert (workdir / "reports" / "index.html").is_file()
    hub = json.loads((workdir / "out" / "SmolLM2-135M-android" / "manifest.json").read_text())
    assert hub["model"]["commit"] == HUB_COMMIT
    mine = json.loads((workdir / "out" / "my-model-android" / "manifest.json").read_text())
    assert [(a["backend"], a["recipe"]) for a in mine["artifacts"]] == [("executorch", "8da4w"), ("onnx", "int8")]
    print(f"README commands: {sum(s for s, _ in timings):.0f} s in all")


def _readable_in_a_log(line: str, args: list[str], res: subprocess.CompletedProcess) -> None:
    """An export on pipes, as in a CI log: stderr is plain lines (no ANSI escape, no carriage-return redraw), one
    per finished stage with its time; stdout is only the result, its parity tables in Markdown with full names
    (rich would cut them to the pipe's 80 columns)."""
    assert "\x1b" not in res.stderr + res.stdout and "\r" not in res.stderr, line
    stages = [s for s in res.stderr.splitlines() if " — done in " in s]
    assert stages and all(s.startswith("· ") for s in res.stderr.splitlines()), (line, res.stderr[-2000:])
    if "--json" not in args:
        assert "| artifact | stage |" in res.stdout and "…" not in res.stdout, (line, res.stdout[-2000:])


def test_project_stands_alone():
    """Everything README and docs cite lives in the repository: every relative Markdown link resolves, and no
    tracked file points outside the clone (a fresh checkout has nothing beside it)."""
    docs = [README, *sorted((ROOT / "docs").rglob("*.md"))]
    for doc in docs:
        for target in re.findall(r"\]\(([^)#\s]+)\)", doc.read_text()):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links {target}, which is missing"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    outside = []
    for name in tracked.split():
        path = ROOT / name
        if path.suffix in (".png", ".jpg", ".jar", ".gguf") or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        outside += [f"{name}: {m}" for m in re.findall(r"\.\./(?:\.\./)*shared/\S*", text)]
    assert not outside, outside
