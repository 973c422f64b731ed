#!/usr/bin/env bash
# NBD servers side by side: qkit-nbd, qemu-nbd and nbdkit's file plugin serving the
# same raw and qcow2 files over a unix socket. Sequential throughput with nbdcopy
# (export -> null, file -> export) and 4 KiB random IOPS with fio's nbd engine at
# queue depth 1 and 16. Higher is better; the ratio is qkit/qemu (above 1.00 means
# qkit was faster). nbdkit has no qcow2 decoder here, so its qcow2 column is n/a.
#   bench/nbd.sh [BUILD_DIR]
# Environment:
#   BENCH_NBD_SIZE   image size (default 512M)
#   BENCH_SECS       seconds per fio run (default 5)
#   BENCH_DIR        where the images go (default a temp dir under /var/tmp)
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
QKIT_NBD=$B/tools/qkit-nbd/qkit-nbd
SIZE=${BENCH_NBD_SIZE:-512M}
SECS=${BENCH_SECS:-5}
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/qkit-nbd-bench.XXXXXX")
PID=

cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

for t in "$QKIT_NBD" "$(command -v qemu-nbd)" "$(command -v nbdkit)" \
         "$(command -v nbdcopy)" "$(command -v fio)" "$(command -v qemu-img)"; do
    [ -x "$t" ] || { echo "bench: need $QKIT_NBD, qemu-nbd, nbdkit, nbdcopy, fio, qemu-img"
                     echo "       (scripts/deps.sh bench installs them)"; exit 1; }
done

# True while process $1 runs (a reaped-late daemon may linger as a zombie).
alive() {
    local st
    st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$st" != Z ]
}

# start SERVER IMAGE FMT: serve the image on $W/s.sock; PID is the server's.
start() {
    local server=$1 img=$2 fmt=$3
    rm -f "$W/s.sock" "$W/pid"
    case $server in
    qkit) "$QKIT_NBD" --fork --pid-file="$W/pid" -t -e 4 -k "$W/s.sock" -f "$fmt" "$img" ;;
    qemu) qemu-nbd --fork --pid-file="$W/pid" -t -e 4 -k "$W/s.sock" -f "$fmt" "$img" ;;
    nbdkit) nbdkit -P "$W/pid" -U "$W/s.sock" file file="$img" ;;
    esac || return 1
    for _ in $(seq 100); do [ -s "$W/pid" ] && [ -S "$W/s.sock" ] && break; sleep 0.05; done
    PID=$(cat "$W/pid")
}

stop() {
    [ -n "$PID" ] || return
    kill "$PID" 2>/dev/null
    for _ in $(seq 100); do alive "$PID" || break; sleep 0.05; done
    PID=
}

URI="nbd+unix:///?socket=$W/s.sock"

# MB/s of one nbdcopy run.
copy_rate() {
    local bytes=$1 s e
    shift
    s=$(date +%s%N)
    nbdcopy "$@" >/dev/null 2>&1 || { echo nan; return; }
    e=$(date +%s%N)
    awk -v b="$bytes" -v n=$((e - s)) 'BEGIN { printf "%.0f", b / 1048576 / (n / 1e9) }'
}

# IOPS of one fio run: RW (randread/randwrite) at queue depth QD.
fio_iops() {
    local rw=$1 qd=$2 key
    key=read
    [ "$rw" = randwrite ] && key=write
    fio --name=bench --ioengine=nbd --uri="$URI" --rw="$rw" --bs=4k --iodepth="$qd" \
        --runtime="$SECS" --time_based --output-format=json 2>/dev/null >"$W/fio.json" ||
        { echo nan; return; }
    # fio's nbd engine prints a line of its own before the JSON.
    python3 -c "import json,sys; t=open(sys.argv[1]).read(); t=t[t.index('{'):]
print('%.0f' % json.loads(t)['jobs'][0]['$key']['iops'])" "$W/fio.json" 2>/dev/null || echo nan
}

# Fill a raw image with incompressible data and make a qcow2 copy of it.
qemu-img create -q -f raw "$W/disk.raw" "$SIZE"
BYTES=$(stat -c %s "$W/disk.raw")
head -c "$BYTES" /dev/urandom >"$W/disk.raw"
qemu-img convert -f raw -O qcow2 "$W/disk.raw" "$W/disk.qcow2"
cp "$W/disk.raw" "$W/src.raw"

declare -A R
METRICS=("nbdcopy read MB/s" "nbdcopy write MB/s" "4k randread QD1 IOPS"
         "4k randread QD16 IOPS" "4k randwrite QD1 IOPS" "4k randwrite QD16 IOPS")
for fmt in raw qcow2; do
    for server in qkit qemu nbdkit; do
        for m in "${METRICS[@]}"; do R[$fmt,$server,$m]=n/a; done
        [ "$server" = nbdkit ] && [ "$fmt" = qcow2 ] && continue
        start $server "$W/disk.$fmt" $fmt || { echo "bench: $server failed to start" >&2; continue; }
        R[$fmt,$server,nbdcopy read MB/s]=$(copy_rate "$BYTES" "$URI" null:)
        R[$fmt,$server,nbdcopy write MB/s]=$(copy_rate "$BYTES" "$W/src.raw" "$URI")
        R[$fmt,$server,4k randread QD1 IOPS]=$(fio_iops randread 1)
        R[$fmt,$server,4k randread QD16 IOPS]=$(fio_iops randread 16)
        R[$fmt,$server,4k randwrite QD1 IOPS]=$(fio_iops randwrite 1)
        R[$fmt,$server,4k randwrite QD16 IOPS]=$(fio_iops randwrite 16)
        stop
    done
done

printf '%-6s %-24s %10s %10s %10s %10s\n' format metric qkit-nbd qemu-nbd nbdkit qkit/qemu
for fmt in raw qcow2; do
    for m in "${METRICS[@]}"; do
        k=${R[$fmt,qkit,$m]} q=${R[$fmt,qemu,$m]} n=${R[$fmt,nbdkit,$m]}
        ratio=$(awk -v k="$k" -v q="$q" 'BEGIN { if (q + 0 > 0 && k + 0 > 0)
                printf "%.2f", k / q; else print "n/a" }')
        printf '%-6s %-24s %10s %10s %10s %10s\n' "$fmt" "$m" "$k" "$q" "$n" "$ratio"
    done
done
