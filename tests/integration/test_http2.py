"""HTTP/2 through berth (ALPN h2 on TLS, h2c with prior knowledge on plain entry points), each
stream proxied to HTTP/1.1 backends: real clients (curl, nghttp, h2load), frame-level clients
(python3-h2 over a raw socket, and hand-made frames), flow control both ways, graceful shutdown,
idle connections, and the known HTTP/2 attacks (rapid reset, CONTINUATION flood, HPACK bomb,
SETTINGS/PING floods, stream id misuse, invalid frames), each of which must cost the attacker its
stream or connection, never the process or other clients."""
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe.frame import ContinuationFrame, HeadersFrame

from harness import BerthTestCase, RawClient, free_port, get, main, wait_for_port, wait_until

CERTS = None
_certs_tmp = None
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
# Error codes.
NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x7, 0x8, 0xb


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def setUpModule():
    global CERTS, _certs_tmp
    _certs_tmp = tempfile.TemporaryDirectory(prefix="berth-it-h2certs.")
    d = CERTS = _certs_tmp.name
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "30",
            "-subj", "/CN=Berth H2 Test CA")
    openssl("req", "-new", *ec, "-keyout", f"{d}/h2.key", "-out", f"{d}/h2.csr", "-subj", "/CN=h2.test")
    with open(f"{d}/h2.ext", "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n"
                "subjectAltName=DNS:h2.test\n")
    openssl("x509", "-req", "-in", f"{d}/h2.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
            "-set_serial", "4242", "-days", "30", "-extfile", f"{d}/h2.ext", "-out", f"{d}/h2.pem")


def tearDownModule():
    _certs_tmp.cleanup()


# ---------------------------------------------------------------- frames and HPACK by hand

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hpack_int(value, prefix, first=0):
    top = (1 << prefix) - 1
    if value < top:
        return bytes([first | value])
    out = bytearray([first | top])
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    b = s.encode() if isinstance(s, str) else s
    return hpack_int(len(b), 7) + b


def lit(name, value):
    """A literal field without indexing and with a literal name: no HPACK state on either side."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def req_block(path="/", method="GET", authority="h2.test", scheme="http", extra=(), pseudo=None):
    fields = pseudo if pseudo is not None else [(":method", method), (":scheme", scheme), (":path", path),
                                                (":authority", authority)]
    return b"".join(lit(n, v) for n, v in [*fields, *extra])


def tls_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(CERTS, "ca.pem"))
    ctx.set_alpn_protocols(["h2"])
    return ctx


def connect(port, tls=False, rcvbuf=None, timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    if tls:
        s = tls_ctx().wrap_socket(s, server_hostname="h2.test")
        assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    return s


class RawH2:
    """A client writing hand-made frames and reading every frame the server sends: SETTINGS are
    acknowledged and DATA gives its window back, GOAWAY does not stop the reading (unlike python3-h2,
    so streams finishing after a GOAWAY are seen), resets and connection loss are recorded."""

    def __init__(self, port, tls=False, rcvbuf=None, timeout=10.0, settings=b""):
        self.sock = connect(port, tls, rcvbuf, timeout)
        self.buf = bytearray()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.block = {}          # sid -> header block being gathered
        self.streams = {}        # sid -> {"headers": [...], "data": bytearray, "ended": bool}
        self.resets = {}         # sid -> error code
        self.goaway = None       # (last_stream_id, error_code)
        self.goaway_at = None
        self.eof = False
        self.eof_at = None
        self.settings = {}
        self.send(PREFACE + frame(SETTINGS, 0, 0, settings))

    def send(self, data):
        self.sock.sendall(data)

    def stream(self, sid):
        return self.streams.setdefault(sid, {"headers": [], "data": bytearray(), "ended": False})

    def pump(self, timeout):
        if self.eof:
            time.sleep(min(timeout, 0.05))
            return
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        if not data:
            self.eof, self.eof_at = True, time.time()
            return
        self.buf += data
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            self.on_frame(ftype, flags, sid, payload)

    def on_frame(self, ftype, flags, sid, payload):
        try:
            if ftype == SETTINGS and not flags & ACK:
                for i in range(0, len(payload), 6):
                    k, v = struct.unpack(">HI", payload[i:i + 6])
                    self.settings[k] = v
                self.send(frame(SETTINGS, ACK, 0))
            elif ftype in (HEADERS, CONTINUATION):
                if ftype == HEADERS:
                    pad = payload[0] if flags & PADDED else 0
                    payload = payload[(1 if flags & PADDED else 0) + (5 if flags & PRIORITY else 0):]
                    payload = payload[:len(payload) - pad]
                    if flags & END_STREAM:
                        self.stream(sid)["ended"] = True
                self.block[sid] = self.block.get(sid, b"") + payload
                if flags & END_HEADERS:
                    self.stream(sid)["headers"].append(
                        [(n.decode() if isinstance(n, bytes) else n, v.decode() if isinstance(v, bytes) else v)
                         for n, v in self.decoder.decode(self.block.pop(sid))])
            elif ftype == DATA:
                pad = payload[0] if flags & PADDED else 0
                body = payload[1:len(payload) - pad] if flags & PADDED else payload
                st = self.stream(sid)
                st["data"] += body
                if flags & END_STREAM:
                    st["ended"] = True
                if payload:
                    inc = struct.pack(">I", len(payload))
                    self.send(frame(WINDOW_UPDATE, 0, 0, inc) + (b"" if st["ended"] else frame(WINDOW_UPDATE, 0, sid, inc)))
            elif ftype == RST_STREAM:
                self.resets[sid] = struct.unpack(">I", payload[:4])[0]
            elif ftype == GOAWAY:
                self.goaway = struct.unpack(">II", payload[:8])
                self.goaway = (self.goaway[0] & 0x7FFFFFFF, self.goaway[1])
                self.goaway_at = time.time()
            elif ftype == PING and not flags & ACK:
                self.send(frame(PING, ACK, 0, payload))
        except OSError:
            self.eof, self.eof_at = True, time.time()

    def wait(self, predicate, timeout=10.0):
        deadline = time.time() + timeout
        while not predicate():
            left = deadline - time.time()
            if left <= 0 or (self.eof and not predicate()):
                return predicate()
            self.pump(min(left, 0.2))
        return True

    def final_status(self, sid):
        st = self.streams.get(sid)
        for block in (st or {}).get("headers", []):
            code = dict(block).get(":status")
            if code and not code.startswith("1"):
                return int(code)
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class H2Client:
    """python3-h2 over a raw (TLS) socket: a well-behaved client with per-stream results."""

    def __init__(self, port, tls=False, settings=None, handshake=True, auto_ack=True, rcvbuf=None, timeout=10.0):
        self.tls = tls
        self.sock = connect(port, tls, rcvbuf, timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.auto_ack = auto_ack
        self.streams = {}
        self.goaway = None
        self.goaway_at = None
        self.eof = False
        self.eof_at = None
        self.remote_settings_seen = False
        self.acked = not settings
        self.window_updates = []   # (time, stream_id, delta)
        if handshake:
            assert self.wait(lambda: self.remote_settings_seen and self.acked, 5), "no SETTINGS exchange"

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def stream(self, sid):
        return self.streams.setdefault(sid, {"headers": None, "data": bytearray(), "ended": False, "reset": None,
                                             "informational": [], "fields": [], "trailers": None})

    def request(self, path, method="GET", headers=(), body=None, end=True, authority="h2.test", sid=None):
        sid = sid if sid is not None else self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https" if self.tls else "http"), (":authority", authority),
                (":path", path), *headers]
        self.stream(sid)
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end)
        return sid

    def send_body(self, sid, body, end=True, timeout=20.0):
        view, pos, deadline = memoryview(body), 0, time.time() + timeout
        while pos < len(body):
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(body) - pos)
            if room <= 0:
                if time.time() > deadline:
                    raise AssertionError(f"request body stalled at {pos} of {len(body)} bytes")
                self.pump(0.2)
                continue
            self.conn.send_data(sid, bytes(view[pos:pos + room]))
            pos += room
            self.flush()
            self.pump(0)
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self, timeout):
        if self.eof:
            time.sleep(min(timeout, 0.05))
            return
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.eof, self.eof_at = True, time.time()
            return
        for ev in self.conn.receive_data(data):
            self.on_event(ev)
        try:
            self.flush()
        except OSError:
            self.eof, self.eof_at = True, time.time()

    def on_event(self, ev):
        E = h2.events
        if isinstance(ev, E.ResponseReceived):
            self.stream(ev.stream_id)["headers"] = dict(ev.headers)
            self.stream(ev.stream_id)["fields"] = list(ev.headers)
        elif isinstance(ev, E.TrailersReceived):
            self.stream(ev.stream_id)["trailers"] = dict(ev.headers)
        elif isinstance(ev, E.InformationalResponseReceived):
            self.stream(ev.stream_id)["informational"].append(dict(ev.headers))
        elif isinstance(ev, E.DataReceived):
            self.stream(ev.stream_id)["data"] += ev.data
            if self.auto_ack and ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, E.StreamEnded):
            self.stream(ev.stream_id)["ended"] = True
        elif isinstance(ev, E.StreamReset):
            self.stream(ev.stream_id)["reset"] = ev.error_code
        elif isinstance(ev, E.ConnectionTerminated):
            self.goaway, self.goaway_at = (ev.last_stream_id, ev.error_code), time.time()
        elif isinstance(ev, E.RemoteSettingsChanged):
            self.remote_settings_seen = True
        elif isinstance(ev, E.SettingsAcknowledged):
            self.acked = True
        elif isinstance(ev, E.WindowUpdated):
            self.window_updates.append((time.time(), ev.stream_id, ev.delta))

    def wait(self, predicate, timeout=10.0):
        deadline = time.time() + timeout
        while not predicate():
            left = deadline - time.time()
            if left <= 0 or self.eof:
                return predicate()
            self.pump(min(left, 0.2))
        return True

    def done(self, sid):
        st = self.stream(sid)
        return st["ended"] or st["reset"] is not None

    def response(self, sid, timeout=15.0):
        """(status, headers, body) once the stream ended; fails the test on a reset or timeout."""
        self.wait(lambda: self.done(sid), timeout)
        st = self.stream(sid)
        assert st["reset"] is None, f"stream {sid} reset with {st['reset']}"
        assert st["ended"], f"stream {sid} did not end in {timeout}s (eof={self.eof}, goaway={self.goaway})"
        return int(st["headers"][":status"]), st["headers"], bytes(st["data"])

    def get(self, path, **kw):
        return self.response(self.request(path, **kw))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class StallServer:
    """A TCP server on 127.0.0.1 that accepts connections and never reads them (small receive
    buffer), so an upstream write on it soon blocks; closes everything after `hold` seconds."""

    def __init__(self, hold=20.0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.conns = []
        self.deadline = time.time() + hold
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.running and time.time() < self.deadline:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except socket.timeout:
                pass
            except OSError:
                break
        self.stop()

    def stop(self):
        self.running = False
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass


class CountingServer:
    """A TCP server on 127.0.0.1 that accepts connections, reads (and drops) what they send and
    never answers; it counts the connections accepted, those that sent something, and those the
    peer closed (EOF or reset). Everything is closed after `hold` seconds or on stop()."""

    def __init__(self, hold=20.0):
        import selectors
        self.sel = selectors.DefaultSelector()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.accepted = 0
        self.talked = 0     # connections that sent at least one byte (a request)
        self.closed = 0     # connections berth closed
        self.conns = []
        self.deadline = time.time() + hold
        self.running = True
        self.sel.register(self.sock, 1)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def counts(self):
        with self.lock:
            return self.accepted, self.talked, self.closed

    def _loop(self):
        state = {}  # socket -> received something
        while self.running and time.time() < self.deadline:
            for key, _ in self.sel.select(0.1):
                s = key.fileobj
                if s is self.sock:
                    try:
                        c, _ = self.sock.accept()
                    except OSError:
                        continue
                    c.setblocking(False)
                    self.conns.append(c)
                    state[c] = False
                    self.sel.register(c, 1)
                    with self.lock:
                        self.accepted += 1
                    continue
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    if not state[s]:
                        state[s] = True
                        with self.lock:
                            self.talked += 1
                    continue
                self.sel.unregister(s)
                with self.lock:
                    self.closed += 1
        self.stop()

    def stop(self):
        self.running = False
        if threading.current_thread() is not self.thread:
            self.thread.join(2)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass


class H2cServer:
    """An h2c server (HTTP/2 with prior knowledge, python3-h2) on 127.0.0.1, in this process, one
    thread per connection. GET is answered 200 "get-ok"; a POST is answered 200 "early" right after
    its HEADERS (or, with `answer_after`, `answer_delay` seconds after that many of its body bytes
    came), its body never read (no WINDOW_UPDATE: the 65535-byte initial window is all berth may
    send) and the stream never reset. `max_streams`: its SETTINGS_MAX_CONCURRENT_STREAMS. `refuse`:
    on the first connection, the second request is refused ("rst": RST_STREAM REFUSED_STREAM;
    "goaway": GOAWAY naming the first stream, then the connection closes), as a server shutting
    down or at its limit does. `mute_after`: once the first connection has had that many requests,
    the server stops reading it (a peer gone silent). Records (connection index, stream id, what)
    for requests, DATA bytes and RST_STREAMs, and the connections PINGs came on."""

    def __init__(self, max_streams=None, answer_after=0, answer_delay=0.3, hold=20.0, refuse=None, mute_after=0):
        self.max_streams = max_streams
        self.mute_after = mute_after
        self.pings = []  # connection index of each PING
        self.refuse = refuse
        self.refused = []  # (conn, sid, method)
        self.answer_after, self.answer_delay = answer_after, answer_delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = f"h2c://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.requests = []      # (conn, sid, method, path)
        self.resets = []        # (conn, sid, error code)
        self.data = {}          # (conn, sid) -> DATA bytes received
        self.errors = []
        self.deadline = time.time() + hold
        self.running = True
        self.threads = []
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while self.running and time.time() < self.deadline:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(len(self.conns) - 1, c), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, idx, sock):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        if self.max_streams is not None:
            conn.local_settings = h2.settings.Settings(
                client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        conn.initiate_connection()
        sock.settimeout(0.05)
        due = {}  # stream id -> when its POST is answered (None: once answer_after bytes came)
        try:
            sock.sendall(conn.data_to_send())
            while self.running and time.time() < self.deadline:
                for sid, when in list(due.items()):
                    if when is not None and time.time() >= when:
                        del due[sid]
                        self._answer(conn, sid, b"early")
                if self.mute_after and idx == 0 and sum(c == 0 for c, _, _, _ in self.requests) >= self.mute_after:
                    time.sleep(0.05)  # silent: nothing read, nothing answered (PINGs included)
                    continue
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    data = None
                if data == b"":
                    break
                try:
                    events = conn.receive_data(data) if data else []
                except h2.exceptions.ProtocolError as e:
                    with self.lock:
                        self.errors.append((idx, repr(e)))
                    sock.sendall(conn.data_to_send())
                    break
                try:
                    for ev in events:
                        self._on_event(idx, conn, ev, due)
                except ConnectionAbortedError:
                    sock.sendall(conn.data_to_send())
                    time.sleep(0.2)
                    break
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except OSError:
            pass
        finally:
            sock.close()

    @staticmethod
    def _answer(conn, sid, body):
        conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(body)))])
        conn.send_data(sid, body, end_stream=True)

    def _on_event(self, idx, conn, ev, due):
        E = h2.events
        if isinstance(ev, E.RequestReceived):
            hdrs = dict(ev.headers)
            with self.lock:
                self.requests.append((idx, ev.stream_id, hdrs.get(":method"), hdrs.get(":path")))
                first_streams = [s for c, s, _, _ in self.requests if c == 0]
            if self.refuse and idx == 0 and len(first_streams) == 2:
                with self.lock:
                    self.refused.append((idx, ev.stream_id, hdrs.get(":method")))
                if self.refuse == "rst":
                    conn.reset_stream(ev.stream_id, error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
                else:
                    conn.close_connection(error_code=0, last_stream_id=first_streams[0])
                    raise ConnectionAbortedError  # flushed, then the connection closes
                return
            if hdrs.get(":method") != "POST":
                self._answer(conn, ev.stream_id, b"get-ok")
            elif self.answer_after:
                due[ev.stream_id] = None
            else:
                self._answer(conn, ev.stream_id, b"early")
        elif isinstance(ev, E.DataReceived):
            with self.lock:
                got = self.data[(idx, ev.stream_id)] = self.data.get((idx, ev.stream_id), 0) + len(ev.data)
            if ev.stream_id in due and due[ev.stream_id] is None and got >= self.answer_after:
                due[ev.stream_id] = time.time() + self.answer_delay
        elif isinstance(ev, E.StreamReset):
            with self.lock:
                self.resets.append((idx, ev.stream_id, ev.error_code))
        elif isinstance(ev, E.PingReceived):  # h2 answers it by itself
            with self.lock:
                self.pings.append(idx)

    def stream_of(self, method):
        """(connection, stream id) of the first request with that method."""
        with self.lock:
            return next(((c, s) for c, s, m, _ in self.requests if m == method), None)

    def stop(self):
        self.running = False
        self.thread.join(2)
        for t in self.threads:
            t.join(2)
        try:
            self.sock.close()
        except OSError:
            pass


def curl(*args, timeout=20):
    return subprocess.run(["curl", "-sS", "--max-time", "15", *args], capture_output=True, timeout=timeout)


class H2Case(BerthTestCase):
    def start(self, ep_extra="", stall=False, backend_name="h2-backend", middlewares="", sticky=False):
        """berth with one entry point `web` (h2c and h2 over TLS on the same port): routers on `/`
        for plain and TLS, `/stall` to a server that never reads (when `stall`). `middlewares`:
        definitions (YAML at the depth of their names) that both `/` routers use, in order;
        `sticky`: the service sets a sticky cookie `lb`."""
        self.be = self.backend(backend_name)
        port = free_port()
        static = f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n"
        for line in ep_extra.splitlines():
            static += "    " + line + "\n"
        static += (f"providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\n    watch: true\n"
                   f"workers: 2\nlog:\n  level: DEBUG\n")
        names = re.findall(r"^    (\S+):$", middlewares, re.M)
        uses = f"      middlewares: [{', '.join(names)}]\n" if names else ""
        routers = f"""    plain:
      rule: "PathPrefix(`/`)"
      service: s
{uses}    secure:
      rule: "PathPrefix(`/`)"
      service: s
      tls: {{}}
{uses}"""
        services = f"    s:\n      loadBalancer:\n        servers:\n          - url: \"{self.be.url}\"\n"
        if sticky:
            services += "        sticky:\n          cookie:\n            name: lb\n"
        if stall:
            self.stall = StallServer()
            self._procs.append(self.stall)
            routers += "    stall:\n      rule: \"PathPrefix(`/stall`)\"\n      service: st\n"
            services += f"    st:\n      loadBalancer:\n        servers:\n          - url: \"{self.stall.url}\"\n"
        dynamic = (f"http:\n  routers:\n{routers}" + (f"  middlewares:\n{middlewares}" if middlewares else "")
                   + f"  services:\n{services}tls:\n  certificates:\n"
                   f"    - certFile: {CERTS}/h2.pem\n      keyFile: {CERTS}/h2.key\n")
        proxy = self.berth(static_yaml=static, dynamic_yaml=dynamic, wait=False)
        proxy.ports = {"web": port}
        wait_for_port(port, proc=proxy.proc)
        wait_until(lambda: "configuration generation 1 applied" in proxy.log_text())
        self.proxy, self.port = proxy, port
        return proxy

    def client(self, **kw):
        c = H2Client(self.port, **kw)
        self.addCleanup(c.close)
        return c

    def raw(self, **kw):
        c = RawH2(self.port, **kw)
        self.addCleanup(c.close)
        return c

    def curl_h2c(self, path, *extra):
        """curl --http2-prior-knowledge on a new connection: (rc, "version code", body, stderr)."""
        with tempfile.NamedTemporaryFile(dir=self.tmp, delete=False) as f:
            out_path = f.name
        out = curl("--http2-prior-knowledge", "-o", out_path, "-w", "%{http_version} %{http_code}", *extra,
                   f"http://127.0.0.1:{self.port}{path}")
        with open(out_path, "rb") as f:
            body = f.read()
        return out.returncode, out.stdout.decode(), body, out.stderr.decode()

    def curl_tls(self, path, *extra):
        with tempfile.NamedTemporaryFile(dir=self.tmp, delete=False) as f:
            out_path = f.name
        out = curl("--http2", "--cacert", f"{CERTS}/ca.pem", "--resolve", f"h2.test:{self.port}:127.0.0.1",
                   "-o", out_path, "-w", "%{http_version} %{http_code}", *extra, f"https://h2.test:{self.port}{path}")
        with open(out_path, "rb") as f:
            body = f.read()
        return out.returncode, out.stdout.decode(), body, out.stderr.decode()

    def assert_alive(self):
        self.assertIsNone(self.proxy.proc.poll(), "berth exited:\n" + self.proxy.log_text()[-3000:])

    def log_tail(self, n=25):
        return "\n".join(self.proxy.log_text().splitlines()[-n:])


# ==================================================================== conformance / function

class Http2Function(H2Case):
    def test_curl_get_head_204_over_tls_alpn_and_h2c(self):
        self.start()
        for fetch in (self.curl_tls, self.curl_h2c):
            rc, meta, body, err = fetch("/")
            self.assertEqual((rc, meta, body), (0, "2 200", b"h2-backend"), err)
            rc, meta, body, err = fetch("/size/5000", "-I")
            self.assertEqual((rc, meta), (0, "2 200"), err)
            self.assertIn(b"content-length: 5000\r\n", body)   # -I writes the head to the output
            rc, meta, body, err = fetch("/status/204")
            self.assertEqual((rc, meta, body), (0, "2 204", b""), err)
        # Frame level: HEAD keeps content-length and has no DATA; 204 ends with the HEADERS.
        for tls in (False, True):
            c = self.client(tls=tls)
            status, headers, body = c.get("/size/5000", method="HEAD")
            self.assertEqual((status, headers.get("content-length"), body), (200, "5000", b""))
            status, headers, body = c.get("/status/204")
            self.assertEqual((status, body), (204, b""))
            status, headers, body = c.get("/size/7")
            self.assertEqual((status, body, headers.get("x-backend")), (200, b"xxxxxxx", "h2-backend"))
            self.assertNotIn("connection", headers)
            self.assertNotIn("transfer-encoding", headers)

    def test_relayed_heads_keep_edits_and_trailers_and_drop_connection_fields(self):
        # A server's answer goes to an HTTP/2 client as fields, without an HTTP/1.1 head in between:
        # the middlewares' edits and additions must apply to it as they do over HTTP/1.1.
        self.start(sticky=True, middlewares="""    edit:
      headers:
        customResponseHeaders:
          X-Added: "yes"
          X-Backend: ""
""")
        for tls in (False, True):
            c = self.client(tls=tls)
            status, headers, body = c.get("/size/7")
            self.assertEqual((status, body), (200, b"xxxxxxx"))
            self.assertEqual((headers.get("x-added"), headers.get("content-length")), ("yes", "7"))
            self.assertNotIn("x-backend", headers)   # removed by the middleware
            self.assertRegex(headers.get("set-cookie", ""), r"^lb=")  # the load balancer's sticky cookie
            # The server's own Set-Cookie and the sticky one, each a field of its own.
            sid = c.request("/set-cookie/a=b")
            status, headers, body = c.response(sid)
            cookies = sorted(v for n, v in c.stream(sid)["fields"] if n == "set-cookie")
            self.assertEqual(len(cookies), 2, c.stream(sid)["fields"])
            self.assertEqual(cookies[0], "a=b")
            self.assertTrue(cookies[1].startswith("lb="), cookies)
            # "Connection: close" from the server is HTTP/1.1's business: not a field here, and the
            # stream still ends well.
            status, headers, body = c.get("/close")
            self.assertEqual(status, 200)
            self.assertNotIn("connection", headers)
            self.assertEqual(headers.get("x-added"), "yes")
            # A chunked body: DATA, then its trailer section as trailing HEADERS.
            sid = c.request("/chunked/3000")
            status, headers, body = c.response(sid)
            self.assertEqual((status, len(body)), (200, 3000))
            self.assertNotIn("transfer-encoding", headers)
            self.assertEqual(c.stream(sid)["trailers"], {"x-trailer": "done"})
            # A 103 before the answer goes on as informational HEADERS.
            sid = c.request("/early-hints")
            status, headers, body = c.response(sid)
            self.assertEqual((status, body, headers.get("x-added")), (200, b"hinted", "yes"))
            self.assertEqual([i[":status"] for i in c.stream(sid)["informational"]], ["103"])

    def test_nghttp_and_h2load(self):
        self.start()
        out = subprocess.run(["nghttp", "-nv", "-t", "10", f"http://127.0.0.1:{self.port}/size/100"],
                             capture_output=True, timeout=20, text=True)
        self.assertEqual(out.returncode, 0, out.stdout[-2000:] + out.stderr)
        self.assertIn("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):250]", out.stdout)
        self.assertIn(":status: 200", out.stdout)
        self.assertRegex(out.stdout, r"recv DATA frame <length=100, flags=0x0[01]")
        for url in (f"http://127.0.0.1:{self.port}/size/100", f"https://127.0.0.1:{self.port}/size/100"):
            out = subprocess.run(["h2load", "-n", "200", "-c", "4", "-m", "10", "-T", "10", url],
                                 capture_output=True, timeout=30, text=True)
            self.assertEqual(out.returncode, 0, out.stdout[-2000:] + out.stderr)
            self.assertIn("200 succeeded, 0 failed, 0 errored", out.stdout, out.stdout[-1500:])
            self.assertIn("status codes: 200 2xx", out.stdout)
            if url.startswith("https"):
                self.assertIn("Application protocol: h2", out.stdout)

    def test_post_2mib_with_and_without_content_length_and_request_headers(self):
        self.start()
        payload = os.urandom(1 << 20) * 2
        for tls in (False, True):
            c = self.client(tls=tls)
            # With content-length.
            status, _, body = c.get("/sink", method="POST", body=payload, headers=[("content-length", str(len(payload)))])
            self.assertEqual((status, body), (200, str(len(payload)).encode()), f"tls={tls}")
            # Without: streamed DATA frames, passed on chunked.
            status, _, body = c.get("/echo?q=1", method="POST", body=payload,
                                    headers=[("user-agent", "h2-test/1"), ("x-custom-thing", "v"),
                                             ("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3; d=4")])
            self.assertEqual(status, 200)
            echo = json.loads(body)
            self.assertEqual((echo["method"], echo["target"], echo["body_bytes"]), ("POST", "/echo?q=1", len(payload)))
            names = [n for n, _ in echo["headers"]]
            hdrs = {n: v for n, v in echo["headers"]}
            self.assertEqual(hdrs.get("Host"), "h2.test", echo["headers"])                 # from :authority
            self.assertEqual([n.lower() for n in names].count("cookie"), 1, echo["headers"])
            self.assertEqual(hdrs.get("Cookie"), "a=1; b=2; c=3; d=4", echo["headers"])
            self.assertEqual(hdrs.get("User-Agent"), "h2-test/1", echo["headers"])        # Go-canonical names
            self.assertEqual(hdrs.get("X-Custom-Thing"), "v", echo["headers"])
            self.assertNotIn(":path", [n.lower() for n in names])
        # A real client too.
        path = os.path.join(self.tmp, "upload.bin")
        with open(path, "wb") as f:
            f.write(payload)
        rc, meta, body, err = self.curl_h2c("/sink", "--data-binary", f"@{path}")
        self.assertEqual((rc, meta, body), (0, "2 200", b"2097152"), err)
        rc, meta, body, err = self.curl_tls("/sink", "--data-binary", f"@{path}")
        self.assertEqual((rc, meta, body), (0, "2 200", b"2097152"), err)

    def test_downloads_length_chunked_and_close_delimited(self):
        self.start()
        for fetch in (self.curl_h2c, self.curl_tls):
            rc, meta, body, err = fetch("/size/5000000")
            self.assertEqual((rc, meta, len(body)), (0, "2 200", 5000000), err)
            self.assertEqual(body.count(b"x"), 5000000)
            rc, meta, body, err = fetch("/chunked/3000000")
            self.assertEqual((rc, meta, len(body)), (0, "2 200", 3000000), err)
            self.assertEqual(body.count(b"x"), 3000000)
            rc, meta, body, err = fetch("/eof-body")
            self.assertEqual((rc, meta, body), (0, "2 200", b"until-close"), err)
        c = self.client()
        status, headers, body = c.get("/eof-body")
        self.assertEqual((status, body), (200, b"until-close"))
        status, headers, body = c.get("/chunked/300000")
        self.assertEqual((status, len(body)), (200, 300000))

    def test_many_concurrent_streams_on_one_connection(self):
        self.start()
        c = self.client()
        self.assertEqual(c.conn.remote_settings.max_concurrent_streams, 250)
        t0 = time.time()
        sids = [c.request("/delay/200") for _ in range(100)]
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in sids), 10))
        elapsed = time.time() - t0
        results = [c.response(s)[::2] for s in sids]
        self.assertEqual(results, [(200, b"delayed")] * 100)
        self.assertLess(elapsed, 5.0)   # serial would take 20 s

    def test_rfc7540_priority_signals_and_frames_for_closed_streams_are_ignored(self):
        # berth announces it does not use RFC 7540's priority tree (SETTINGS_NO_RFC7540_PRIORITIES,
        # RFC 9218 2.1), so nghttp2 keeps no closed streams. Clients that still send priority
        # signals, or frames for streams that have closed, get their answers and keep the connection.
        PRIORITY_FRAME, PRIORITY_UPDATE, NO_RFC7540_PRIORITIES = 0x2, 0x10, 0x9
        self.start()
        r = self.raw()
        r.send(frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY, 1,
                     struct.pack(">IB", 0x80000000, 200) + req_block("/size/3")))  # exclusive on 0, weight 201
        r.send(frame(PRIORITY_FRAME, 0, 3, struct.pack(">IB", 1, 15)))  # an idle stream (RFC 9113 5.3.2)
        r.send(frame(PRIORITY_UPDATE, 0, 0, struct.pack(">I", 5) + b"u=0, i"))  # RFC 9218 7.1
        r.send(frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY, 5,
                     struct.pack(">IB", 1, 0) + req_block("/size/4")))
        self.assertTrue(r.wait(lambda: all(s in r.streams and r.streams[s]["ended"] for s in (1, 5)), 5),
                        self.log_tail())
        self.assertEqual(r.settings.get(NO_RFC7540_PRIORITIES), 1)
        self.assertEqual([(r.final_status(s), bytes(r.streams[s]["data"])) for s in (1, 5)],
                         [(200, b"xxx"), (200, b"xxxx")])
        # Streams 1 and 5 are closed: WINDOW_UPDATE, RST_STREAM and PRIORITY for them are ignored
        # (RFC 9113 5.1), and the connection serves the next stream.
        r.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1000)) + frame(RST_STREAM, 0, 5, struct.pack(">I", CANCEL))
               + frame(PRIORITY_FRAME, 0, 1, struct.pack(">IB", 5, 10)))
        r.send(frame(HEADERS, END_HEADERS | END_STREAM, 7, req_block("/size/5")))
        self.assertTrue(r.wait(lambda: 7 in r.streams and r.streams[7]["ended"], 5), self.log_tail())
        self.assertEqual((r.final_status(7), bytes(r.streams[7]["data"])), (200, b"xxxxx"))
        self.assertEqual((r.goaway, r.resets, r.eof), (None, {}, False))

    def test_streams_beyond_250_are_refused_the_rest_served(self):
        self.start()
        # 300 streams sent before the client has even read berth's SETTINGS (as a client opening
        # streams in its first flight does): the excess is refused, the first 250 are served.
        c = self.client(handshake=False)
        sids = [c.request("/delay/1500") for _ in range(300)]
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in sids), 15), self.log_tail())
        served = [s for s in sids if c.stream(s)["ended"] and c.stream(s)["reset"] is None]
        refused = [s for s in sids if c.stream(s)["reset"] is not None]
        self.assertEqual(len(served), 250)
        self.assertEqual(served, sids[:250])
        self.assertEqual({c.stream(s)["reset"] for s in refused}, {REFUSED_STREAM})
        self.assertEqual({int(c.stream(s)["headers"][":status"]) for s in served}, {200})
        self.assertIsNone(c.goaway)
        self.assertEqual(c.get("/size/3")[::2], (200, b"xxx"))

    def test_configured_max_concurrent_streams_is_advertised_and_enforced(self):
        # entryPoints.<ep>.http2.maxConcurrentStreams: berth's SETTINGS say it, and streams over it
        # (opened before the client read those SETTINGS) are refused; the others are served.
        self.start(ep_extra="http2:\n  maxConcurrentStreams: 3")
        c = self.client(handshake=False)
        sids = [c.request("/delay/500") for _ in range(5)]
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in sids), 10), self.log_tail())
        self.assertEqual(c.conn.remote_settings.max_concurrent_streams, 3)
        served = [s for s in sids if c.stream(s)["ended"] and c.stream(s)["reset"] is None]
        self.assertEqual(served, sids[:3])
        self.assertEqual({c.stream(s)["reset"] for s in sids[3:]}, {REFUSED_STREAM})
        self.assertEqual(c.get("/size/3")[::2], (200, b"xxx"))

    def test_response_flow_control_respects_a_small_client_window(self):
        self.start()
        window = 16384
        c = self.client(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}, auto_ack=False)
        sid = c.request("/size/1000000")
        st = c.stream(sid)
        granted = window
        rounds = 0
        while not st["ended"]:
            # python3-h2 raises FlowControlError if berth sends beyond the window; check it too.
            c.wait(lambda: st["ended"] or len(st["data"]) >= granted, 5)
            self.assertLessEqual(len(st["data"]), granted)
            if st["ended"]:
                break
            self.assertEqual(len(st["data"]), granted, "berth stopped before the window was used")
            # Connection window: given back at once, so the stream window is what limits.
            if rounds < 3:
                # A slow reader: nothing more arrives while the window is closed.
                c.wait(lambda: len(st["data"]) > granted, 0.3)
                self.assertEqual(len(st["data"]), granted)
            c.conn.increment_flow_control_window(window, sid)
            c.conn.increment_flow_control_window(window)
            c.flush()
            granted += window
            rounds += 1
        self.assertIsNone(st["reset"])
        self.assertEqual((int(st["headers"][":status"]), len(st["data"])), (200, 1000000))
        self.assertGreaterEqual(rounds, 1000000 // window)

    def test_request_flow_control_stalls_a_client_when_upstream_does_not_read(self):
        self.start(stall=True)
        c = self.client()
        sid = c.request("/stall/upload", method="POST", end=False)
        chunk = b"u" * 16384
        sent, last_progress, cap = 0, time.time(), 32 << 20
        t0 = time.time()
        while time.time() - last_progress < 1.5 and sent < cap and time.time() - t0 < 20:
            room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
            if room > 0:
                c.conn.send_data(sid, chunk[:room])
                c.flush()
                sent += room
                last_progress = time.time()
                c.pump(0)
            else:
                c.pump(0.1)
            self.assertIsNone(c.stream(sid)["reset"], "stream reset while uploading")
        stalled_at = time.time()
        self.assertLess(sent, 16 << 20, f"berth let the client push {sent} bytes to a non-reading upstream")
        self.assertEqual(c.conn.local_flow_control_window(sid), 0)
        c.pump(0.5)
        late = [w for w in c.window_updates if w[1] == sid and w[0] > stalled_at - 1.5]
        self.assertEqual(late, [])
        self.assertEqual(c.conn.local_flow_control_window(sid), 0)
        # The connection is still usable for other streams.
        self.assertEqual(c.get("/size/5")[::2], (200, b"xxxxx"))

    def test_graceful_shutdown_goaway_and_in_flight_stream_completes(self):
        self.start()
        c = self.raw()
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, req_block("/delay/1500")))
        time.sleep(0.3)
        t0 = time.time()
        self.proxy.proc.send_signal(signal.SIGTERM)
        self.assertTrue(c.wait(lambda: c.goaway is not None, 3), f"no GOAWAY; log:\n{self.log_tail()}")
        self.assertEqual(c.goaway[1], NO_ERROR)
        self.assertGreaterEqual(c.goaway[0], 1)
        self.assertTrue(c.wait(lambda: 1 in c.streams and c.streams[1]["ended"] or 1 in c.resets, 5))
        self.assertNotIn(1, c.resets)
        self.assertEqual((c.final_status(1), bytes(c.streams[1]["data"])), (200, b"delayed"))
        self.assertTrue(c.wait(lambda: c.eof, 5), "connection not closed after the GOAWAY")
        self.assertEqual(self.proxy.proc.wait(10), 0)
        self.assertLess(time.time() - t0, 5)

    def test_idle_connection_gets_goaway_and_is_closed(self):
        self.start(ep_extra="transport:\n  respondingTimeouts:\n    idleTimeout: 2s\n")
        c = self.client()
        self.assertEqual(c.get("/size/4")[::2], (200, b"xxxx"))
        t0 = time.time()
        self.assertTrue(c.wait(lambda: c.eof, 6),
                        f"idle h2 connection still open after 6 s (GOAWAY={c.goaway}) with idleTimeout 2s")
        self.assertIsNotNone(c.goaway, "closed without GOAWAY")
        self.assertEqual(c.goaway[1], NO_ERROR)
        self.assertTrue(1.5 < c.goaway_at - t0 < 4.0, c.goaway_at - t0)
        self.assertLess(c.eof_at - t0, 4.5)

    def test_zero_window_client_is_reset_and_others_are_served(self):
        self.start(ep_extra="transport:\n  respondingTimeouts:\n    idleTimeout: 2s\n")
        c = self.client(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}, auto_ack=False)
        t0 = time.time()
        sid = c.request("/size/100000")
        time.sleep(0.3)
        rc, meta, body, err = self.curl_h2c("/size/10")       # served meanwhile
        self.assertEqual((rc, meta, body), (0, "2 200", b"x" * 10), err)
        c.wait(lambda: c.stream(sid)["reset"] is not None or c.eof, 8)
        elapsed = time.time() - t0
        self.assertTrue(c.stream(sid)["reset"] is not None or c.eof,
                        f"zero-window stream still held after {elapsed:.1f}s; log:\n{self.log_tail()}")
        self.assertLess(elapsed, 6.0)
        self.assertEqual(len(c.stream(sid)["data"]), 0)
        self.assert_alive()


# ==================================================================== fixes from review (a4acc82)

class Http2StreamLifetimes(H2Case):
    """A stream, its exchange and its backend request end together: a stream a client never lets
    drain, a stream the client resets, an upstream stream whose server answered before the body
    was sent, and a request-body pump a server never lets finish."""

    def start_front(self, routes, ep_extra="", workers=2, transport=None):
        """berth with entry point `web` and one router per (name, rule, server url), plus `/` to a
        berth_test_backend; sets self.proxy and self.port (so client(), raw(), curl_h2c() work).
        `transport`: a serversTransport (flow-style YAML) for the routes' services."""
        self.be = self.backend("h2-backend")
        port = free_port()
        static = f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n"
        for line in ep_extra.splitlines():
            static += "    " + line + "\n"
        static += (f"providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\n    watch: true\n"
                   f"workers: {workers}\nlog:\n  level: DEBUG\n")
        routers = "    plain:\n      rule: \"PathPrefix(`/`)\"\n      service: s\n"
        services = f"    s:\n      loadBalancer:\n        servers:\n          - url: \"{self.be.url}\"\n"
        for name, rule, url in routes:
            routers += f"    {name}:\n      rule: \"{rule}\"\n      service: {name}\n"
            services += f"    {name}:\n      loadBalancer:\n        servers:\n          - url: \"{url}\"\n"
            if transport:
                services += "        serversTransport: t\n"
        if transport:
            services += f"  serversTransports:\n    t: {transport}\n"
        proxy = self.berth(static_yaml=static, dynamic_yaml=f"http:\n  routers:\n{routers}  services:\n{services}",
                           wait=False)
        proxy.ports = {"web": port}
        wait_for_port(port, proc=proxy.proc)
        wait_until(lambda: "configuration generation 1 applied" in proxy.log_text())
        self.proxy, self.port = proxy, port
        return proxy

    def h2c_server(self, **kw):
        s = H2cServer(**kw)
        self._procs.append(s)
        return s

    def test_zero_window_client_small_response_is_reset_then_connection_closed(self):
        # A window of 0 that never opens and a response small enough to be queued whole: the
        # exchange finishes at once, its DATA stays queued. The stream gets idleTimeout to drain,
        # then RST_STREAM; the connection, idle then, gets its GOAWAY and is closed.
        self.start(ep_extra="transport:\n  respondingTimeouts:\n    idleTimeout: 2s\n")
        c = self.client(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}, auto_ack=False)
        t0 = time.time()
        sid = c.request("/size/1000")
        st = c.stream(sid)
        self.assertTrue(c.wait(lambda: st["headers"] is not None, 3), "no response HEADERS")
        self.assertEqual(st["headers"][":status"], "200")
        c.wait(lambda: st["reset"] is not None or c.eof, 6)
        reset_after = time.time() - t0
        self.assertIsNotNone(st["reset"], f"stream with queued DATA still open {reset_after:.1f}s after its "
                                          f"exchange ended (idleTimeout 2s); eof={c.eof}; log:\n{self.log_tail()}")
        self.assertEqual(st["reset"], CANCEL)
        self.assertTrue(1.5 < reset_after < 5.0, reset_after)
        self.assertEqual(len(st["data"]), 0)   # nothing beyond the window of 0
        self.assertTrue(c.wait(lambda: c.eof, 5),
                        f"connection still open {time.time() - t0:.1f}s after its only stream was reset "
                        f"(GOAWAY={c.goaway}); log:\n{self.log_tail()}")
        self.assertIsNotNone(c.goaway, "closed without GOAWAY")
        self.assertEqual(c.goaway[1], NO_ERROR)
        self.assertLess(time.time() - t0, 9.0)
        self.assert_alive()

    def test_reset_streams_close_their_backend_connections(self):
        # 60 requests to a server that accepts and never answers, then 60 RST_STREAMs: each
        # exchange stops where it is, and its backend connection is closed.
        silent = CountingServer()
        self._procs.append(silent)
        self.start_front([("silent", "PathPrefix(`/silent`)", silent.url)])
        c = self.raw()
        n = 60
        sids = list(range(1, 2 * n, 2))
        c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, sid, req_block(f"/silent/{sid}")) for sid in sids))
        try:
            wait_until(lambda: silent.counts()[1] >= n, timeout=5, step=0.02)
        except AssertionError:
            self.fail(f"backend got {silent.counts()} (accepted, requests, closed) of {n}; log:\n{self.log_tail()}")
        self.assertEqual(silent.counts()[2], 0)
        c.pump(0.2)
        self.assertEqual([s for s in sids if c.final_status(s)], [])   # nothing answered yet
        t0 = time.time()
        c.send(b"".join(frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)) for sid in sids))
        try:
            wait_until(lambda: silent.counts()[2] >= silent.counts()[0], timeout=3, step=0.02)
        except AssertionError:
            accepted, _, closed = silent.counts()
            self.fail(f"{accepted - closed} of {accepted} backend connections still open "
                      f"{time.time() - t0:.1f}s after their streams were reset; log:\n{self.log_tail()}")
        self.assertLess(time.time() - t0, 2.5)
        # berth, and this connection, still serve.
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 2 * n + 1, req_block("/size/10")))
        self.assertTrue(c.wait(lambda: c.streams.get(2 * n + 1, {}).get("ended"), 5), self.log_tail())
        self.assertEqual((c.final_status(2 * n + 1), bytes(c.streams[2 * n + 1]["data"])), (200, b"x" * 10))
        self.assertIsNone(c.goaway)
        rc, meta, body, err = self.curl_h2c("/size/10")
        self.assertEqual((rc, meta, body), (0, "2 200", b"x" * 10), err)
        self.assert_alive()

    def test_upstream_stream_answered_before_its_body_is_reset(self):
        # An h2c server with one stream at a time answers a POST before its body came. The client
        # sends 1000 of its 100000 bytes and stops: it gets the answer; berth must reset the
        # upstream stream (not leave it half-closed), or the server's only slot is taken for good
        # and the next request waits forever. One worker: the next request uses the same
        # connection to the server.
        server = self.h2c_server(max_streams=1)
        self.start_front([("h2up", "PathPrefix(`/up`)", server.url)], workers=1)
        post = RawClient(self.port, timeout=5)
        self.addCleanup(post.close)
        post.send(b"POST /up/post HTTP/1.1\r\nHost: h2.test\r\nContent-Length: 100000\r\n\r\n" + b"p" * 1000)
        status, _, body = post.read_response()
        self.assertEqual((status, body), (200, b"early"))
        first = server.stream_of("POST")
        self.assertIsNotNone(first)
        t0 = time.time()
        try:
            status, _, body = get(self.port, "/up/get", host="h2.test", timeout=5)
        except (socket.timeout, EOFError, OSError) as e:
            self.fail(f"GET after the early answer failed after {time.time() - t0:.1f}s ({e!r}); server saw "
                      f"requests={server.requests} resets={server.resets}; log:\n{self.log_tail()}")
        self.assertEqual((status, body), (200, b"get-ok"))
        self.assertLess(time.time() - t0, 3.0)
        try:
            wait_until(lambda: any((c, s) == first for c, s, _ in server.resets), timeout=3, step=0.02)
        except AssertionError:
            self.fail(f"server never saw RST_STREAM on the POST's stream {first}: resets={server.resets}")
        self.assertEqual(server.errors, [])
        self.assert_alive()

    def test_refused_upstream_stream_is_sent_again_even_for_a_post(self):
        # A server refusing a stream (RST_STREAM REFUSED_STREAM, or a GOAWAY that does not cover
        # it) did not process it (RFC 9113 8.7): berth sends it again on a new connection, a POST
        # too, and the client sees one answer. One worker: the second request reuses the connection.
        for how in ("rst", "goaway"):
            with self.subTest(how=how):
                server = self.h2c_server(refuse=how)
                self.start_front([("h2up", "PathPrefix(`/up`)", server.url)], workers=1)
                self.assertEqual(get(self.port, "/up/first", host="h2.test")[2], b"get-ok")
                status, _, body = get(self.port, "/up/post", host="h2.test", method="POST", body=b"order=1")
                self.assertEqual((status, body), (200, b"early"), self.log_tail())
                self.assertEqual([m for _, _, m in server.refused], ["POST"])
                posts = [(c, s) for c, s, m, _ in server.requests if m == "POST"]
                self.assertEqual(len(posts), 2, server.requests)  # refused once, then served
                self.assertNotEqual(posts[0][0], posts[1][0], "sent again on a new connection")
                self.proxy.stop()
                server.stop()

    def test_upstream_pings_close_a_silent_connection_and_keep_a_live_one(self):
        # forwardingTimeouts.readIdleTimeout / pingTimeout: a connection to a server that sent
        # nothing for 300 ms gets a PING. One that answers stays in use; one whose server went
        # silent is closed 300 ms later, and the next request takes a new connection instead of
        # waiting on the dead one (no responseHeaderTimeout here: it would wait for ever).
        transport = "{forwardingTimeouts: {readIdleTimeout: 300ms, pingTimeout: 300ms}}"
        for silent in (False, True):
            with self.subTest(silent=silent):
                server = self.h2c_server(mute_after=1 if silent else 0)
                self.start_front([("h2up", "PathPrefix(`/up`)", server.url)], workers=1, transport=transport)
                self.assertEqual(get(self.port, "/up/a", host="h2.test")[2], b"get-ok")
                time.sleep(1.2)
                status, _, body = get(self.port, "/up/b", host="h2.test", timeout=5)
                self.assertEqual((status, body), (200, b"get-ok"))
                connections = [c for c, _, _, _ in server.requests]
                if silent:
                    self.assertEqual(connections, [0, 1])
                    self.assertIn("nothing came back 300 ms after a PING", self.proxy.log_text())
                else:
                    self.assertEqual(connections, [0, 0])
                    self.assertGreaterEqual(server.pings.count(0), 2)  # every 300 ms of quiet
                self.proxy.stop()
                server.stop()

    def test_pump_stalled_by_server_window_does_not_hold_the_client(self):
        # A 300 KB body to an h2c server that never reads it (its window stays shut) and answers
        # once berth has used that window (and, 0.3 s later, stalled its body pump on it): the
        # client gets the answer, then its connection ends (the stalled pump is cancelled); it
        # is not held forever.
        server = self.h2c_server(answer_after=65535)
        self.start_front([("h2up", "PathPrefix(`/up`)", server.url)],
                         ep_extra="transport:\n  respondingTimeouts:\n    readTimeout: 2s\n")
        client = RawClient(self.port, timeout=5)
        total = 300000
        sent = []

        def send_body():
            try:
                client.send(b"POST /up/big HTTP/1.1\r\nHost: h2.test\r\nContent-Length: %d\r\n\r\n" % total)
                for i in range(0, total, 16384):
                    client.send(b"b" * min(16384, total - i))
                    sent.append(min(16384, total - i))
            except OSError:
                pass

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        self.addCleanup(sender.join, 10)

        def shut():  # wakes a sender still blocked on the connection
            try:
                client.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()

        self.addCleanup(shut)
        t0 = time.time()
        status, _, body = client.read_response()
        self.assertEqual((status, body), (200, b"early"))
        first = server.stream_of("POST")
        self.assertIsNotNone(first)
        ended = None
        try:
            ended = client.is_closed(wait=5.0)
        except OSError:
            ended = True
        elapsed = time.time() - t0
        self.assertTrue(ended, f"client connection still open {elapsed:.1f}s after its 200 (readTimeout 2s); "
                               f"body bytes sent {sum(sent)}, server got {server.data.get(first)}; "
                               f"log:\n{self.log_tail()}")
        self.assertLess(elapsed, 5.0)
        self.assertEqual(server.data.get(first), 65535)   # the window, never given back: the pump stalled
        # berth still forwards to that server.
        self.assertEqual(get(self.port, "/up/get", host="h2.test", timeout=5)[::2], (200, b"get-ok"))
        self.assert_alive()


# ==================================================================== attacks

class Http2Attacks(H2Case):
    def setUp(self):
        super().setUp()
        self.start()
        # A well-behaved client, connected before the attack; it must keep working.
        self.bystander = self.client()
        self.assertEqual(self.bystander.get("/size/10")[::2], (200, b"x" * 10))
        self.rss_before = self.proxy.rss_kib()

    def assert_unharmed(self, rss_growth_mib=50):
        self.assert_alive()
        status, _, body = self.bystander.get("/size/100")
        self.assertEqual((status, body), (200, b"x" * 100), "the connection opened before the attack broke")
        rc, meta, body, err = self.curl_h2c("/size/10")
        self.assertEqual((rc, meta, body), (0, "2 200", b"x" * 10), err)
        growth = (self.proxy.rss_kib() - self.rss_before) / 1024
        self.assertLess(growth, rss_growth_mib, f"RSS grew by {growth:.1f} MiB")

    def test_rapid_reset_flood(self):
        victim = self.backend("victim")
        # A second router to the victim backend so its /count shows how many requests got through.
        with open(self.proxy.dynamic_path) as f:
            dynamic = f.read()
        self.proxy.write_dynamic(dynamic.replace(
            "  services:\n",
            "    victim:\n      rule: \"Host(`victim.test`)\"\n      service: v\n  services:\n"
            f"    v:\n      loadBalancer:\n        servers:\n          - url: \"{victim.url}\"\n"))
        wait_until(lambda: "configuration generation 2 applied" in self.proxy.log_text())
        count = lambda: int(subprocess.run(["curl", "-sS", "--max-time", "5", f"{victim.url}/count"],
                                           capture_output=True, timeout=10).stdout)
        before = count()
        c = self.raw()
        block = req_block("/", authority="victim.test")
        rst = struct.pack(">I", CANCEL)
        n = 5000
        batch = b"".join(frame(HEADERS, END_HEADERS | END_STREAM, sid, block) + frame(RST_STREAM, 0, sid, rst)
                         for sid in range(1, 2 * n, 2))
        t0 = time.time()
        try:
            c.send(batch)
        except OSError:
            pass
        ended = c.wait(lambda: c.goaway is not None and c.eof, 8)
        self.assertTrue(c.goaway is not None or c.eof,
                        f"rapid reset: connection neither GOAWAYed nor closed; log:\n{self.log_tail()}")
        self.assertTrue(ended, f"GOAWAY={c.goaway} but the connection stayed open")
        if c.goaway is not None:
            self.assertNotEqual(c.goaway[1], NO_ERROR)
        self.assertLess(time.time() - t0, 8)
        time.sleep(0.5)
        reached = count() - before - 1
        print(f"\n  rapid reset: GOAWAY={c.goaway}, {reached} of {n} reset streams reached the backend", end=" ")
        self.assertLess(reached, 2000, f"{reached} of {n} reset requests reached the backend")
        self.assert_unharmed()
        if c.goaway is not None:
            # Streams above the GOAWAY's last stream id were "not processed" (RFC 9113 6.8): a client
            # may retry them elsewhere, so none of them may have been forwarded.
            covered = (c.goaway[0] + 1) // 2
            self.assertLessEqual(reached, covered,
                                 f"{reached} requests reached the backend but the GOAWAY (last stream id "
                                 f"{c.goaway[0]}) covers only {covered} streams: streams berth declared "
                                 f"unprocessed were forwarded")

    def test_continuation_flood(self):
        c = self.raw()
        head = HeadersFrame(1, data=req_block("/"), flags=[])            # no END_HEADERS
        c.send(head.serialize())
        value = b"a" * 16300
        field = b"\x00" + hpack_str("x-flood") + hpack_str(value)
        cont = ContinuationFrame(1, data=field, flags=[]).serialize()
        sent, t0 = 0, time.time()
        try:
            for _ in range(2000):          # up to ~32 MiB of header block
                c.send(cont)
                sent += 1
        except OSError:
            pass
        self.assertTrue(c.wait(lambda: c.eof, 10),
                        f"CONTINUATION flood: connection still open after {sent} frames; GOAWAY={c.goaway}")
        self.assertLess(time.time() - t0, 12)
        self.assertNotIn(1, [s for s in c.streams if c.streams[s]["headers"]])   # never answered
        print(f"\n  continuation flood: {sent} CONTINUATION frames accepted, GOAWAY={c.goaway}", end=" ")
        self.assert_unharmed()

    def test_hpack_bomb(self):
        c = self.raw()
        # One 4000-byte value added to the dynamic table, then referenced (1 byte each) ~12000
        # times in one frame: ~48 MB of decoded header list from 16 KiB on the wire.
        block = req_block("/") + b"\x40" + hpack_str("x-bomb") + hpack_str(b"b" * 4000)
        block += b"\xbe" * (16384 - len(block))
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
        self.assertTrue(c.wait(lambda: 1 in c.resets or c.goaway is not None or c.eof, 8),
                        f"HPACK bomb: no reset, no GOAWAY, no close; log:\n{self.log_tail()}")
        self.assertIsNone(c.final_status(1), "the bomb was answered")
        if 1 in c.resets:
            self.assertIn(c.resets[1], (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, 0x2, 0xd), c.resets)
        print(f"\n  hpack bomb: resets={c.resets}, GOAWAY={c.goaway}, eof={c.eof}", end=" ")
        # The same through CONTINUATIONs: a header list well over 1 MiB.
        c2 = self.raw()
        c2.send(frame(HEADERS, 0, 1, req_block("/")))
        field = b"\x00" + hpack_str("x-big") + hpack_str(b"c" * 16000)
        try:
            for i in range(80):
                c2.send(frame(CONTINUATION, END_HEADERS if i == 79 else 0, 1, field))
        except OSError:
            pass
        self.assertTrue(c2.wait(lambda: 1 in c2.resets or c2.goaway is not None or c2.eof, 8),
                        f"1.2 MiB header list: no reset, no GOAWAY, no close; log:\n{self.log_tail()}")
        self.assertIsNone(c2.final_status(1), "the oversized header list was answered")
        self.assert_unharmed()

    def test_settings_flood(self):
        c = self.raw(rcvbuf=4096)          # reads nothing: the ACKs pile up at berth
        flood = frame(SETTINGS, 0, 0) * 100000
        self._flood(c, flood, "SETTINGS")

    def test_ping_flood(self):
        c = self.raw(rcvbuf=4096)
        flood = frame(PING, 0, 0, b"12345678") * 100000
        self._flood(c, flood, "PING")

    def _flood(self, c, flood, what):
        t0 = time.time()
        try:
            for i in range(0, len(flood), 1 << 16):
                c.sock.settimeout(10)
                c.sock.sendall(flood[i:i + (1 << 16)])
            sent_all = True
        except OSError:
            sent_all = False
        # Now read what berth queued: the connection must end (not an ACK stream without end).
        c.on_frame = lambda *a: None       # plain draining, no answers
        self.assertTrue(c.wait(lambda: c.eof, 10),
                        f"{what} flood: connection still open (all sent: {sent_all}); log:\n{self.log_tail()}")
        self.assertLess(time.time() - t0, 12)
        print(f"\n  {what} flood: all frames sent before the close: {sent_all}", end=" ")
        self.assert_unharmed()

    def test_highest_stream_id_works_and_lower_id_reuse_is_a_connection_error(self):
        c = self.client()
        top = 2 ** 31 - 1
        self.assertEqual(c.get("/size/6", sid=top)[::2], (200, b"x" * 6))
        with self.assertRaises(h2.exceptions.NoAvailableStreamIDError):
            c.conn.get_next_available_stream_id()
        r = self.raw()
        r.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, req_block("/size/2")))
        self.assertTrue(r.wait(lambda: 5 in r.streams and r.streams[5]["ended"], 5))
        self.assertEqual((r.final_status(5), bytes(r.streams[5]["data"])), (200, b"xx"))
        # Stream 3 after stream 5: an unexpected stream identifier (RFC 9113 5.1.1).
        r.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, req_block("/size/2")))
        self.assertTrue(r.wait(lambda: r.goaway is not None, 2),
                        f"no GOAWAY for HEADERS on stream 3 after stream 5 (got: resets={r.resets}, "
                        f"streams answered={sorted(s for s in r.streams if r.streams[s]['headers'])}, eof={r.eof})")
        self.assertEqual(r.goaway[1], PROTOCOL_ERROR)
        self.assertIsNone(r.final_status(3))
        self.assertTrue(r.wait(lambda: r.eof, 5))
        self.assert_unharmed()

    def test_invalid_frames_and_headers(self):
        # DATA on stream 0: a connection error.
        r = self.raw()
        r.send(frame(DATA, 0, 0, b"hello"))
        self.assertTrue(r.wait(lambda: r.goaway is not None, 5), "no GOAWAY for DATA on stream 0")
        self.assertEqual(r.goaway[1], PROTOCOL_ERROR)
        self.assertTrue(r.wait(lambda: r.eof, 5))
        # Malformed requests: a stream error (or a connection error), never an answer.
        bad = {
            "missing :path": req_block(pseudo=[(":method", "GET"), (":scheme", "http"), (":authority", "h2.test")]),
            "uppercase name": req_block("/", extra=[("X-Upper", "1")]),
            "connection: keep-alive": req_block("/", extra=[("connection", "keep-alive")]),
            "pseudo after regular": b"".join(lit(n, v) for n, v in [(":method", "GET"), (":scheme", "http"),
                                                                    ("x-a", "1"), (":path", "/"),
                                                                    (":authority", "h2.test")]),
            "te: gzip": req_block("/", extra=[("te", "gzip")]),
        }
        for what, block in bad.items():
            r = self.raw()
            r.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
            self.assertTrue(r.wait(lambda: 1 in r.resets or r.goaway is not None or (1 in r.streams and r.streams[1]["headers"]), 5),
                            f"{what}: no answer at all")
            self.assertIsNone(r.final_status(1), f"{what}: answered {r.final_status(1)} instead of a reset")
            code = r.resets.get(1, r.goaway[1] if r.goaway else None)
            self.assertEqual(code, PROTOCOL_ERROR, f"{what}: resets={r.resets} goaway={r.goaway}")
        self.assert_unharmed()


if __name__ == "__main__":
    main()
