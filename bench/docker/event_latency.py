#!/usr/bin/python3
"""From a Docker event to the routing change being live, measured from outside berth.

A private dockerd (tests/integration/docker_harness.py), Release build/berth with the docker
provider, and three kinds of change, ROUNDS times each:
  start    a container without a health check starts      -> first 200 from it through berth
  healthy  a container's health check turns healthy        -> first 200 from it through berth
  kill     `docker stop` of the only container (it keeps serving: it ignores SIGTERM)
                                                            -> first 503 through berth
The event's time is dockerd's own (timeNano on /events, read by this script on its own
connection); the change's time is the first answer of a client that polls berth back to back on
a keep-alive connection (about 0.1-0.3 ms per request), so each figure includes up to one poll.
Usage: bench/docker/event_latency.py [ROUNDS]   (root; ~1 minute for 10 rounds)"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(ROOT, "tests/integration"))
os.environ.setdefault("BERTH_BIN", os.path.join(ROOT, "build/berth"))
import docker_harness  # noqa: E402
from harness import free_port, stop, wait_for_port  # noqa: E402


class Events(threading.Thread):
    """dockerd's container events, as (timeNano, action, name), read on a connection of our own."""

    def __init__(self, socket_path):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(socket_path)
        filters = '{"type":["container"],"event":["start","kill","health_status"]}'
        self.sock.sendall(("GET /v1.41/events?filters=" + urlquote(filters) +
                           " HTTP/1.0\r\nHost: docker\r\n\r\n").encode())
        self.seen, self.lock = [], threading.Lock()

    def run(self):
        buf = b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                line = line.strip()
                if not line.startswith(b"{"):
                    continue
                e = json.loads(line)
                with self.lock:
                    self.seen.append((e["timeNano"], e["Action"], e["Actor"]["Attributes"].get("name")))

    def wait(self, action, name, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for t, a, n in self.seen:
                    if a == action and n == name:
                        return t
            time.sleep(0.005)
        raise RuntimeError(f"no {action} event for {name}")


def urlquote(s):
    return "".join(c if c.isalnum() or c in "-_.~" else "%%%02X" % ord(c) for c in s)


class Poller(threading.Thread):
    """GET / with Host `host` back to back on one keep-alive connection: (time_ns, status, body)."""

    def __init__(self, port, host):
        super().__init__(daemon=True)
        self.port, self.host, self.samples, self.running = port, host, [], True

    def run(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        req = f"GET / HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
        f = s.makefile("rb")
        while self.running:
            s.sendall(req)
            status = int(f.readline().split()[1])
            length = 0
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = f.read(length)
            self.samples.append((time.time_ns(), status, body))

    def first_after(self, t_ns, predicate):
        for t, status, body in list(self.samples):
            if t >= t_ns and predicate(status, body):
                return (t - t_ns) / 1e6
        return None


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    reason = docker_harness.unavailable()
    if reason:
        sys.exit(f"cannot run: {reason}")
    d = docker_harness.Dockerd()
    tmp = tempfile.mkdtemp(prefix="berth-evlat.")
    web = free_port()
    with open(f"{tmp}/berth.yml", "w") as f:
        f.write(f'entryPoints:\n  web:\n    address: "127.0.0.1:{web}"\n'
                f'providers:\n  docker:\n    endpoint: "{d.host}"\nworkers: 2\n')
    berth = subprocess.Popen([os.environ["BERTH_BIN"], f"--configFile={tmp}/berth.yml"],
                             stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/berth.log", "w"))
    results = {"start": [], "healthy": [], "kill": []}
    try:
        wait_for_port(web, proc=berth)
        events = Events(d.socket)
        events.start()
        for r in range(rounds):
            for kind in results:
                name, port = f"{kind}{r}", free_port()
                host = f"{name}.test"
                labels = {f"traefik.http.routers.{name}.rule": f"Host(`{host}`)",
                          f"traefik.http.services.{name}.loadbalancer.server.port": str(port)}
                poller = Poller(web, host)
                poller.start()
                if kind == "start":
                    d.run_container(name, docker_harness.backend_command((name, port)), labels)
                    t = events.wait("start", name)
                    want = lambda s, b: s == 200 and b == name.encode()  # noqa: E731
                elif kind == "healthy":
                    d.run_container(name, docker_harness.backend_command((name, port), ready=True), labels,
                                    docker_harness.health_args(port, interval="100ms"))
                    t = events.wait("health_status: healthy", name)
                    want = lambda s, b: s == 200 and b == name.encode()  # noqa: E731
                else:
                    d.run_container(name, docker_harness.backend_command((name, port), ignore_term=True), labels)
                    docker_harness.wait_serving(port)
                    deadline = time.time() + 10
                    while not poller.first_after(0, lambda s, b: s == 200) and time.time() < deadline:
                        time.sleep(0.01)
                    threading.Thread(target=d.run, args=("stop", "-t", "3", name), daemon=True).start()
                    t = events.wait("kill", name)
                    want = lambda s, b: s == 503  # noqa: E731
                deadline = time.time() + 10
                ms = None
                while ms is None and time.time() < deadline:
                    time.sleep(0.01)
                    ms = poller.first_after(t, want)
                poller.running = False
                poller.join(5)
                if ms is None:
                    raise RuntimeError(f"{kind}: the change never showed through berth")
                results[kind].append(ms)
            d.rm_all()
    finally:
        stop(berth)
        d.stop()
    print(f"event -> routing change live through berth, ms over {rounds} rounds (includes up to one poll)")
    print(f"{'change':<9} {'p50':>7} {'p90':>7} {'max':>7}")
    for kind, v in results.items():
        v.sort()
        print(f"{kind:<9} {statistics.median(v):7.2f} {v[int(len(v) * 0.9) - 1 if len(v) > 1 else 0]:7.2f} {v[-1]:7.2f}")


if __name__ == "__main__":
    main()
