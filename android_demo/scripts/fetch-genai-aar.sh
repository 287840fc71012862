#!/usr/bin/env bash
# Puts the onnxruntime-genai Android AAR at android_demo/app/libs/onnxruntime-genai-android.aar (the app's
# build.gradle.kts depends on that file: the AAR is not on Maven Central).
#   usage: fetch-genai-aar.sh [VERSION]    (default: the onnxruntime-genai version pyproject.toml pins, else 0.18.0)
# Tries the GitHub release asset first, then the NuGet package Microsoft.ML.OnnxRuntimeGenAI, which ships the same
# AAR at runtimes/android/native/onnxruntime-genai.aar. Needs curl and unzip; checks the result is a real AAR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
pinned="$(sed -n 's/.*"onnxruntime-genai==\([0-9.]*\)".*/\1/p' "$repo/pyproject.toml" 2>/dev/null | head -1)"
ver="${1:-${pinned:-0.18.0}}"
dest="$here/../app/libs/onnxruntime-genai-android.aar"
mkdir -p "$(dirname "$dest")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

is_aar() { unzip -l "$1" 2>/dev/null | grep -q 'classes.jar' && unzip -l "$1" | grep -q 'libonnxruntime-genai'; }

got=""
for url in \
  "https://github.com/microsoft/onnxruntime-genai/releases/download/v$ver/onnxruntime-genai-android-$ver.aar" \
  "https://github.com/microsoft/onnxruntime-genai/releases/download/v$ver/onnxruntime-genai-$ver.aar"; do
  if curl -fsSL --retry 3 -o "$tmp/genai.aar" "$url" && is_aar "$tmp/genai.aar"; then got="$url"; break; fi
done
if [ -z "$got" ]; then
  url="https://www.nuget.org/api/v2/package/Microsoft.ML.OnnxRuntimeGenAI/$ver"
  if curl -fsSL --retry 3 -o "$tmp/genai.nupkg" "$url"; then
    entry="$(unzip -Z1 "$tmp/genai.nupkg" | grep -E '^runtimes/android/native/.*\.aar$' | head -1 || true)"
    if [ -n "$entry" ]; then
      unzip -p "$tmp/genai.nupkg" "$entry" >"$tmp/genai.aar"
      is_aar "$tmp/genai.aar" && got="$url ($entry)"
    fi
  fi
fi
[ -n "$got" ] || { echo "error: no onnxruntime-genai Android AAR found for $ver (GitHub release assets, NuGet Microsoft.ML.OnnxRuntimeGenAI)" >&2; exit 1; }
mv "$tmp/genai.aar" "$dest"
echo "onnxruntime-genai $ver Android AAR from $got -> $dest ($(stat -c%s "$dest") bytes)"
unzip -l "$dest" | grep -E 'jni/.*\.so$' | awk '{print "  " $4}'
