#!/bin/bash
# qkit-img subcommands against qemu-img 7.2: the same arguments on identical copies of
# the same images must print the same text (stdout and stderr) and exit the same way.
source "$(dirname "$0")/lib.sh"

if ! command -v qemu-img >/dev/null; then
    t_skip "img-basic" "qemu-img not installed"
    exit 0
fi
t_need "img-basic: tools built" "$QKIT_IMG" || exit 0

Q=$T/q   # qemu-img works here
K=$T/k   # qkit-img works here, on copies of the same files
mkdir -p "$Q" "$K"

# Copy the reference tree to qkit's side, keeping holes so "disk size" agrees.
sync_dirs() { rm -rf "$K"; cp -a "$Q" "$K"; }

# both NAME ARGS...: run each tool in its own directory, compare output and exit code.
both() {
    local name=$1; shift
    local a b
    a=$(cd "$Q" && qemu-img "$@" 2>&1; echo "rc=$?")
    b=$(cd "$K" && "$QKIT_IMG" "$@" 2>&1 | swap_names; echo "rc=${PIPESTATUS[0]}")
    t_eq "$name" "$a" "$b"
}

# both_f FILTER NAME ARGS...: like both, with a sed filter for lines that differ by
# nature (the host bytes a different allocator uses).
both_f() {
    local filter=$1 name=$2; shift 2
    local a b
    a=$(cd "$Q" && qemu-img "$@" 2>&1 | sed -e "$filter"; echo "rc=${PIPESTATUS[0]}")
    b=$(cd "$K" && "$QKIT_IMG" "$@" 2>&1 | swap_names | sed -e "$filter";
        echo "rc=${PIPESTATUS[0]}")
    t_eq "$name" "$a" "$b"
}

# same_content NAME FILE: the image changed by each tool reads the same (per qemu-img).
same_content() {
    local out
    if out=$(qemu-img compare "$Q/$2" "$K/$2" 2>&1); then
        t_pass "$1"
    else
        t_fail "$1" "$out"
    fi
}

# clean NAME FILE: qemu-img check finds no errors in qkit's result.
clean() {
    local out
    if out=$(qemu-img check "$K/$2" 2>&1); then t_pass "$1"; else t_fail "$1" "$out"; fi
}

DISK='s/^disk size: .*/disk size: X/; s/"actual-size": [0-9]*/"actual-size": X/'

# ---------------------------------------------------------------- raw images
cd "$Q"
qemu-img create -q -f raw r1.img 1M
qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 512k 4k' r1.img >/dev/null
qemu-img create -q -f raw r2.img 2M
qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 512k 4k' \
    -c 'write -P 0x33 1536k 1' r2.img >/dev/null
cp r1.img r3.img
qemu-io -f raw -c 'write -P 0x44 700 1' r3.img >/dev/null
mkdir -p sub
qemu-img create -q -f raw "sub/we ird\"é.img" 64k
sync_dirs

both "raw: info" info -f raw r1.img
both "raw: info json" info -f raw --output=json r1.img
both "raw: info backing chain json" info -f raw --backing-chain --output=json r2.img
both "raw: info backing chain human" info -f raw --backing-chain r2.img
both_f "$DISK" "raw: info json escapes odd names" info --output=json "sub/we ird\"é.img"
both "raw: info missing file" info nonexist.img
both "raw: info unknown driver" info -f foo r1.img
both "raw: info no file" info
both "raw: info two files" info r1.img r2.img
both "raw: info bad option" info -x r1.img
both "raw: info missing argument" info -f
both "raw: info bad output" info --output=xml r1.img

both "raw: check unsupported" check -f raw r1.img
both "raw: check json unsupported" check --output=json r1.img
both "raw: check bad -r" check -r foo r1.img
both "raw: check bad cache" check -T foo r1.img

both "raw: map" map -f raw r2.img
both "raw: map json" map -f raw --output=json r2.img
both "raw: map window" map -f raw --output=json --start-offset=1000 --max-length=600k r2.img
both "raw: map past end" map -f raw --output=json --start-offset=4M r2.img
both "raw: map zero length" map -f raw --output=json --max-length=0 r2.img
both "raw: map bad offset" map --start-offset=x r2.img
both "raw: map offset too large" map --start-offset=9E r2.img

both "raw: compare identical" compare -f raw -F raw r1.img r1.img
both "raw: compare sector mismatch" compare -f raw -F raw r1.img r3.img
both "raw: compare size mismatch" compare -f raw -F raw r1.img r2.img
both "raw: compare strict size" compare -s -f raw -F raw r1.img r2.img
both "raw: compare quiet" compare -q -f raw -F raw r1.img r3.img
both "raw: compare open error" compare -f raw r1.img nonexist.img
both "raw: compare one file" compare r1.img
both "raw: compare progress" compare -p -f raw -F raw r1.img r1.img

both "raw: measure size" measure --size 1G -O raw
both "raw: measure json" measure --output=json --size 1G -O raw
both "raw: measure size and file" measure --size 1G r1.img
both "raw: measure nothing" measure -O raw
both "raw: measure bad format" measure -O foo --size 1M
both "raw: measure bad option" measure -O raw -o foo=bar --size 1M
both "raw: measure bad size" measure --size 1x

both "raw: snapshot list" snapshot -l r1.img
both "raw: snapshot create unsupported" snapshot -c s1 r1.img
both "raw: snapshot mixed actions" snapshot -l -c s1 r1.img
both "raw: snapshot delete missing" snapshot -d s1 r1.img

# create: the Formatting line, option parsing and every early error
both "create raw" create -f raw new1.img 1M
both "create default format, fraction" create new2.img 1.5k
both "create raw options" create -f raw -o preallocation=falloc,nocow=off,extent_size_hint=1M \
    new3.img 64k
both "create -o help" create -f raw -o help
both "create -o help with file" create -f raw -o help new4.img
both "create -o ?" create -o '?' new4.img
both "create quiet" create -q -f raw new5.img 4k
both "create no size" create -f raw new6.img
both "create size twice" create -f raw -o size=2M new6.img 3M
both "create size in -o" create -f raw -o size=2M new7.img
both "create bad size" create -f raw new6.img 1x
both "create negative size" create -f raw new6.img -- -1
both "create huge size" create -f raw new6.img 99E
both "create unknown format" create -f foo new6.img 1M
both "create invalid parameter" create -f raw -o foo=bar new6.img 1M
both "create bad size option" create -f raw -o size=abc new6.img
both "create bad bool option" create -f raw -o nocow=maybe new6.img 1M
both "create empty option list" create -f raw -o '' new6.img 1M
both "create trailing comma" create -f raw -o 'a,' new6.img 1M
both "create extra argument" create -f raw new6.img 1M extra
both "create no filename" create -f raw
both "create backing unsupported" create -f raw -b r1.img -F raw new6.img 1M
for f in new1.img new2.img new3.img new5.img new7.img; do
    a=$(stat -c %s "$Q/$f" 2>&1); b=$(stat -c %s "$K/$f" 2>&1)
    t_eq "create $f: file size" "$a" "$b"
done

# resize on raw, the size argument parsed as qemu-img does (a leading '-' is a shrink)
both "raw: resize grow" resize -f raw r2.img +1M
both "raw: resize shrink refused" resize -f raw r2.img -1M
both "raw: resize shrink" resize -f raw --shrink r2.img -512k
both "raw: resize absolute" resize -f raw r2.img 3M
both "raw: resize to zero" resize -f raw --shrink r2.img 0
both "raw: resize bad size" resize -f raw r2.img 1x
both "raw: resize falloc" resize -f raw --preallocation=falloc r2.img 4M
both "raw: resize prealloc grow only" resize -f raw --preallocation=full r2.img 4M
both "raw: resize bad prealloc" resize -f raw --preallocation=foo r2.img 5M
both "raw: resize no size" resize -f raw r2.img
both "raw: resize quiet" resize -q -f raw r2.img 5M
both "raw: resize probed" resize r2.img +1k
same_content "raw: resize leaves the same content" r2.img

both "raw: amend unsupported" amend -o size=2M -f raw r1.img
both "raw: amend help unsupported" amend -o help -f raw r1.img
both "raw: amend without -o" amend r1.img
both "raw: commit without backing" commit -f raw r1.img
both "raw: commit bad cache" commit -t foo r1.img
both "raw: commit bad rate" commit -r 1x r1.img
both "raw: rebase needs -b" rebase r1.img
both "raw: rebase unsupported" rebase -f raw -u -b r2.img -F raw r1.img

# ---------------------------------------------------------------- qcow2 images
if ! (cd "$T" && "$QKIT_IMG" create -q -f qcow2 probe.qcow2 1M >/dev/null 2>&1 &&
      qemu-img check -q probe.qcow2); then
    t_skip "img-basic: qcow2 subcommands" "qkit-img cannot create qcow2 images yet"
    exit 0
fi

cd "$Q"
rm -rf ./*
qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 4M 64k' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 3 512k 1M' -c 'write -z 8M 1M' top.qcow2 >/dev/null
qemu-img snapshot -c snap1 top.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
qemu-img create -q -f qcow2 bm.qcow2 1M
qemu-img bitmap --add bm.qcow2 b1
qemu-img bitmap --add -g 128k --disable bm.qcow2 b2
mkdir -p sub
qemu-img create -q -f qcow2 -b ../base.qcow2 -F qcow2 sub/t.qcow2
sync_dirs

both_f "$DISK" "qcow2: info" info top.qcow2
both_f "$DISK" "qcow2: info json" info --output=json top.qcow2
both_f "$DISK" "qcow2: info backing chain" info --backing-chain top.qcow2
both_f "$DISK" "qcow2: info backing chain json" info --backing-chain --output=json top.qcow2
both_f "$DISK" "qcow2: info actual path" info sub/t.qcow2
both_f "$DISK" "qcow2: info compat 0.10" info --output=json v2.qcow2
both_f "$DISK" "qcow2: info bitmaps" info bm.qcow2
both_f "$DISK" "qcow2: info bitmaps json" info --output=json bm.qcow2
both_f "$DISK" "qcow2: info wrong format" info -f qcow2 base.qcow2
both "qcow2: check" check top.qcow2
both "qcow2: check json" check --output=json top.qcow2
both "qcow2: check quiet" check -q top.qcow2
both "qcow2: map" map top.qcow2
both "qcow2: map json" map --output=json top.qcow2
both "qcow2: map window" map --output=json --start-offset=600k --max-length=1M top.qcow2
both "qcow2: compare identical" compare top.qcow2 top.qcow2
both "qcow2: compare differ" compare top.qcow2 base.qcow2
both "qcow2: compare strict" compare -s top.qcow2 base.qcow2
both "qcow2: snapshot list" snapshot -l top.qcow2
both "qcow2: measure" measure -O qcow2 top.qcow2
both "qcow2: measure json" measure --output=json -O qcow2 top.qcow2
both "qcow2: measure size" measure -O qcow2 --size 1G
both "qcow2: measure options" measure -O qcow2 -o cluster_size=4k,preallocation=full --size 100M
both "qcow2: measure bitmaps" measure --output=json -O qcow2 bm.qcow2

both "qcow2: create" create -f qcow2 c1.qcow2 64M
both "qcow2: create options" create -f qcow2 -o cluster_size=4k,lazy_refcounts=on c2.qcow2 1G
both "qcow2: create backing, size from it" create -f qcow2 -b base.qcow2 -F qcow2 c3.qcow2
both "qcow2: create backing without format" create -f qcow2 -b base.qcow2 c4.qcow2
both "qcow2: create missing backing" create -f qcow2 -b nonexist -F qcow2 c4.qcow2
both "qcow2: create unsafe backing" create -f qcow2 -u -b nonexist -F qcow2 c5.qcow2 1M
both "qcow2: create same name as backing" create -f qcow2 -b c6.qcow2 -F qcow2 c6.qcow2 1M
both "qcow2: create empty backing name" create -f qcow2 -b "" -F qcow2 c6.qcow2 1M
both "qcow2: create -o help" create -f qcow2 -o help
both "qcow2: create -o help with file" create -f qcow2 -o help c6.qcow2
both "qcow2: create bad bool" create -f qcow2 -o lazy_refcounts=maybe c6.qcow2 1M
for f in c1 c2 c3 c5; do
    both_f "$DISK" "qcow2: info of created $f" info --output=json $f.qcow2
done
clean "qcow2: created image is clean" c2.qcow2

# commands that change images: same messages, and an image qemu-img accepts
both "qcow2: snapshot create" snapshot -c snap2 top.qcow2
clean "qcow2: snapshot create leaves a clean image" top.qcow2
both_f 's/ [0-9-]* [0-9:]* 00:00:00.000 / DATE 00:00:00.000 /' \
    "qcow2: snapshot list after create" snapshot -l top.qcow2
both "qcow2: snapshot apply" snapshot -a snap1 top.qcow2
same_content "qcow2: snapshot apply content" top.qcow2
both "qcow2: snapshot apply missing" snapshot -a nosuch top.qcow2
both "qcow2: snapshot delete" snapshot -d snap2 top.qcow2
both "qcow2: snapshot delete missing" snapshot -d snap2 top.qcow2
clean "qcow2: snapshot delete leaves a clean image" top.qcow2

both "qcow2: resize grow" resize top.qcow2 +1M
both "qcow2: resize shrink refused" resize top.qcow2 -- -1M
same_content "qcow2: resize content" top.qcow2
clean "qcow2: resize leaves a clean image" top.qcow2

both "qcow2: amend compat" amend -o compat=0.10 v2.qcow2
both "qcow2: amend lazy refcounts" amend -o compat=1.1,lazy_refcounts=on v2.qcow2
both_f "$DISK" "qcow2: info after amend" info --output=json v2.qcow2
both "qcow2: amend create-only option" amend -o cluster_size=4k v2.qcow2
both "qcow2: amend unknown option" amend -o foo=bar v2.qcow2
both "qcow2: amend help" amend -o help v2.qcow2
both "qcow2: amend help by format" amend -f qcow2 -o help
clean "qcow2: amend leaves a clean image" v2.qcow2

cd "$Q"
cp base.qcow2 cb.qcow2
qemu-img create -q -f qcow2 -b cb.qcow2 -F qcow2 ct.qcow2
qemu-io -c 'write -P 7 0 128k' -c 'write -z 256k 64k' -c 'write -P 8 60M 1M' \
    ct.qcow2 >/dev/null
qemu-img create -q -f qcow2 rb1.qcow2 4M
qemu-io -c 'write -P 1 0 1M' rb1.qcow2 >/dev/null
qemu-img create -q -f qcow2 rb2.qcow2 4M
qemu-io -c 'write -P 1 0 512k' -c 'write -P 2 2M 64k' rb2.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b rb1.qcow2 -F qcow2 rbt.qcow2
qemu-io -c 'write -P 3 3M 64k' rbt.qcow2 >/dev/null
cp rbt.qcow2 rbt2.qcow2
cp rbt.qcow2 rbt3.qcow2
sync_dirs
# Reference content before the chain is changed.
qemu-img convert -O raw "$Q/ct.qcow2" "$T/ct.raw"
qemu-img convert -O raw "$Q/rbt.qcow2" "$T/rbt.raw"

both "qcow2: commit" commit ct.qcow2
same_content "qcow2: commit into base" cb.qcow2
clean "qcow2: committed base is clean" cb.qcow2
clean "qcow2: emptied top is clean" ct.qcow2
out=$(qemu-img compare -F raw "$K/ct.qcow2" "$T/ct.raw" 2>&1)
t_eq "qcow2: content kept after commit" "Images are identical." "$out"
both "qcow2: commit base not in chain" commit -b nonexist ct.qcow2

both "qcow2: rebase safe" rebase -b rb2.qcow2 -F qcow2 rbt.qcow2
out=$(qemu-img compare -F raw "$K/rbt.qcow2" "$T/rbt.raw" 2>&1)
t_eq "qcow2: content kept after safe rebase" "Images are identical." "$out"
clean "qcow2: rebased image is clean" rbt.qcow2
both_f "$DISK" "qcow2: info after rebase" info rbt.qcow2
both "qcow2: rebase without format" rebase -b rb2.qcow2 rbt2.qcow2
both "qcow2: rebase missing new backing" rebase -b nonexist -F qcow2 rbt2.qcow2
both "qcow2: rebase onto nothing" rebase -b "" rbt3.qcow2
out=$(qemu-img compare -F raw "$K/rbt3.qcow2" "$T/rbt.raw" 2>&1)
t_eq "qcow2: content kept after rebase onto nothing" "Images are identical." "$out"
both "qcow2: rebase unsafe" rebase -u -b rb1.qcow2 -F qcow2 rbt3.qcow2
both_f "$DISK" "qcow2: info after unsafe rebase" info rbt3.qcow2

# check on damaged images: leaked clusters, a cluster in use with refcount 0, repair
cd "$Q"
rm -rf ./*
# refcount_set FILE CLUSTER VALUE: patch the 16-bit refcount of a cluster (first block).
refcount_set() {
    local rt rb
    rt=$(od -An -tu8 --endian=big -j 48 -N 8 "$1" | tr -d ' ')
    rb=$(od -An -tu8 --endian=big -j "$rt" -N 8 "$1" | tr -d ' ')
    printf "$(printf '\\x%02x\\x%02x' $(($3 >> 8)) $(($3 & 255)))" |
        dd of="$1" bs=1 seek=$((rb + 2 * $2)) conv=notrunc status=none
}
qemu-img create -q -f qcow2 leak.qcow2 4M
qemu-io -c 'write -P 1 0 256k' leak.qcow2 >/dev/null
n=$(( $(stat -c %s leak.qcow2) / 65536 ))
truncate -s $(( (n + 2) * 65536 )) leak.qcow2
refcount_set leak.qcow2 "$n" 1
refcount_set leak.qcow2 $((n + 1)) 1
cp leak.qcow2 corrupt.qcow2
refcount_set corrupt.qcow2 $((n - 1)) 0
cp leak.qcow2 leak-fix.qcow2
cp corrupt.qcow2 corrupt-fix.qcow2
sync_dirs

# check_out DIR TOOL ARGS...: what check prints on stdout, and its exit code.
check_out() {
    local dir=$1 tool=$2; shift 2
    (cd "$dir" && "$tool" check "$@" 2>/dev/null; echo "rc=$?")
}
for args in "leak.qcow2" "--output=json leak.qcow2" "corrupt.qcow2" \
            "--output=json corrupt.qcow2" "-r leaks leak-fix.qcow2" \
            "-r all --output=json corrupt-fix.qcow2"; do
    # shellcheck disable=SC2086
    t_eq "qcow2: check $args" "$(check_out "$Q" qemu-img $args)" \
        "$(check_out "$K" "$QKIT_IMG" $args)"
done
both_f '/^Repairing\|^Rebuilding\|^ERROR\|^Leaked/d' "qcow2: check messages" \
    check corrupt.qcow2
clean "qcow2: leaks repaired" leak-fix.qcow2
clean "qcow2: corruption repaired" corrupt-fix.qcow2
