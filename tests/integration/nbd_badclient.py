"""A hostile NBD client on raw sockets: garbage, truncated and oversize messages.

Usage: nbd_badclient.py SOCKET_PATH

Each case opens a new connection, misbehaves, and logs what the server answered
("closed" when it hung up). After each case a well-behaved client must still be
served. The transcript is compared between qemu-nbd and qkit-nbd.
"""
import socket
import struct
import sys

SOCK = sys.argv[1]
NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPMAGIC = 0x3E889045565A9
REQMAGIC = 0x25609513
SIMPLE = 0x67446698
STRUCTURED = 0x668E33EF
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO, OPT_SR = 1, 2, 3, 6, 7, 8
OPT_SET_META = 10
CMD_READ, CMD_WRITE, CMD_DISC, CMD_BLOCK_STATUS = 0, 1, 2, 7
out = []


def log(*a):
    out.append(" ".join(str(x) for x in a))


class Closed(Exception):
    pass


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        try:
            chunk = s.recv(n - len(buf))
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        if not chunk:
            raise Closed()
        buf += chunk
    return buf


def connect(flags=3):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(SOCK)
    magic, opt, hflags = struct.unpack(">QQH", recv_exact(s, 18))
    assert magic == NBDMAGIC and opt == IHAVEOPT
    if flags is not None:
        s.sendall(struct.pack(">I", flags))
    return s


def send_opt(s, opt, data=b"", length=None):
    n = len(data) if length is None else length
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, n) + data)


def opt_replies(s, opt):
    """Read replies to one option up to its final one; return their types."""
    types = []
    while True:
        magic, ropt, rtype, n = struct.unpack(">QIII", recv_exact(s, 20))
        assert magic == REPMAGIC and ropt == opt, (hex(magic), ropt, opt)
        recv_exact(s, n)
        types.append("ERR%d" % (rtype & 0x7FFFFFFF) if rtype & 0x80000000 else rtype)
        if rtype != 3 and rtype != 2 and rtype != 4:   # INFO, SERVER, META go on
            return types


def go(s, name=b"", structured=True, meta=False):
    if structured:
        send_opt(s, OPT_SR)
        opt_replies(s, OPT_SR)
    if meta:
        q = b"base:allocation"
        data = struct.pack(">I", len(name)) + name + struct.pack(">II", 1, len(q)) + q
        send_opt(s, OPT_SET_META, data)
        opt_replies(s, OPT_SET_META)
    send_opt(s, OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    return opt_replies(s, OPT_GO)


def request(s, cmd, offset, length, flags=0, cookie=7, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQMAGIC, flags, cmd, cookie, offset, length) + payload)


def reply(s, cookie=7, data_len=0):
    """One reply: 'ok' or the error number; structured chunks are read to the end."""
    magic = struct.unpack(">I", recv_exact(s, 4))[0]
    if magic == SIMPLE:
        err, ck = struct.unpack(">IQ", recv_exact(s, 12))
        assert cookie is None or ck == cookie
        if err == 0 and data_len:
            recv_exact(s, data_len)
        return "ok" if err == 0 else "E%d" % err
    assert magic == STRUCTURED, hex(magic)
    result = "ok"
    while True:
        flags, typ, ck, n = struct.unpack(">HHQI", recv_exact(s, 16))
        payload = recv_exact(s, n)
        if typ & 0x8000:
            result = "E%d" % struct.unpack(">I", payload[:4])[0]
        if flags & 1:
            return result
        magic = struct.unpack(">I", recv_exact(s, 4))[0]


def case(name, fn):
    try:
        log(name, fn())
    except Closed:
        log(name, "closed")
    # The server must go on serving a good client.
    s = connect()
    go(s)
    request(s, CMD_READ, 0, 512)
    assert reply(s, data_len=512) == "ok", name
    request(s, CMD_DISC, 0, 0)
    s.close()


def garbage_flags():
    s = connect(flags=None)
    s.sendall(b"\xff" * 64)
    return recv_exact(s, 1)


def unknown_option_then_go():
    s = connect()
    send_opt(s, 99, b"whatever")
    r = opt_replies(s, 99)
    return r, go(s)


def bad_option_magic():
    s = connect()
    s.sendall(struct.pack(">QII", 0x1234, OPT_GO, 0))
    return recv_exact(s, 1)


def truncated_option():
    s = connect()
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + b"abc")
    s.shutdown(socket.SHUT_WR)
    return recv_exact(s, 1)


def oversize_option():
    s = connect()
    send_opt(s, OPT_GO, b"", length=0x7FFFFFFF)
    return recv_exact(s, 1)


def bad_info_lengths():
    s = connect()
    send_opt(s, OPT_INFO, struct.pack(">I", 1000) + b"x")
    r1 = opt_replies(s, OPT_INFO)
    send_opt(s, OPT_GO, struct.pack(">I", 0) + struct.pack(">H", 5))
    r2 = opt_replies(s, OPT_GO)
    send_opt(s, OPT_LIST, b"junk")
    r3 = opt_replies(s, OPT_LIST)
    return r1, r2, r3, go(s)


def unknown_export():
    s = connect()
    send_opt(s, OPT_GO, struct.pack(">I", 5) + b"nope!" + struct.pack(">H", 0))
    return opt_replies(s, OPT_GO), go(s)


def unknown_export_name():
    s = connect()
    send_opt(s, OPT_EXPORT_NAME, b"nope")
    return recv_exact(s, 1)


def meta_before_structured():
    s = connect()
    q = b"base:allocation"
    send_opt(s, OPT_SET_META, struct.pack(">I", 0) + struct.pack(">II", 1, len(q)) + q)
    return opt_replies(s, OPT_SET_META), go(s)


def transmission(structured):
    def run():
        s = connect()
        go(s, structured=structured)
        res = []
        request(s, CMD_READ, 1 << 40, 512)
        res.append(reply(s))
        request(s, CMD_READ, (1 << 63) + 5, 512)
        res.append(reply(s))
        request(s, CMD_READ, 0, 64 << 20)
        res.append(reply(s))
        request(s, 99, 0, 0)
        res.append(reply(s))
        request(s, CMD_BLOCK_STATUS, 0, 512)
        res.append(reply(s))
        request(s, CMD_READ, 0, 512, flags=0x80)
        res.append(reply(s))
        request(s, CMD_WRITE, 1 << 40, 4, payload=b"abcd")
        res.append(reply(s))
        request(s, CMD_READ, 0, 512)
        res.append(reply(s, data_len=512))
        return res
    return run


def bad_request_magic():
    s = connect()
    go(s)
    s.sendall(b"\x00" * 28)
    return recv_exact(s, 1)


def truncated_request():
    s = connect()
    go(s)
    s.sendall(struct.pack(">IHH", REQMAGIC, 0, CMD_READ))
    s.shutdown(socket.SHUT_WR)
    return recv_exact(s, 1)


def truncated_write_payload():
    s = connect()
    go(s)
    request(s, CMD_WRITE, 0, 4096, payload=b"z" * 100)
    s.shutdown(socket.SHUT_WR)
    return recv_exact(s, 1)


def pipelined():
    s = connect()
    go(s, structured=False)
    for i in range(64):
        request(s, CMD_READ, i * 512, 512, cookie=i)
    got = []
    for i in range(64):   # replies may come in any order
        got.append(reply(s, cookie=None, data_len=512))
    request(s, CMD_DISC, 0, 0)
    return sorted(set(got))


case("garbage client flags", garbage_flags)
case("unknown option, then GO", unknown_option_then_go)
case("option with a bad magic", bad_option_magic)
case("truncated option", truncated_option)
case("oversize option", oversize_option)
case("bad INFO/GO/LIST lengths, then GO", bad_info_lengths)
case("GO for an unknown export, then GO", unknown_export)
case("EXPORT_NAME for an unknown export", unknown_export_name)
case("SET_META_CONTEXT before structured replies", meta_before_structured)
case("bad requests, simple replies", transmission(False))
case("bad requests, structured replies", transmission(True))
case("request with a bad magic", bad_request_magic)
case("truncated request", truncated_request)
case("truncated write payload", truncated_write_payload)
case("64 pipelined reads", pipelined)
print("\n".join(out))
