#!/usr/bin/env bash
# Runs every test: the two builds (plain and ASan+UBSan), unit tests in both, each
# integration test against the plain build, and a short fuzz run; then prints one
# closing line "N passed, N failed, N skipped". Exit status is non-zero on any failure.
#   tests/run-all.sh              everything
#   tests/run-all.sh PATTERN      only integration tests whose name contains PATTERN
#                                 (builds and unit tests still run; fuzzing is skipped)
# Environment: QKIT_TEST_TIMEOUT (seconds per integration test file, default 300),
# QKIT_NO_FUZZ=1 to leave out the fuzz run.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
pattern=${1:-}
timeout_s=${QKIT_TEST_TIMEOUT:-300}
pass=0 fail=0 skip=0
log=$(mktemp)
trap 'rm -f "$log" "$log".*' EXIT
failed_names=()

# Add up the PASS/FAIL/SKIP lines in $log, show failures (with their indented context)
# and skips (with their reason), then empty the log.
count() {
    local p f s
    p=$(grep -c '^PASS: ' "$log"); f=$(grep -c '^FAIL: ' "$log"); s=$(grep -c '^SKIP: ' "$log")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    # A skip must say why; one that does not is shown with a note.
    awk '/^FAIL: / { ctx = 1; print; next }
         /^SKIP: / { ctx = 0; print $0 (/\(.*\)$/ ? "" : " (no reason given)"); next }
         /^PASS: / { ctx = 0; next }
         /^  / && ctx { print }' "$log"
    while IFS= read -r l; do failed_names+=("${l#FAIL: }"); done < <(grep '^FAIL: ' "$log")
    : > "$log"
}

section() { echo "== $*"; }

# Build both trees; a build failure is one failed test, shown with the compiler errors.
section builds
for b in build build-asan; do
    if [ ! -f "$b/build.ninja" ]; then
        if [ "$b" = build-asan ]; then
            meson setup "$b" -Db_sanitize=address,undefined -Db_lundef=false >"$log.setup" 2>&1
        else
            meson setup "$b" >"$log.setup" 2>&1
        fi || { echo "FAIL: meson setup $b" >>"$log"; tail -20 "$log.setup" | sed 's/^/  /' >>"$log"; }
    fi
    if ninja -C "$b" >"$log.build" 2>&1; then
        echo "PASS: build $b" >>"$log"
    else
        echo "FAIL: build $b" >>"$log"
        { grep -E 'error|FAILED' "$log.build" | head -20; tail -5 "$log.build"; } \
            | sed 's/^/  /' >>"$log"
    fi
done
count

# Unit tests, in both builds (leaks fail the ASan run).
section unit tests
for b in build build-asan; do
    for t in "$b"/tests/unit/test-*; do
        [ -f "$t" ] && [ -x "$t" ] || continue
        if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                timeout "$timeout_s" "$t" </dev/null >"$log.unit" 2>&1; then
            echo "PASS: unit $(basename "$t") ($b)" >>"$log"
        else
            echo "FAIL: unit $(basename "$t") ($b)" >>"$log"
            tail -20 "$log.unit" | sed 's/^/  /' >>"$log"
        fi
    done
done
count

# Integration tests, against the plain build. A script that dies early, times out or
# reports nothing is a failure of its own.
for t in tests/integration/test-*.sh; do
    [ -z "$pattern" ] || [[ $t == *"$pattern"* ]] || continue
    name=$(basename "$t" .sh)
    section "$name"
    start=$SECONDS
    timeout "$timeout_s" bash "$t" </dev/null >"$log" 2>"$log.err"; rc=$?
    if [ $rc -eq 124 ]; then
        echo "FAIL: $name timed out after ${timeout_s}s" >>"$log"
    elif [ $rc -ne 0 ] && ! grep -q '^FAIL: ' "$log"; then
        echo "FAIL: $name exited with status $rc" >>"$log"
        tail -10 "$log.err" | sed 's/^/  /' >>"$log"
    elif ! grep -qE '^(PASS|FAIL|SKIP): ' "$log"; then
        echo "FAIL: $name reported no result" >>"$log"
        tail -10 "$log.err" | sed 's/^/  /' >>"$log"
    fi
    count
    echo "   ($((SECONDS - start))s)"
done

# A short fuzz run of every libFuzzer target; a crash, leak or hang fails.
if [ -z "$pattern" ] && [ -z "${QKIT_NO_FUZZ:-}" ]; then
    section fuzz
    bash scripts/fuzz.sh short </dev/null >"$log" 2>&1
    grep '^PASS: ' "$log" | sed 's/^/   /'
    count
fi

if [ $fail -gt 0 ]; then
    echo "failed:"
    printf '  %s\n' "${failed_names[@]}" | head -40
    [ ${#failed_names[@]} -le 40 ] || echo "  ... and $(( ${#failed_names[@]} - 40 )) more"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
