#!/usr/bin/env bash
# qkit-nbd with TLS (tls-creds-x509): certificates made by certtool; a client with
# a certificate from the CA is served, a plain client and a client without a
# certificate are refused, --tls-authz lets in only the named client. Each case is
# run against qemu-nbd too, and the outcomes must agree.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd-helpers.sh"

t_need "qkit-nbd built" "$QKIT_NBD" || exit 0
for tool in certtool qemu-nbd nbdinfo nbdcopy; do
    command -v $tool >/dev/null || { t_skip "nbd tls" "$tool not installed"; exit 0; }
done

# A CA, a server certificate and two client certificates (one from another CA).
P=$T/pki
mkcerts() {
    nbd_make_pki "$P" &&
    mkdir -p "$P/noclient" "$P/rogue" &&
    # A client certificate signed by a CA the server does not trust.
    nbd_pki_cert "$P/rogue/client" "$P/rogue-ca" "$P/client.info" &&
    cp "$P/ca-cert.pem" "$P/noclient/" && cp "$P/ca-cert.pem" "$P/rogue/"
}
if ! mkcerts >"$T/certtool.log" 2>&1; then
    t_fail "make certificates with certtool" "$(tail -5 "$T/certtool.log")"
    exit 0
fi

qemu-img create -q -f raw "$T/disk.raw" 1M
qemu-io -f raw -c 'write -P 0x42 0 64k' "$T/disk.raw" >/dev/null
OBJ="tls-creds-x509,id=tls0,endpoint=server,dir=$P/server"
tls_uri() { echo "nbds+unix:///?socket=$1&tls-certificates=$P/$2"; }

# outcome PROG CLIENT-CMD...: "served" or "refused" for one client of a fresh server
# started with SERVER_ARGS (a global array).
outcome() {
    local prog=$1 sock=$T/s.sock r
    shift
    nbd_start "$prog" "$sock" -t "${SERVER_ARGS[@]}" -f raw "$T/disk.raw" ||
        { echo "server failed: $(cat "$T/server.err")"; return; }
    local pid=$NBD_PID
    if "$@" "$sock" >/dev/null 2>&1; then r=served; else r=refused; fi
    # The server must still serve a good client afterwards.
    if [ "$r" = refused ] && [ -n "${GOOD:-}" ] &&
        ! timeout 20 nbdinfo --size "$(tls_uri "$sock" "$GOOD")" >/dev/null 2>&1; then
        r="$r, then failed a good client"
    fi
    nbd_stop $pid
    echo $r
}
with_certs() { timeout 20 nbdinfo --size "$(tls_uri "$2" "$1")"; }
plain() { timeout 20 nbdinfo --size "$(nbd_uri "$1")"; }

# case NAME EXPECTED CLIENT...: both servers give EXPECTED.
check_case() {
    local name=$1 want=$2 q k
    shift 2
    q=$(outcome qemu-nbd "$@")
    k=$(outcome "$QKIT_NBD" "$@")
    t_eq "$name (qemu-nbd)" "$want" "$q"
    t_eq "$name" "$want" "$k"
}

SERVER_ARGS=(--object "$OBJ" --tls-creds tls0)
GOOD=client
check_case "tls: client with a CA-signed certificate is served" served with_certs client
check_case "tls: plain client is refused" refused plain
check_case "tls: client without a certificate is refused (verify-peer)" refused \
    with_certs noclient
check_case "tls: client with an untrusted certificate is refused" refused with_certs rogue

SERVER_ARGS=(--object "$OBJ,verify-peer=off" --tls-creds tls0)
check_case "tls verify-peer=off: client without a certificate is served" served \
    with_certs noclient
check_case "tls verify-peer=off: plain client is still refused" refused plain

# The subject as GnuTLS spells a peer's DN (certtool -i lists the parts reversed).
DN=$(certtool -i --infile "$P/client/client-cert.pem" | sed -n 's/^\tSubject: //p' |
     tr ',' '\n' | tac | paste -sd,)
SERVER_ARGS=(--object "$OBJ" --object "authz-simple,id=auth0,identity=${DN//,/,,}"
             --tls-creds tls0 --tls-authz auth0)
check_case "tls-authz: the named client is served" served with_certs client
SERVER_ARGS=(--object "$OBJ" --object "authz-simple,id=auth0,identity=CN=someone-else"
             --tls-creds tls0 --tls-authz auth0)
GOOD=
check_case "tls-authz: another client is refused" refused with_certs client

# Data over TLS: nbdcopy out through an encrypted connection, content checked.
SERVER_ARGS=(--object "$OBJ" --tls-creds tls0)
if nbd_start "$QKIT_NBD" "$T/c.sock" "${SERVER_ARGS[@]}" -r -f raw "$T/disk.raw"; then
    t_ok "nbdcopy over tls" nbdcopy "$(tls_uri "$T/c.sock" client)" "$T/copy.raw"
    t_ok "tls copy matches" cmp "$T/copy.raw" "$T/disk.raw"
    out=$(nbdinfo "$(tls_uri "$T/c.sock" client)" 2>&1 | head -1)
fi
nbd_start "$QKIT_NBD" "$T/c.sock" "${SERVER_ARGS[@]}" -r -f raw "$T/disk.raw" &&
    out=$(nbdinfo "$(tls_uri "$T/c.sock" client)" 2>&1 | head -1)
t_eq "nbdinfo reports TLS" "protocol: newstyle-fixed with TLS, using structured packets" "$out"

# qemu-img as a TLS client over TCP.
if nbd_start_tcp "$QKIT_NBD" "${SERVER_ARGS[@]}" -r -f raw "$T/disk.raw"; then
    out=$(qemu-img compare --object "tls-creds-x509,id=c0,endpoint=client,dir=$P/client" \
        --image-opts "driver=nbd,host=127.0.0.1,port=$NBD_PORT,tls-creds=c0" \
        "driver=file,filename=$T/disk.raw" 2>&1)
    t_eq "qemu-img over tls" "Images are identical." "$out"
fi
