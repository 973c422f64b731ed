# Shared helpers for integration tests. Each test-*.sh sources this file and
# reports results as lines "PASS: name", "FAIL: name" or "SKIP: name (reason)";
# tests/run-all.sh counts them.
set -u

TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-$TOP/build}
QKIT_IMG=${QKIT_IMG:-$BUILD/tools/qkit-img/qkit-img}
QKIT_IO=${QKIT_IO:-$BUILD/tools/qkit-io/qkit-io}
T=$(mktemp -d "${TMPDIR:-/tmp}/qkit-test.XXXXXX")
trap 'rm -rf "$T"' EXIT

t_pass() { echo "PASS: $1"; }
t_fail() { echo "FAIL: $1"; shift; [ $# -gt 0 ] && printf '  %s\n' "$@"; return 0; }
t_skip() { echo "SKIP: $1 ($2)"; }

# t_eq NAME EXPECTED ACTUAL: pass if the two strings are equal, else show a diff.
t_eq() {
    if [ "$2" == "$3" ]; then
        t_pass "$1"
    else
        echo "FAIL: $1"
        diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | head -40 | sed 's/^/  /'
    fi
}

# t_ok NAME CMD...: pass if the command exits 0.
t_ok() {
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then t_pass "$name"; else t_fail "$name" "exit $?: $*" "$out"; fi
}

# t_fails NAME CMD...: pass if the command exits non-zero without crashing (no signal).
t_fails() {
    local name=$1; shift
    local out rc
    out=$(timeout 60 "$@" 2>&1); rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 124 ]; then t_pass "$name"; else t_fail "$name" "exit $rc: $*" "$out"; fi
}

# Run qkit-img / qkit-io and the QEMU tool with the same arguments; the program
# name in messages is swapped so outputs compare directly.
qimg() { "$QKIT_IMG" "$@"; }
qio() { "$QKIT_IO" "$@"; }
# Strip the timing lines that qemu-io prints after each I/O command.
filter_io() { sed -e '/^\(read\|wrote\) [0-9]*\/[0-9]* bytes at offset [0-9]*$/!b' -e 'n;/ops\/sec/d'; }
