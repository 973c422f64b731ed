#!/usr/bin/env bash
# qkit-img against qemu-img on the same images, one run each, with the ratio
# qkit/qemu (below 1.00 means qkit was faster). Wall-clock times on this machine;
# by default single runs, so read differences under ~30% as noise.
#   bench/img.sh [BUILD_DIR]
# Environment:
#   BENCH_ALLOC   size of the fully written image that info, check and the read
#                 bench use (default 1G; 2G for the full run)
#   BENCH_IOS     requests per `bench` run (default 20000)
#   BENCH_RUNS    runs of each command, the fastest counts (default 1)
#   BENCH_DIR     where the images go (default a temp dir under /var/tmp: not tmpfs,
#                 since -t none needs O_DIRECT)
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
QKIT_IMG=$B/tools/qkit-img/qkit-img
ALLOC=${BENCH_ALLOC:-1G}
IOS=${BENCH_IOS:-20000}
RUNS=${BENCH_RUNS:-1}
# 4 KiB requests 1 MiB + 4 KiB apart: each lands in another cluster, wrapping around the
# disk, so the access pattern is scattered rather than sequential.
STEP=$((1024 * 1024 + 4096))
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/qkit-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT

for t in "$QKIT_IMG" "$(command -v qemu-img)"; do
    [ -x "$t" ] || { echo "bench: need $QKIT_IMG and qemu-img (make bench installs them)"; exit 1; }
done

# Seconds taken by a command (wall clock); its output goes to $W/last.out.
timed() {
    local s e
    s=$(date +%s%N)
    "$@" >"$W/last.out" 2>&1 || { echo "FAILED: $*" >&2; sed 's/^/  /' "$W/last.out" >&2;
                                  echo "nan"; return; }
    e=$(date +%s%N)
    awk -v n=$((e - s)) 'BEGIN { printf "%.3f", n / 1e9 }'
}

# The smaller of two times ("nan" for a failed run loses).
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "nan" || (b != "nan" && b + 0 < a + 0)) ? b : a }'; }

# One table row: what, qemu-img seconds, qkit-img seconds, ratio.
row() {
    awk -v what="$1" -v q="$2" -v k="$3" 'BEGIN {
        r = (q + 0 > 0 && k != "nan" && q != "nan") ? sprintf("%.2f", k / q) : "-";
        printf "%-46s %10s %10s %7s\n", what, q, k, r }'
}

# Run the same subcommand with both tools; ARGS may hold @IMG@, replaced per tool by a
# private copy of SRC (so writes start from the same data) when SRC is given.
both() {
    local what=$1 src=$2; shift 2
    local q=nan k=nan a args t r
    for ((r = 0; r < RUNS; r++)); do
        for tool in qemu-img "$QKIT_IMG"; do
            args=()
            if [ -n "$src" ]; then
                cp --sparse=always "$src" "$W/copy.qcow2"
                # Written back now, so the kernel's writeback does not land in the timing.
                sync "$W/copy.qcow2"
                cat "$W/copy.qcow2" >/dev/null
            fi
            for a in "$@"; do args+=("${a//@IMG@/$W/copy.qcow2}"); done
            rm -f "$W/new.qcow2"
            t=$(timed "$tool" "${args[@]}")
            if [ "$tool" = qemu-img ]; then q=$(best "$q" "$t"); else k=$(best "$k" "$t"); fi
        done
    done
    row "$what" "$q" "$k"
}

echo "preparing a qcow2 image with $ALLOC of data (qemu-io writes it)..."
qemu-img create -q -f qcow2 "$W/data.qcow2" "$ALLOC"
qemu-io -f qcow2 -c "write -P 0x5a 0 $ALLOC" "$W/data.qcow2" >/dev/null
qemu-img create -q -f qcow2 "$W/empty.qcow2" 4G

printf "%-46s %10s %10s %7s\n" "operation (seconds)" qemu-img qkit-img ratio
both "create 1 TiB qcow2" "" create -q -f qcow2 "$W/new.qcow2" 1T
both "info ($ALLOC allocated)" "$W/data.qcow2" info @IMG@
both "check ($ALLOC allocated)" "$W/data.qcow2" check @IMG@
for cache in none writeback; do
    both "bench read 4k x $IOS scattered, -t $cache" "$W/data.qcow2" \
        bench -q -f qcow2 -t "$cache" -c "$IOS" -s 4k -S "$STEP" @IMG@
    both "bench write 4k x $IOS scattered, -t $cache" "$W/empty.qcow2" \
        bench -q -w -f qcow2 -t "$cache" -c "$IOS" -s 4k -S "$STEP" @IMG@
done
