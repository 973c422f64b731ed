# Helpers for the NBD server tests (sourced after lib.sh): start qkit-nbd or
# qemu-nbd in the background (--fork, so the call returns once the server listens),
# remember their pids, and kill them all when the test exits.
QKIT_NBD=${QKIT_NBD:-$BUILD/tools/qkit-nbd/qkit-nbd}
# libnbd's python module (nbdsh) is installed for Debian's python, not a pyenv one.
NBD_PY=${NBD_PY:-/usr/bin/python3}
NBD_PIDS=()

# True while process PID runs (a daemon that exited may linger as a zombie until
# init reaps it; that counts as gone).
nbd_alive() {
    local st
    st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# Kill every server this test started and wait until they are gone.
nbd_stop_all() {
    local p i
    for p in "${NBD_PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${NBD_PIDS[@]}"; do
        for i in $(seq 50); do nbd_alive "$p" || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null
    done
    NBD_PIDS=()
}
trap 'nbd_stop_all; rm -rf "$T"' EXIT

# nbd_start PROG SOCK ARGS...: serve on the unix socket SOCK; its pid is in NBD_PID.
# The server's stderr up to the moment it serves goes to $T/server.err.
nbd_start() {
    local prog=$1 sock=$2 pidf
    shift 2
    pidf=$(mktemp "$T/pid.XXXXXX")
    rm -f "$sock" "$pidf"
    if ! timeout 30 "$prog" --fork --pid-file="$pidf" -k "$sock" "$@" 2>"$T/server.err"; then
        NBD_PID=
        return 1
    fi
    NBD_PID=$(cat "$pidf")
    NBD_PIDS+=("$NBD_PID")
}

# nbd_start_tcp PROG ARGS...: serve on 127.0.0.1 at a free port (NBD_PORT), retrying
# on ports another process holds.
nbd_start_tcp() {
    local prog=$1 pidf try
    shift
    for try in $(seq 20); do
        NBD_PORT=$((20000 + RANDOM % 40000))
        pidf=$(mktemp "$T/pid.XXXXXX")
        rm -f "$pidf"
        if timeout 30 "$prog" --fork --pid-file="$pidf" -b 127.0.0.1 -p "$NBD_PORT" "$@" \
                2>"$T/server.err"; then
            NBD_PID=$(cat "$pidf")
            NBD_PIDS+=("$NBD_PID")
            return 0
        fi
        grep -q "available port" "$T/server.err" || return 1
    done
    return 1
}

# nbd_stop PID: stop one server and wait for it to exit.
nbd_stop() {
    local i
    kill "$1" 2>/dev/null
    for i in $(seq 100); do nbd_alive "$1" || return 0; sleep 0.05; done
    kill -9 "$1" 2>/dev/null
}

# nbd_wait_exit PID: true if the server exits by itself within 5 s.
nbd_wait_exit() {
    local i
    for i in $(seq 100); do nbd_alive "$1" || return 0; sleep 0.05; done
    return 1
}

# The nbd URI of the default export on a unix socket (name optional).
nbd_uri() { echo "nbd+unix:///${2:-}?socket=$1"; }

# nbdsh with libnbd's python module available.
nbd_sh() { PATH=/usr/bin:$PATH nbdsh "$@"; }

# nbd_pki_ca PREFIX TEMPLATE: a self-signed CA, PREFIX-key.pem and PREFIX-cert.pem.
nbd_pki_ca() {
    certtool --generate-privkey --outfile "$1-key.pem" &&
    certtool --generate-self-signed --load-privkey "$1-key.pem" --template "$2" \
        --outfile "$1-cert.pem"
}

# nbd_pki_cert PREFIX CA TEMPLATE: PREFIX-key.pem and PREFIX-cert.pem, signed by the CA
# made by nbd_pki_ca CA.
nbd_pki_cert() {
    certtool --generate-privkey --outfile "$1-key.pem" &&
    certtool --generate-certificate --load-privkey "$1-key.pem" \
        --load-ca-certificate "$2-cert.pem" --load-ca-privkey "$2-key.pem" \
        --template "$3" --outfile "$1-cert.pem"
}

# nbd_make_pki DIR: certificates for the TLS tests, made with certtool. A CA
# (DIR/ca-{key,cert}.pem); DIR/server/ for tls-creds-x509,endpoint=server with a
# certificate for localhost and 127.0.0.1; DIR/client/ for endpoint=client with a
# client certificate; both hold the CA certificate. A second CA that nothing trusts
# (DIR/rogue-ca-{key,cert}.pem). Templates are DIR/{ca,server,client}.info. Fails at
# the first step that fails (certtool's messages go to stdout and stderr).
nbd_make_pki() {
    local p=$1
    mkdir -p "$p/server" "$p/client" || return 1
    cat >"$p/ca.info" <<'EOF'
cn = qkit test CA
ca
cert_signing_key
expiration_days = 2
EOF
    cat >"$p/server.info" <<'EOF'
organization = qkit
cn = localhost
dns_name = localhost
ip_address = 127.0.0.1
tls_www_server
encryption_key
signing_key
expiration_days = 2
EOF
    cat >"$p/client.info" <<'EOF'
country = GB
organization = qkit
cn = client.example.com
tls_www_client
encryption_key
signing_key
expiration_days = 2
EOF
    nbd_pki_ca "$p/ca" "$p/ca.info" &&
    nbd_pki_cert "$p/server/server" "$p/ca" "$p/server.info" &&
    nbd_pki_cert "$p/client/client" "$p/ca" "$p/client.info" &&
    nbd_pki_ca "$p/rogue-ca" "$p/ca.info" &&
    cp "$p/ca-cert.pem" "$p/server/" && cp "$p/ca-cert.pem" "$p/client/"
}
