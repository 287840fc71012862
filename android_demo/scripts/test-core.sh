#!/usr/bin/env bash
# Compiles android_demo/core and its JUnit4 tests with kotlinc (no Gradle, no network) and runs them on the JVM
# against BUNDLE, a folder written by `edgeslm export` (with golden.json). Prints JUnit's summary
# ("OK (N tests)" or "Tests run: N,  Failures: M"); exits non-zero on any failure or missing tool.
# Tools come from install-tools.sh (run first, idempotent). Compiled jars are cached under
# android_demo/build/core-jvm/ by a hash of the sources, so a second run only runs the tests.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 BUNDLE_DIR" >&2; exit 2; }
bundle="$(cd "$1" && pwd)" || { echo "error: $1 is not a folder" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
demo="$(cd "$here/.." && pwd)"
t0=$(date +%s%N)
secs() { local d=$(( ($(date +%s%N) - $1) / 1000000 )); printf "%d.%01d" $((d / 1000)) $(((d % 1000) / 100)); }

kotlinc="$("$here/install-tools.sh" | tail -1)"
kdir="$(cd "$(dirname "$kotlinc")/.." && pwd)"
J=/usr/share/java
cp_deps="$J/com.android.json.jar"
cp_test="$J/junit4.jar:$J/hamcrest.jar"
for f in "$J/com.android.json.jar" "$J/junit4.jar" "$J/hamcrest.jar" "$kdir/lib/kotlin-stdlib.jar"; do
  [ -f "$f" ] || { echo "error: $f is missing (run android_demo/scripts/install-tools.sh)" >&2; exit 2; }
done

out="$demo/build/core-jvm"
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9                                 # parallel runs (pytest workers) share one compile
src_hash="$( (cat "$kdir/package.json" 2>/dev/null; cd "$demo/core/src" && find . -name '*.kt' | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16)"
if [ "$(cat "$out/stamp" 2>/dev/null)" != "$src_hash" ] || [ ! -f "$out/core.jar" ] || [ ! -f "$out/core-test.jar" ]; then
  rm -f "$out/stamp" "$out/core.jar" "$out/core-test.jar"
  tc=$(date +%s%N)
  "$kotlinc" -nowarn -jvm-target 17 "$demo/core/src/main/kotlin" -cp "$cp_deps" -d "$out/core.jar" 2>"$out/compile.log" \
    || { cat "$out/compile.log" >&2; echo "error: kotlinc failed on core/src/main" >&2; exit 1; }
  "$kotlinc" -nowarn -jvm-target 17 "$demo/core/src/test/kotlin" -cp "$out/core.jar:$cp_deps:$cp_test" -d "$out/core-test.jar" 2>"$out/compile.log" \
    || { cat "$out/compile.log" >&2; echo "error: kotlinc failed on core/src/test" >&2; exit 1; }
  echo "$src_hash" >"$out/stamp"
  echo "core: compiled in $(secs "$tc") s" >&2
fi
# every *Test.kt file under core/src/test holds one test class of that name in package dev.edgeslm.core
classes=$(cd "$demo/core/src/test/kotlin/dev/edgeslm/core" && ls -1 *Test.kt | sed 's#^#dev.edgeslm.core.#; s#\.kt$##' | LC_ALL=C sort)
[ -n "$classes" ] || { echo "error: no *Test.kt files in core/src/test" >&2; exit 1; }
flock -u 9
rc=0
# shellcheck disable=SC2086
java -Dedgeslm.bundle="$bundle" -cp "$out/core-test.jar:$out/core.jar:$kdir/lib/kotlin-stdlib.jar:$cp_deps:$cp_test" \
  org.junit.runner.JUnitCore $classes || rc=$?
echo "core: compile+test took $(secs "$t0") s" >&2
exit $rc
