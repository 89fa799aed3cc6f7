"""Imperative deploys through the admin socket (`berth deploy|rollback|rollout|pause|stop|resume|
list`), with real backends and clients that keep sending (HTTP/1.1 keep-alive, a new connection per
request, HTTP/2 over TLS) while the switches happen: no request fails, and after each command
returns every answer comes from the targets it named."""
import json
import os
import re
import signal
import stat
import subprocess
import threading
import time

from harness import (BERTH, BerthTestCase, Traffic, admin, free_port, get, main, wait_for_port,
                     wait_until)


def service_yaml(url):
    # One service on a plain and a TLS router (the HTTP/2 client speaks TLS).
    return ("http:\n  routers:\n    app: {rule: \"PathPrefix(`/`)\", service: app}\n"
            "    app-tls: {rule: \"PathPrefix(`/`)\", service: app, tls: {}}\n"
            f"  services:\n    app:\n      loadBalancer:\n        servers: [{{url: \"{url}\"}}]\n")


def target(backend):
    return f"127.0.0.1:{backend.port}"


class Deploys(BerthTestCase):
    def start(self):
        self.blue, self.green = self.backend("blue"), self.backend("green")
        self.proxy = self.berth(dynamic_yaml=service_yaml(self.blue.url))
        wait_until(lambda: os.path.exists(os.environ["BERTH_ADMIN_SOCKET"]), timeout=5)
        return self.proxy

    def deploy(self, backend, *extra):
        r = admin("deploy", "app", "--target", target(backend), "--health-path", "/up",
                  "--health-interval", "100ms", *extra)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def settled_backends(self, traffic, since, at_least=15):
        """The backends answering requests sent after `since` (+ 50 ms for answers in the clients' hands)."""
        wait_until(lambda: len(traffic.backends_since(since + 0.05)) >= at_least, timeout=10)
        return set(traffic.backends_since(since + 0.05))

    def test_fifty_deploys_under_load_fail_no_request(self):
        # Each deploy goes to a new backend, and the old one is stopped as soon as the command
        # returns, as a deploy script does: a request berth still sent there would fail.
        self.start()
        traffic = Traffic(self.proxy.port).start()
        switch_ms = []
        old = self.blue
        try:
            for i in range(50):
                to = self.backend(f"v{i + 1}")
                r = self.deploy(to)
                done = time.time()
                old.stop()
                self.assertIn(f"switched to {target(to)}", r.stdout)
                switch_ms.append(int(re.search(r"to \S+ in (\d+) ms", r.stdout)[1]))
                self.assertEqual(self.settled_backends(traffic, done), {to.name}, f"deploy {i + 1} to {to.name}")
                previous, old = old, to
        finally:
            traffic.stop(timeout=30)
        self.assertEqual(traffic.failures, [], f"{len(traffic.failures)} failed of {len(traffic.records)}")
        self.assertTrue(all(n > 100 for n in traffic.ok_by_client.values()), traffic.ok_by_client)
        print(f"\n  {len(traffic.records)} requests through 50 deploys, none failed; "
              f"deploy -> switched: median {sorted(switch_ms)[25]} ms", end=" ")
        listed = json.loads(admin("list", "--json").stdout)
        app = next(s for s in listed if s["service"] == "app@file")
        self.assertEqual(app["deploy"]["targets"], [target(old)])
        self.assertEqual(app["deploy"]["previous"], [target(previous)])
        self.assertEqual(app["servers"], [{"url": old.url, "up": True, "role": "serving"}])

    def test_rollback_returns_to_the_previous_targets(self):
        self.start()
        self.deploy(self.green)
        self.assertEqual(get(self.proxy.port, "/")[2], b"green")
        r = admin("rollback", "app", "--health-path", "/up")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(get(self.proxy.port, "/")[2], b"blue")
        r = admin("rollback", "app", "--health-path", "/up")  # and back again: previous is now green
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(get(self.proxy.port, "/")[2], b"green")

    def test_never_healthy_target_changes_nothing(self):
        self.start()
        sick = self.backend("sick")
        os.kill(sick.proc.pid, signal.SIGUSR1)  # answers 500 to everything
        dead = free_port()
        traffic = Traffic(self.proxy.port).start()
        try:
            for bad in (target(sick), f"127.0.0.1:{dead}"):
                started = time.time()
                r = admin("deploy", "app", "--target", bad, "--health-interval", "200ms", "--deploy-timeout", "1s")
                self.assertEqual(r.returncode, 1)
                self.assertIn("not healthy within 1s", r.stderr)
                self.assertIn("nothing changed", r.stderr)
                self.assertIn("HTTP 500" if bad == target(sick) else "refused", r.stderr)
                self.assertLess(time.time() - started, 5)
            self.assertEqual(self.settled_backends(traffic, time.time()), {"blue"})
        finally:
            traffic.stop(timeout=30)
        self.assertEqual(traffic.failures, [])
        listed = json.loads(admin("list", "--json").stdout)
        self.assertNotIn("deploy", next(s for s in listed if s["service"] == "app@file"))
        self.assertFalse(os.path.exists(os.environ["BERTH_DEPLOY_STATE"]), "a failed deploy writes no state")

    def test_canary_ten_then_hundred_percent(self):
        self.start()
        traffic = Traffic(self.proxy.port).start()
        try:
            r = admin("rollout", "app", "--target", target(self.green), "--percent", "10", "--health-path", "/up")
            self.assertEqual(r.returncode, 0, r.stderr)
            since = time.time()
            wait_until(lambda: len(traffic.backends_since(since + 0.05)) >= 400, timeout=20)
            seen = traffic.backends_since(since + 0.05)
            share = seen.count("green") / len(seen)
            self.assertEqual(set(seen), {"blue", "green"})
            self.assertTrue(0.03 < share < 0.25, f"canary share {share:.2%} of {len(seen)}")
            # Sticky: a user who got the canary's cookie stays on it.
            for _ in range(50):
                status, headers, body = get(self.proxy.port, "/")
                if body == b"green":
                    break
            self.assertEqual(body, b"green")
            cookie = headers["set-cookie"].split(";")[0]
            for _ in range(20):
                self.assertEqual(get(self.proxy.port, "/", headers={"Cookie": cookie})[2], b"green")
            r = admin("rollout", "app", "--percent", "100")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(self.settled_backends(traffic, time.time(), at_least=100), {"green"})
            listed = json.loads(admin("list", "--json").stdout)
            app = next(s for s in listed if s["service"] == "app@file")
            self.assertEqual(app["deploy"]["percent"], 100)
            self.assertEqual({(s["url"], s["role"]) for s in app["servers"]},
                             {(self.blue.url, "stable"), (self.green.url, "canary")})
            # The rollout ends with a deploy of the canary: green serves alone, blue is the previous.
            self.deploy(self.green)
            self.assertEqual(self.settled_backends(traffic, time.time()), {"green"})
        finally:
            traffic.stop(timeout=30)
        self.assertEqual(traffic.failures, [])

    def test_automatic_rollback_when_the_canary_answers_500(self):
        self.start()
        traffic = Traffic(self.proxy.port).start()
        try:
            r = admin("rollout", "app", "--target", target(self.green), "--percent", "30", "--auto-rollback",
                      "--health-path", "/up")
            self.assertEqual(r.returncode, 0, r.stderr)
            wait_until(lambda: "green" in traffic.backends_since(time.time() - 1), timeout=10)
            turned = time.time()
            os.kill(self.green.proc.pid, signal.SIGUSR1)  # the new version starts failing
            wait_until(lambda: "automatic rollback of app@file" in self.proxy.log_text(), timeout=15)
            rolled_back = time.time()
            self.assertEqual(self.settled_backends(traffic, rolled_back, at_least=100), {"blue"})
        finally:
            traffic.stop(timeout=30)
        self.assertIn("canary 5xx ratio", self.proxy.log_text())
        late = [r for r in traffic.snapshot() if r[2] != 200 and r[0] > rolled_back + 0.05]
        self.assertEqual(late, [], "no failure after the rollback")
        early = [r for r in traffic.snapshot() if r[2] != 200 and r[0] < turned - 0.5]  # h2: a batch's start
        self.assertEqual(early, [], "no failure before the canary broke")
        self.assertTrue(all(r[3] == "" or r[2] == 500 for r in traffic.snapshot() if r[2] != 200))
        listed = json.loads(admin("list", "--json").stdout)
        app = next(s for s in listed if s["service"] == "app@file")
        self.assertNotIn("canary", app["deploy"])
        self.assertIn("automatic rollback", app["deploy"]["last"])

    def test_pause_holds_requests_until_resume_and_stop_serves_a_maintenance_page(self):
        self.start()
        r = admin("pause", "app", "--max-pause", "10s")
        self.assertEqual(r.returncode, 0, r.stderr)
        answers = []

        def request():
            answer = get(self.proxy.port, "/")
            answers.append((time.time(), answer))
        held = threading.Thread(target=request)
        held.start()
        time.sleep(0.5)
        self.assertEqual(answers, [], "a request to a paused service waits")
        resumed = time.time()
        self.assertEqual(admin("resume", "app").returncode, 0)
        held.join(5)
        self.assertEqual(answers[0][1][0], 200)
        self.assertGreaterEqual(answers[0][0], resumed)
        # A request held while a deploy switches goes to the new target once resumed, even with the
        # old one gone: it is routed again.
        self.assertEqual(admin("pause", "app", "--max-pause", "10s").returncode, 0)
        answers.clear()
        held = threading.Thread(target=request)
        held.start()
        time.sleep(0.3)
        started = time.time()
        self.deploy(self.green)
        self.assertLess(time.time() - started, 5, "a held request is not waited for: it is routed again")
        self.blue.stop()
        self.assertEqual(answers, [])
        self.assertEqual(admin("resume", "app").returncode, 0)
        held.join(5)
        self.assertEqual(answers[0][1][0], 200)
        self.assertEqual(answers[0][1][2], b"green")
        # Past max-pause, the held request gets a 504.
        admin("pause", "app", "--max-pause", "300ms")
        self.assertEqual(get(self.proxy.port, "/")[0], 504)
        admin("resume", "app")
        r = admin("stop", "app", "--message", "Back at <5pm>")
        self.assertEqual(r.returncode, 0, r.stderr)
        status, headers, body = get(self.proxy.port, "/")
        self.assertEqual(status, 503)
        self.assertIn("text/html", headers["content-type"])
        self.assertIn(b"Back at &lt;5pm&gt;", body)
        self.assertIn('"state":"stopped"', admin("list", "--json").stdout.replace(" ", ""))
        self.assertEqual(admin("resume", "app").returncode, 0)
        self.assertEqual(get(self.proxy.port, "/")[2], b"green")

    def test_state_survives_a_restart_and_a_hot_upgrade(self):
        proxy = self.start()
        self.deploy(self.green)
        self.assertEqual(admin("stop", "other").returncode, 1)  # not a service: refused, state untouched
        self.assertEqual(proxy.stop(), 0)
        with open(os.environ["BERTH_DEPLOY_STATE"]) as f:
            saved = json.load(f)
        self.assertEqual(saved["services"]["app@file"]["targets"], [target(self.green)])
        again = self.berth(dynamic_yaml=service_yaml(self.blue.url))
        wait_until(lambda: os.path.exists(os.environ["BERTH_ADMIN_SOCKET"]), timeout=5)
        self.assertEqual(get(again.port, "/")[2], b"green", "the deployed target, not the file's")
        self.assertIn("deploy state: 1 service(s) restored", again.log_text())
        # Hot upgrade: the successor serves the deployed target and answers on the admin socket.
        traffic = Traffic(again.port).start()
        try:
            os.kill(again.proc.pid, signal.SIGUSR2)
            self.assertEqual(again.proc.wait(timeout=20), 0)
            r = self.deploy(self.blue)  # through the successor
            self.assertEqual(self.settled_backends(traffic, time.time()), {"blue"})
        finally:
            traffic.stop(timeout=30)
            pids = [int(line.split("(process ")[1].split(")")[0]) for line in again.log_text().splitlines()
                    if "workers (process" in line]
            for pid in pids[1:]:
                os.kill(pid, signal.SIGTERM)
        self.assertEqual(traffic.failures, [])

    def test_berth_makes_a_service_for_a_new_name_and_refuses_bad_commands(self):
        self.start()
        r = admin("deploy", "shop", "--target", target(self.green), "--host", "shop.test", "--health-path", "/up")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(get(self.proxy.port, "/", host="shop.test")[2], b"green")
        self.assertEqual(get(self.proxy.port, "/", host="other.test")[2], b"blue")  # the file's catch-all
        self.assertEqual(admin("rollback", "shop").returncode, 1)  # nothing before it
        r = admin("rollout", "app", "--percent", "50")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no rollout in progress", r.stderr)
        r = admin("deploy", "app")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no --target", r.stderr)
        r = admin("deploy", "app", "--target", target(self.green), "--percent", "x")
        self.assertEqual(r.returncode, 2)
        # Only root or berth's own user reaches the socket.
        self.assertEqual(stat.S_IMODE(os.stat(os.environ["BERTH_ADMIN_SOCKET"]).st_mode), 0o600)
        os.chmod(self.tmp, 0o755)  # the directory lets anyone through: the socket's mode decides
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BERTH, "list"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("Permission denied", r.stderr)


if __name__ == "__main__":
    main()
