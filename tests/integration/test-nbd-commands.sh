#!/usr/bin/env bash
# Every NBD command and flag through libnbd (nbd_commands.py): structured reads
# with holes, don't-fragment reads, block status (REQ_ONE, allocation depth), write
# with FUA, write zeroes (NO_HOLE, FAST_ZERO, FUA), trim, cache, flush, refused
# requests. qemu-nbd and qkit-nbd serve copies of one image; transcripts must match.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd-helpers.sh"

t_need "qkit-nbd built" "$QKIT_NBD" || exit 0
command -v qemu-nbd >/dev/null || { t_skip "nbd commands" "qemu-nbd not installed"; exit 0; }
"$NBD_PY" -c 'import nbd' 2>/dev/null ||
    { t_skip "nbd commands" "python3-libnbd not installed"; exit 0; }
SCRIPT=$(dirname "$0")/nbd_commands.py

# Images: raw with data and holes; a qcow2 over a backing file.
qemu-img create -q -f raw "$T/src.raw" 4M
qemu-io -f raw -c 'write -P 0x5a 0 64k' -c 'write -P 0x33 1M 4k' -c 'write -P 0x77 3M 512k' \
    "$T/src.raw" >/dev/null
qemu-img create -q -f qcow2 "$T/base.qcow2" 4M
qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 2 2M 256k' "$T/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b "$T/base.qcow2" -F qcow2 "$T/src.qcow2"
qemu-io -f qcow2 -c 'write -P 3 512k 1M' -c 'write -z 3M 64k' "$T/src.qcow2" >/dev/null

# run_case NAME IMAGE SCRIPT_ARG SERVER_ARGS...: copy the image for each server, run
# the script through both, compare transcripts, then compare the images they left.
run_case() {
    local name=$1 img=$2 arg=$3 ext=${2##*.} q k
    shift 3
    cp "$img" "$T/q.$ext"
    cp "$img" "$T/k.$ext"
    if [ "$ext" = qcow2 ]; then
        qemu-img rebase -q -u -b "$T/base.qcow2" -F qcow2 "$T/q.$ext"
        qemu-img rebase -q -u -b "$T/base.qcow2" -F qcow2 "$T/k.$ext"
    fi
    nbd_start qemu-nbd "$T/q.sock" -e 3 "$@" "$T/q.$ext" ||
        { t_fail "$name" "qemu-nbd: $(cat "$T/server.err")"; return; }
    local qpid=$NBD_PID
    q=$(timeout 60 "$NBD_PY" "$SCRIPT" "$(nbd_uri "$T/q.sock")" $arg 2>&1)
    nbd_stop $qpid
    if ! nbd_start "$QKIT_NBD" "$T/k.sock" -e 3 "$@" "$T/k.$ext"; then
        t_fail "$name" "qkit-nbd: $(cat "$T/server.err")"
        return
    fi
    local kpid=$NBD_PID
    k=$(timeout 60 "$NBD_PY" "$SCRIPT" "$(nbd_uri "$T/k.sock")" $arg 2>&1)
    nbd_stop $kpid
    if grep -q Traceback <<<"$k"; then
        t_fail "$name" "$k"
        return
    fi
    t_eq "$name" "$q" "$k"
    t_ok "$name: images equal afterwards" qemu-img compare -f $ext -F $ext "$T/q.$ext" "$T/k.$ext"
    if [ "$ext" = qcow2 ]; then
        t_ok "$name: image checks clean" qemu-img check -q "$T/k.$ext"
    fi
}

run_case "raw, read-write, discard=unmap" "$T/src.raw" "" -f raw --discard=unmap
run_case "raw, read-write, discard ignored" "$T/src.raw" "" -f raw
run_case "raw, read-only" "$T/src.raw" readonly -r -f raw
run_case "qcow2 chain, allocation depth" "$T/src.qcow2" "" -A -f qcow2 --discard=unmap
run_case "qcow2 chain, read-only" "$T/src.qcow2" readonly -A -r -f qcow2
run_case "qcow2, detect-zeroes=unmap" "$T/src.qcow2" "" -f qcow2 --discard=unmap \
    --detect-zeroes=unmap
# -o: the export is the image less its first MiB.
qemu-img create -q -f raw "$T/off.raw" 5M
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x5a 1M 64k' -c 'write -P 0x77 4M 512k' \
    "$T/off.raw" >/dev/null
run_case "raw, offset" "$T/off.raw" "" -f raw -o 1048576
run_case "qcow2, writethrough cache" "$T/src.qcow2" "" -f qcow2 --cache=writethrough
run_case "raw, cache=none (O_DIRECT)" "$T/src.raw" "" -f raw --cache=none --discard=unmap
