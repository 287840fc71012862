"""``edgeslm push``: refuses without adb, without a device, or with a changed bundle (one line, exit 2); with a
device, pushes the verified bundle where the demo app looks and makes it readable. No device can be attached
here: the no-device path runs the real adb; the push itself is checked against a stand-in adb that records
its arguments (the emulator job in .github/workflows/android.yml pushes to a real device)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest
from click.testing import CliRunner

from edgeslm.cli import main


def one_error(res, *needles):
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    for n in needles:
        assert n in errors[0], errors[0]


def test_no_device_with_the_real_adb(chat_bundle, monkeypatch):
    adb = shutil.which("adb")
    assert adb, "adb is installed by android_demo/scripts/install-tools.sh (scripts/setup)"
    monkeypatch.setenv("ADB", adb)
    import socket

    with socket.socket() as sock:  # a private adb server on a free port: no device attaches to it
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(sock.getsockname()[1]))
    try:
        one_error(CliRunner().invoke(main, ["push", str(chat_bundle)]), "no Android device is connected")
    finally:
        try:  # stop the private server; one that will not stop in time is left to exit with the machine
            subprocess.run([adb, "kill-server"], capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            pass


def test_no_adb(chat_bundle, monkeypatch, tmp_path):
    monkeypatch.delenv("ADB", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    one_error(CliRunner().invoke(main, ["push", str(chat_bundle)]), "adb was not found", )


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """A stand-in adb: `devices` lists $FAKE_DEVICES, every call is logged as one JSON line."""
    log = tmp_path / "adb.log"
    script = tmp_path / "adb"
    script.write_text("#!/usr/bin/env python3\nimport json, os, sys\n"
                      f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                      "if sys.argv[1:] == ['devices']:\n"
                      "    print('List of devices attached')\n"
                      "    for d in os.environ.get('FAKE_DEVICES', '').split():\n"
                      "        print(d + '\\tdevice')\n"
                      "    print('emulator-9999\\toffline')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("ADB", str(script))
    return log


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_push_to_the_one_device(chat_bundle, fake_adb, monkeypatch):
    monkeypatch.setenv("FAKE_DEVICES", "R58M123")
    res = CliRunner().invoke(main, ["push", str(chat_bundle)])
    assert res.exit_code == 0, res.output
    remote = f"/data/local/tmp/edgeslm/{chat_bundle.name}"
    assert f"pushed {chat_bundle} to {remote}" in res.stdout
    log = calls(fake_adb)
    assert log[0] == ["devices"]
    assert ["-s", "R58M123", "push", str(chat_bundle), remote] in log
    assert log[-1] == ["-s", "R58M123", "shell", "chmod -R a+rX '/data/local/tmp/edgeslm'"]


def test_several_devices_need_a_serial(chat_bundle, fake_adb, monkeypatch):
    monkeypatch.setenv("FAKE_DEVICES", "A1 B2")
    one_error(CliRunner().invoke(main, ["push", str(chat_bundle)]), "2 devices are connected (A1, B2)", )
    assert CliRunner().invoke(main, ["push", str(chat_bundle), "--serial", "B2"]).exit_code == 0
    one_error(CliRunner().invoke(main, ["push", str(chat_bundle), "--serial", "emulator-9999"]),
              "device emulator-9999 is not connected and ready")


def test_a_changed_bundle_is_never_pushed(chat_bundle, fake_adb, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_DEVICES", "R58M123")
    b = tmp_path / "b"
    shutil.copytree(chat_bundle, b)
    tok = b / "tokenizer.json"
    tok.write_bytes(tok.read_bytes().replace(b"</s>", b"</S>", 1))
    one_error(CliRunner().invoke(main, ["push", str(b)]), "does not verify", "tokenizer.json")
    assert calls(fake_adb) == []  # refused before adb was asked anything
    assert os.path.isdir(b)
