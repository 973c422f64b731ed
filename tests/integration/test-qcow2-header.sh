#!/usr/bin/env bash
# qcow2 header extensions qkit does not know must survive every header rewrite
# (resize, amend, the dirty bit of a write), byte for byte and in their place, and the
# image must still pass qemu-img check; the feature name table is kept too.
source "$(dirname "$0")/lib.sh"
t_need "qkit tools built" "$QKIT_IMG" "$QKIT_IO" || exit 0
cd "$T" || exit 1

# List the header extensions as "type:length:hex-data" lines.
list_exts() {
    python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read(65536)
off = 72 if struct.unpack('>I', d[4:8])[0] == 2 else struct.unpack('>I', d[100:104])[0]
while True:
    t, l = struct.unpack('>II', d[off:off + 8])
    if t == 0:
        break
    print('%08x:%d:%s' % (t, l, d[off + 8:off + 8 + l].hex()))
    off += 8 + ((l + 7) & ~7)
PY
}

# Put an extension of an unknown type (0x12345678, "hello") before the end marker.
add_unknown_ext() {
    python3 - "$1" <<'PY'
import struct, sys
p = sys.argv[1]
d = bytearray(open(p, 'rb').read(65536))
off = 72 if struct.unpack('>I', d[4:8])[0] == 2 else struct.unpack('>I', d[100:104])[0]
while struct.unpack('>I', d[off:off + 4])[0] != 0:
    off += 8 + ((struct.unpack('>I', d[off + 4:off + 8])[0] + 7) & ~7)
d[off:off] = struct.pack('>II', 0x12345678, 5) + b'hello' + b'\0' * 3
with open(p, 'r+b') as f:
    f.write(bytes(d[:65536]))
PY
}

for compat in 1.1 0.10; do
    qemu-img create -q -f qcow2 -o compat=$compat img.qcow2 64M
    add_unknown_ext img.qcow2
    want=$(list_exts img.qcow2)
    case $want in
        *12345678:5:68656c6c6f*) t_pass "compat=$compat: unknown extension in place" ;;
        *) t_fail "compat=$compat: unknown extension in place" "$want"; continue ;;
    esac
    "$QKIT_IMG" resize -q img.qcow2 128M
    t_eq "compat=$compat: extensions kept by resize" "$want" "$(list_exts img.qcow2)"
    if [ $compat = 1.1 ]; then
        "$QKIT_IMG" amend -q -o lazy_refcounts=on img.qcow2
        t_eq "compat=$compat: extensions kept by amend" "$want" "$(list_exts img.qcow2)"
    fi
    "$QKIT_IO" -c 'write -P 0x5a 0 64k' img.qcow2 >/dev/null
    t_eq "compat=$compat: extensions kept after a write" "$want" "$(list_exts img.qcow2)"
    t_ok "compat=$compat: qemu-img check clean" qemu-img check -q img.qcow2
    t_ok "compat=$compat: data reads back through QEMU" \
        qemu-io -c 'read -P 0x5a 0 64k' img.qcow2
    rm -f img.qcow2
done
