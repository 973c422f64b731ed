# Shared helpers for integration tests. Each test-*.sh sources this file and
# reports results as lines "PASS: name", "FAIL: name" (followed by indented context
# lines) or "SKIP: name (reason)"; tests/run-all.sh counts them.
#
# Variables: $QKIT_IMG, $QKIT_IO (tools under test, plain build), $QKIT_IMG_ASAN,
# $QKIT_IO_ASAN (the ASan+UBSan build, may not exist), $T (a fresh temp dir,
# removed on exit), $TOP (the source tree).
set -u

TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-$TOP/build}
ASAN_BUILD=${ASAN_BUILD:-$TOP/build-asan}
QKIT_IMG=${QKIT_IMG:-$BUILD/tools/qkit-img/qkit-img}
QKIT_IO=${QKIT_IO:-$BUILD/tools/qkit-io/qkit-io}
QKIT_IMG_ASAN=${QKIT_IMG_ASAN:-$ASAN_BUILD/tools/qkit-img/qkit-img}
QKIT_IO_ASAN=${QKIT_IO_ASAN:-$ASAN_BUILD/tools/qkit-io/qkit-io}
# Longest any single tool run may take in t_ok / t_fails before it counts as a hang.
T_TIMEOUT=${T_TIMEOUT:-60}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
T=$(mktemp -d "${TMPDIR:-/tmp}/qkit-test.XXXXXX")
trap 'rm -rf "$T"' EXIT

t_pass() { echo "PASS: $1"; }
# t_fail NAME [CONTEXT...]: each context line is shown indented (long output is cut).
t_fail() {
    echo "FAIL: $1"; shift
    [ $# -gt 0 ] && printf '%s\n' "$@" | head -60 | cut -c1-400 | sed 's/^/  /'
    return 0
}
t_skip() { echo "SKIP: $1 (${2:-no reason given})"; }

# t_eq NAME EXPECTED ACTUAL: pass if the two strings are equal, else show a diff.
t_eq() {
    if [ "$2" == "$3" ]; then
        t_pass "$1"
    else
        echo "FAIL: $1"
        diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | head -40 | sed 's/^/  /'
    fi
}

# True if the text holds a sanitizer report (ASan, UBSan, LSan).
t_has_sanitizer_report() {
    grep -qE '^==[0-9]+==ERROR: |runtime error: |^SUMMARY: (Address|Undefined|Leak)Sanitizer' \
        <<<"$1"
}

# t_ok NAME CMD...: pass if the command exits 0 within $T_TIMEOUT without a sanitizer report.
t_ok() {
    local name=$1; shift
    local out rc
    out=$(timeout "$T_TIMEOUT" "$@" 2>&1); rc=$?
    if [ $rc -eq 0 ] && ! t_has_sanitizer_report "$out"; then
        t_pass "$name"
    else
        t_fail "$name" "exit $rc: $*" "$out"
    fi
}

# t_fails NAME CMD...: pass if the command exits non-zero (an error) without crashing,
# hanging, failing to start (124..127, signals) or printing a sanitizer report.
t_fails() {
    local name=$1; shift
    local out rc
    out=$(timeout "$T_TIMEOUT" "$@" 2>&1); rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 124 ] && ! t_has_sanitizer_report "$out"; then
        t_pass "$name"
    else
        t_fail "$name" "exit $rc: $*" "$out"
    fi
}

# t_need NAME FILE...: fail NAME (a real gap, not a skip) unless every tool is built.
# Returns non-zero when something is missing, so a test can stop early.
t_need() {
    local name=$1 f; shift
    for f in "$@"; do
        if [ ! -x "$f" ]; then
            t_fail "$name" "not built: $f"
            return 1
        fi
    done
}

# Run qkit-img / qkit-io and the QEMU tool with the same arguments; the program
# name in messages is swapped so outputs compare directly.
qimg() { "$QKIT_IMG" "$@"; }
qio() { "$QKIT_IO" "$@"; }
# Rewrite qkit's program names to QEMU's where a tool prints its own name (the
# "prog: message" prefix and "Try 'prog --help'"), for comparisons.
swap_names() {
    sed -e "s#^[^ :']*qkit-img:#qemu-img:#" -e "s#^[^ :']*qkit-io:#qemu-io:#" \
        -e "s#'[^ ']*qkit-img --help'#'qemu-img --help'#" \
        -e "s#'[^ ']*qkit-io --help'#'qemu-io --help'#"
}
# Strip the timing lines that qemu-io prints after each I/O command.
filter_io() { sed -e '/^\(read\|wrote\) [0-9]*\/[0-9]* bytes at offset [0-9]*$/!b' -e 'n;/ops\/sec/d'; }
# sha256 of a file, to prove a command left it untouched.
file_sum() { sha256sum "$1" | cut -d' ' -f1; }
