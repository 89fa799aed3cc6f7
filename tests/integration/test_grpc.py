"""gRPC and HTTP/2 to servers through berth: real gRPC clients and servers (python3-grpcio, in this
process, no generated code: bytes in, bytes out) behind h2c:// and https:// (ALPN h2) server URLs,
clients over h2c and over TLS; unary calls with trailers and error statuses, the three streaming
kinds (a ping-pong that deadlocks a proxy buffering the request), 4 MiB messages, concurrent
calls, deadlines; HTTP/1.1 and h2 clients to an h2c server (a second berth); one multiplexed
connection per server and worker; a server that goes away and comes back on the same port."""
import json
import os
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent import futures

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions

from harness import Berth, BerthTestCase, free_port, main, wait_for_port, wait_until

CERTS = None
_certs_tmp = None
MiB = 1 << 20
# Both ends accept 4 MiB messages (gRPC's default limit is exactly 4 MiB, framing included).
MSG_OPTIONS = [("grpc.max_receive_message_length", 16 * MiB), ("grpc.max_send_message_length", 16 * MiB)]


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_leaf(d, name, host):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-new", *ec, "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", f"/CN={host}")
    with open(f"{d}/{name}.ext", "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n"
                f"subjectAltName=DNS:{host}\n")
    openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
            "-extfile", f"{d}/{name}.ext", "-out", f"{d}/{name}.pem")


def setUpModule():
    global CERTS, _certs_tmp
    _certs_tmp = tempfile.TemporaryDirectory(prefix="berth-it-grpccerts.")
    d = CERTS = _certs_tmp.name
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "30", "-subj", "/CN=Berth gRPC Test CA")
    make_leaf(d, "front", "grpc.test")       # berth's entry point certificate
    make_leaf(d, "upstream", "upstream.test")  # the TLS gRPC server's certificate


def tearDownModule():
    _certs_tmp.cleanup()


def cert(name, part="pem"):
    return os.path.join(CERTS, f"{name}.{part}")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def ident(b):
    return b


# ---------------------------------------------------------------- the gRPC service "test.Echo"

class GrpcServer:
    """A gRPC server on 127.0.0.1 in this process (h2c, or TLS with the "upstream.test" certificate
    when `tls`): service test.Echo with bytes messages. `port` 0 picks one; the same port again
    restarts a server where an earlier one was."""

    def __init__(self, port=0, tls=False, name="g1", options=()):
        self.name = name.encode()
        self.ended = threading.Event()  # a Forever call ended on the server's side
        self.forever_sent = 0
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary, ident, ident),
            "Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx: self.name, ident, ident),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, ident, ident),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, ident, ident),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, ident, ident),
            "Deadline": grpc.unary_unary_rpc_method_handler(self.deadline, ident, ident),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow, ident, ident),
            "Ticks": grpc.unary_stream_rpc_method_handler(self.ticks, ident, ident),
            "Forever": grpc.unary_stream_rpc_method_handler(self.forever, ident, ident),
            "First": grpc.stream_unary_rpc_method_handler(lambda it, ctx: b"first:" + next(it), ident, ident),
            "Reject": grpc.stream_unary_rpc_method_handler(self.reject, ident, ident),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(8), options=MSG_OPTIONS + list(options))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
        if tls:
            creds = grpc.ssl_server_credentials([(read(cert("upstream", "key")), read(cert("upstream")))])
            self.port = self.server.add_secure_port(f"127.0.0.1:{port}", creds)
        else:
            self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        if not self.port:
            raise RuntimeError(f"gRPC server could not bind 127.0.0.1:{port}")
        self.server.start()

    @staticmethod
    def unary(req, ctx):
        if req == b"fail":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        md = dict(ctx.invocation_metadata())
        ctx.send_initial_metadata((("x-initial", "i1"), ("x-seen-client", md.get("x-client", ""))))
        trailing = [("x-trailer", "t1")]
        if "x-data-bin" in md:  # binary metadata (base64 on the wire) comes back as a trailer
            trailing.append(("x-data-bin", md["x-data-bin"]))
        ctx.set_trailing_metadata(tuple(trailing))
        return req

    @staticmethod
    def server_stream(req, ctx):
        for i in range(int(req)):
            yield b"item-%d" % i

    @staticmethod
    def client_stream(it, ctx):
        count = total = 0
        for m in it:
            count += 1
            total += len(m)
        return b"%d %d" % (count, total)

    @staticmethod
    def bidi(it, ctx):
        for m in it:
            yield b"pong:" + m

    @staticmethod
    def deadline(req, ctx):
        return repr(ctx.time_remaining()).encode()

    @staticmethod
    def slow(req, ctx):
        time.sleep(float(req or 2))
        return b"late"

    @staticmethod
    def reject(it, ctx):
        next(it)
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad first message")

    @staticmethod
    def ticks(req, ctx):
        for i in range(int(req)):
            if i:
                time.sleep(0.2)
            yield b"tick-%d" % i

    def forever(self, req, ctx):
        ctx.add_callback(self.ended.set)  # runs when the call ends, however it ends
        while ctx.is_active():
            self.forever_sent += 1
            yield b"f" * 1000
            time.sleep(0.01)

    def stop(self):
        self.server.stop(0).wait(5)


class Stubs:
    def __init__(self, channel):
        m = lambda name: f"/test.Echo/{name}"
        kw = dict(request_serializer=ident, response_deserializer=ident)
        self.unary = channel.unary_unary(m("Unary"), **kw)
        self.who = channel.unary_unary(m("Who"), **kw)
        self.server_stream = channel.unary_stream(m("ServerStream"), **kw)
        self.client_stream = channel.stream_unary(m("ClientStream"), **kw)
        self.bidi = channel.stream_stream(m("Bidi"), **kw)
        self.deadline = channel.unary_unary(m("Deadline"), **kw)
        self.slow = channel.unary_unary(m("Slow"), **kw)
        self.ticks = channel.unary_stream(m("Ticks"), **kw)
        self.forever = channel.unary_stream(m("Forever"), **kw)
        self.first = channel.stream_unary(m("First"), **kw)
        self.reject = channel.stream_unary(m("Reject"), **kw)


def ping_pong(stubs, rounds=20, timeout=10):
    """Bidi where each message goes only after the previous reply came back; returns the replies.
    A proxy that waits for the whole request body before reading the response deadlocks here
    (the call then ends with DEADLINE_EXCEEDED after `timeout`)."""
    q = queue.Queue()

    def requests():
        while True:
            try:
                msg = q.get(timeout=timeout)
            except queue.Empty:
                return
            if msg is None:
                return
            yield msg

    q.put(b"ping-0")
    call = stubs.bidi(requests(), timeout=timeout)
    replies = []
    try:
        for i in range(rounds):
            replies.append(next(call))
            q.put(b"ping-%d" % (i + 1) if i + 1 < rounds else None)
        replies.extend(call)  # the stream ends after the client's half-close
    finally:
        q.put(None)
    return replies


class SilentH2Server:
    """An h2c server (python3-h2, prior knowledge) on 127.0.0.1, in this process: it takes the
    connection and its streams (SETTINGS, acknowledgements) and never answers a request. Records
    the requests and the RST_STREAMs it gets; everything ends after `hold` seconds or on stop()."""

    def __init__(self, hold=20.0):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = []  # (connection, stream id, path)
        self.resets = []    # (connection, stream id, error code)
        self.deadline = time.time() + hold
        self.running = True
        self.threads = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        n = 0
        while self.running and time.time() < self.deadline:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            t = threading.Thread(target=self._serve, args=(n, c), daemon=True)
            n += 1
            self.threads.append(t)
            t.start()

    def _serve(self, idx, sock):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.settimeout(0.1)
        try:
            sock.sendall(conn.data_to_send())
            while self.running and time.time() < self.deadline:
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    break
                for ev in events:
                    with self.lock:
                        if isinstance(ev, h2.events.RequestReceived):
                            self.requests.append((idx, ev.stream_id, dict(ev.headers).get(":path")))
                        elif isinstance(ev, h2.events.StreamReset):
                            self.resets.append((idx, ev.stream_id, ev.error_code))
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except OSError:
            pass
        finally:
            sock.close()

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


def upstream_sockets(port):
    """The local addresses of established TCP connections to 127.0.0.1:port (berth's side)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, timeout=10).stdout
    return {line.split()[-2] for line in out.splitlines() if line.strip()}


# ---------------------------------------------------------------- tests

class GrpcCase(BerthTestCase):
    def start_berth(self, dynamic, name="front", workers=2, port=None):
        """berth in its own directory (several may run) with entry point `web` (h2c and TLS on one
        port); waits for the first configuration generation."""
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        if port is None:
            port = free_port()
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n"
                  f"providers:\n  file:\n    filename: {d}/dynamic.yml\n    watch: true\n"
                  f"workers: {workers}\nlog:\n  level: DEBUG\n")
        proxy = Berth(d, static_yaml=static, dynamic_yaml=dynamic, wait=False)
        self._procs.append(proxy)
        proxy.ports = {"web": port}
        wait_for_port(port, proc=proxy.proc)
        wait_until(lambda: "configuration generation 1 applied" in proxy.log_text(), timeout=10)
        return proxy

    def grpc_server(self, **kw):
        s = GrpcServer(**kw)
        self.addCleanup(s.stop)
        return s

    def channel(self, port, tls=False, authority=None):
        opts = MSG_OPTIONS + [("grpc.enable_http_proxy", 0)]
        if authority:
            opts.append(("grpc.default_authority", authority))
        if tls:
            creds = grpc.ssl_channel_credentials(root_certificates=read(cert("ca")))
            ch = grpc.secure_channel(f"127.0.0.1:{port}", creds, opts + [("grpc.ssl_target_name_override", "grpc.test")])
        else:
            ch = grpc.insecure_channel(f"127.0.0.1:{port}", opts)
        self.addCleanup(ch.close)
        return Stubs(ch)

    @staticmethod
    def grpc_dynamic(url):
        return f"""
http:
  routers:
    plain:
      rule: "PathPrefix(`/`)"
      service: g
    secure:
      rule: "PathPrefix(`/`)"
      service: g
      tls: {{}}
  services:
    g:
      loadBalancer:
        servers:
          - url: "{url}"
tls:
  certificates:
    - certFile: {cert("front")}
      keyFile: {cert("front", "key")}
"""

    def grpc_through_berth(self, **kw):
        """A gRPC server (h2c) and a berth routing everything to it as h2c://."""
        server = self.grpc_server(**kw)
        proxy = self.start_berth(self.grpc_dynamic(f"h2c://127.0.0.1:{server.port}"))
        return server, proxy

    def tail(self, proxy, n=30):
        return "\nberth.log (tail):\n" + "\n".join(proxy.log_text().splitlines()[-n:])

    def assert_alive(self, proxy):
        self.assertIsNone(proxy.proc.poll(), "berth exited" + self.tail(proxy))

    def assert_code(self, fn, codes, proxy):
        """fn() fails with a gRPC status in `codes`; returns the error."""
        try:
            fn()
        except grpc.RpcError as e:
            self.assertIn(e.code(), codes, f"{e.code()} {e.details()!r}" + self.tail(proxy))
            return e
        self.fail(f"call succeeded, expected one of {codes}")


class GrpcOverH2c(GrpcCase):
    def test_unary_with_metadata_and_trailers_and_error_status(self):
        _, proxy = self.grpc_through_berth()
        s = self.channel(proxy.port)
        try:
            resp, call = s.unary.with_call(b"hello", metadata=(("x-client", "c1"), ("x-data-bin", bytes(range(256)))),
                                           timeout=5)
        except grpc.RpcError as e:
            self.fail(f"unary failed: {e.code()} {e.details()!r}" + self.tail(proxy))
        self.assertEqual(resp, b"hello")
        initial, trailing = dict(call.initial_metadata()), dict(call.trailing_metadata())
        self.assertEqual((initial.get("x-initial"), initial.get("x-seen-client")), ("i1", "c1"))
        self.assertEqual(trailing.get("x-trailer"), "t1", call.trailing_metadata())
        self.assertEqual(trailing.get("x-data-bin"), bytes(range(256)))
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        e = self.assert_code(lambda: s.unary(b"fail", timeout=5), (grpc.StatusCode.NOT_FOUND,), proxy)
        self.assertEqual(e.details(), "no such thing")
        # The channel still works after an error status (a trailers-only response).
        self.assertEqual(s.unary(b"again", timeout=5), b"again")
        self.assert_alive(proxy)

    def test_server_client_and_bidi_streaming_ping_pong(self):
        _, proxy = self.grpc_through_berth()
        s = self.channel(proxy.port)
        try:
            items = list(s.server_stream(b"50", timeout=10))
            self.assertEqual(items, [b"item-%d" % i for i in range(50)])
            total = s.client_stream(iter([b"y" * 1000] * 10), timeout=10)
            self.assertEqual(total, b"10 10000")
            replies = ping_pong(s, rounds=20, timeout=10)
        except grpc.RpcError as e:
            self.fail(f"streaming call failed: {e.code()} {e.details()!r}" + self.tail(proxy))
        self.assertEqual(replies, [b"pong:ping-%d" % i for i in range(20)])
        # A server stream is passed on message by message, not when it ends.
        start, arrivals = time.time(), []
        for item in s.ticks(b"5", timeout=10):
            arrivals.append((item, time.time() - start))
        self.assertEqual([a[0] for a in arrivals], [b"tick-%d" % i for i in range(5)])
        self.assertGreater(arrivals[-1][1] - arrivals[0][1], 0.5, arrivals)  # buffered: all at once
        self.assert_alive(proxy)

    def test_server_ends_the_call_while_the_client_still_sends(self):
        # A client stream of 100 x 64 KiB; the server answers after the first message (OK, or an
        # error status, as a server validating its input does), then resets the rest of the
        # request with NO_ERROR (RFC 9113 8.1). The client must get the server's answer.
        _, proxy = self.grpc_through_berth()
        s = self.channel(proxy.port)
        messages = lambda: iter([b"m%03d" % i + b"z" * 65536 for i in range(100)])
        outcomes = []
        for method, expected in ((s.first, b"first:m000" + b"z" * 65536),
                                 (s.reject, (grpc.StatusCode.INVALID_ARGUMENT, "bad first message"))) * 4:
            try:
                got = method(messages(), timeout=10)
            except grpc.RpcError as e:
                got = (e.code(), e.details())
            outcomes.append((got == expected, got if len(got) < 100 else f"{len(got)} bytes"))
        self.assertEqual([o[0] for o in outcomes], [True] * 8, f"outcomes: {outcomes}" + self.tail(proxy))
        self.assertEqual(s.unary(b"after", timeout=5), b"after")
        self.assert_alive(proxy)

    def test_client_cancel_reaches_the_server(self):
        server, proxy = self.grpc_through_berth()
        s = self.channel(proxy.port)
        call = s.forever(b"", timeout=20)
        for _ in range(3):
            self.assertEqual(len(next(call)), 1000)
        call.cancel()
        # berth resets the server's stream: the handler's call ends (it would stream for 20 s).
        try:
            wait_until(server.ended.is_set, timeout=3, step=0.02)
        except AssertionError:
            self.fail(f"server still streaming after the client cancelled ({server.forever_sent} sent)" + self.tail(proxy))
        self.assertEqual(s.unary(b"after", timeout=5), b"after")
        self.assert_alive(proxy)

    def test_server_limit_on_concurrent_streams_is_respected(self):
        # The server allows 4 streams at a time: 30 calls at once all succeed (berth waits for a
        # free stream or opens another connection, as Go's transport does; it must not fail them).
        _, proxy = self.grpc_through_berth(options=[("grpc.max_concurrent_streams", 4)])
        s = self.channel(proxy.port)
        fs = [s.slow.future(b"0.1", timeout=15) for _ in range(30)]
        outcomes = []
        for f in fs:
            try:
                outcomes.append(f.result())
            except grpc.RpcError as e:
                outcomes.append((e.code(), e.details()))
        failed = [o for o in outcomes if o != b"late"]
        self.assertEqual(failed, [], f"{len(failed)} of 30 calls failed" + self.tail(proxy))
        self.assert_alive(proxy)

    def test_four_mebibyte_messages_and_fifty_concurrent_calls(self):
        _, proxy = self.grpc_through_berth()
        s = self.channel(proxy.port)
        big = os.urandom(4 * MiB)
        try:
            self.assertTrue(s.unary(big, timeout=20) == big, "4 MiB echo differs")
            # 4 MiB up in a client stream, 4 MiB down in a server stream.
            self.assertEqual(s.client_stream(iter([big]), timeout=20), b"1 %d" % len(big))
            fs = [s.unary.future(b"call-%d" % i, timeout=15) for i in range(50)]
            self.assertEqual([f.result() for f in fs], [b"call-%d" % i for i in range(50)])
        except grpc.RpcError as e:
            self.fail(f"call failed: {e.code()} {e.details()!r}" + self.tail(proxy))
        self.assert_alive(proxy)

    def test_deadline_propagated_and_exceeded(self):
        server, proxy = self.grpc_through_berth()
        s = self.channel(proxy.port)
        left = float(s.deadline(b"", timeout=3))
        # grpc-timeout reached the server: it sees the client's deadline, less the time spent (the
        # server's deadline starts from its cached clock, a few ms late under load: a little slack).
        self.assertTrue(1.5 < left <= 3.25, left)
        start = time.time()
        self.assert_code(lambda: s.slow(b"", timeout=0.5), (grpc.StatusCode.DEADLINE_EXCEEDED,), proxy)
        self.assertLess(time.time() - start, 2.0)
        # The cancelled stream costs nothing else: the next call works.
        self.assertEqual(s.unary(b"after", timeout=5), b"after")
        self.assert_alive(proxy)


class GrpcTls(GrpcCase):
    def test_tls_client_to_h2c_server(self):
        _, proxy = self.grpc_through_berth()
        s = self.channel(proxy.port, tls=True)
        try:
            resp, call = s.unary.with_call(b"over tls", timeout=5)
            self.assertEqual(resp, b"over tls")
            self.assertEqual(dict(call.trailing_metadata()).get("x-trailer"), "t1")
            self.assertEqual(ping_pong(s, rounds=20, timeout=10), [b"pong:ping-%d" % i for i in range(20)])
        except grpc.RpcError as e:
            self.fail(f"call over TLS failed: {e.code()} {e.details()!r}" + self.tail(proxy))
        self.assert_alive(proxy)

    def test_https_server_chosen_h2_by_alpn_and_disable_http2(self):
        server = self.grpc_server(tls=True)
        proxy = self.start_berth(f"""
http:
  routers:
    h2:
      rule: "Host(`h2.test`)"
      service: h2
    h1:
      rule: "Host(`h1.test`)"
      service: h1
  services:
    h2:
      loadBalancer:
        serversTransport: verified
        servers:
          - url: "https://127.0.0.1:{server.port}"
    h1:
      loadBalancer:
        serversTransport: http1only
        servers:
          - url: "https://127.0.0.1:{server.port}"
  serversTransports:
    verified:
      serverName: upstream.test
      rootCAs:
        - {cert("ca")}
    http1only:
      serverName: upstream.test
      disableHTTP2: true
      rootCAs:
        - {cert("ca")}
""")
        # gRPC works only over HTTP/2: success proves berth negotiated h2 with the server.
        s = self.channel(proxy.port, authority="h2.test")
        try:
            resp, call = s.unary.with_call(b"via https", timeout=5)
        except grpc.RpcError as e:
            self.fail(f"unary to https:// server failed: {e.code()} {e.details()!r}" + self.tail(proxy))
        self.assertEqual(resp, b"via https")
        self.assertEqual(dict(call.trailing_metadata()).get("x-trailer"), "t1")
        self.assertEqual(ping_pong(s, rounds=5, timeout=10), [b"pong:ping-%d" % i for i in range(5)])
        # disableHTTP2: berth offers only http/1.1, the gRPC server refuses: a prompt error, no hang.
        h1 = self.channel(proxy.port, authority="h1.test")
        start = time.time()
        self.assert_code(lambda: h1.unary(b"x", timeout=5),
                         (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), proxy)
        self.assertLess(time.time() - start, 4.0)
        self.assertEqual(s.unary(b"still", timeout=5), b"still")
        self.assert_alive(proxy)


class H2cServers(GrpcCase):
    """A second berth is the h2c server: it serves h2c with prior knowledge on its entry point and
    routes to a berth_test_backend."""

    def back_berth(self, port=None, name="back"):
        be = getattr(self, "be", None) or self.backend("h2c-backend")
        self.be = be
        return self.start_berth(f"""
http:
  routers:
    all:
      rule: "PathPrefix(`/`)"
      service: b
  services:
    b:
      loadBalancer:
        servers:
          - url: "{be.url}"
""", name=name, port=port)

    def front_berth(self, back_port, workers=2):
        return self.start_berth(f"""
http:
  routers:
    all:
      rule: "PathPrefix(`/`)"
      service: h2c
  services:
    h2c:
      loadBalancer:
        servers:
          - url: "h2c://127.0.0.1:{back_port}"
""", workers=workers)

    def fetch(self, port, path, *extra):
        """curl (HTTP/1.1 unless told): ("version code", body, stderr)."""
        out_path = tempfile.mktemp(dir=self.tmp)
        out = curl("-o", out_path, "-w", "%{http_version} %{http_code}", *extra, f"http://127.0.0.1:{port}{path}")
        body = read(out_path) if os.path.exists(out_path) else b""
        return out.stdout.decode(), body, out.stderr.decode()

    def test_http1_and_h2_clients_to_h2c_server(self):
        back = self.back_berth()
        front = self.front_berth(back.port)
        for proto in (["--http1.1"], ["--http2-prior-knowledge"]):
            version = "1.1" if proto == ["--http1.1"] else "2"
            meta, body, err = self.fetch(front.port, "/size/100000", *proto)
            self.assertEqual((meta, len(body), body.strip(b"x")), (f"{version} 200", 100000, b""), err + self.tail(front))
            meta, body, err = self.fetch(front.port, "/chunked/50000", *proto)
            self.assertEqual((meta, len(body)), (f"{version} 200", 50000), err + self.tail(front))
            meta, body, err = self.fetch(front.port, "/echo?q=1", *proto, "-H", "X-Custom: c1",
                                         "--data-binary", "hello")
            self.assertEqual(meta, f"{version} 200", err + self.tail(front))
            echo = json.loads(body)
            self.assertEqual((echo["method"], echo["target"], echo["body_bytes"]), ("POST", "/echo?q=1", 5))
            self.assertIn(["X-Custom", "c1"], echo["headers"])
            upload = os.path.join(self.tmp, "upload.bin")
            with open(upload, "wb") as f:
                f.write(os.urandom(3 * MiB))
            meta, body, err = self.fetch(front.port, "/sink", *proto, "--data-binary", f"@{upload}")
            self.assertEqual((meta, body), (f"{version} 200", str(3 * MiB).encode()), err + self.tail(front))
            meta, body, err = self.fetch(front.port, "/status/404", *proto)
            self.assertEqual((meta, body), (f"{version} 404", b"status 404\n"), err + self.tail(front))
        self.assert_alive(front)
        self.assert_alive(back)

    def test_one_multiplexed_connection_per_server_and_worker(self):
        back = self.back_berth()
        front = self.front_berth(back.port, workers=1)
        seen = set()
        for i in range(20):  # a new client connection each time
            meta, body, err = self.fetch(front.port, f"/size/{100 + i}")
            self.assertEqual((meta, len(body)), ("1.1 200", 100 + i), err + self.tail(front))
            seen |= upstream_sockets(back.port)
        self.assertEqual(len(seen), 1, f"upstream connections used: {sorted(seen)}")
        # Five slow requests at once share the connection too (HTTP/1.1 would need five).
        procs = [subprocess.Popen(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                                   f"http://127.0.0.1:{front.port}/delay/600"], stdout=subprocess.PIPE)
                 for _ in range(5)]
        try:
            end = time.time() + 0.5
            while time.time() < end:
                seen |= upstream_sockets(back.port)
                time.sleep(0.05)
            codes = [p.communicate(timeout=15)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self.assertEqual(codes, [b"200"] * 5)
        self.assertEqual(len(seen), 1, f"upstream connections used: {sorted(seen)}")

    def test_h2c_server_killed_and_restarted_on_the_same_port(self):
        back = self.back_berth()
        port = back.port
        front = self.front_berth(port, workers=1)
        self.assertEqual(self.fetch(front.port, "/size/10")[0], "1.1 200")
        back.stop(signal.SIGKILL)  # no GOAWAY: the connection just ends
        back2 = self.back_berth(port=port, name="back2")
        results = [self.fetch(front.port, "/size/10") for _ in range(2)]
        ok = [r[0] == "1.1 200" and r[1] == b"x" * 10 for r in results]
        self.assertTrue(ok[1], f"second request after restart: {results[1]}" + self.tail(front))
        self.assertEqual(self.fetch(front.port, "/size/10")[:2], ("1.1 200", b"x" * 10))
        self.assert_alive(front)
        self.assert_alive(back2)


class GrpcResponseHeaderTimeout(GrpcCase):
    def test_response_header_timeout_answers_h2_client_with_504(self):
        # responseHeaderTimeout on the servers transport, an h2c server that never answers: the
        # timeout cancels the exchange's operations in progress only, so the 504 still goes out on
        # the client's stream (it must not be reset instead: curl exit 92, gRPC INTERNAL).
        server = SilentH2Server()
        self._procs.append(server)
        proxy = self.start_berth(f"""
http:
  routers:
    all:
      rule: "PathPrefix(`/`)"
      service: silent
  services:
    silent:
      loadBalancer:
        serversTransport: quick
        servers:
          - url: "h2c://127.0.0.1:{server.port}"
  serversTransports:
    quick:
      forwardingTimeouts:
        responseHeaderTimeout: 1s
""")
        out_path = os.path.join(self.tmp, "out.bin")
        start = time.time()
        out = curl("--http2-prior-knowledge", "-o", out_path, "-w", "%{http_version} %{http_code}",
                   f"http://127.0.0.1:{proxy.port}/never")
        elapsed = time.time() - start
        body = read(out_path) if os.path.exists(out_path) else b""
        self.assertEqual((out.returncode, out.stdout.decode(), body), (0, "2 504", b"Gateway Timeout"),
                         out.stderr.decode() + self.tail(proxy))
        self.assertTrue(0.8 < elapsed < 4.0, elapsed)
        self.assertEqual([r[2] for r in server.requests], ["/never"])
        # A gRPC call sees the 504 as UNAVAILABLE (an HTTP status), not INTERNAL (a reset stream).
        s = self.channel(proxy.port)
        self.assert_code(lambda: s.unary(b"x", timeout=5), (grpc.StatusCode.UNAVAILABLE,), proxy)
        self.assertEqual(len(server.requests), 2)
        self.assert_alive(proxy)


class GrpcServerRestart(GrpcCase):
    def test_grpc_server_stopped_and_restarted_on_the_same_port(self):
        server, proxy = self.grpc_through_berth(name="g1")
        s = self.channel(proxy.port)
        self.assertEqual(s.who(b"", timeout=5), b"g1")
        server.stop()  # GOAWAY, then the connection closes
        self.grpc_server(port=server.port, name="g2")
        outcomes = []
        for _ in range(2):
            try:
                outcomes.append(s.who(b"", timeout=5))
            except grpc.RpcError as e:
                outcomes.append((e.code(), e.details()))
        self.assertEqual(outcomes[1], b"g2", f"calls after the restart: {outcomes}" + self.tail(proxy))
        self.assertEqual(s.who(b"", timeout=5), b"g2")
        self.assert_alive(proxy)


if __name__ == "__main__":
    main()
