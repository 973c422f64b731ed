#!/bin/bash
# convert -l and measure -l (an internal snapshot read in place, read-only) against
# qemu-img 7.2: snapshots made by qemu-img and by qkit-img, on several kinds of qcow2
# image, convert to the same content (qemu-img compare) and measure the same; the
# source is never changed; errors read as qemu-img's.
source "$(dirname "$0")/lib.sh"

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    t_skip "snapshot-load" "qemu-img/qemu-io not installed"
    exit 0
fi
t_need "snapshot-load: tools built" "$QKIT_IMG" "$QKIT_IO" || exit 0
cd "$T"

# both NAME ARGS...: run `qemu-img ARGS` and `qkit-img ARGS` (X in ARGS is the output
# file, X.q / X.k per tool); same messages and exit status, same output content.
both() {
    local name=$1; shift
    local qargs=() kargs=() a
    for a in "$@"; do
        if [ "$a" == X ]; then qargs+=(X.q); kargs+=(X.k); else qargs+=("$a"); kargs+=("$a"); fi
    done
    rm -f X.q X.k
    local qa ka
    qa=$(qemu-img "${qargs[@]}" 2>&1; echo "rc=$?")
    ka=$("$QKIT_IMG" "${kargs[@]}" 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}")
    t_eq "$name: output" "$qa" "$ka"
    if [ -e X.q ] || [ -e X.k ]; then
        local cmp
        cmp=$(qemu-img compare X.q X.k 2>&1)
        t_eq "$name: qemu-img compare" "Images are identical." "$cmp"
        t_eq "$name: same virtual size" "$(qemu-img info X.q | grep '^virtual size')" \
            "$(qemu-img info X.k | grep '^virtual size')"
    fi
}

# check_snapshots IMG: every snapshot converts the same with both tools, by name, by ID
# and in the snapshot.* form, to raw and to qcow2; the source stays untouched.
check_snapshots() {
    local img=$1 label=$2 sum id name
    sum=$(file_sum "$img")
    while read -r id name; do
        both "$label: convert -l $name (raw)" convert -l "$name" -O raw "$img" X
        both "$label: convert -l $id (qcow2)" convert -l "$id" -O qcow2 "$img" X
        both "$label: convert -l snapshot.id=$id" convert -l "snapshot.id=$id" -O raw "$img" X
        both "$label: convert -l snapshot.name=$name,snapshot.id=$id" \
            convert -l "snapshot.name=$name,snapshot.id=$id" -O qcow2 "$img" X
        # The snapshot's content is what applying it gives, cut to (or grown with
        # zeroes to) the current disk size.
        cp "$img" applied.qcow2
        qemu-img snapshot -a "$name" applied.qcow2
        rm -f X.k applied.raw
        qemu-img convert -O raw applied.qcow2 applied.raw
        "$QKIT_IMG" convert -l "$name" -O raw "$img" X.k
        local sa sk n
        sa=$(stat -c %s applied.raw)
        sk=$(stat -c %s X.k)
        n=$((sa < sk ? sa : sk))
        if cmp -s -n "$n" applied.raw X.k &&
           { [ "$sk" -le "$n" ] || cmp -s -i "$n:0" -n $((sk - n)) X.k /dev/zero; }; then
            t_pass "$label: -l $name reads what snapshot -a gives"
        else
            t_fail "$label: -l $name reads what snapshot -a gives" "sizes $sa / $sk" \
                "$(cmp -n "$n" applied.raw X.k 2>&1)"
        fi
        both "$label: measure -l $name" measure -l "$name" -O qcow2 "$img"
        both "$label: measure -l snapshot.id=$id json" measure --output=json \
            -l "snapshot.id=$id" "$img"
    done < <(qemu-img snapshot -l "$img" | awk 'NR > 2 { print $1, $2 }')
    t_eq "$label: the source is unchanged" "$sum" "$(file_sum "$img")"
    t_ok "$label: qemu-img check" qemu-img check "$img"
}

# --------------------------------------------------------- snapshots made by qemu-img
qemu-img create -q -f qcow2 q.qcow2 64M
qemu-io -c 'write -P 0x11 0 1M' -c 'write -c -P 0x12 2M 128k' -c 'write -z 3M 64k' \
    -c 'write -P 0x13 63M 64k' q.qcow2 >/dev/null
qemu-img snapshot -c s1 q.qcow2
qemu-io -c 'write -P 0x21 512k 1M' -c 'write -z 63M 32k' q.qcow2 >/dev/null
qemu-img resize -q q.qcow2 1G
qemu-io -c 'write -P 0x22 700M 64k' q.qcow2 >/dev/null
qemu-img snapshot -c s2 q.qcow2
qemu-io -c 'write -P 0x31 0 64k' -c 'write -P 0x32 900M 64k' q.qcow2 >/dev/null
check_snapshots q.qcow2 "qemu-img snapshots"

# --------------------------------------------------------- snapshots made by qkit-img
"$QKIT_IMG" create -q -f qcow2 k.qcow2 64M
"$QKIT_IO" -c 'write -P 0x11 0 1M' -c 'write -c -P 0x12 2M 128k' -c 'write -z 3M 64k' \
    k.qcow2 >/dev/null
"$QKIT_IMG" snapshot -c s1 k.qcow2
"$QKIT_IO" -c 'write -P 0x21 512k 1M' k.qcow2 >/dev/null
"$QKIT_IMG" resize -q k.qcow2 1G
"$QKIT_IO" -c 'write -P 0x22 700M 64k' k.qcow2 >/dev/null
"$QKIT_IMG" snapshot -c s2 k.qcow2
"$QKIT_IO" -c 'write -P 0x31 0 64k' k.qcow2 >/dev/null
check_snapshots k.qcow2 "qkit-img snapshots"

# --------------------------------------------------------- other image layouts
# Extended L2 (subclusters), small clusters.
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k e.qcow2 8M
qemu-io -c 'write -P 0x41 1k 3k' -c 'write -P 0x42 40k 2k' e.qcow2 >/dev/null
qemu-img snapshot -c ext e.qcow2
qemu-io -c 'write -P 0x43 0 16k' -c 'discard 40k 16k' e.qcow2 >/dev/null
check_snapshots e.qcow2 "extended L2"

# compat=0.10 (v2), 4 KiB clusters: an L1 entry covers only 2 MiB.
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k v2.qcow2 16M
qemu-io -c 'write -P 0x51 0 5M' v2.qcow2 >/dev/null
qemu-img snapshot -c old v2.qcow2
qemu-io -c 'write -P 0x52 1M 9M' v2.qcow2 >/dev/null
check_snapshots v2.qcow2 "compat=0.10"

# An overlay: what the snapshot leaves unallocated reads from the backing file.
qemu-img create -q -f qcow2 base.qcow2 32M
qemu-io -c 'write -P 0x61 0 32M' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2
qemu-io -c 'write -P 0x62 1M 1M' over.qcow2 >/dev/null
"$QKIT_IMG" snapshot -c ov over.qcow2
qemu-io -c 'write -P 0x63 4M 1M' over.qcow2 >/dev/null
check_snapshots over.qcow2 "overlay"

# Shrunk after the snapshot: the copy has the current, smaller size.
qemu-img create -q -f qcow2 shr.qcow2 64M
qemu-io -c 'write -P 0x71 0 64M' shr.qcow2 >/dev/null
qemu-img snapshot -c big shr.qcow2
qemu-img resize -q --shrink shr.qcow2 16M
check_snapshots shr.qcow2 "shrunk"

# --------------------------------------------------------- errors
qemu-img convert -q -O raw q.qcow2 plain.raw
sum=$(file_sum q.qcow2)
both "unknown snapshot" convert -l nope -O raw q.qcow2 X
both "unknown snapshot ID" convert -l snapshot.id=9 -O raw q.qcow2 X
both "ID and name of different snapshots" convert -l snapshot.id=1,snapshot.name=s2 \
    -O raw q.qcow2 X
both "empty snapshot ID" convert -l snapshot.id= -O raw q.qcow2 X
both "bad snapshot parameter" convert -l snapshot.foo=1 -O raw q.qcow2 X
both "bad list id" convert -l snapshot.id=1,id=2 -O raw q.qcow2 X
both "list id ignored" measure -l snapshot.id=1,id=abc q.qcow2
both "raw has no snapshots" convert -l s1 -f raw -O raw plain.raw X
both "raw has no snapshots (measure)" measure -l snapshot.name=s1 -f raw plain.raw
both "several sources and -l NAME" convert -l s1 -O raw q.qcow2 q.qcow2 X
both "several sources and -l snapshot.id" convert -l snapshot.id=1 -O raw q.qcow2 \
    plain.raw X
both "measure -l without a file" measure -l s1 --size 1G
both "measure unknown snapshot" measure -l nope q.qcow2
both "last -l snapshot.* wins" measure -l snapshot.name=nope -l snapshot.name=s1 q.qcow2
both "snapshot.* beats a plain -l" measure -l snapshot.name=s1 -l nope q.qcow2
t_eq "errors leave the source unchanged" "$sum" "$(file_sum q.qcow2)"
