#!/usr/bin/env bash
# qkit-nbd -l: export an internal snapshot read-only, as qemu-nbd -l does. The bytes
# served must be the snapshot's (not the active image's), equal to what qemu-nbd
# serves, and the image file must be left unchanged.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd-helpers.sh"
t_need "qkit-nbd built" "$QKIT_NBD" || exit 0
cd "$T" || exit 1

qemu-img create -q -f qcow2 s.qcow2 4M
qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x22 2M 64k' s.qcow2 >/dev/null
qemu-img snapshot -c first s.qcow2
qemu-io -c 'write -P 0x33 0 512k' -c 'write -z 2M 64k' s.qcow2 >/dev/null
qemu-img snapshot -c second s.qcow2
qemu-io -c 'write -P 0x44 1M 1M' s.qcow2 >/dev/null
before=$(sha256sum < s.qcow2)

for param in first 1 snapshot.name=second snapshot.id=2,snapshot.name=second; do
    qemu-img convert -f qcow2 -l "$param" -O raw s.qcow2 ref.raw
    rm -f q.raw k.raw
    if nbd_start qemu-nbd "$T/q.sock" -f qcow2 -l "$param" s.qcow2; then
        nbdcopy "$(nbd_uri "$T/q.sock")" q.raw
        nbd_stop "$NBD_PID"
    fi
    if nbd_start "$QKIT_NBD" "$T/k.sock" -f qcow2 -l "$param" s.qcow2; then
        nbdcopy "$(nbd_uri "$T/k.sock")" k.raw
        nbd_stop "$NBD_PID"
    else
        t_fail "-l $param: qkit-nbd starts" "$(cat "$T/server.err")"
        continue
    fi
    if cmp -s k.raw ref.raw && cmp -s k.raw q.raw; then
        t_pass "-l $param: serves the snapshot, as qemu-nbd"
    else
        t_fail "-l $param: serves the snapshot, as qemu-nbd"
    fi
done
t_eq "-l leaves the image unchanged" "$before" "$(sha256sum < s.qcow2)"

# A write to a snapshot export is refused: -l exports read-only.
if nbd_start "$QKIT_NBD" "$T/k.sock" -f qcow2 -l first s.qcow2; then
    out=$(qemu-io -f raw -c 'write 0 512' "$(nbd_uri "$T/k.sock")" 2>&1)
    case $out in
        *"read-only"*|*"Operation not permitted"*|*"Permission denied"*)
            t_pass "-l export is read-only" ;;
        *) t_fail "-l export is read-only" "$out" ;;
    esac
    nbd_stop "$NBD_PID"
fi
