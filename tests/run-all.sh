#!/usr/bin/env bash
# Runs every test: unit tests (plain and sanitized), then each integration test,
# and prints one closing line "N passed, N failed, N skipped".
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
pass=0 fail=0 skip=0
log=$(mktemp)

count() {
    local p f s
    p=$(grep -c '^PASS: ' "$log"); f=$(grep -c '^FAIL: ' "$log"); s=$(grep -c '^SKIP: ' "$log")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    grep -E '^(FAIL|SKIP): |^  ' "$log" || true
    : > "$log"
}

# Build both trees; a build failure is one failed test.
for b in build build-asan; do
    if [ ! -f "$b/build.ninja" ]; then
        if [ "$b" = build-asan ]; then
            meson setup "$b" -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
        else
            meson setup "$b" >/dev/null
        fi
    fi
    if ninja -C "$b" >"$log.build" 2>&1; then
        echo "PASS: build $b" >>"$log"
    else
        echo "FAIL: build $b" >>"$log"; tail -30 "$log.build" | sed 's/^/  /' >>"$log"
    fi
done
count

# Unit tests, in both builds.
for b in build build-asan; do
    for t in "$b"/tests/unit/test-*; do
        [ -x "$t" ] || continue
        if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 "$t" >"$log.unit" 2>&1; then
            echo "PASS: unit $(basename "$t") ($b)" >>"$log"
        else
            echo "FAIL: unit $(basename "$t") ($b)" >>"$log"; tail -20 "$log.unit" | sed 's/^/  /' >>"$log"
        fi
    done
done
count

# Integration tests, against the plain build.
for t in tests/integration/test-*.sh; do
    echo "== $t"
    timeout 900 bash "$t" >"$log" 2>&1 || { [ $? -eq 124 ] && echo "FAIL: $t timed out" >>"$log"; }
    count
done
rm -f "$log" "$log.build" "$log.unit"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
