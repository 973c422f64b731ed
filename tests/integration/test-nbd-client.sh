#!/usr/bin/env bash
# The nbd protocol driver (qkit's NBD client) against real servers: Debian's qemu-nbd
# (raw and qcow2 exports, TCP and unix sockets, read-only and read-write), nbdkit
# (memory, file and eval plugins; block size, no-extents and oldstyle variants) and,
# when built, qkit-nbd. For each server:
#  - qkit-img info / map (human and JSON) print exactly what qemu-img prints for the
#    same server, so block status (holes, zeroes) crosses the wire the same way;
#  - qkit-img convert from the export gives an image that qemu-img compare finds equal
#    to the source, with the same map as qemu-img convert's output (holes preserved);
#  - qkit-img compare of the export against the local image agrees;
#  - writes made with qkit-io over NBD are read back by qemu-io (locally or over a
#    second connection); unaligned writes to a server that enforces 4 KiB blocks work.
# Error messages (refused connection, unknown export, bad URLs and options, read-only
# export) are compared with qemu-img/qemu-io text for text, and so is the behaviour
# against a scripted server that breaks the protocol in various ways
# (nbd_fake_server.py): the client fails the request or the open, never hangs.
source "$(dirname "$0")/lib.sh"

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null ||
   ! command -v qemu-nbd >/dev/null; then
    t_fail "nbd-client: reference tools" "qemu-img/qemu-io/qemu-nbd missing (scripts/deps.sh test)"
    exit 0
fi
t_need "nbd-client: tools built" "$QKIT_IMG" "$QKIT_IO" || exit 0
cd "$T" || exit 1
QKIT_NBD=${QKIT_NBD:-$BUILD/tools/qkit-nbd/qkit-nbd}

# Servers this test started (pids), killed on exit.
SERVER_PIDS=()
stop_servers() {
    local p i
    for p in "${SERVER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${SERVER_PIDS[@]}"; do
        for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    SERVER_PIDS=()
}
trap 'stop_servers; rm -rf "$T"' EXIT

# wait_pidfile FILE: the forked server writes its pid file after the parent exits
# (nbdkit does); wait for it and remember the pid.
wait_pidfile() {
    local i
    for i in $(seq 100); do
        if [ -s "$1" ]; then
            SERVER_PIDS+=("$(cat "$1")")
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# serve_tcp CMD ARGS...: run a forking server whose arguments hold the words @PORT@
# and @PIDFILE@; retry with another random port while the chosen one is taken.
# Sets PORT. The server must fork once it listens (qemu-nbd --fork, nbdkit's default).
serve_tcp() {
    local try pidf args a
    for try in $(seq 20); do
        PORT=$((20000 + RANDOM % 40000))
        pidf=$(mktemp "$T/pid.XXXXXX"); rm -f "$pidf"
        args=()
        for a in "$@"; do
            a=${a//@PORT@/$PORT}; args+=("${a//@PIDFILE@/$pidf}")
        done
        if timeout 30 "${args[@]}" >"$T/server.err" 2>&1 && wait_pidfile "$pidf"; then
            return 0
        fi
    done
    cat "$T/server.err" >&2
    return 1
}

# serve_unix CMD ARGS...: as serve_tcp with @PIDFILE@ only (the socket is in the args).
serve_unix() {
    local pidf args a
    pidf=$(mktemp "$T/pid.XXXXXX"); rm -f "$pidf"
    args=()
    for a in "$@"; do args+=("${a//@PIDFILE@/$pidf}"); done
    if timeout 30 "${args[@]}" >"$T/server.err" 2>&1 && wait_pidfile "$pidf"; then
        return 0
    fi
    cat "$T/server.err" >&2
    return 1
}

# Output and exit status of one tool with program names made comparable.
run_tool() {
    local tool=$1; shift
    local out rc
    out=$(timeout "$T_TIMEOUT" "$tool" "$@" 2>&1); rc=$?
    printf '%s\nrc=%d\n' "$out" "$rc" | swap_names
}

# same_img NAME ARGS...: qkit-img and qemu-img print the same and exit alike.
same_img() {
    local name=$1; shift
    t_eq "$name" "$(run_tool qemu-img "$@")" "$(run_tool "$QKIT_IMG" "$@")"
}

# same_io NAME ARGS...: qkit-io and qemu-io print the same (timing lines dropped).
same_io() {
    local name=$1; shift
    t_eq "$name" "$(run_tool qemu-io "$@" | filter_io)" "$(run_tool "$QKIT_IO" "$@" | filter_io)"
}

# check_read_side NAME URI LOCAL LOCAL_FMT: info, map, convert and compare of the export.
check_read_side() {
    local name=$1 uri=$2 local=$3 lfmt=$4
    same_img "$name: info" info "$uri"
    same_img "$name: info json" info --output=json "$uri"
    same_img "$name: map json" map --output=json -f raw "$uri"
    same_img "$name: map" map -f raw "$uri"

    rm -f k.qcow2 e.qcow2 k.raw
    local out
    if out=$(timeout "$T_TIMEOUT" "$QKIT_IMG" convert -f raw -O qcow2 "$uri" k.qcow2 2>&1); then
        t_pass "$name: convert to qcow2"
        qemu-img convert -f raw -O qcow2 "$uri" e.qcow2
        t_ok "$name: converted qcow2 equals the source" \
            qemu-img compare -U -f qcow2 -F "$lfmt" k.qcow2 "$local"
        t_eq "$name: converted qcow2 keeps the holes (map as qemu-img's convert)" \
            "$(qemu-img map --output=json e.qcow2)" "$(qemu-img map --output=json k.qcow2)"
    else
        t_fail "$name: convert to qcow2" "$out"
    fi
    t_ok "$name: convert to raw" "$QKIT_IMG" convert -f raw -O raw "$uri" k.raw
    t_ok "$name: converted raw equals the source" \
        qemu-img compare -U -f raw -F "$lfmt" k.raw "$local"
    t_eq "$name: converted raw is sparse where the export has holes" \
        "$(qemu-img map --output=json -f raw "$uri" | grep -c '"data": false')" \
        "$(qemu-img map --output=json -f raw k.raw | grep -c '"data": false')"
    same_img "$name: compare with the local image" compare -U -f raw -F "$lfmt" "$uri" "$local"
    # dd reads straight through holes and data: replies of several chunks.
    rm -f k.dd
    t_ok "$name: dd reads the whole export" "$QKIT_IMG" dd -f raw -O raw if="$uri" of=k.dd bs=4M
    t_ok "$name: dd copy equals the source" qemu-img compare -U -f raw -F "$lfmt" k.dd "$local"
}

MiB=$((1024 * 1024))

# nbd_json SERVER_MEMBERS [MORE_MEMBERS]: a json: filename for the nbd driver, e.g.
# nbd_json '"type":"inet","host":"h","port":"1"' '"export":"x"'.
nbd_json() { printf 'json:{"driver":"nbd","server":{%s}%s}' "$1" "${2:+,$2}"; }

# ---- Source images, made by QEMU's tools ----
qemu-img create -q -f qcow2 src.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0xab 1M 2M' -c 'write -z 8M 1M' -c 'write -P 0x5c 20M 64k' \
    -c 'write -P 0x01 63M 4k' src.qcow2 >/dev/null
qemu-img convert -f qcow2 -O raw src.qcow2 src.raw
cp src.raw rw.raw

# ---- qemu-nbd: raw, read-write, TCP, named export ----
if serve_tcp qemu-nbd --fork --pid-file=@PIDFILE@ -b 127.0.0.1 -p @PORT@ -t -x exp -f raw \
        rw.raw; then
    P=$PORT
    U="nbd://127.0.0.1:$P/exp"
    check_read_side "qemu-nbd raw tcp" "$U" src.raw raw
    INET="\"type\":\"inet\",\"host\":\"127.0.0.1\",\"port\":\"$P\""
    same_img "qemu-nbd: legacy nbd:host:port:exportname= name" info \
        "nbd:127.0.0.1:$P:exportname=exp"
    same_img "qemu-nbd: nbd+tcp:// URI" info "nbd+tcp://127.0.0.1:$P/exp"
    same_img "qemu-nbd: URI port with a leading zero, escaped export" info \
        "nbd://127.0.0.1:0$P/e%78p"
    same_img "qemu-nbd: json server options" info \
        "$(nbd_json "$INET" '"export":"exp"')"
    same_img "qemu-nbd: dotted json options" map --output=json \
        "json:{\"driver\":\"nbd\",\"server.type\":\"inet\",\"server.host\":\"127.0.0.1\",\
\"server.port\":$P,\"export\":\"exp\"}"
    same_img "qemu-nbd: --image-opts" info --image-opts \
        "driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,\
file.server.port=$P,file.export=exp"
    same_img "qemu-nbd: reconnect-delay accepted" info \
        "$(nbd_json "$INET" '"export":"exp","reconnect-delay":5')"
    same_img "qemu-nbd: unknown option" info \
        "$(nbd_json "$INET" '"export":"exp","bogus":1')"
    same_img "qemu-nbd: unknown export" info "nbd://127.0.0.1:$P/nosuch"
    same_img "qemu-nbd: empty export name" info "nbd://127.0.0.1:$P"

    # Writes over NBD, checked on the file behind the server.
    out=$("$QKIT_IO" -f raw -c 'write -P 0xa5 4096 65536' -c 'write -P 0x3c 5M 1000' \
          -c 'write -z 1M 512k' -c 'discard 20M 64k' -c flush "$U" 2>&1)
    if [ $? -eq 0 ]; then
        t_pass "qemu-nbd: qkit-io writes"
    else
        t_fail "qemu-nbd: qkit-io writes" "$out"
    fi
    # (qemu-nbd ignores trims unless --discard=unmap: 20M keeps its data, as with qemu-io.)
    t_ok "qemu-nbd: written data is in the file" qemu-io -r -U -f raw \
        -c 'read -P 0xa5 4096 65536' -c 'read -P 0x3c 5M 1000' -c 'read -P 0 1M 512k' \
        -c 'read -P 0x5c 20M 64k' -c 'read -P 0xab 1536k 1M' rw.raw
    t_ok "qemu-nbd: bytes around the writes are untouched" qemu-io -r -U -f raw \
        -c 'read -P 0 0 4096' -c 'read -P 0 69632 4096' -c 'read -P 0 5243880 1000' rw.raw
    same_img "qemu-nbd: map after writes" map --output=json -f raw "$U"
    same_img "qemu-nbd: compare after writes" compare -U -f raw -F raw "$U" rw.raw
    same_img "qemu-nbd: compare finds a difference" compare -U -f raw -F raw "$U" src.raw
    same_img "qemu-nbd: resize to another size is refused" resize -f raw "$U" 128M
    same_img "qemu-nbd: resize to the same size" resize -f raw "$U" 64M
    # convert onto the export (-n: the target exists), then check the file.
    t_ok "qemu-nbd: convert -n onto the export" "$QKIT_IMG" convert -n -f qcow2 -O raw \
        src.qcow2 "$U"
    t_ok "qemu-nbd: export holds the converted image" qemu-img compare -U -f raw -F qcow2 \
        rw.raw src.qcow2

    # create on an export: the size must fit, and only the first sector is cleared.
    qemu-io -f raw -c 'write -P 0x55 0 64M' "$U" >/dev/null
    t_ok "qemu-nbd: create raw on the export" "$QKIT_IMG" create -f raw "$U" 1M
    t_ok "qemu-nbd: create cleared the first sector only" qemu-io -r -U -f raw \
        -c 'read -P 0 0 512' -c 'read -P 0x55 512 63M' rw.raw
    qemu-io -f raw -c 'write -P 0x55 0 64M' "$U" >/dev/null
    t_ok "qemu-nbd: create qcow2 on the export" "$QKIT_IMG" create -q -f qcow2 "$U" 8M
    t_ok "qemu-nbd: the qcow2 made over NBD passes qemu-img check" \
        qemu-img check -q -f qcow2 "$U"
    qemu-img convert -f raw -O raw "$U" k.img
    qemu-io -f raw -c 'write -P 0x55 0 64M' "$U" >/dev/null
    qemu-img create -q -f qcow2 "$U" 8M
    qemu-img convert -f raw -O raw "$U" e.img
    t_ok "qemu-nbd: the export holds what qemu-img create writes" cmp k.img e.img
    # qcow2 inside the export, written through the qcow2 driver over NBD: the bytes on
    # the server match what qemu-io writes the same way.
    for tool in qemu-io "$QKIT_IO"; do
        qemu-io -f raw -c 'write -P 0x55 0 64M' "$U" >/dev/null
        qemu-img create -q -f qcow2 "$U" 8M
        "$tool" -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 2 4M 64k' -c 'write -z 512k 64k' \
            "$U" >/dev/null
        qemu-img convert -f raw -O raw "$U" "$(basename "$tool").img"
    done
    t_ok "qemu-nbd: qcow2 written over NBD passes qemu-img check" qemu-img check -q -f qcow2 "$U"
    t_ok "qemu-nbd: qcow2 written over NBD is byte-identical to qemu-io's" \
        cmp qemu-io.img qkit-io.img
    same_img "qemu-nbd: create larger than the export" create -f raw "$U" 100M
    same_img "qemu-nbd: create with preallocation" create -f raw -o preallocation=full "$U" 1M
    # Stop this server: its port is now one where nobody listens.
    kill "${SERVER_PIDS[-1]}"
    for i in $(seq 50); do kill -0 "${SERVER_PIDS[-1]}" 2>/dev/null || break; sleep 0.1; done
    dead=$P
else
    t_fail "qemu-nbd raw tcp: server starts"
    dead=1
fi

# ---- qemu-nbd: qcow2, read-only, unix socket, default export ----
S1="$T/q.sock"
if serve_unix qemu-nbd --fork --pid-file=@PIDFILE@ -k "$S1" -t -r -f qcow2 src.qcow2; then
    U="nbd+unix:///?socket=$S1"
    check_read_side "qemu-nbd qcow2 unix" "$U" src.qcow2 qcow2
    same_img "qemu-nbd unix: legacy nbd:unix: name" info "nbd:unix:$S1"
    same_img "qemu-nbd unix: json path option" map --output=json \
        "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$S1\"},\"export\":\"\"}"
    same_io "qemu-nbd unix: read-only export refuses read-write open" -f raw -c 'write 0 512' "$U"
    same_img "qemu-nbd unix: create on a read-only export" create -f raw "$U" 1M
    t_ok "qemu-nbd unix: qkit-io reads the data" "$QKIT_IO" -r -f raw \
        -c 'read -P 0xab 1M 2M' -c 'read -P 0 8M 1M' -c 'read -P 0x5c 20M 64k' "$U"
else
    t_fail "qemu-nbd qcow2 unix: server starts"
fi

# ---- The client library with two metadata contexts at once, against libnbd ----
# nbd-map prints "INDEX OFFSET LENGTH FLAGS"; nbdinfo --map prints "OFFSET LENGTH FLAGS
# DESCRIPTION". Both are reduced to merged "OFFSET LENGTH FLAGS" runs.
merge_runs() {
    awk '{ if (n && $3 == f && $1 == o + l) { l += $2 } else { if (n) print o, l, f;
           o = $1; l = $2; f = $3; n = 1 } } END { if (n) print o, l, f }'
}
NBD_MAP=$BUILD/tests/helpers/nbd-map
S6="$T/ad.sock"
cp src.qcow2 ad.qcow2
if ! command -v nbdinfo >/dev/null; then
    t_skip "nbd-map: two contexts" "nbdinfo (libnbd-bin) not installed"
elif t_need "nbd-map: helper built" "$NBD_MAP" &&
     serve_unix qemu-nbd --fork --pid-file=@PIDFILE@ -k "$S6" -t -r -A -f qcow2 ad.qcow2; then
    both=$("$NBD_MAP" "$S6" "" base:allocation qemu:allocation-depth 2>&1)
    i=0
    for ctx in base:allocation qemu:allocation-depth; do
        t_eq "nbd-map: $ctx as nbdinfo sees it" \
            "$(nbdinfo --map="$ctx" "nbd+unix:///?socket=$S6" | awk '{print $1, $2, $3}' |
               merge_runs)" \
            "$(awk -v i=$i '$1 == i {print $2, $3, $4}' <<<"$both" | merge_runs)"
        i=$((i + 1))
    done
else
    t_fail "nbd-map: server starts"
fi

# ---- qemu-nbd -B: a dirty bitmap read through x-dirty-bitmap (dirty shows as "data": false) ----
S5="$T/bm.sock"
qemu-img create -q -f qcow2 bm.qcow2 16M
qemu-io -f qcow2 -c 'write -P 1 0 4M' bm.qcow2 >/dev/null
qemu-img bitmap --add bm.qcow2 b0
qemu-io -f qcow2 -c 'write -P 2 1M 64k' -c 'write -P 3 8M 1M' bm.qcow2 >/dev/null
if serve_unix qemu-nbd --fork --pid-file=@PIDFILE@ -k "$S5" -t -r -f qcow2 -B b0 bm.qcow2; then
    same_img "qemu-nbd -B: map with x-dirty-bitmap" map --output=json \
        "json:{\"driver\":\"raw\",\"file\":$(nbd_json "\"type\":\"unix\",\"path\":\"$S5\"" \
            '"x-dirty-bitmap":"qemu:dirty-bitmap:b0"' | sed 's/^json://')}"
    same_img "qemu-nbd -B: unknown bitmap context" info \
        "$(nbd_json "\"type\":\"unix\",\"path\":\"$S5\"" \
            '"x-dirty-bitmap":"qemu:dirty-bitmap:nope"')"
else
    t_fail "qemu-nbd -B: server starts"
fi

# ---- Errors, compared with qemu-img ----
same_img "error: connection refused" info "nbd://127.0.0.1:$dead/x"
t_eq "error: connection refused names the address" \
    "qkit-img: Could not open 'nbd://127.0.0.1:$dead/x': Failed to connect to \
'127.0.0.1:$dead': Connection refused" \
    "$("$QKIT_IMG" info "nbd://127.0.0.1:$dead/x" 2>&1 | sed 's/^[^ :]*qkit-img:/qkit-img:/')"
same_img "error: create with the server gone" create -f raw "nbd://127.0.0.1:$dead/x" 1M
same_img "error: missing unix socket" info "nbd+unix:///x?socket=$T/none.sock"
same_img "error: legacy missing unix socket" info "nbd:unix:$T/none.sock:exportname=x"
for bad in "nbd+unix:///x" "nbd://127.0.0.1:10809/x?socket=y" "nbd://:10809/x" \
           "nbd://127.0.0.1:99999/x" "nbd+tls://127.0.0.1/x" "nbd:" "nbd:127.0.0.1" \
           "nbd:127.0.0.1:abc"; do
    same_img "error: bad name $bad" info "$bad"
done
NOWHERE_TLS='{"driver":"nbd","server":{"type":"inet","host":"127.0.0.1","port":"1"},'
NOWHERE_TLS+='"tls-creds":"t"}'
for bad in '{"driver":"nbd"}' '{"driver":"nbd","server":{"type":"bogus"}}' \
           '{"driver":"nbd","server":{"type":"inet","host":"127.0.0.1"}}' \
           '{"driver":"nbd","server":{"type":"unix"}}' \
           '{"driver":"nbd","server":{"host":"127.0.0.1","port":"1"}}' \
           '{"driver":"nbd","server":{"type":"inet","host":"127.0.0.1","port":"1","x":1}}' \
           '{"driver":"nbd","server":{"type":"inet","host":"127.0.0.1","port":"1"},"bogus":1}' \
           '{"driver":"nbd","server":{"type":"inet","host":"127.0.0.1","port":"1"},"host":"a"}' \
           "$NOWHERE_TLS"; do
    same_img "error: bad options $bad" info "json:$bad"
done

# ---- nbdkit ----
if command -v nbdkit >/dev/null; then
    # memory plugin: written by qkit-io, read back by qemu-io over a second connection.
    if serve_tcp nbdkit -P @PIDFILE@ -i 127.0.0.1 -p @PORT@ memory 32M; then
        U="nbd://127.0.0.1:$PORT"
        t_ok "nbdkit memory: qkit-io writes" "$QKIT_IO" -f raw -c 'write -P 0x11 1M 3M' \
            -c 'write -P 0x22 10M 777' -c 'write -z 2M 64k' -c 'discard 3M 512k' "$U"
        t_ok "nbdkit memory: qemu-io reads what qkit-io wrote" qemu-io -f raw \
            -c 'read -P 0x11 1M 1M' -c 'read -P 0 2M 64k' -c 'read -P 0x11 2162688 960k' \
            -c 'read -P 0 3M 512k' -c 'read -P 0x22 10M 777' -c 'read -P 0 10486537 1000' "$U"
        same_img "nbdkit memory: map json" map --output=json -f raw "$U"
        same_img "nbdkit memory: info" info "$U"
        rm -f k.raw; qemu-img convert -f raw -O raw "$U" e.raw
        t_ok "nbdkit memory: convert" "$QKIT_IMG" convert -f raw -O raw "$U" k.raw
        t_ok "nbdkit memory: converted image equals the export" cmp k.raw e.raw
        t_eq "nbdkit memory: converted image keeps the holes" \
            "$(qemu-img map --output=json -f raw e.raw)" \
            "$(qemu-img map --output=json -f raw k.raw)"
    else
        t_fail "nbdkit memory: server starts"
    fi
    # file plugin on a unix socket.
    S2="$T/k.sock"
    cp src.raw kfile.raw
    if serve_unix nbdkit -P @PIDFILE@ -U "$S2" file kfile.raw; then
        check_read_side "nbdkit file unix" "nbd+unix:///?socket=$S2" src.raw raw
    else
        t_fail "nbdkit file unix: server starts"
    fi
    # A server that rejects requests not aligned to 4 KiB: the client must obey the
    # advertised minimum block size (read-modify-write for the unaligned write).
    if serve_tcp nbdkit -P @PIDFILE@ -i 127.0.0.1 -p @PORT@ --filter=blocksize-policy memory 8M \
            blocksize-minimum=4096 blocksize-preferred=65536 blocksize-maximum=1M \
            blocksize-error-policy=error; then
        U="nbd://127.0.0.1:$PORT"
        t_ok "nbdkit 4k blocks: unaligned qkit-io write" "$QKIT_IO" -f raw \
            -c 'write -P 0x33 1000 5000' -c 'write -P 0x44 3M 1536k' -c 'write -z 7M 100' "$U"
        t_ok "nbdkit 4k blocks: qemu-io reads it back" qemu-io -f raw -c 'read -P 0 0 1000' \
            -c 'read -P 0x33 1000 5000' -c 'read -P 0 6000 2192' -c 'read -P 0x44 3M 1536k' "$U"
        same_img "nbdkit 4k blocks: map json" map --output=json -f raw "$U"
    else
        t_fail "nbdkit 4k blocks: server starts"
    fi
    # No block status at all: everything is data.
    if serve_tcp nbdkit -P @PIDFILE@ -i 127.0.0.1 -p @PORT@ --filter=noextents file src.raw; then
        same_img "nbdkit noextents: map json" map --output=json -f raw "nbd://127.0.0.1:$PORT"
    else
        t_fail "nbdkit noextents: server starts"
    fi
    # The oldstyle handshake: no export names.
    if serve_tcp nbdkit -o -P @PIDFILE@ -i 127.0.0.1 -p @PORT@ memory 4M; then
        same_img "nbdkit oldstyle: info" info "nbd://127.0.0.1:$PORT"
        same_img "nbdkit oldstyle: export names refused" info "nbd://127.0.0.1:$PORT/x"
    else
        t_fail "nbdkit oldstyle: server starts"
    fi
    # A server that insists on TLS (PSK): refused with QEMU's message and hint.
    echo "alice:0123456789abcdef0123456789abcdef" > psk.txt
    if serve_tcp nbdkit -P @PIDFILE@ -i 127.0.0.1 -p @PORT@ --tls=require \
            --tls-psk="$T/psk.txt" memory 1M; then
        same_img "nbdkit tls=require: refused" info "nbd://127.0.0.1:$PORT"
    else
        t_fail "nbdkit tls=require: server starts"
    fi
    # Extents of every kind: a hole that does not read as zero, zero, data.
    if serve_tcp nbdkit -P @PIDFILE@ -i 127.0.0.1 -p @PORT@ eval get_size='echo 1048576' \
            pread='dd if=/dev/zero count=$3 iflag=count_bytes 2>/dev/null' \
            can_extents='exit 0' \
            extents='echo 0 262144 hole; echo 262144 262144 zero; echo 524288 524288'; then
        same_img "nbdkit eval extents: map json" map --output=json -f raw "nbd://127.0.0.1:$PORT"
        same_img "nbdkit eval extents: map" map -f raw "nbd://127.0.0.1:$PORT"
    else
        t_fail "nbdkit eval extents: server starts"
    fi
    # An export size that is not whole sectors.
    if serve_tcp nbdkit -P @PIDFILE@ -i 127.0.0.1 -p @PORT@ memory 1000; then
        U="nbd://127.0.0.1:$PORT"
        t_ok "nbdkit 1000 bytes: write the last bytes" "$QKIT_IO" -f raw \
            -c 'write -P 7 900 100' "$U"
        same_img "nbdkit 1000 bytes: map json" map --output=json -f raw "$U"
        same_img "nbdkit 1000 bytes: info" info "$U"
        same_io "nbdkit 1000 bytes: writing past the end fails" -f raw -c 'write 1000 24' "$U"
    else
        t_fail "nbdkit 1000 bytes: server starts"
    fi
else
    t_skip "nbdkit cases" "nbdkit not installed (scripts/deps.sh test)"
fi

# ---- Misbehaving servers: the client fails cleanly, as QEMU's does ----
FAKE="$TOP/tests/integration/nbd_fake_server.py"
if command -v python3 >/dev/null; then
    for mode in badmagic eof exportname badcookie hugechunk oob hangup errchunk badblock \
                split short; do
        S4="$T/fake-$mode.sock"
        python3 "$FAKE" "$mode" "$S4" &
        SERVER_PIDS+=($!)
        for i in $(seq 100); do [ -S "$S4" ] && break; sleep 0.05; done
        U="nbd+unix:///?socket=$S4"
        if [ ! -S "$S4" ]; then
            t_fail "fake server $mode: server starts"
        elif [ "$mode" = short ]; then
            # A reply covering half the read: QEMU returns whatever was in the buffer;
            # qkit refuses the read and drops the connection.
            out=$(timeout "$T_TIMEOUT" "$QKIT_IO" -r -f raw -c 'read 0 4096' -c 'read 0 512' \
                  "$U" 2>&1)
            t_eq "fake server $mode: read fails" \
                 "$(printf 'read failed: Invalid argument\nread failed: Input/output error')" \
                 "$out"
        else
            same_io "fake server $mode: qkit-io as qemu-io" -r -f raw \
                -c 'read -P 0 0 512' -c 'read -P 1 512 512' -c 'read -P 0x7f 65024 1024' "$U"
        fi
    done
else
    t_skip "fake server cases" "python3 not installed"
fi

# ---- qkit-nbd, qkit's own server ----
if [ -x "$QKIT_NBD" ]; then
    S3="$T/qk.sock"
    cp src.qcow2 qk.qcow2
    if serve_unix "$QKIT_NBD" --fork --pid-file=@PIDFILE@ -k "$S3" -t -f qcow2 qk.qcow2; then
        U="nbd+unix:///?socket=$S3"
        check_read_side "qkit-nbd qcow2 unix" "$U" src.qcow2 qcow2
        t_ok "qkit-nbd: qkit-io writes" "$QKIT_IO" -f raw -c 'write -P 0x77 30M 100k' \
            -c 'write -z 1M 64k' "$U"
        t_ok "qkit-nbd: qemu-io reads it back over NBD" qemu-io -r -f raw \
            -c 'read -P 0x77 30M 100k' -c 'read -P 0 1M 64k' -c 'read -P 0xab 1088k 64k' "$U"
        same_img "qkit-nbd: map after writes" map --output=json -f raw "$U"
        cp src.raw qk.raw
        if serve_tcp "$QKIT_NBD" --fork --pid-file=@PIDFILE@ -b 127.0.0.1 -p @PORT@ -t -r \
                -x ro -f raw qk.raw; then
            U="nbd://127.0.0.1:$PORT/ro"
            same_img "qkit-nbd tcp: info" info "$U"
            same_img "qkit-nbd tcp: map json" map --output=json -f raw "$U"
            same_img "qkit-nbd tcp: unknown export" info "nbd://127.0.0.1:$PORT/nosuch"
            same_io "qkit-nbd tcp: read-only export refuses read-write open" -f raw \
                -c 'write 0 512' "$U"
            same_img "qkit-nbd tcp: compare with the file" compare -f raw -F raw "$U" src.raw
        else
            t_fail "qkit-nbd tcp: server starts"
        fi
    else
        t_fail "qkit-nbd: server starts"
    fi
else
    t_skip "qkit-nbd cases" "qkit-nbd not built"
fi
