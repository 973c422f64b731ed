#!/usr/bin/env python3
"""Differential sessions: the same bytes to qkit-ga and to QEMU 7.2's qemu-ga over unix
sockets; replies must be equal field for field (byte for byte where nothing varies by
nature). Prints PASS:/FAIL:/SKIP: lines for tests/run-all.sh.

usage: qga_diff.py QKIT_GA TMPDIR
"""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

QKIT, TMP = os.path.abspath(sys.argv[1]), sys.argv[2]
QEMU = shutil.which("qemu-ga") or "/usr/sbin/qemu-ga"
REPLY_TIMEOUT = 30


def log(kind, name, *ctx):
    if kind == "SKIP" and ctx:
        # A skip carries its reason on the same line, as the test runner reads it.
        print(f"SKIP: {name} ({ctx[0]})")
        sys.stdout.flush()
        return
    print(f"{kind}: {name}")
    for c in ctx:
        for line in str(c).splitlines()[:40]:
            print("  " + line[:400])
    sys.stdout.flush()


class Agent:
    """One agent process on its own socket and state dir."""

    def __init__(self, prog, tag, extra=(), env=None):
        self.dir = os.path.join(TMP, tag)
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        self.sock = os.path.join(self.dir, "qga.sock")
        e = dict(os.environ)
        e.update(env or {})
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(
            [prog, "-m", "unix-listen", "-p", self.sock, "-t",
             os.path.join(self.dir, "state"), *extra],
            stdout=self.log, stderr=self.log, env=e, cwd=self.dir)
        for _ in range(200):
            if os.path.exists(self.sock):
                break
            time.sleep(0.02)
        self.conn = None

    def connect(self):
        if self.conn:
            self.conn.close()
        self.conn = socket.socket(socket.AF_UNIX)
        self.conn.connect(self.sock)
        self.conn.settimeout(REPLY_TIMEOUT)
        self.buf = b""

    def alive(self):
        return self.proc.poll() is None

    def send(self, data):
        self.conn.sendall(data)

    def read_until_sync(self, sync_id):
        """Replies up to (not including) the reply to guest-sync with sync_id."""
        marker = b'{"return": %d}\n' % sync_id
        while marker not in self.buf:
            chunk = self.conn.recv(1 << 20)
            if not chunk:
                raise EOFError("agent closed the connection")
            self.buf += chunk
        i = self.buf.index(marker)
        out, self.buf = self.buf[:i], self.buf[i + len(marker):]
        return out

    def stop(self):
        if self.conn:
            self.conn.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


SYNC = [1000000]


def exchange(agent, data):
    """Send data then a guest-sync; the replies in between, split into lines."""
    SYNC[0] += 1
    agent.send(data)
    agent.send(b'\n{"execute":"guest-sync","arguments":{"id":%d}}\n' % SYNC[0])
    raw = agent.read_until_sync(SYNC[0])
    return [l for l in re.split(rb"(?<=\n)", raw) if l]


def mask(obj, keys):
    """Replace the values of the named keys anywhere in obj by a placeholder."""
    if isinstance(obj, dict):
        return {k: ("<masked>" if k in keys else mask(v, keys)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [mask(v, keys) for v in obj]
    return obj


def parse(line):
    text = line.lstrip(b"\xff").decode("ascii", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def compare(name, a, b, data, masked=(), exact=True):
    """One step: qkit-ga's replies a against qemu-ga's b."""
    if exact and not masked:
        ok = a == b
    else:
        pa = [mask(parse(l), set(masked)) for l in a]
        pb = [mask(parse(l), set(masked)) for l in b]
        ok = pa == pb and [l[:1] == b"\xff" for l in a] == [l[:1] == b"\xff" for l in b]
    if ok:
        log("PASS", name)
    else:
        log("FAIL", name, "sent: " + repr(data[:300]), "qkit-ga: " + repr(b"".join(a)[:1500]),
            "qemu-ga: " + repr(b"".join(b)[:1500]))
    return ok


def run_steps(prefix, steps, qkit_args=(), qemu_args=(), env=None):
    """Run (name, data, masked-keys) steps on a fresh pair of agents."""
    k = Agent(QKIT, prefix + "-qkit", qkit_args, env)
    q = Agent(QEMU, prefix + "-qemu", qemu_args, env)
    try:
        k.connect()
        q.connect()
        for step in steps:
            name, data = step[0], step[1]
            masked = step[2] if len(step) > 2 else ()
            if isinstance(data, str):
                data = data.encode()
            if masked == "nosync":
                k.send(data)
                q.send(data)
                time.sleep(0.2)
                continue
            try:
                a = exchange(k, data)
            except (EOFError, OSError, socket.timeout) as e:
                log("FAIL", f"{prefix}: {name}", f"qkit-ga: {e!r}")
                k.connect()
                continue
            b = exchange(q, data)
            compare(f"{prefix}: {name}", a, b, data, masked)
        if k.alive():
            log("PASS", f"{prefix}: qkit-ga still running after the session")
        else:
            log("FAIL", f"{prefix}: qkit-ga died (exit {k.proc.returncode})")
    finally:
        k.stop()
        q.stop()
    return k, q


def cmd(name, args=None, id_=None):
    m = {"execute": name}
    if args is not None:
        m["arguments"] = args
    if id_ is not None:
        m["id"] = id_
    return json.dumps(m)


# ---- session 1: the protocol itself -------------------------------------------------
PROTOCOL = [
    ("ping", cmd("guest-ping")),
    ("ping with string id", cmd("guest-ping", id_="abc")),
    ("ping with object id", '{"execute":"guest-ping","id":{"a":[1,2,{"b":null}]}}'),
    ("ids of every number kind", '{"execute":"guest-ping","id":1.5}'
     '{"execute":"guest-ping","id":1e400}{"execute":"guest-ping","id":-0.0}'
     '{"execute":"guest-ping","id":123456789012345678901234567890}'
     '{"execute":"guest-ping","id":9223372036854775808}'
     '{"execute":"guest-ping","id":-9223372036854775808}'
     '{"execute":"guest-ping","id":0.1}{"execute":"guest-ping","id":1E+2}'),
    ("string escapes and unicode", r'{"execute":"guest-ping","id":"\u00e9\ud83d\ude00\u007f/\t\b\f\n\r\"\\\/"}'),
    ("raw utf-8 and modified utf-8 NUL", b'{"execute":"guest-ping","id":"\xc3\xa9\xf0\x9f\x98\x80\xc0\x80"}'),
    ("single-quoted strings", "{'execute':'guest-ping','id':'a\\'b\"c'}"),
    ("two messages in one write", cmd("guest-ping", id_=1) + cmd("guest-ping", id_=2)),
    ("whitespace around messages", b'  \r\n\t {"execute":"guest-ping","id":5}  \n'),
    ("invalid JSON: missing value", '{ "execute": }'),
    ("invalid JSON: bad keyword", '{"execute":"guest-ping","id":tru}'),
    ("invalid JSON: missing separator", '{"execute":"guest-ping" "id":1}'),
    ("invalid JSON: missing colon", '{"execute" "guest-ping"}'),
    ("invalid JSON: non-string key", '{1:2}'),
    ("invalid JSON: trailing comma", '{"a":1,}'),
    ("invalid JSON: list separator", '[1 2]'),
    ("invalid JSON: stray close", '}]'),
    ("invalid JSON: bad escape", r'{"execute":"guest-ping","id":"\x"}'),
    ("invalid JSON: short unicode escape", r'{"execute":"guest-ping","id":"\u12"}'),
    ("invalid JSON: lone surrogate", r'{"execute":"guest-ping","id":"\ud800"}'),
    ("invalid JSON: noncharacter", r'{"execute":"guest-ping","id":"\uFFFF"}'),
    ("invalid JSON: bad utf-8", b'{"execute":"guest-ping","id":"\xc3\x28"}'),
    ("invalid JSON: encoded surrogate", b'{"execute":"guest-ping","id":"\xed\xa0\x80"}'),
    ("invalid JSON: leading zero", '{"execute":"guest-ping","id":01}'),
    ("invalid JSON: lone minus", '{"execute":"guest-ping","id":-}'),
    ("invalid JSON: bad exponent", '{"execute":"guest-ping","id":1e}'),
    ("invalid JSON: uppercase keyword", '{"execute":"guest-ping","id":TRUE}'),
    ("invalid JSON: control byte in string", b'{"execute":"guest-ping","id":"a\x01b"}'),
    ("invalid JSON: 0xFE in string", b'{"execute":"guest-ping","id":"\xfe"}'),
    ("invalid JSON: duplicate key", '{"execute":"guest-ping","id":1,"id":2}'),
    ("stray bytes then a command", b'01\x01' + cmd("guest-ping", id_=3).encode()),
    ("not an object", '[1,2] "str" 42 true'),
    ("unknown top-level member", '{"foo":1}'),
    ("execute not a string", '{"execute":1,"id":7}'),
    ("arguments not an object", '{"execute":"guest-ping","arguments":[]}'),
    ("no execute", '{"id":9}'),
    ("exec-oob refused", '{"exec-oob":"guest-ping"}'),
    ("unknown command", cmd("guest-nope", id_=1)),
    ("wrong argument type", cmd("guest-sync", {"id": "x"}, id_=9)),
    ("float for an int", cmd("guest-sync", {"id": 1.5})),
    ("uint64 for an int", '{"execute":"guest-sync","arguments":{"id":18446744073709551615}}'),
    ("missing argument", cmd("guest-sync", {}, id_=9)),
    ("unexpected argument", cmd("guest-sync", {"id": 5, "extra": 1})),
    ("argument to a command without any", cmd("guest-ping", {"x": 1})),
    ("null arguments", '{"execute":"guest-ping","arguments":null}'),
    ("nested list member type", cmd("guest-set-vcpus", {"vcpus": [{"logical-id": "a", "online": True}]})),
    ("nested list missing member", cmd("guest-set-vcpus", {"vcpus": [{"online": True}]})),
    ("nested unexpected member", cmd("guest-set-vcpus", {"vcpus": [{"logical-id": 0, "online": True, "x": 1}]})),
    ("list expected", cmd("guest-set-vcpus", {"vcpus": {}})),
    ("object expected in list", cmd("guest-set-vcpus", {"vcpus": [1]})),
    ("string list element type", cmd("guest-exec", {"path": "/bin/true", "arg": ["a", 1]})),
    ("enum value refused", cmd("guest-file-seek", {"handle": 1, "offset": 0, "whence": "foo"})),
    ("alternate type refused", cmd("guest-file-seek", {"handle": 1, "offset": 0, "whence": True})),
    ("message split across writes (1)", '{"execute":"guest-ping",', "nosync"),
    ("message split across writes (2)", '"id":"split"}'),
    ("0xFF resync and guest-sync-delimited",
     b'{"execute":"guest-pi\xff' + cmd("guest-sync-delimited", {"id": 4242}).encode()),
    ("guest-sync-delimited alone", cmd("guest-sync-delimited", {"id": -7}, id_="d")),
    ("nesting limit", b'{"execute":"guest-ping","id":' + b'[' * 1100 + b']' * 1100 + b'}'),
    ("after the nesting limit", cmd("guest-ping", id_="ok")),
]


def big_message_session():
    """A 100 MB message: the size error, then resync with 0xFF; the agent goes on."""
    steps = [
        ("100 MB message", b'{"execute":"guest-ping","id":"' + b"a" * (100 << 20) + b'"}'
         + b'\xff' + cmd("guest-sync-delimited", {"id": 77}).encode()),
        ("serving after the 100 MB message", cmd("guest-ping", id_="after")),
    ]
    run_steps("big", steps)


def disconnect_session():
    """A client that leaves mid-message; the next client starts clean. (qemu-ga keeps
    one parser for the life of the socket, so its next client inherits the half
    message and must resync with 0xFF; qkit-ga gives each connection a fresh parser,
    which answers what that resync would. The check is on qkit-ga alone.)"""
    k = Agent(QKIT, "disc-qkit")
    try:
        k.connect()
        k.send(b'{"execute":"guest-ping","id":"half')
        k.conn.close()
        k.conn = None
        time.sleep(0.2)
        k.connect()
        r = exchange(k, cmd("guest-ping", id_="fresh").encode())
        if r == [b'{"return": {}, "id": "fresh"}\n'] and k.alive():
            log("PASS", "disconnect mid-message: next client served")
        else:
            log("FAIL", "disconnect mid-message: next client served", r)
    finally:
        k.stop()


def file_session():
    path = os.path.join(TMP, "file-data")
    path2 = os.path.join(TMP, "file-data2")
    payload = bytes(range(256)) * 40 + b"tail"
    b64 = base64.b64encode(payload).decode()
    steps = []
    for p, tag in ((path, "a"), (path2, "b")):
        pass
    # Each agent writes its own file; the replies (handles included) must match.
    def for_agent(p):
        return [
            ("open missing file", cmd("guest-file-open", {"path": p + ".none"})),
            ("open bad mode", cmd("guest-file-open", {"path": p, "mode": "zz"})),
            ("open for write", cmd("guest-file-open", {"path": p, "mode": "w+"})),
            ("write", cmd("guest-file-write", {"handle": 1000, "buf-b64": b64})),
            ("write with count", cmd("guest-file-write", {"handle": 1000, "buf-b64": "YWJj", "count": 2})),
            ("write count too big", cmd("guest-file-write", {"handle": 1000, "buf-b64": "YWJj", "count": 5})),
            ("write negative count", cmd("guest-file-write", {"handle": 1000, "buf-b64": "YWJj", "count": -1})),
            ("write bad base64", cmd("guest-file-write", {"handle": 1000, "buf-b64": "Y Q=="})),
            ("write lenient base64", cmd("guest-file-write", {"handle": 1000, "buf-b64": "ab=c"})),
            ("write base64 with newline", cmd("guest-file-write", {"handle": 1000, "buf-b64": "YQ==\n"})),
            ("flush", cmd("guest-file-flush", {"handle": 1000})),
            ("seek to start", cmd("guest-file-seek", {"handle": 1000, "offset": 0, "whence": "set"})),
            ("seek by number", cmd("guest-file-seek", {"handle": 1000, "offset": 3, "whence": 0})),
            ("seek bad whence code", cmd("guest-file-seek", {"handle": 1000, "offset": 0, "whence": 7})),
            ("seek negative", cmd("guest-file-seek", {"handle": 1000, "offset": -100, "whence": "set"})),
            ("seek from end", cmd("guest-file-seek", {"handle": 1000, "offset": -4, "whence": "end"})),
            ("read to eof", cmd("guest-file-read", {"handle": 1000})),
            ("read at eof", cmd("guest-file-read", {"handle": 1000, "count": 10})),
            ("seek start again", cmd("guest-file-seek", {"handle": 1000, "offset": 0, "whence": "set"})),
            ("read count 0", cmd("guest-file-read", {"handle": 1000, "count": 0})),
            ("read count 5", cmd("guest-file-read", {"handle": 1000, "count": 5})),
            ("read count too large", cmd("guest-file-read", {"handle": 1000, "count": (48 << 20) + 1})),
            ("read negative count", cmd("guest-file-read", {"handle": 1000, "count": -1})),
            ("read default count", cmd("guest-file-read", {"handle": 1000})),
            ("close", cmd("guest-file-close", {"handle": 1000})),
            ("closed handle can't be reused (read)", cmd("guest-file-read", {"handle": 1000})),
            ("closed handle can't be reused (close)", cmd("guest-file-close", {"handle": 1000})),
            ("unknown handle", cmd("guest-file-write", {"handle": 12345, "buf-b64": ""})),
            ("open read-only", cmd("guest-file-open", {"path": p, "mode": "r"})),
            ("write to read-only handle", cmd("guest-file-write", {"handle": 1001, "buf-b64": "YWJj"})),
            ("open a directory", cmd("guest-file-open", {"path": TMP})),
            ("read a directory", cmd("guest-file-read", {"handle": 1002})),
            ("open for append", cmd("guest-file-open", {"path": p, "mode": "a"})),
            ("append", cmd("guest-file-write", {"handle": 1003, "buf-b64": "ZW5k"})),
            ("close append handle", cmd("guest-file-close", {"handle": 1003})),
            ("read on write-only handle", cmd("guest-file-read", {"handle": 1003})),
        ]
    k = Agent(QKIT, "file-qkit")
    q = Agent(QEMU, "file-qemu")
    try:
        k.connect()
        q.connect()
        sa, sb = for_agent(path), for_agent(path2)
        for (name, da), (_, db) in zip(sa, sb):
            ra = exchange(k, da.encode())
            rb = exchange(q, db.encode())
            ra = [l.replace(path.encode(), b"PATH") for l in ra]
            rb = [l.replace(path2.encode(), b"PATH") for l in rb]
            compare("file: " + name, ra, rb, da.encode())
        with open(path, "rb") as f:
            a = f.read()
        with open(path2, "rb") as f:
            b = f.read()
        if a == b and a.startswith(payload + b"ab"):
            log("PASS", "file: the bytes on disk are what was written, same as qemu-ga's")
        else:
            log("FAIL", "file: the bytes on disk differ", f"qkit {a[-40:]!r}", f"qemu {b[-40:]!r}")
    finally:
        k.stop()
        q.stop()
    # handle numbers persist across restarts through the state file
    k = Agent(QKIT, "file-qkit")
    try:
        k.connect()
        r = exchange(k, cmd("guest-file-open", {"path": path}).encode())
        if r == [b'{"return": 1004}\n']:
            log("PASS", "file: handles keep counting after a restart (state file)")
        else:
            log("FAIL", "file: handles keep counting after a restart (state file)", r)
    finally:
        k.stop()


def exec_status(agent, pid):
    for _ in range(500):
        r = exchange(agent, cmd("guest-exec-status", {"pid": pid}).encode())
        v = parse(r[0])
        if "return" in v and v["return"].get("exited"):
            return r
        time.sleep(0.02)
    return r


def exec_session():
    cases = [
        ("echo captured", {"path": "echo", "arg": ["hi", "there"], "capture-output": True}),
        ("stdin, stderr and exit code", {"path": "sh", "arg": ["-c", "cat; echo err >&2; exit 3"],
                                         "input-data": base64.b64encode(b"input\x00data").decode(),
                                         "capture-output": True}),
        ("killed by a signal", {"path": "sh", "arg": ["-c", "kill -9 $$"]}),
        ("environment replaced", {"path": "/usr/bin/env", "env": ["A=1", "B=two"], "capture-output": True}),
        ("no output captured", {"path": "sh", "arg": ["-c", "echo hidden"]}),
        ("empty output", {"path": "true", "capture-output": True}),
        ("output over 16 MiB is truncated", {"path": "head", "arg": ["-c", "17000000", "/dev/zero"],
                                             "capture-output": True}),
    ]
    k = Agent(QKIT, "exec-qkit")
    q = Agent(QEMU, "exec-qemu")
    try:
        k.connect()
        q.connect()
        for name, args in cases:
            ra = exchange(k, cmd("guest-exec", args).encode())
            rb = exchange(q, cmd("guest-exec", args).encode())
            if not compare("exec: " + name + " (start)", ra, rb, b"", masked=("pid",)):
                continue
            sa = exec_status(k, parse(ra[0])["return"]["pid"])
            sb = exec_status(q, parse(rb[0])["return"]["pid"])
            compare("exec: " + name + " (status)", sa, sb, json.dumps(args).encode())
            if name == "echo captured":
                direct = subprocess.run(["echo", "hi", "there"], capture_output=True).stdout
                got = base64.b64decode(parse(sa[0])["return"]["out-data"])
                if got == direct:
                    log("PASS", "exec: output matches running the command directly")
                else:
                    log("FAIL", "exec: output matches running the command directly", got, direct)
            pid = parse(ra[0])["return"]["pid"]
            again = exchange(k, cmd("guest-exec-status", {"pid": pid}).encode())
            if again == [b'{"error": {"class": "GenericError", "desc": "Invalid parameter \'pid\'"}}\n']:
                log("PASS", "exec: " + name + ": status is handed out once")
            else:
                log("FAIL", "exec: " + name + ": status is handed out once", again)
        for name, args in [("missing program", {"path": "/nonexistent/prog"}),
                           ("missing program in PATH", {"path": "no-such-prog-qkit"}),
                           ("bad input-data", {"path": "true", "input-data": "!!"}),
                           ("unknown pid", None)]:
            data = cmd("guest-exec", args) if args else cmd("guest-exec-status", {"pid": 999999999})
            compare("exec: " + name, exchange(k, data.encode()), exchange(q, data.encode()),
                    data.encode())
    finally:
        k.stop()
        q.stop()


def info_session():
    steps = [
        ("guest-info", cmd("guest-info")),
        ("blocked command", cmd("guest-file-open", {"path": "/etc/hostname"}, id_=1)),
        ("blocked exec", cmd("guest-exec", {"path": "true"})),
        ("disabled on Linux", cmd("guest-get-devices")),
        ("allowed command still works", cmd("guest-ping", id_=2)),
    ]
    run_steps("info", steps[:1] + [steps[3]])
    run_steps("blocked", steps, ("-b", "guest-file-open,guest-exec,guest-file-read"),
              ("-b", "guest-file-open,guest-exec,guest-file-read"))


def system_session():
    fake = os.path.join(TMP, "fakebin")
    os.makedirs(fake, exist_ok=True)
    record = os.path.join(TMP, "chpasswd.in")
    with open(os.path.join(fake, "chpasswd"), "w") as f:
        f.write(f"#!/bin/sh\necho \"$@\" > {record}.args\ncat >> {record}\n")
    os.chmod(os.path.join(fake, "chpasswd"), 0o755)
    env = {"PATH": fake + ":" + os.environ.get("PATH", "/usr/bin:/bin")}
    steps = [
        ("host name", cmd("guest-get-host-name")),
        ("time zone", cmd("guest-get-timezone")),
        ("os info", cmd("guest-get-osinfo")),
        ("users", cmd("guest-get-users"), ("login-time",)),
        ("time", cmd("guest-get-time"), ("return",)),
        ("set-time: year before 1970", cmd("guest-set-time", {"time": -1000000000000000000})),
        ("shutdown: bad mode", cmd("guest-shutdown", {"mode": "sideways"})),
        ("vcpus", cmd("guest-get-vcpus")),
        ("set-vcpus: empty list", cmd("guest-set-vcpus", {"vcpus": []})),
        ("memory block info", cmd("guest-get-memory-block-info")),
        ("memory blocks", cmd("guest-get-memory-blocks")),
        ("set memory blocks: unknown block", cmd("guest-set-memory-blocks",
                                                {"mem-blks": [{"phys-index": -1, "online": True}]})),
        ("fsfreeze status", cmd("guest-fsfreeze-status")),
        ("fsfreeze-freeze-list: no such mount", cmd("guest-fsfreeze-freeze-list",
                                                   {"mountpoints": ["/nonexistent-qkit"]})),
        ("fsfreeze status after empty freeze", cmd("guest-fsfreeze-status")),
        ("fsinfo", cmd("guest-get-fsinfo"), ("used-bytes",)),
        ("disks", cmd("guest-get-disks")),
        ("network interfaces", cmd("guest-network-get-interfaces"),
         ("rx-bytes", "rx-packets", "tx-bytes", "tx-packets", "rx-dropped", "tx-dropped",
          "rx-errs", "tx-errs")),
        ("cpu stats", cmd("guest-get-cpustats"),
         ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest",
          "guestnice")),
        ("disk stats", cmd("guest-get-diskstats"), ("stats",)),
        ("ssh keys: unknown user", cmd("guest-ssh-get-authorized-keys", {"username": "no-such-user-qkit"})),
        ("password: bad base64", cmd("guest-set-user-password",
                                     {"username": "a", "password": "!!", "crypted": False})),
        ("password: bad user name", cmd("guest-set-user-password",
                                        {"username": "a:b", "password": "YQ==", "crypted": False})),
        ("password: newline", cmd("guest-set-user-password",
                                  {"username": "a", "password": "YQo=", "crypted": False})),
        ("password: set through chpasswd", cmd("guest-set-user-password",
                                               {"username": "qkituser", "password":
                                                base64.b64encode(b"s3cret").decode(),
                                                "crypted": True})),
    ]
    run_steps("system", steps, env=env)
    try:
        with open(record) as f:
            got = f.read()
        with open(record + ".args") as f:
            args = f.read()
        if got == "qkituser:s3cret\nqkituser:s3cret\n" and args.strip() == "-e":
            log("PASS", "password: chpasswd got user:password on stdin from both agents, with -e")
        else:
            log("FAIL", "password: chpasswd input", repr(got), repr(args))
    except OSError as e:
        log("FAIL", "password: chpasswd was not run", e)


def options_session():
    def out(prog, *args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        r = subprocess.run([prog, *args], capture_output=True, text=True, env=e, timeout=30)
        return r.returncode, r.stdout
    conf = os.path.join(TMP, "qga.conf")
    with open(conf, "w") as f:
        f.write("# sample\n[general]\nmethod=unix-listen\npath=/tmp/x.sock\nverbose=true\n"
                "block-rpcs=guest-ping;guest-info\nstatedir=/tmp\n")
    cases = [
        ("--dump-conf defaults", ["-D"], None),
        ("--dump-conf with options", ["-D", "-l", "/tmp/x", "-F", "-b", "guest-ping,guest-exec",
                                      "-m", "unix-listen", "-p", "/tmp/s", "-v", "-d", "-r",
                                      "-t", "/tmp/st", "-f", "/tmp/p"], None),
        ("--dump-conf with -F path", ["-D", "-F/foo/hook"], None),
        ("--dump-conf from QGA_CONF", ["-D", "-b", "guest-exec"], {"QGA_CONF": conf}),
        ("-b help", ["-b", "help"], None),
        ("bad method", ["-m", "bogus", "-p", "/tmp/zz"], None),
        ("unix-listen without path", ["-m", "unix-listen", "-t", TMP], None),
    ]
    for name, args, env in cases:
        a = out(QKIT, *args, env=env)
        b = out(QEMU, *args, env=env)
        if a == b:
            log("PASS", "options: " + name)
        else:
            log("FAIL", "options: " + name, f"qkit-ga: {a!r}", f"qemu-ga: {b!r}")


def one(agent, data):
    return exchange(agent, data.encode() if isinstance(data, str) else data)


def expect(name, got, want):
    if got == want:
        log("PASS", name)
    else:
        log("FAIL", name, f"got:  {got!r}", f"want: {want!r}")


def freeze_session():
    """fsfreeze on a loop-mounted ext4 made for the test (never a real filesystem)."""
    img = os.path.join(TMP, "freeze.img")
    mnt = os.path.join(TMP, "freeze-mnt")
    os.makedirs(mnt, exist_ok=True)
    try:
        subprocess.run(["truncate", "-s", "64M", img], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", img, mnt], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        log("SKIP", "fsfreeze of a loop-mounted filesystem", f"cannot loop-mount here: {e}")
        return
    hook = os.path.join(TMP, "hook.sh")
    with open(hook, "w") as f:
        f.write(f"#!/bin/sh\necho \"$1\" >> {TMP}/hook.log\n")
    os.chmod(hook, 0o755)
    try:
        for prog, tag, extra in ((QKIT, "qkit", ("-F" + hook,)), (QEMU, "qemu", ())):
            a = Agent(prog, "freeze-" + tag, extra)
            try:
                a.connect()
                r = [one(a, cmd("guest-fsfreeze-freeze-list", {"mountpoints": [mnt]})),
                     one(a, cmd("guest-fsfreeze-status")),
                     one(a, cmd("guest-ping")),
                     one(a, cmd("guest-file-open", {"path": "/etc/hostname"})),
                     one(a, cmd("guest-fsfreeze-thaw")),
                     one(a, cmd("guest-fsfreeze-status")),
                     one(a, cmd("guest-file-open", {"path": "/etc/hostname"}))]
                if tag == "qkit":
                    mine = r
                else:
                    expect("fsfreeze: freeze-list, status, disabled commands, thaw as qemu-ga",
                           mine, r)
            finally:
                a.stop()
        try:
            with open(os.path.join(TMP, "hook.log")) as f:
                expect("fsfreeze: the hook ran with freeze then thaw", f.read(), "freeze\nthaw\n")
        except OSError:
            log("FAIL", "fsfreeze: the hook ran with freeze then thaw", "no hook log")
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


def sbin_session():
    """guest-shutdown and guest-set-time (no time) with fake shutdown/hwclock binaries,
    so nothing touches the machine. qemu-ga runs the real /sbin ones: qkit-ga alone."""
    fake = os.path.join(TMP, "sbin")
    os.makedirs(fake, exist_ok=True)
    rec = os.path.join(TMP, "sbin.log")
    for prog, rc in (("shutdown", 0), ("hwclock", 0)):
        with open(os.path.join(fake, prog), "w") as f:
            f.write(f"#!/bin/sh\necho {prog} \"$@\" >> {rec}\nexit $(cat {fake}/rc 2>/dev/null || echo {rc})\n")
        os.chmod(os.path.join(fake, prog), 0o755)
    a = Agent(QKIT, "sbin", env={"QKIT_GA_SBIN_DIR": fake})
    try:
        a.connect()
        expect("shutdown: no reply when it worked", one(a, cmd("guest-shutdown")), [])
        expect("shutdown: reboot mode", one(a, cmd("guest-shutdown", {"mode": "reboot"})), [])
        expect("set-time without a time: hwclock -s", one(a, cmd("guest-set-time")),
               [b'{"return": {}}\n'])
        with open(os.path.join(fake, "rc"), "w") as f:
            f.write("1\n")
        expect("shutdown: failure reported",
               one(a, cmd("guest-shutdown", {"mode": "halt"})),
               [b'{"error": {"class": "GenericError", "desc": "child process has failed to shutdown"}}\n'])
        expect("set-time: hwclock failure reported", one(a, cmd("guest-set-time")),
               [b'{"error": {"class": "GenericError", "desc": "hwclock failed to set hardware clock to system time"}}\n'])
        with open(rec) as f:
            expect("shutdown/hwclock got qemu-ga's arguments", f.read(),
                   "shutdown -P +0 hypervisor initiated shutdown\n"
                   "shutdown -r +0 hypervisor initiated shutdown\nhwclock -s\n"
                   "shutdown -H +0 hypervisor initiated shutdown\nhwclock -s\n")
    finally:
        a.stop()
    log("SKIP", "guest-set-time with a time", "it would set this machine's clock")
    log("SKIP", "guest-suspend-*", "it would suspend this machine")


def allow_session():
    """-a (allow-rpcs, newer qemu-ga): only the listed commands run."""
    a = Agent(QKIT, "allow", ("-a", "guest-ping,guest-info,guest-sync"))
    try:
        a.connect()
        expect("allow-rpcs: listed command runs", one(a, cmd("guest-ping")), [b'{"return": {}}\n'])
        expect("allow-rpcs: others are disabled", one(a, cmd("guest-exec", {"path": "true"})),
               [b'{"error": {"class": "CommandNotFound", "desc": "Command guest-exec has been disabled"}}\n'])
        expect("allow-rpcs: file commands are disabled",
               one(a, cmd("guest-file-open", {"path": "/etc/hostname"})),
               [b'{"error": {"class": "CommandNotFound", "desc": "Command guest-file-open has been disabled"}}\n'])
    finally:
        a.stop()


def serial_session():
    """isa-serial on a pseudo terminal: the tty is set raw and served."""
    import pty
    import termios
    master, slave = pty.openpty()
    name = os.ttyname(slave)
    log_path = os.path.join(TMP, "serial.log")
    with open(log_path, "w") as lf:
        p = subprocess.Popen([QKIT, "-m", "isa-serial", "-p", name, "-t", TMP], stdout=lf, stderr=lf)
    try:
        time.sleep(0.5)
        attrs = termios.tcgetattr(slave)
        raw = not (attrs[3] & (termios.ECHO | termios.ICANON))
        os.write(master, cmd("guest-sync", {"id": 31}).encode() + b"\n")
        out = b""
        end = time.time() + 10
        while b"\n" not in out and time.time() < end:
            import select
            if select.select([master], [], [], 0.5)[0]:
                out += os.read(master, 4096)
        expect("isa-serial: tty set raw and a request answered", (raw, out),
               (True, b'{"return": 31}\n'))
    finally:
        p.terminate()
        p.wait(10)
        os.close(master)
        os.close(slave)


def daemon_session():
    """-d with -f: the parent returns, the daemon writes its pid and serves."""
    sock = os.path.join(TMP, "daemon.sock")
    pidf = os.path.join(TMP, "daemon.pid")
    os.makedirs(os.path.join(TMP, "dstate"), exist_ok=True)
    r = subprocess.run([QKIT, "-d", "-f", pidf, "-m", "unix-listen", "-p", sock, "-t",
                        os.path.join(TMP, "dstate"), "-l", os.path.join(TMP, "daemon.log")],
                       timeout=30)
    for _ in range(200):
        if os.path.exists(sock) and os.path.exists(pidf):
            break
        time.sleep(0.02)
    try:
        pid = int(open(pidf).read())
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock)
        c.sendall(cmd("guest-ping", id_=1).encode())
        c.settimeout(10)
        got = c.recv(100)
        c.close()
        expect("daemonize: parent exits 0, pid file written, daemon serves",
               (r.returncode, pid > 0, got), (0, True, b'{"return": {}, "id": 1}\n'))
        os.kill(pid, 15)
        for _ in range(200):
            if not os.path.exists(pidf):
                break
            time.sleep(0.02)
        expect("daemonize: SIGTERM stops it and removes the pid file", os.path.exists(pidf), False)
    except (OSError, ValueError) as e:
        log("FAIL", "daemonize", repr(e))


SESSIONS = {
    "protocol": lambda: run_steps("protocol", PROTOCOL),
    "big": big_message_session,
    "disconnect": disconnect_session,
    "file": file_session,
    "exec": exec_session,
    "info": info_session,
    "system": system_session,
    "options": options_session,
    "freeze": freeze_session,
    "sbin": sbin_session,
    "allow": allow_session,
    "serial": serial_session,
    "daemon": daemon_session,
}

if __name__ == "__main__":
    names = sys.argv[3:] or list(SESSIONS)
    for n in names:
        try:
            SESSIONS[n]()
        except Exception as e:  # a crash of the driver is a failure, with its reason
            import traceback
            log("FAIL", f"session {n} could not run", traceback.format_exc())
