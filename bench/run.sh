#!/usr/bin/env bash
# Run every benchmark script in bench/ (each compares qkit with QEMU 7.2 side by side).
#   bench/run.sh [BUILD_DIR]      (default: build); settings are passed on in the
#                                 environment, see each script's header.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
rc=0
for b in "$HERE"/*.sh; do
    [ "$(basename "$b")" = run.sh ] && continue
    echo "=== $(basename "$b")"
    bash "$b" "$@" || { echo "(bench $(basename "$b") failed: exit $?)"; rc=1; }
    echo
done
exit $rc
