#!/usr/bin/env bash
# qkit-img convert, dd, bench and bitmap against qemu-img 7.2 on the same inputs.
# Source images are made by qemu-img/qemu-io (and plain files), so a failure here
# points at the copy, not at image creation. For each convert case:
#  - the qkit output passes `qemu-img check` (qcow2) and compares equal to the source;
#  - `qemu-img map --output=json` of qkit's output equals that of qemu-img's own
#    convert output: holes and zeroes are preserved exactly as qemu-img preserves them;
#  - for the sequential (default) cases the two files are byte-identical where
#    qemu-img's layout is reproducible.
# dd and bench outputs are compared with qemu-img's (bench: all but the timing line),
# and their images cross-checked; error messages are compared text for text.
source "$(dirname "$0")/lib.sh"
T_TIMEOUT=120

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    t_fail "convert: reference tools" "qemu-img/qemu-io not installed (scripts/deps.sh test)"
    exit 0
fi
cd "$T" || exit 1

MiB=$((1024 * 1024))

# Run one tool, output with the program name normalised, then "rc=N".
run_tool() {
    local tool=$1; shift
    local out rc
    out=$(timeout "$T_TIMEOUT" "$tool" "$@" 2>&1); rc=$?
    printf '%s\nrc=%d\n' "$out" "$rc" | swap_names |
        sed -e 's/Run completed in [0-9.]* seconds/Run completed in X seconds/' \
            -e 's/#block[0-9]*/#blockN/g' -e $'s/\rqkit-img: /\rqemu-img: /'
}

# same_output NAME ARGS...: qkit-img and qemu-img print the same and exit alike.
# Output files named out.* are removed after each tool so both start clean.
same_output() {
    local name=$1; shift
    rm -f out.*
    local e k
    e=$(run_tool qemu-img "$@"); rm -f out.*
    k=$(run_tool "$QKIT_IMG" "$@"); rm -f out.*
    t_eq "$name" "$e" "$k"
}

map_json() { qemu-img map --output=json "$@" 2>&1; }

# convert_case NAME FMT_OUT_FOR_CHECK CONVERT_ARGS... SRC...: convert with both tools
# (qkit to k.out, qemu to e.out) and cross-check the results.
convert_case() {
    local name=$1 check_fmt=$2; shift 2
    rm -f k.out e.out
    local out rc
    out=$(timeout "$T_TIMEOUT" "$QKIT_IMG" convert "$@" k.out 2>&1); rc=$?
    if [ $rc -ne 0 ]; then
        t_fail "convert $name: runs" "exit $rc" "$out"
        return
    fi
    t_pass "convert $name: runs"
    qemu-img convert "$@" e.out
    if [ "$check_fmt" = qcow2 ]; then
        t_ok "convert $name: qemu-img check" qemu-img check -q -f qcow2 k.out
    fi
    t_ok "convert $name: equal to qemu-img's output" \
        qemu-img compare -q -f "$check_fmt" -F "$check_fmt" k.out e.out
    if [ "$check_fmt" = raw ]; then
        # qemu-img's file protocol allocates the first block of a new file (checked
        # once below); the holes after it are convert's doing.
        t_eq "convert $name: map as qemu-img's (from 4 KiB)" \
            "$(map_json -f raw --start-offset=4096 e.out)" \
            "$(map_json -f raw --start-offset=4096 k.out)"
    else
        t_eq "convert $name: map as qemu-img's" "$(map_json -f "$check_fmt" e.out)" \
            "$(map_json -f "$check_fmt" k.out)"
    fi
}

# ---- source images ----
# mixed.raw: random data, compressible text, written zeroes, holes, an odd tail.
python3 - mixed.raw $((48 * MiB)) <<'PY'
import os, random, sys
path, size = sys.argv[1], int(sys.argv[2])
random.seed(7)
words = b"qkit block layer cluster refcount l2 table snapshot backing chain ".split()
text = b" ".join(random.choice(words) for _ in range(200000))
kinds = "rtzhhs"
with open(path, "wb") as f:
    f.truncate(size)
    off = 0
    while off < size:
        kind = random.choice(kinds)
        ln = min(random.choice([4096, 65536, 1 << 20, 3 << 20, 3584, 12288]), size - off)
        f.seek(off)
        if kind == "r":
            f.write(os.urandom(ln))
        elif kind == "t":
            f.write((text * (ln // len(text) + 1))[:ln])
        elif kind == "z":
            f.write(bytes(ln))
        elif kind == "s":
            for o in range(0, ln, 65536):
                f.seek(off + o)
                f.write(os.urandom(min(512, ln - o)))
        off += ln
PY
head -c 3000 /dev/urandom > odd.raw
# A qcow2 chain written by QEMU: base with data, top with data, a zeroed range and
# data past the base's end.
qemu-img create -q -f qcow2 base.qcow2 32M
qemu-io -f qcow2 -c 'write -P 0x11 0 4M' -c 'write -P 0x22 10M 1M' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 40M
qemu-io -f qcow2 -c 'write -P 0x33 1M 1M' -c 'write -z 10M 64k' -c 'write -P 0x44 36M 1M' \
    top.qcow2 >/dev/null
# QEMU's own compressed qcow2 (zlib and zstd) of the mixed data.
qemu-img convert -f raw -O qcow2 -c mixed.raw qemu-zlib.qcow2
qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd mixed.raw qemu-zstd.qcow2

# ---- convert: formats and options ----
convert_case "raw->qcow2" qcow2 -f raw -O qcow2 mixed.raw
if cmp -s k.out e.out; then t_pass "convert raw->qcow2: byte-identical to qemu-img"; else
    t_fail "convert raw->qcow2: byte-identical to qemu-img"; fi
convert_case "qcow2->raw" raw -f qcow2 -O raw qemu-zlib.qcow2
convert_case "raw->raw" raw -f raw -O raw mixed.raw
convert_case "-c zlib" qcow2 -f raw -O qcow2 -c mixed.raw
if cmp -s k.out e.out; then t_pass "convert -c zlib: byte-identical to qemu-img"; else
    t_fail "convert -c zlib: byte-identical to qemu-img"; fi
t_ok "convert -c zlib: clusters are compressed" \
    bash -c "qemu-img check k.out | grep -q '[1-9][0-9.]*% compressed clusters'"
convert_case "-c zstd" qcow2 -f raw -O qcow2 -c -o compression_type=zstd mixed.raw
t_eq "convert -c zstd: compression type" "$(qemu-img info e.out | grep 'compression type')" \
    "$(qemu-img info k.out | grep 'compression type')"
convert_case "qemu zstd qcow2 -> qcow2" qcow2 -O qcow2 qemu-zstd.qcow2
convert_case "-o cluster_size=4k" qcow2 -O qcow2 -o cluster_size=4k mixed.raw
convert_case "-o compat=0.10" qcow2 -O qcow2 -o compat=0.10 -f raw mixed.raw
t_eq "convert -o compat=0.10: compat" "$(qemu-img info e.out | grep compat:)" \
    "$(qemu-img info k.out | grep compat:)"
convert_case "-S 0 (fully allocated)" qcow2 -O qcow2 -S 0 -f raw mixed.raw
convert_case "-S 64k" qcow2 -O qcow2 -S 64k -f raw mixed.raw
convert_case "-c -S 0" qcow2 -O qcow2 -c -S 0 -f raw mixed.raw
convert_case "backing chain flattened" qcow2 -O qcow2 top.qcow2
convert_case "-B backing kept" qcow2 -O qcow2 -B base.qcow2 -F qcow2 top.qcow2
t_eq "convert -B: backing file recorded" "$(qemu-img info e.out | grep '^backing file')" \
    "$(qemu-img info k.out | grep '^backing file')"
convert_case "several sources" qcow2 -O qcow2 odd.raw top.qcow2 odd.raw
convert_case "several sources, -c" qcow2 -O qcow2 -c odd.raw mixed.raw
convert_case "-W out of order" raw -O raw -W -m 16 -f raw mixed.raw
convert_case "-m 1" qcow2 -O qcow2 -m 1 -f raw mixed.raw
convert_case "-C (copy offload as plain copy)" raw -O raw -C -f raw mixed.raw
convert_case "-t none -T none" raw -O raw -t none -T none -f raw mixed.raw

# -W with compression: layout differs, contents and zero ranges must not.
rm -f k.out
"$QKIT_IMG" convert -W -c -O qcow2 -f raw mixed.raw k.out
t_ok "convert -W -c: qemu-img check" qemu-img check -q k.out
t_ok "convert -W -c: equal to source" qemu-img compare -q -f raw mixed.raw k.out

# Compression with 2 MiB clusters: the reorder window then holds only a few clusters
# and workers often wait for a free one. Each run must match qemu-img's output.
head -c 24M /dev/urandom | base64 | head -c 32M > text32.raw
qemu-img convert -f raw -O qcow2 -c -o cluster_size=2M text32.raw e2m.qcow2
runs_ok=0
for _ in 1 2 3; do
    rm -f k2m.qcow2
    timeout 120 "$QKIT_IMG" convert -f raw -O qcow2 -c -o cluster_size=2M text32.raw \
        k2m.qcow2 && cmp -s k2m.qcow2 e2m.qcow2 || break
    runs_ok=$((runs_ok + 1))
done
t_eq "convert -c, 2 MiB clusters: byte-identical to qemu-img's in each of 3 runs" \
    "$runs_ok" 3
rm -f text32.raw e2m.qcow2 k2m.qcow2

# A new raw file starts with its first block allocated in qemu-img (its file
# protocol writes it at creation); a source that starts with a hole shows it.
rm -f k.out e.out hole-first.raw
truncate -s 2M hole-first.raw
head -c 64k /dev/urandom | dd of=hole-first.raw bs=64k seek=8 conv=notrunc status=none
"$QKIT_IMG" convert -f raw -O raw hole-first.raw k.out
qemu-img convert -f raw -O raw hole-first.raw e.out
t_eq "convert raw target: whole map as qemu-img's (first block included)" \
    "$(map_json -f raw e.out)" "$(map_json -f raw k.out)"

# -n into existing targets, with and without --target-is-zero.
for tz in "" "--target-is-zero"; do
    rm -f k.out e.out
    qemu-img create -q -f qcow2 k.out 40M
    qemu-img create -q -f qcow2 e.out 40M
    if [ -z "$tz" ]; then
        # Dirty targets: every byte must be overwritten or zeroed.
        qemu-io -f qcow2 -c 'write -P 0x99 0 40M' k.out >/dev/null
        qemu-io -f qcow2 -c 'write -P 0x99 0 40M' e.out >/dev/null
    fi
    "$QKIT_IMG" convert -n $tz -O qcow2 top.qcow2 k.out
    qemu-img convert -n $tz -O qcow2 top.qcow2 e.out
    t_ok "convert -n $tz: equal to source" qemu-img compare -q top.qcow2 k.out
    t_eq "convert -n $tz: map as qemu-img's" "$(map_json e.out)" "$(map_json k.out)"
done

# --salvage: a damaged compressed cluster reads as zeroes, with one warning a sector.
python3 -c "open('text.raw', 'wb').write(b'hello world ' * 100000)"
qemu-img convert -q -f raw -O qcow2 -c text.raw damaged.qcow2
python3 -c "
f = open('damaged.qcow2', 'r+b'); f.seek(0x50000 + 100); f.write(b'\xff' * 200)"
for salvage in "--salvage" ""; do
    e=$(run_tool qemu-img convert $salvage -O raw damaged.qcow2 e.out)
    k=$(run_tool "$QKIT_IMG" convert $salvage -O raw damaged.qcow2 k.out)
    t_eq "convert ${salvage:-without --salvage}: damaged source, messages" "$e" "$k"
    if [ -n "$salvage" ]; then
        t_ok "convert --salvage: same data as qemu-img's" cmp e.out k.out
    fi
    rm -f e.out k.out
done

# Images written by qkit convert read back the same through qkit (round trip).
rm -f k.out k2.out
"$QKIT_IMG" convert -c -O qcow2 -f raw mixed.raw k.out
"$QKIT_IMG" convert -O raw k.out k2.out
t_ok "convert round trip raw->qcow2(-c)->raw" cmp mixed.raw k2.out

# -p draws the same progress line.
for args in "-O qcow2 -f raw mixed.raw" "-O qcow2 -c -f raw mixed.raw" "-O raw -S 0 top.qcow2"; do
    rm -f k.out e.out
    e=$(qemu-img convert -p $args e.out | od -c)
    k=$("$QKIT_IMG" convert -p $args k.out | od -c)
    t_eq "convert -p $args: progress output" "$e" "$k"
done

# ---- convert: messages ----
qemu-img create -q -f raw small.raw 1M
qemu-img create -q -f qcow2 snap.qcow2 1M
qemu-img snapshot -c snap1 snap.qcow2
while read -r args; do
    eval "same_output \"convert msg: \$args\" convert $args"
done <<'EOF'

small.raw
-O foo small.raw out.1
-O raw -c small.raw out.1
-m 0 small.raw out.1
-m 17 small.raw out.1
-S 100 small.raw out.1
-S x small.raw out.1
-S 32M small.raw out.1
-r x small.raw out.1
-C -c small.raw out.1
-C -S 0 small.raw out.1
--target-image-opts small.raw out.1
-n -o size=1M small.raw out.1
--target-is-zero small.raw out.1
-o help
-O qcow2 -o help
-O qcow2 -o help small.raw out.1
-B x small.raw out.1
-O qcow2 -B small.raw small.raw out.1
-O qcow2 -B small.raw small.raw small.raw out.1
-O qcow2 -n --target-is-zero -B small.raw small.raw small.raw
--skip-broken-bitmaps small.raw out.1
--bitmaps small.raw out.1
--bitmaps small.raw small.raw out.1
-l foo small.raw out.1
-l snapshot.foo=1 small.raw out.1
-l nosuch snap.qcow2 out.1
-T foo small.raw out.1
-t foo small.raw out.1
nonexist out.1
-f qcow2 small.raw out.1
-O qcow2 -o foo=1 small.raw out.1
-O qcow2 -o cluster_size=3 small.raw out.1
-n small.raw nonexist
-n small.raw odd.raw
-Z small.raw out.1
-f
-O qcow2 -c -o preallocation=full small.raw out.1
-O qcow2 -c -o encryption=on small.raw out.1
-p small.raw out.1
-p nonexist out.1
EOF

# The target cannot be a source: the sources do not share write access.
cp small.raw self.raw
same_output "convert msg: target is the source" convert -f raw -O raw self.raw self.raw
same_output "convert msg: -n target is the source" convert -n -f raw -O raw self.raw self.raw
t_ok "convert: a source named as target is left intact" cmp small.raw self.raw

# ---- dd ----
while read -r args; do
    eval "same_output \"dd msg: \$args\" dd $args"
done <<'EOF'

if=small.raw
if=small.raw of=out.1 bs=0
if=small.raw of=out.1 bs=x
if=small.raw of=out.1 count=x
if=small.raw of=out.1 skip=5000
if=small.raw of=out.1 foo=1
if=small.raw of=out.1 bs
if=nonexist of=out.1
-f qcow2 if=small.raw of=out.1
-O foo if=small.raw of=out.1
-Z
EOF
while read -r args; do
    rm -f k.out e.out
    ko=$(run_tool "$QKIT_IMG" dd $args of=k.out)
    eo=$(run_tool qemu-img dd $args of=e.out)
    t_eq "dd $args: output" "$eo" "$ko"
    t_ok "dd $args: image equal to qemu-img's" qemu-img compare -q k.out e.out
    t_eq "dd $args: image size" "$(qemu-img info --output=json e.out | grep virtual-size)" \
        "$(qemu-img info --output=json k.out | grep virtual-size)"
done <<'EOF'
if=mixed.raw bs=1M count=7 skip=3
if=top.qcow2 bs=64k
-O qcow2 if=top.qcow2 bs=1M count=20 skip=3
if=mixed.raw bs=1000 count=300 skip=1
-f raw if=odd.raw bs=700
EOF

# ---- bench ----
qemu-img create -q -f qcow2 bench.qcow2 16M
while read -r args; do
    eval "same_output \"bench: \$args\" bench $args"
done <<'EOF'

-c 100 small.raw
-q -c 100 -d 4 small.raw
-c 2000 -d 16 -s 2k -S 12k -f qcow2 top.qcow2
-c 100 -w small.raw
-c 100 -w --flush-interval=10 small.raw
-c 100 --flush-interval=64 small.raw
-c x small.raw
-s 0 -c 10 small.raw
-S 3G small.raw
-o 5G -c 10 small.raw
--pattern=256 small.raw
-t foo small.raw
-i foo small.raw
-c 10 -s 2M small.raw
-c 10 nonexist
-c 0 small.raw
-c 300 -w -d 8 --flush-interval=100 -f qcow2 bench.qcow2
-c 300 -w -d 8 --flush-interval=100 --no-drain -f qcow2 bench.qcow2
EOF
# Write benches leave the same data behind.
for fmt in raw qcow2; do
    rm -f k.out e.out
    qemu-img create -q -f $fmt k.out 8M
    qemu-img create -q -f $fmt e.out 8M
    args="-f $fmt -w -c 300 -d 8 -s 7k -S 13k -o 1000 --pattern=0x5a"
    "$QKIT_IMG" bench $args k.out >/dev/null
    qemu-img bench $args e.out >/dev/null
    t_ok "bench -w $fmt: same data written" qemu-img compare -q -f $fmt -F $fmt k.out e.out
done

# ---- bitmap ----
qemu-img create -q -f qcow2 bm.qcow2 1M
qemu-img bitmap --add bm.qcow2 bm
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
while read -r args; do
    eval "same_output \"bitmap: \$args\" bitmap $args"
done <<'EOF'

small.raw bm
--add small.raw
--add small.raw bm
--add -f raw small.raw bm
--remove -f raw small.raw bm
--merge x -f raw small.raw bm
--add -g 3 -f raw small.raw bm
--add -g x bm.qcow2 bm2
--remove -g 64k bm.qcow2 bm
-b bm.qcow2 --add bm.qcow2 bm3
-F qcow2 --add bm.qcow2 bm3
--remove bm.qcow2 nonexist
--merge bm bm.qcow2 bm4
--merge nosuch bm.qcow2 bm
--add bm.qcow2 bm
--add bm.qcow2 ''
--add v2.qcow2 bm
--add -f raw --image-opts driver=raw,file.filename=small.raw bm
--add nonexist bm
EOF
# Bitmaps that really change qcow2 images are tested in test-qcow2-bitmaps.sh.
