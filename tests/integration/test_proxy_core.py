"""The HTTP/1.1 proxy core against real backends: routing, forwarded headers, framing, keep-alive,
pipelining, and the error answers (400, 404, 408, 431, 502, 503, 504)."""
import http.server
import json
import os
import socket
import subprocess
import threading
import time

from harness import BerthTestCase, RawClient, get, main, router_yaml, free_port, wait_for_port, wait_until


def connection_recorder(test):
    """An HTTP/1.1 server in this process that records ("open" | "close", peer port) for each
    connection; GET /delay/MS answers "ok" after MS ms, anything else at once. Its URL and the list."""
    events = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            events.append(("open", self.client_address[1]))

        def finish(self):
            super().finish()
            events.append(("close", self.client_address[1]))

        def do_GET(self):
            if self.path.startswith("/delay/"):
                time.sleep(int(self.path[len("/delay/"):]) / 1000)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    test.addCleanup(server.server_close)
    test.addCleanup(server.shutdown)
    return f"http://127.0.0.1:{server.server_address[1]}", events


class ProxyCore(BerthTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.backend("alpha")
        self.b = self.backend("beta")
        self.proxy = self.berth(dynamic_yaml=router_yaml(
            {"alpha": ("Host(`alpha.test`)", "alpha"),
             "beta": ("Host(`beta.test`) && PathPrefix(`/api`)", "beta"),
             "exact": ("Path(`/exact`)", "beta"),
             "both": ("Host(`both.test`)", "both"),
             "fixed": ("Host(`fixed.test`)", "fixed"),
             "empty": ("Host(`empty.test`)", "empty"),
             "dead": ("Host(`dead.test`)", "dead"),
             "slow": ("Host(`slow.test`)", "alpha")},
            {"alpha": [self.a.url], "beta": [self.b.url], "both": [self.a.url, self.b.url],
             "fixed": ([self.a.url], {"passHostHeader": "false"}), "empty": [],
             "dead": [f"http://127.0.0.1:{free_port()}"]}))
        self.port = self.proxy.port

    def test_routes_by_host_path_and_prefix(self):
        self.assertEqual(get(self.port, "/", host="alpha.test")[2], b"alpha")
        self.assertEqual(get(self.port, "/", host="ALPHA.test:8080")[2], b"alpha")  # case and port ignored
        self.assertEqual(get(self.port, "/api/x", host="beta.test")[2], b"beta")
        self.assertEqual(get(self.port, "/exact")[2], b"beta")
        status, _, body = get(self.port, "/other", host="beta.test")
        self.assertEqual((status, body), (404, b"404 page not found\n"))
        self.assertEqual(get(self.port, "/exact/more")[0], 404)

    def test_round_robin_over_servers(self):
        # Each worker keeps its own cursor (no shared state on the request path), so with two
        # workers the split is even to within one request per worker.
        seen = [get(self.port, "/", host="both.test")[2] for _ in range(40)]
        self.assertEqual(sorted(set(seen)), [b"alpha", b"beta"])
        self.assertLessEqual(abs(seen.count(b"alpha") - 20), 2)

    def test_forwarded_headers_from_untrusted_peer_are_replaced(self):
        status, _, body = get(self.port, "/echo", host="alpha.test:8443",
                              headers={"X-Forwarded-For": "6.6.6.6", "X-Real-Ip": "6.6.6.6",
                                       "X-Forwarded-Proto": "https", "Connection": "close, X-Secret",
                                       "X-Secret": "hop", "Keep-Alive": "timeout=5"})
        self.assertEqual(status, 200)
        h = {k.lower(): v for k, v in json.loads(body)["headers"]}
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(h["x-real-ip"], "127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(h["x-forwarded-host"], "alpha.test:8443")
        self.assertEqual(h["x-forwarded-port"], "8443")
        self.assertEqual(h["x-forwarded-server"], socket.gethostname())
        self.assertEqual(h["host"], "alpha.test:8443")
        self.assertNotIn("x-secret", h)       # named in Connection: hop-by-hop
        self.assertNotIn("keep-alive", h)

    def test_pass_host_header_false_sends_the_server_authority(self):
        body = json.loads(get(self.port, "/echo", host="fixed.test")[2])
        h = {k.lower(): v for k, v in body["headers"]}
        self.assertEqual(h["host"], f"127.0.0.1:{self.a.port}")
        self.assertEqual(h["x-forwarded-host"], "fixed.test")

    def test_keep_alive_connection_serves_many_requests(self):
        c = RawClient(self.port)
        for i in range(20):
            c.send(f"GET /size/{i * 100} HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
            status, headers, body = c.read_response()
            self.assertEqual((status, len(body)), (200, i * 100))
            self.assertNotIn("connection", headers)
        c.close()

    def test_pipelined_requests_are_answered_in_order(self):
        c = RawClient(self.port)
        c.send("GET /size/3 HTTP/1.1\r\nHost: alpha.test\r\n\r\n"
               "GET /api/1 HTTP/1.1\r\nHost: beta.test\r\n\r\n"
               "GET /nothing HTTP/1.1\r\nHost: nowhere.test\r\n\r\n"
               "GET /delay/200 HTTP/1.1\r\nHost: alpha.test\r\n\r\n"
               "GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        got = [c.read_response() for _ in range(5)]
        self.assertEqual([(s, b) for s, _, b in got],
                         [(200, b"xxx"), (200, b"beta"), (404, b"404 page not found\n"),
                          (200, b"delayed"), (200, b"alpha")])
        c.close()

    def test_chunked_bodies_pass_both_ways_with_trailers(self):
        c = RawClient(self.port)
        c.send("POST /echo HTTP/1.1\r\nHost: alpha.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n")
        status, _, body = c.read_response()
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["body_bytes"], 12)
        c.send("GET /chunked/100000 HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        status, headers, body = c.read_response()
        self.assertEqual((status, headers.get("transfer-encoding"), len(body)), (200, "chunked", 100000))
        c.send("GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n")  # connection still in sync
        self.assertEqual(c.read_response()[2], b"alpha")
        c.close()

    def test_content_length_upload_streams_to_backend(self):
        payload = b"z" * 3_000_000
        status, _, body = get(self.port, "/sink", host="alpha.test", method="POST", body=payload)
        self.assertEqual((status, body), (200, b"3000000"))

    def test_expect_100_continue(self):
        out = subprocess.run(["curl", "-s", "-v", "--max-time", "10", "-H", "Host: alpha.test",
                              "-H", "Expect: 100-continue", "--data-binary", "@-",
                              f"http://127.0.0.1:{self.port}/sink"],
                             input=b"q" * 200_000, capture_output=True)
        self.assertIn(b"HTTP/1.1 100 Continue", out.stderr)
        self.assertEqual(out.stdout, b"200000")

    def test_head_gets_headers_without_body(self):
        c = RawClient(self.port)
        c.send("HEAD /size/5000 HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        status, headers, _ = c.read_response(head_request=True)
        self.assertEqual((status, headers["content-length"]), (200, "5000"))
        c.send("GET /size/2 HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        self.assertEqual(c.read_response()[2], b"xx")
        c.close()

    def test_http10_client(self):
        c = RawClient(self.port)
        c.send("GET /size/10 HTTP/1.0\r\nHost: alpha.test\r\n\r\n")
        status, _, body = c.read_response()
        self.assertEqual((status, body), (200, b"x" * 10))
        self.assertTrue(c.is_closed())

    def test_malformed_request_gets_400_and_close(self):
        for bad in ["GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
                    "GET / HTTP/1.1\r\n\r\n",
                    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                    "NOT A REQUEST\r\n\r\n"]:
            c = RawClient(self.port)
            c.send(bad)
            status, headers, _ = c.read_response()
            self.assertEqual(status, 400, bad)
            self.assertEqual(headers.get("connection"), "close")
            self.assertTrue(c.is_closed(), bad)
        self.assertEqual(get(self.port, "/", host="alpha.test")[2], b"alpha")  # server fine afterwards

    def test_unsupported_transfer_coding_gets_501(self):
        c = RawClient(self.port)
        c.send("POST / HTTP/1.1\r\nHost: alpha.test\r\nTransfer-Encoding: gzip\r\n\r\n")
        self.assertEqual(c.read_response()[0], 501)

    def test_too_large_headers_get_431(self):
        c = RawClient(self.port)
        c.send("GET / HTTP/1.1\r\nHost: alpha.test\r\n" + "X-Big: " + "a" * 1_100_000 + "\r\n\r\n")
        self.assertEqual(c.read_response()[0], 431)
        # A 20 KiB header (more than one buffer) is fine.
        status, _, body = get(self.port, "/headers-count", host="alpha.test", headers={"X-Big": "b" * 20_000})
        self.assertEqual(status, 200)

    def test_refused_backend_gets_502_and_connection_stays_usable(self):
        c = RawClient(self.port)
        c.send("GET / HTTP/1.1\r\nHost: dead.test\r\n\r\n")
        status, _, body = c.read_response()
        self.assertEqual((status, body), (502, b"Bad Gateway"))
        c.send("GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        self.assertEqual(c.read_response()[2], b"alpha")
        c.close()

    def test_backend_reset_gets_502(self):
        self.assertEqual(get(self.port, "/reset", host="alpha.test")[0], 502)

    def test_service_without_servers_gets_503(self):
        self.assertEqual(get(self.port, "/", host="empty.test")[:3:2], (503, b"Service Unavailable"))

    def test_backend_closing_connection_is_not_reused(self):
        c = RawClient(self.port)
        for _ in range(3):
            c.send("GET /close HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
            self.assertEqual(c.read_response()[0], 200)
            c.send("GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
            self.assertEqual(c.read_response()[2], b"alpha")
        c.close()

    def test_interim_103_is_relayed_before_the_final_response(self):
        c = RawClient(self.port)
        c.send("GET /early-hints HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        status, headers, _ = c.read_response()
        self.assertEqual((status, headers.get("link")), (103, "</style.css>; rel=preload"))
        status, _, body = c.read_response()
        self.assertEqual((status, body), (200, b"hinted"))
        c.send("GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        self.assertEqual(c.read_response()[2], b"alpha")
        c.close()

    def test_body_until_close_from_backend(self):
        c = RawClient(self.port)
        c.send("GET /eof-body HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        status, headers, body = c.read_response()
        self.assertEqual((status, body), (200, b"until-close"))


class TrustedForwardedHeaders(BerthTestCase):
    def start(self, forwarded):
        be = self.backend("trusting")
        port = free_port()
        static = f"""
entryPoints:
  web:
    address: "127.0.0.1:{port}"
    forwardedHeaders:
{forwarded}
providers:
  file:
    filename: {self.tmp}/dynamic.yml
"""
        proxy = self.berth(static_yaml=static, wait=False,
                           dynamic_yaml=router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [be.url]}))
        wait_for_port(port, proc=proxy.proc)
        return port

    def echo_headers(self, port):
        body = get(port, "/echo", host="app.test", headers={
            "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.test",
            "X-Forwarded-Port": "443", "X-Real-Ip": "203.0.113.9"})[2]
        return {k.lower(): v for k, v in json.loads(body)["headers"]}

    def test_trusted_peer_keeps_its_headers_and_is_appended(self):
        h = self.echo_headers(self.start("      trustedIPs:\n        - \"10.0.0.0/8\"\n        - \"127.0.0.1/32\""))
        self.assertEqual(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "https")
        self.assertEqual(h["x-forwarded-host"], "public.test")
        self.assertEqual(h["x-forwarded-port"], "443")
        self.assertEqual(h["x-real-ip"], "203.0.113.9")

    def test_insecure_trusts_everyone_and_other_ranges_trust_no_one(self):
        h = self.echo_headers(self.start("      insecure: true"))
        self.assertEqual(h["x-forwarded-proto"], "https")
        h = self.echo_headers(self.start("      trustedIPs: [\"192.168.0.0/16\"]"))
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(h["x-forwarded-host"], "app.test")


class Timeouts(BerthTestCase):
    def one_route_berth(self, server_url, servers_transport, entry_point=""):
        """A berth (one worker) routing every request to `server_url`, with the given lines under
        `serversTransport:` and extra lines for its entry point; its port."""
        port = free_port()
        dyn = router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [server_url]})
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n{entry_point}"
                  + (f"serversTransport:\n{servers_transport}" if servers_transport else "") +
                  f"providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\nworkers: 1\n")
        proxy = self.berth(static_yaml=static, dynamic_yaml=dyn, wait=False)
        wait_for_port(port, proc=proxy.proc)
        return port

    def test_response_header_timeout_gets_504_and_read_timeout_408(self):
        be = self.backend("slowpoke")
        port = self.one_route_berth(be.url, "  forwardingTimeouts:\n    responseHeaderTimeout: 300ms\n",
                                    "    transport:\n      respondingTimeouts:\n"
                                    "        readTimeout: 1s\n        idleTimeout: 2s\n")
        t = time.time()
        status, _, body = get(port, "/delay/3000")
        self.assertEqual((status, body), (504, b"Gateway Timeout"))
        self.assertLess(time.time() - t, 2.5)
        self.assertEqual(get(port, "/delay/10")[2], b"delayed")
        # A client that starts a request and stalls gets 408 after readTimeout.
        c = RawClient(port)
        c.send("GET / HTTP/1.1\r\nHost: x\r\n")
        t = time.time()
        status, headers, _ = c.read_response()
        self.assertEqual(status, 408)
        self.assertTrue(0.8 < time.time() - t < 2.5)
        self.assertTrue(c.is_closed())
        # An idle keep-alive connection is closed after idleTimeout, without a response.
        c = RawClient(port)
        c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(c.read_response()[0], 200)
        self.assertFalse(c.is_closed(wait=1.0))
        self.assertTrue(c.is_closed(wait=3.0))

    def test_idle_upstream_connections_close_after_idle_conn_timeout(self):
        # serversTransport.forwardingTimeouts.idleConnTimeout: a pooled connection to the server
        # carries the next request while it is younger, and berth closes it once it has idled that long.
        url, events = connection_recorder(self)
        port = self.one_route_berth(url, "  forwardingTimeouts:\n    idleConnTimeout: 1s\n")
        self.assertEqual(get(port, "/")[2], b"ok")
        time.sleep(0.3)
        self.assertEqual(get(port, "/")[2], b"ok")
        opened = [e for e in events if e[0] == "open"]
        self.assertEqual(opened, [events[0]], "the second request took the same connection")
        first = events[0][1]
        # Idle 1 s, then closed by the next sweep (each second): within 2.5 s, not before 1 s.
        time.sleep(0.8)
        self.assertNotIn(("close", first), events)
        wait_until(lambda: ("close", first) in events, timeout=2.5)
        self.assertEqual(get(port, "/")[2], b"ok")
        self.assertEqual(len([e for e in events if e[0] == "open"]), 2, events)

    def test_max_idle_conns_per_host_bounds_the_pool(self):
        # serversTransport.maxIdleConnsPerHost: of three connections opened for three requests at
        # once, berth keeps one idle for the next request and closes the other two.
        url, events = connection_recorder(self)
        port = self.one_route_berth(url, "  maxIdleConnsPerHost: 1\n")
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(get(port, "/delay/300")[2])) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(answers, [b"ok"] * 3)
        self.assertEqual(len([e for e in events if e[0] == "open"]), 3, events)
        wait_until(lambda: len([e for e in events if e[0] == "close"]) == 2)
        self.assertEqual(get(port, "/")[2], b"ok")
        time.sleep(0.2)
        self.assertEqual(len([e for e in events if e[0] == "open"]), 3, "the kept connection took the request")
        self.assertEqual(len([e for e in events if e[0] == "close"]), 2, events)

    def test_write_timeout_closes_a_client_that_does_not_read(self):
        # entryPoints.<ep>.transport.respondingTimeouts.writeTimeout: a response that cannot be
        # written within it (the client reads nothing) ends with the connection.
        be = self.backend("big")
        port = self.one_route_berth(be.url, "",
                                    "    transport:\n      respondingTimeouts:\n        writeTimeout: 1s\n")
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"GET /size/200000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(2.5)  # more than writeTimeout, reading nothing
        got, start = 0, time.time()
        while time.time() - start < 8:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        self.assertLess(time.time() - start, 8, "the connection was not closed")
        self.assertLess(got, 200_000_000)  # the socket buffers' worth, then the end

    def test_dial_timeout_gets_504(self):
        # A listener that never accepts, with its backlog full: a connect to it hangs (its SYNs are
        # dropped), as a backend behind a black hole would.
        sink = socket.socket()
        sink.bind(("127.0.0.1", 0))
        sink.listen(0)
        sink_port = sink.getsockname()[1]
        fillers = []
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", sink_port))
            fillers.append(f)
        time.sleep(0.2)
        try:
            port = self.one_route_berth(f"http://127.0.0.1:{sink_port}", "  forwardingTimeouts:\n    dialTimeout: 400ms\n")
            t = time.time()
            status, _, body = get(port, "/")
            self.assertEqual((status, body), (504, b"Gateway Timeout"))
            self.assertLess(time.time() - t, 2.0)
        finally:
            for f in fillers:
                f.close()
            sink.close()



class IoUring(BerthTestCase):
    """Each worker sends the writes of one event-loop turn in one io_uring_enter (one ring per
    worker); `ioUring: false` opens no ring and writes one sendmsg at a time. Either way, many
    keep-alive exchanges at once and large bodies both ways arrive whole."""

    @staticmethod
    def rings(proxy):
        fds = f"/proc/{proxy.proc.pid}/fd"
        links = []
        for fd in os.listdir(fds):
            try:
                links.append(os.readlink(os.path.join(fds, fd)))
            except OSError:
                pass  # closed meanwhile
        return links.count("anon_inode:[io_uring]")

    def exchanges_arrive_whole(self, port):
        failures = []

        def client(n):
            c = RawClient(port, 10)
            try:
                for i in range(40):
                    c.send(f"GET /size/{100 + n + i} HTTP/1.1\r\nHost: app.test\r\n\r\n".encode())
                    status, _, body = c.read_response()
                    if status != 200 or len(body) != 100 + n + i:
                        failures.append((n, i, status, len(body)))
            finally:
                c.close()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(failures, [])
        status, _, body = get(port, "/size/20000000", host="app.test", timeout=30)
        self.assertEqual((status, len(body)), (200, 20_000_000))
        status, _, body = get(port, "/sink", host="app.test", method="POST", body=b"u" * 5_000_000, timeout=30)
        self.assertEqual((status, body), (200, b"5000000"))

    def test_each_worker_has_a_ring_unless_io_uring_is_false(self):
        app = self.backend("app")
        dynamic = router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [app.url]})
        on = self.berth(dynamic_yaml=dynamic)
        off = self.berth(dynamic_yaml=dynamic, args=("--ioUring=false",))
        wait_until(lambda: self.rings(on) == 2, timeout=5)  # the harness runs two workers
        self.assertEqual(self.rings(off), 0)
        self.assertIn("ioUring is false: each write is a sendmsg(2) of its own", off.log_text())
        self.assertNotIn("io_uring is not available", on.log_text())
        for proxy in (on, off):
            with self.subTest(io_uring=proxy is on):
                self.exchanges_arrive_whole(proxy.port)

if __name__ == "__main__":
    main()
