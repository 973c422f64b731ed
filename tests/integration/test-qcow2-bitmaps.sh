#!/bin/bash
# qcow2 persistent dirty bitmaps against QEMU 7.2: images with bitmaps made by qemu-img
# are read the same by qkit-img, the same commands run by both tools on copies of one
# image print the same and leave byte-identical images (QEMU's allocation order is
# followed), and qkit's images read back in qemu-img, qemu-nbd and nbdinfo.
source "$(dirname "$0")/lib.sh"

for tool in qemu-img qemu-io; do
    if ! command -v $tool >/dev/null; then
        t_skip "qcow2-bitmaps" "$tool not installed"
        exit 0
    fi
done
t_need "qcow2-bitmaps: tools built" "$QKIT_IMG" "$QKIT_IO" || exit 0

BM="python3 $TOP/tests/integration/qcow2_bitmaps.py"
Q=$T/q   # QEMU's tools work here
K=$T/k   # qkit's tools work here, on copies of the same files
mkdir -p "$Q" "$K"
DISK='s/^disk size: .*/disk size: X/; s/"actual-size": [0-9]*/"actual-size": X/'
NODE="s/#block[0-9]*/#blockN/g"

# Copy the QEMU side over to the qkit side.
sync_dirs() { rm -rf "$K"; cp -a "$Q" "$K"; }

# run_q / run_k ARGS...: a tool run in its directory, output and exit code.
run_q() { local t=$1; shift; (cd "$Q" && "$t" "$@" 2>&1; echo "rc=$?") | sed -e "$DISK;$NODE"; }
run_k() {
    local t=$1; shift
    (cd "$K" && "$t" "$@" 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}") | sed -e "$DISK;$NODE"
}

# both NAME FILE ARGS...: qemu-img and qkit-img print the same, and FILE (changed or
# not by the command) is byte-identical afterwards on both sides.
both() {
    local name=$1 file=$2; shift 2
    local a b
    a=$(run_q qemu-img "$@")
    b=$(run_k "$QKIT_IMG" "$@")
    if [ "$a" != "$b" ]; then
        t_eq "$name" "$a" "$b"
    elif [ -n "$file" ] && ! cmp -s "$Q/$file" "$K/$file"; then
        t_fail "$name" "outputs agree but $file differs:" "$(cmp "$Q/$file" "$K/$file" 2>&1)" \
            "qemu: $($BM "$Q/$file" dump -n 2>&1 | head -20)" \
            "qkit: $($BM "$K/$file" dump -n 2>&1 | head -20)"
    else
        t_pass "$name"
    fi
}

# read_only NAME ARGS...: both tools on the same file of the QEMU side (for commands
# that read host allocation, which a copy may not keep exactly).
read_only() {
    local name=$1; shift
    local a b
    a=$(run_q qemu-img "$@")
    b=$( (cd "$Q" && "$QKIT_IMG" "$@" 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}") |
        sed -e "$DISK;$NODE")
    t_eq "$name" "$a" "$b"
}

# both_io NAME FILE ARGS...: the same for qemu-io and qkit-io (timing lines dropped).
both_io() {
    local name=$1 file=$2; shift 2
    local a b
    a=$(run_q qemu-io "$@" | grep -v ' ops/sec')
    b=$(run_k "$QKIT_IO" "$@" | grep -v ' ops/sec')
    if [ "$a" != "$b" ]; then
        t_eq "$name" "$a" "$b"
    elif ! cmp -s "$Q/$file" "$K/$file"; then
        t_fail "$name" "outputs agree but $file differs:" "$(cmp "$Q/$file" "$K/$file" 2>&1)" \
            "qemu: $($BM "$Q/$file" dump -n 2>&1 | head -20)" \
            "qkit: $($BM "$K/$file" dump -n 2>&1 | head -20)"
    else
        t_pass "$name"
    fi
}

# clean NAME FILE: qemu-img check finds nothing wrong in qkit's image.
clean() {
    local out
    if out=$(qemu-img check "$K/$2" 2>&1); then t_pass "$1"; else t_fail "$1" "$out"; fi
}

# ---------------------------------------------------------------- read QEMU's images
cd "$Q"
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-img bitmap --add a.qcow2 b1
qemu-img bitmap --add -g 4k --disable a.qcow2 b2
qemu-img bitmap --add -g 1M a.qcow2 "name with spaces"
qemu-io -c 'write 0 1M' -c 'write 5M 3k' -c 'write -z 9M 100k' a.qcow2 >/dev/null
qemu-img bitmap --enable a.qcow2 b2
qemu-io -c 'write 7M 3k' -c 'discard 12M 2M' a.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=4k small-clusters.qcow2 100M
qemu-img bitmap --add -g 512 small-clusters.qcow2 fine
qemu-io -c 'write 1000 70000' small-clusters.qcow2 >/dev/null
cp a.qcow2 inuse.qcow2
$BM inuse.qcow2 flags b1 3        # in-use + auto: left behind by a crashed writer
sync_dirs

for f in a.qcow2 small-clusters.qcow2 inuse.qcow2; do
    both "read $f: info" $f info $f
    both "read $f: info json" $f info --output=json $f
    both "read $f: check" $f check $f
    both "read $f: check json" $f check --output=json $f
    read_only "read $f: measure" measure --output=json -O qcow2 $f
    read_only "read $f: measure 4k clusters" measure -O qcow2 -o cluster_size=4k $f
done
both "read: info -U" a.qcow2 info -U a.qcow2
read_only "read: measure to compat 0.10 has no bitmaps line" \
    measure -O qcow2 -o compat=0.10 a.qcow2

# ---------------------------------------------------------------- qkit-img bitmap
cd "$Q"
qemu-img create -q -f qcow2 m.qcow2 64M
qemu-io -c 'write 0 1M' m.qcow2 >/dev/null
qemu-img create -q -f qcow2 src.qcow2 64M
qemu-img bitmap --add -g 4k src.qcow2 s1
qemu-io -c 'write 1M 5k' -c 'write 33M 1' src.qcow2 >/dev/null
qemu-img create -q -f qcow2 half.qcow2 32M
qemu-img bitmap --add half.qcow2 s1
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
qemu-img create -q -f raw r.raw 1M
cp src.qcow2 src-inuse.qcow2
$BM src-inuse.qcow2 flags s1 3
sync_dirs

long=$(printf 'x%.0s' {1..1023})
while read -r args; do
    eval "both \"bitmap \$args\" m.qcow2 bitmap $args"
done <<'EOF'
--add m.qcow2 b1
--add -g 4k --disable m.qcow2 b2
--add m.qcow2 b1
--clear m.qcow2 b1
--enable m.qcow2 b2
--disable m.qcow2 b1
--add --disable -g 512 m.qcow2 b3
--add -g 2G m.qcow2 huge
--merge b3 m.qcow2 b1
--merge b3 m.qcow2 nosuch
--merge nosuch m.qcow2 b1
--merge s1 -b src.qcow2 m.qcow2 b1
--merge s1 -b src.qcow2 -F qcow2 m.qcow2 b3
--merge s1 -b half.qcow2 m.qcow2 b1
--merge s1 -b src-inuse.qcow2 m.qcow2 b1
--merge nosuch -b src.qcow2 m.qcow2 b1
--merge s1 -b r.raw -F raw m.qcow2 b1
--merge s1 -b nonexist m.qcow2 b1
--merge s1 -b src.qcow2 -F raw m.qcow2 b1
--add -g 1M m.qcow2 b4 --merge b1 --disable
--remove m.qcow2 b2
--remove m.qcow2 b2
--add -g 1000 m.qcow2 b5
--add -g 256 m.qcow2 b5
--add -g 4G m.qcow2 b5
--add m.qcow2 ''
--add m.qcow2 "$long"
--add m.qcow2 "${long}y"
--remove m.qcow2 "$long"
--add v2.qcow2 b1
--add -f raw r.raw b1
--remove -f raw r.raw b1
--add nonexist b1
EOF
both "bitmap: resulting info" m.qcow2 info --output=json m.qcow2
clean "bitmap: qkit's image passes qemu-img check" m.qcow2
both "bitmap: check" m.qcow2 check m.qcow2

# QEMU's tools keep working on qkit's bitmaps.
for side in "$Q" "$K"; do
    (cd "$side" && qemu-img bitmap --merge b3 --enable m.qcow2 b4 &&
        qemu-io -c 'write 60M 1' m.qcow2 >/dev/null && qemu-img bitmap --remove m.qcow2 b1)
done
if cmp -s "$Q/m.qcow2" "$K/m.qcow2"; then
    t_pass "qemu-img bitmap and qemu-io on qkit's image: same result as on qemu-img's"
else
    t_fail "qemu-img bitmap and qemu-io on qkit's image: same result as on qemu-img's" \
        "$(diff <($BM "$Q/m.qcow2" dump -n) <($BM "$K/m.qcow2" dump -n))"
fi

# In-use bitmaps: only remove works; the others stay as they are.
cd "$Q"
cp a.qcow2 iu.qcow2
$BM iu.qcow2 flags b1 3
$BM iu.qcow2 flags b2 1
sync_dirs
while read -r args; do
    eval "both \"in-use: bitmap \$args\" iu.qcow2 bitmap $args"
done <<'EOF'
--clear iu.qcow2 b1
--enable iu.qcow2 b2
--disable iu.qcow2 b1
--merge b1 iu.qcow2 "name with spaces"
--merge "name with spaces" iu.qcow2 b1
--add iu.qcow2 b1
--remove iu.qcow2 b1
EOF
both "in-use: info after remove" iu.qcow2 info iu.qcow2

# ---------------------------------------------------------------- damaged directories
cd "$Q"
damage() {   # damage NAME QCOW2_BITMAPS_ARGS...
    local name=$1; shift
    cp a.qcow2 "$Q/bad.qcow2"
    $BM "$Q/bad.qcow2" "$@"
    cp "$Q/bad.qcow2" "$K/bad.qcow2"
    both "damaged ($name): info" bad.qcow2 info bad.qcow2
    both "damaged ($name): check" bad.qcow2 check bad.qcow2
    both "damaged ($name): writable open" bad.qcow2 bitmap --clear bad.qcow2 b1
}
damage "reserved field" ext reserved32 1
damage "zero bitmaps" ext nb_bitmaps 0
damage "too few entries" ext nb_bitmaps 4
damage "too many entries" ext nb_bitmaps 2
damage "over the limit" ext nb_bitmaps 70000
damage "unaligned directory" ext dir_offset 0x80001
damage "empty directory" ext dir_size 0
damage "huge directory" ext dir_size 67107841
damage "short directory" ext dir_size 40
damage "extra data" entry b1 extra_data_size 8
damage "granularity 2^8" entry b2 granularity_bits 8
damage "granularity 2^32" entry b2 granularity_bits 32
damage "type 2" entry b2 type 2
damage "empty table" entry b2 table_size 0
damage "table too big" entry b2 table_size 2
damage "unaligned table" entry b2 table_offset 0x70001
damage "reserved flag" entry b2 flags 4
damage "empty name" entry b2 name_size 0

# The bitmaps extension without its autoclear bit: a program without bitmap support
# wrote the image. Readers warn; a writer drops the extension (leaking its clusters).
cd "$Q"
cp a.qcow2 stale.qcow2
python3 "$TOP/tests/integration/qcow2_tool.py" stale.qcow2 hdr autoclear_features 0
cp stale.qcow2 stale2.qcow2
sync_dirs
both "stale extension: info" stale.qcow2 info stale.qcow2
both "stale extension: check" stale.qcow2 check stale.qcow2
both_io "stale extension: a write drops it" stale.qcow2 -c 'write 0 4k' stale.qcow2
both "stale extension: check -r" stale2.qcow2 check -r all stale2.qcow2
both "compat 0.10 keeps the extension" a.qcow2 amend -o compat=0.10 a.qcow2
both "compat 0.10 with the extension: info" a.qcow2 info a.qcow2

# ---------------------------------------------------------------- writes
cd "$Q"
qemu-img create -q -f qcow2 w.qcow2 64M
qemu-img bitmap --add w.qcow2 b64k
qemu-img bitmap --add -g 512 w.qcow2 b512
qemu-img bitmap --add -g 1M --disable w.qcow2 off
sync_dirs
io=(-c 'write 100 1' -c 'write 1M 64k' -c 'write 3000000 70000' -c 'write -z 8M 1M'
    -c 'write -z 12345 1000' -c 'discard 16M 2M' -c 'discard 20M 1000' -c 'write -c 24M 64k'
    -c 'aio_write 30M 4k' -c 'aio_flush' -c 'writev 40M 512 1k' -c 'write 67108352 512')
both_io "writes mark enabled bitmaps" w.qcow2 "${io[@]}" w.qcow2
both_io "writes with discard passed down" w.qcow2 -d unmap -c 'discard 50M 3M' \
    -c 'write -z -u 56M 1M' w.qcow2
both "writes: info" w.qcow2 info w.qcow2
clean "writes: qemu-img check" w.qcow2
if $BM "$K/w.qcow2" ranges off | grep -q .; then
    t_fail "writes leave the disabled bitmap clean" "$($BM "$K/w.qcow2" dump -n)"
else
    t_pass "writes leave the disabled bitmap clean"
fi
if $BM "$K/w.qcow2" ranges b512 | grep -qx "3000000 70000"; then
    t_fail "writes: 512-byte granules rounded outwards" "$($BM "$K/w.qcow2" ranges b512)"
else
    t_ok "writes: 512-byte granules rounded outwards" \
        grep -qx "2999808 70656" <($BM "$K/w.qcow2" ranges b512)
fi
both_io "reads change no bit" w.qcow2 -c 'read 0 1M' -c 'read 30M 64k' w.qcow2

# Readers never write: the image with bitmaps stays as it was.
sum=$(file_sum "$K/w.qcow2")
(cd "$K" && for args in "info w.qcow2" "check w.qcow2" "map w.qcow2" "compare w.qcow2 w.qcow2" \
        "measure -O qcow2 w.qcow2" "convert --bitmaps -O qcow2 w.qcow2 w-copy.qcow2"; do
    "$QKIT_IMG" $args >/dev/null 2>&1
done; "$QKIT_IO" -r -c 'read 0 64k' w.qcow2 >/dev/null 2>&1)
t_eq "readers leave an image with bitmaps untouched" "$sum" "$(file_sum "$K/w.qcow2")"

# A write that finds the image corrupt: no more metadata is written, bitmaps included.
cp "$Q/w.qcow2" "$Q/corrupt.qcow2"
python3 "$TOP/tests/integration/qcow2_tool.py" "$Q/corrupt.qcow2" l1 0 0x10200
cp "$Q/corrupt.qcow2" "$K/corrupt.qcow2"
both_io "corruption found by a write leaves the bitmaps in-use" corrupt.qcow2 \
    -c 'write 0 4k' corrupt.qcow2

# QEMU reads the dirty map qkit wrote (qemu-nbd + nbdinfo), the same as its own.
if command -v nbdinfo >/dev/null && command -v qemu-nbd >/dev/null; then
    for b in b64k b512; do
        a=$(nbdinfo --map=qemu:dirty-bitmap:$b -- [ qemu-nbd -r -f qcow2 -B $b "$Q/w.qcow2" ] 2>&1)
        k=$(nbdinfo --map=qemu:dirty-bitmap:$b -- [ qemu-nbd -r -f qcow2 -B $b "$K/w.qcow2" ] 2>&1)
        if [ -n "$a" ] && grep -q dirty <<<"$k"; then
            t_eq "qemu-nbd -B $b: dirty map of qkit's writes" "$a" "$k"
        else
            t_fail "qemu-nbd -B $b: dirty map of qkit's writes" "$a" "$k"
        fi
    done
else
    t_skip "qemu-nbd -B: dirty maps" "nbdinfo or qemu-nbd not installed"
fi

# While a writer runs, its bitmaps are in-use on disk; a crash leaves them so.
cd "$K"
cp w.qcow2 crash.qcow2
mkfifo cmds
"$QKIT_IO" crash.qcow2 <cmds >/dev/null 2>&1 &
pid=$!
exec 3>cmds
echo "write 0 4k" >&3
for _ in $(seq 100); do
    [ "$($BM crash.qcow2 flags b64k)" = 3 ] && break
    sleep 0.1
done
t_eq "a writer marks its bitmaps in-use" "3 3 1" \
    "$($BM crash.qcow2 flags b64k) $($BM crash.qcow2 flags b512) $($BM crash.qcow2 flags off)"
{ kill -9 $pid; wait $pid; } 2>/dev/null
exec 3>&-
rm -f cmds
cp crash.qcow2 "$Q/crash.qcow2"
both "after a crash: info shows in-use" crash.qcow2 info crash.qcow2
both "after a crash: check" crash.qcow2 check crash.qcow2
both "after a crash: convert --bitmaps refuses" crash.qcow2 \
    convert --bitmaps -O qcow2 crash.qcow2 crash-out.qcow2
both "after a crash: bitmap --remove" crash.qcow2 bitmap --remove crash.qcow2 b64k

# ---------------------------------------------------------------- convert and resize
cd "$Q"
qemu-img create -q -f qcow2 c.qcow2 64M
qemu-img bitmap --add c.qcow2 b1
qemu-img bitmap --add -g 4k --disable c.qcow2 b2
qemu-img bitmap --add -g 1M c.qcow2 b3
qemu-io -c 'write 0 1M' -c 'write 5M 3k' c.qcow2 >/dev/null
qemu-img bitmap --enable c.qcow2 b2
qemu-io -c 'write 7M 3k' c.qcow2 >/dev/null
cp c.qcow2 c-inuse.qcow2
$BM c-inuse.qcow2 flags b2 1
$BM c-inuse.qcow2 flags b3 3
qemu-img create -q -f qcow2 -o compat=0.10 c-v2.qcow2 64M
sync_dirs
while read -r args; do
    eval "both \"convert \$args\" out.qcow2 convert $args"
done <<'EOF'
--bitmaps -O qcow2 c.qcow2 out.qcow2
--bitmaps -O qcow2 -o cluster_size=4k c.qcow2 out.qcow2
--bitmaps -c -O qcow2 c.qcow2 out.qcow2
--bitmaps -O qcow2 -o compat=0.10 c.qcow2 out.qcow2
--bitmaps -O raw c.qcow2 out.qcow2
--bitmaps -O qcow2 c-v2.qcow2 out.qcow2
--bitmaps -O qcow2 c-inuse.qcow2 out.qcow2
--bitmaps --skip-broken-bitmaps -O qcow2 c-inuse.qcow2 out.qcow2
--skip-broken-bitmaps -O qcow2 c.qcow2 out.qcow2
-O qcow2 c.qcow2 out.qcow2
EOF
# Both ways: each tool converts the other one's bitmaps.
(cd "$Q" && "$QKIT_IMG" convert --bitmaps -O qcow2 c.qcow2 by-qkit.qcow2 &&
    qemu-img convert --bitmaps -O qcow2 by-qkit.qcow2 back.qcow2)
(cd "$K" && qemu-img convert --bitmaps -O qcow2 c.qcow2 by-qkit.qcow2 &&
    "$QKIT_IMG" convert --bitmaps -O qcow2 by-qkit.qcow2 back.qcow2)
t_ok "convert --bitmaps: qkit-img's output is qemu-img's" cmp "$Q/by-qkit.qcow2" "$K/by-qkit.qcow2"
t_ok "convert --bitmaps: and back again" cmp "$Q/back.qcow2" "$K/back.qcow2"
t_eq "convert --bitmaps: dirty bits kept" "$($BM "$Q/c.qcow2" dump -n)" \
    "$($BM "$Q/back.qcow2" dump -n)"
read_only "measure: in-use bitmaps count too" measure -O qcow2 c-inuse.qcow2

both "resize grow keeps bitmaps" c.qcow2 resize c.qcow2 +64M
both "resize shrink keeps bitmaps" c.qcow2 resize --shrink c.qcow2 32M
both "resize: info" c.qcow2 info --output=json c.qcow2
clean "resize: qemu-img check" c.qcow2

# Internal snapshots: creating one keeps the bitmaps; applying one is refused.
cd "$Q"
qemu-img create -q -f qcow2 sn.qcow2 1M
qemu-img snapshot -c s1 sn.qcow2
qemu-img bitmap --add --disable sn.qcow2 d
sync_dirs
both "snapshot -a with bitmaps is refused" sn.qcow2 snapshot -a s1 sn.qcow2
both "snapshot -a of a missing snapshot, with bitmaps" sn.qcow2 snapshot -a nosuch sn.qcow2
both "snapshot -d with bitmaps" sn.qcow2 snapshot -d s1 sn.qcow2

# Copy-on-read copies data into the overlay without dirtying its bitmaps.
cd "$Q"
qemu-img create -q -f qcow2 cor-base.qcow2 4M
qemu-io -c 'write 0 1M' cor-base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b cor-base.qcow2 -F qcow2 cor.qcow2
qemu-img bitmap --add cor.qcow2 b
sync_dirs
both_io "copy-on-read leaves bitmaps clean" cor.qcow2 -C -c 'read 0 128k' -c 'write 2M 4k' \
    cor.qcow2

# Reopening the backing file read-write (commit) marks and stores its bitmaps.
cd "$Q"
cp w.qcow2 base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write 33M 4k' top.qcow2 >/dev/null
sync_dirs
both "commit into an image with bitmaps" base.qcow2 commit top.qcow2
clean "commit: qemu-img check of the base" base.qcow2
