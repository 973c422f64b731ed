#!/usr/bin/env bash
# qkit-ga's effects checked from outside: fsfreeze of a loop-mounted filesystem made
# for the test (beside qemu-ga), shutdown and hwclock through fake binaries, allow-rpcs,
# the isa-serial transport on a pseudo terminal, and daemonizing with a pid file.
source "$(dirname "$0")/lib.sh"

QKIT_GA=${QKIT_GA:-$BUILD/tools/qkit-ga/qkit-ga}
t_need "qga-effects: qkit-ga built" "$QKIT_GA" || exit 0
if ! command -v qemu-ga >/dev/null && [ ! -x /usr/sbin/qemu-ga ]; then
    t_skip "qga-effects" "qemu-ga not installed (scripts/deps.sh test)"
    exit 0
fi
PATH=$PATH:/usr/sbin:/sbin timeout 240 python3 "$TOP/tests/integration/qga_diff.py" \
    "$QKIT_GA" "$T" freeze sbin allow serial daemon \
    || t_fail "qga-effects: session driver exited with status $?"
