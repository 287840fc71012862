"""``edgeslm push``: copy a verified bundle onto an Android device with adb, where the demo app looks for it.

The app (android_demo/) lists bundles under ``DEVICE_DIR`` (``/data/local/tmp/edgeslm``): adb can write there
without root and apps may read it. Files are made world-readable after the push (the app runs as another user).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from edgeslm.errors import InputError
from edgeslm.bundle.manifest import verify

DEVICE_DIR = "/data/local/tmp/edgeslm"


def _adb() -> str:
    adb = os.environ.get("ADB") or shutil.which("adb")
    if not adb:
        raise InputError("adb was not found (set ADB or put it on PATH)",
                         "install Android's platform-tools (Android Studio's SDK manager, or `apt install adb`)")
    return adb


def _run(cmd: list[str], what: str, timeout: float = 600) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InputError(f"{what} failed: {e}", "check that adb works: `adb devices`") from None
    if res.returncode != 0:
        why = (res.stderr or res.stdout).strip().splitlines()
        raise InputError(f"{what} failed: {why[-1] if why else f'exit {res.returncode}'}",
                         "check the device: `adb devices` (authorized, online)")
    return res.stdout


def devices(adb: str) -> list[str]:
    """Serials of the devices adb sees ready (state ``device``: not offline or unauthorized)."""
    out = _run([adb, "devices"], "adb devices", timeout=60)  # a hung adb server must not hang the command
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return [r[0] for r in rows if len(r) >= 2 and r[1] == "device"]


def push(bundle: Path, serial: str | None = None, device_dir: str = DEVICE_DIR) -> str:
    """Verify ``bundle``, push it to ``device_dir/<bundle name>`` on the device, make it readable; returns the
    path on the device."""
    problems = verify(bundle)
    if problems:
        raise InputError(f"{bundle} does not verify ({problems[0]}{' and more' if len(problems) > 1 else ''})",
                         f"run `edgeslm verify {bundle}` and re-export; a changed bundle is never pushed")
    adb = _adb()
    ready = devices(adb)
    if serial is None:
        if not ready:
            raise InputError("no Android device is connected and ready",
                             "connect one with USB debugging on (and accept the prompt), or start an emulator; "
                             "`adb devices` lists them")
        if len(ready) > 1:
            raise InputError(f"{len(ready)} devices are connected ({', '.join(ready)})", "choose one with --serial")
        serial = ready[0]
    elif serial not in ready:
        raise InputError(f"device {serial} is not connected and ready (ready: {', '.join(ready) or 'none'})",
                         "check `adb devices`")
    remote = f"{device_dir.rstrip('/')}/{bundle.resolve().name}"
    base = [adb, "-s", serial]
    _run([*base, "shell", f"rm -rf '{remote}' && mkdir -p '{device_dir}'"], "preparing the device folder")
    _run([*base, "push", str(bundle), remote], "adb push")
    _run([*base, "shell", f"chmod -R a+rX '{device_dir}'"], "making the bundle readable")
    return remote
