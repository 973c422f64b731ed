#!/usr/bin/env bash
# TLS with pre-shared keys: --object tls-creds-psk on both ends. qkit-nbd serves
# qemu-img and qkit-img, qemu-nbd serves qkit-img, qkit-io and qkit-nbd -L; data
# read equals the image. A wrong key, a user the server does not know, a user
# missing from the client's own key file, a missing keys.psk and a plain client
# fail with the messages qemu-img / qemu-nbd print in the same situation.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd-helpers.sh"

t_need "tools built" "$QKIT_IMG" "$QKIT_IO" "$QKIT_NBD" || exit 0
for tool in psktool qemu-nbd qemu-img qemu-io; do
    command -v $tool >/dev/null || { t_skip "nbd psk" "$tool not installed"; exit 0; }
done

# Key files: the server's knows alice and bob; "wrong" has another key for alice;
# "stranger" holds dave, whom the server does not know; "empty" has no keys.psk.
K=$T/keys
mkkeys() {
    mkdir -p "$K/server" "$K/wrong" "$K/stranger" "$K/empty" &&
    psktool -u alice -p "$K/server/keys.psk" &&
    psktool -u bob -p "$K/server/keys.psk" &&
    psktool -u alice -p "$K/wrong/keys.psk" &&
    psktool -u dave -p "$K/stranger/keys.psk"
}
if ! mkkeys >"$T/psktool.log" 2>&1; then
    t_fail "make keys with psktool" "$(tail -5 "$T/psktool.log")"
    exit 0
fi

IMG=$T/disk.raw
qemu-img create -q -f raw "$IMG" 4M
qemu-io -f raw -c 'write -P 0x42 0 64k' -c 'write -P 0xe5 3M 512k' "$IMG" >/dev/null

SOBJ="tls-creds-psk,id=tls0,endpoint=server,dir=$K/server"
# cobj DIR [USER]: the client object for a key directory and a username.
cobj() { echo "tls-creds-psk,id=tls0,endpoint=client,dir=$K/$1${2:+,username=$2}"; }
# opts SOCK: the --image-opts string for the TLS export on SOCK.
opts() { echo "driver=nbd,server.type=unix,server.path=$1,tls-creds=tls0"; }

for prog in qemu-nbd "$QKIT_NBD"; do
    name=$(basename "$prog")
    if ! nbd_start "$prog" "$T/$name.sock" -t --object "$SOBJ" --tls-creds tls0 -r \
            -f raw "$IMG"; then
        t_fail "$name with PSK starts" "$(cat "$T/server.err")"
        exit 0
    fi
done
QSOCK=$T/qemu-nbd.sock
KSOCK=$T/qkit-nbd.sock

# same_as_qemu NAME ARGS...: qkit-img and qemu-img print the same (names swapped)
# and exit the same way; qkit-img's output stays in LAST for further checks.
same_as_qemu() {
    local name=$1 q qrc krc
    shift
    q=$(timeout 30 qemu-img "$@" 2>&1); qrc=$?
    LAST=$(timeout 30 "$QKIT_IMG" "$@" 2>&1); krc=$?
    t_eq "$name" "$q (exit $qrc)" "$(swap_names <<<"$LAST") (exit $krc)"
}
# has NAME PATTERN: LAST holds the extended regular expression.
has() {
    if grep -qE "$2" <<<"$LAST"; then t_pass "$1"; else t_fail "$1" "$LAST"; fi
}

for sock in "$QSOCK" "$KSOCK"; do
    srv=$(basename "$sock" .sock)
    same_as_qemu "$srv: info over PSK" info --object "$(cobj server alice)" \
        --image-opts "$(opts "$sock")"
    has "$srv: info over PSK succeeds" "^virtual size: 4 MiB"
    same_as_qemu "$srv: compare over PSK with the image (second user)" compare \
        --object "$(cobj server bob)" --image-opts "$(opts "$sock")" \
        "driver=raw,file.filename=$IMG"
    has "$srv: compare over PSK finds the image identical" "^Images are identical"
    out=$(timeout 30 "$QKIT_IMG" convert --object "$(cobj server alice)" -O raw \
        --image-opts "$(opts "$sock")" "$T/copy-$srv.raw" 2>&1)
    t_eq "$srv: qkit-img convert over PSK copies the image" "$(file_sum "$IMG")" \
        "$(file_sum "$T/copy-$srv.raw" 2>/dev/null)${out:+ $out}"
    q=$(qemu-io --object "$(cobj server alice)" --image-opts "$(opts "$sock")" \
        -c 'read -P 0x42 0 64k' -c 'read -P 0xe5 3M 512k' -c 'read -P 0 64k 1M' 2>&1 |
        filter_io)
    k=$(timeout 30 "$QKIT_IO" --object "$(cobj server alice)" --image-opts "$(opts "$sock")" \
        -c 'read -P 0x42 0 64k' -c 'read -P 0xe5 3M 512k' -c 'read -P 0 64k 1M' 2>&1 |
        filter_io)
    t_eq "$srv: qkit-io reads the data over PSK" "$q" "$(swap_names <<<"$k")"
    q=$(qemu-nbd -L --object "$(cobj server alice)" --tls-creds tls0 -k "$sock" 2>&1)
    k=$(timeout 30 "$QKIT_NBD" -L --object "$(cobj server alice)" --tls-creds tls0 \
        -k "$sock" 2>&1)
    t_eq "$srv: qkit-nbd -L over PSK" "$q" "$(sed 's/^[^ :]*qkit-nbd:/qemu-nbd:/' <<<"$k")"

    # The client-side failures: a key the server rejects, a user it does not know.
    same_as_qemu "$srv: wrong key fails the handshake" info --object "$(cobj wrong alice)" \
        --image-opts "$(opts "$sock")"
    has "$srv: wrong key: handshake message" "TLS handshake failed"
    same_as_qemu "$srv: unknown user fails the handshake" info \
        --object "$(cobj stranger dave)" --image-opts "$(opts "$sock")"
    has "$srv: unknown user: handshake message" "TLS handshake failed"
    same_as_qemu "$srv: a plain client is refused" info \
        --image-opts "driver=nbd,server.type=unix,server.path=$sock"
    has "$srv: a plain client: TLS required" "TLS negotiation required"
done

# The server's side of a failed handshake reads as qemu-nbd's (servers in the
# foreground, so their later messages reach stderr).
for case in "wrong alice" "stranger dave"; do
    set -- $case
    for prog in qemu-nbd "$QKIT_NBD"; do
        name=$(basename "$prog")
        rm -f "$T/$name-fg.sock"
        timeout 30 "$prog" -k "$T/$name-fg.sock" --object "$SOBJ" --tls-creds tls0 -r \
            -f raw "$IMG" 2>"$T/$name-fg.err" &
        pid=$!
        for i in $(seq 100); do [ -S "$T/$name-fg.sock" ] && break; sleep 0.05; done
        timeout 30 qemu-img info --object "$(cobj "$1" "$2")" \
            --image-opts "$(opts "$T/$name-fg.sock")" >/dev/null 2>&1
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    t_eq "server message for $case" "$(cat "$T/qemu-nbd-fg.err")" \
        "$(sed 's/^[^ :]*qkit-nbd:/qemu-nbd:/' "$T/qkit-nbd-fg.err")"
    LAST=$(cat "$T/qkit-nbd-fg.err")
    has "server message for $case names the failure" "TLS handshake failed: .+"
done

# Loading the objects: no keys.psk, a username not in the client's file (default
# "qemu" too), a server object where a client one is needed, an unknown property.
for args in "$(cobj empty alice)" "$(cobj server carol)" "$(cobj server)" \
        "tls-creds-psk,id=tls0,endpoint=server,dir=$K/server" \
        "tls-creds-psk,id=tls0,endpoint=client,dir=$K/server,sanity-check=on" \
        "tls-creds-psk,id=tls0,endpoint=client"; do
    same_as_qemu "object $(sed "s#$K/##" <<<"$args")" info --object "$args" \
        --image-opts "$(opts "$KSOCK")"
done
for args in "tls-creds-psk,id=tls0,endpoint=server,dir=$K/empty" \
        "tls-creds-psk,id=tls0,endpoint=client,dir=$K/server,username=alice"; do
    q=$(timeout 30 qemu-nbd --object "$args" --tls-creds tls0 -k "$T/never.sock" \
        -f raw "$IMG" 2>&1)
    k=$(timeout 30 "$QKIT_NBD" --object "$args" --tls-creds tls0 -k "$T/never.sock" \
        -f raw "$IMG" 2>&1)
    t_eq "qkit-nbd refuses $(sed "s#$K/##" <<<"$args")" "$q" \
        "$(sed 's/^[^ :]*qkit-nbd:/qemu-nbd:/' <<<"$k")"
done

# The types QEMU has and qkit does not (left out of QEMU's list for "nosuchtype,help").
QEMU_ONLY='^  (iothread|authz-list|authz-list-file|main-loop|pr-manager-helper|secret_keyring|'
QEMU_ONLY+='thread-context|throttle-group|tls-cipher-suites|tls-creds-anon)$'
# --object help: qkit's types, each one QEMU lists too, under QEMU's heading and in
# its order; TYPE,help: the type's properties exactly as QEMU prints them.
for tool in img io nbd; do
    case $tool in
        img) q=(qemu-img info); k=("$QKIT_IMG" info) ;;
        io) q=(qemu-io); k=("$QKIT_IO") ;;
        nbd) q=(qemu-nbd); k=("$QKIT_NBD") ;;
    esac
    qlist=$(timeout 30 "${q[@]}" --object help 2>&1)
    klist=$(timeout 30 "${k[@]}" --object help 2>&1)
    LAST=$klist
    has "qkit-$tool --object help lists tls-creds-psk" "^  tls-creds-psk$"
    t_eq "qkit-$tool --object help: QEMU's heading and order" \
        "$(grep -Fxf <(printf '%s\n' "$klist") <<<"$qlist")" "$klist"
    for args in tls-creds-psk,help tls-creds-x509,help secret,id=s0,help authz-simple,help \
            nosuchtype,help; do
        t_eq "qkit-$tool --object $args" "$(timeout 30 "${q[@]}" --object "$args" 2>&1 |
            grep -vE "$QEMU_ONLY")" \
            "$(timeout 30 "${k[@]}" --object "$args" 2>&1)"
    done
done
