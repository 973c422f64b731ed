#!/usr/bin/env bash
# Regenerate tests/fuzz/corpus-nbd-client/: what real NBD servers send during the
# session fuzz-nbd-client runs (its requests, in its order). Each server is started on
# a unix socket with a 1 MiB export; a recording proxy sits in front of it and keeps
# the server-to-client bytes; the fuzz target itself is the client
# (FUZZ_NBD_CLIENT_CONNECT). Servers: qkit-nbd, Debian's qemu-nbd and nbdkit, in
# several modes. Run by hand after `scripts/fuzz.sh build`; the output is committed.
#   tests/fuzz/make-nbd-client-corpus.sh [BUILD_DIR]
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:-$TOP/build}
FUZZ=${FUZZ_OUT:-$TOP/build-fuzz}/fuzz-nbd-client
QKIT_NBD=$B/tools/qkit-nbd/qkit-nbd
out=$TOP/tests/fuzz/corpus-nbd-client
tmp=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
[ -x "$FUZZ" ] || { echo "build the target first: scripts/fuzz.sh build" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out"

qemu-img create -q -f qcow2 "$tmp/d.qcow2" 1M
qemu-io -f qcow2 -c 'write -P 0x11 0 8k' -c 'write -z 32k 16k' "$tmp/d.qcow2" >/dev/null
qemu-img create -q -f raw "$tmp/d.raw" 1M
qemu-io -f raw -c 'write -P 0x22 0 4k' "$tmp/d.raw" >/dev/null

# Forward one connection from $1 to $2, writing what the server sent to $3.
cat >"$tmp/proxy.py" <<'PY'
import os, select, socket, sys
lsn = socket.socket(socket.AF_UNIX); lsn.bind(sys.argv[1]); lsn.listen(1)
print("ready", flush=True)
cli, _ = lsn.accept()
srv = socket.socket(socket.AF_UNIX); srv.connect(sys.argv[2])
rec = open(sys.argv[3], "wb")
peer = {cli: srv, srv: cli}
live = [cli, srv]
while live:
    r, _, _ = select.select(live, [], [], 10)
    if not r:
        break
    for s in r:
        d = s.recv(65536)
        if not d:
            live.remove(s)
            try:
                peer[s].shutdown(socket.SHUT_WR)
            except OSError:
                pass
            continue
        if s is srv:
            rec.write(d)
        try:
            peer[s].sendall(d)
        except OSError:
            pass
rec.close()
PY

# record NAME SERVER-COMMAND...: serve on $tmp/s.sock, record one session as NAME.
record() {
    local name=$1
    shift
    rm -f "$tmp/s.sock" "$tmp/p.sock"
    "$@" &
    PIDS+=($!)
    for _ in $(seq 100); do [ -S "$tmp/s.sock" ] && break; sleep 0.05; done
    python3 "$tmp/proxy.py" "$tmp/p.sock" "$tmp/s.sock" "$out/$name" >"$tmp/ready" &
    local proxy=$!
    for _ in $(seq 100); do [ -s "$tmp/ready" ] && break; sleep 0.05; done
    : >"$tmp/empty"
    FUZZ_NBD_CLIENT_CONNECT=$tmp/p.sock "$FUZZ" -runs=1 "$tmp/empty" >/dev/null 2>&1 || true
    wait "$proxy" || true
    kill "${PIDS[-1]}" 2>/dev/null || true
    wait "${PIDS[-1]}" 2>/dev/null || true
    rm -f "$tmp/ready"
    echo "$name: $(stat -c %s "$out/$name") bytes"
}

record qkit-qcow2 "$QKIT_NBD" -k "$tmp/s.sock" -f qcow2 -A "$tmp/d.qcow2"
record qkit-raw-ro "$QKIT_NBD" -k "$tmp/s.sock" -f raw -r "$tmp/d.raw"
record qemu-qcow2 qemu-nbd -k "$tmp/s.sock" -f qcow2 -A "$tmp/d.qcow2"
record qemu-raw qemu-nbd -k "$tmp/s.sock" -f raw --discard=unmap "$tmp/d.raw"
record nbdkit-memory nbdkit -f -U "$tmp/s.sock" memory 1M
record nbdkit-oldstyle nbdkit -f -o -U "$tmp/s.sock" memory 1M
record nbdkit-no-sr nbdkit -f --no-sr -U "$tmp/s.sock" memory 1M
