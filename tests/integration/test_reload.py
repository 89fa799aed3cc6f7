"""Hot reload from the file provider: changes apply within 100 ms, bad files keep the last good
config, a bad router disables only itself, and nothing in flight or idle is dropped."""
import os
import re
import subprocess
import threading
import time

from harness import BERTH, Berth, BerthTestCase, RawClient, free_port, get, main, router_yaml, wait_for_port, wait_until


class Reload(BerthTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.backend("alpha")
        self.b = self.backend("beta")
        self.proxy = self.berth(dynamic_yaml=router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [self.a.url]}))
        self.port = self.proxy.port

    def test_edit_applies_within_100ms(self):
        self.assertEqual(get(self.port, "/")[2], b"alpha")
        samples = []
        for i, (target, name) in enumerate([(self.b, b"beta"), (self.a, b"alpha")] * 3):
            t0 = time.time()
            self.proxy.write_dynamic(router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [target.url]}))
            wait_until(lambda: get(self.port, "/")[2] == name, step=0.002)
            samples.append(time.time() - t0)
        print(f"reload latencies (s): {[round(s, 4) for s in samples]}")
        self.assertLess(sorted(samples)[len(samples) // 2], 0.1)

    def test_broken_file_keeps_last_good_config_and_names_the_line(self):
        self.proxy.write_dynamic("http:\n  routers:\n    r: [unclosed\n")
        wait_until(lambda: "keeping the last good configuration" in self.proxy.log_text())
        self.assertRegex(self.proxy.log_text(), r"dynamic\.yml:\d+:\d+")
        self.assertEqual(get(self.port, "/")[2], b"alpha")

    def test_invalid_router_disables_only_itself(self):
        self.proxy.write_dynamic(router_yaml(
            {"good": ("Host(`good.test`)", "s2"), "bad": ("Host(`bad.test`) && Pathh(`/`)", "s2"),
             "orphan": ("Host(`orphan.test`)", "missing")},
            {"s2": [self.b.url]}))
        wait_until(lambda: get(self.port, "/", host="good.test")[2] == b"beta")
        self.assertEqual(get(self.port, "/", host="bad.test")[0], 404)
        log = self.proxy.log_text()
        self.assertRegex(log, r"dynamic\.yml:\d+:\d+: router bad@file disabled: .*column \d+.*Pathh")
        self.assertIn('router orphan@file disabled: service "missing@file" does not exist', log)

    def test_directory_of_files_is_one_config_as_in_traefik(self):
        # providers.file.directory: every .yml/.yaml file of the tree, each directory's entries in
        # name order; a name defined again in a later file keeps its first definition; a new file,
        # in a subdirectory too, applies while watching.
        d = os.path.join(self.tmp, "conf")
        os.makedirs(os.path.join(d, "b-more"))

        def put(rel, text):
            with open(os.path.join(d, rel + ".tmp"), "w") as f:
                f.write(text)
            os.replace(os.path.join(d, rel + ".tmp"), os.path.join(d, rel))

        put("a-routers.yml", "http:\n  routers:\n    r:\n      rule: \"Host(`alpha.test`)\"\n      service: s\n")
        put("b-more/services.YAML", f"http:\n  services:\n    s:\n      loadBalancer:\n"
                                     f"        servers: [{{url: \"{self.a.url}\"}}]\n"
                                     f"    t:\n      loadBalancer:\n        servers: [{{url: \"{self.b.url}\"}}]\n")
        put("c-again.yml", "http:\n  routers:\n    r:\n      rule: \"Host(`again.test`)\"\n      service: t\n")
        put("notes.txt", "not config")
        put("old.toml", "[http.routers.x]\n")
        port = free_port()
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n"
                  f"providers:\n  file:\n    directory: {d}\n    watch: true\nlog:\n  level: DEBUG\n")
        own = os.path.join(self.tmp, "directory-mode")  # its own berth.yml and log, beside setUp's berth
        os.makedirs(own)
        proxy = Berth(own, static_yaml=static, entry_points=(), wait=False)
        self._procs.append(proxy)
        wait_for_port(port, proc=proxy.proc)
        wait_until(lambda: "configuration generation 1 applied" in proxy.log_text())
        self.assertEqual(get(port, "/", host="alpha.test")[2], b"alpha")  # a service from a subdirectory
        self.assertEqual(get(port, "/", host="again.test")[0], 404)       # the later `r` is not used
        log = proxy.log_text()
        self.assertRegex(log, r"c-again\.yml:\d+:\d+: router r@file is defined already in \S*a-routers\.yml:\d+")
        self.assertRegex(log, r"old\.toml: TOML is not supported")
        # berth check says the same, and fails.
        out = subprocess.run([BERTH, "check", f"--configFile={proxy.static_path}"], capture_output=True,
                             text=True, timeout=20)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("router r@file is defined already", out.stdout + out.stderr)
        # A new file in a new subdirectory: watched too.
        os.makedirs(os.path.join(d, "d-new"))
        put("d-new/extra.yml", "http:\n  routers:\n    extra:\n      rule: \"Host(`extra.test`)\"\n      service: t\n")
        wait_until(lambda: get(port, "/", host="extra.test")[2] == b"beta")

    def test_in_flight_and_idle_connections_survive_reload(self):
        idle = RawClient(self.port)
        idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(idle.read_response()[2], b"alpha")
        result = {}

        def slow():
            result["slow"] = get(self.port, "/delay/800")

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)
        self.proxy.write_dynamic(router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [self.b.url]}))
        wait_until(lambda: get(self.port, "/")[2] == b"beta")
        t.join(5)
        self.assertEqual(result["slow"][:3:2], (200, b"delayed"))
        # The idle keep-alive connection is still open and now routes with the new config.
        idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(idle.read_response()[2], b"beta")
        idle.close()

    def test_reload_under_load_fails_no_request(self):
        stop = threading.Event()
        reloads = [0]

        def flip():
            targets = [self.b, self.a]
            while not stop.is_set():
                target = targets[reloads[0] % 2]
                self.proxy.write_dynamic(router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [target.url]}))
                reloads[0] += 1
                time.sleep(0.1)

        t = threading.Thread(target=flip)
        t.start()
        try:
            out = subprocess.run(["wrk", "-t2", "-c32", "-d4s", "--timeout", "2s",
                                  f"http://127.0.0.1:{self.port}/size/512"],
                                 capture_output=True, text=True, timeout=30).stdout
        finally:
            stop.set()
            t.join()
        print(out)
        total = int(re.search(r"(\d+) requests in", out).group(1))
        self.assertGreater(total, 1000)
        self.assertGreater(reloads[0], 20)
        self.assertNotIn("Non-2xx", out)
        self.assertNotIn("Socket errors", out)
        gens = re.findall(r"configuration generation (\d+) applied", self.proxy.log_text())
        self.assertGreater(int(gens[-1]), 20)


if __name__ == "__main__":
    main()
