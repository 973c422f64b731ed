#!/usr/bin/env bash
# The NBD client side of TLS: qkit-img, qkit-io and qkit-nbd -L with
# --object tls-creds-x509,endpoint=client and tls-creds=ID, against Debian's qemu-nbd
# and against qkit-nbd serving with TLS, over unix sockets and TCP. Data read through
# TLS must equal the image; outputs and error messages must equal what qemu-img,
# qemu-io and qemu-nbd print with the same arguments (program name swapped).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd-helpers.sh"

t_need "tools built" "$QKIT_IMG" "$QKIT_IO" "$QKIT_NBD" || exit 0
for tool in certtool qemu-nbd qemu-img qemu-io; do
    command -v $tool >/dev/null || { t_skip "nbd client tls" "$tool not installed"; exit 0; }
done

# A CA, a server certificate for localhost / 127.0.0.1, a client certificate; a
# "rogue" directory trusts another CA only (servers with verify-peer=off let it
# in, so only the client's check of the server can fail). Broken directories for
# the checks made when credentials are created: a CA certificate as our own
# ("ca-as-own"), our certificate as the CA ("own-as-ca"), our certificate from
# another CA ("mismatch"), a certificate that is not PEM ("garbage").
P=$T/pki
mkcerts() {
    nbd_make_pki "$P" &&
    mkdir -p "$P/rogue" "$P/empty" "$P/ca-as-own" "$P/own-as-ca" "$P/mismatch" \
        "$P/garbage" &&
    cp "$P/rogue-ca-cert.pem" "$P/rogue/ca-cert.pem" &&
    cp "$P/ca-cert.pem" "$P/ca-as-own/" && cp "$P/ca-cert.pem" "$P/ca-as-own/client-cert.pem" &&
    cp "$P/ca-key.pem" "$P/ca-as-own/client-key.pem" &&
    cp "$P/client/client-cert.pem" "$P/own-as-ca/ca-cert.pem" &&
    cp "$P/client/client-"*.pem "$P/own-as-ca/" &&
    cp "$P/rogue/ca-cert.pem" "$P/client/client-"*.pem "$P/mismatch/" &&
    cp "$P/client/"*.pem "$P/garbage/" && echo garbage >"$P/garbage/client-cert.pem"
}
if ! mkcerts >"$T/certtool.log" 2>&1; then
    t_fail "make certificates with certtool" "$(tail -5 "$T/certtool.log")"
    exit 0
fi

# An image with data in a few places and holes between them.
IMG=$T/disk.raw
qemu-img create -q -f raw "$IMG" 4M
qemu-io -f raw -c 'write -P 0x42 0 64k' -c 'write -P 0x17 1M 4k' -c 'write -P 0xe5 3M 512k' \
    "$IMG" >/dev/null

SOBJ="tls-creds-x509,id=tls0,endpoint=server,dir=$P/server"
COBJ="tls-creds-x509,id=tls0,endpoint=client,dir=$P/client"
SRV_TLS=(--object "$SOBJ" --tls-creds tls0 -r -f raw "$IMG")
SRV_PLAIN=(-r -f raw "$IMG")

# Start the servers: each program with TLS on a unix socket and on TCP, and plain.
declare -A PORT
start_all() {
    local prog name
    for prog in qemu-nbd "$QKIT_NBD"; do
        name=$(basename "$prog")
        nbd_start "$prog" "$T/$name-tls.sock" -t "${SRV_TLS[@]}" ||
            { t_fail "$name with TLS starts" "$(cat "$T/server.err")"; return 1; }
        nbd_start "$prog" "$T/$name-plain.sock" -t "${SRV_PLAIN[@]}" ||
            { t_fail "$name without TLS starts" "$(cat "$T/server.err")"; return 1; }
        nbd_start_tcp "$prog" -t "${SRV_TLS[@]}" ||
            { t_fail "$name with TLS on TCP starts" "$(cat "$T/server.err")"; return 1; }
        PORT[$name]=$NBD_PORT
        nbd_start_tcp "$prog" -t --object "$SOBJ,verify-peer=off" --tls-creds tls0 \
            "${SRV_PLAIN[@]}" ||
            { t_fail "$name with TLS, verify-peer=off starts" "$(cat "$T/server.err")"
              return 1; }
        PORT[$name-noverify]=$NBD_PORT
    done
}
start_all || exit 0

# The --image-opts of one server: unix sockets name the certificate's host.
unix_opts() { echo "driver=nbd,server.type=unix,server.path=$T/$1.sock,export=${2:-}"; }
tls_unix() { echo "$(unix_opts "$1-tls"),tls-creds=tls0,tls-hostname=localhost"; }
tls_tcp() { echo "driver=nbd,host=127.0.0.1,port=${PORT[$1]},tls-creds=tls0"; }

# same_img NAME ARGS...: qkit-img and qemu-img print the same (stdout+stderr, status).
same_img() {
    local name=$1 q k
    shift
    q=$(timeout 30 qemu-img "$@" 2>&1; echo "rc=$?")
    k=$(timeout 30 "$QKIT_IMG" "$@" 2>&1; echo "rc=$?")
    t_eq "$name" "$q" "$(swap_names <<<"$k")"
}
# same_io NAME ARGS...: the same for qkit-io and qemu-io, timing lines removed.
same_io() {
    local name=$1 q k
    shift
    q=$(timeout 30 qemu-io "$@" 2>&1 | filter_io; echo "rc=${PIPESTATUS[0]}")
    k=$(timeout 30 "$QKIT_IO" "$@" 2>&1 | filter_io; echo "rc=${PIPESTATUS[0]}")
    t_eq "$name" "$q" "$(swap_names <<<"$k")"
}
# same_list NAME ARGS...: qkit-nbd -L and qemu-nbd -L print the same.
same_list() {
    local name=$1 q k
    shift
    q=$(timeout 30 qemu-nbd -L "$@" 2>&1; echo "rc=$?")
    k=$(timeout 30 "$QKIT_NBD" -L "$@" 2>&1; echo "rc=$?")
    t_eq "$name" "$q" "$(sed "s#^[^ :]*qkit-nbd:#qemu-nbd:#" <<<"$k")"
}

# Data and metadata through TLS, from both servers, over unix sockets and TCP.
for srv in qemu-nbd qkit-nbd; do
    for via in unix tcp; do
        opts=$(tls_$via $srv)
        same_img "info via $srv over TLS ($via)" info --object "$COBJ" --image-opts "$opts"
        same_img "map via $srv over TLS ($via)" map --output=json --object "$COBJ" \
            --image-opts "$opts"
        same_io "qkit-io reads via $srv over TLS ($via)" --object "$COBJ" --image-opts \
            -c 'read -P 0x42 0 64k' -c 'read -P 0x17 1M 4k' -c 'read -P 0 2M 64k' \
            -c 'read -P 0xe5 3M 512k' "$opts"
        rm -f "$T/out.raw"
        t_ok "convert via $srv over TLS ($via)" "$QKIT_IMG" convert --object "$COBJ" \
            --image-opts "$opts" -O raw "$T/out.raw"
        t_ok "convert via $srv over TLS ($via): output equals the image" \
            cmp "$IMG" "$T/out.raw"
    done
done
same_img "compare over TLS with the image" compare --object "$COBJ" \
    --image-opts "$(tls_tcp qkit-nbd)" "driver=file,filename=$IMG"
JSON='json:{"driver":"nbd","server":{"type":"inet","host":"127.0.0.1","port":"'
same_img "info json: filename with tls-creds" info --object "$COBJ" \
    "$JSON${PORT[qemu-nbd]}\"},\"tls-creds\":\"tls0\"}"
FILE_OPTS="file.driver=nbd,file.host=127.0.0.1,file.port=${PORT[qkit-nbd]}"
same_img "info raw over nbd with file.tls-creds" info --object "$COBJ" --image-opts \
    "driver=raw,$FILE_OPTS,file.tls-creds=tls0"
same_img "verify-peer=off: no hostname needed on a unix socket" info \
    --object "$COBJ,verify-peer=off" --image-opts "$(unix_opts qkit-nbd-tls),tls-creds=tls0"
same_img "credentials as a JSON object" info \
    --object "{\"qom-type\":\"tls-creds-x509\",\"id\":\"tls0\",\"dir\":\"$P/client\"}" \
    --image-opts "$(tls_tcp qemu-nbd)"

# Writes through TLS land in the served file (a copy, served writable by each server).
for srv in qemu-nbd qkit-nbd; do
    cp "$IMG" "$T/rw.raw"
    prog=$([ $srv = qemu-nbd ] && echo qemu-nbd || echo "$QKIT_NBD")
    if nbd_start "$prog" "$T/rw.sock" --object "$SOBJ" --tls-creds tls0 -f raw "$T/rw.raw"
    then
        t_ok "write via $srv over TLS" "$QKIT_IO" --object "$COBJ" --image-opts \
            -c 'write -P 0x99 512k 192k' -c 'write -z 0 4k' -c flush \
            "$(unix_opts rw),tls-creds=tls0,tls-hostname=localhost"
        nbd_stop $NBD_PID
        out=$(qemu-io -f raw -c 'read -P 0x99 512k 192k' -c 'read -P 0 0 4k' \
            -c 'read -P 0x42 4k 60k' "$T/rw.raw" 2>&1 | grep -c '^read ')
        t_eq "write via $srv over TLS: the file holds the data" 3 "$out"
    else
        t_fail "$srv serves a copy writable with TLS" "$(cat "$T/server.err")"
    fi
done

# Refusals, with qemu-img's wording.
for srv in qemu-nbd qkit-nbd; do
    same_img "plain client, $srv requires TLS" info --image-opts "$(unix_opts $srv-tls)"
    same_img "TLS client, $srv without TLS" info --object "$COBJ" --image-opts \
        "$(unix_opts $srv-plain),tls-creds=tls0,tls-hostname=localhost"
    same_img "server certificate from another CA ($srv)" info \
        --object "tls-creds-x509,id=tls0,endpoint=client,dir=$P/rogue" \
        --image-opts "$(tls_tcp $srv-noverify)"
    same_img "unix socket without tls-hostname ($srv)" info --object "$COBJ" \
        --image-opts "$(unix_opts $srv-tls),tls-creds=tls0"
    same_img "tls-hostname the certificate does not carry ($srv)" info --object "$COBJ" \
        --image-opts "$(tls_tcp $srv),tls-hostname=other.example.com"
done
same_img "unknown tls-creds id" info --object "$COBJ" \
    --image-opts "$(unix_opts qkit-nbd-tls),tls-creds=nope"
same_img "tls-creds with a server endpoint" info --object "$SOBJ" \
    --image-opts "$(tls_tcp qkit-nbd)"
same_img "tls-creds naming a secret" info --object secret,id=tls0,data=x \
    --image-opts "$(tls_tcp qkit-nbd)"
same_io "qkit-io: unknown tls-creds id" --object "$COBJ" --image-opts -c 'read 0 512' \
    "$(tls_tcp qkit-nbd | sed 's/tls0/tls9/')"
same_io "qkit-io: TLS client, server without TLS" --object "$COBJ" --image-opts \
    -c 'read 0 512' "$(unix_opts qkit-nbd-plain),tls-creds=tls0,tls-hostname=localhost"

# --object definitions that are refused before anything is opened.
for def in "tls-creds-x509,id=tls0,endpoint=client,dir=$P/empty" \
           "tls-creds-x509,id=tls0,endpoint=client,dir=$P/missing" \
           "tls-creds-x509,id=tls0,endpoint=client" \
           "tls-creds-x509,id=tls0,endpoint=middle,dir=$P/client" \
           "tls-creds-x509,id=tls0,dir=$P/client,verify-peer=maybe" \
           "tls-creds-x509,id=tls0,dir=$P/client,bogus=1" \
           "tls-creds-x509,id=0tls,dir=$P/client" \
           "tls-creds-x509,dir=$P/client" \
           "tls-creds-kerberos,id=tls0" \
           "id=tls0,dir=$P/client" \
           '{"qom-type":"tls-creds-x509","id":"tls0","dir":"'"$P"'/client","verify-peer":"no"}' \
           "authz-simple,id=a0" \
           "secret,id=s0" \
           "tls-creds-x509,id=tls0,dir=$P/ca-as-own" \
           "tls-creds-x509,id=tls0,dir=$P/own-as-ca" \
           "tls-creds-x509,id=tls0,dir=$P/mismatch" \
           "tls-creds-x509,id=tls0,dir=$P/garbage" \
           "tls-creds-x509,id=tls0,dir=$P/mismatch,sanity-check=off"; do
    same_img "--object $(sed "s#$P#PKI#g" <<<"$def")" info --object "$def" "$IMG"
done
same_img "--object with a duplicate id" info --object "$COBJ" --object secret,id=tls0,data=x \
    "$IMG"
same_io "qkit-io --object with a missing dir" \
    --object "tls-creds-x509,id=tls0,endpoint=client,dir=$P/missing" -c 'read 0 512' "$IMG"
same_img "secret objects are still accepted" info --object secret,id=s0,data=x "$IMG"

# qkit-nbd -L as a TLS client prints what qemu-nbd -L prints.
for srv in qemu-nbd qkit-nbd; do
    same_list "-L over TLS, $srv, unix socket with --tls-hostname" --object "$COBJ" \
        --tls-creds=tls0 --tls-hostname=localhost -k "$T/$srv-tls.sock"
    same_list "-L over TLS, $srv, TCP" --object "$COBJ" --tls-creds=tls0 \
        -b 127.0.0.1 -p "${PORT[$srv]}"
    same_list "-L without TLS, $srv requires it" -k "$T/$srv-tls.sock"
    same_list "-L over TLS, $srv without TLS" --object "$COBJ" --tls-creds=tls0 \
        --tls-hostname=localhost -k "$T/$srv-plain.sock"
    same_list "-L over TLS, $srv, unix socket without --tls-hostname" --object "$COBJ" \
        --tls-creds=tls0 -k "$T/$srv-tls.sock"
    same_list "-L over TLS, $srv, server certificate from another CA" \
        --object "tls-creds-x509,id=tls0,endpoint=client,dir=$P/rogue" --tls-creds=tls0 \
        -b 127.0.0.1 -p "${PORT[$srv-noverify]}"
done
same_list "-L with an unknown --tls-creds id" --object "$COBJ" --tls-creds=tls1 \
    -k "$T/qkit-nbd-tls.sock"
same_list "-L with server credentials" --object "$SOBJ" --tls-creds=tls0 \
    -k "$T/qkit-nbd-tls.sock"
same_list "-L --tls-hostname without --tls-creds" --tls-hostname=localhost \
    -k "$T/qkit-nbd-tls.sock"

# The registry serves qkit-nbd's own --tls-creds / --tls-authz checks too.
same_server_err() {
    local name=$1 q k
    shift
    q=$(timeout 30 qemu-nbd "$@" -k "$T/never.sock" -f raw "$IMG" 2>&1; echo "rc=$?")
    k=$(timeout 30 "$QKIT_NBD" "$@" -k "$T/never.sock" -f raw "$IMG" 2>&1; echo "rc=$?")
    t_eq "$name" "$q" "$(sed "s#^[^ :]*qkit-nbd:#qemu-nbd:#" <<<"$k")"
}
same_server_err "server --tls-creds naming client credentials" --object "$COBJ" \
    --tls-creds tls0
same_server_err "server --tls-creds naming a secret" --object secret,id=tls0,data=x \
    --tls-creds tls0
same_server_err "authz-simple without identity" --object authz-simple,id=a0
