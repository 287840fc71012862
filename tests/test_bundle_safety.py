"""A bundle is used only as its manifest describes it: every command validates the manifest, ``run`` and ``bench``
refuse files whose bytes differ from it (hashes cached by stat, never trusted across a rewrite), ``verify``
reports paths leaving the bundle, symlinks, unlisted files and files other users cannot read, and ``inspect``
turns a reader's failure into one error line."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeslm.cli import main

pytestmark = pytest.mark.slow

PTE = "model-8da4w-asym.pte"
ONNX = "onnx-int4-asym/model.onnx"
ONNX_DATA = "onnx-int4-asym/model.onnx.data"


@pytest.fixture
def bundle(demo_bundle) -> Path:
    """The shared demo bundle (tests/conftest.py); read only: tests that tamper use ``copy``."""
    out, res = demo_bundle
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(autouse=True)
def hash_cache(tmp_path, monkeypatch) -> Path:
    """Each test its own hash cache (never the user's ~/.cache)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "edgeslm" / "hashes.json"


@pytest.fixture
def copy(bundle, tmp_path):
    """A private copy of the bundle, to tamper with."""
    def make() -> Path:
        dst = tmp_path / "b"
        shutil.copytree(bundle, dst, symlinks=True)
        return dst

    return make


@pytest.fixture
def sha_calls(monkeypatch) -> list[str]:
    """Every file hashed (the integrity check and verify hash through edgeslm.filefacts.sha256)."""
    from edgeslm import filefacts as files

    calls: list[str] = []
    real = files.sha256

    def counting(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(files, "sha256", counting)
    return calls


@pytest.fixture
def no_timing(monkeypatch) -> list:
    """``bench`` with the host probe stubbed (measured before the bundle is read) and every timing worker it
    starts recorded: a refused bundle must start none."""
    from edgeslm.latency import bench, host

    started: list = []
    real_run = bench.subprocess.run

    def run(cmd, *a, **kw):
        started.append(cmd)
        return real_run(cmd, *a, **kw)

    monkeypatch.setattr(host, "host_facts", lambda bandwidth=True: {"cpu": "stub"})
    monkeypatch.setattr(bench.subprocess, "run", run)
    return started


def one_error(res) -> str:
    """The CLI's error output: exactly one ``error:`` line, no traceback, not an internal error."""
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    return errors[0]


def manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def write_manifest(b: Path, m: dict) -> None:
    (b / "manifest.json").write_text(json.dumps(m, indent=2))


def artifact_holding(m: dict, name: str) -> dict:
    return next(a for a in m["artifacts"] if name in [a["file"], *(f["file"] for f in a.get("files", []))])


def flip_bit(p: Path, at: int | None = None) -> None:
    data = bytearray(p.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    p.write_bytes(bytes(data))


def settle(b: Path) -> None:
    """Wait until every file of ``b`` is older than the cache's racy window (files changed within it are hashed
    but not cached)."""
    from edgeslm.integrity import RACY_NS

    newest = max(max(p.stat().st_ctime_ns, p.stat().st_mtime_ns) for p in b.rglob("*"))
    wait = (newest + RACY_NS - time.time_ns()) / 1e9 + 0.05
    if wait > 0:
        time.sleep(wait)


def run(b: Path, artifact: str | None = None):
    args = ["run", str(b), "-p", "The import statement", "-n", "4"]
    return CliRunner().invoke(main, args + (["--artifact", artifact] if artifact else []))


def bench(b: Path):
    return CliRunner().invoke(main, ["bench", str(b), "--prompt-len", "8", "--gen-len", "4", "--warmup", "0",
                                     "--repeats", "1"])


# -- verified loads ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,how", [(ONNX_DATA, "flip"), (PTE, "flip"), (ONNX_DATA, "truncate"),
                                      (PTE, "truncate"), ("tokenizer.json", "flip"), (PTE, "delete")])
def test_run_and_bench_refuse_a_changed_file(copy, no_timing, name, how):
    b = copy()
    p = b / name
    if how == "flip":
        flip_bit(p)
    elif how == "truncate":
        p.write_bytes(p.read_bytes()[: p.stat().st_size - 100])
    else:
        p.unlink()
    art = artifact_holding(manifest(b), name) if name != "tokenizer.json" else manifest(b)["artifacts"][0]

    res = run(b, art["file"])
    assert res.exit_code == 2, res.output
    err = one_error(res)
    assert name in err and f"edgeslm verify {b}" in err, err
    assert res.stdout.strip() == "", res.stdout  # nothing generated

    res = bench(b)
    assert res.exit_code == 2, res.output
    err = one_error(res)
    assert name in err and "edgeslm verify" in err, err
    assert no_timing == []  # refused before any artifact was timed
    assert "TTFT" not in res.output


def test_untampered_bundle_runs_and_second_run_uses_the_cache(bundle, hash_cache, sha_calls):
    settle(bundle)
    hash_cache.parent.mkdir(parents=True)
    hash_cache.write_text("{not json")  # a corrupt cache is ignored, then replaced

    first = run(bundle, PTE)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip()
    hashed = {Path(c).name for c in sha_calls}
    assert hashed == {PTE, "tokenizer.json", "tokenizer_config.json"}, sha_calls
    cached = json.loads(hash_cache.read_text())["files"]
    assert str((bundle / PTE).resolve()) in cached

    sha_calls.clear()
    second = run(bundle, PTE)
    assert second.exit_code == 0, second.output
    assert second.stdout == first.stdout  # greedy: the same text
    assert sha_calls == []  # nothing re-hashed

    onnx = run(bundle, ONNX)  # another artifact: its own files are hashed, the shared tokenizer is not
    assert onnx.exit_code == 0, onnx.output
    assert {Path(c).name for c in sha_calls} == {"model.onnx", "model.onnx.data", "genai_config.json",
                                                 "tokenizer.json", "tokenizer_config.json"}
    assert not any(Path(c).parent == bundle.resolve() for c in sha_calls), sha_calls  # root tokenizer: cached


def test_a_rewritten_file_misses_the_cache_even_with_its_mtime_put_back(copy, hash_cache, sha_calls):
    b = copy()
    settle(b)
    assert run(b, PTE).exit_code == 0
    assert str((b / PTE).resolve()) in json.loads(hash_cache.read_text())["files"]
    p = b / PTE
    st = p.stat()
    flip_bit(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime tells
    assert (p.stat().st_size, p.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    sha_calls.clear()
    res = run(b, PTE)
    assert res.exit_code == 2, res.output
    assert "sha256 differs" in one_error(res)
    assert any(Path(c).name == PTE for c in sha_calls)


# -- the manifest, validated by every reader -----------------------------------------------------------------------

def _newer(m):
    m["schema_version"] = "2.0"


def _no_file(m):
    del m["artifacts"][0]["file"]


def _no_artifacts(m):
    m["artifacts"] = []


def _package_escapes(m):
    m["artifacts"][0]["package"] = "../elsewhere.mlpackage"


@pytest.mark.parametrize("change,says", [(_newer, "newer edgeslm"), (_no_file, "'file' is a required property"),
                                         (_no_artifacts, "artifacts"), (_package_escapes, "..")])
def test_every_reader_refuses_a_bad_manifest(copy, no_timing, change, says):
    b = copy()
    m = manifest(b)
    change(m)
    write_manifest(b, m)
    for args in (["run", str(b), "-p", "hi", "-n", "2"], ["inspect", str(b)], ["bench", str(b)],
                 ["predict", str(b)], ["inspect", str(b), "--json"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        err = one_error(res)
        assert "manifest.json" in err and says in err, (args, err)
    assert no_timing == []
    if change is _newer:
        assert "upgrade edgeslm" in err
    res = CliRunner().invoke(main, ["verify", str(b)])  # verify lists schema problems rather than raising
    if change is _newer:
        assert res.exit_code == 2 and "newer edgeslm" in one_error(res)
    else:
        assert res.exit_code == 1 and any(line.startswith("FAIL ") and says in line
                                          for line in res.output.splitlines()), res.output


# -- verify --------------------------------------------------------------------------------------------------------

def test_verify_accepts_the_bundle_as_exported(bundle, sha_calls):
    res = CliRunner().invoke(main, ["verify", str(bundle)])
    assert res.exit_code == 0 and "OK" in res.output, res.output
    assert {Path(c).name for c in sha_calls} >= {PTE, "model.onnx.data", "parity.json"}


def _symlink_out(b, m):
    (b.parent / "outside.txt").write_text("secret\n")
    (b / "notes.txt").symlink_to(b.parent / "outside.txt")
    return "notes.txt", "symlink"


def _listed_symlink_out(b, m):
    """A listed file replaced by a symlink to an identical copy outside: verify must not follow it."""
    target = b.parent / "tok.json"
    shutil.copyfile(b / "tokenizer_config.json", target)
    (b / "tokenizer_config.json").unlink()
    (b / "tokenizer_config.json").symlink_to(target)
    return "tokenizer_config.json", "outside the bundle"


def _unlisted(b, m):
    (b / "debug.log").write_text("left over\n")
    return "debug.log", "not listed"


def _unlisted_in_artifact_folder(b, m):
    (b / "onnx-int4-asym" / "model.onnx.bak").write_bytes(b"old")
    return "onnx-int4-asym/model.onnx.bak", "not listed"


def _dotdot(b, m):
    (b.parent / "x.txt").write_text("x")
    m["reports"].append({"file": "../x.txt", "bytes": 1, "sha256": "0" * 64})
    return "../x.txt", ".."


def _absolute(b, m):
    m["reports"].append({"file": str(b.parent / "x.txt"), "bytes": 1, "sha256": "0" * 64})
    return str(b.parent / "x.txt"), "absolute"


def _private(b, m):
    (b / ONNX_DATA).chmod(0o600)
    return ONNX_DATA, "mode 0600"


@pytest.mark.parametrize("make", [_symlink_out, _listed_symlink_out, _unlisted, _unlisted_in_artifact_folder,
                                  _dotdot, _absolute, _private])
def test_verify_reports(copy, sha_calls, make):
    b = copy()
    m = manifest(b)
    name, says = make(b, m)
    write_manifest(b, m)
    res = CliRunner().invoke(main, ["verify", str(b)])
    assert res.exit_code == 1, res.output
    fails = [line for line in res.output.splitlines() if line.startswith("FAIL ")]
    assert any(name in line and says in line for line in fails), res.output
    assert "OK" not in res.output
    outside = b.parent.resolve()
    assert not any(Path(c).resolve().parent == outside for c in sha_calls), sha_calls  # nothing outside hashed


def test_verify_keeps_checking_hashes_next_to_other_problems(copy):
    b = copy()
    (b / "debug.log").write_text("left over\n")
    flip_bit(b / PTE)
    res = CliRunner().invoke(main, ["verify", str(b)])
    assert res.exit_code == 1
    assert any(line.startswith(f"FAIL {PTE}: sha256 differs") for line in res.output.splitlines()), res.output
    assert any(line.startswith("FAIL debug.log") for line in res.output.splitlines()), res.output


# -- inspect -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,what", [(ONNX, "an ONNX model"), (PTE, "an ExecuTorch program")])
def test_inspect_garbage_artifact_is_one_error_line(copy, name, what):
    b = copy()
    (b / name).write_bytes(b"\x08\xff\xff garbage, not a model \x00" * 7)
    res = CliRunner().invoke(main, ["inspect", str(b)])
    assert res.exit_code == 2, res.output
    err = one_error(res)
    assert f"{b / name} cannot be read as {what}" in err and "edgeslm verify" in err, err


def test_inspect_still_reads_a_good_bundle(bundle):
    res = CliRunner().invoke(main, ["inspect", str(bundle), "--json"])
    assert res.exit_code == 0, res.output
    arts = json.loads(res.stdout)
    assert [a["file"] for a in arts] == [PTE, ONNX]
    assert stat.S_IMODE((bundle / ONNX_DATA).stat().st_mode) & stat.S_IROTH  # as exported: readable by all
