#!/usr/bin/env bash
# qkit-ga against qemu-ga over unix sockets, side by side in one run: guest-ping round
# trips per second (one request in flight), and guest-file-read throughput of a 256 MiB
# file (48 MiB reads, base64 on the wire). Ratio is qkit/qemu (above 1.00: qkit faster).
#   bench/qga.sh [BUILD_DIR]
# Environment: BENCH_PINGS (round trips, default 20000), BENCH_FILE_MB (default 256).
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
QKIT_GA=$B/tools/qkit-ga/qkit-ga
QEMU_GA=$(command -v qemu-ga || echo /usr/sbin/qemu-ga)
PINGS=${BENCH_PINGS:-20000}
FILE_MB=${BENCH_FILE_MB:-256}
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/qkit-bench-qga.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$W"' EXIT

for t in "$QKIT_GA" "$QEMU_GA"; do
    [ -x "$t" ] || { echo "bench: need $QKIT_GA and qemu-ga (make bench installs them)"; exit 1; }
done
head -c $((FILE_MB << 20)) /dev/urandom > "$W/data"

for tag in qkit qemu; do
    prog=$QKIT_GA; [ $tag = qemu ] && prog=$QEMU_GA
    mkdir -p "$W/$tag"
    "$prog" -m unix-listen -p "$W/$tag.sock" -t "$W/$tag" >/dev/null 2>&1 &
    pids+=($!)
done

python3 - "$W" "$PINGS" <<'PY'
import base64, hashlib, os, socket, sys, time
W, PINGS = sys.argv[1], int(sys.argv[2])

def conn(tag):
    for _ in range(200):
        if os.path.exists(f"{W}/{tag}.sock"):
            break
        time.sleep(0.02)
    s = socket.socket(socket.AF_UNIX)
    s.connect(f"{W}/{tag}.sock")
    return s, s.makefile("rb")

def call(s, f, msg):
    s.sendall(msg)
    return f.readline()

def pings(tag):
    s, f = conn(tag)
    msg = b'{"execute":"guest-ping"}\n'
    start = time.perf_counter()
    for _ in range(PINGS):
        if call(s, f, msg) != b'{"return": {}}\n':
            raise SystemExit(f"{tag}: bad ping reply")
    return PINGS / (time.perf_counter() - start)

def read_file(tag):
    import json
    s, f = conn(tag)
    h = json.loads(call(s, f, json.dumps({"execute": "guest-file-open",
                   "arguments": {"path": f"{W}/data"}}).encode()))["return"]
    digest, total = hashlib.sha256(), 0
    start = time.perf_counter()
    while True:
        r = json.loads(call(s, f, json.dumps({"execute": "guest-file-read",
                       "arguments": {"handle": h, "count": 48 << 20}}).encode()))["return"]
        data = base64.b64decode(r["buf-b64"])
        digest.update(data)
        total += len(data)
        if r["eof"] or not data:
            break
    secs = time.perf_counter() - start
    return total / secs / (1 << 20), digest.hexdigest()

want = hashlib.sha256(open(f"{W}/data", "rb").read()).hexdigest()
res = {}
for tag in ("qemu", "qkit"):
    p = pings(tag)
    mbs, d = read_file(tag)
    if d != want:
        raise SystemExit(f"{tag}: file read back wrong")
    res[tag] = (p, mbs)
print(f"{'what':<40} {'qemu-ga':>10} {'qkit-ga':>10} {'ratio':>7}")
for i, what in enumerate(("guest-ping round trips/s", "guest-file-read MiB/s (256 MiB file)")):
    q, k = res["qemu"][i], res["qkit"][i]
    print(f"{what:<40} {q:>10.1f} {k:>10.1f} {k / q:>7.2f}")
PY
