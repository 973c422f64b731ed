#!/usr/bin/env bash
# Show qkit-img and qkit-io at work on a real qcow2 image: create it, write data,
# inspect, check, map, convert, and (when QEMU's qemu-img is installed) let QEMU
# confirm it reads the same disk. Each command is printed before its output.
#   scripts/demo.sh [BUILD_DIR]     (default: build)
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
IMG=$B/tools/qkit-img/qkit-img
IO=$B/tools/qkit-io/qkit-io
W=$(mktemp -d "${TMPDIR:-/tmp}/qkit-demo.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W"
failed=0
BOLD="" NORMAL=""
if [ -t 1 ]; then BOLD=$'\033[1m' NORMAL=$'\033[0m'; fi

# Print a command the way a user would type it, run it, and note a failure.
step() {
    local shown="" a rc
    for a in "$@"; do
        case $a in
        "$IMG") a=qkit-img ;;
        "$IO") a=qkit-io ;;
        *' '*) a="'$a'" ;;
        esac
        shown+="${shown:+ }$a"
    done
    printf "\n${BOLD}\$ %s${NORMAL}\n" "$shown"
    "$@" 2>&1; rc=$?
    if [ $rc -ne 0 ]; then
        echo "  -> failed (exit $rc)"
        failed=$((failed + 1))
    fi
    return $rc
}
say() { printf '\n# %s\n' "$*"; }

for t in "$IMG" "$IO"; do
    [ -x "$t" ] || { echo "demo: $t is not built (run: make)"; exit 1; }
done

say "A new 4 GiB qcow2 disk: only metadata is allocated."
step "$IMG" create -f qcow2 disk.qcow2 4G
say "Write a 1 MiB pattern at the start and 64 KiB of another at 2 GiB, then read back."
step "$IO" -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 2G 64k' -c 'read -P 0xab 0 1M' \
    -c 'read -P 0 1M 1M' disk.qcow2
say "What the image holds."
step "$IMG" info disk.qcow2
say "Consistency check of the qcow2 metadata (refcounts, L1/L2 tables)."
step "$IMG" check disk.qcow2
say "Which ranges hold data, and where in the file."
step "$IMG" map --output=human disk.qcow2
say "Convert to a compressed qcow2 and to raw."
step "$IMG" convert -c -O qcow2 disk.qcow2 small.qcow2
step "$IMG" convert -O raw disk.qcow2 disk.raw
step "$IMG" info small.qcow2
step "$IMG" compare disk.qcow2 small.qcow2
say "Sizes on the host: the raw file is sparse, the qcow2 files hold only what was written."
step du -h --apparent-size disk.qcow2 small.qcow2 disk.raw
step du -h disk.qcow2 small.qcow2 disk.raw

if command -v qemu-img >/dev/null; then
    say "QEMU 7.2 reads the images qkit wrote: same content, clean check."
    step qemu-img compare disk.qcow2 disk.raw
    step qemu-img compare small.qcow2 disk.raw
    step qemu-img check small.qcow2
fi

echo
if [ $failed -eq 0 ]; then
    echo "demo: all steps worked"
else
    echo "demo: $failed step(s) failed"
    exit 1
fi
