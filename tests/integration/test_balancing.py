"""Load balancing through berth: smooth weighted round robin over servers[].weight, weight 0 taking
no traffic, and a failed dial retried on the next server so the client sees no error."""
from harness import BerthTestCase, free_port, get, main, wait_for_port


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


if __name__ == "__main__":
    main()
