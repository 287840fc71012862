#!/usr/bin/env bash
# Runs inside reactivecircus/android-emulator-runner (.github/workflows/android.yml, job "emulator"), from the
# repository root, with the emulator booted and adb on PATH ($ANDROID_SERIAL set). One file because the action runs
# each `script:` line in its own shell.
#   1. push the demo bundle (exported by the workflow to out/demo-android) with `edgeslm push` (adb push +
#      chmod -R a+rX) to /data/local/tmp/edgeslm/demo-android, the folder the app and the test read;
#   2. check every file arrived whole (sizes on the device = sizes here; large pushes can stall on an emulator);
#   3. run the instrumented test GreedyOnDeviceTest (golden.json's greedy tokens, on the device's runtimes).
set -euo pipefail
bundle="${1:-out/demo-android}"
remote=/data/local/tmp/edgeslm/demo-android
adb wait-for-device
adb shell getprop ro.product.cpu.abi
.venv/bin/edgeslm push "$bundle"
adb shell ls -lR "$remote"
(cd "$bundle" && find . -type f -printf '%P %s\n') | while read -r f size; do
  got="$(adb shell stat -c%s "$remote/$f" | tr -d '\r')"
  [ "$got" = "$size" ] || { echo "error: $remote/$f is $got bytes on the device, $size here" >&2; exit 1; }
done
echo "bundle on the device: $remote (sizes checked)"
status=0
gradle -p android_demo :app:connectedDebugAndroidTest --stacktrace \
  -Pandroid.testInstrumentationRunnerArguments.bundle="$remote" || status=$?
adb logcat -d -s edgeslm-greedy:I TestRunner:I > android_demo/app/build/greedy-logcat.txt 2>&1 || true
cat android_demo/app/build/greedy-logcat.txt || true
exit $status
