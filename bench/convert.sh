#!/usr/bin/env bash
# qkit-img convert against qemu-img convert, side by side in one run on the same
# generated data: a raw file of random data, compressible text, written zeroes and
# holes. Cases: raw->qcow2, qcow2->raw, -c (zlib), -c with zstd, and for scale the
# time of `cp --sparse=always` of the same raw file. Prints seconds for each tool and
# the ratio qkit/qemu (below 1.00: qkit was faster). Wall-clock runs: read
# differences under ~20% as noise, and expect more on a busy machine. Writing through
# the page cache costs what allocating its pages costs, which varies a lot on a VM
# that returns free memory to its host; BENCH_REPEAT=N runs each tool N times,
# alternating which goes first, and keeps each one's best.
#   bench/convert.sh [SIZE] [BUILD_DIR]      SIZE defaults to 4G
# Environment:
#   BENCH_DIR     where the images go (default a temp dir under /var/tmp)
#   BENCH_VERIFY  1 (default): check each qkit output with `qemu-img compare`
#   BENCH_REPEAT  runs per tool and case, best kept (default 1)
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${1:-4G}
B=${2:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
QKIT_IMG=$B/tools/qkit-img/qkit-img
VERIFY=${BENCH_VERIFY:-1}
REPEAT=${BENCH_REPEAT:-1}

for t in "$QKIT_IMG" "$(command -v qemu-img)" "$(command -v python3)"; do
    [ -x "$t" ] || { echo "bench: need $QKIT_IMG, qemu-img and python3"; exit 1; }
done
bytes=$(numfmt --from=iec "${SIZE%B}" 2>/dev/null) || { echo "bench: bad size '$SIZE'"; exit 1; }
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/qkit-convert-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT

# Seconds taken by a command (wall clock), or "nan" if it failed.
timed() {
    local s e
    # Write back what the previous run left dirty, so it does not slow this one down.
    sync
    s=$(date +%s%N)
    "$@" >"$W/last.out" 2>&1 || { echo "FAILED: $*" >&2; sed 's/^/  /' "$W/last.out" >&2;
                                  echo "nan"; return; }
    e=$(date +%s%N)
    awk -v n=$((e - s)) 'BEGIN { printf "%.3f", n / 1e9 }'
}

row() {
    awk -v what="$1" -v q="$2" -v k="$3" -v note="${4:-}" 'BEGIN {
        r = (q + 0 > 0 && k != "nan" && q != "nan") ? sprintf("%.2f", k / q) : "-";
        printf "%-34s %10s %10s %7s  %s\n", what, q, k, r, note }'
}

mib() { du -k "$1" | awk '{ printf "%.0f MiB", $1 / 1024 }'; }

echo "generating $SIZE of mixed data in $W ..."
# Random data comes from a 16 MiB pool sliced at random offsets (generating GiBs
# of fresh randomness would take longer than the copies being measured).
python3 - "$W/src.raw" "$bytes" <<'PY'
import os, random, sys
path, size = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
MiB = 1 << 20
pool = os.urandom(16 * MiB)
words = b"qkit block layer cluster refcount l2 table snapshot backing chain image ".split()
text = b" ".join(rnd.choice(words) for _ in range(400000))[:2 * MiB]
zeros = bytes(4 * MiB)
with open(path, "wb") as f:
    f.truncate(size)
    off = 0
    while off < size:
        kind = rnd.choices("rtzh", weights=[35, 25, 15, 25])[0]
        ln = min(rnd.choice([64 * 1024, 512 * 1024, MiB, 2 * MiB, 4 * MiB]), size - off)
        f.seek(off)
        if kind == "r":
            p = rnd.randrange(0, len(pool) - ln)
            f.write(pool[p:p + ln])
        elif kind == "t":
            p = rnd.randrange(0, len(text) - ln) if ln < len(text) else 0
            f.write((text[p:] + text)[:ln])
        elif kind == "z":
            f.write(zeros[:ln])
        off += ln
PY
qemu-img convert -f raw -O qcow2 "$W/src.raw" "$W/src.qcow2"
sync
echo "source: $SIZE virtual, raw $(mib "$W/src.raw") allocated, qcow2 $(mib "$W/src.qcow2")"
echo "cpus: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf "%-34s %10s %10s %7s  %s\n" "convert" "qemu-img" "qkit-img" "ratio" "output (qemu / qkit)"

# The smaller of two times, "nan" counting as the larger.
best() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || (b != "nan" && b + 0 < a + 0)) print b;
                                     else print a }'
}

# One case: the same convert arguments for both tools, source last before the target.
# Each tool writes into a page cache free of the other's output: qemu-img's output is
# measured and removed before qkit-img runs (and the other way round on even
# repeats), and qkit-img's output is checked against the source itself.
case_both() {
    local what=$1; shift
    local q=nan k=nan t note= qsize=- ksize=- srcfmt=raw src=${!#} prev= r tool
    for a in "$@"; do [ "$prev" = -f ] && srcfmt=$a; prev=$a; done
    for ((r = 1; r <= REPEAT; r++)); do
        for tool in $([ $((r % 2)) = 1 ] && echo "qemu qkit" || echo "qkit qemu"); do
            rm -f "$W/out.q" "$W/out.k"
            if [ $tool = qemu ]; then
                t=$(timed qemu-img convert "$@" "$W/out.q")
                q=$(best "$q" "$t")
                qsize=$(mib "$W/out.q")
            else
                t=$(timed "$QKIT_IMG" convert "$@" "$W/out.k")
                k=$(best "$k" "$t")
                ksize=$(mib "$W/out.k")
                if [ "$VERIFY" = 1 ] && [ "$t" != nan ] && [ $r = 1 ] &&
                   ! qemu-img compare -q -f "$srcfmt" "$src" "$W/out.k"; then
                    note="  OUTPUT DIFFERS"
                fi
            fi
        done
    done
    row "$what" "$q" "$k" "$qsize / $ksize$note"
    rm -f "$W/out.q" "$W/out.k"
}

case_both "raw -> qcow2" -f raw -O qcow2 "$W/src.raw"
case_both "qcow2 -> raw" -f qcow2 -O raw "$W/src.qcow2"
case_both "raw -> qcow2 -c (zlib)" -f raw -O qcow2 -c "$W/src.raw"
case_both "raw -> qcow2 -c (zstd)" -f raw -O qcow2 -c -o compression_type=zstd "$W/src.raw"
case_both "raw -> raw" -f raw -O raw "$W/src.raw"

c=nan
for ((r = 1; r <= REPEAT; r++)); do
    rm -f "$W/out.cp"
    c=$(best "$c" "$(timed cp --sparse=always "$W/src.raw" "$W/out.cp")")
done
echo
echo "cp --sparse=always of the raw file: ${c} s ($(mib "$W/out.cp") allocated)"
