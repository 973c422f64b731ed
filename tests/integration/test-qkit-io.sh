#!/bin/bash
# qkit-io against qemu-io: the same options and command scripts, run on copies of the
# same image, must print the same stdout and stderr (timing figures masked), exit
# with the same status, and leave images with the same content.
source "$(dirname "$0")/lib.sh"

if ! command -v qemu-io >/dev/null || ! command -v qemu-img >/dev/null; then
    t_skip "qkit-io" "qemu-io/qemu-img not installed"
    exit 0
fi
if [ ! -x "$QKIT_IO" ]; then
    t_fail "qkit-io" "binary missing: $QKIT_IO"
    exit 0
fi

# Both programs run as "qemu-io" found on PATH, so argv[0] and the program name in
# messages are the same and outputs compare byte for byte.
mkdir -p "$T/ref" "$T/qk" "$T/tpl"
ln -s "$(command -v qemu-io)" "$T/ref/qemu-io"
ln -s "$QKIT_IO" "$T/qk/qemu-io"

# Mask what legitimately differs between two runs: the time and rates of the report
# line and of -C lines. The masks only match lines in qemu-io's exact format.
SZ='([0-9]+(\.[0-9]{3})? (KiB|MiB|GiB|TiB|PiB|EiB)|[0-9]+(\.[0-9]{6})? bytes)'
TM='([0-9]{2}\.[0-9]{2} sec|[0-9]+:[0-9]{2}:[0-9]{2}\.[0-9]{2})'
REPORT="^($SZ), ([0-9]+) ops; $TM \\($SZ/sec and [0-9]+\\.[0-9]{4} ops/sec\\)\$"
CSVLINE='^([0-9]+,[0-9]+),[0-9]+:[0-9]{2}:[0-9]{2}\.[0-9]{2},[0-9.]+,[0-9.]+$'
mask_timing() {
    sed -E -e "s#$REPORT#\\1, \\6 ops; TIME#" -e "s#$CSVLINE#\\1,CSV#"
}

# run_one DIR BINDIR STDIN ARGS...: run "qemu-io ARGS" in DIR, saving out/err/rc.
run_one() {
    local dir=$1 bindir=$2 input=$3; shift 3
    (cd "$dir" && PATH="$bindir:$PATH" timeout 60 qemu-io "$@" <"$input" >out 2>err
     echo $? >rc)
    mask_timing <"$dir/out" >"$dir/out.m"
    mask_timing <"$dir/err" >"$dir/err.m"
}

# Image content as a guest sees it (qcow2 is converted), for comparing results.
image_content() {
    local img=$1
    if [ ! -e "$img" ]; then echo missing; return; fi
    if [ "$(head -c 4 "$img" | od -An -tx1 | tr -d ' ')" = "514649fb" ]; then
        qemu-img convert -U -f qcow2 -O raw "$img" "$img.raw" 2>&1 && md5sum <"$img.raw"
        rm -f "$img.raw"
    else
        md5sum <"$img"
    fi
}

# compare_io NAME TEMPLATE INPUT ARGS...: run both programs on copies of TEMPLATE
# (as t.img; "" for none) with stdin from INPUT and compare everything. Files named
# in $EXTRA_FILES are copied next to the image (backing files).
compare_io() {
    local name=$1 tpl=$2 input=$3; shift 3
    local d
    for d in a b; do
        rm -rf "${T:?}/$d"; mkdir -p "$T/$d"
        if [ -n "$tpl" ]; then cp "$tpl" "$T/$d/t.img"; fi
        cp "$T/tpl/pat.bin" ${EXTRA_FILES:-} "$T/$d/"
    done
    run_one "$T/a" "$T/ref" "$input" "$@"
    run_one "$T/b" "$T/qk" "$input" "$@"
    local bad=()
    cmp -s "$T/a/out.m" "$T/b/out.m" ||
        bad+=("stdout differs:" "$(diff "$T/a/out.m" "$T/b/out.m" | head -20)")
    cmp -s "$T/a/err.m" "$T/b/err.m" ||
        bad+=("stderr differs:" "$(diff "$T/a/err.m" "$T/b/err.m" | head -20)")
    [ "$(cat "$T/a/rc")" = "$(cat "$T/b/rc")" ] ||
        bad+=("exit status: qemu-io $(cat "$T/a/rc"), qkit-io $(cat "$T/b/rc")")
    if [ -n "$tpl" ] && [ "$(image_content "$T/a/t.img")" != "$(image_content "$T/b/t.img")" ]
    then
        bad+=("image content differs")
    fi
    if [ ${#bad[@]} -eq 0 ]; then t_pass "$name"; else t_fail "$name" "${bad[@]}"; fi
}

# compare_cmds NAME TEMPLATE OPTS -- CMD...: -c for each command, image t.img last.
compare_cmds() {
    local name=$1 tpl=$2; shift 2
    local opts=() args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
    shift
    local c
    for c in "$@"; do args+=(-c "$c"); done
    compare_io "$name" "$tpl" /dev/null "${opts[@]}" "${args[@]}" t.img
}

# ---- images ----
RAW=$T/tpl/raw.img
qemu-img create -q -f raw "$RAW" 1M
qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 192k 4k' -c 'write -z 512k 64k' \
    "$RAW" >/dev/null
ODD=$T/tpl/odd.img
head -c 1000 /dev/urandom >"$ODD"
EMPTY=$T/tpl/empty.img
: >"$EMPTY"
# A pattern file for write -s: every byte value once.
printf "$(printf '\\%03o' $(seq 0 255))" >"$T/tpl/pat.bin"

# ---- raw: data path ----
compare_cmds "raw: write, read, verify, dump" "$RAW" -f raw -- \
    'write -P 0xab 0 512' 'read -v 0 48' 'read -P 0xab 0 512' 'read -P 0xac 0 512' \
    'read -v 990 40' 'read -P 0x11 1k 63k' 'read -P 0x22 192k 4k' 'read -P 0 512k 64k' \
    'read -C 0 512' 'read -q 0 512' 'read -q -P 1 0 16' 'read -v -P 1 0 20' 'read -p 0 1'
compare_cmds "raw: pattern window -s/-l" "$RAW" -f raw -- \
    'read -P 0x11 -s 10 -l 10 0 512' 'read -P 1 -s 10 -l 10 512 512' \
    'read -P 0x11 -s 10 512 512' 'read -P 1 -l 10 512 512' 'read -l 10 512 512' \
    'read -s 1 0 1' 'read -P 0x11 -s 512 512 512' 'read -P 0 -s 513 512 512' \
    'read -P 0 -s 0x10 -l 1k 512 512' 'read -P 0 -s abc 512 512' 'read -P 0 -s -5 512 512'
compare_cmds "raw: write flags" "$RAW" -f raw -- \
    'write 0 1000' 'write 0 1024' 'write -C 0 1025' 'write -z 0 4k' 'write -z -u 4k 4k' \
    'write -u 0 4k' 'write -n 0 4k' 'write -z -n 8k 4k' 'write -c 0 64k' 'write -f 0 512' \
    'write -b 0 512' 'write -P 0x12 -z 0 512' 'write -s pat.bin 100 600' \
    'write -s nonexist 0 4' 'write -s /dev/null 0 4' 'write -p 0 1' 'write -q 0 1' \
    'write -z 0 2G' 'write 0 2G' 'write -c -z 64k 64k' 'write -c -f 0 64k' \
    'write -z -b 0 512' 'write -b 1 512' 'write -b 0x200 0x10' 'write -n -u 0 1' \
    'write -u -n 0 1' 'write -z -P 1 -n -u -f -c -b 0 1' 'read -v 0 1k'
compare_cmds "raw: vectored I/O" "$RAW" -f raw -- \
    'readv 0 512 1k' 'readv -P 0x11 0 512 1k' 'readv -v 0 16 16' 'readv -C 0 512' \
    'readv -q 0 512' 'readv 0 abc' 'readv 1M 1' 'writev 0 512 512' 'writev -P 5 0 1 2 3' \
    'readv -P 5 0 3 3' 'writev -f 0 512' 'writev 1M 1' 'writev 0 0' 'readv 0 0' \
    'writev 0 1 0 1' 'readv 0 2G' 'readv 0 1G 1.5G' 'writev 0 2G' 'writev -z 0 512' \
    'readv -P 1 -v 0 8 8'
# qemu-io prints aio completions in no fixed order: one request per aio_flush here.
compare_cmds "raw: aio" "$RAW" -f raw -- \
    'aio_read 0 512' 'aio_flush' 'aio_write -P 7 0 512' 'aio_flush' 'aio_read -P 7 0 512' \
    'aio_flush' 'aio_read -P 0x11 0 512' 'aio_flush' 'aio_read 1M 512' 'aio_flush' \
    'aio_write -i 0 512' 'aio_read -i 0 512' 'aio_read -i abc 1' 'aio_flush' \
    'aio_read -v 0 16' 'aio_flush' 'aio_write -q 0 512' 'aio_flush' 'aio_read -C 0 512' \
    'aio_flush' 'aio_write -C -z 0 512' 'aio_flush' 'aio_write 1M 512' 'aio_flush' \
    'aio_write -u 0 512' 'aio_write 0 1 x' 'aio_read 0 2G' 'aio_write 0 1.5G 1G' \
    'aio_write -z 0 1G 1G' 'aio_write -u -z 0 1 2' 'aio_read -P 1 -s 2 0 3' \
    'aio_write -c 0 512' 'aio_read -z 0 512' 'aio_read -q -v 0 4' 'aio_flush' \
    'aio_write -P 9 64k 1k 1k' 'aio_flush' 'read -P 9 64k 2k' 'aio_write -f -P 8 0 1k' \
    'aio_flush' 'aio_read -P 8 -v 0 1k 1k' 'aio_flush'
compare_cmds "raw: aio output waits for aio_flush" "$RAW" -f raw -- \
    'aio_write -P 1 0 512' 'length' 'info' 'aio_flush' 'read -v 0 8'
compare_cmds "raw: discard, flush, truncate, length" "$RAW" -f raw -- \
    'discard 0 64k' 'discard -C 0 64k' 'discard -q 0 4k' 'discard 1M 4k' 'discard 0 2G' \
    'discard 0' 'discard -z 0 1' 'flush' 'flush 1' 'truncate 2M' 'length' 'truncate' \
    'truncate -m full 3M' 'truncate -m bogus 3M' 'length' 'truncate abc' 'truncate -m' \
    'truncate -x 1M' 'truncate 1M 2M' 'length' 'map'
compare_cmds "raw: info, map, alloc" "$RAW" -f raw -- \
    'info' 'map' 'alloc 0' 'alloc 0 1M' 'alloc 512 1k' 'alloc 1M' 'alloc 2M' 'alloc 0 2M' \
    'alloc' 'alloc abc' 'alloc 0 abc' 'alloc 1 1' 'alloc 1 2 3'
compare_cmds "raw: image size not a multiple of 512" "$ODD" -f raw -- \
    'length' 'map' 'alloc 512 1000' 'read 900 100' 'read -v 1000 24' 'alloc 1000' \
    'read 0 1025'
compare_cmds "raw: empty image" "$EMPTY" -f raw -- 'length' 'map' 'alloc 0' 'info' 'read 0 1'

# ---- numbers ----
compare_cmds "number parsing" "$RAW" -f raw -- \
    'read 0 2M' 'read 1M 1' 'read 1048575 2' 'read -1 1' 'read 0 -1' 'read 0 abc' \
    'read abc 1' 'read 0 1x' 'read 0 0' 'read 0 1.5k' 'read 0 1E' 'read 0 3G' 'read 0 2G' \
    'read 0 0x10' 'read 010 1' 'read 0 1B' 'read 0 1b' 'read 1.5 1' 'read 0x1k 1' \
    'read 0 1e3' 'read 0 1K' 'read 0 1kB' 'read 0 0x' 'read 0 .5k' 'read 0 1.' 'read 0 +1' \
    'read 9223372036854775808 1' 'read 16E 1' 'read 8E 1' 'read 7E 1' 'read 0 0.1' \
    'read 0 0.5k' 'read 0 1.0001k' 'read 0 0x10k' 'read 0 0x1.8k' 'read 0 1.5E' \
    'read 0 18446744073709551616' 'read 0 2147483137' 'read 0 0x1e' 'read 0 1.5b' \
    'read 0x1000000000000000 1' 'read 9223372036854775807 1' 'read -P 300 0 1' \
    'read -P abc 0 1' 'read -P -1 0 1' 'read -P 010 0 1' 'read -P 0x11 0 1'

# ---- command line parsing and dispatch ----
compare_cmds "argument errors and aliases" "$RAW" -f raw -- \
    'read' 'read 0' 'read 0 1 2' 'read -z 0 1' 'read -a 0 1' 'bogus' 'read 0 1k 1k' \
    'r 0 1' 'r -z 0 1' 'r' 'w 0 1' 'l' 'i' 'a 0' 'd 0 1' 'f' 't 1M' 'len' 'rv 0 1' \
    '' '   ' 'read  0   1' 'read	0	1' 'length  ' 'sleep abc' 'sleep' 'sleep 0x10' \
    'sleep -1' 'sleep 1.5' 'sigraise abc' 'sigraise 0' 'sigraise 100' \
    'break write_aio A' 'remove_break A' 'resume A' 'help read write'
compare_cmds "help texts" "" -- \
    'help' '?' 'help abort' 'help aio_flush' 'help aio_read' 'help aio_write' 'help alloc' \
    'help break' 'help close' 'help discard' 'help flush' 'help help' 'help info' \
    'help length' 'help map' 'help open' 'help quit' 'help read' 'help readv' \
    'help remove_break' 'help reopen' 'help resume' 'help sigraise' 'help sleep' \
    'help truncate' 'help wait_break' 'help write' 'help writev' 'help r' 'help q' \
    'help ?' 'help bogus'
compare_cmds "argument counts" "$RAW" -f raw -- \
    'aio_flush x' 'aio_read' 'aio_write' 'alloc' 'alloc 1 2 3' 'break' 'close x' \
    'discard' 'flush x' 'help a b' 'info x' 'length x' 'map x' 'open' 'read' 'readv' \
    'remove_break' 'resume' 'sigraise' 'sleep' 'truncate' 'truncate 1 2 3 4' 'wait_break' \
    'write' 'writev'
compare_io "no file: commands need one" "" /dev/null \
    -c 'read' -c 'read 0 1' -c 'sleep 1' -c 'length' -c 'help' -c 'close' -c 'info' \
    -c 'map' -c 'flush' -c 'aio_flush' -c 'alloc 0' -c 'truncate 1M' -c 'reopen' \
    -c 'discard 0 1' -c 'write 0 1' -c 'break a b' -c 'sigraise 0'
compare_cmds "quit stops the script" "$RAW" -f raw -- 'length' 'quit' 'length'
compare_cmds "q stops the script" "$RAW" -f raw -- 'q' 'write 0 1'
compare_cmds "exit status: failure in the middle" "$RAW" -f raw -- 'read -P 1 0 1' 'read 0 1'
compare_cmds "exit status: aio errors do not count" "$RAW" -f raw -- \
    'aio_read 1M 1' 'aio_read -P 1 0 1' 'aio_write -i 0 1' 'aio_flush'

# ---- interactive ----
printf 'length\n\nread 0 1\nbogus\n  length\nquit\nlength\n' >"$T/tpl/in1"
compare_io "interactive prompt until quit" "$RAW" "$T/tpl/in1" -f raw t.img
printf 'length' >"$T/tpl/in2"
compare_io "interactive prompt until end of input" "$RAW" "$T/tpl/in2" -f raw t.img
printf 'read -P 1 0 1\nwrite -P 3 0 512\n' >"$T/tpl/in3"
compare_io "interactive failure sets exit status" "$RAW" "$T/tpl/in3" -f raw t.img

# ---- program options ----
# The version line names the build in parentheses; the rest must match.
for v in -V --version; do
    ref=$(cd "$T" && PATH="$T/ref:$PATH" qemu-io $v | sed '1s/ (.*)$//')
    got=$(cd "$T" && PATH="$T/qk:$PATH" qemu-io $v | sed '1s/ (.*)$//')
    t_eq "$v" "$ref" "$got"
done
compare_io "-h" "" /dev/null -h
compare_io "unknown short option" "" /dev/null -x
compare_io "unknown long option" "" /dev/null --bogus
compare_io "-c without argument" "" /dev/null -c
compare_io "-q is not an option" "$RAW" /dev/null -q -f raw -c 'read 0 1' t.img
compare_io "two files" "$RAW" /dev/null -f raw t.img t.img
compare_io "bad cache mode" "$RAW" /dev/null -t bogus t.img
compare_io "bad discard mode" "$RAW" /dev/null -d bogus t.img
compare_io "bad aio mode" "$RAW" /dev/null -i bogus t.img
compare_io "unknown format" "$RAW" /dev/null -f bogus t.img
compare_io "nonexistent file" "" /dev/null nonexist
compare_io "nonexistent file with -f and -c" "" /dev/null -f raw -c 'read 0 1' nonexist
compare_io "-U needs read-only" "$RAW" /dev/null -U -f raw -c length t.img
compare_io "-U -r" "$RAW" /dev/null -U -r -f raw -c length t.img
compare_io "--image-opts" "$RAW" /dev/null --image-opts -c length -c 'read -P 0x11 0 4k' \
    driver=raw,file.filename=t.img
compare_io "--image-opts and -f" "$RAW" /dev/null --image-opts -f raw t.img
compare_io "--object secret" "$RAW" /dev/null --object secret,id=s0,data=x -f raw \
    -c length t.img
compare_io "--object bad type" "$RAW" /dev/null --object bogus,id=x t.img
compare_io "--object secret without data" "$RAW" /dev/null --object secret,id=s0 t.img
compare_io "-k needs -n" "$RAW" /dev/null -k -f raw -c length t.img
compare_io "-k -n" "$RAW" /dev/null -k -n -f raw -c 'write 0 4k' -c 'read -v 0 16' t.img
compare_io "-i io_uring" "$RAW" /dev/null -i io_uring -f raw -c 'write 0 4k' -c 'read 0 4k' t.img
compare_io "-i native -t none" "$RAW" /dev/null -i native -t none -f raw -c length t.img
compare_io "-t writethrough, -m, -C, -T" "$RAW" /dev/null -t writethrough -m -C -T x \
    -f raw -c 'write -P 4 0 4k' -c 'read -P 4 0 4k' t.img
compare_io "-d ignore keeps data" "$RAW" /dev/null -d ignore -f raw -c 'discard 0 64k' \
    -c 'read -P 0x11 0 64k' t.img
compare_io "-n" "$RAW" /dev/null -n -f raw -c 'write -P 5 4k 4k' -c 'read -P 5 4k 4k' t.img

# ---- read-only ----
compare_cmds "read-only image refuses writes" "$RAW" -r -f raw -- \
    'write 0 512' 'writev 0 512' 'aio_write 0 512' 'aio_flush' 'write -z 0 512' \
    'discard 0 512' 'truncate 2M' 'flush' 'write' 'write -x' 'truncate' 'discard 0' \
    'read -P 0x11 0 1k' 'reopen -w' 'write -P 6 0 512' 'reopen -r' 'write 0 512' \
    'read -P 6 0 512'
compare_cmds "reopen options" "$RAW" -f raw -- \
    'reopen -r -w' 'reopen -c none' 'reopen -c bogus' 'reopen -o bogus=1' \
    'reopen -x' 'reopen 1' 'reopen -r -o read-only=off' 'reopen -o read-only=bogus' \
    'reopen -o driver=qcow2' 'reopen -o a=b,c=d' 'reopen -c writethrough' 'write 0 1' \
    'reopen -c unsafe' 'write -P 3 0 1' 'flush' 'reopen -o cache.direct=on' 'read -P 3 0 1'

# ---- open and close ----
compare_io "open, close and open errors" "$RAW" /dev/null \
    -c 'open -r -f raw t.img' -c 'open -r -o driver=raw t.img' -c 'write 0 1' -c 'close' \
    -c 'open -o driver=raw t.img' -c 'write 0 1' -c 'close' -c 'close' -c 'open nonexist' \
    -c 'open -o driver=qcow2 t.img' \
    -c 'open -o driver=raw -t bogus t.img' -c 'open -d bogus -o driver=raw t.img' \
    -c 'open -i bogus -o driver=raw t.img' -c 'open -o driver=raw -U t.img' \
    -c 'open -o driver=raw' -c 'open -o driver=raw,file.filename=t.img' -c 'length' \
    -c 'close' -c 'open -o driver=raw -o file.filename=t.img' -c 'length' -c 'close' \
    -c 'open -r -o driver=raw t.img t.img' -c 'open -o driver=raw,read-only=on t.img' \
    -c 'open -o driver=raw t.img' -c 'open -o driver=raw t.img' -c 'info'
compare_io "open -d ignore, -n, -k, -C" "$RAW" /dev/null \
    -c 'open -d ignore -n -k -C -o driver=raw t.img' -c 'discard 0 64k' \
    -c 'read -P 0x11 0 64k' -c 'close' -c 'open -d unmap -o driver=raw t.img' \
    -c 'discard 0 64k' -c 'read -P 0 0 64k'

# ---- probing ----
compare_io "probed raw: warning and block 0 protection" "$RAW" /dev/null \
    -c 'write -P 0x51 0 1' -c 'write -P 0x46 1 1' -c 'write -P 0x49 2 1' \
    -c 'write -P 0xfb 3 1' -c 'writev -P 0xfb 3 1' -c 'aio_write -P 0xfb 3 1' -c aio_flush \
    -c 'read -v 0 8' -c 'write -P 0xfb 512 1' -c 'write -z 0 512' t.img
compare_io "json: filename with and without driver" "$RAW" /dev/null \
    -c 'read -v 0 4' -c 'write 0 1' -c 'open json:{"file":{"driver":"file","filename":"t.img"}}' \
    -c 'read -v 0 4' 'json:{"driver":"raw","file":{"driver":"file","filename":"t.img"}}'
compare_io "probed raw read-only: no warning" "$RAW" /dev/null -r -c 'read 0 1' t.img
compare_io "probed raw via open" "$RAW" /dev/null -c 'open t.img' -c 'write 0 1' \
    -c 'close' -c 'open -r t.img' -c 'write 0 1'

# ---- qcow2 (needs the qcow2 driver) ----
if ! "$QKIT_IO" -c info "$(qemu-img create -q -f qcow2 "$T/tpl/probe.qcow2" 1M &&
                          echo "$T/tpl/probe.qcow2")" >/dev/null 2>&1; then
    t_skip "qkit-io qcow2" "qcow2 driver not available"
    exit 0
fi
Q=$T/tpl/q.qcow2
qemu-img create -q -f qcow2 "$Q" 4M
BASE=$T/tpl/base.qcow2
qemu-img create -q -f qcow2 "$BASE" 4M
qemu-io -c 'write -P 1 0 128k' -c 'write -z 1M 64k' "$BASE" >/dev/null

compare_cmds "qcow2: write, read, map, alloc, info" "$Q" -- \
    'info' 'map' 'write -P 1 64k 64k' 'write -z 256k 64k' 'write -c 512k 64k' \
    'write -P 2 1M 4k' 'map' 'alloc 0 4M' 'alloc 64k' 'alloc 100k 1M' 'read -P 1 64k 64k' \
    'read -v 512k 32' 'read -P 0 256k 64k' 'read -P 2 1M 4k' 'read -P 0 1028k 60k' \
    'length' 'write 4M 1' 'read 4M 1'
compare_cmds "qcow2: discard, zero, truncate" "$Q" -- \
    'write -P 3 0 256k' 'discard 64k 64k' 'map' 'write -z -u 128k 64k' 'map' \
    'read -P 3 0 64k' 'read -P 0 64k 128k' 'truncate 8M' 'length' 'map' \
    'truncate -m falloc 9M' 'length' 'truncate 1000' 'info'
compare_io "qcow2: -d unmap discard" "$Q" /dev/null -d unmap -c 'write -P 3 0 256k' \
    -c 'discard 0 128k' -c 'map' -c 'read -P 0 0 128k' t.img
compare_cmds "qcow2: compressed writes" "$Q" -- \
    'write -c -P 7 0 64k' 'write -c -P 8 64k 64k' 'read -P 7 0 64k' 'read -P 8 64k 64k' \
    'map' 'write -c 1k 1k'
compare_cmds "qcow2: aio and vectored" "$Q" -- \
    'writev -P 4 0 4k 60k' 'aio_write -P 5 64k 64k' 'aio_flush' 'readv -P 4 0 32k 32k' \
    'aio_read -P 5 64k 64k' 'aio_flush' 'map'

F=$T/tpl/f.qcow2
qemu-img create -q -f qcow2 -o lazy_refcounts=on,extended_l2=on,compression_type=zstd \
    -o cluster_size=128k "$F" 4M
compare_cmds "qcow2: info of a v3 image with options" "$F" -r -- 'info' 'map'
F10=$T/tpl/f10.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 "$F10" 1M
compare_cmds "qcow2: info and I/O on compat=0.10" "$F10" -- 'info' 'write -P 1 0 4k' \
    'write -z 64k 64k' 'read -P 1 0 4k' 'read -P 0 64k 64k' 'map'

# An overlay over BASE: the top layer's allocation only, reads through the chain.
rm -f "$T/tpl/ov.qcow2"
(cd "$T/tpl" && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2)
EXTRA_FILES=$BASE compare_io "qcow2 overlay: map, alloc, read through" "$T/tpl/ov.qcow2" \
    /dev/null \
    -c 'map' -c 'write -P 2 64k 64k' -c 'map' -c 'alloc 0 4M' -c 'alloc 0' -c 'alloc 1M' \
    -c 'read -P 1 0 64k' -c 'read -P 2 64k 64k' -c 'read -P 0 1M 64k' -c 'info' t.img

EXTRA_FILES=$BASE compare_io "qcow2 overlay: -C copies what reads touch" \
    "$T/tpl/ov.qcow2" /dev/null -C -c 'read 1k 1k' -c 'readv 100k 4k' -c 'read 1M 4k' \
    -c 'aio_read 2M 4k' -c 'aio_flush' -c 'read 4M 1' -c 'map' -c 'read -P 1 0 128k' t.img
compare_io "qcow2: -C without backing, -C -r" "$Q" /dev/null -C -c 'read 1k 1k' \
    -c 'open -r -C t.img' -c 'close' -c 'open -C t.img' -c 'read 200k 4k' -c 'map' t.img
compare_io "-C -r refused" "$Q" /dev/null -C -r -c 'read 0 1' t.img
compare_cmds "-s: writes go to a temporary overlay" "$Q" -s -- \
    'info' 'map' 'write -P 9 0 64k' 'map' 'alloc 0 4M' 'read -P 9 0 64k' 'length'
compare_cmds "-s on raw" "$RAW" -s -f raw -- 'info' 'write -P 9 0 64k' 'read -P 9 0 64k' \
    'read -P 0x11 64k 1k'
compare_cmds "-s -r" "$RAW" -s -r -f raw -- 'info' 'write 0 1'
compare_io "open -s" "$Q" /dev/null -c 'open -s t.img' -c 'write -P 7 0 512' -c 'close' \
    -c 'open -r t.img' -c 'read -P 7 0 512'
compare_io "qcow2: raw view with -f raw" "$Q" /dev/null -f raw -c 'read -v 0 16' t.img

# Image locks: each program, started while the other holds the image, gets the
# same refusal (and -U -r still opens it).
cp "$Q" "$T/lock.qcow2"
for holder in ref qk; do
    other=qk; [ $holder = qk ] && other=ref
    (cd "$T" && PATH="$T/$holder:$PATH" exec qemu-io -c 'sleep 3000' lock.qcow2) &
    pid=$!
    sleep 0.7
    for args in "-c length" "-r -c length" "-U -r -c length"; do
        ref=$(cd "$T" && PATH="$T/ref:$PATH" qemu-io $args lock.qcow2 2>&1; echo "rc=$?")
        got=$(cd "$T" && PATH="$T/qk:$PATH" qemu-io $args lock.qcow2 2>&1; echo "rc=$?")
        t_eq "lock held by $holder: $args" "$ref" "$got"
    done
    wait $pid
done
