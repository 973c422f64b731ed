#!/bin/bash
# The qcow2 VM state area (qemu-io read -b / write -b) against qemu-io 7.2: what one
# tool writes the other reads back; the same commands give the same output and leave
# images that qemu-img check finds clean with the same allocation; the guest disk is
# untouched; snapshots keep the VM state they were taken with.
source "$(dirname "$0")/lib.sh"

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    t_skip "qcow2-vmstate" "qemu-img/qemu-io not installed"
    exit 0
fi
t_need "qcow2-vmstate: tools built" "$QKIT_IMG" "$QKIT_IO" || exit 0
cd "$T"

# io_both NAME IMG_Q IMG_K ARGS...: qemu-io ARGS on IMG_Q, qkit-io ARGS on IMG_K; the
# outputs (timings aside) and exit statuses must match.
io_both() {
    local name=$1 iq=$2 ik=$3; shift 3
    local qa ka
    qa=$(qemu-io "$@" "$iq" 2>&1 | filter_io; echo "rc=${PIPESTATUS[0]}")
    ka=$("$QKIT_IO" "$@" "$ik" 2>&1 | swap_names | filter_io; echo "rc=${PIPESTATUS[0]}")
    t_eq "$name" "$qa" "$ka"
}

# same_result NAME: q.qcow2 and k.qcow2 check the same (allocation, image end) and
# qemu-img finds them clean.
same_result() {
    t_eq "$1: qemu-img check of both copies" "$(qemu-img check q.qcow2 2>&1)" \
        "$(qemu-img check k.qcow2 2>&1)"
    t_ok "$1: qemu-img check clean" qemu-img check k.qcow2
    t_eq "$1: qkit-img check reads as qemu-img's" "$(qemu-img check k.qcow2 2>&1)" \
        "$("$QKIT_IMG" check k.qcow2 2>&1)"
}

# Writes at several places: within one cluster, across clusters, past the area one
# L2 table covers (512 MiB with 64 KiB clusters), and far out (a larger L1 table).
WRITES=(-c 'write -b -P 0x5a 0 64k' -c 'write -b -P 0x6b 1M 4k' -c 'write -b -P 0x7c 130560 5632'
        -c 'write -b -P 0x8d 536870400 1024' -c 'write -b -P 0x9e 100G 64k')
READS=(-c 'read -b -P 0x5a 0 64k' -c 'read -b -P 0x6b 1M 4k' -c 'read -b -P 0 64k 65024'
       -c 'read -b -P 0x7c 130560 5632' -c 'read -b -P 0x8d 536870400 1024'
       -c 'read -b -P 0 536871424 4096' -c 'read -b -P 0x9e 100G 64k'
       -c 'read -b -P 0 200G 512' -c 'read -b -v 1M 32')

for opts in "" "cluster_size=512" "extended_l2=on,cluster_size=32k" "compat=0.10"; do
    label="vmstate${opts:+ ($opts)}"
    rm -f q.qcow2 k.qcow2
    qemu-img create -q -f qcow2 ${opts:+-o "$opts"} q.qcow2 10M
    cp q.qcow2 k.qcow2
    qemu-io -c 'write -P 0x11 0 10M' q.qcow2 >/dev/null
    qemu-io -c 'write -P 0x11 0 10M' k.qcow2 >/dev/null
    io_both "$label: the same writes" q.qcow2 k.qcow2 "${WRITES[@]}"
    same_result "$label"
    # Each tool reads what the other wrote.
    io_both "$label: qkit-io reads what qemu-io wrote" q.qcow2 q.qcow2 "${READS[@]}"
    io_both "$label: qemu-io reads what qkit-io wrote" k.qcow2 k.qcow2 "${READS[@]}"
    t_ok "$label: the guest disk is unchanged" qemu-io -c 'read -P 0x11 0 10M' k.qcow2
    t_eq "$label: the map shows only the disk" "$(qemu-img map --output=json q.qcow2)" \
        "$(qemu-img map --output=json k.qcow2)"
done

# ------------------------------------------------------------------ with snapshots
rm -f q.qcow2 k.qcow2
qemu-img create -q -f qcow2 q.qcow2 64M
cp q.qcow2 k.qcow2
qemu-io -c 'write -b -P 0x21 0 128k' q.qcow2 >/dev/null
"$QKIT_IO" -c 'write -b -P 0x21 0 128k' k.qcow2 >/dev/null
qemu-img snapshot -c sn q.qcow2
"$QKIT_IMG" snapshot -c sn k.qcow2
t_eq "a disk-only snapshot records no VM state" \
    "$(qemu-img snapshot -l q.qcow2 | awk 'NR > 2 { print $1, $2, $3, $4 }')" \
    "$(qemu-img snapshot -l k.qcow2 | awk 'NR > 2 { print $1, $2, $3, $4 }')"
# Overwriting the shared VM state copies it; the snapshot keeps the old one.
io_both "write -b over a snapshot" q.qcow2 k.qcow2 -c 'write -b -P 0x22 4k 8k' \
    -c 'read -b -P 0x21 0 4k' -c 'read -b -P 0x22 4k 8k' -c 'read -b -P 0x21 12k 116k'
same_result "write -b over a snapshot"
qemu-img snapshot -a sn q.qcow2
"$QKIT_IMG" snapshot -a sn k.qcow2
io_both "apply brings the old VM state back" q.qcow2 k.qcow2 -c 'read -b -P 0x21 0 128k'
same_result "apply"

# ------------------------------------------------------------------ a longer backing file
# The overlay's VM state area lies inside the backing file's disk: QEMU reads it there.
qemu-img create -q -f qcow2 base.qcow2 1G
qemu-io -c 'write -P 0x31 512M 64k' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2 10M
io_both "VM state read through a longer backing file" over.qcow2 over.qcow2 \
    -c 'read -b -P 0x31 0 64k' -c 'read -b -P 0 64k 64k'

# ------------------------------------------------------------------ errors
qemu-img create -q -f qcow2 e.qcow2 10M
qemu-img create -q -f raw e.raw 10M
sum=$(file_sum e.qcow2)
io_both "raw has no VM state" e.raw e.raw -f raw -c 'write -b 0 512' -c 'read -b 0 512'
io_both "read-only" e.qcow2 e.qcow2 -r -c 'write -b 0 512'
io_both "read-only read" e.qcow2 e.qcow2 -r -c 'read -b -P 0 0 512'
io_both "bad requests" e.qcow2 e.qcow2 -c 'write -b 1 512' -c 'read -b 0 511' \
    -c 'write -b -z 0 512' -c 'write -b -f 0 512' -c 'read -b 9223372036854774784 512' \
    -c 'write -b 8P 512' -c 'write -b 3P 512' -c 'read -b -P 0 3P 512'
t_eq "failed requests leave the image unchanged" "$sum" "$(file_sum e.qcow2)"
io_both "write -b with -c writes plainly, cache=writethrough" e.qcow2 e.qcow2 \
    -t writethrough -c 'write -b -c -P 0x41 0 64k' -c 'read -b -P 0x41 0 64k'
t_ok "qemu-img check after writethrough" qemu-img check e.qcow2
