"""android_demo/core (Kotlin, JUnit4) against a bundle exported here: the app side of the bundle contract
(docs/apps.md). The Kotlin sources are compiled with kotlinc and run on the JVM by android_demo/scripts/test-core.sh
(tools from android_demo/scripts/install-tools.sh: a missing tool fails the test, it is never skipped)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeslm.cli import main

REPO = Path(__file__).resolve().parents[1]
CORE_TESTS = REPO / "android_demo" / "core" / "src" / "test"
TEST_CORE = REPO / "android_demo" / "scripts" / "test-core.sh"


def _test_methods() -> int:
    return sum(len(re.findall(r"@Test\b", p.read_text())) for p in CORE_TESTS.rglob("*.kt"))


@pytest.fixture
def demo(demo_bundle) -> Path:
    """The demo model exported for android (tests/conftest.py): what a user exports first (no chat template)."""
    out, res = demo_bundle
    assert res.exit_code == 0, res.output
    assert (out / "golden.json").is_file()
    return out


@pytest.fixture
def chat(chat_bundle) -> Path:
    """Llama 3's chat template (tests/conftest.py): golden.json holds chat prompts the Kotlin renderer must equal."""
    assert json.loads((chat_bundle / "golden.json").read_text())["chat"]
    return chat_bundle


BUNDLES = {"demo": "demo", "llama3-chat": "chat"}


def run_core(bundle: Path) -> dict:
    """Runs the Kotlin tests on ``bundle``: JUnit's counts, the exit code, the time and the whole output."""
    p = subprocess.run(["bash", str(TEST_CORE), str(bundle)], capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    ok = re.search(r"^OK \((\d+) tests?\)", out, re.M)
    bad = re.search(r"^Tests run: (\d+),\s+Failures: (\d+)", out, re.M)
    run, failed = (int(ok[1]), 0) if ok else (int(bad[1]), int(bad[2])) if bad else (0, 0)
    took = re.search(r"^core: compile\+test took ([\d.]+) s", out, re.M)
    return {"rc": p.returncode, "run": run, "failed": failed, "output": out,
            "seconds": float(took[1]) if took else None, "summary": bool(ok or bad)}


def _report(capsys, record_property, res: dict, what: str) -> None:
    line = f"android core (Kotlin/JUnit{what}): {res['run'] - res['failed']} passed, {res['failed']} failed"
    if res["seconds"] is not None:
        line += f" in {res['seconds']:.1f} s (kotlinc compile + JVM run)"
    record_property("android_core", line)
    with capsys.disabled():
        print("\n" + line)


@pytest.mark.parametrize("which", sorted(BUNDLES))
def test_kotlin_core_passes_on_the_exported_bundle(which, request, capsys, record_property):
    res = run_core(request.getfixturevalue(BUNDLES[which]))
    _report(capsys, record_property, res, f", {which} bundle")
    assert res["summary"], f"no JUnit summary (rc {res['rc']}):\n{res['output'][-4000:]}"
    assert res["rc"] == 0 and res["failed"] == 0, res["output"][-8000:]
    assert res["run"] >= _test_methods(), f"JUnit ran {res['run']} tests, the sources hold {_test_methods()}"


def _mutations(golden: dict) -> dict:
    """One edit per kind of golden vector this bundle has, each meant to break exactly one Kotlin check."""
    def stream(g):
        s = g["tokenizer"]["stream"][0]
        s["chunks"][0] += "x"

    def decode(g):
        g["tokenizer"]["decode"][0]["text"] += "x"

    def chat(g):
        g["chat"][0]["prompt"] = g["chat"][0]["prompt"].replace("\n", "\n ", 1) + " "

    out = {"decode": decode}
    if golden["tokenizer"]["stream"]:
        out["stream"] = stream
    if golden["chat"]:
        out["chat"] = chat
    return out


@pytest.mark.parametrize("which,kind", [("demo", "stream"), ("demo", "decode"), ("llama3-chat", "chat")])
def test_kotlin_core_fails_on_a_mutated_golden_value(which, kind, request, tmp_path, capsys, record_property):
    """One golden value changed (and its sha256 and size in the manifest fixed, so the file itself is accepted):
    the Kotlin run must fail on that value, not on anything else."""
    bundle = request.getfixturevalue(BUNDLES[which])
    golden = json.loads((bundle / "golden.json").read_text())
    edits = _mutations(golden)
    assert kind in edits, f"the {which} bundle's golden.json has no {kind} vectors"
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    edits[kind](golden)
    data = (json.dumps(golden, indent=1, ensure_ascii=False) + "\n").encode()
    (copy / "golden.json").write_bytes(data)
    manifest = json.loads((copy / "manifest.json").read_text())
    entry = manifest["app"]["golden"]
    entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=1))
    res = run_core(copy)
    _report(capsys, record_property, res, f", {which} bundle, golden {kind} mutated: failures expected")
    assert res["rc"] != 0 and res["failed"] >= 1, res["output"][-4000:]
    expected = {"stream": "assemblerEmitsExactlyTheGoldenChunks", "decode": "decodeTextsEqualAssembledBytesWhereGiven",
                "chat": "chatRenderingEqualsEveryGoldenPrompt"}[kind]
    failed_tests = re.findall(r"^\d+\) (\w+)\(", res["output"], re.M)
    assert failed_tests == [expected], res["output"][-4000:]


# ---- app/: manifest and resources linked by aapt2 (the app's Kotlin is built by .github/workflows/android.yml) ----

CHECK_RES = REPO / "android_demo" / "scripts" / "check-resources.sh"
APP = REPO / "android_demo" / "app"


def _check_resources(app: Path | None = None) -> subprocess.CompletedProcess:
    cmd = ["bash", str(CHECK_RES)] + ([str(app)] if app else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_app_resources_link_with_aapt2():
    """aapt2 compile + link of app/'s manifest and res/ against Debian's framework-res (API 29): a missing tool is a
    failure (exit 2), never a skip."""
    p = _check_resources()
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "resources OK" in out and "package dev.edgeslm.demo" in out, out
    assert "application-label:'edgeslm demo'" in out, out


def test_app_resources_check_fails_on_a_missing_string(tmp_path):
    """A copy of app/ whose layout names a string that does not exist: aapt2 must fail, naming it and the file."""
    copy = tmp_path / "app"
    shutil.copytree(APP, copy, ignore=shutil.ignore_patterns("build", "libs"))
    layout = copy / "src" / "main" / "res" / "layout" / "activity_main.xml"
    text = layout.read_text()
    assert "@string/send" in text
    layout.write_text(text.replace("@string/send", "@string/no_such_string", 1))
    p = _check_resources(copy)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "string/no_such_string" in out and "not found" in out and "activity_main.xml" in out, out
    assert "resources OK" not in out


def test_app_resources_check_fails_on_an_unknown_attribute(tmp_path):
    """An attribute the framework does not define (a typo, or one newer than API 29) fails the link, named."""
    copy = tmp_path / "app"
    shutil.copytree(APP, copy, ignore=shutil.ignore_patterns("build", "libs"))
    manifest = copy / "src" / "main" / "AndroidManifest.xml"
    manifest.write_text(manifest.read_text().replace('android:exported="true"', 'android:exported="true" android:exportd="true"', 1))
    p = _check_resources(copy)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "android:exportd" in out, out
