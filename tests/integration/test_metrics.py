"""Prometheus metrics: berth's /metrics passes `promtool check metrics`, a real Prometheus server on
loopback scrapes it and its query API returns berth's request counter with the count sent, and the
families carry what a Grafana dashboard reads (codes, methods, bytes, durations, TLS, retries,
server health, reloads) under the berth_ prefix or, with `prefix: traefik`, Traefik's names."""
import os
import shutil
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
import json
import http.client

from harness import (BerthTestCase, free_port, get, main, parse_exposition, scrape_until, stop, value,
                     wait_for_port, wait_until)

IN_CI = os.environ.get("CI") == "true"


class Metrics(BerthTestCase):
    def start(self, dynamic, prometheus="", entry_points=("web", "traefik"), extra=""):
        ports = {name: free_port() for name in entry_points}
        eps = "".join(f"  {n}:\n    address: \"127.0.0.1:{p}\"\n" for n, p in ports.items())
        static = (f"entryPoints:\n{eps}providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\n"
                  f"    watch: true\nworkers: 2\nlog:\n  level: DEBUG\nping: {{}}\n"
                  f"metrics:\n  prometheus:\n{prometheus or '    addRoutersLabels: true'}\n{extra}")
        proxy = self.berth(static_yaml=static, dynamic_yaml=dynamic, wait=False)
        proxy.ports = ports
        for p in ports.values():
            wait_for_port(p, proc=proxy.proc)
        return proxy, ports

    def scrape(self, port):
        status, headers, body = get(port, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain; version=0.0.4"), headers)
        return body.decode()

    def promtool(self, text):
        r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())

    def test_exposition_passes_promtool_and_counts_what_was_sent(self):
        b = self.backend("b")
        dynamic = (f"http:\n  routers:\n    shop:\n      rule: \"PathPrefix(`/`)\"\n      service: shop\n"
                   f"  services:\n    shop:\n      loadBalancer:\n        servers: [{{url: \"{b.url}\"}}]\n")
        proxy, ports = self.start(dynamic)
        web = ports["web"]
        for _ in range(5):
            self.assertEqual(get(web, "/size/100")[0], 200)
        self.assertEqual(get(web, "/status/503")[0], 503)
        self.assertEqual(get(web, "/sink", method="POST", body=b"y" * 1000)[0], 200)
        self.assertEqual(get(web, "/", method="HEAD")[0], 200)
        self.assertEqual(get(ports["traefik"], "/ping")[0], 200)
        text = scrape_until(ports["traefik"],
                            lambda s: value(s, "berth_entrypoint_requests_total", entrypoint="web") == 8)
        self.promtool(text)
        s = parse_exposition(text)
        self.assertEqual(value(s, "berth_entrypoint_requests_total", entrypoint="web", code="200", method="GET",
                               protocol="http"), 5, text)
        self.assertEqual(value(s, "berth_entrypoint_requests_total", entrypoint="web", code="503"), 1)
        self.assertEqual(value(s, "berth_entrypoint_requests_total", entrypoint="web", method="POST"), 1)
        self.assertEqual(value(s, "berth_entrypoint_requests_total", entrypoint="web", method="HEAD"), 1)
        self.assertEqual(value(s, "berth_router_requests_total", router="shop@file", service="shop@file"), 8)
        self.assertEqual(value(s, "berth_service_requests_total", service="shop@file", code="200"), 7)
        # Body bytes: 5 x 100 bytes out; 1000 bytes in.
        self.assertEqual(value(s, "berth_entrypoint_requests_bytes_total", entrypoint="web", method="POST"), 1000)
        self.assertEqual(value(s, "berth_entrypoint_responses_bytes_total", entrypoint="web", code="200",
                               method="GET"), 500)
        self.assertEqual(value(s, "berth_entrypoint_request_duration_seconds_count", entrypoint="web"), 8)
        self.assertEqual(value(s, "berth_entrypoint_request_duration_seconds_bucket", entrypoint="web", code="200",
                               method="GET", le="+Inf"), 5)
        # berth's own answers (ping, metrics) are not counted, as Traefik's addInternals: false.
        self.assertEqual(value(s, "berth_entrypoint_requests_total", entrypoint="traefik"), 0)
        # The scrape's own connection (the ping's closes as its answer ends: wait for that).
        wait_until(lambda: value(parse_exposition(self.scrape(ports["traefik"])), "berth_open_connections",
                                 entrypoint="traefik", protocol="HTTP") == 1, timeout=5)
        self.assertGreaterEqual(value(s, "berth_config_reloads_total"), 1)
        self.assertGreater(value(s, "berth_config_last_reload_success"), time.time() - 600)
        self.assertEqual(value(s, "berth_snapshot_swaps_total"), 2 * value(s, "berth_config_reloads_total"))

    def test_real_prometheus_scrapes_the_request_counter(self):
        if not shutil.which("prometheus"):
            if IN_CI:
                self.fail("prometheus is not installed (scripts/deps.sh test)")
            self.skipTest("prometheus is not installed")
        b = self.backend("b")
        dynamic = (f"http:\n  routers:\n    app:\n      rule: \"PathPrefix(`/`)\"\n      service: app\n"
                   f"  services:\n    app:\n      loadBalancer:\n        servers: [{{url: \"{b.url}\"}}]\n")
        proxy, ports = self.start(dynamic)
        for _ in range(17):
            self.assertEqual(get(ports["web"], "/")[0], 200)
        prom_port = free_port()
        conf = os.path.join(self.tmp, "prom.yml")
        with open(conf, "w") as f:
            f.write("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: berth\n"
                    f"    static_configs: [{{targets: [\"127.0.0.1:{ports['traefik']}\"]}}]\n")
        log = open(os.path.join(self.tmp, "prom.log"), "w")
        prom = subprocess.Popen(["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={self.tmp}/pdata",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(prom_port, timeout=30, proc=prom)

            def ready():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/-/ready", timeout=5) as r:
                        return r.status == 200
                except OSError:
                    return False

            wait_until(ready, timeout=30, step=0.1)

            def query(q):
                url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.load(r)["data"]["result"]

            q = 'sum(berth_entrypoint_requests_total{job="berth",entrypoint="web",code="200"})'
            # The first scrape comes about 6 s after Prometheus starts (its discovery interval).
            wait_until(lambda: query(q), timeout=30, step=0.5)
            self.assertEqual(float(query(q)[0]["value"][1]), 17)
            self.assertEqual(float(query('up{job="berth"}')[0]["value"][1]), 1)
            # Later requests show up in a later scrape.
            for _ in range(3):
                get(ports["web"], "/")
            wait_until(lambda: float(query(q)[0]["value"][1]) == 20, timeout=15, step=0.5)
            # A histogram quantile evaluates over berth's buckets.
            hq = query('histogram_quantile(0.5, sum by (le) (berth_service_request_duration_seconds_bucket))')
            self.assertTrue(hq and float(hq[0]["value"][1]) <= 0.1, hq)
        finally:
            stop(prom)
            log.close()

    def test_traefik_prefix_gives_traefik_names(self):
        b = self.backend("b")
        dynamic = (f"http:\n  routers:\n    r:\n      rule: \"PathPrefix(`/`)\"\n      service: s\n"
                   f"  services:\n    s:\n      loadBalancer:\n        servers: [{{url: \"{b.url}\"}}]\n")
        proxy, ports = self.start(dynamic, prometheus="    prefix: traefik\n    buckets: [0.01, 0.5]\n")
        get(ports["web"], "/")
        text = scrape_until(ports["traefik"],
                            lambda s: value(s, "traefik_entrypoint_requests_total", entrypoint="web") == 1)
        self.promtool(text)
        s = parse_exposition(text)
        self.assertEqual(value(s, "traefik_entrypoint_requests_total", entrypoint="web", code="200"), 1)
        self.assertEqual(value(s, "traefik_service_requests_total", service="s@file"), 1)
        self.assertIn('traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",'
                      'service="s@file",le="0.01"}', text)
        self.assertNotIn("berth_", text)
        # addRoutersLabels defaults to false, as in Traefik.
        self.assertNotIn("traefik_router_requests_total{", text)

    def test_tls_retries_health_and_reloads(self):
        good, dead_port = self.backend("good"), free_port()
        dynamic = (f"http:\n  routers:\n    r:\n      rule: \"PathPrefix(`/`)\"\n      service: s\n"
                   f"      middlewares: [again]\n      tls: {{}}\n"
                   f"  middlewares:\n    again:\n      retry: {{attempts: 3}}\n"
                   f"  services:\n    s:\n      loadBalancer:\n"
                   f"        healthCheck: {{path: /, interval: 100ms, timeout: 500ms}}\n"
                   f"        servers: [{{url: \"http://127.0.0.1:{dead_port}\"}}, {{url: \"{good.url}\"}}]\n")
        proxy, ports = self.start(dynamic, entry_points=("websecure", "traefik"))
        wait_until(lambda: "is unhealthy" in proxy.log_text(), timeout=5)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        for _ in range(4):
            c = http.client.HTTPSConnection("127.0.0.1", ports["websecure"], context=ctx, timeout=10)
            c.request("GET", "/")
            self.assertEqual(c.getresponse().status, 200)
            c.close()
        s = parse_exposition(self.scrape(ports["traefik"]))
        self.assertEqual(value(s, "berth_entrypoint_requests_tls_total", entrypoint="websecure", tls_version="1.3"), 4)
        self.assertEqual(value(s, "berth_tls_handshakes_total", entrypoint="websecure", result="ok"), 4)
        self.assertEqual(value(s, "berth_service_server_up", service="s@file", url=f"http://127.0.0.1:{dead_port}"), 0)
        self.assertEqual(value(s, "berth_service_server_up", service="s@file", url=good.url), 1)
        # A reload counts, and a failed handshake counts as failed.
        reloads = value(s, "berth_config_reloads_total")
        proxy.write_dynamic(dynamic.replace("attempts: 3", "attempts: 2"))
        wait_until(lambda: value(parse_exposition(self.scrape(ports["traefik"])), "berth_config_reloads_total")
                   == reloads + 1, timeout=5)
        bad = ssl.create_default_context()  # verifies: berth's generated certificate fails it
        c = http.client.HTTPSConnection("127.0.0.1", ports["websecure"], context=bad, timeout=10)
        with self.assertRaises(ssl.SSLError):
            c.request("GET", "/")
        c.close()
        wait_until(lambda: value(parse_exposition(self.scrape(ports["traefik"])), "berth_tls_handshakes_total",
                                 entrypoint="websecure", result="failed") == 1, timeout=5)

    def test_retries_are_counted(self):
        good = self.backend("good")
        dead_port = free_port()
        dynamic = (f"http:\n  routers:\n    r:\n      rule: \"PathPrefix(`/`)\"\n      service: s\n"
                   f"      middlewares: [again]\n"
                   f"  middlewares:\n    again:\n      retry: {{attempts: 2}}\n"
                   f"  services:\n    s:\n      loadBalancer:\n"
                   f"        servers: [{{url: \"http://127.0.0.1:{dead_port}\"}}, {{url: \"{good.url}\"}}]\n")
        proxy, ports = self.start(dynamic)
        for _ in range(6):
            self.assertEqual(get(ports["web"], "/")[0], 200)
        s = parse_exposition(self.scrape(ports["traefik"]))
        # Each worker's round robin sends every other request it serves to the dead server first.
        retries = value(s, "berth_service_retries_total", service="s@file")
        self.assertGreaterEqual(retries, 1)
        self.assertLessEqual(retries, 6)
        self.assertEqual(value(s, "berth_service_requests_total", service="s@file", code="200"), 6)

    def test_manual_routing_serves_metrics_only_through_a_router(self):
        b = self.backend("b")
        dynamic = (f"http:\n  routers:\n    app:\n      rule: \"PathPrefix(`/`)\"\n      service: app\n"
                   f"    metrics:\n      rule: \"Path(`/internal/metrics`)\"\n      service: prometheus@internal\n"
                   f"  services:\n    app:\n      loadBalancer:\n        servers: [{{url: \"{b.url}\"}}]\n")
        proxy, ports = self.start(dynamic, prometheus="    manualRouting: true\n    addRoutersLabels: true\n")
        self.assertEqual(get(ports["web"], "/metrics")[2], b"b")  # not answered by berth: the app's route
        self.assertEqual(get(ports["traefik"], "/metrics")[0], 404)
        status, headers, body = get(ports["web"], "/internal/metrics")
        self.assertEqual(status, 200)
        self.promtool(body.decode())
        s = parse_exposition(body.decode())
        self.assertEqual(value(s, "berth_router_requests_total", router="app@file", code="200"), 1)

    def test_bad_metrics_config_is_refused_with_its_place(self):
        static = os.path.join(self.tmp, "bad.yml")
        with open(static, "w") as f:
            f.write("entryPoints:\n  web:\n    address: 127.0.0.1:1\nmetrics:\n  prometheus:\n"
                    "    buckets: [0.5, 0.1]\n    prefix: \"9bad\"\n    entryPoint: nowhere\n")
        from harness import BERTH
        r = subprocess.run([BERTH, "check", f"--configFile={static}"], capture_output=True, timeout=30, text=True)
        self.assertNotEqual(r.returncode, 0)
        out = r.stdout + r.stderr
        self.assertIn("bad.yml:6", out)
        self.assertIn("buckets", out)
        self.assertIn("bad.yml:7", out)
        self.assertIn('"nowhere" is not a defined entry point', out)


if __name__ == "__main__":
    main()
