#!/usr/bin/env bash
# qkit-nbd against qemu-nbd: the same image served by both must look the same to
# real NBD clients (nbdinfo, nbdcopy, qemu-img, qemu-io); option errors must read
# the same; the server's lifetime (-t, -e, exit after the last client) must match.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd-helpers.sh"

t_need "qkit-nbd built" "$QKIT_NBD" "$QKIT_IMG" || exit 0
for tool in qemu-nbd nbdinfo nbdcopy qemu-img qemu-io; do
    command -v $tool >/dev/null || { t_skip "nbd server tests" "$tool not installed"; exit 0; }
done

# A raw image with data, an explicit zero range and holes; a qcow2 chain of two.
RAW=$T/disk.raw
qemu-img create -q -f raw "$RAW" 4M
qemu-io -f raw -c 'write -P 0x5a 0 64k' -c 'write -P 0x33 1M 4k' -c 'write -z 2M 64k' \
    -c 'write -P 0x77 3M 512k' "$RAW" >/dev/null
BASE=$T/base.qcow2
TOP=$T/top.qcow2
qemu-img create -q -f qcow2 "$BASE" 4M
qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 2 2M 256k' "$BASE" >/dev/null
qemu-img create -q -f qcow2 -b "$BASE" -F qcow2 "$TOP"
qemu-io -f qcow2 -c 'write -P 3 512k 1M' -c 'write -z 3M 64k' "$TOP" >/dev/null

# Run nbdinfo ARGS against both servers started with the same SERVER_ARGS and
# compare; the socket paths in the output are the only thing allowed to differ.
compare_info() {
    local name=$1 server_args=$2 info_args=$3 export=${4:-} q k
    nbd_start qemu-nbd "$T/q.sock" -t $server_args || { t_fail "$name" "qemu-nbd failed"; return; }
    local qpid=$NBD_PID
    q=$(nbdinfo $info_args "$(nbd_uri "$T/q.sock" "$export")" 2>&1 | sed "s#$T/q.sock#SOCK#g")
    nbd_stop $qpid
    if ! nbd_start "$QKIT_NBD" "$T/k.sock" -t $server_args; then
        t_fail "$name" "qkit-nbd failed to start" "$(cat "$T/server.err")"
        return
    fi
    local kpid=$NBD_PID
    k=$(nbdinfo $info_args "$(nbd_uri "$T/k.sock" "$export")" 2>&1 | sed "s#$T/k.sock#SOCK#g")
    nbd_stop $kpid
    t_eq "$name" "$q" "$k"
}

compare_info "nbdinfo --json raw rw" "-f raw $RAW" "--json"
compare_info "nbdinfo --json raw ro" "-r -f raw $RAW" "--json"
compare_info "nbdinfo --json qcow2 -e 3" "-e 3 -f qcow2 $TOP" "--json"
compare_info "nbdinfo --json with --cache=none (O_DIRECT block sizes)" \
    "--cache=none -f raw $RAW" "--json"
compare_info "nbdinfo --json with -n --aio=native, qcow2" \
    "-n --aio=native -f qcow2 $TOP" "--json"
compare_info "nbdinfo --json, bare file protocol with O_DIRECT" \
    "--image-opts driver=file,filename=$RAW,cache.direct=on" "--json"
compare_info "nbdinfo --list with name and description" \
    "-x disk -D the_disk -f raw $RAW" "--list"
compare_info "nbdinfo --list --json -A" "-A -x disk -f qcow2 $TOP" "--list --json"
compare_info "nbdinfo --map raw" "-f raw $RAW" "--map"
compare_info "nbdinfo --map qcow2 chain" "-f qcow2 $TOP" "--map"
compare_info "nbdinfo --map=qemu:allocation-depth" "-A -f qcow2 $TOP" \
    "--map=qemu:allocation-depth"
compare_info "nbdinfo --map --totals qcow2" "-f qcow2 $TOP" "--map --totals"
compare_info "nbdinfo --size with offset" "-o 1048576 -f raw $RAW" "--size"
compare_info "nbdinfo --map with offset" "-o 1048576 -f raw $RAW" "--map"
compare_info "nbdinfo --map on a snapshot overlay" "-s -f qcow2 $TOP" "--map"
for can in cache df fast-zero flush fua multi-conn trim zero read write; do
    compare_info "nbdinfo --can $can" "-f raw $RAW" "--can $can"
    compare_info "nbdinfo --can $can read-only" "-r -e 2 -f raw $RAW" "--can $can"
done
# -B: a qcow2 persistent dirty bitmap as qemu:dirty-bitmap:NAME.
BM=$T/bitmap.qcow2
qemu-img create -q -f qcow2 "$BM" 4M
qemu-img bitmap --add "$BM" b0
qemu-io -f qcow2 -c 'write 64k 64k' -c 'write 1M 4k' -c 'write 3M 512k' "$BM" >/dev/null
qemu-img bitmap --add -g 4096 "$BM" b1
qemu-io -f qcow2 -c 'write 2M 1k' -c 'write 100k 8k' "$BM" >/dev/null
compare_info "nbdinfo --map=qemu:dirty-bitmap:b0" "-B b0 -r -f qcow2 $BM" \
    "--map=qemu:dirty-bitmap:b0"
compare_info "nbdinfo --map=qemu:dirty-bitmap:b1 (4k granularity)" "-B b1 -f qcow2 $BM" \
    "--map=qemu:dirty-bitmap:b1"
compare_info "nbdinfo --list with -A and -B" "-A -B b1 -f qcow2 $BM" "--list"
compare_info "nbdinfo wrong export name" "-x disk -f raw $RAW" "--size" "other"

# nbdcopy out of and into the server; contents checked with qemu-img compare.
if nbd_start "$QKIT_NBD" "$T/k.sock" -r -f qcow2 "$TOP"; then
    t_ok "nbdcopy export -> file" nbdcopy "$(nbd_uri "$T/k.sock")" "$T/copy.raw"
    t_ok "nbdcopy copy matches the image" qemu-img compare -f raw -F qcow2 "$T/copy.raw" "$TOP"
    if nbd_wait_exit $NBD_PID; then
        t_pass "server exits after its only client leaves"
    else
        t_fail "server exits after its only client leaves" "pid $NBD_PID still runs"
    fi
else
    t_fail "start qkit-nbd -r" "$(cat "$T/server.err")"
fi
qemu-img create -q -f qcow2 "$T/dst.qcow2" 4M
if nbd_start "$QKIT_NBD" "$T/k.sock" -f qcow2 "$T/dst.qcow2"; then
    t_ok "nbdcopy file -> export" nbdcopy "$RAW" "$(nbd_uri "$T/k.sock")"
    nbd_wait_exit $NBD_PID
    t_ok "nbdcopy into the export wrote the data" qemu-img compare -f raw -F qcow2 \
        "$RAW" "$T/dst.qcow2"
    out=$("$QKIT_IMG" check "$T/dst.qcow2" 2>&1 | head -1)
    t_eq "image written over nbd checks clean" "No errors were found on the image." "$out"
fi

# qemu-io and qemu-img as clients over TCP.
cp "$RAW" "$T/rw.raw"
if nbd_start_tcp "$QKIT_NBD" -t -f raw "$T/rw.raw"; then
    URL=nbd://127.0.0.1:$NBD_PORT
    out=$(qemu-io -f raw -c 'read -P 0x5a 0 64k' -c 'read -P 0 64k 64k' \
          -c 'write -P 0xab 4k 8k' -c 'read -P 0xab 4k 8k' -c 'write -z 1M 4k' \
          -c 'read -P 0 1M 4k' -c 'flush' "$URL" 2>&1 | filter_io)
    cp "$RAW" "$T/rw-ref.raw"
    want=$(qemu-io -f raw -c 'read -P 0x5a 0 64k' -c 'read -P 0 64k 64k' \
          -c 'write -P 0xab 4k 8k' -c 'read -P 0xab 4k 8k' -c 'write -z 1M 4k' \
          -c 'read -P 0 1M 4k' -c 'flush' "$T/rw-ref.raw" 2>&1 | filter_io)
    t_eq "qemu-io over nbd:// reads and writes like on the file" "$want" "$out"
    t_ok "qemu-img compare over nbd" qemu-img compare -f raw -F raw "$URL" "$T/rw-ref.raw"
    q=$(qemu-img map --output=json -f raw "$URL" 2>&1)
    nbd_stop $NBD_PID
    nbd_start_tcp qemu-nbd -t -f raw "$T/rw.raw"
    w=$(qemu-img map --output=json -f raw "nbd://127.0.0.1:$NBD_PORT" 2>&1)
    nbd_stop $NBD_PID
    t_eq "qemu-img map over nbd matches qemu-nbd's" "$w" "$q"
    t_ok "qemu-io's writes reached the file" cmp "$T/rw.raw" "$T/rw-ref.raw"
else
    t_fail "start qkit-nbd on tcp" "$(cat "$T/server.err")"
fi
if nbd_start_tcp "$QKIT_NBD" -f raw "$T/rw.raw"; then
    t_ok "qemu-img convert from nbd" qemu-img convert -f raw -O qcow2 \
        "nbd://127.0.0.1:$NBD_PORT" "$T/conv.qcow2"
    t_ok "converted image matches" qemu-img compare "$T/conv.qcow2" "$T/rw.raw"
fi

# -s: writes go to a temporary overlay; the image itself is left alone.
sum_before=$(file_sum "$TOP")
if nbd_start "$QKIT_NBD" "$T/s.sock" -t -s -f qcow2 "$TOP"; then
    out=$(qemu-io -f raw -c 'write -P 0xee 0 64k' -c 'read -P 0xee 0 64k' \
          "$(nbd_uri "$T/s.sock")" 2>&1 | filter_io)
    t_eq "-s: writes land in the overlay" "wrote 65536/65536 bytes at offset 0
read 65536/65536 bytes at offset 0" "$out"
    nbd_stop $NBD_PID
    t_eq "-s: the image is unchanged" "$sum_before" "$(file_sum "$TOP")"
fi

# -e 2: two clients at once; -t: the server stays after they leave.
if nbd_start "$QKIT_NBD" "$T/k.sock" -e 2 -t -r -f raw "$RAW"; then
    URI2=$(nbd_uri "$T/k.sock") nbd_sh -u "$(nbd_uri "$T/k.sock")" -c '
import nbd, os
h2 = nbd.NBD(); h2.connect_uri(os.environ["URI2"])
assert h.pread(4096, 0) == h2.pread(4096, 0) == b"\x5a" * 4096
h2.shutdown()' 2>"$T/err" </dev/null
    t_eq "two clients at once with -e 2" "" "$(cat "$T/err")"
    sleep 0.2
    t_ok "-t keeps serving after the last client" nbdinfo --size "$(nbd_uri "$T/k.sock")"
    nbd_stop $NBD_PID
fi

# Option errors read like qemu-nbd's (after swapping the program name).
compare_err() {
    local name=$1; shift
    local q k
    q=$(cd "$T" && timeout 10 qemu-nbd "$@" 2>&1; echo "rc=$?")
    k=$(cd "$T" && timeout 10 "$QKIT_NBD" "$@" 2>&1; echo "rc=$?")
    k=$(sed -e "s#^[^ :]*qkit-nbd:#qemu-nbd:#" -e "s#\`[^ ]*qkit-nbd --help'#\`qemu-nbd --help'#" \
        <<<"$k")
    t_eq "$name" "$q" "$k"
}
compare_err "no file name" -k "$T/e.sock"
compare_err "bad shared count" -e -1 -k "$T/e.sock" disk.raw
compare_err "bad cache mode" --cache=foo -k "$T/e.sock" disk.raw
compare_err "bad aio mode" --aio=foo -k "$T/e.sock" disk.raw
compare_err "bad discard mode" --discard=foo -k "$T/e.sock" disk.raw
compare_err "bad detect-zeroes" --detect-zeroes=foo -k "$T/e.sock" disk.raw
compare_err "detect-zeroes=unmap needs discard" --detect-zeroes=unmap -k "$T/e.sock" disk.raw
compare_err "bad offset" -o abc -k "$T/e.sock" disk.raw
compare_err "offset beyond the file" -o 8M -f raw -k "$T/e.sock" disk.raw
compare_err "missing file" -k "$T/e.sock" nonexistent.img
compare_err "unknown format" -f foo -k "$T/e.sock" disk.raw
compare_err "wrong format" -f qcow2 -k "$T/e.sock" disk.raw
compare_err "--image-opts with -f" --image-opts -f raw -k "$T/e.sock" disk.raw
compare_err "--image-opts unknown option" --image-opts -k "$T/e.sock" \
    driver=raw,file.filename=disk.raw,foo=1
compare_err "tls-creds without object" --tls-creds x -k "$T/e.sock" disk.raw
compare_err "tls-authz without tls-creds" --tls-authz x -k "$T/e.sock" disk.raw
compare_err "unknown object type" --object foo,id=x -k "$T/e.sock" disk.raw
compare_err "tls dir missing" --object tls-creds-x509,id=t,dir=/nonexistent,endpoint=server \
    --tls-creds t -k "$T/e.sock" disk.raw
compare_err "unknown option" --bogus disk.raw
compare_err "missing argument" disk.raw --pid-file
compare_err "aio=native without cache=none" --aio=native -f raw -k "$T/e.sock" disk.raw
compare_err "-B with a missing bitmap" -B nope -f qcow2 -k "$T/e.sock" bitmap.qcow2
compare_err "-l on raw" -l foo -f raw -k "$T/e.sock" disk.raw
compare_err "-l unknown snapshot" -l foo -f qcow2 -k "$T/e.sock" top.qcow2
compare_err "-L with per-device options" -L -x foo
compare_err "-d without a device" -d
compare_err "-d with a missing device" -d /dev/nbd-missing
compare_err "-c with a missing device" -c /dev/nbd-missing -f raw -k "$T/e.sock" disk.raw

# -L (list mode) as a client of either server prints what qemu-nbd -L prints.
list_case() {
    local name=$1 server=$2; shift 2
    if ! nbd_start "$server" "$T/l.sock" -t "$@"; then
        t_fail "$name" "$(cat "$T/server.err")"
        return
    fi
    t_eq "$name" "$(qemu-nbd -L -k "$T/l.sock" 2>&1)" "$("$QKIT_NBD" -L -k "$T/l.sock" 2>&1)"
    nbd_stop $NBD_PID
}
list_case "-L against qkit-nbd (-A -B -D -x)" "$QKIT_NBD" -A -B b1 -D desc -x disk -f qcow2 "$BM"
list_case "-L against qemu-nbd (-r)" qemu-nbd -r -f raw "$RAW"
compare_err "-L with nothing listening" -L -k "$T/nothing.sock"
compare_err "-L with a file name" -L -k "$T/nothing.sock" disk.raw

out=$("$QKIT_NBD" --help | sed "s#qkit-nbd#qemu-nbd#g")
t_eq "--help like qemu-nbd's" "$(qemu-nbd --help)" "$out"

# The kernel client (-c) needs the nbd module, which this machine lacks.
if [ -e /dev/nbd0 ]; then
    t_skip "qkit-nbd -c /dev/nbd0" "not run: it would take over a system device"
else
    t_skip "qkit-nbd -c /dev/nbd0" "no /dev/nbd0: the nbd kernel module is not loaded"
fi
