#!/bin/bash
# qcow2 amend against qemu-img 7.2: the same -o options on copies of one image give the
# same messages and exit code, leave the same metadata (compat up/down, refcount width
# rebuilds, lazy refcounts, resize), and the data stays what it was.
source "$(dirname "$0")/lib.sh"

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    t_skip "qcow2-amend" "qemu-img/qemu-io not installed"
    exit 0
fi
if ! command -v python3 >/dev/null; then
    t_skip "qcow2-amend" "python3 not installed (needed to read metadata)"
    exit 0
fi
t_need "qcow2-amend: tools built" "$QKIT_IMG" || exit 0

TOOL="python3 -S $TOP/tests/integration/qcow2_tool.py"
cd "$T"

# am NAME BASE OPTS [clean]: amend -o OPTS on copies of BASE with each tool and compare.
# With "clean", qemu-img check must also pass on qkit's result and the data must be
# what BASE held (for changes that keep the contents).
am() {
    local name=$1 base=$2 opts=$3 want_clean=${4:-}
    local qa ka out
    cp "$base" q.qcow2
    cp "$base" k.qcow2
    qa=$(qemu-img amend -o "$opts" q.qcow2 2>&1; echo "rc=$?")
    ka=$("$QKIT_IMG" amend -o "$opts" k.qcow2 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}")
    t_eq "$name: output" "$qa" "$ka"
    t_eq "$name: metadata" "$($TOOL q.qcow2 dump)" "$($TOOL k.qcow2 dump)"
    if [ -n "$want_clean" ]; then
        t_ok "$name: qemu-img check" qemu-img check k.qcow2
        if out=$(qemu-img compare "$base" k.qcow2 2>&1); then
            t_pass "$name: data intact"
        else
            t_fail "$name: data intact" "$out"
        fi
    fi
}

# 4k clusters: qemu-img's refcount width change walks every possible refcount (the
# whole table's reach), which takes a second per run with 64k clusters.
qemu-img create -q -f qcow2 -o cluster_size=4k base.qcow2 64M
qemu-io -c 'write -P 1 0 128k' -c 'write -z 512k 128k' -c 'write -P 2 1M 64k' \
    -c 'write -c -P 3 2M 64k' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 base64k.qcow2 64M
qemu-io -c 'write -P 1 0 128k' -c 'write -P 2 1M 64k' base64k.qcow2 >/dev/null
am "64k clusters: amend -o refcount_bits=8" base64k.qcow2 refcount_bits=8 clean

# Options amend refuses, and bad values.
for o in cluster_size=4k encryption=on encrypt.format=luks encrypt.keyslot=1 \
         preallocation=full extended_l2=on compression_type=zstd foo=bar \
         cluster_size=4k,foo=bar foo=bar,cluster_size=4k compat=1.2 refcount_bits=3 \
         refcount_bits=128 refcount_bits=x lazy_refcounts=maybe size=abc \
         backing_file=foo backing_fmt=raw data_file=x data_file_raw=on \
         lazy_refcounts=on,compat=0.10 refcount_bits=8,compat=0.10; do
    am "amend -o $o" base.qcow2 "$o"
done

# Changes that keep the data.
for o in compat=0.10 compat=v2 compat=1.1 lazy_refcounts=on lazy_refcounts=off \
         refcount_bits=1 refcount_bits=2 refcount_bits=4 refcount_bits=8 refcount_bits=32 \
         refcount_bits=64 refcount_bits=16 refcount_bits=64,lazy_refcounts=on; do
    am "amend -o $o" base.qcow2 "$o" clean
done
am "amend -o size=128M" base.qcow2 size=128M
am "amend -o size=16M" base.qcow2 size=16M

# Downgrade and width changes with snapshots sharing clusters.
cp base.qcow2 snap.qcow2
qemu-img snapshot -c s1 snap.qcow2
qemu-io -c 'write -P 4 0 64k' -c 'write -z 1M 64k' snap.qcow2 >/dev/null
for o in compat=0.10 refcount_bits=2 refcount_bits=64; do
    am "with snapshots: amend -o $o" snap.qcow2 "$o"
done
am "with snapshots: amend -o refcount_bits=1 (too narrow)" snap.qcow2 refcount_bits=1

# Downgrade refused: refcount width, extended L2, zstd with compressed data, snapshot
# of another size.
for co in refcount_bits=8 extended_l2=on; do
    rm -f f.qcow2
    qemu-img create -q -f qcow2 -o "$co" f.qcow2 64M
    qemu-io -c 'write -P 1 0 64k' f.qcow2 >/dev/null
    am "$co image: amend -o compat=0.10" f.qcow2 compat=0.10
done
rm -f z.qcow2
qemu-img create -q -f qcow2 -o compression_type=zstd z.qcow2 64M
am "zstd image without compressed data: amend -o compat=0.10" z.qcow2 compat=0.10 clean
qemu-io -c 'write -c -P 1 0 64k' z.qcow2 >/dev/null
am "zstd image with compressed data: amend -o compat=0.10" z.qcow2 compat=0.10
rm -f sz.qcow2
qemu-img create -q -f qcow2 sz.qcow2 64M
qemu-img snapshot -c s sz.qcow2
qemu-img resize -q sz.qcow2 128M
am "snapshot of another size: amend -o compat=0.10" sz.qcow2 compat=0.10

# Version 2 images: upgrade (snapshot entries get their v3 extra data), widths.
rm -f v2.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
qemu-io -c 'write -P 1 0 128k' v2.qcow2 >/dev/null
qemu-img snapshot -c s1 v2.qcow2
am "v2: amend -o compat=1.1" v2.qcow2 compat=1.1 clean
am "v2: amend -o refcount_bits=8" v2.qcow2 refcount_bits=8
am "v2: amend -o compat=1.1,refcount_bits=8" v2.qcow2 compat=1.1,refcount_bits=8 clean
am "v2: amend -o lazy_refcounts=on" v2.qcow2 lazy_refcounts=on

# Zero clusters over a backing file become data clusters of zeroes on downgrade.
rm -f back.qcow2 over.qcow2
qemu-img create -q -f qcow2 back.qcow2 64M
qemu-io -c 'write -P 7 0 1M' back.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b back.qcow2 -F qcow2 over.qcow2
qemu-io -c 'write -z 0 128k' -c 'write -P 1 256k 64k' over.qcow2 >/dev/null
qemu-img snapshot -c x over.qcow2
qemu-io -c 'write -z 512k 64k' over.qcow2 >/dev/null
am "backed image with zero clusters: amend -o compat=0.10" over.qcow2 compat=0.10 clean
t_ok "backed image after downgrade: zero clusters still read as zeroes" \
    qemu-io -c 'read -P 0 0 128k' -c 'read -P 0 512k 64k' -c 'read -P 7 128k 128k' k.qcow2
am "backed image: amend -o backing_file=<same>" over.qcow2 backing_file=back.qcow2
am "backed image: amend -o backing_file=<same>,backing_fmt=<same>" over.qcow2 \
    backing_file=back.qcow2,backing_fmt=qcow2

# Lazy refcounts off on a dirty image: repaired, then the feature dropped.
rm -f dirty.qcow2
qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 64M
bash -c "qemu-io -c 'write -P 1 0 128k' -c abort dirty.qcow2; true" >/dev/null 2>&1
am "dirty image: amend -o lazy_refcounts=off" dirty.qcow2 lazy_refcounts=off
t_ok "dirty image: clean after amend" qemu-img check k.qcow2
