#!/usr/bin/python3
"""Hold many idle keep-alive connections open against a proxy and measure its RSS growth.

usage: idle_conns.py --port PORT --pid PID [--conns 10000] [--sources 127.0.0.1,127.0.0.2]
                     [--path /size/100] [--batch 256] [--settle 2]

Each connection sends one GET, reads the whole response (Content-Length), and is then held
open idle. The RSS of PID and its direct children (nginx master + worker) is read from
/proc/PID/status (VmRSS) before any connection is opened (after a short warm-up) and once all
connections are idle. Prints one machine-readable line:

  RESULT conns=N ok=K still_open=M rss_before_kib=A rss_after_kib=B kib_per_conn=X secs=S

Standard library only (selectors + non-blocking sockets); talks to 127.0.0.x only.
"""
import argparse
import errno
import os
import selectors
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def rss_kib(root):
    pids = [root]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        if ppid == root:
            pids.append(int(d))
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Conn:
    __slots__ = ("sock", "buf", "state", "need")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.state = "connecting"
        self.need = None  # total bytes (head + body) once the head is parsed


def response_complete(c):
    if c.need is None:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        length = 0
        for line in c.buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        c.need = end + 4 + length
    return len(c.buf) >= c.need


def open_batch(n, port, sources, request, start_index, timeout=15.0):
    """Open n connections, do one request on each; returns the list of idle sockets."""
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        src = sources[(start_index + i) % len(sources)]
        if src != "127.0.0.1":
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((src, 0))
        rc = s.connect_ex(("127.0.0.1", port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            continue
        c = Conn(s)
        conns.append(c)
        sel.register(s, selectors.EVENT_WRITE, c)
    done, pending = [], len(conns)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            c = key.data
            try:
                if c.state == "connecting":
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    c.sock.send(request)  # tiny request: fits the socket buffer
                    c.state = "reading"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                data = c.sock.recv(65536)
                if not data:
                    raise OSError("closed before the response was complete")
                c.buf += data
                if response_complete(c):
                    sel.unregister(c.sock)
                    c.buf = b""
                    done.append(c.sock)
                    pending -= 1
            except OSError:
                sel.unregister(c.sock)
                c.sock.close()
                pending -= 1
    for key in list(sel.get_map().values()):  # timed out
        key.fileobj.close()
    sel.close()
    return done


def count_open(socks):
    """Idle sockets that are still open (not readable = no EOF/RST pending)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    readable = len(sel.select(timeout=0.2))
    sel.close()
    return len(socks) - readable


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--sources", default="127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4")
    ap.add_argument("--path", default="/size/100")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--settle", type=float, default=2.0)
    a = ap.parse_args()
    sources = [s for s in a.sources.split(",") if s]
    for s in sources:
        if not s.startswith("127."):
            sys.exit("only loopback source addresses are allowed")
    request = f"GET {a.path} HTTP/1.1\r\nHost: bench.test\r\n\r\n".encode()

    # Warm-up: a few complete exchanges so lazy start-up allocations are not counted.
    for s in open_batch(64, a.port, sources, request, 0):
        s.close()
    time.sleep(a.settle)
    before = rss_kib(a.pid)

    t0 = time.monotonic()
    held = []
    while len(held) < a.conns:
        n = min(a.batch, a.conns - len(held))
        got = open_batch(n, a.port, sources, request, len(held))
        held += got
        if not got:
            break
    secs = time.monotonic() - t0
    time.sleep(a.settle)
    after = rss_kib(a.pid)
    still_open = count_open(held)
    per = (after - before) / len(held) if held else 0.0
    print(f"RESULT conns={a.conns} ok={len(held)} still_open={still_open} rss_before_kib={before} "
          f"rss_after_kib={after} kib_per_conn={per:.2f} secs={secs:.1f}", flush=True)
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
