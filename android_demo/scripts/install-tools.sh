#!/usr/bin/env bash
# Installs what android_demo/scripts/test-core.sh needs to compile and test core/ without Gradle:
#   a JDK (javac/java), JUnit 4 + Hamcrest, org.json (Android's implementation: Debian libandroid-json-java),
#   aapt2 + android-framework-res (the app's resource link check), and kotlinc (npm package kotlin-compiler,
#   installed into <repo>/.tools, git-ignored). A tool that cannot be installed is an error (exit 2), never a skip.
# Prints the kotlinc path on the last line of stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
KOTLIN_VERSION="${KOTLIN_VERSION:-2.2.21}"      # keep equal to the Kotlin Gradle plugin in android_demo/build.gradle.kts
TOOLS="${EDGESLM_TOOLS:-$repo/.tools}"
KOTLINC="$TOOLS/node_modules/kotlin-compiler/bin/kotlinc"
log="$TOOLS/install-tools.log"
mkdir -p "$TOOLS"
: >"$log"

fail() { echo "error: $1" >&2; [ -s "$log" ] && { echo "--- last lines of $log:" >&2; tail -15 "$log" >&2; }; exit 2; }

# Debian packages: each needed file -> the package that provides it.
declare -A need=(
  [/usr/bin/javac]=default-jdk-headless
  [/usr/share/java/junit4.jar]=junit4
  [/usr/share/java/hamcrest.jar]=libhamcrest-java
  [/usr/share/java/com.android.json.jar]=libandroid-json-java
  [/usr/bin/aapt2]=aapt
  [/usr/share/android-framework-res/framework-res.apk]=android-framework-res
  [/usr/bin/adb]=adb                       # edgeslm push (tests: its no-device path, for real)
)
missing=()
for f in "${!need[@]}"; do [ -e "$f" ] || missing+=("${need[$f]}"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    fail "missing ${missing[*]} and cannot install them (needs root and apt-get): install them with your package manager"
  fi
  echo "installing ${missing[*]} (apt) ..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >>"$log" 2>&1 \
    || fail "apt-get install ${missing[*]} failed"
  for f in "${!need[@]}"; do [ -e "$f" ] || fail "${need[$f]} installed but $f is still missing"; done
fi

if [ ! -x "$KOTLINC" ] || [ "$(cat "$TOOLS/kotlin-version" 2>/dev/null)" != "$KOTLIN_VERSION" ]; then
  command -v npm >/dev/null 2>&1 || fail "npm is missing: it installs kotlinc (npm package kotlin-compiler@$KOTLIN_VERSION); install Node.js/npm"
  echo "installing kotlin-compiler@$KOTLIN_VERSION (npm, into $TOOLS) ..." >&2
  npm install --prefix "$TOOLS" --no-audit --no-fund --no-save "kotlin-compiler@$KOTLIN_VERSION" >>"$log" 2>&1 \
    || fail "npm install kotlin-compiler@$KOTLIN_VERSION failed (kotlinc)"
  [ -x "$KOTLINC" ] || chmod +x "$TOOLS/node_modules/kotlin-compiler/bin/"* 2>/dev/null || true
  [ -x "$KOTLINC" ] || fail "kotlinc not found at $KOTLINC after installing kotlin-compiler@$KOTLIN_VERSION"
  echo "$KOTLIN_VERSION" >"$TOOLS/kotlin-version"
fi
echo "$KOTLINC"
