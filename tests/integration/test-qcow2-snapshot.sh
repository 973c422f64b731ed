#!/bin/bash
# qcow2 internal snapshots against qemu-img 7.2: snapshots made by qemu-img are listed
# identically; create / apply / delete done by both tools on copies of one image leave
# the same metadata (snapshot dates aside), pass qemu-img check and read the same; and
# each tool uses the other's snapshots.
source "$(dirname "$0")/lib.sh"

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    t_skip "qcow2-snapshot" "qemu-img/qemu-io not installed"
    exit 0
fi
if ! command -v python3 >/dev/null; then
    t_skip "qcow2-snapshot" "python3 not installed (needed to read metadata)"
    exit 0
fi
t_need "qcow2-snapshot: tools built" "$QKIT_IMG" || exit 0

TOOL="python3 -S $TOP/tests/integration/qcow2_tool.py"
# The DATE column differs between two runs made a second apart.
NODATE='s/ [0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9] / DATE /'
cd "$T"

# ---------------------------------------------------------------- listing
qemu-img create -q -f qcow2 list.qcow2 64M
qemu-io -c 'write -P 1 0 128k' list.qcow2 >/dev/null
qemu-img snapshot -c first list.qcow2
qemu-img snapshot -c first list.qcow2
qemu-img snapshot -c "a rather long snapshot name that overflows its column" list.qcow2
sum=$(file_sum list.qcow2)
qa=$(qemu-img snapshot -l list.qcow2 2>&1; echo "rc=$?")
ka=$("$QKIT_IMG" snapshot -l list.qcow2 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}")
t_eq "list snapshots made by qemu-img" "$qa" "$ka"
t_eq "listing leaves the image alone" "$sum" "$(file_sum list.qcow2)"

# ---------------------------------------------------------------- same steps, both tools
# A starting image with normal, compressed and zero clusters.
qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -c 'write -P 1 0 128k' -c 'write -c -P 5 2M 64k' -c 'write -P 2 1M 64k' \
    -c 'write -z 4M 64k' base.qcow2 >/dev/null
cp base.qcow2 q.qcow2
cp base.qcow2 k.qcow2

# both_run SUBCMD NAME ARGS...: `SUBCMD ARGS` with each tool on its copy (q.qcow2 for
# qemu-img, k.qcow2 for qkit-img); same output, same metadata, and ours checks clean.
both_run() {
    local sub=$1 name=$2; shift 2
    local qa ka
    qa=$(qemu-img "$sub" "$@" q.qcow2 2>&1; echo "rc=$?")
    ka=$("$QKIT_IMG" "$sub" "$@" k.qcow2 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}")
    t_eq "$name: output" "$qa" "$ka"
    t_eq "$name: metadata" "$($TOOL q.qcow2 dump)" "$($TOOL k.qcow2 dump)"
    t_ok "$name: qemu-img check" qemu-img check k.qcow2
}
# sn NAME ARGS...: `snapshot ARGS` both ways; qemu-img lists the same snapshots after.
sn() {
    local name=$1 qa ka
    both_run snapshot "$@"
    qa=$(qemu-img snapshot -l q.qcow2 | sed -e "$NODATE")
    ka=$(qemu-img snapshot -l k.qcow2 | sed -e "$NODATE")
    t_eq "$name: qemu-img lists the same snapshots" "$qa" "$ka"
}
# io CMD: the same qemu-io command on both copies.
io() {
    qemu-io -c "$1" q.qcow2 >/dev/null
    qemu-io -c "$1" k.qcow2 >/dev/null
}
# same_data NAME: both copies read the same.
same_data() {
    local out
    if out=$(qemu-img compare q.qcow2 k.qcow2 2>&1); then
        t_pass "$1"
    else
        t_fail "$1" "$out"
    fi
}

sn "create s1" -c s1
io 'write -P 3 0 64k'
io 'write -P 4 8M 64k'
sn "create s2" -c s2
sn "create a second s2" -c s2
io 'write -P 6 1M 64k'
sn "apply s1" -a s1
same_data "apply s1: data"
t_ok "apply s1: data is the snapshot's" qemu-io -c 'read -P 1 0 128k' -c 'read -P 2 1M 64k' \
    -c 'read -P 0 8M 64k' k.qcow2
sn "apply by ID" -a 3
same_data "apply by ID: data"
sn "delete s2 (the first one)" -d s2
sn "delete s1" -d s1
sn "delete the last snapshot" -d s2
sn "apply a missing snapshot" -a nosuch
sn "delete a missing snapshot" -d nosuch
sn "create after deleting all" -c again

# ---------------------------------------------------------------- disk size follows
qemu-img create -q -f qcow2 size.qcow2 64M
qemu-io -c 'write -P 7 0 64k' size.qcow2 >/dev/null
qemu-img snapshot -c small size.qcow2
qemu-img resize -q size.qcow2 128M
cp size.qcow2 q.qcow2
cp size.qcow2 k.qcow2
sn "apply a snapshot of another disk size" -a small
t_eq "apply restores the snapshot's disk size" \
    "$(qemu-img info q.qcow2 | grep '^virtual size')" \
    "$(qemu-img info k.qcow2 | grep '^virtual size')"

# ---------------------------------------------------------------- resize with snapshots
# QEMU 7.2 resizes v3 images with snapshots both ways (the snapshots keep their size
# and their clusters); v2 images with snapshots are refused.
# rs NAME ARGS...: `resize ARGS` both ways; the files also end at the same size.
rs() {
    both_run resize "$@"
    t_eq "$1: file size" "$(stat -c %s q.qcow2)" "$(stat -c %s k.qcow2)"
}
qemu-img create -q -f qcow2 rs.qcow2 64M
qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 60M 1M' rs.qcow2 >/dev/null
qemu-img snapshot -c s1 rs.qcow2
qemu-io -c 'write -P 3 0 64k' -c 'write -P 4 62M 1M' rs.qcow2 >/dev/null
cp rs.qcow2 q.qcow2
cp rs.qcow2 k.qcow2
rs "with snapshots: grow" 128M
rs "with snapshots: shrink below the snapshot's data" --shrink 32M
sn "with snapshots: apply after shrinking" -a s1
same_data "with snapshots: apply after shrinking: data"
t_ok "with snapshots: apply after shrinking: snapshot data back" \
    qemu-io -c 'read -P 1 64k 960k' -c 'read -P 2 60M 1M' k.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 q.qcow2 64M
qemu-img snapshot -c s1 q.qcow2
cp q.qcow2 k.qcow2
rs "v2 with snapshots: grow refused" 128M
rs "v2 with snapshots: shrink refused" --shrink 32M

# ---------------------------------------------------------------- version 2 images
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
qemu-io -c 'write -P 1 0 64k' v2.qcow2 >/dev/null
cp v2.qcow2 q.qcow2
cp v2.qcow2 k.qcow2
sn "v2: create" -c old
io 'write -P 2 0 64k'
sn "v2: apply" -a old
sn "v2: delete" -d old

# ---------------------------------------------------------------- width too small
qemu-img create -q -f qcow2 -o refcount_bits=1 narrow.qcow2 64M
qemu-io -c 'write -P 1 0 64k' narrow.qcow2 >/dev/null
cp narrow.qcow2 q.qcow2
cp narrow.qcow2 k.qcow2
qa=$(qemu-img snapshot -c s q.qcow2 2>&1; echo "rc=$?")
ka=$("$QKIT_IMG" snapshot -c s k.qcow2 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}")
t_eq "refcount_bits=1: snapshot fails like qemu-img" "$qa" "$ka"
t_eq "refcount_bits=1: metadata after the failure" "$($TOOL q.qcow2 dump)" \
    "$($TOOL k.qcow2 dump)"

# ---------------------------------------------------------------- across tools
cp base.qcow2 x.qcow2
"$QKIT_IMG" snapshot -c fromqkit x.qcow2
qemu-io -c 'write -P 9 0 128k' x.qcow2 >/dev/null
t_ok "qemu-img check accepts a snapshot made by qkit" qemu-img check x.qcow2
t_ok "qemu-img applies a snapshot made by qkit" qemu-img snapshot -a fromqkit x.qcow2
t_ok "the applied snapshot reads as taken" qemu-io -c 'read -P 1 0 128k' x.qcow2
qemu-img snapshot -c fromqemu x.qcow2
qemu-io -c 'write -P 8 0 64k' x.qcow2 >/dev/null
t_ok "qkit applies a snapshot made by qemu-img" "$QKIT_IMG" snapshot -a fromqemu x.qcow2
t_ok "qkit's apply reads as taken" qemu-io -c 'read -P 1 0 128k' x.qcow2
t_ok "qkit deletes a snapshot made by qemu-img" "$QKIT_IMG" snapshot -d fromqemu x.qcow2
t_ok "qemu-img deletes a snapshot made by qkit" qemu-img snapshot -d fromqkit x.qcow2
t_ok "clean after deleting both" qemu-img check x.qcow2
