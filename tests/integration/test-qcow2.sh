#!/bin/bash
# qcow2 driver against QEMU 7.2: fresh images byte-identical to qemu-img's, images
# written by qemu-io read back the same, compressed output identical, the same info,
# map and measure output, and the same one-line errors for damaged headers.
source "$(dirname "$0")/lib.sh"

if [ ! -x "$QKIT_IMG" ]; then
    t_skip "qcow2" "qkit-img not built"
    exit 0
fi
if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    t_skip "qcow2" "qemu-img/qemu-io not installed"
    exit 0
fi

# Strip the "program: " prefix so messages compare across the two tools.
strip_prog() { sed -e 's/^[^ :]*qemu-img: //' -e 's/^[^ :]*qkit-img: //'; }

# --- create: byte-identical to qemu-img create ---
create_same() {
    local size=$1; shift
    rm -f "$T/k.img" "$T/q.img"
    qimg create -q -f qcow2 "$@" "$T/k.img" "$size" >/dev/null 2>&1
    qemu-img create -q -f qcow2 "$@" "$T/q.img" "$size" >/dev/null 2>&1
    if cmp -s "$T/k.img" "$T/q.img"; then
        t_pass "create identical: $size $*"
    else
        t_fail "create identical: $size $*" "$(cmp "$T/k.img" "$T/q.img" 2>&1 | head -1)"
    fi
}
qemu-img create -q -f qcow2 "$T/base.qcow2" 32M
create_same 1G
create_same 0
create_same 1000
create_same 1G -o compat=0.10
create_same 1G -o cluster_size=512
create_same 1G -o cluster_size=4k,refcount_bits=1
create_same 10G -o cluster_size=512,refcount_bits=64
create_same 100G -o cluster_size=2M
create_same 1G -o extended_l2=on
create_same 1G -o compression_type=zstd,lazy_refcounts=on
create_same 1G -o "backing_file=$T/base.qcow2,backing_fmt=qcow2"
create_same 1G -o "backing_file=$T/base.qcow2,backing_fmt=qcow2,cluster_size=512"
create_same 1G -o "backing_file=$T/base.qcow2,backing_fmt=qcow2,compat=0.10"
create_same 1G -o preallocation=metadata
create_same 1000000 -o preallocation=metadata
create_same 256M -o preallocation=metadata,cluster_size=512
create_same 1G -o preallocation=metadata,cluster_size=4k
create_same 1G -o preallocation=metadata,extended_l2=on
create_same 64M -o preallocation=full
create_same 64M -o preallocation=falloc,cluster_size=512,refcount_bits=64
create_same 100M -o compat=0.10,preallocation=metadata,cluster_size=1k

# --- create: option errors worded like qemu-img ---
create_err() {
    local q k
    q=$(qemu-img create -q -f qcow2 "$@" "$T/e.img" 1G 2>&1 | strip_prog)
    k=$(qimg create -q -f qcow2 "$@" "$T/e.img" 1G 2>&1 | strip_prog)
    t_eq "create error: $*" "$q" "$k"
}
create_err -o cluster_size=1000
create_err -o cluster_size=4M
create_err -o compat=0.9
create_err -o refcount_bits=3
create_err -o compat=0.10,refcount_bits=8
create_err -o compat=0.10,lazy_refcounts=on
create_err -o compat=0.10,extended_l2=on
create_err -o extended_l2=on,cluster_size=4k
create_err -o compression_type=lz4
create_err -o compat=0.10,compression_type=zstd
create_err -o preallocation=foo
create_err -o data_file_raw=on
create_err -o backing_fmt=raw

# --- reading images written by qemu-io ---
read_same() {
    local name=$1 img=$2
    qimg convert -O raw "$img" "$T/k.raw" 2>&1
    qemu-img convert -O raw "$img" "$T/q.raw"
    if cmp -s "$T/k.raw" "$T/q.raw"; then t_pass "read: $name"; else t_fail "read: $name"; fi
    t_eq "map: $name" "$(qemu-img map --output=json "$img")" "$(qimg map --output=json "$img")"
}
qemu_writes() {
    qemu-io -c 'write -P 0x11 0 3M' -c 'write -P 0x22 5000 7777' -c 'write -c -P 0x33 4M 64k' \
        -c 'write -z 6M 1M' -c 'write -P 0x44 8M 100k' -c 'discard 8M 64k' "$1" >/dev/null
}
for opts in "" "compat=0.10" "cluster_size=512" "cluster_size=2M" "refcount_bits=1" \
            "extended_l2=on" "compression_type=zstd" "extended_l2=on,cluster_size=16k"; do
    rm -f "$T/w.qcow2"
    qemu-img create -q -f qcow2 ${opts:+-o "$opts"} "$T/w.qcow2" 12M
    qemu_writes "$T/w.qcow2"
    read_same "qemu-written ${opts:-default}" "$T/w.qcow2"
done

# A backing chain: overlay (zstd, larger than its base) over a base with data.
qemu-img create -q -f qcow2 "$T/cb.qcow2" 8M
qemu-io -c 'write -P 0x55 0 8M' -c 'write -c -P 0x66 1M 64k' "$T/cb.qcow2" >/dev/null
qemu-img create -q -f qcow2 -o compression_type=zstd -b "$T/cb.qcow2" -F qcow2 "$T/ct.qcow2" 10M
qemu-io -c 'write -P 0x77 100k 10k' -c 'write -z 2M 64k' -c 'discard 3M 128k' \
    -c 'write -c -P 0x78 9M 64k' "$T/ct.qcow2" >/dev/null
read_same "backing chain" "$T/ct.qcow2"
t_eq "info json: backing chain" "$(qemu-img info --output=json "$T/ct.qcow2")" \
    "$(qimg info --output=json "$T/ct.qcow2")"

# --- compressed writes: byte-identical to qemu-img convert -c ---
{ for i in $(seq 1 400); do echo "line $i of some compressible text"; done
  head -c 1000000 /dev/urandom; } > "$T/src.raw"
truncate -s 5M "$T/src.raw"
for ct in zlib zstd; do
    rm -f "$T/kc.qcow2" "$T/qc.qcow2"
    qimg convert -c -O qcow2 -o compression_type=$ct -f raw "$T/src.raw" "$T/kc.qcow2"
    qemu-img convert -c -O qcow2 -o compression_type=$ct -f raw "$T/src.raw" "$T/qc.qcow2"
    if cmp -s "$T/kc.qcow2" "$T/qc.qcow2"; then t_pass "convert -c $ct identical"
    else t_fail "convert -c $ct identical"; fi
    t_ok "convert -c $ct: qemu-img check" qemu-img check -q "$T/kc.qcow2"
    t_ok "convert -c $ct: qemu-img compare" qemu-img compare -q -F raw "$T/kc.qcow2" "$T/src.raw"
done

# --- uncompressed writes by qkit: qemu-img accepts and reads the same data ---
for opts in "compat=0.10" "cluster_size=512,refcount_bits=64" "extended_l2=on"; do
    rm -f "$T/kw.qcow2"
    qimg convert -O qcow2 -o "$opts" -f raw "$T/src.raw" "$T/kw.qcow2"
    t_ok "qkit-written $opts: check" qemu-img check -q "$T/kw.qcow2"
    t_ok "qkit-written $opts: compare" qemu-img compare -q -F raw "$T/kw.qcow2" "$T/src.raw"
done

# --- measure ---
for o in "" "-o cluster_size=4k" "-o preallocation=full" "-o extended_l2=on,refcount_bits=1"; do
    t_eq "measure --size $o" "$(qemu-img measure -O qcow2 $o --size 7G)" \
        "$(qimg measure -O qcow2 $o --size 7G 2>&1)"
    t_eq "measure image $o" "$(qemu-img measure -O qcow2 $o "$T/ct.qcow2")" \
        "$(qimg measure -O qcow2 $o "$T/ct.qcow2" 2>&1)"
done

# --- info for the format variants ---
for opts in "compat=0.10" "compression_type=zstd" "extended_l2=on" "lazy_refcounts=on" \
            "refcount_bits=64,cluster_size=512"; do
    rm -f "$T/i.qcow2"
    qemu-img create -q -f qcow2 -o "$opts" "$T/i.qcow2" 64M
    t_eq "info json: $opts" "$(qemu-img info --output=json "$T/i.qcow2")" \
        "$(qimg info --output=json "$T/i.qcow2")"
done

# --- damaged headers: the same one-line refusal ---
poke() { # poke FILE OFFSET FORMAT VALUE
    python3 -c "import struct,sys; f=open(sys.argv[1],'r+b'); f.seek(int(sys.argv[2],0)); \
f.write(struct.pack('>'+sys.argv[3], int(sys.argv[4],0)))" "$@"
}
header_err() {
    local name=$1; shift
    cp "$T/hb.qcow2" "$T/h.qcow2"
    poke "$T/h.qcow2" "$@"
    local q k
    q=$(qemu-img info -f qcow2 "$T/h.qcow2" 2>&1 >/dev/null | strip_prog)
    k=$(qimg info -f qcow2 "$T/h.qcow2" 2>&1 >/dev/null | strip_prog)
    t_eq "bad header: $name" "$q" "$k"
}
qemu-img create -q -f qcow2 "$T/hb.qcow2" 64M
header_err "magic" 0 I 0x12345678
header_err "version 4" 4 I 4
header_err "version 1" 4 I 1
header_err "cluster bits 8" 20 I 8
header_err "cluster bits 22" 20 I 22
header_err "header length 100" 100 I 100
header_err "header length huge" 100 I 200000
header_err "refcount order 7" 96 I 7
header_err "L1 offset unaligned" 40 Q 0x30001
header_err "L1 too large" 36 I 0x10000000
header_err "reftable offset unaligned" 48 Q 0x10001
header_err "reftable too large" 56 I 0x10000000
header_err "unknown incompat bit" 72 Q 0x20
header_err "unknown incompat bit 63" 72 Q 0x8000000000000000
header_err "compression bit without type" 72 Q 0x8
header_err "encryption method 3" 32 I 3
header_err "size too big" 24 Q 0x7fffffffffffffff
header_err "snapshot table unaligned" 64 Q 0x10001
header_err "backing offset past cluster" 8 Q 0x20000

# Feature names from the image's table appear in the refusal.
cp "$T/hb.qcow2" "$T/n.qcow2"
poke "$T/n.qcow2" 0x139 B 5
poke "$T/n.qcow2" 72 Q 0x60
t_eq "unsupported feature names" \
    "$(qemu-img info "$T/n.qcow2" 2>&1 | strip_prog)" "$(qimg info "$T/n.qcow2" 2>&1 | strip_prog)"

# A corrupt image opens read-only but refuses writing, with qemu's message.
cp "$T/hb.qcow2" "$T/c.qcow2"
poke "$T/c.qcow2" 72 Q 0x2
t_eq "corrupt image info" "$(qemu-img info --output=json "$T/c.qcow2")" \
    "$(qimg info --output=json "$T/c.qcow2")"
out=$(qimg resize "$T/c.qcow2" 128M 2>&1)
case "$out" in
*"qcow2: Image is corrupt; cannot be opened read/write"*) t_pass "corrupt image refuses rw" ;;
*) t_fail "corrupt image refuses rw" "$out" ;;
esac
