#!/usr/bin/env bash
# Damaged and hostile qcow2 images given to `qkit-img info`, `qkit-img check` and a
# read-only `qkit-io -c 'read 0 64k'`. For each image and tool, two checks:
#  - "safe": no crash (signal, exit >= 124) or hang, no sanitizer report (the ASan+UBSan
#    build runs too), the file is byte-for-byte unchanged, and when QEMU 7.2 refuses
#    the image qkit refuses it too, with one "prog: message" line;
#  - "as qemu": the same exit status as qemu-img/qemu-io, and where QEMU prints an open
#    error, the same text (program names swapped).
source "$(dirname "$0")/lib.sh"
T_TIMEOUT=20

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    t_fail "bad-input: reference tools" "qemu-img/qemu-io not installed (scripts/deps.sh test)"
    exit 0
fi

# The pristine image every damaged one starts from: 1 MiB, 64 KiB clusters, 128 KiB
# of data, written by QEMU.
mkdir -p "$T/src"
qemu-img create -q -f qcow2 "$T/base.qcow2" 1M
qemu-io -f qcow2 -c 'write -P 0xab 0 128k' "$T/base.qcow2" >/dev/null

# Write one damaged copy per case into $T/src. Header field offsets are those of the
# qcow2 spec (docs: specs/qcow2.txt): 4 version, 8 backing_file_offset, 16 its size,
# 20 cluster_bits, 24 size, 32 crypt_method, 36 l1_size, 40 l1_table_offset,
# 48 refcount_table_offset, 56 refcount_table_clusters, 60 nb_snapshots,
# 64 snapshots_offset, 72 incompatible_features, 96 refcount_order, 100 header_length.
python3 - "$T/base.qcow2" "$T/src" <<'PY'
import os, random, struct, sys
base, out = sys.argv[1], sys.argv[2]
src = open(base, 'rb').read()
def put(name, data):
    open(os.path.join(out, name + '.qcow2'), 'wb').write(data)
def patch(*fields):
    b = bytearray(src)
    for off, fmt, val in fields:
        struct.pack_into('>' + fmt, b, off, val)
    return bytes(b)
l1 = struct.unpack_from('>Q', src, 40)[0]
TiB = 1 << 40
put('truncated-header', src[:50])
put('wrong-magic', patch((0, 'I', 0x51464900)))
put('version-1', patch((4, 'I', 1)))
put('version-4', patch((4, 'I', 4)))
put('cluster-bits-30', patch((20, 'I', 30)))
put('cluster-bits-8', patch((20, 'I', 8)))
put('huge-l1-size', patch((36, 'I', 0x7fffffff)))
put('l1-past-eof', patch((40, 'Q', TiB)))
put('l1-unaligned', patch((40, 'Q', 0x30001)))
put('l1-over-header', patch((40, 'Q', 0)))
put('refcount-table-past-eof', patch((48, 'Q', TiB)))
put('refcount-table-unaligned', patch((48, 'Q', 0x10008)))
put('refcount-table-over-header', patch((48, 'Q', 0)))
put('refcount-table-huge', patch((56, 'I', 0x7fffffff)))
put('unknown-incompat-feature', patch((72, 'Q', 1 << 10)))
put('absurd-virtual-size', patch((24, 'Q', (1 << 63) - 512)))
put('refcount-order-7', patch((96, 'I', 7)))
put('header-length-short', patch((100, 'I', 50)))
put('crypt-method-9', patch((32, 'I', 9)))
put('backing-name-past-eof', patch((8, 'Q', TiB), (16, 'I', 10)))
put('backing-name-too-long', patch((8, 'Q', 0x200), (16, 'I', 5000)))
put('snapshots-past-eof', patch((60, 'I', 1000), (64, 'Q', TiB)))
put('snapshots-unaligned', patch((60, 'I', 1), (64, 'Q', 0x10001)))
put('l2-table-past-eof', patch((l1, 'Q', (1 << 63) | TiB)))
put('l2-table-unaligned', patch((l1, 'Q', (1 << 63) | 0x50200)))
random.seed(20240601)
put('random-bytes', bytes(random.getrandbits(8) for _ in range(65536)))
put('empty-file', b'')
PY

# A backing chain that loops: backing-loop.qcow2 -> loop-b.qcow2 -> backing-loop.qcow2.
qemu-img create -q -f qcow2 -u -b loop-b.qcow2 -F qcow2 "$T/src/backing-loop.qcow2" 1M
qemu-img create -q -f qcow2 "$T/src/loop-b.qcow2" 1M
qemu-img rebase -q -u -b backing-loop.qcow2 -F qcow2 "$T/src/loop-b.qcow2"

# Run one tool; sets OUT (stdout+stderr) and RC.
run_tool() {
    OUT=$(timeout "$T_TIMEOUT" "$@" 2>&1); RC=$?
}

# The command line for TOOL (img-info, img-check, io-read) with program PROG on FILE.
cmd_for() {
    local tool=$1 prog=$2 file=$3
    case $tool in
    img-info)  echo "$prog info -f qcow2 $file" ;;
    img-check) echo "$prog check -f qcow2 $file" ;;
    io-read)   echo "$prog -r -f qcow2 -c 'read 0 64k' $file" ;;
    esac
}
exec_tool() {
    local tool=$1 prog=$2 file=$3
    case $tool in
    img-info)  run_tool "$prog" info -f qcow2 "$file" ;;
    img-check) run_tool "$prog" check -f qcow2 "$file" ;;
    io-read)   run_tool "$prog" -r -f qcow2 -c 'read 0 64k' "$file" ;;
    esac
}

# Problems with one run of a qkit tool, one per line; empty when it behaved.
safety_problems() {
    local file=$1 sum_before=$2 qemu_rc=$3 label=$4 prog=$5
    if [ "$RC" -eq 124 ]; then
        echo "$label: hung (killed after ${T_TIMEOUT}s)"
    elif [ "$RC" -ge 124 ]; then
        echo "$label: crashed or did not run (exit $RC)"
    fi
    if t_has_sanitizer_report "$OUT"; then
        echo "$label: sanitizer report"
    fi
    if [ "$(file_sum "$file")" != "$sum_before" ]; then
        echo "$label: modified the image"
    fi
    if [ "$qemu_rc" -ne 0 ] && [ "$RC" -eq 0 ]; then
        echo "$label: accepted an image that QEMU refuses (exit 0)"
    fi
    # Where QEMU reports "prog: message" (it could not open the image), qkit must too,
    # on one line; otherwise (check's report, a failed read) any explanation will do.
    if [ "$RC" -ne 0 ] && [ "$RC" -lt 124 ]; then
        if grep -qE '^qemu-(img|io): ' <<<"$QEMU_OUT"; then
            if ! grep -qF -e "$prog: " -e "$(basename "$prog"): " <<<"$OUT"; then
                echo "$label: no 'prog: message' error line"
            elif [ "$(grep -c . <<<"$QEMU_OUT")" -eq 1 ] && [ "$(grep -c . <<<"$OUT")" -ne 1 ] &&
                 ! t_has_sanitizer_report "$OUT"; then
                echo "$label: error is not one line"
            fi
        elif [ -z "$OUT" ]; then
            echo "$label: failed without a message"
        fi
    fi
}

for src in "$T"/src/*.qcow2; do
    case=$(basename "$src" .qcow2)
    [ "$case" = loop-b ] && continue
    for tool in img-info img-check io-read; do
        name="bad-input $case: $tool"
        if [[ $tool == img-* ]]; then qkit=$QKIT_IMG qasan=$QKIT_IMG_ASAN qemu=qemu-img
        else qkit=$QKIT_IO qasan=$QKIT_IO_ASAN qemu=qemu-io; fi
        if [ ! -x "$qkit" ]; then
            t_fail "$name safe" "not built: $qkit"
            t_fail "$name as qemu" "not built: $qkit"
            continue
        fi
        # Every tool gets a fresh copy under the same name, so messages compare.
        rm -rf "$T/run"; mkdir -p "$T/run"; cp "$T"/src/*.qcow2 "$T/run/"
        file=$T/run/$case.qcow2
        sum=$(file_sum "$file")

        # QEMU 7.2 spends minutes opening a looping chain until it runs out of file
        # descriptors; it does fail in the end, so that is what qkit must do quickly.
        if [ "$case" = backing-loop ] && [ "$tool" != img-info ]; then
            RC=1 OUT="$qemu: Could not open (QEMU not run: it takes minutes here)"
        else
            exec_tool "$tool" "$qemu" "$file"
        fi
        qemu_rc=$RC qemu_out=$(filter_io <<<"$OUT") QEMU_OUT=$OUT
        cp "$src" "$file"

        exec_tool "$tool" "$qkit" "$file"
        problems=$(safety_problems "$file" "$sum" "$qemu_rc" "plain build" "$qkit")
        qkit_rc=$RC qkit_out=$OUT
        if [ -x "$qasan" ]; then
            cp "$src" "$file"
            exec_tool "$tool" "$qasan" "$file"
            asan_problems=$(safety_problems "$file" "$sum" "$qemu_rc" "asan build" "$qasan")
            if [ -n "$asan_problems" ]; then
                problems+=$'\n'"$asan_problems"$'\n'"asan build output:"$'\n'
                problems+=$(grep -v '^ *#[2-9][0-9]* ' <<<"$OUT" | grep . | head -12)
            fi
        else
            problems+=$'\n'"asan build: not built: $qasan"
        fi
        problems=$(grep . <<<"$problems")
        if [ -z "$problems" ]; then
            t_pass "$name safe"
        else
            t_fail "$name safe" "$problems" "plain build:" \
                "\$ $(cmd_for "$tool" "$qkit" "$file")" "$qkit_out" "(exit $qkit_rc)"
        fi

        # The same outcome as QEMU: exit status always; the message when QEMU could not
        # open the image (QEMU's text for a backing loop is a fd-exhaustion artefact,
        # so only the status is compared there).
        qkit_cmp=$(swap_names <<<"$qkit_out" | filter_io)
        if [[ $QEMU_OUT == *"QEMU not run"* ]]; then
            t_skip "$name as qemu" "$qemu takes minutes on a looping backing chain"
        elif [ "$qkit_rc" -ne "$qemu_rc" ]; then
            t_fail "$name as qemu" "exit $qkit_rc, $qemu exits $qemu_rc" \
                "qkit: $(head -3 <<<"$qkit_cmp")" "qemu: $(head -3 <<<"$qemu_out")"
        elif [ "$qemu_rc" -eq 1 ] && [ "$case" != backing-loop ] &&
             grep -qE "^qemu-(img|io): (Could not open|can't open device)" <<<"$qemu_out"; then
            t_eq "$name as qemu" "$qemu_out" "$qkit_cmp"
        else
            t_pass "$name as qemu"
        fi
    done
done

# A raw file named on the command line without -f is probed as raw: random bytes are
# valid raw data, so this must work (and not be mistaken for qcow2).
if [ -x "$QKIT_IMG" ]; then
    cp "$T/src/random-bytes.qcow2" "$T/random.img"
    run_tool "$QKIT_IMG" info "$T/random.img"
    t_eq "bad-input random-bytes probed as raw" "file format: raw" \
        "$(grep '^file format:' <<<"$OUT")"
else
    t_fail "bad-input random-bytes probed as raw" "not built: $QKIT_IMG"
fi
