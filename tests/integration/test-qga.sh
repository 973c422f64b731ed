#!/usr/bin/env bash
# qkit-ga against QEMU 7.2's qemu-ga: the same scripted sessions over unix sockets give
# the same replies (byte for byte where nothing varies by nature), bad input gets the
# right error and the agent keeps serving, files and exec have their real effects, and
# blocked commands stay blocked. Effects on the machine (shutdown, clock, freezing) use
# fake helper binaries or a loop-mounted filesystem made for the test, or are skipped.
source "$(dirname "$0")/lib.sh"

QKIT_GA=${QKIT_GA:-$BUILD/tools/qkit-ga/qkit-ga}
t_need "qga: qkit-ga built" "$QKIT_GA" || exit 0
if ! command -v qemu-ga >/dev/null && [ ! -x /usr/sbin/qemu-ga ]; then
    t_skip "qga: differential sessions" "qemu-ga not installed (scripts/deps.sh test)"
    exit 0
fi
command -v python3 >/dev/null || { t_skip "qga: differential sessions" "no python3"; exit 0; }

PATH=$PATH:/usr/sbin:/sbin timeout 240 python3 "$TOP/tests/integration/qga_diff.py" \
    "$QKIT_GA" "$T" protocol big disconnect file exec info system options \
    || t_fail "qga: session driver exited with status $?"

# Version and help name the program as qemu-ga does.
t_eq "qga: -V" "QEMU Guest Agent 7.2.22 (qkit 0.1.0)" "$("$QKIT_GA" -V)"
help=$("$QKIT_GA" -h)
t_eq "qga: -h starts with qemu-ga's usage line" \
    "Usage: $QKIT_GA [-m <method> -p <path>] [<options>]" "$(head -1 <<<"$help")"
t_fails "qga: unknown option fails" "$QKIT_GA" --bogus
t_fails "qga: missing state dir fails" "$QKIT_GA" -m unix-listen -p "$T/x.sock" -t "$T/none"

if [ -x "$BUILD/tools/qkit-ga/qkit-ga-static" ]; then
    if file "$BUILD/tools/qkit-ga/qkit-ga-static" 2>/dev/null | grep -q 'statically linked' \
        || ! ldd "$BUILD/tools/qkit-ga/qkit-ga-static" >/dev/null 2>&1; then
        t_pass "qga: qkit-ga-static is statically linked"
    else
        t_fail "qga: qkit-ga-static is statically linked" "$(ldd "$BUILD/tools/qkit-ga/qkit-ga-static")"
    fi
    t_eq "qga: qkit-ga-static runs" "QEMU Guest Agent 7.2.22 (qkit 0.1.0)" \
        "$("$BUILD/tools/qkit-ga/qkit-ga-static" -V)"
fi
