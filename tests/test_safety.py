"""Nothing lost: --force replaces only what edgeslm wrote, interrupts and a full disk leave no temp folder and
an earlier bundle byte-identical, bundles are readable by other users."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeslm.cli import main

EDGESLM = [sys.executable, "-m", "edgeslm.cli"]
FAST = ["--backend", "executorch", "--recipe", "int8w", "--no-bench"]  # one small artifact: a quick real export


def one_error(res, *needles, code=2):
    assert res.exit_code == code, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder`` with its bytes' sha256 (folders: None) and mode."""
    out = {}
    for p in sorted(folder.rglob("*")):
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(folder))] = (digest, stat.S_IMODE(p.stat().st_mode))
    return out


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture
def bundle(chat_bundle):
    """A real bundle of the tiny llama (ExecuTorch + ONNX, tests/conftest.py); read only: tests copy it."""
    return chat_bundle


def test_bundle_files_are_readable_by_other_users(bundle):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [bundle, *bundle.rglob("*")]}
    unreadable = {n: oct(m) for n, m in modes.items() if not m & stat.S_IROTH}
    assert not unreadable  # mkdtemp makes 0700: an app running as another user could not read it
    assert modes[bundle.name] & stat.S_IXOTH


def test_force_refuses_a_folder_edgeslm_did_not_write(tiny_dir, tmp_path):
    mine = tmp_path / "project"
    (mine / "src").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    (mine / "src" / "app.kt").write_text("fun main() {}")
    before = snapshot(mine)
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "-o", str(mine), "--force", *FAST])
    one_error(res, "was not written by edgeslm", "--force replaces only")
    assert snapshot(mine) == before
    assert "resolving model" not in res.stderr  # refused before any work


def test_force_refuses_report_dir_edgeslm_did_not_write(tiny_dir, tmp_path):
    mine = tmp_path / "reports"
    mine.mkdir()
    (mine / "index.html").write_text("<p>my page</p>")
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "-o", str(tmp_path / "b"), "--report-dir",
                                    str(mine), "--force", *FAST])
    one_error(res, "--report-dir folder", "was not written by edgeslm")
    assert (mine / "index.html").read_text() == "<p>my page</p>" and not (tmp_path / "b").exists()


@pytest.mark.parametrize("where", [".", "..", "~"])
def test_output_may_not_be_the_current_folder_or_above(tiny_dir, tmp_path, monkeypatch, where):
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("keep")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "-o", where, "--force", *FAST])
    one_error(res, "is the current folder, your home folder or one of their parents")
    assert (work / "keep.txt").read_text() == "keep"
    assert leftovers(work) == [] and leftovers(work.parent) == []


def test_force_replaces_an_edgeslm_bundle_and_a_stale_copy_of_it(bundle, tiny_dir, tmp_path):
    """Also: a ``.b.old-*`` copy an interrupted removal left (part deleted: no manifest) is deleted and named;
    folders merely resembling one are kept."""
    out = tmp_path / "b"
    import shutil

    shutil.copytree(bundle, out)
    (out / "stale.txt").write_text("from an old export")
    stale = tmp_path / ".b.old-k2_x9q7a"
    (stale / "onnx").mkdir(parents=True)
    (stale / "onnx" / "model.onnx.data").write_bytes(b"half deleted")
    kept = [tmp_path / n for n in (".b.old-mine", ".bb.old-k2_x9q7a", ".b.old-k2_x9q7ab")]
    for k in kept:
        k.mkdir()
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "-o", str(out), "--force", *FAST])
    assert res.exit_code == 0, res.output
    assert not (out / "stale.txt").exists() and (out / "manifest.json").is_file()
    assert leftovers(tmp_path) == sorted(k.name for k in kept)
    said = " ".join(res.stderr.split())  # the status console wraps long lines
    assert said.count(f"removed {stale}: an earlier copy of b left by an interrupted replacement") == 1, said
    assert said.count("removed ") == 1, said


def test_two_targets_landing_in_one_folder_are_refused_first(tiny_dir, tmp_path):
    other = tmp_path / "mine" / "android.toml"
    other.parent.mkdir()
    from edgeslm.target import builtin_targets

    other.write_text(builtin_targets()["android"].read_text())
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "-t", "android", "-t", str(other), "-o",
                                    str(tmp_path / "out"), *FAST])
    one_error(res, "are the same folder")
    assert "resolving model" not in res.stderr and not (tmp_path / "out").exists()


def _export_and_signal(model: Path, out: Path, sig: int, when: str) -> tuple[int, str]:
    """Start a real export replacing ``out`` and send ``sig`` once the line of its stage ``when`` appears: off a
    terminal a stage's line is written when it ends, that is as the next stage begins."""
    proc = subprocess.Popen([*EDGESLM, "export", str(model), "-o", str(out), "--force", *FAST],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        seen.append(line)
        if when in line:
            proc.send_signal(sig)
            break
        assert time.monotonic() < deadline, "".join(seen)
    else:
        proc.wait()
        raise AssertionError(f"the export ended before {when!r}:\n" + "".join(seen))
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    return proc.returncode, "".join(seen) + rest


# each stage named ends as lowering / the transformers reference begins: those are what the signal interrupts
@pytest.mark.parametrize("sig,code,when", [(signal.SIGINT, 130, "executorch: quantizing"),
                                           (signal.SIGTERM, 143, "resolving model —")])
def test_interrupted_export_leaves_nothing_and_the_old_bundle_intact(bundle, tiny_dir, tmp_path, sig, code, when):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(bundle, out)
    before = snapshot(out)
    rc, err = _export_and_signal(tiny_dir("llama"), out, sig, when)
    assert rc == code, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "interrupted by" in errors[0] and signal.Signals(sig).name in errors[0], err
    assert "Traceback" not in err
    assert leftovers(tmp_path) == []  # no hidden .b.xxxx temp folder
    assert snapshot(out) == before


def test_disk_full_is_named_and_cleaned_up(bundle, tiny_dir, tmp_path, monkeypatch):
    """A full disk while the bundle is written: one 'disk full' line, exit 2, no temp folder, old bundle intact.
    (Simulated at the first file written into the bundle; the message and clean-up are what is tested.)"""
    import shutil

    from edgeslm.pipeline import target_build

    out = tmp_path / "b"
    shutil.copytree(bundle, out)
    before = snapshot(out)

    def full(ckpt, folder):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "tokenizer.json"))

    monkeypatch.setattr(target_build, "write_tokenizer", full)
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "-o", str(out), "--force", *FAST])
    one_error(res, "disk full", "tokenizer.json")
    assert leftovers(tmp_path) == [] and snapshot(out) == before


def test_disk_full_wrapped_by_a_library_is_still_named(tiny_dir, tmp_path, monkeypatch):
    from edgeslm.pipeline import target_build

    def full(ckpt, folder):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from e

    monkeypatch.setattr(target_build, "write_tokenizer", full)
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "-o", str(tmp_path / "b"), *FAST, "--json"])
    one_error(res, "disk full")
    assert json.loads(res.stdout.strip().splitlines()[-1])["error"].startswith("disk full")
    assert leftovers(tmp_path) == [] and not (tmp_path / "b").exists()


# Any manifest, however mangled: every command that reads a bundle answers 0, 1 or 2 with at most one error line.

def _json_values():
    from hypothesis import strategies as st

    leaf = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=12)
    return st.recursive(leaf, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids,
                                                                                          max_size=3), max_leaves=6)


def _mutate(doc, data):
    """Replace or delete one node of ``doc`` (chosen by hypothesis), in place; returns the new document."""
    from hypothesis import strategies as st

    if not isinstance(doc, (dict, list)) or not doc or data.draw(st.integers(0, 4)) == 0:
        return data.draw(_json_values())
    key = data.draw(st.sampled_from(sorted(doc) if isinstance(doc, dict) else list(range(len(doc)))))
    action = data.draw(st.sampled_from(["descend", "replace", "delete"]))
    if action == "delete":
        del doc[key]
    elif action == "replace":
        doc[key] = data.draw(_json_values())
    else:
        doc[key] = _mutate(doc[key], data)
    return doc


def test_mangled_manifests_never_crash(bundle, tmp_path_factory):
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    work = tmp_path_factory.mktemp("fuzz") / "b"
    shutil.copytree(bundle, work)
    original = json.loads((bundle / "manifest.json").read_text())
    seen_codes = set()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def check(data):
        doc = _mutate(json.loads(json.dumps(original)), data)
        (work / "manifest.json").write_text(json.dumps(doc))
        cmd = data.draw(st.sampled_from([["verify"], ["inspect"], ["predict"], ["run", "-p", "def", "-n", "2"],
                                         ["bench", "--prompt-len", "4", "--gen-len", "2", "--repeats", "1",
                                          "--warmup", "0"]]))
        res = CliRunner().invoke(main, [cmd[0], str(work), *cmd[1:]])
        assert res.exit_code in (0, 1, 2), (cmd, res.output)
        assert "Traceback" not in res.output and "internal error" not in res.output, (cmd, doc, res.output)
        assert len([line for line in res.stderr.splitlines() if line.startswith("error: ")]) <= 1, res.stderr
        seen_codes.add(res.exit_code)

    check()
    assert 2 in seen_codes  # the mutations did reach the validation


def test_interrupt_while_the_old_copy_is_removed_says_the_new_one_is_written(tmp_path, monkeypatch):
    """A signal after the new folder took the bundle's name, while its previous copy is being deleted: the bundle
    is the new one, and the message says so instead of "nothing was written"."""
    import shutil as shutil_mod

    from edgeslm.bundle import files
    from edgeslm.cli import _classify
    from edgeslm.errors import Interrupted

    out = tmp_path / "b"
    out.mkdir()  # empty: replaceable with --force
    real_rmtree = shutil_mod.rmtree

    def interrupted_rmtree(path, *args, **kwargs):
        if Path(path).name.startswith(".b.old-"):
            raise Interrupted(signal.SIGINT)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(files.shutil, "rmtree", interrupted_rmtree)
    with pytest.raises(Interrupted) as caught:
        with files.atomic_folder(out, force=True) as tmp:
            (tmp / "new.txt").write_text("the new bundle")
    assert (out / "new.txt").read_text() == "the new bundle"
    problem, _, code = _classify(caught.value, "export")
    assert code == 130 and "nothing was written" not in problem and f"{out} is written" in problem, problem
