"""Load balancing through berth: smooth weighted round robin over servers[].weight, weight 0 taking
no traffic, a failed dial retried on the next server so the client sees no error, and mirroring
services copying a share of the traffic (with bodies) to a recording server."""
import threading
import time

from harness import Backend, BerthTestCase, free_port, get, main, wait_for_port, wait_until


class Balancing(BerthTestCase):
    def start(self, services_yaml, routers_yaml):
        port = free_port()
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\nproviders:\n  file:\n"
                  f"    filename: {self.tmp}/dynamic.yml\nworkers: 1\n")
        proxy = self.berth(static_yaml=static, wait=False,
                           dynamic_yaml=f"http:\n  routers:\n{routers_yaml}  services:\n{services_yaml}")
        wait_for_port(port, proc=proxy.proc)
        return port

    def test_weights_split_traffic_exactly_per_cycle(self):
        a, b, c = self.backend("heavy"), self.backend("light"), self.backend("drained")
        port = self.start(
            f"    s:\n      loadBalancer:\n        servers:\n"
            f"          - url: \"{a.url}\"\n            weight: 3\n"
            f"          - url: \"{b.url}\"\n            weight: 1\n"
            f"          - url: \"{c.url}\"\n            weight: 0\n",
            "    r:\n      rule: \"PathPrefix(`/`)\"\n      service: s\n")
        seen = [get(port, "/")[2] for _ in range(40)]
        self.assertEqual(seen.count(b"heavy"), 30)
        self.assertEqual(seen.count(b"light"), 10)
        self.assertEqual(seen.count(b"drained"), 0)
        # Smooth: the light server is never starved for more than three picks in a row.
        self.assertNotIn([b"heavy"] * 4, [seen[i:i + 4] for i in range(len(seen) - 3)])

    def test_all_zero_weights_answer_503(self):
        a = self.backend("nobody")
        port = self.start(f"    s:\n      loadBalancer:\n        servers:\n          - url: \"{a.url}\"\n"
                          f"            weight: 0\n",
                          "    r:\n      rule: \"PathPrefix(`/`)\"\n      service: s\n")
        self.assertEqual(get(port, "/")[0], 503)

    def test_dead_server_costs_no_client_error(self):
        live = self.backend("alive")
        dead = f"http://127.0.0.1:{free_port()}"
        port = self.start(f"    s:\n      loadBalancer:\n        servers:\n          - url: \"{dead}\"\n"
                          f"          - url: \"{live.url}\"\n",
                          "    r:\n      rule: \"PathPrefix(`/`)\"\n      service: s\n")
        results = [get(port, "/") for _ in range(10)]
        self.assertEqual([(s, b) for s, _, b in results], [(200, b"alive")] * 10)

    def test_mirroring_copies_percent_of_requests_with_body(self):
        live = self.backend("main")
        mirror = self.recorder()
        port = self.start(
            f"    shadowed:\n      mirroring:\n        service: live\n        maxBodySize: 100\n"
            f"        mirrors: [{{name: copy, percent: 50}}]\n"
            f"    live: {{loadBalancer: {{servers: [{{url: \"{live.url}\"}}]}}}}\n"
            f"    copy: {{loadBalancer: {{servers: [{{url: \"{mirror.url}\"}}]}}}}\n",
            "    r:\n      rule: \"PathPrefix(`/`)\"\n      service: shadowed\n")
        answers = [get(port, f"/sink?n={i}", method="POST", body=b"x" * (10 + i)) for i in range(10)]
        # The client only ever sees the main service's answers.
        self.assertEqual([(s, h["x-backend"], b) for s, h, b in answers],
                         [(200, "main", str(10 + i).encode()) for i in range(10)])
        wait_until(lambda: len(mirror.requests) >= 5, timeout=5)
        self.assertEqual(len(mirror.requests), 5, "exactly 50% of the requests are mirrored")
        for method, path, headers, body in mirror.requests:
            n = int(path.split("=")[1])
            self.assertEqual((method, body), ("POST", b"x" * (10 + n)))
            self.assertEqual(headers["X-Forwarded-For"], "127.0.0.1")
        # A body over maxBodySize is not mirrored at all.
        before = len(mirror.requests)
        for _ in range(4):
            self.assertEqual(get(port, "/sink", method="POST", body=b"y" * 200)[2], b"200")
        self.assertEqual(get(port, "/done")[0], 200)
        wait_until(lambda: len(mirror.requests) > before, timeout=5)
        self.assertEqual([r[1] for r in mirror.requests[before:]], ["/done"])

    def test_mirror_body_false_mirrors_requests_without_their_body(self):
        # mirroring.mirrorBody: false: each mirrored request goes without its body, even one too
        # large to be buffered; the main service still gets the bodies.
        live = self.backend("main")
        mirror = self.recorder()
        port = self.start(
            f"    shadowed:\n      mirroring:\n        service: live\n        mirrorBody: false\n"
            f"        mirrors: [{{name: copy, percent: 100}}]\n"
            f"    live: {{loadBalancer: {{servers: [{{url: \"{live.url}\"}}]}}}}\n"
            f"    copy: {{loadBalancer: {{servers: [{{url: \"{mirror.url}\"}}]}}}}\n",
            "    r:\n      rule: \"PathPrefix(`/`)\"\n      service: shadowed\n")
        for n in (5, 300_000):
            self.assertEqual(get(port, f"/sink?n={n}", method="POST", body=b"z" * n)[::2], (200, str(n).encode()))
        wait_until(lambda: len(mirror.requests) >= 2, timeout=5)
        self.assertEqual([(m, p, b) for m, p, _, b in mirror.requests],
                         [("POST", "/sink?n=5", b""), ("POST", "/sink?n=300000", b"")])
        for _, _, headers, _ in mirror.requests:
            self.assertIn(headers.get("Content-Length"), (None, "0"), headers)
            self.assertNotIn("Transfer-Encoding", headers)

    def test_retry_middleware_waits_for_a_server_that_comes_up(self):
        port_b = free_port()
        port = self.start(
            f"    s: {{loadBalancer: {{servers: [{{url: \"http://127.0.0.1:{port_b}\"}}]}}}}\n",
            "    r:\n      rule: \"PathPrefix(`/retry`)\"\n      service: s\n      middlewares: [again]\n"
            "    plain:\n      rule: \"PathPrefix(`/plain`)\"\n      service: s\n"
            "  middlewares:\n    again: {retry: {attempts: 6, initialInterval: 100ms}}\n")
        self.assertEqual(get(port, "/plain")[0], 502, "without retry a dead server is an error at once")
        answer = {}
        t = threading.Thread(target=lambda: answer.update(r=get(port, "/retry")))
        t.start()
        time.sleep(0.25)  # tries at 0, 100 and 300 ms (backoff doubles): the server is up for a later one
        late = Backend("late", port=port_b)
        self._procs.append(late)
        t.join(10)
        status, headers, _ = answer["r"]
        self.assertEqual((status, headers.get("x-backend")), (200, "late"))


if __name__ == "__main__":
    main()
