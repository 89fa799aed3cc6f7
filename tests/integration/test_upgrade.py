"""Hot upgrade of berth itself: SIGUSR2 (or a new berth started with --takeover) hands the listening
sockets to a new process over a unix socket; the new one serves at once, the old one stops
accepting, drains and exits 0. Clients that keep sending (keep-alive and new connections, HTTP/1.1
and HTTP/2) through three upgrades see no failed request."""
import os
import re
import signal
import socket
import subprocess
import time

from harness import BERTH, BerthTestCase, Traffic, free_port, get, main, router_yaml, wait_for_port, wait_until


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of this test counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


class HotUpgrade(BerthTestCase):
    def setUp(self):
        super().setUp()
        self.pids = []  # successors: not children of this test, stopped by pid in tearDown

    def tearDown(self):
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.time() + 15
                while alive(pid) and time.time() < deadline:
                    time.sleep(0.05)
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        super().tearDown()

    def start(self):
        app = self.backend("app")
        self.web = free_port()
        self.static = os.path.join(self.tmp, "berth.yml")
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{self.web}\"\n"
                  f"    transport:\n      lifeCycle:\n        graceTimeOut: 5s\n"
                  f"providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\n    watch: true\n"
                  f"workers: 2\nlog:\n  level: INFO\n")
        dynamic = (f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s}}\n"
                   f"    secure: {{rule: \"PathPrefix(`/`)\", service: s, tls: {{}}}}\n"
                   f"  services:\n    s:\n      loadBalancer:\n        servers: [{{url: \"{app.url}\"}}]\n")
        proxy = self.berth(static_yaml=static, wait=False, dynamic_yaml=dynamic)
        wait_for_port(self.web, proc=proxy.proc)
        return proxy

    def serving_pids(self, proxy):
        return [int(p) for p in re.findall(r"started with \d+ workers \(process (\d+)\)", proxy.log_text())]

    def upgrade_by_signal(self, proxy, pid):
        """SIGUSR2 to `pid`; returns the successor's pid once `pid` has exited."""
        before = len(self.serving_pids(proxy))
        os.kill(pid, signal.SIGUSR2)
        wait_until(lambda: len(self.serving_pids(proxy)) > before, timeout=15, step=0.02)
        successor = self.serving_pids(proxy)[-1]
        self.pids.append(successor)
        wait_until(lambda: not alive(pid), timeout=15, step=0.02)
        return successor

    def test_three_upgrades_under_traffic_fail_no_request(self):
        proxy = self.start()
        traffic = Traffic(self.web).start()
        try:
            time.sleep(0.5)
            pid = proxy.proc.pid
            for _ in range(3):
                ok_before = traffic.ok
                pid = self.upgrade_by_signal(proxy, pid)
                wait_until(lambda: traffic.ok > ok_before + 50, timeout=10)  # the new process serves
        finally:
            traffic.stop(timeout=30)
        self.assertEqual(proxy.proc.wait(timeout=5), 0, "the first berth exits 0 after its handover")
        self.assertEqual(traffic.failures, [], f"{len(traffic.failures)} failed of {traffic.ok + len(traffic.failures)}")
        self.assertGreater(traffic.ok, 300)
        self.assertTrue(all(n > 20 for n in traffic.ok_by_client.values()), traffic.ok_by_client)
        self.assertEqual({r[3] for r in traffic.snapshot()}, {"app"})
        print(f"\n  {traffic.ok} requests through 3 upgrades, none failed", end=" ")
        log = proxy.log_text()
        self.assertEqual(log.count("hot upgrade: the new process serves; this one stops accepting and drains"), 3)
        self.assertEqual(log.count("hot upgrade: serving on the sockets of the berth this one replaces"), 3)
        self.assertTrue(alive(pid))
        self.assertEqual(get(self.web, "/")[2], b"app")

    def test_takeover_flag_replaces_the_running_berth(self):
        proxy = self.start()
        traffic = Traffic(self.web).start()
        log = open(os.path.join(self.tmp, "successor.log"), "w")
        successor = subprocess.Popen([BERTH, f"--configFile={self.static}", "--takeover"],
                                     stdout=log, stderr=subprocess.STDOUT)
        try:
            self.assertEqual(proxy.proc.wait(timeout=15), 0)
            ok_before = traffic.ok
            wait_until(lambda: traffic.ok > ok_before + 50, timeout=10)
        finally:
            traffic.stop(timeout=30)
            successor.terminate()
            successor.wait(15)
            log.close()
        self.assertEqual(traffic.failures, [])
        with open(os.path.join(self.tmp, "successor.log")) as f:
            self.assertIn("hot upgrade: serving on the sockets", f.read())

    def test_health_verdicts_carry_over(self):
        app = self.backend("app")
        self.web, dead = free_port(), free_port()
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{self.web}\"\n"
                  f"providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\n    watch: true\n"
                  f"workers: 2\nlog:\n  level: INFO\n")
        dynamic = (f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s}}\n  services:\n    s:\n"
                   f"      loadBalancer:\n        healthCheck: {{path: /, interval: 1h, timeout: 500ms}}\n"
                   f"        servers: [{{url: \"{app.url}\"}}, {{url: \"http://127.0.0.1:{dead}\"}}]\n")
        proxy = self.berth(static_yaml=static, dynamic_yaml=dynamic, wait=False)
        wait_for_port(self.web, proc=proxy.proc)
        wait_until(lambda: "is unhealthy" in proxy.log_text(), timeout=5)
        successor = self.upgrade_by_signal(proxy, proxy.proc.pid)
        self.assertIn("hot upgrade: 1 server(s) down, as the previous berth found them", proxy.log_text())
        # The next check is an hour away: only the carried-over verdict keeps the dead server out.
        for _ in range(10):
            self.assertEqual(get(self.web, "/")[2], b"app")
        self.assertTrue(alive(successor))

    def test_takeover_without_a_running_berth_listens_itself(self):
        port = free_port()
        log = open(os.path.join(self.tmp, "alone.log"), "w")
        p = subprocess.Popen([BERTH, f"--entryPoints.web.address=127.0.0.1:{port}", "--takeover"],
                             stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc=p)
            self.assertEqual(get(port, "/")[0], 404)
        finally:
            p.terminate()
            p.wait(15)
            log.close()
        with open(os.path.join(self.tmp, "alone.log")) as f:
            self.assertIn("no running berth to take over from", f.read())

    def test_successor_that_dies_leaves_the_old_one_serving(self):
        proxy = self.start()
        # A "successor" that takes the sockets and exits without saying it serves.
        path = re.search(r"takes over through (\S+)", proxy.log_text()).group(1)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        self.assertEqual(os.stat(path).st_mode & 0o077, 0, "only its user may connect")
        msg, fds, _, _ = socket.recv_fds(c, 4096, 16)
        self.assertEqual(msg, b"web\nweb\n\n")  # a name per socket, then the servers found down (none)
        for fd in fds:
            os.close(fd)
        c.close()
        wait_until(lambda: "went away before it served" in proxy.log_text(), timeout=5)
        for _ in range(20):
            self.assertEqual(get(self.web, "/")[2], b"app")
        self.assertTrue(alive(proxy.proc.pid))


if __name__ == "__main__":
    main()
