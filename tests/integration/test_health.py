"""Server health through berth: active health checks against backends that really go down and come
back (same port), the check's options seen by a recording server, passive health checks on live
failures, health propagating up failover services and across reloads, and p2c steering around a
busy server."""
import threading
import time
from concurrent import futures

import grpc

from harness import Backend, BerthTestCase, get, main, wait_until


class GrpcHealthServer:
    """A gRPC server on 127.0.0.1 (in this process) with grpc.health.v1.Health/Check answering
    SERVING or NOT_SERVING as `serving` says, and /test.Echo/Unary."""

    def __init__(self):
        ident = lambda b: b
        self.serving = True
        check = lambda req, ctx: b"\x08\x01" if self.serving else b"\x08\x02"  # HealthCheckResponse.status
        health = grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check, ident, ident)})
        echo = grpc.method_handlers_generic_handler(
            "test.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"echo:" + req, ident, ident)})
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        self.server.add_generic_rpc_handlers((health, echo))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self):
        self.server.stop(0)


class Health(BerthTestCase):
    def start(self, dynamic):
        proxy = self.berth(dynamic_yaml=dynamic)
        return proxy, proxy.port

    def backends_seen(self, port, n=10):
        return [get(port, "/")[1].get("x-backend") for _ in range(n)]

    def restart(self, backend):
        """The same backend process again, on the same port, as a restarted container would be."""
        again = Backend(backend.proc.args[4], port=backend.port)
        self._procs.append(again)
        return again

    def test_active_check_removes_dead_server_and_takes_it_back(self):
        a, b = self.backend("a"), self.backend("b")
        dynamic = (f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s}}\n  services:\n    s:\n"
                   f"      loadBalancer:\n        healthCheck: {{path: /, interval: 100ms, timeout: 500ms}}\n"
                   f"        servers: [{{url: \"{a.url}\"}}, {{url: \"{b.url}\"}}]\n")
        proxy, port = self.start(dynamic)
        self.assertEqual(set(self.backends_seen(port)), {"a", "b"})

        b.stop()
        wait_until(lambda: f"server {b.url} of service s@file is unhealthy" in proxy.log_text(), timeout=5)
        self.assertEqual(self.backends_seen(port), ["a"] * 10)
        # A reload keeps what the checks learnt: b stays out until a check passes.
        proxy.write_dynamic(dynamic + "    other: {loadBalancer: {servers: [{url: \"" + a.url + "\"}]}}\n")
        wait_until(lambda: "configuration generation 2 applied" in proxy.log_text())
        self.assertEqual(self.backends_seen(port), ["a"] * 10)

        a.stop()
        wait_until(lambda: f"server {a.url} of service s@file is unhealthy" in proxy.log_text(), timeout=5)
        status, headers, _ = get(port, "/")
        self.assertEqual(status, 503, "a service with no healthy server answers 503")

        self.restart(b)
        wait_until(lambda: f"server {b.url} of service s@file is healthy again" in proxy.log_text(), timeout=5)
        self.assertEqual(self.backends_seen(port), ["b"] * 10)

    def test_grpc_check_follows_the_serving_status(self):
        server = GrpcHealthServer()
        self.addCleanup(server.stop)
        proxy, port = self.start(
            "http:\n  routers:\n    r: {rule: \"PathPrefix(`/`)\", service: s}\n  services:\n    s:\n"
            "      loadBalancer:\n        healthCheck: {mode: grpc, interval: 100ms, timeout: 1s}\n"
            f"        servers: [{{url: \"h2c://127.0.0.1:{server.port}\"}}]\n")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.addCleanup(channel.close)
        unary = channel.unary_unary("/test.Echo/Unary", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        self.assertEqual(unary(b"x", timeout=5), b"echo:x")
        server.serving = False
        wait_until(lambda: "is unhealthy (gRPC health: not SERVING)" in proxy.log_text(), timeout=5)
        with self.assertRaises(grpc.RpcError) as failed:
            unary(b"x", timeout=5)
        self.assertEqual(failed.exception.code(), grpc.StatusCode.UNAVAILABLE)  # berth's 503, in gRPC terms
        server.serving = True
        wait_until(lambda: "is healthy again" in proxy.log_text(), timeout=5)
        self.assertEqual(unary(b"y", timeout=5), b"echo:y")

    def test_https_check_verifies_the_server_with_the_transport(self):
        import test_tls  # certificate helpers and an HTTPS server (its tests are not collected here)
        test_tls.make_ca(self.tmp, "ca", "Health Test CA")
        test_tls.make_leaf(self.tmp, "srv", "/CN=srv.test", ["srv.test"])
        server = test_tls.HttpsBackend(f"{self.tmp}/srv.pem", f"{self.tmp}/srv.key")
        self.addCleanup(server.stop)
        proxy, port = self.start(
            "http:\n  routers:\n    r: {rule: \"PathPrefix(`/`)\", service: s}\n  services:\n    s:\n"
            "      loadBalancer:\n        serversTransport: t\n"
            "        healthCheck: {path: /, interval: 100ms, timeout: 1s}\n"
            f"        servers: [{{url: \"https://127.0.0.1:{server.port}\"}}]\n"
            f"  serversTransports:\n    t: {{serverName: srv.test, rootCAs: [\"{self.tmp}/ca.pem\"]}}\n")
        wait_until(lambda: server.connections >= 2, timeout=5)  # probes arrive over TLS, with the SNI
        self.assertEqual(server.sni, "srv.test")
        self.assertEqual(get(port, "/")[0], 200)
        self.assertNotIn("is unhealthy", proxy.log_text())
        server.stop()
        wait_until(lambda: "is unhealthy" in proxy.log_text(), timeout=5)
        self.assertEqual(get(port, "/")[0], 503)

    def test_check_options_reach_the_server_and_status_decides(self):
        state = {"check": 204}

        def answer(method, path):
            if path.startswith("/old"):
                return 302, {"Location": "/hc"}, b""
            return (state["check"] if path.startswith("/hc") else 200), {}, b"recorder"
        rec = self.recorder(answer)
        url = rec.url
        proxy, port = self.start(
            f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s}}\n  services:\n    s:\n"
            f"      loadBalancer:\n        healthCheck:\n          path: /old?probe=1\n          method: HEAD\n"
            f"          hostname: hc.example\n          headers: {{X-Check: yes}}\n          status: 204\n"
            f"          interval: 100ms\n          timeout: 1s\n"
            f"        servers: [{{url: \"{url}\"}}]\n")
        wait_until(lambda: any(r[1] == "/hc" for r in rec.requests), timeout=5)
        method, _, headers, _ = next(r for r in rec.requests if r[1] == "/old?probe=1")
        self.assertEqual(method, "HEAD")
        self.assertEqual(headers.get("Host"), "hc.example")
        self.assertEqual(headers.get("X-Check"), "yes")
        self.assertEqual(get(port, "/")[0], 200)

        state["check"] = 200  # healthy by default, but the check asks for exactly 204
        wait_until(lambda: "is unhealthy (status 200)" in proxy.log_text(), timeout=5)
        self.assertEqual(get(port, "/")[0], 503)
        state["check"] = 204
        wait_until(lambda: "is healthy again (status 204)" in proxy.log_text(), timeout=5)
        self.assertEqual(get(port, "/")[0], 200)

    def test_follow_redirects_false_judges_the_redirect_itself(self):
        # Both checks get a 302 to a path that fails. Following it (the default, as Go's client
        # does) finds the 500; with followRedirects: false the 302 itself is the answer, and 3xx
        # is healthy.
        def answer(method, path):
            if path.startswith("/old"):
                return 302, {"Location": "/hc" + path[len("/old"):]}, b""
            return (500 if path.startswith("/hc") else 200), {}, b"recorder"
        rec = self.recorder(answer)
        proxy, port = self.start(
            f"http:\n  routers:\n"
            f"    follows: {{rule: \"Host(`follows.test`)\", service: follows}}\n"
            f"    stays: {{rule: \"Host(`stays.test`)\", service: stays}}\n"
            f"  services:\n"
            f"    follows:\n      loadBalancer:\n        healthCheck: {{path: /old1, interval: 100ms}}\n"
            f"        servers: [{{url: \"{rec.url}\"}}]\n"
            f"    stays:\n      loadBalancer:\n"
            f"        healthCheck: {{path: /old2, interval: 100ms, followRedirects: false}}\n"
            f"        servers: [{{url: \"{rec.url}\"}}]\n")
        wait_until(lambda: "of service follows@file is unhealthy (status 500)" in proxy.log_text(), timeout=5)
        wait_until(lambda: sum(r[1] == "/old2" for r in rec.requests) >= 3, timeout=5)
        self.assertEqual(get(port, "/", host="follows.test")[0], 503)
        self.assertEqual(get(port, "/", host="stays.test")[0], 200)
        self.assertNotIn("/hc2", [r[1] for r in rec.requests], "followRedirects: false followed the redirect")
        self.assertNotIn("service stays@file is unhealthy", proxy.log_text())

    def test_unhealthy_interval_paces_the_checks_of_a_server_that_is_down(self):
        state = {"up": False}
        rec = self.recorder(lambda method, path: (200 if state["up"] else 500, {}, b"recorder"))
        proxy, port = self.start(
            f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s}}\n  services:\n    s:\n"
            f"      loadBalancer:\n        healthCheck: {{path: /hc, interval: 60s, unhealthyInterval: 100ms}}\n"
            f"        servers: [{{url: \"{rec.url}\"}}]\n")
        checks = lambda: sum(r[1] == "/hc" for r in rec.requests)
        # Down: checked every 100 ms, not every minute.
        wait_until(lambda: checks() >= 4, timeout=5)
        self.assertEqual(get(port, "/")[0], 503)
        state["up"] = True
        wait_until(lambda: "is healthy again (status 200)" in proxy.log_text(), timeout=5)
        self.assertEqual(get(port, "/")[0], 200)
        # Up: the next check is a minute away.
        seen = checks()
        time.sleep(1.0)
        self.assertEqual(checks(), seen, "a healthy server was checked at unhealthyInterval")

    def test_passive_check_takes_failing_server_out_for_the_window(self):
        a, b = self.backend("a"), self.backend("b")
        proxy, port = self.start(
            f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s}}\n  services:\n    s:\n"
            f"      loadBalancer:\n        passiveHealthCheck: {{failureWindow: 3s, maxFailedAttempts: 1}}\n"
            f"        servers: [{{url: \"{a.url}\"}}, {{url: \"{b.url}\"}}]\n")
        b.stop()
        # Every request still succeeds (the failed dial is retried on a) and b leaves rotation.
        self.assertEqual(self.backends_seen(port, 4), ["a"] * 4)
        wait_until(lambda: f"server {b.url} of service s@file leaves rotation for 3000 ms" in proxy.log_text())
        left = time.monotonic()
        self.restart(b)
        seen = self.backends_seen(port, 10)
        if time.monotonic() - left < 2.5:  # still inside the window (always, unless the machine stalls)
            self.assertEqual(seen, ["a"] * 10, "a server out of rotation gets no traffic within the window")
        wait_until(lambda: "b" in self.backends_seen(port, 4), timeout=6)

    def test_failover_follows_health_of_main_service(self):
        main_b, spare = self.backend("main"), self.backend("spare")
        proxy, port = self.start(
            f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: app}}\n  services:\n"
            f"    app: {{failover: {{service: primary, fallback: backup, healthCheck: {{}}}}}}\n"
            f"    primary:\n      loadBalancer:\n        healthCheck: {{path: /, interval: 100ms}}\n"
            f"        servers: [{{url: \"{main_b.url}\"}}]\n"
            f"    backup: {{loadBalancer: {{servers: [{{url: \"{spare.url}\"}}]}}}}\n")
        self.assertEqual(self.backends_seen(port, 3), ["main"] * 3)
        main_b.stop()
        wait_until(lambda: self.backends_seen(port, 1) == ["spare"], timeout=5)
        self.assertEqual(self.backends_seen(port, 5), ["spare"] * 5)
        self.restart(main_b)
        wait_until(lambda: self.backends_seen(port, 1) == ["main"], timeout=5)

    def test_p2c_sends_new_requests_away_from_the_busy_server(self):
        a, b = self.backend("a"), self.backend("b")
        proxy, port = self.start(
            f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s}}\n  services:\n    s:\n"
            f"      loadBalancer:\n        strategy: p2c\n"
            f"        servers: [{{url: \"{a.url}\"}}, {{url: \"{b.url}\"}}]\n")
        self.assertEqual(set(self.backends_seen(port, 40)), {"a", "b"}, "idle servers both get picked")
        asked = 0

        def taken_besides_ours():  # requests the two servers took, the /count questions left out
            nonlocal asked
            asked += 2
            return sum(int(get(x.port, "/count")[2]) for x in (a, b)) - asked

        before = taken_besides_ours()
        slow = {}

        def slow_request():
            try:
                slow["answer"] = get(port, "/delay/3000")
            except Exception as e:  # reported below with berth's log (a CI run once saw EOF here)
                slow["error"] = repr(e)
        t = threading.Thread(target=slow_request)
        t.start()
        # Not a fixed sleep (a busy CI host once took longer): until the slow exchange is on a server.
        wait_until(lambda: taken_besides_ours() > before, timeout=2.5)
        during = self.backends_seen(port, 10)
        t.join()
        self.assertIn("answer", slow, f"the slow request failed: {slow.get('error')}; berth's log:\n"
                                      f"{proxy.log_text()[-4000:]}")
        busy = slow["answer"][1]["x-backend"]
        self.assertEqual(set(during), {"a", "b"} - {busy}, f"with {busy} busy, new requests go to the other")


if __name__ == "__main__":
    main()
