#!/bin/bash
# qcow2 behaviours checked against qemu-img / qemu-io 7.2 one case at a time: zero writes
# and discards on compat=0.10 images (with and without a backing file), commit emptying
# the top image, preallocated creates with small clusters, and freed clusters that are
# discarded in the file only once no metadata on disk points at them.
source "$(dirname "$0")/lib.sh"

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    t_skip "qcow2-fixes" "qemu-img/qemu-io not installed"
    exit 0
fi
if ! command -v python3 >/dev/null; then
    t_skip "qcow2-fixes" "python3 not installed (needed to read metadata)"
    exit 0
fi
t_need "qcow2-fixes: tools built" "$QKIT_IMG" "$QKIT_IO" || exit 0

TOOL="python3 -S $TOP/tests/integration/qcow2_tool.py"
cd "$T"

# top_map IMG: qemu-img map of the image's own layer (the backing file left out).
top_map() {
    local spec
    spec=$(printf '{"driver": "qcow2", "file": {"driver": "file", "filename": "%s"}, %s}' \
        "$1" '"backing": null')
    qemu-img map --output=json "json:$spec" 2>&1
}
# same_image NAME Q K: the two images hold the same metadata, map the same and have the
# same file size.
same_image() {
    local name=$1 q=$2 k=$3
    t_eq "$name: metadata" "$($TOOL "$q" dump)" "$($TOOL "$k" dump)"
    t_eq "$name: map" "$(top_map "$q")" "$(top_map "$k")"
    t_eq "$name: file size" "$(stat -c %s "$q")" "$(stat -c %s "$k")"
}

# ---------------------------------------------------------------- v2 zero writes
# io_case NAME BACKED CMD...: the qemu-io commands on copies of a v2 image (data at
# 0-128k and 256k-320k; BACKED=yes puts a backing file of 7s under it); same output,
# same metadata and map.
rm -f v2back.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 v2back.qcow2 1M
qemu-io -c 'write -P 7 0 1M' v2back.qcow2 >/dev/null
io_case() {
    local name=$1 backed=$2; shift 2
    local args=() c qa ka
    rm -f v2.qcow2
    if [ "$backed" = yes ]; then
        qemu-img create -q -f qcow2 -o compat=0.10 -b v2back.qcow2 -F qcow2 v2.qcow2
    else
        qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
    fi
    qemu-io -c 'write -P 1 0 128k' -c 'write -P 2 256k 64k' v2.qcow2 >/dev/null
    cp v2.qcow2 q.qcow2
    cp v2.qcow2 k.qcow2
    for c in "$@" 'read -P 0 0 1' 'read -P 0 1020k 4k'; do args+=(-c "$c"); done
    qa=$(qemu-io "${args[@]}" q.qcow2 2>&1 | sed -e "/ops\/sec/d"; echo "rc=${PIPESTATUS[0]}")
    ka=$("$QKIT_IO" "${args[@]}" k.qcow2 2>&1 | swap_names | sed -e "/ops\/sec/d"; \
         echo "rc=${PIPESTATUS[0]}")
    t_eq "$name: output" "$qa" "$ka"
    same_image "$name" q.qcow2 k.qcow2
    t_ok "$name: qemu-img check" qemu-img check k.qcow2
}
for backed in no yes; do
    io_case "v2 backed=$backed: write -z unallocated cluster" $backed 'write -z 512k 64k'
    io_case "v2 backed=$backed: write -z allocated cluster" $backed 'write -z 0 64k'
    io_case "v2 backed=$backed: write -z -u allocated cluster" $backed 'write -z -u 0 64k'
    io_case "v2 backed=$backed: write -z part of an unallocated cluster" $backed \
        'write -z 512k 4k'
    io_case "v2 backed=$backed: write -z part of an allocated cluster" $backed 'write -z 0 4k'
    io_case "v2 backed=$backed: write -z across clusters" $backed 'write -z 60k 200k'
    io_case "v2 backed=$backed: write -z at the end of the disk" $backed \
        'write -z 1020k 4k' 'write -z 1000k 24k'
    io_case "v2 backed=$backed: write -z the whole disk" $backed 'write -z 0 1M'
    io_case "v2 backed=$backed: write -z over compressed clusters" $backed \
        'write -c -P 3 512k 64k' 'write -z 512k 64k' 'write -c -P 3 576k 64k' \
        'write -z 580k 4k'
    io_case "v2 backed=$backed: discard" $backed 'discard 0 64k' 'discard 256k 64k'
done

# ---------------------------------------------------------------- commit empties the top
# commit_case NAME CREATE_OPTS [SETUP]: commit the same overlay with each tool; the
# emptied top must be what qemu-img leaves (same bytes apart from snapshot dates: same
# metadata, map and file size, a clean check) and the bases must read the same.
commit_case() {
    local name=$1 opts=$2 setup=${3:-} d
    for d in cq ck; do
        rm -rf "$d"
        mkdir "$d"
        (cd "$d" &&
         qemu-img create -q -f qcow2 ${opts:+-o "$opts"} base.qcow2 64M &&
         qemu-io -c 'write -P 1 0 1M' base.qcow2 >/dev/null &&
         qemu-img create -q -f qcow2 ${opts:+-o "$opts"} -b base.qcow2 -F qcow2 top.qcow2 &&
         qemu-io -c 'write -P 2 512k 1M' -c 'write -P 3 4M 256k' -c 'write -z 8M 64k' \
             -c 'write -c -P 5 12M 64k' -c 'write -P 4 40M 64k' top.qcow2 >/dev/null &&
         eval "$setup")
    done
    local qa ka
    qa=$(cd cq && qemu-img commit top.qcow2 2>&1; echo "rc=$?")
    ka=$(cd ck && "$QKIT_IMG" commit top.qcow2 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}")
    t_eq "$name: output" "$qa" "$ka"
    same_image "$name: emptied top" cq/top.qcow2 ck/top.qcow2
    t_eq "$name: qemu-img check of the emptied top" "$(qemu-img check cq/top.qcow2 2>&1)" \
        "$(qemu-img check ck/top.qcow2 2>&1)"
    t_ok "$name: bases read the same" qemu-img compare cq/base.qcow2 ck/base.qcow2
    t_ok "$name: top reads the base" qemu-img compare ck/top.qcow2 ck/base.qcow2
}
commit_case "commit, 64k clusters" ""
commit_case "commit, 512-byte clusters" "cluster_size=512"
commit_case "commit, refcount_bits=1, 512-byte clusters" "cluster_size=512,refcount_bits=1"
commit_case "commit, lazy refcounts" "lazy_refcounts=on"
commit_case "commit, v2 (clusters dropped one by one)" "compat=0.10"
commit_case "commit, top with a snapshot" "" "qemu-img snapshot -c s top.qcow2"
commit_case "commit, top with a bitmap" "" "qemu-img bitmap --add top.qcow2 b0"

# ---------------------------------------------------------------- preallocated creates
# With small clusters the refcount table grows during preallocation; QEMU continues each
# run of data clusters right after the previous one where it can, so a cluster freed by
# the move of the table is used, not skipped. The files must be identical. (The same
# happens at 2G with cluster_size=1k,refcount_bits=1, which takes far longer to run.)
# prealloc_case OPTS SIZE [RESIZE]: create (and grow) with each tool and compare bytes.
prealloc_case() {
    local opts=$1 size=$2 resize=${3:-} name="create -o $1,preallocation=metadata $2"
    rm -f pq.qcow2 pk.qcow2
    qemu-img create -q -f qcow2 -o "$opts,preallocation=metadata" pq.qcow2 "$size"
    "$QKIT_IMG" create -q -f qcow2 -o "$opts,preallocation=metadata" pk.qcow2 "$size"
    if [ -n "$resize" ]; then
        name="$name, resize --preallocation=metadata $resize"
        qemu-img resize -q --preallocation=metadata pq.qcow2 "$resize"
        "$QKIT_IMG" resize -q --preallocation=metadata pk.qcow2 "$resize"
    fi
    local out
    if out=$(cmp pq.qcow2 pk.qcow2 2>&1); then
        t_pass "$name: identical files"
    else
        t_fail "$name: identical files" "$out"
    fi
    rm -f pq.qcow2 pk.qcow2
}
prealloc_case cluster_size=512,refcount_bits=2 128M
prealloc_case cluster_size=512,refcount_bits=1 256M
prealloc_case cluster_size=512,refcount_bits=2 100M 300M

# ---------------------------------------------------------------- discard after metadata
# A freed cluster may be punched out of the file only once the table that stopped
# pointing at it is written and flushed: otherwise a crash in between leaves a table
# pointing at a hole. strace shows the order of the writes, syncs and punches.
# punch_after NAME TRACE DATA_OFFSET META_OFFSET: in the strace log, the punch covering
# DATA_OFFSET comes after a write covering META_OFFSET and a sync after that write.
punch_after() {
    local out
    if out=$(python3 -S - "$2" "$3" "$4" 2>&1 <<'EOF'
import re, sys
log, data, meta = sys.argv[1], int(sys.argv[2], 0), int(sys.argv[3], 0)
wrote = synced = False
for line in open(log):
    m = re.search(r'pwrite(?:64|v2?)\(\d+, .*, (\d+), (\d+)\) = \d+$', line)
    if m and 'pwrite64' in line:
        n, off = int(m.group(1)), int(m.group(2))
        if off <= meta < off + n:
            wrote, synced = True, False
        continue
    if re.search(r'f(data)?sync\(\d+\)\s+= 0', line):
        synced = synced or wrote
        continue
    m = re.search(r'fallocate\(\d+, [A-Z_|]*PUNCH_HOLE[A-Z_|]*, (\d+), (\d+)\)', line)
    if m and int(m.group(1)) <= data < int(m.group(1)) + int(m.group(2)):
        if not wrote:
            sys.exit('punched %#x before writing the metadata at %#x' % (data, meta))
        if not synced:
            sys.exit('punched %#x before a sync after writing %#x' % (data, meta))
        print('ok')
        sys.exit(0)
sys.exit('no punch of %#x' % data)
EOF
    ); then
        t_pass "$1"
    else
        t_fail "$1" "$out"
    fi
}
if ! command -v strace >/dev/null; then
    t_skip "discard after metadata" "strace not installed"
else
    STRACE="strace -f -e trace=pwrite64,pwritev,fallocate,fsync,fdatasync -o"
    rm -f d.qcow2
    qemu-img create -q -f qcow2 d.qcow2 64M
    qemu-io -c 'write -P 1 0 128k' -c 'write -P 1 40M 128k' d.qcow2 >/dev/null
    l2=$($TOOL d.qcow2 l1 0)
    data0=$($TOOL d.qcow2 l2 0 0)
    data40=$($TOOL d.qcow2 l2 0 640)
    cp d.qcow2 d1.qcow2
    $STRACE discard.trace "$QKIT_IO" -d unmap -c 'discard 0 64k' d1.qcow2 >/dev/null
    punch_after "guest discard: the cluster is punched after its L2 table is on disk" \
        discard.trace $((data0 & 0xfffffffffe00)) $((l2 & 0xfffffffffe00))
    cp d.qcow2 d2.qcow2
    $STRACE shrink.trace "$QKIT_IMG" resize -q --shrink d2.qcow2 32M
    punch_after "resize --shrink: cropped data is punched after its L2 table is on disk" \
        shrink.trace $((data40 & 0xfffffffffe00)) $((l2 & 0xfffffffffe00))
    cp d.qcow2 d3.qcow2
    qemu-img snapshot -c s d3.qcow2
    qemu-io -c 'write -P 2 0 64k' d3.qcow2 >/dev/null
    $STRACE snapdel.trace "$QKIT_IMG" snapshot -d s d3.qcow2
    # The snapshot's own copy of cluster 0 goes once the header no longer lists it.
    punch_after "snapshot -d: its clusters are punched after the header drops it" \
        snapdel.trace $((data0 & 0xfffffffffe00)) 60
    t_ok "discard after metadata: images stay clean" qemu-img check d3.qcow2
fi

# ---------------------------------------------------------------- corruption events
# A table pointing at metadata or at an unaligned offset: the I/O fails as in qemu-io,
# the "qcow2: Marking image as corrupt" line has no program prefix, and after it the
# node takes no more I/O ("No medium found").
# corrupt_case NAME TOOL_ARGS...: damage a copy of a small image with qcow2_tool.py,
# then run the same qemu-io commands on it with both tools.
corrupt_case() {
    local name=$1; shift
    local cmds=(-c 'write -P 2 0 4k' -c 'read -P 1 0 4k' -c 'write -P 3 1M 4k' -c 'read 0 4k')
    rm -f cbase.qcow2
    qemu-img create -q -f qcow2 cbase.qcow2 64M
    qemu-io -c 'write -P 1 0 64k' cbase.qcow2 >/dev/null
    $TOOL cbase.qcow2 "$@"
    cp cbase.qcow2 q.qcow2
    cp cbase.qcow2 k.qcow2
    local qa ka
    qa=$(qemu-io "${cmds[@]}" q.qcow2 2>&1 | sed -e '/ops\/sec/d'; echo "rc=${PIPESTATUS[0]}")
    ka=$("$QKIT_IO" "${cmds[@]}" k.qcow2 2>&1 | swap_names | sed -e '/ops\/sec/d'; \
         echo "rc=${PIPESTATUS[0]}")
    t_eq "$name: output" "$qa" "$ka"
    t_eq "$name: marked corrupt" "$($TOOL q.qcow2 hdr incompatible_features)" \
        "$($TOOL k.qcow2 hdr incompatible_features)"
}
corrupt_case "L1 entry unaligned" l1 0 0x8000000000040200
corrupt_case "L2 entry pointing at the L1 table" l2 0 0 0x8000000000030000
corrupt_case "L2 entry pointing at the header" l2 0 0 0x8000000000000200
corrupt_case "L2 entry pointing at the refcount table" l2 0 0 0x8000000000010000

# ---------------------------------------------------------------- shrinking
# resize --shrink drops the cropped clusters and cuts the file after the last cluster
# in use, exactly where qemu-img does.
for opts in cluster_size=512,refcount_bits=1 cluster_size=4k refcount_bits=64 ""; do
    rm -f s.qcow2
    qemu-img create -q -f qcow2 ${opts:+-o "$opts"} s.qcow2 64M
    qemu-io -c 'write -P 1 0 128k' -c 'write -z 512k 128k' -c 'write -c -P 3 2M 64k' \
        -c 'write -P 4 20M 4M' -c 'write -P 5 5M 64k' s.qcow2 >/dev/null
    for size in 16M 1M; do
        cp s.qcow2 q.qcow2
        cp s.qcow2 k.qcow2
        qa=$(qemu-img resize --shrink q.qcow2 "$size" 2>&1; echo "rc=$?")
        ka=$("$QKIT_IMG" resize --shrink k.qcow2 "$size" 2>&1 | swap_names; \
             echo "rc=${PIPESTATUS[0]}")
        t_eq "shrink ${opts:-defaults} to $size: output" "$qa" "$ka"
        same_image "shrink ${opts:-defaults} to $size" q.qcow2 k.qcow2
    done
done
