"""berth's Docker provider (`providers.docker`) against a real, private dockerd, with Traefik v3's
documented behaviour (shared/reference/traefik-compat.md section 2): routers, services and
middlewares from labels (traefik. and berth. prefixes, keys in any case), default rules from
normalized names, exposedByDefault, constraints, invalid labels (each problem logged once), health
gating, compose names and replicas, containers stopping (their own stop signal, other signals, a
stop signal they ignore), paused containers, stopped ones kept by allowNonRunning, dockerd
restarting, providersThrottleDuration and the first listing, rollovers and scaling under load, and
the time from a docker event to the route changing.

Containers run the test image (docker_harness) with `--init --network host`; their backends listen
on 127.0.0.1:<free port> and answer their NAME, so each check reads which container answered.
One dockerd and one image serve the module; containers are removed after each test.

Beyond Traefik (berth's own behaviour, asserted on purpose):
- host-network containers report no NetworkSettings.Ports; berth also reads Config.ExposedPorts
  (Traefik v3 would log "port is missing" for test_lowest_exposed_port_without_a_port_label);
- `berth.` labels work like `traefik.` labels;
- a container leaves rotation when it is told to stop (the `kill` event), not when it dies, and a
  service whose last server is stopping answers 503 (Traefik reacts on `die`, traefik#11252). Only
  the container's stop signal (Config.StopSignal, SIGTERM by default) or SIGKILL counts; a
  container still running the same run StopTimeout + 5 s later is back in rotation."""
import json
import os
import re
import socket
import subprocess
import ssl
import tempfile
import threading
import time
import unittest

import docker_harness
import harness
from docker_harness import Dockerd, backend_command, health_args, wait_serving
from harness import (BerthTestCase, RawClient, Traffic, free_port, get, main, scrape_until, value, wait_for_port,
                     wait_until)

DOCKERD = None          # shared by the module (setUpModule)
LISTENERS_BEFORE = set()


def setUpModule():
    global DOCKERD, LISTENERS_BEFORE
    reason = docker_harness.unavailable()
    if reason and os.environ.get("CI"):
        raise RuntimeError(f"docker tests cannot run in CI: {reason}")  # scripts/deps.sh test installs all
    if reason:
        raise unittest.SkipTest(reason)
    LISTENERS_BEFORE = docker_harness.listeners_outside_loopback()
    DOCKERD = Dockerd()


def tearDownModule():
    if DOCKERD:
        DOCKERD.stop()


def labels_for(router, rule, port, service=None, prefix="traefik", **more):
    """Labels of a router with `rule` and a service (named `service`, default the router's) on
    `port`; `more` adds raw label pairs (keys with '__' for '.')."""
    service = service or router
    out = {f"{prefix}.http.routers.{router}.rule": rule,
           f"{prefix}.http.services.{service}.loadbalancer.server.port": str(port)}
    for k, v in more.items():
        out[k.replace("__", ".")] = v
    return out


def compose_labels(project, service):
    return {"com.docker.compose.project": project, "com.docker.compose.service": service}


def https_get(port, sni, path="/", host=None, timeout=5.0):
    """One HTTPS/1.1 request with SNI `sni` (any certificate accepted): (status, headers, body)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c = RawClient.__new__(RawClient)
    c.sock, c.buf = ctx.wrap_socket(raw, server_hostname=sni), b""
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: {host or sni}\r\nConnection: close\r\n\r\n")
        return c.read_response()
    finally:
        c.close()


class DockerHarness(unittest.TestCase):
    """The harness itself (no berth): these pass without the Docker provider."""

    def tearDown(self):
        DOCKERD.rm_all()

    def test_labelled_container_serves_on_loopback_and_reports_health(self):
        port = free_port()
        DOCKERD.run_container("probe", backend_command(("probe", port)),
                              labels={"traefik.enable": "true", "traefik.http.routers.probe.rule": "Host(`p.test`)"},
                              extra=health_args(port))
        wait_serving(port)
        self.assertEqual(get(port, "/")[::2], (200, b"probe"))
        info = DOCKERD.inspect("probe")
        self.assertEqual(info["HostConfig"]["NetworkMode"], "host")
        self.assertTrue(info["HostConfig"]["Init"])
        self.assertEqual(info["Config"]["Labels"]["traefik.http.routers.probe.rule"], "Host(`p.test`)")
        self.assertEqual(DOCKERD.health("probe"), "starting")
        DOCKERD.run("exec", "probe", "/bin/busybox", "touch", "/tmp/ready")
        DOCKERD.wait_health("probe", "healthy", timeout=10)
        DOCKERD.run("exec", "probe", "/bin/busybox", "rm", "/tmp/ready")
        DOCKERD.wait_health("probe", "unhealthy", timeout=10)
        self.assertEqual(docker_harness.listeners_outside_loopback() - LISTENERS_BEFORE, set())

    def test_compose_v1_project_and_service_labels(self):
        port = free_port()
        with open(os.path.join(self._tmpdir(), "compose.yml"), "w") as f:
            f.write(compose_file("selftest", port))
        DOCKERD.compose("selftest", f.name, "up", "-d")
        wait_serving(port)
        self.assertEqual(get(port, "/")[::2], (200, b"compose-web"))
        labels = DOCKERD.inspect("selftest_web_1")["Config"]["Labels"]
        self.assertEqual((labels["com.docker.compose.project"], labels["com.docker.compose.service"]),
                         ("selftest", "web"))
        DOCKERD.compose("selftest", f.name, "down")
        self.assertEqual(DOCKERD.run("ps", "-aq").stdout.strip(), "")

    def test_container_ignoring_sigterm_serves_through_its_stop_window(self):
        port = free_port()
        DOCKERD.run_container("lingers", backend_command(("lingers", port), ignore_term=True))
        wait_serving(port)
        stopper = threading.Thread(target=DOCKERD.run, args=("stop", "-t", "2", "lingers"))
        t0 = time.time()
        stopper.start()
        time.sleep(1.0)
        self.assertEqual(get(port, "/")[::2], (200, b"lingers"))
        stopper.join(15)
        self.assertGreater(time.time() - t0, 1.8)
        self.assertFalse(DOCKERD.is_container_running("lingers"))

    def _tmpdir(self):
        d = tempfile.TemporaryDirectory(prefix="berth-it.")
        self.addCleanup(d.cleanup)
        return d.name


def compose_file(project, port, labels=None):
    labels = labels if labels is not None else {}
    text = (f'version: "3.7"\nservices:\n  web:\n    image: {docker_harness.IMAGE}\n    network_mode: host\n'
            f'    init: true\n    command: ["/bin/backend", "--listen", "127.0.0.1:{port}", "--name", "compose-web"]\n')
    if labels:
        text += "    labels:\n" + "".join(f"      {k}: \"{v}\"\n" for k, v in labels.items())
    return text


class DockerProvider(BerthTestCase):
    def setUp(self):
        super().setUp()
        self._loads = []

    def tearDown(self):
        for load in self._loads:
            load.stop()
        try:
            super().tearDown()
        finally:
            DOCKERD.rm_all()

    # ------------------------------------------------------------ helpers

    def start(self, docker=None, dockerd=None, file_dynamic=None, entry_points=("web",), providers=None, extra=""):
        """berth with entry points on fresh loopback ports and `providers.docker` pointing at the
        shared dockerd (or `dockerd`), with the options in `docker` (YAML scalars, written as is);
        `file_dynamic`: also the file provider with this dynamic config; `providers`: more keys
        under `providers` (providersThrottleDuration); `extra`: more static YAML."""
        d = dockerd or DOCKERD
        ports = {n: free_port() for n in entry_points}
        static = "entryPoints:\n" + "".join(f"  {n}:\n    address: \"127.0.0.1:{p}\"\n" for n, p in ports.items())
        static += f"providers:\n  docker:\n    endpoint: \"{d.host}\"\n"
        for k, v in (docker or {}).items():
            static += f"    {k}: {v}\n"
        if file_dynamic is not None:
            static += f"  file:\n    filename: {self.tmp}/dynamic.yml\n    watch: true\n"
        for k, v in (providers or {}).items():
            static += f"  {k}: {v}\n"
        static += "workers: 2\nlog:\n  level: DEBUG\n" + extra
        proxy = self.berth(static_yaml=static, dynamic_yaml=file_dynamic or "", wait=False)
        proxy.ports = ports
        try:
            for p in ports.values():
                wait_for_port(p, proc=proxy.proc)
        except RuntimeError as e:
            self.fail(f"berth did not start: {e}\n--- berth log ---\n{proxy.log_text()[-3000:]}")
        self.proxy = proxy
        return proxy

    def container(self, name, port=None, labels=None, health=False, ready=False, ignore_term=False,
                  backends=None, extra=(), wait=True, create_only=False, dockerd=None, ignore=()):
        """A test-image container on the host network running backend NAME on 127.0.0.1:port
        (or several `backends` [(name, port)]); returns the (first) port. `ignore`: signal names
        its shell ignores (see backend_command)."""
        d = dockerd or DOCKERD
        port = port or free_port()
        backends = backends or [(name, port)]
        extra = list(extra) + (health_args(backends[0][1]) if health else [])
        d.run_container(name, backend_command(*backends, ignore_term=ignore_term, ready=ready, ignore=ignore),
                        labels, extra, create_only=create_only)
        if wait and not create_only:
            for _, p in backends:
                wait_serving(p)
        return port

    def ask(self, host, path="/", tls=False):
        """(status, headers, body) through berth, or (0, {}, error) if the exchange failed."""
        try:
            if tls:
                return https_get(self.proxy.port, host, path)
            return get(self.proxy.port, path, host=host, timeout=5)
        except Exception as e:  # noqa: BLE001
            return 0, {}, repr(e).encode()

    def wait_answer(self, host, body=None, status=200, timeout=10.0, path="/", tls=False):
        """Polls until berth answers `status` (and `body`, if given) for `host`; returns the seconds."""
        last = [None]

        def ok():
            last[0] = self.ask(host, path, tls)
            return last[0][0] == status and (body is None or last[0][2] == body)
        try:
            return wait_until(ok, timeout=timeout, step=0.02)
        except AssertionError:
            self.fail(f"{host}{path}: wanted {status} {body!r} within {timeout}s, last answer "
                      f"{last[0][0]} {last[0][2][:200]!r}\n--- berth log (tail) ---\n{self.log_tail()}")

    def assert_stays(self, host, status, seconds=1.0, path="/"):
        """Every answer for `host` is `status` for `seconds`."""
        t0 = time.time()
        while time.time() - t0 < seconds:
            answer = self.ask(host, path)
            self.assertEqual(answer[0], status, f"{host}: {answer[0]} {answer[2][:200]!r}")
            time.sleep(0.05)

    def answers(self, host, n=10):
        return [self.ask(host)[2] for _ in range(n)]

    def wait_only(self, host, names, timeout=5.0, n=10):
        """Polls until `n` answers in a row for `host` all come from `names`; returns the seconds."""
        names = set(names)
        try:
            return wait_until(lambda: set(self.answers(host, n)) <= names, timeout=timeout, step=0.01)
        except AssertionError:
            self.fail(f"{host}: answers {self.answers(host, n)} not only from {names}\n{self.log_tail()}")

    def wait_all(self, host, names, timeout=10.0, n=12):
        """Polls until `n` answers in a row for `host` come from exactly `names`."""
        names = set(names)
        try:
            return wait_until(lambda: set(self.answers(host, n)) == names, timeout=timeout, step=0.02)
        except AssertionError:
            self.fail(f"{host}: answers {self.answers(host, n)} are not {names}\n{self.log_tail()}")

    def log_tail(self, n=3000):
        try:
            return self.proxy.log_text()[-n:]
        except Exception:  # noqa: BLE001
            return ""

    def assert_logged(self, *parts, timeout=5.0):
        """Some line of berth's log contains every one of `parts`."""
        def found():
            return any(all(p in line for p in parts) for line in self.proxy.log_text().splitlines())
        try:
            wait_until(found, timeout=timeout, step=0.05)
        except AssertionError:
            self.fail(f"no log line contains all of {parts}\n--- berth log (tail) ---\n{self.log_tail()}")

    def load(self, host):
        load = Traffic(self.proxy.port, host, h2=False, pause=0.003).start()
        self._loads.append(load)
        return load

    def assert_no_failures(self, load):
        load.stop()
        records = load.snapshot()
        failed = [r for r in records if r[2] != 200]
        print(f"{len(records)} requests, {len(failed)} failed {load.failures[:3]}")
        self.assertGreater(len(records), 100)
        self.assertEqual(failed[:5], [], f"{len(failed)} of {len(records)} requests failed")

    # ------------------------------------------------------------ labels -> routers, services

    def test_router_and_service_from_labels(self):
        self.start()
        port = free_port()
        self.container("labelled", port, labels=labels_for("labelled", "Host(`labelled.test`)", port,
                                                          traefik__enable="true"))
        self.wait_answer("labelled.test", b"labelled")
        self.assertEqual(self.ask("other.test")[0], 404)
        self.assertEqual(self.ask("labelled.test", "/echo")[1].get("x-backend"), "labelled")

    def test_metrics_count_docker_events_and_container_services(self):
        self.start(extra="metrics:\n  prometheus:\n    entryPoint: web\n")
        port = free_port()
        self.container("counted", port, labels=labels_for("counted", "Host(`counted.test`)", port))
        self.wait_answer("counted.test", b"counted")
        for _ in range(3):
            self.assertEqual(self.ask("counted.test")[0], 200)
        metrics = scrape_until(self.proxy.port, lambda s: value(s, "berth_service_requests_total", code="200",
                                                                 service="counted@docker") >= 4)
        events = re.search(r"^berth_docker_events_total (\d+)$", metrics, re.M)
        self.assertTrue(events and int(events.group(1)) >= 1, metrics[-2000:])  # at least the start event

    def test_weighted_service_from_one_label_switches_colors_sticky(self):
        self.start()
        blue, green = free_port(), free_port()
        self.container("blue", blue, labels={"traefik.http.services.app-blue.loadbalancer.server.port": str(blue),
                                             "traefik.http.routers.blue.rule": "Host(`blue.test`)"})
        self.container("green", green, labels={"traefik.http.services.app-green.loadbalancer.server.port": str(green),
                                               "traefik.http.routers.green.rule": "Host(`green.test`)"})

        def switch(name, weights):
            # berth's compact form: one label holds the whole list of weighted services.
            self.container(name, labels={"berth.http.services.app.weighted.services": weights,
                                         "berth.http.services.app.weighted.sticky.cookie.name": "color",
                                         "berth.http.routers.app.rule": "Host(`app.test`)",
                                         "berth.http.routers.app.service": "app"})

        switch("switch1", "app-blue:100,app-green:0")
        self.wait_answer("app.test", b"blue")
        self.assertEqual(set(self.answers("app.test", 10)), {b"blue"})
        status, headers, _ = self.ask("app.test")
        cookie = headers.get("set-cookie", "").split(";")[0]
        self.assertTrue(cookie.startswith("color="), headers)
        # Canary: half the new users go green; a user with a cookie stays where the cookie says.
        DOCKERD.run("rm", "-f", "switch1")
        switch("switch2", "app-blue:50,app-green:50")
        self.wait_all("app.test", {b"blue", b"green"}, n=40)
        for _ in range(10):
            self.assertEqual(get(self.proxy.port, "/", host="app.test", headers={"Cookie": cookie})[2], b"blue")
        # All green: the cookie of a color that has no weight any more is not honoured.
        DOCKERD.run("rm", "-f", "switch2")
        switch("switch3", "app-blue:0,app-green:100")
        self.wait_only("app.test", {b"green"})
        self.assertEqual(get(self.proxy.port, "/", host="app.test", headers={"Cookie": cookie})[2], b"green")

    def test_restart_just_before_berth_lists_is_not_taken_for_a_stop(self):
        # The event stream replays the last second after the listing: the restart's kill belongs to
        # the run before the one listed, and must not drain the container (it did, for 15 s).
        port = free_port()
        self.container("rs", port, labels=labels_for("rs", "Host(`rs.test`)", port))
        DOCKERD.run("restart", "-t", "1", "rs")
        self.start()
        took = self.wait_answer("rs.test", b"rs", timeout=4)
        for _ in range(10):
            self.assertEqual(self.ask("rs.test")[0], 200)
            time.sleep(0.05)
        print(f"routed {took:.2f}s after berth listened")

    def test_check_reads_the_containers_and_names_label_problems(self):
        port = free_port()
        self.container("checked", port, labels=labels_for("checked", "Host(`checked.test`)", port))
        self.container("typo", free_port(), labels={"traefik.http.routers.t.rulez": "Host(`t.test`)"})
        conf = os.path.join(self.tmp, "check.yml")

        def check(endpoint):
            with open(conf, "w") as f:
                f.write(f'entryPoints:\n  web:\n    address: "127.0.0.1:{free_port()}"\n'
                        f'providers:\n  docker:\n    endpoint: "{endpoint}"\n')
            return subprocess.run([harness.BERTH, "check", f"--configFile={conf}"], capture_output=True, text=True,
                                  timeout=30)
        out = check(DOCKERD.host)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn('container typo label traefik.http.routers.t.rulez: unknown key "rulez"', out.stdout)
        self.assertNotIn("checked", out.stdout)
        out = check(f"unix://{self.tmp}/no-dockerd.sock")
        self.assertEqual(out.returncode, 1)
        self.assertIn("cannot connect to the Docker daemon", out.stdout)

    def test_every_documented_provider_option_is_accepted(self):
        self.start(docker={"exposedByDefault": "true", "watch": "true", "network": '""',
                           "defaultRule": '"Host(`{{ normalize .Name }}`)"', "constraints": '""',
                           "allowEmptyServices": "false", "useBindPortIP": "false", "httpClientTimeout": "30s"})
        port = free_port()
        self.container("options", port, labels=labels_for("options", "Host(`options.test`)", port))
        self.wait_answer("options.test", b"options")

    def test_lowest_exposed_port_without_a_port_label(self):
        self.start()
        low, high = sorted([free_port(), free_port()])
        self.container("exposed", backends=[("exposed-low", low), ("exposed-high", high)],
                       labels={"traefik.http.routers.exposed.rule": "Host(`exposed.test`)"},
                       extra=["--expose", str(high), "--expose", str(low)])
        self.wait_answer("exposed.test", b"exposed-low")
        self.assertEqual(set(self.answers("exposed.test", 5)), {b"exposed-low"})

    def test_berth_prefixed_labels(self):
        self.start(docker={"exposedByDefault": "false"})
        port = free_port()
        self.container("berth-labels", port, labels=labels_for("bl", "Host(`berth-labels.test`)", port,
                                                                prefix="berth", berth__enable="true"))
        port2 = free_port()
        self.container("berth-mw", port2, labels={
            **labels_for("bm", "Host(`berth-mw.test`)", port2, prefix="berth"),
            "berth.enable": "true", "berth.http.routers.bm.middlewares": "hdr",
            "berth.http.middlewares.hdr.headers.customresponseheaders.X-Berth-Label": "on"})
        self.wait_answer("berth-labels.test", b"berth-labels")
        self.wait_answer("berth-mw.test", b"berth-mw")
        self.assertEqual(self.ask("berth-mw.test")[1].get("x-berth-label"), "on")

    def test_label_keys_are_case_insensitive(self):
        self.start()
        port = free_port()
        self.container("mixed-case", port, labels={
            "traefik.http.Routers.MixedCase.Rule": "Host(`mixed.test`)",
            "traefik.HTTP.Services.mixedcase.LoadBalancer.Server.Port": str(port),
            "traefik.http.routers.mixedcase.MIDDLEWARES": "hdr",
            "traefik.http.middlewares.hdr.Headers.CustomResponseHeaders.X-Case": "any"})
        self.wait_answer("mixed.test", b"mixed-case")
        self.assertEqual(self.ask("mixed.test")[1].get("x-case"), "any")

    # ------------------------------------------------------------ default rule

    def test_default_rule_is_host_of_the_normalized_container_name(self):
        self.start()
        port = free_port()
        self.container("my_app.1", port, labels={"traefik.http.services.app.loadbalancer.server.port": str(port)})
        self.wait_answer("my-app-1", b"my_app.1")
        self.assertEqual(self.ask("my_app.1")[0], 404)

    def test_default_rule_from_static_configuration(self):
        self.start(docker={"defaultRule": '"Host(`{{ normalize .Name }}.docker.test`)"'})
        port = free_port()
        self.container("my_app.2", port, labels={"traefik.http.services.app.loadbalancer.server.port": str(port)})
        self.wait_answer("my-app-2.docker.test", b"my_app.2")
        self.assertEqual(self.ask("my-app-2")[0], 404)
        # A rule label still wins over the default rule.
        port = free_port()
        self.container("ruled", port, labels=labels_for("ruled", "Host(`ruled.test`)", port))
        self.wait_answer("ruled.test", b"ruled")
        self.assertEqual(self.ask("ruled.docker.test")[0], 404)

    # ------------------------------------------------------------ middlewares

    def test_middlewares_from_labels_headers_and_stripprefix_list(self):
        self.start()
        port = free_port()
        self.container("mw", port, labels={
            **labels_for("mw", "Host(`mw.test`)", port),
            "traefik.http.routers.mw.middlewares": "add,strip",
            "traefik.http.middlewares.add.headers.customresponseheaders.X-Test": "yes",
            "traefik.http.middlewares.strip.stripprefix.prefixes": "/a,/b"})
        self.wait_answer("mw.test", path="/a/echo")
        for prefix in ("/a", "/b"):
            status, headers, body = self.ask("mw.test", f"{prefix}/echo")
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("x-test"), "yes")
            echo = json.loads(body)
            self.assertEqual(echo["target"], "/echo")
            self.assertEqual({n.lower(): v for n, v in echo["headers"]}.get("x-forwarded-prefix"), prefix)
        status, headers, body = self.ask("mw.test", "/echo/c")  # no prefix to strip
        self.assertEqual((status, json.loads(body)["target"], headers.get("x-test")), (200, "/echo/c", "yes"))

    def test_reference_to_a_file_provider_middleware(self):
        self.start(file_dynamic="http:\n  middlewares:\n    fromfile:\n      headers:\n"
                                "        customResponseHeaders:\n          X-From-File: \"1\"\n")
        port = free_port()
        self.container("uses-file", port, labels={**labels_for("uf", "Host(`uses-file.test`)", port),
                                                  "traefik.http.routers.uf.middlewares": "fromfile@file"})
        self.wait_answer("uses-file.test", b"uses-file")
        self.assertEqual(self.ask("uses-file.test")[1].get("x-from-file"), "1")

    # ------------------------------------------------------------ TLS

    def test_tls_router_is_https_only_and_tls_domains_are_accepted(self):
        self.start()
        port = free_port()
        self.container("secure", port, labels={**labels_for("secure", "Host(`secure.test`)", port),
                                               "traefik.http.routers.secure.tls": "true"})
        port2 = free_port()
        self.container("domains", port2, labels={
            **labels_for("domains", "Host(`a.test`)", port2),
            "traefik.http.routers.domains.tls": "true",
            "traefik.http.routers.domains.tls.domains[0].main": "a.test",
            "traefik.http.routers.domains.tls.domains[0].sans": "b.test,c.test"})
        self.wait_answer("secure.test", b"secure", tls=True)
        self.assertEqual(self.ask("secure.test")[0], 404, "a TLS router does not serve plain HTTP")
        self.wait_answer("a.test", b"domains", tls=True)
        self.assertEqual(self.ask("a.test")[0], 404)

    # ------------------------------------------------------------ several routers and services

    def test_two_routers_two_services_linked_by_name_and_unlinked_router_dropped(self):
        self.start()
        p1, p2 = free_port(), free_port()
        self.container("duo", backends=[("duo-s1", p1), ("duo-s2", p2)], labels={
            "traefik.http.routers.r1.rule": "Host(`r1.test`)", "traefik.http.routers.r1.service": "s1",
            "traefik.http.routers.r2.rule": "Host(`r2.test`)", "traefik.http.routers.r2.service": "s2",
            "traefik.http.routers.lost.rule": "Host(`lost.test`)",
            "traefik.http.services.s1.loadbalancer.server.port": str(p1),
            "traefik.http.services.s2.loadbalancer.server.port": str(p2)})
        self.wait_answer("r1.test", b"duo-s1")
        self.wait_answer("r2.test", b"duo-s2")
        self.assertEqual(self.ask("lost.test")[0], 404)
        self.assert_logged("lost")

    # ------------------------------------------------------------ which containers

    def test_exposed_by_default_false_and_enable_false(self):
        self.start(docker={"exposedByDefault": "false"})
        pon, poff, pdis = free_port(), free_port(), free_port()
        self.container("on", pon, labels={**labels_for("on", "Host(`on.test`)", pon), "traefik.enable": "true"})
        self.container("off", poff, labels=labels_for("off", "Host(`off.test`)", poff))
        self.container("disabled", pdis, labels={**labels_for("disabled", "Host(`disabled.test`)", pdis),
                                                 "traefik.enable": "false"})
        self.wait_answer("on.test", b"on")
        self.assert_stays("off.test", 404, 0.3)
        self.assertEqual(self.ask("disabled.test")[0], 404)
        # The same containers seen by a berth with exposedByDefault true (the default).
        self.start()
        self.wait_answer("off.test", b"off")
        self.wait_answer("on.test", b"on")
        self.assertEqual(self.ask("disabled.test")[0], 404)

    def test_constraints_keep_only_matching_containers(self):
        self.start(docker={"constraints": '"Label(`team`,`a`)"'})
        pa, pb, pn = free_port(), free_port(), free_port()
        self.container("team-a", pa, labels={**labels_for("ta", "Host(`team-a.test`)", pa), "team": "a"})
        self.container("team-b", pb, labels={**labels_for("tb", "Host(`team-b.test`)", pb), "team": "b"})
        self.container("no-team", pn, labels=labels_for("tn", "Host(`no-team.test`)", pn))
        self.wait_answer("team-a.test", b"team-a")
        self.assert_stays("team-b.test", 404, 0.3)
        self.assertEqual(self.ask("no-team.test")[0], 404)

    def test_invalid_labels_skip_only_that_container_and_are_logged(self):
        self.start()
        good = free_port()
        self.container("good-before", good, labels=labels_for("gb", "Host(`good-before.test`)", good))
        self.wait_answer("good-before.test", b"good-before")
        bad = {
            "bad-rule-ctr": {"traefik.http.routers.badrule.rule": "Host(",
                             "traefik.http.services.badrule.loadbalancer.server.port": "{port}"},
            "bad-port-ctr": {"traefik.http.routers.badport.rule": "Host(`bad-port.test`)",
                             "traefik.http.services.badport.loadbalancer.server.port": "notaport"},
            "bad-key-ctr": {"traefik.http.routers.badkey.rule": "Host(`bad-key.test`)",
                            "traefik.http.routers.badkey.nosuchoption": "1",
                            "traefik.http.services.badkey.loadbalancer.server.port": "{port}"},
        }
        for name, labels in bad.items():
            port = free_port()
            self.container(name, port, labels={k: v.replace("{port}", str(port)) for k, v in labels.items()})
        good2 = free_port()
        self.container("good-after", good2, labels=labels_for("ga", "Host(`good-after.test`)", good2))
        self.wait_answer("good-after.test", b"good-after")
        self.assertEqual(self.ask("good-before.test")[2], b"good-before")
        self.assertEqual(self.ask("bad-port.test")[0], 404)
        self.assertEqual(self.ask("bad-key.test")[0], 404)
        self.assert_logged("bad-rule-ctr", "traefik.http.routers.badrule.rule")
        self.assert_logged("bad-port-ctr", "traefik.http.services.badport.loadbalancer.server.port")
        self.assert_logged("bad-key-ctr", "traefik.http.routers.badkey.nosuchoption")
        self.assertIsNone(self.proxy.proc.poll(), "berth exited")

    def test_a_label_problem_is_logged_once_not_at_every_event(self):
        self.start()
        port = free_port()
        self.container("bad-once", port, labels={**labels_for("badonce", "Host(`bad-once.test`)", port),
                                                 "traefik.http.routers.badonce.nosuchoption": "1"})
        self.assert_logged("bad-once", "traefik.http.routers.badonce.nosuchoption")
        generations = self.proxy.log_text().count("configuration generation")
        for i in range(3):  # three start events, each a new configuration that still has the problem
            p = free_port()
            name = f"unrelated-{i}"
            self.container(name, p, labels=labels_for(name, f"Host(`{name}.test`)", p))
            self.wait_answer(f"{name}.test", name.encode())
        self.assertEqual(self.ask("bad-once.test")[0], 404)
        self.assertTrue(DOCKERD.is_container_running("bad-once"))
        log = self.proxy.log_text()
        self.assertGreaterEqual(log.count("configuration generation") - generations, 3, self.log_tail())
        lines = [line for line in log.splitlines() if "traefik.http.routers.badonce.nosuchoption" in line]
        self.assertEqual(len(lines), 1, "the problem is logged more than once:\n" + "\n".join(lines))
        left_out = [line for line in log.splitlines() if "container bad-once" in line and "left out" in line]
        self.assertEqual(len(left_out), 1, "\n".join(left_out))

    # ------------------------------------------------------------ health

    def test_starting_container_is_not_routed_until_healthy(self):
        self.start()
        control = free_port()
        self.container("control", control, labels=labels_for("control", "Host(`control.test`)", control))
        port = free_port()
        self.container("warming", port, labels=labels_for("warming", "Host(`warming.test`)", port), health=True)
        self.wait_answer("control.test", b"control")
        self.assertEqual(DOCKERD.health("warming"), "starting")
        self.assert_stays("warming.test", 404, 1.0)  # four health probes failed meanwhile (start period)
        self.assertEqual(DOCKERD.health("warming"), "starting")
        DOCKERD.run("exec", "warming", "/bin/busybox", "touch", "/tmp/ready")
        t0 = time.time()
        DOCKERD.wait_health("warming", "healthy", timeout=10)
        healthy = time.time() - t0
        routed = self.wait_answer("warming.test", b"warming", timeout=5)
        print(f"healthy {healthy:.3f}s after the exec, routed {routed:.3f}s after healthy")

    def test_unhealthy_container_leaves_rotation_and_comes_back(self):
        self.start()
        for name in ("hc1", "hc2"):
            port = free_port()
            self.container(name, port, labels=labels_for("hc", "Host(`hc.test`)", port), health=True, ready=True)
        DOCKERD.wait_health("hc1", "healthy")
        DOCKERD.wait_health("hc2", "healthy")
        self.wait_all("hc.test", {b"hc1", b"hc2"})
        DOCKERD.run("exec", "hc2", "/bin/busybox", "rm", "/tmp/ready")
        DOCKERD.wait_health("hc2", "unhealthy")
        print(f"out of rotation {self.wait_only('hc.test', {b'hc1'}):.3f}s after docker said unhealthy")
        self.assertEqual(self.answers("hc.test", 10), [b"hc1"] * 10)
        DOCKERD.run("exec", "hc2", "/bin/busybox", "touch", "/tmp/ready")
        DOCKERD.wait_health("hc2", "healthy")
        self.wait_all("hc.test", {b"hc1", b"hc2"}, timeout=5)

    def test_allow_empty_services_answers_503_while_starting(self):
        # Traefik v3.x answers 500 here when the port comes from a label (traefik#13261); the
        # documented behaviour, and berth's, is 503.
        self.start(docker={"allowEmptyServices": "true"})
        port = free_port()
        self.container("empty", port, labels=labels_for("empty", "Host(`empty.test`)", port), health=True)
        self.wait_answer("empty.test", status=503)
        self.assertEqual(DOCKERD.health("empty"), "starting")
        DOCKERD.run("exec", "empty", "/bin/busybox", "touch", "/tmp/ready")
        self.wait_answer("empty.test", b"empty")

    # ------------------------------------------------------------ compose

    def test_compose_project_gets_router_web_project(self):
        self.start()
        port = free_port()
        path = os.path.join(self.tmp, "compose.yml")
        with open(path, "w") as f:
            f.write(compose_file("shop", port, {"traefik.http.services.websvc.loadbalancer.server.port": port}))
        DOCKERD.compose("shop", path, "up", "-d")
        wait_serving(port)
        self.wait_answer("web-shop", b"compose-web")
        self.assertEqual(self.ask("shop_web_1")[0], 404)
        self.assertEqual(self.ask("shop-web-1")[0], 404)
        DOCKERD.compose("shop", path, "down")
        self.wait_answer("web-shop", status=404, timeout=5)

    def test_replicas_of_a_compose_service_share_one_load_balancer(self):
        # Two replicas on the host network need two ports, so they are `docker run` containers with
        # the labels compose puts on replicas of service `web` in project `rep`.
        self.start()
        for name in ("rep-1", "rep-2"):
            port = free_port()
            self.container(name, port, labels={**compose_labels("rep", "web"),
                                               "traefik.http.services.web-rep.loadbalancer.server.port": str(port)})
        self.wait_all("web-rep", {b"rep-1", b"rep-2"})
        seen = self.answers("web-rep", 10)
        self.assertGreaterEqual(seen.count(b"rep-1"), 4, seen)
        self.assertGreaterEqual(seen.count(b"rep-2"), 4, seen)

    # ------------------------------------------------------------ containers stopping

    def test_stopping_container_leaves_rotation_before_it_dies(self):
        self.start()
        stays, leaves = free_port(), free_port()
        self.container("stays", stays, labels=labels_for("st", "Host(`stop.test`)", stays, service="st"))
        self.container("leaves", leaves, labels=labels_for("st", "Host(`stop.test`)", leaves, service="st"),
                       ignore_term=True)
        self.wait_all("stop.test", {b"stays", b"leaves"})
        load = self.load("stop.test")
        time.sleep(0.3)
        stopper = threading.Thread(target=DOCKERD.run, args=("stop", "-t", "4", "leaves"), kwargs={"timeout": 30})
        t_stop = time.time()
        stopper.start()
        try:
            switched = self.wait_only("stop.test", {b"stays"}, timeout=3)
            t_switch = time.time()
            # It still runs and serves (SIGKILL comes 4 s after the stop), yet berth sends it nothing.
            self.assertTrue(DOCKERD.is_container_running("leaves"))
            self.assertEqual(get(leaves, "/")[::2], (200, b"leaves"))
            time.sleep(0.5)
            self.assertNotIn("leaves", load.backends_since(t_switch))
        finally:
            stopper.join(30)
        print(f"out of rotation {switched:.3f}s after docker stop was called, "
              f"{time.time() - t_stop:.1f}s before the container died")
        time.sleep(0.3)
        self.assert_no_failures(load)
        self.assertEqual(set(self.answers("stop.test")), {b"stays"})

    def test_last_stopping_container_answers_503_then_404(self):
        self.start()
        control, port = free_port(), free_port()
        self.container("bystander", control, labels=labels_for("by", "Host(`bystander.test`)", control))
        self.container("last", port, labels=labels_for("last", "Host(`last.test`)", port), ignore_term=True)
        self.wait_answer("last.test", b"last")
        stopper = threading.Thread(target=DOCKERD.run, args=("stop", "-t", "4", "last"), kwargs={"timeout": 30})
        stopper.start()
        try:
            took = self.wait_answer("last.test", status=503, timeout=3)
            self.assertTrue(DOCKERD.is_container_running("last"))
            self.assertEqual(get(port, "/")[::2], (200, b"last"), "the container is still serving")
        finally:
            stopper.join(30)
        print(f"503 {took:.3f}s after docker stop was called")
        self.wait_answer("last.test", status=404, timeout=5)
        self.assertEqual(self.ask("bystander.test")[2], b"bystander")

    def test_the_containers_own_stop_signal_drains_it(self):
        # --stop-signal SIGUSR1: `docker stop` sends USR1 (a kill event with signal 10), then SIGKILL
        # after -t seconds. The shell ignores USR1, so the container serves until the SIGKILL.
        self.start()
        stays, leaves = free_port(), free_port()
        self.container("usr1-stays", stays, labels=labels_for("u1", "Host(`usr1.test`)", stays, service="u1"))
        self.container("usr1-leaves", leaves, labels=labels_for("u1", "Host(`usr1.test`)", leaves, service="u1"),
                       ignore=("TERM", "USR1"), extra=["--stop-signal", "SIGUSR1"])
        self.assertEqual(DOCKERD.inspect("usr1-leaves")["Config"]["StopSignal"], "SIGUSR1")
        self.wait_all("usr1.test", {b"usr1-stays", b"usr1-leaves"})
        stopper = threading.Thread(target=DOCKERD.run, args=("stop", "-t", "3", "usr1-leaves"), kwargs={"timeout": 30})
        t_stop = time.time()
        stopper.start()
        try:
            switched = self.wait_only("usr1.test", {b"usr1-stays"}, timeout=2)
            self.assertTrue(DOCKERD.is_container_running("usr1-leaves"), "drained only when it died")
            self.assertEqual(get(leaves, "/")[::2], (200, b"usr1-leaves"), "the container is still serving")
            self.assertLess(time.time() - t_stop, 2.8, "drained only by the SIGKILL")
        finally:
            stopper.join(30)
        self.assertGreater(time.time() - t_stop, 2.5, "the container did not wait for its SIGKILL")
        print(f"out of rotation {switched:.3f}s after docker stop (SIGUSR1) was called")
        self.assertEqual(set(self.answers("usr1.test")), {b"usr1-stays"})

    def test_other_signals_leave_the_container_in_rotation(self):
        # docker kill -s HUP (reload) or QUIT (thread dump) does not stop a container.
        self.start()
        port = free_port()
        self.container("signalled", port, labels=labels_for("signalled", "Host(`signalled.test`)", port),
                       ignore=("HUP", "QUIT"))
        self.wait_answer("signalled.test", b"signalled")
        for sig in ("HUP", "QUIT"):
            DOCKERD.run("kill", "-s", sig, "signalled")
            # The next event goes through the same queue: once it is routed, the kill was processed.
            marker, mport = f"after-{sig.lower()}", free_port()
            self.container(marker, mport, labels=labels_for(marker, f"Host(`{marker}.test`)", mport))
            self.wait_answer(f"{marker}.test", marker.encode())
            self.assertTrue(DOCKERD.is_container_running("signalled"))
            self.assert_stays("signalled.test", 200, 0.5)
            self.assertEqual(set(self.answers("signalled.test", 5)), {b"signalled"})
        log = self.proxy.log_text()
        self.assertNotIn("container signalled kill", log)  # no new configuration for either kill
        self.assertNotIn("back in rotation", log)

    def test_stop_signal_the_process_ignores_puts_it_back_in_rotation(self):
        # docker kill -s TERM (not docker stop: no SIGKILL follows) to a process that ignores TERM:
        # drained at once, looked at again StopTimeout + 5 s later, back in rotation as it still runs.
        self.start()
        port = free_port()
        self.container("stubborn", port, labels=labels_for("stubborn", "Host(`stubborn.test`)", port),
                       ignore_term=True, extra=["--stop-timeout", "1"])
        self.assertEqual(DOCKERD.inspect("stubborn")["Config"]["StopTimeout"], 1)
        self.wait_answer("stubborn.test", b"stubborn")
        DOCKERD.run("kill", "-s", "TERM", "stubborn")
        t_kill = time.time()
        drained = self.wait_answer("stubborn.test", status=503, timeout=2)
        self.assert_stays("stubborn.test", 503, 4.5 - (time.time() - t_kill))
        self.assertTrue(DOCKERD.is_container_running("stubborn"))
        self.wait_answer("stubborn.test", b"stubborn", timeout=10 - (time.time() - t_kill))
        back = time.time() - t_kill
        print(f"drained {drained:.3f}s after docker kill -s TERM, back in rotation after {back:.2f}s")
        self.assertGreater(back, 5.5, "back before StopTimeout + 5 s")
        self.assert_logged("stubborn", "still runs", "back in rotation")
        self.assertEqual(set(self.answers("stubborn.test", 5)), {b"stubborn"})

    def test_allow_non_running_container_keeps_its_routes_with_503(self):
        self.start()
        port = free_port()
        self.container("anr", port, labels={**labels_for("anr", "Host(`anr.test`)", port),
                                            "traefik.docker.allownonrunning": "true"})
        self.wait_answer("anr.test", b"anr")
        DOCKERD.run("stop", "anr", timeout=30)
        self.assertEqual(DOCKERD.inspect("anr")["State"]["Status"], "exited")
        self.wait_answer("anr.test", status=503, timeout=3)
        self.assert_stays("anr.test", 503, 1.0)
        DOCKERD.run("start", "anr")
        self.wait_answer("anr.test", b"anr", timeout=5)
        # The listing: berth starts while it is exited, next to one created and never started, with
        # the berth. prefix and neither a port label nor an exposed port (a stopped one needs none).
        DOCKERD.run("stop", "anr", timeout=30)
        self.container("anr-created", labels={"berth.http.routers.anrc.rule": "Host(`anr-created.test`)",
                                              "berth.docker.allownonrunning": "true"}, create_only=True)
        self.assertEqual(DOCKERD.inspect("anr-created")["State"]["Status"], "created")
        self.proxy.stop()  # the next berth writes the same log file
        second = self.start()
        self.assertEqual(self.ask("anr.test")[0], 503, self.log_tail())
        self.assertEqual(self.ask("anr-created.test")[0], 503, self.log_tail())
        DOCKERD.run("start", "anr")
        self.wait_answer("anr.test", b"anr", timeout=5)
        self.assertEqual(self.ask("anr-created.test")[0], 503)
        problems = [line for line in second.log_text().splitlines() if " ERR " in line or " WRN " in line]
        self.assertEqual([line for line in problems if "anr" in line], [])

    def test_paused_container_leaves_rotation_until_unpaused(self):
        # As in Traefik: a paused container is not running, so its routes go (404 when alone).
        self.start()
        port = free_port()
        self.container("pausing", port, labels=labels_for("pausing", "Host(`pausing.test`)", port))
        self.wait_answer("pausing.test", b"pausing")
        DOCKERD.run("pause", "pausing")
        self.assert_logged("container pausing pause")  # before asking: a paused backend would not answer
        paused = self.wait_answer("pausing.test", status=404, timeout=3)
        self.assertEqual(DOCKERD.inspect("pausing")["State"]["Status"], "paused")
        DOCKERD.run("unpause", "pausing")
        back = self.wait_answer("pausing.test", b"pausing", timeout=5)
        print(f"404 {paused:.3f}s after docker pause returned, routed {back:.3f}s after docker unpause")

    # ------------------------------------------------------------ dockerd going away

    def test_dockerd_restart_keeps_last_config_and_reconnects(self):
        d = Dockerd(live_restore=True)  # containers outlive their daemon
        self.addCleanup(d.stop)
        self.start(dockerd=d)
        before = free_port()
        self.container("before", before, labels=labels_for("before", "Host(`before.test`)", before), dockerd=d)
        self.wait_answer("before.test", b"before")
        d.stop_daemon()
        t0 = time.time()
        while time.time() - t0 < 1.5:  # berth lost its event stream and keeps the last configuration
            self.assertEqual(self.ask("before.test")[::2], (200, b"before"))
            time.sleep(0.05)
        self.assertIsNone(self.proxy.proc.poll(), "berth exited")
        d.start()
        after = free_port()
        t0 = time.time()
        self.container("after", after, labels=labels_for("after", "Host(`after.test`)", after), dockerd=d)
        self.wait_answer("after.test", b"after", timeout=30)
        print(f"container started after the restart routed {time.time() - t0:.2f}s after docker run")
        self.assertEqual(self.ask("before.test")[2], b"before")

    # ------------------------------------------------------------ changes under load

    def roll_container(self, name, project="roll"):
        port = free_port()
        self.container(name, port, labels={**compose_labels(project, "web"),
                                           **labels_for("roll", "Host(`roll.test`)", port, service="roll")},
                       health=True, ready=True, ignore_term=True)
        DOCKERD.wait_health(name, "healthy")
        return port

    def stop_gracefully(self, *names):
        """docker stop -t 2 (the containers ignore SIGTERM: 2 s to drain), then rm; in parallel."""
        threads = [threading.Thread(target=lambda n=n: (DOCKERD.run("stop", "-t", "2", n, timeout=30),
                                                        DOCKERD.run("rm", n, timeout=30))) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)

    def test_rollover_under_load_fails_no_request(self):
        self.start()
        self.roll_container("roll-v1")
        self.wait_answer("roll.test", b"roll-v1")
        load = self.load("roll.test")
        previous = "roll-v1"
        for version in ("roll-v2", "roll-v3"):
            self.roll_container(version)
            self.wait_all("roll.test", {previous.encode(), version.encode()}, timeout=5)
            self.stop_gracefully(previous)
            previous = version
        t_end = time.time()
        time.sleep(0.3)
        self.assert_no_failures(load)
        self.assertEqual(set(load.backends_since(t_end)), {"roll-v3"})
        self.assertEqual(set(self.answers("roll.test")), {b"roll-v3"})

    def test_scale_up_and_down_under_load_fails_no_request(self):
        self.start()
        self.roll_container("scale-1", "scale")
        self.roll_container("scale-2", "scale")
        self.wait_all("roll.test", {b"scale-1", b"scale-2"})
        load = self.load("roll.test")
        time.sleep(0.3)
        self.roll_container("scale-3", "scale")
        self.wait_all("roll.test", {b"scale-1", b"scale-2", b"scale-3"}, timeout=5)
        self.stop_gracefully("scale-2", "scale-3")
        t_end = time.time()
        time.sleep(0.3)
        self.assert_no_failures(load)
        self.assertEqual(set(load.backends_since(t_end)), {"scale-1"})

    # ------------------------------------------------------------ timing

    def test_throttle_does_not_hold_back_the_first_listing(self):
        # The file provider applies first (generation 1); the docker listing comes within the 2 s
        # throttle and is applied anyway before berth listens (generation 2).
        port = free_port()
        self.container("early", port, labels=labels_for("early", "Host(`early.test`)", port))
        self.start(providers={"providersThrottleDuration": "2s"},
                   file_dynamic="http:\n  middlewares:\n    noop:\n      headers:\n"
                                "        customResponseHeaders:\n          X-Noop: \"1\"\n")
        first = self.ask("early.test")
        self.assertEqual(first[::2], (200, b"early"), self.log_tail())
        self.assert_logged("providersThrottleDuration 2s")
        # Later changes still come, throttled.
        later = free_port()
        self.container("later", later, labels=labels_for("later", "Host(`later.test`)", later))
        print(f"a container started later routed after {self.wait_answer('later.test', b'later', timeout=5):.2f}s")

    def test_event_to_route_latency(self):
        self.start()
        port = free_port()
        self.container("latency", port, labels=labels_for("latency", "Host(`latency.test`)", port), create_only=True)
        ups, downs = [], []
        for _ in range(3):
            DOCKERD.run("start", "latency")
            ups.append(self.wait_answer("latency.test", b"latency", timeout=5))
            DOCKERD.run("stop", "latency")
            downs.append(self.wait_answer("latency.test", status=404, timeout=5))
        print("docker start returned -> routed (s):", [round(x, 3) for x in ups])
        print("docker stop returned -> 404 (s):", [round(x, 3) for x in downs])


if __name__ == "__main__":
    main()
