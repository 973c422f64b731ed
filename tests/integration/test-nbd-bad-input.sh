#!/usr/bin/env bash
# qkit-nbd under hostile and heavy use: a raw-socket client sends garbage, truncated,
# oversize and unknown messages (nbd_badclient.py; answers compared with qemu-nbd's,
# and a good client must be served after each); then 16 clients write disjoint
# regions at once and read them back, and the image must check clean.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd-helpers.sh"

t_need "qkit-nbd built" "$QKIT_NBD" "$QKIT_IMG" || exit 0
command -v qemu-nbd >/dev/null || { t_skip "nbd bad input" "qemu-nbd not installed"; exit 0; }
BAD=$(dirname "$0")/nbd_badclient.py

qemu-img create -q -f raw "$T/disk.raw" 1M
# The servers run in the foreground here so that what they print can be compared.
for prog in qemu-nbd "$QKIT_NBD"; do
    tag=${prog##*/}
    rm -f "$T/$tag.sock"
    "$prog" -t -e 0 -k "$T/$tag.sock" -f raw "$T/disk.raw" 2>"$T/$tag.err" &
    pid=$!
    NBD_PIDS+=($pid)
    for _ in $(seq 100); do [ -S "$T/$tag.sock" ] && break; sleep 0.05; done
    timeout 120 python3 "$BAD" "$T/$tag.sock" >"$T/$tag.out" 2>&1
    echo "exit $?" >>"$T/$tag.out"
    if nbd_alive $pid; then echo "server alive" >>"$T/$tag.out"; fi
    nbd_stop $pid
    wait $pid 2>/dev/null
done
t_eq "hostile client: same answers as qemu-nbd, server keeps serving" \
    "$(cat "$T/qemu-nbd.out")" "$(cat "$T/qkit-nbd.out")"
t_eq "hostile client run completed" "server alive" "$(tail -1 "$T/qkit-nbd.out")"
t_eq "hostile client: the server reports each broken connection as qemu-nbd does" \
    "$(cat "$T/qemu-nbd.err")" "$(sed 's/^qkit-nbd:/qemu-nbd:/' "$T/qkit-nbd.err")"

# Load: 16 clients at once, each writing its own MiB in shuffled 64 KiB pieces.
if ! "$NBD_PY" -c 'import nbd' 2>/dev/null; then
    t_skip "16 concurrent clients" "python3-libnbd not installed"
    exit 0
fi
CLIENTS=16
IMG=$T/load.qcow2
qemu-img create -q -f qcow2 "$IMG" $((CLIENTS))M
cat >"$T/load.py" <<'EOF2'
import nbd, random, sys
uri, idx = sys.argv[1], int(sys.argv[2])
h = nbd.NBD()
h.connect_uri(uri)
base, piece = idx << 20, 65536
order = list(range(16))
random.shuffle(order)
for i in order:
    h.pwrite(bytes([idx + 1]) * piece, base + i * piece,
             flags=nbd.CMD_FLAG_FUA if i % 4 == 0 else 0)
h.flush()
assert h.pread(1 << 20, base) == bytes([idx + 1]) * (1 << 20), "readback"
h.shutdown()
EOF2
# -t: a client that finishes early must not end the server while others connect.
if nbd_start "$QKIT_NBD" "$T/load.sock" -t -e $CLIENTS -f qcow2 "$IMG"; then
    pids=()
    for i in $(seq 0 $((CLIENTS - 1))); do
        timeout 120 "$NBD_PY" "$T/load.py" "$(nbd_uri "$T/load.sock")" $i \
            >"$T/load.$i.log" 2>&1 &
        pids+=($!)
    done
    fails=0
    for p in "${pids[@]}"; do wait $p || fails=$((fails + 1)); done
    t_eq "16 concurrent clients wrote and read back their regions" 0 "$fails"
    if nbd_alive $NBD_PID; then
        t_pass "server still runs after the load"
    else
        t_fail "server still runs after the load"
    fi
    nbd_stop $NBD_PID
    out=$("$QKIT_IMG" check "$IMG" 2>&1 | head -1)
    t_eq "image checks clean after the load" "No errors were found on the image." "$out"
    t_ok "qemu-img check agrees" qemu-img check -q "$IMG"
    args=()
    for i in $(seq 0 $((CLIENTS - 1))); do args+=(-c "read -P $((i + 1)) ${i}M 1M"); done
    out=$(qemu-io -f qcow2 "${args[@]}" "$IMG" 2>&1 | grep -c "^read 1048576/1048576 bytes")
    t_eq "every region holds its client's data" $CLIENTS "$out"
else
    t_fail "start qkit-nbd for the load" "$(cat "$T/server.err")"
fi
