#!/bin/bash
# qcow2 check and repair against qemu-img 7.2: deliberately damaged images (leaks,
# refcounts too low, OFLAG_COPIED errors, tables past EOF, broken refcount tables, ...)
# must give the same report lines, summary and exit code from both tools, with and
# without -r leaks / -r all; a repaired image must then check as qemu-img's repair
# does, hold the same metadata and read the same.
source "$(dirname "$0")/lib.sh"

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    t_skip "qcow2-check" "qemu-img/qemu-io not installed"
    exit 0
fi
if ! command -v python3 >/dev/null; then
    t_skip "qcow2-check" "python3 not installed (needed to damage images)"
    exit 0
fi
t_need "qcow2-check: tools built" "$QKIT_IMG" || exit 0

TOOL="python3 -S $TOP/tests/integration/qcow2_tool.py"
cd "$T"

# mk NAME [create options]: a 64M image with data in clusters 5-7 of a fresh layout.
mk() {
    rm -f "$1"
    qemu-img create -q -f qcow2 ${2:+-o "$2"} "$1" 64M
    qemu-io -c 'write -P 1 0 128k' -c 'write -P 2 1M 64k' "$1" >/dev/null
}

# run_check TOOL IMG OUTPREFIX ARGS...: check, stdout+rc to .out, stderr to .err.
run_check() {
    local tool=$1 img=$2 pre=$3; shift 3
    "$tool" check "$@" "$img" >"$pre.out" 2>"$pre.err"
    echo "rc=$?" >>"$pre.out"
    sed -i -e "s#^[^ :]*qkit-img:#qemu-img:#" "$pre.err"
}

# compare_check NAME IMG: plain check, -r leaks and -r all, qkit against qemu-img.
# check_both NAME IMG MODE: `check` (with -r MODE unless MODE is none) by each tool on
# its own copy of IMG (q.qcow2, k.qcow2); the same report and the same messages.
check_both() {
    local name=$1 img=$2 mode=$3 args=()
    [ "$mode" != none ] && args=(-r "$mode")
    cp "$img" q.qcow2
    cp "$img" k.qcow2
    run_check qemu-img q.qcow2 q "${args[@]}"
    run_check "$QKIT_IMG" k.qcow2 k "${args[@]}"
    t_eq "$name ($mode): report" "$(cat q.out)" "$(cat k.out)"
    t_eq "$name ($mode): messages" "$(cat q.err)" "$(cat k.err)"
}
compare_check() {
    local name=$1 img=$2 mode
    for mode in none leaks all; do
        check_both "$name" "$img" "$mode"
        if [ "$mode" = none ]; then
            t_eq "$name: check without -r leaves the image alone" \
                "$(file_sum "$img")" "$(file_sum k.qcow2)"
            continue
        fi
        # After repair: the same verdict from qemu-img and the same metadata.
        local qa ka
        qa=$(qemu-img check q.qcow2 2>&1; echo "rc=$?")
        ka=$(qemu-img check k.qcow2 2>&1; echo "rc=$?")
        t_eq "$name ($mode): qemu-img check after repair" "$qa" "$ka"
        t_eq "$name ($mode): metadata after repair" "$($TOOL q.qcow2 dump)" \
            "$($TOOL k.qcow2 dump)"
        # Data must read the same wherever qemu-img can read its own repaired image.
        if qemu-img compare -q q.qcow2 q.qcow2 2>/dev/null; then
            local cmp_out
            if cmp_out=$(qemu-img compare q.qcow2 k.qcow2 2>&1); then
                t_pass "$name ($mode): data after repair"
            else
                t_fail "$name ($mode): data after repair" "$cmp_out"
            fi
        fi
    done
}

# A clean image, and one with compressed clusters, internal snapshots and zero clusters.
mk clean.qcow2
compare_check "clean image" clean.qcow2

mk rich.qcow2
qemu-io -c 'write -c -P 3 2M 64k' -c 'write -z 4M 128k' rich.qcow2 >/dev/null
qemu-img snapshot -c s1 rich.qcow2
qemu-io -c 'write -P 4 0 64k' rich.qcow2 >/dev/null
qemu-img snapshot -c s2 rich.qcow2
compare_check "compressed, zero clusters and snapshots" rich.qcow2

# Leak: a stored refcount above the references (data cluster 4 is the L2 table).
mk leak.qcow2
$TOOL leak.qcow2 rc 4 2
$TOOL leak.qcow2 rc 7 2
compare_check "leaked references" leak.qcow2

# Leaked cluster: an L2 entry dropped, its cluster still counted.
mk leak2.qcow2
$TOOL leak2.qcow2 l2 0 1 0
compare_check "leaked cluster" leak2.qcow2

# Corruption: a used data cluster with refcount 0 (needs the refcount rebuild).
mk zero-rc.qcow2
$TOOL zero-rc.qcow2 rc 5 0
compare_check "refcount 0 on a used cluster" zero-rc.qcow2

# Corruption: refcount 1 on a cluster shared by a snapshot (fixable in place).
mk low-rc.qcow2
qemu-img snapshot -c s low-rc.qcow2
$TOOL low-rc.qcow2 rc 6 1
compare_check "refcount too low" low-rc.qcow2

# OFLAG_COPIED cleared on the L1 entry and on a data cluster.
mk copied.qcow2
$TOOL copied.qcow2 l2 0 0 0x50000
$TOOL copied.qcow2 l1 0 0x40000
compare_check "OFLAG_COPIED missing" copied.qcow2

# OFLAG_COPIED set on a compressed cluster.
mk cflag.qcow2
qemu-io -c 'write -c -P 3 2M 64k' cflag.qcow2 >/dev/null
entry=$($TOOL cflag.qcow2 l2 0 32)
$TOOL cflag.qcow2 l2 0 32 "$(python3 -c "print(hex($entry | 1 << 63))")"
compare_check "OFLAG_COPIED on a compressed cluster" cflag.qcow2

# Data cluster past the end of the file.
mk past-eof.qcow2
$TOOL past-eof.qcow2 l2 0 1 0x8000000010000000
compare_check "data cluster past EOF" past-eof.qcow2

# L2 table past the end of the file.
mk l2-eof.qcow2
$TOOL l2-eof.qcow2 l1 1 0x80000000000f0000
compare_check "L2 table past EOF" l2-eof.qcow2

# Reserved bits in L1 and L2 entries.
mk reserved.qcow2
$TOOL reserved.qcow2 l2 0 0 0x8000000000050002
$TOOL reserved.qcow2 l1 0 0x8100000000040000
compare_check "reserved bits set" reserved.qcow2

# Unaligned data cluster, unaligned preallocated zero cluster, unaligned L2 table.
mk unal-data.qcow2
$TOOL unal-data.qcow2 l2 0 0 0x8000000000050200
compare_check "unaligned data cluster" unal-data.qcow2
mk unal-zero.qcow2
$TOOL unal-zero.qcow2 l2 0 0 0x8000000000050201
compare_check "unaligned preallocated zero cluster" unal-zero.qcow2
mk unal-l2.qcow2
$TOOL unal-l2.qcow2 l1 0 0x8000000000040200
compare_check "unaligned L2 table" unal-l2.qcow2

# Refcount table entry pointing outside the image (repaired by growing the file).
mk reft-out.qcow2
$TOOL reft-out.qcow2 reft 1 0x100000
compare_check "refcount block outside the image" reft-out.qcow2

# Refcount table emptied: every refcount reads 0, everything is rebuilt.
mk reft-zero.qcow2
$TOOL reft-zero.qcow2 reft 0 0
compare_check "refcount table entry cleared" reft-zero.qcow2

# Several refcount blocks (4k clusters): one block lost and a cluster's count zeroed;
# the rebuild must place blocks and table exactly where qemu-img does.
rm -f multi.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k multi.qcow2 64M
qemu-io -c 'write -P 1 0 6M' -c 'write -P 2 20M 3M' -c 'write -c -P 4 40M 256k' \
    multi.qcow2 >/dev/null
$TOOL multi.qcow2 reft 1 0
$TOOL multi.qcow2 rc 3 0
compare_check "several refcount blocks, one lost" multi.qcow2

# Refcount block whose own refcount is wrong.
mk rb-rc.qcow2
$TOOL rb-rc.qcow2 rc 2 2
compare_check "refcount block refcount 2" rb-rc.qcow2

# Refcount table entry with reserved bits: QEMU's rebuild refuses to overwrite it.
mk reft-res.qcow2
$TOOL reft-res.qcow2 reft 0 0x20001
compare_check "refcount table entry with reserved bits" reft-res.qcow2

# Other refcount widths.
for bits in 1 8 64; do
    mk "w$bits.qcow2" "refcount_bits=$bits"
    $TOOL "w$bits.qcow2" l2 0 1 0
    $TOOL "w$bits.qcow2" l2 0 16 0x8000000000090000
    compare_check "refcount_bits=$bits with a leak and a cluster past EOF" "w$bits.qcow2"
done

# Extended L2 entries with contradicting subcluster bitmaps.
mk ext.qcow2 extended_l2=on
python3 - ext.qcow2 <<'EOF'
import struct, sys
f = open(sys.argv[1], 'r+b'); d = f.read()
l1 = struct.unpack('>Q', d[40:48])[0]
l2 = struct.unpack('>Q', d[l1:l1 + 8])[0] & 0x00fffffffffffe00
f.seek(l2 + 8); f.write(struct.pack('>Q', 0xffffffff | 1 << 32))  # alloc and zero
f.seek(l2 + 16 * 8 + 8); f.write(struct.pack('>Q', 3))            # unallocated, bits set
EOF
compare_check "extended L2 with bad bitmaps" ext.qcow2

# A dirty image with lazy refcounts (writer killed): check reports, repair rebuilds.
rm -f dirty.qcow2
qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 64M
bash -c "qemu-io -c 'write -P 1 0 128k' -c 'write -P 2 1M 64k' -c abort dirty.qcow2; true" \
    >/dev/null 2>&1
compare_check "dirty lazy-refcounts image" dirty.qcow2

# Opening the dirty image read-write repairs it first and clears the dirty bit.
cp dirty.qcow2 q.qcow2
cp dirty.qcow2 k.qcow2
qa=$(qemu-img amend -o lazy_refcounts=off q.qcow2 2>&1; echo "rc=$?")
ka=$("$QKIT_IMG" amend -o lazy_refcounts=off k.qcow2 2>&1 | swap_names; echo "rc=$?")
t_eq "dirty image: repair on open prints what qemu-img prints" "$qa" "$ka"
t_eq "dirty image: repaired on open" "$($TOOL q.qcow2 dump)" "$($TOOL k.qcow2 dump)"
t_ok "dirty image: clean after repair on open" qemu-img check k.qcow2

# Snapshot table entries: one without the extra data v3 requires, one with too much.
mk snaps.qcow2
qemu-img snapshot -c s1 snaps.qcow2
qemu-img snapshot -c s2 snaps.qcow2
for mode in short long; do
    cp snaps.qcow2 "snap-$mode.qcow2"
    python3 - "snap-$mode.qcow2" "$mode" <<'EOF'
import struct, sys
# Rewrite the snapshot table at the end of the file with entry 0 changed.
path, mode = sys.argv[1:]
f = open(path, 'r+b')
d = bytearray(f.read())
nb, off = struct.unpack('>IQ', d[60:72])
entries = []
for i in range(nb):
    off = (off + 7) & ~7
    h = bytearray(d[off:off + 40])
    eds = struct.unpack('>I', h[36:40])[0]
    idl, nml = struct.unpack('>HH', h[12:16])
    entries.append([h, bytes(d[off + 40:off + 40 + eds]),
                    bytes(d[off + 40 + eds:off + 40 + eds + idl + nml])])
    off += 40 + eds + idl + nml
entries[0][1] = b'' if mode == 'short' else entries[0][1] + b'\xab' * 2000
table = b''
for h, extra, names in entries:
    table += b'\0' * (-len(table) % 8)
    h[36:40] = struct.pack('>I', len(extra))
    table += bytes(h) + extra + names
cs = 1 << struct.unpack('>I', d[20:24])[0]
new = (len(d) + cs - 1) // cs * cs
d += b'\0' * (new - len(d)) + table
d[64:72] = struct.pack('>Q', new)
f.seek(0)
f.write(d)
EOF
    compare_check "snapshot table entry with $mode extra data" "snap-$mode.qcow2"
done

# Snapshot table problems open leaves to check: an unaligned table, a table past EOF,
# more than 65536 snapshots (real entries, whose clusters are counted), and a count that
# runs the table past EOF (repair then hits the old table: QEMU marks the image corrupt).
mk snapbase.qcow2
qemu-img snapshot -c s1 snapbase.qcow2
qemu-img snapshot -c s2 snapbase.qcow2
snoff=$($TOOL snapbase.qcow2 hdr snapshots_offset)
cp snapbase.qcow2 snap-unaligned.qcow2
$TOOL snap-unaligned.qcow2 hdr snapshots_offset $((snoff + 8))
compare_check "snapshot table offset unaligned" snap-unaligned.qcow2
cp snapbase.qcow2 snap-past-eof.qcow2
$TOOL snap-past-eof.qcow2 hdr snapshots_offset 0x100000000
compare_check "snapshot table past EOF" snap-past-eof.qcow2
# compare_check_quick NAME IMG: plain check and -r all, report, messages and metadata
# only (qemu-img takes seconds per open of an image with 65536 snapshots).
compare_check_quick() {
    local name=$1 img=$2 mode
    for mode in none all; do
        check_both "$name" "$img" "$mode"
        t_eq "$name ($mode): metadata after" "$($TOOL q.qcow2 dump 2>&1)" \
            "$($TOOL k.qcow2 dump 2>&1)"
    done
}
cp snapbase.qcow2 snap-count.qcow2
$TOOL snap-count.qcow2 hdr nb_snapshots 65537
compare_check_quick "snapshot count past the table" snap-count.qcow2
mk snap-many.qcow2
python3 -S - snap-many.qcow2 65537 "$TOP/tests/integration" <<'EOF'
import struct, sys
sys.path.insert(0, sys.argv[3])
from qcow2_tool import Image
# Append a table of N entries (no L1 table, v3 extra data), count its clusters, use it.
path, n = sys.argv[1], int(sys.argv[2])
img = Image(path, write=True)
tab = bytearray()
for i in range(n):
    ident = str(i + 1).encode()
    tab += b'\0' * (-len(tab) % 8)
    tab += struct.pack('>QIHHIIQII', 0, 0, len(ident), 0, 0, 0, 0, 0, 16)
    tab += struct.pack('>QQ', 0, img.get('size')) + ident
new = (len(img.data) + img.cs - 1) // img.cs * img.cs
img.write(new, '%ds' % len(tab), bytes(tab))
img.write(60, '>I', n)
img.write(64, '>Q', new)
for c in range(new // img.cs, (new + len(tab) + img.cs - 1) // img.cs):
    img.set_rc(c, 1)
EOF
compare_check_quick "65537 snapshots" snap-many.qcow2
qa=$(qemu-img info snap-many.qcow2 2>&1; echo "rc=$?")
ka=$("$QKIT_IMG" info snap-many.qcow2 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}")
t_eq "65537 snapshots: info refuses to open" "$qa" "$ka"

# Persistent bitmaps: their clusters are in use while the extension is valid.
mk bitmaps.qcow2
qemu-img bitmap --add bitmaps.qcow2 b0
qemu-img bitmap --add bitmaps.qcow2 b1
cp bitmaps.qcow2 k.qcow2
qa=$(qemu-img check bitmaps.qcow2 2>&1; echo "rc=$?")
ka=$("$QKIT_IMG" check k.qcow2 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}")
t_eq "image with bitmaps: check" "$qa" "$ka"

# JSON output of a damaged image.
cp leak.qcow2 k.qcow2
qa=$(qemu-img check --output=json leak.qcow2 2>/dev/null; echo "rc=$?")
ka=$("$QKIT_IMG" check --output=json k.qcow2 2>/dev/null | sed 's/"k.qcow2"/"leak.qcow2"/'
     echo "rc=${PIPESTATUS[0]}")
t_eq "leaked references: JSON report" "$qa" "$ka"
