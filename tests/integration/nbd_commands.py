"""Exercise every NBD command and flag through libnbd and print a transcript.

Usage: nbd_commands.py URI [readonly]

Run against qemu-nbd and qkit-nbd serving copies of the same image, the two
transcripts must be equal. The script also asserts what the protocol promises
(data written reads back, structured reads cover the range exactly once, ...).
libnbd's strict mode is turned off so that bad requests reach the server.
"""
import errno
import hashlib
import sys

import nbd

URI = sys.argv[1]
READONLY = len(sys.argv) > 2 and sys.argv[2] == "readonly"
out = []


def log(*args):
    out.append(" ".join(str(a) for a in args))


def digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


def connect(meta=("base:allocation",), structured=True):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    for m in meta:
        h.add_meta_context(m)
    h.set_strict_mode(0)
    h.connect_uri(URI)
    return h


def attempt(what, fn):
    """Run fn; log the NBD error name it fails with, or 'ok'."""
    try:
        r = fn()
        log(what, "ok")
        return r
    except nbd.Error as e:
        log(what, "error", errno.errorcode.get(e.errnum, e.errnum))
        return None


def extents(h, off, length, flags=0):
    got = {}

    def cb(meta, offset, entries, err):
        got.setdefault(meta, []).append((offset, list(entries)))
        return 0

    h.block_status(length, off, cb, flags=flags)
    return got


def structured_read(h, off, length, flags=0):
    chunks = []
    buf = bytearray(length)

    def cb(subbuf, offset, status, err):
        kind = {nbd.READ_DATA: "data", nbd.READ_HOLE: "hole"}.get(status, status)
        chunks.append((kind, offset, len(subbuf)))
        return 0

    data = h.pread_structured(length, off, cb, flags=flags)
    buf[:] = data
    # The chunks must cover the range exactly once.
    covered = sorted((o, o + n) for _, o, n in chunks)
    pos = off
    for a, b in covered:
        assert a == pos, (a, pos, chunks)
        pos = b
    assert pos == off + length, (pos, off + length)
    return bytes(buf), chunks


h = connect(("base:allocation", "qemu:allocation-depth"))
size = h.get_size()
log("size", size)
log("flags ro", h.is_read_only(), "flush", h.can_flush(), "fua", h.can_fua(),
    "trim", h.can_trim(), "zero", h.can_zero(), "fast_zero", h.can_fast_zero(),
    "cache", h.can_cache(), "df", h.can_df(), "multi", h.can_multi_conn())
log("meta base", h.can_meta_context("base:allocation"),
    "depth", h.can_meta_context("qemu:allocation-depth"))
log("structured", h.get_structured_replies_negotiated())

# Reads: plain, structured with holes, and don't-fragment.
for off, length in ((0, 65536), (65536, 131072), (0, 4 << 20), (1 << 20, 4096)):
    data = h.pread(length, off)
    log("read", off, length, digest(data))
    sdata, chunks = structured_read(h, off, length)
    assert sdata == data
    log("structured read", off, length, chunks)
    dfdata, dfchunks = structured_read(h, off, length, nbd.CMD_FLAG_DF)
    assert dfdata == data and len(dfchunks) == 1
    log("df read", off, length, dfchunks)

# Block status, full and REQ_ONE, for each context.
for off, length in ((0, size), (65536, 1 << 20), (3 << 20, 65536)):
    log("status", off, length, extents(h, off, length))
    log("status req_one", off, length, extents(h, off, length, nbd.CMD_FLAG_REQ_ONE))

# Bad requests the server must refuse (and keep the connection).
attempt("read past end", lambda: h.pread(4096, size))
attempt("read crossing end", lambda: h.pread(8192, size - 4096))
attempt("read with NO_HOLE flag", lambda: h.pread(4096, 0, flags=nbd.CMD_FLAG_NO_HOLE))
attempt("status past end", lambda: extents(h, size, 4096))
attempt("cache past end", lambda: h.cache(4096, size))
attempt("zero-length read", lambda: h.pread(0, 0))
attempt("cache", lambda: h.cache(65536, 0))
log("status after cache", extents(h, 0, 131072))
attempt("flush", lambda: h.flush())
assert h.pread(4096, 0) == h.pread(4096, 0)

if READONLY:
    attempt("write on read-only", lambda: h.pwrite(b"x" * 512, 0))
    attempt("trim on read-only", lambda: h.trim(4096, 0))
    attempt("zero on read-only", lambda: h.zero(4096, 0))
else:
    pattern = bytes(range(256)) * 16
    attempt("write", lambda: h.pwrite(pattern, 8192))
    assert h.pread(4096, 8192) == pattern
    attempt("write fua", lambda: h.pwrite(pattern, 1 << 20, flags=nbd.CMD_FLAG_FUA))
    assert h.pread(4096, 1 << 20) == pattern
    attempt("write past end", lambda: h.pwrite(b"y" * 512, size))
    attempt("write crossing end", lambda: h.pwrite(b"y" * 1024, size - 512))
    attempt("write unaligned", lambda: h.pwrite(b"u" * 3, 12345))
    assert h.pread(5, 12344)[1:4] == b"uuu"

    attempt("zero", lambda: h.zero(65536, 0))
    assert h.pread(65536, 0) == bytes(65536)
    log("status after zero", extents(h, 0, 131072))
    attempt("zero no_hole", lambda: h.zero(65536, 3 << 20, flags=nbd.CMD_FLAG_NO_HOLE))
    assert h.pread(65536, 3 << 20) == bytes(65536)
    log("status after zero no_hole", extents(h, 3 << 20, 131072))
    attempt("zero fast", lambda: h.zero(65536, 3 << 20, flags=nbd.CMD_FLAG_FAST_ZERO))
    attempt("zero fua", lambda: h.zero(4096, 8192, flags=nbd.CMD_FLAG_FUA))
    assert h.pread(4096, 8192) == bytes(4096)
    attempt("zero past end", lambda: h.zero(4096, size))
    attempt("zero with DF flag", lambda: h.zero(4096, 0, flags=nbd.CMD_FLAG_DF))

    attempt("trim", lambda: h.trim(65536, 2 << 20))
    attempt("trim fua", lambda: h.trim(4096, 2 << 20, flags=nbd.CMD_FLAG_FUA))
    log("status after trim", extents(h, 2 << 20, 131072))
    attempt("trim past end", lambda: h.trim(4096, size))
    attempt("flush after writes", lambda: h.flush())
    sdata, chunks = structured_read(h, 0, 1 << 20)
    log("structured read after writes", chunks, digest(sdata))

# A connection without structured replies: simple replies, no block status.
h2 = connect(meta=(), structured=False)
log("simple structured", h2.get_structured_replies_negotiated())
log("simple read", digest(h2.pread(1 << 20, 0)))
attempt("simple read past end", lambda: h2.pread(4096, size))
attempt("block status not negotiated", lambda: extents(h2, 0, 4096))
h2.shutdown()

# Structured replies but no meta context: block status is refused.
h3 = connect(meta=())
attempt("block status without a context", lambda: extents(h3, 0, 4096))
h3.shutdown()

# The first connection still works after all the refused requests.
log("final read", digest(h.pread(65536, 0)))
h.shutdown()
print("\n".join(out))
