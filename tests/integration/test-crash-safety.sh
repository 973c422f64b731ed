#!/usr/bin/env bash
# Crash safety of qcow2 writes: a writer (tests/helpers/crash-writer.c) writes random
# patterns into an image through the block layer, logging each write and each flush
# that returned, and is killed with SIGKILL at a random moment. Then, every round:
#  - every flushed write reads back (QEMU's qemu-img convert is the reader; the whole
#    disk is compared with what the log says, bytes of unflushed writes excepted), and
#    qkit-io reads the last flushed writes back with read -P;
#  - `qemu-img check` finds at worst leaked clusters, and `qkit-img check` agrees;
#  - `qkit-img check -r leaks` makes it clean (`qemu-img check` exits 0) without
#    changing what the disk reads.
# The image carries over from round to round; rounds alternate cache=writeback/none.
# QKIT_CRASH_ROUNDS (default 40) and QKIT_CRASH_SECONDS (default 60) bound the run.
source "$(dirname "$0")/lib.sh"
WRITER=${QKIT_CRASH_WRITER:-$BUILD/tests/helpers/crash-writer}
ROUNDS=${QKIT_CRASH_ROUNDS:-40}
BUDGET=${QKIT_CRASH_SECONDS:-60}
SIZE=$((64 * 1024 * 1024))

t_need "crash-safety: tools built" "$WRITER" "$QKIT_IMG" "$QKIT_IO" || exit 0
command -v qemu-img >/dev/null || { t_fail "crash-safety: qemu-img installed"; exit 0; }

img=$T/crash.qcow2
qemu-img create -q -f qcow2 "$img" "$SIZE"
# What the disk reads before round 1: zeroes.
truncate -s "$SIZE" "$T/expect.raw"

# Compare the disk ($2, raw) with the previous contents ($1) plus the writes in log $3.
# Bytes covered by writes after the last flush may hold old or new data and are not
# compared. Prints problems and, on success, "ok" and up to 3 "read -P" commands
# for flushed writes whose range nothing later touched.
verify() {
    python3 - "$@" <<'PY'
import sys
prev, actual_path, log = sys.argv[1:4]
exp = bytearray(open(prev, 'rb').read())
act = open(actual_path, 'rb').read()
writes, flushed = [], -1
for line in open(log):
    f = line.split()
    if not f:
        continue
    if f[0] == 'W' and len(f) == 6:
        writes.append((int(f[1]), f[2], int(f[3]), int(f[4]), int(f[5])))
    elif f[0] == 'F' and len(f) == 2:
        flushed = int(f[1])
if len(act) != len(exp):
    print(f"disk size {len(act)}, expected {len(exp)}"); sys.exit(0)
for n, kind, off, ln, pat in writes:
    if n <= flushed:
        exp[off:off + ln] = bytes([pat]) * ln
for n, kind, off, ln, pat in writes:
    if n > flushed:
        exp[off:off + ln] = act[off:off + ln]
if exp != act:
    bad = next(i for i in range(len(act)) if exp[i] != act[i])
    last = [w for w in writes if w[0] <= flushed and w[2] <= bad < w[2] + w[3]]
    who = f"write {last[-1][0]} ({last[-1][1]} at {last[-1][2]}+{last[-1][3]})" if last \
        else "no write (should be unchanged)"
    print(f"byte {bad}: read {act[bad]:#x}, expected {exp[bad]:#x}; last flushed: {who}")
    sys.exit(0)
print(f"ok {len(writes)} writes, {flushed + 1} flushed")
# Flushed writes whose bytes no later write (flushed or not) touched: read them back.
shown = 0
for i in range(len(writes) - 1, -1, -1):
    n, kind, off, ln, pat = writes[i]
    if n > flushed or shown >= 3:
        continue
    if all(w[2] + w[3] <= off or w[2] >= off + ln for w in writes[i + 1:]):
        print(f"read -P {pat} {off} {ln}")
        shown += 1
PY
}

start=$SECONDS
round=0 failed=0
while [ $round -lt "$ROUNDS" ] && [ $((SECONDS - start)) -lt "$BUDGET" ]; do
    round=$((round + 1))
    cache=writeback; [ $((round % 2)) -eq 0 ] && cache=none
    name="crash-safety round $round ($cache)"
    problems=() res=""

    # Kill the writer 50..500 ms after it starts.
    "$WRITER" "$img" "$T/log" "$round" "$cache" 2>"$T/writer.err" &
    pid=$!
    sleep "0.$(printf '%03d' $((50 + RANDOM % 450)))"
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null
    else
        wait "$pid"; rc=$?
        problems+=("writer stopped by itself (exit $rc) before the kill:"
                   "$(head -5 "$T/writer.err")")
    fi

    # 1. Flushed writes read back, through QEMU and through qkit-io.
    if ! out=$(qemu-img convert -U -f qcow2 -O raw "$img" "$T/actual.raw" 2>&1); then
        problems+=("qemu-img convert could not read the image:" "$out")
    else
        res=$(verify "$T/expect.raw" "$T/actual.raw" "$T/log")
        if [[ $res != ok* ]]; then
            problems+=("data read by qemu-img after the crash: $res")
        fi
        reads=()
        while IFS= read -r r; do reads+=(-c "$r"); done < <(grep '^read -P' <<<"$res")
        if [ ${#reads[@]} -gt 0 ]; then
            out=$(timeout 30 "$QKIT_IO" -r -f qcow2 "${reads[@]}" "$img" 2>&1); rc=$?
            if [ $rc -ne 0 ] || grep -qiE 'pattern verification failed|failed|error' <<<"$out"
            then
                problems+=("qkit-io read -P of flushed writes (exit $rc):" "$out")
            fi
        fi
    fi

    # 2. QEMU finds at worst leaks; 3. qkit-img repairs them; the data stays the same.
    out=$(qemu-img check -f qcow2 "$img" 2>&1); rc=$?
    state="check clean"; [ $rc -eq 3 ] && state="leaks repaired"
    if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then
        problems+=("qemu-img check after the crash: exit $rc (0 or 3=leaks expected)" "$out")
    fi
    cout=$(timeout 60 "$QKIT_IMG" check -f qcow2 "$img" 2>&1); crc=$?
    if [ $crc -ne $rc ]; then
        problems+=("qkit-img check exits $crc, qemu-img check $rc" "qkit-img: $cout"
                   "qemu-img: $out")
    fi
    rout=$(timeout 60 "$QKIT_IMG" check -r leaks -f qcow2 "$img" 2>&1); rrc=$?
    out=$(qemu-img check -f qcow2 "$img" 2>&1); rc=$?
    if [ $rc -ne 0 ]; then
        problems+=("qemu-img check after qkit-img check -r leaks (exit $rrc): exit $rc"
                   "qkit-img: $rout" "qemu-img: $out")
    elif [ $rrc -ne 0 ]; then
        problems+=("qkit-img check -r leaks: exit $rrc" "$rout")
    fi
    if qemu-img convert -U -f qcow2 -O raw "$img" "$T/repaired.raw" 2>/dev/null &&
       ! cmp -s "$T/actual.raw" "$T/repaired.raw"; then
        problems+=("qkit-img check -r leaks changed the disk contents")
    fi

    if [ ${#problems[@]} -eq 0 ]; then
        t_pass "$name: $(grep -o '^ok.*' <<<"$res"), $state"
        mv "$T/actual.raw" "$T/expect.raw"
    else
        t_fail "$name" "${problems[@]}" "writer log tail:" "$(tail -4 "$T/log")"
        failed=$((failed + 1))
        # Start over from a fresh image so one failure does not cascade.
        rm -f "$img"; qemu-img create -q -f qcow2 "$img" "$SIZE"
        rm -f "$T/expect.raw"; truncate -s "$SIZE" "$T/expect.raw"
        [ $failed -ge 5 ] && { t_fail "crash-safety: stopped after 5 failed rounds"; break; }
    fi
done
[ $round -gt 0 ] || t_fail "crash-safety: no round ran"
