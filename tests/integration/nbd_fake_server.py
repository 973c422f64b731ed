#!/usr/bin/env python3
"""A misbehaving NBD server for client robustness tests.

Usage: nbd_fake_server.py MODE SOCKET_PATH

Listens on the unix socket, serves connections one after another until killed. The
export is 1 MiB whose byte at offset i is (i // 512) & 0xff, so reads can be checked.
MODE picks the fault:
  badmagic     junk instead of the greeting
  eof          close right after accepting
  exportname   fixed newstyle that answers NBD_REP_ERR_UNSUP to every option, so the
               client must fall back to NBD_OPT_EXPORT_NAME; simple replies
  badcookie    reads are answered with a cookie that was never sent
  hugechunk    a structured read chunk claiming 4 GiB of payload
  oob          an OFFSET_DATA chunk outside the requested range
  short        a structured read reply that covers only half the request
  errchunk     reads fail with an NBD_REPLY_TYPE_ERROR chunk (ENOSPC + message)
  badblock     NBD_INFO_BLOCK_SIZE with a minimum block size of 3
  hangup       the connection is dropped in the middle of a read reply
  split        (well-behaved) each read comes as two data chunks, second half first,
               then a final NBD_REPLY_TYPE_NONE chunk
"""
import os
import socket
import struct
import sys

NBD_MAGIC = 0x4E42444D41474943
OPTS_MAGIC = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF
OPT_EXPORT_NAME, OPT_ABORT, OPT_GO, OPT_STRUCTURED = 1, 2, 7, 8
REP_ACK, REP_INFO, REP_ERR_UNSUP = 1, 3, (1 << 31) | 1
INFO_EXPORT, INFO_BLOCK_SIZE = 0, 3
CMD_READ, CMD_DISC = 0, 2
FLAG_HAS_FLAGS, FLAG_READ_ONLY, FLAG_SEND_FLUSH = 1, 2, 4
REPLY_DONE = 1
TYPE_NONE, TYPE_DATA, TYPE_ERROR = 0, 1, (1 << 15) | 1
SIZE = 1 << 20
EFLAGS = FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH


def content(off, length):
    return bytes(((off + i) // 512) & 0xFF for i in range(length))


def recv_all(c, n):
    buf = b""
    while len(buf) < n:
        part = c.recv(n - len(buf))
        if not part:
            raise EOFError
        buf += part
    return buf


def opt_reply(c, opt, typ, data=b""):
    c.sendall(struct.pack(">QIII", REP_MAGIC, opt, typ, len(data)) + data)


def handshake(c, mode):
    """Fixed newstyle; returns True when structured replies were agreed."""
    c.sendall(struct.pack(">QQH", NBD_MAGIC, OPTS_MAGIC, 3))
    recv_all(c, 4)
    structured = False
    while True:
        magic, opt, length = struct.unpack(">QII", recv_all(c, 16))
        data = recv_all(c, length)
        if opt == OPT_EXPORT_NAME:
            c.sendall(struct.pack(">QH", SIZE, EFLAGS))
            return structured
        if opt == OPT_ABORT:
            raise EOFError
        if mode == "exportname":
            opt_reply(c, opt, REP_ERR_UNSUP)
        elif opt == OPT_STRUCTURED:
            structured = True
            opt_reply(c, opt, REP_ACK)
        elif opt == OPT_GO:
            opt_reply(c, opt, REP_INFO, struct.pack(">HQH", INFO_EXPORT, SIZE, EFLAGS))
            if mode == "badblock":
                opt_reply(c, opt, REP_INFO, struct.pack(">HIII", INFO_BLOCK_SIZE, 3, 4096,
                                                        1 << 20))
            opt_reply(c, opt, REP_ACK)
            return structured
        else:
            opt_reply(c, opt, REP_ERR_UNSUP)


def chunk(c, flags, typ, cookie, payload, length=None):
    n = len(payload) if length is None else length
    c.sendall(struct.pack(">IHHQI", STRUCT_MAGIC, flags, typ, cookie, n) + payload)


def serve_read(c, mode, structured, cookie, off, length):
    if mode == "badcookie":
        c.sendall(struct.pack(">IIQ", SIMPLE_MAGIC, 0, cookie + 1000) + content(off, length))
    elif mode == "hangup":
        c.sendall(struct.pack(">IIQ", SIMPLE_MAGIC, 0, cookie) + content(off, length // 2))
        raise EOFError
    elif not structured:
        c.sendall(struct.pack(">IIQ", SIMPLE_MAGIC, 0, cookie) + content(off, length))
    elif mode == "hugechunk":
        chunk(c, REPLY_DONE, TYPE_DATA, cookie, struct.pack(">Q", off), 0xFFFFFFFF)
    elif mode == "oob":
        chunk(c, REPLY_DONE, TYPE_DATA, cookie,
              struct.pack(">Q", off + length) + content(off + length, 512))
    elif mode == "short":
        half = length // 2
        chunk(c, REPLY_DONE, TYPE_DATA, cookie, struct.pack(">Q", off) + content(off, half))
    elif mode == "split":
        half = length // 2
        chunk(c, 0, TYPE_DATA, cookie,
              struct.pack(">Q", off + half) + content(off + half, length - half))
        chunk(c, 0, TYPE_DATA, cookie, struct.pack(">Q", off) + content(off, half))
        chunk(c, REPLY_DONE, TYPE_NONE, cookie, b"")
    elif mode == "errchunk":
        msg = b"disk on fire"
        chunk(c, REPLY_DONE, TYPE_ERROR, cookie, struct.pack(">IH", 28, len(msg)) + msg)
    else:
        chunk(c, REPLY_DONE, TYPE_DATA, cookie, struct.pack(">Q", off) + content(off, length))


def serve(c, mode):
    if mode == "badmagic":
        c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        return
    if mode == "eof":
        return
    structured = handshake(c, mode)
    while True:
        magic, flags, typ, cookie, off, length = struct.unpack(">IHHQQI", recv_all(c, 28))
        if typ == CMD_DISC:
            return
        if typ == CMD_READ:
            serve_read(c, mode, structured, cookie, off, length)
        else:
            c.sendall(struct.pack(">IIQ", SIMPLE_MAGIC, 0, cookie))


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4)
    while True:
        c, _ = s.accept()
        try:
            serve(c, mode)
        except (EOFError, OSError):
            pass
        finally:
            c.close()


if __name__ == "__main__":
    main()
