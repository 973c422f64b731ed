#!/usr/bin/env bash
# Regenerate tests/fuzz/corpus-qcow2/: small qcow2 images made by QEMU 7.2's qemu-img
# and qemu-io, one per on-disk feature the driver parses. Kept tiny (small clusters,
# little data) so the fuzzer spends its time on metadata. Run by hand; the output is
# committed.
set -euo pipefail
cd "$(dirname "$0")"
out=corpus-qcow2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$out"; mkdir -p "$out"

mk() { qemu-img create -q -f qcow2 "$@"; }
io() { qemu-io -f qcow2 "$@" >/dev/null; }
# Flip one bit of the big-endian 64-bit header field at byte OFFSET.
setbit() { python3 - "$1" "$2" "$3" <<'PY'
import sys, struct
path, off, bit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, 'r+b') as f:
    f.seek(off); v = struct.unpack('>Q', f.read(8))[0]
    f.seek(off); f.write(struct.pack('>Q', v | (1 << bit)))
PY
}

mk -o compat=1.1,cluster_size=512 "$out/v3-512.qcow2" 64k
io -c 'write -P 0xaa 0 4k' -c 'write -z 8k 4k' -c 'write -P 0x55 60k 512' "$out/v3-512.qcow2"

mk -o compat=0.10,cluster_size=512 "$out/v2-512.qcow2" 64k
io -c 'write -P 0x11 0 2k' -c 'write -P 0x22 32k 1k' "$out/v2-512.qcow2"

mk -o extended_l2=on,cluster_size=16k "$out/extl2-16k.qcow2" 64k
io -c 'write -P 0x33 2k 2k' -c 'write -z 16k 1k' "$out/extl2-16k.qcow2"

qemu-io -f raw -c 'write -P 0x44 0 64k' "$(truncate -s 64k "$tmp/r.raw"; echo "$tmp/r.raw")" \
    >/dev/null
qemu-img convert -q -c -O qcow2 -o cluster_size=4k "$tmp/r.raw" "$out/compressed-zlib.qcow2"
qemu-img convert -q -c -O qcow2 -o cluster_size=4k,compression_type=zstd "$tmp/r.raw" \
    "$out/compressed-zstd.qcow2"

# The backing file is made beside the overlay (its name is relative), then removed.
mk -o cluster_size=512 "$out/base.qcow2" 64k
mk -o cluster_size=512 -b base.qcow2 -F qcow2 "$out/backing.qcow2"
io -c 'write -P 0x66 4k 1k' "$out/backing.qcow2"
rm "$out/base.qcow2"

mk -o cluster_size=512 "$out/snapshot.qcow2" 64k
io -c 'write -P 0x77 0 1k' "$out/snapshot.qcow2"
qemu-img snapshot -c snap1 "$out/snapshot.qcow2"
io -c 'write -P 0x78 0 512' "$out/snapshot.qcow2"
qemu-img snapshot -c snap2 "$out/snapshot.qcow2"

mk -o cluster_size=512,refcount_bits=1 "$out/refcount1.qcow2" 64k
io -c 'write -P 0x01 0 1k' "$out/refcount1.qcow2"
mk -o cluster_size=512,refcount_bits=64 "$out/refcount64.qcow2" 64k
io -c 'write -P 0x02 0 1k' "$out/refcount64.qcow2"

mk -o cluster_size=512,lazy_refcounts=on "$out/dirty.qcow2" 64k
io -c 'write -P 0x03 0 1k' "$out/dirty.qcow2"
setbit "$out/dirty.qcow2" 72 0   # incompatible_features bit 0: dirty

mk -o cluster_size=512 "$out/bitmap.qcow2" 64k
qemu-img bitmap --add "$out/bitmap.qcow2" b0
io -c 'write -P 0x04 0 1k' "$out/bitmap.qcow2"

mk -o cluster_size=512 "$out/corrupt-bit.qcow2" 64k
setbit "$out/corrupt-bit.qcow2" 72 1   # incompatible_features bit 1: corrupt

mk "$out/empty-64k-clusters.qcow2" 64k

ls -l "$out"
