#!/usr/bin/env bash
# Compiles and links android_demo/app's manifest and resources with aapt2 against Debian's API 29 framework-res.apk
# (no Android SDK here): catches unknown attributes, missing @string/@color/@style references and malformed XML.
# What it cannot catch: attributes newer than API 29 (keep the app's resources to API <= 29 so this check applies)
# and anything in Kotlin (that is built by .github/workflows/android.yml only).
#   usage: check-resources.sh [APP_DIR]     (default: android_demo/app; tests pass a broken copy)
# Prints what was linked; exits non-zero with aapt2's error on failure, 2 when a tool is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
app="$(cd "${1:-$here/../app}" && pwd)"
FRAMEWORK="${FRAMEWORK_RES:-/usr/share/android-framework-res/framework-res.apk}"
AAPT2="${AAPT2:-$(command -v aapt2 || true)}"
[ -n "$AAPT2" ] && [ -x "$AAPT2" ] || { echo "error: aapt2 is missing (Debian package aapt; android_demo/scripts/install-tools.sh)" >&2; exit 2; }
[ -f "$FRAMEWORK" ] || { echo "error: $FRAMEWORK is missing (Debian package android-framework-res)" >&2; exit 2; }
manifest="$app/src/main/AndroidManifest.xml"
res="$app/src/main/res"
[ -f "$manifest" ] || { echo "error: $manifest is missing" >&2; exit 1; }
[ -d "$res" ] || { echo "error: $res is missing" >&2; exit 1; }
# the Gradle namespace, which AGP injects as package= and aapt2 link requires
ns="$(sed -n 's/^[[:space:]]*namespace[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$app/build.gradle.kts" 2>/dev/null | head -1)"
ns="${ns:-dev.edgeslm.demo}"
min_sdk="$(sed -n 's/^[[:space:]]*minSdk[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$app/build.gradle.kts" 2>/dev/null | head -1)"
min_sdk="${min_sdk:-26}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if grep -q '<manifest[^>]*package=' "$manifest"; then
  cp "$manifest" "$work/AndroidManifest.xml"
else
  sed "0,/<manifest /s##<manifest package=\"$ns\" #" "$manifest" >"$work/AndroidManifest.xml"
fi
"$AAPT2" compile --dir "$res" -o "$work/res.zip"
# --target-sdk-version 29: the framework here is API 29 (the app targets 35; CI's Gradle build checks that level)
"$AAPT2" link -I "$FRAMEWORK" --manifest "$work/AndroidManifest.xml" --min-sdk-version "$min_sdk" \
  --target-sdk-version 29 --java "$work/gen" -o "$work/app.ap_" "$work/res.zip"
n_files=$(find "$res" -type f | wc -l)
n_ids=$(grep -c 'public static final int' "$work/gen/${ns//.//}/R.java" || true)
echo "aapt2 $("$AAPT2" version 2>&1 | head -1): linked $manifest (package $ns, minSdk $min_sdk)"
echo "  + $n_files resource files under $res ($n_ids R ids) against $FRAMEWORK"
echo "  $( "$AAPT2" dump badging "$work/app.ap_" 2>/dev/null | grep -E "^(package|application-label):" | tr '\n' ' ')"
echo "resources OK"
