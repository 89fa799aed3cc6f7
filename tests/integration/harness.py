"""Integration-test harness: starts the real build/berth, test backends and other peers on loopback
ports chosen at run time, each bounded in time and stopped by its pid."""
import http.client
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BERTH = os.environ.get("BERTH_BIN", os.path.join(os.path.dirname(__file__), "../../build/berth"))
BACKEND = os.environ.get("BERTH_BACKEND_BIN",
                         os.path.join(os.path.dirname(__file__), "../../build/tests/support/berth_test_backend"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_until(predicate, timeout=5.0, step=0.005):
    """Polls `predicate` until it holds; returns the seconds it took, or fails the test."""
    start = time.time()
    while time.time() - start < timeout:
        if predicate():
            return time.time() - start
        time.sleep(step)
    raise AssertionError("condition not met in time")


def parse_exposition(text):
    """{(name, frozenset(labels.items())): value} of every sample."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, f"not a sample line: {line!r}"
        labels = {}
        if m.group(3):
            for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3)):
                labels[k] = v
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return samples


def value(samples, name, **labels):
    """The sum of `name`'s samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def scrape_until(port, predicate, timeout=5.0):
    """The Prometheus exposition at 127.0.0.1:`port`/metrics once `predicate(parse_exposition(text))`
    holds. An exchange is counted just after its answer has left, so a scrape sent the moment the
    client has the answer may come before (on another worker) and must be tried again."""
    texts = []

    def holds():
        texts.append(get(port, "/metrics")[2].decode())
        return predicate(parse_exposition(texts[-1]))
    wait_until(holds, timeout=timeout)
    return texts[-1]

def stop(proc, sig=signal.SIGTERM, timeout=15.0):
    """Stops a process by its pid; returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Backend:
    """One berth_test_backend process on 127.0.0.1."""

    def __init__(self, name="backend", port=0):
        self.proc = subprocess.Popen([BACKEND, "--listen", f"127.0.0.1:{port}", "--name", name],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"backend did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name

    def stop(self):
        stop(self.proc)
        self.proc.stdout.close()


class RecordingServer:
    """An HTTP/1.1 server on 127.0.0.1 (in this process) that records every request as
    (method, path, headers dict, body bytes) and answers `answer(method, path)` -> (status, headers,
    body); the default answers 200 "recorder". Stopped by the test's cleanup."""

    def __init__(self, answer=None):
        outer = self
        self.requests = []
        self.answer = answer or (lambda method, path: (200, {}, b"recorder"))

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, payload = outer.answer(self.command, self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("X-Backend", "recorder")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_HEAD = handle_one

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Berth:
    """A berth process with a static config (YAML text) and a dynamic config file in a temp dir;
    `env`: variables added to its environment."""

    def __init__(self, tmp, static_yaml=None, dynamic_yaml="", args=(), entry_points=("web",), wait=True, env=None):
        self.tmp = tmp
        self.ports = {name: free_port() for name in entry_points}
        self.dynamic_path = os.path.join(tmp, "dynamic.yml")
        self.write_dynamic(dynamic_yaml)
        if static_yaml is None:
            eps = "".join(f"  {n}:\n    address: \"127.0.0.1:{p}\"\n" for n, p in self.ports.items())
            static_yaml = (f"entryPoints:\n{eps}providers:\n  file:\n    filename: {self.dynamic_path}\n"
                           f"    watch: true\nworkers: 2\nlog:\n  level: DEBUG\n")
        self.static_path = os.path.join(tmp, "berth.yml")
        with open(self.static_path, "w") as f:
            f.write(static_yaml)
        self.log_path = os.path.join(tmp, "berth.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([BERTH, f"--configFile={self.static_path}", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **env} if env else None)
        if wait:
            for p in self.ports.values():
                wait_for_port(p, proc=self.proc)

    @property
    def port(self):
        return next(iter(self.ports.values()))

    def write_dynamic(self, text):
        # Write then rename, as editors and config-management tools do.
        tmp_path = self.dynamic_path + ".tmp"
        with open(tmp_path, "w") as f:
            f.write(text)
        os.replace(tmp_path, self.dynamic_path)

    def log_text(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        was_running = self.proc.poll() is None
        code = stop(self.proc, sig, timeout)
        self.log.close()
        # A berth that died on its own (a crash, a sanitizer report) says why on the test's output:
        # its log goes away with the test's temp dir.
        if not was_running and code not in (0, None):
            with open(self.log_path, errors="replace") as f:
                tail = f.readlines()[-80:]
            sys.stderr.write(f"--- berth exited with {code}; the end of its log:\n" + "".join(tail) + "---\n")
        return code

    def cpu_seconds(self):
        """CPU time (user + system) the berth process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def router_yaml(routers, services):
    """routers: {name: (rule, service, extra_dict)}; services: {name: [urls] or (urls, extra_dict)}."""
    out = ["http:", "  routers:" if routers else "  routers: {}"]
    for name, spec in routers.items():
        rule, service = spec[0], spec[1]
        extra = spec[2] if len(spec) > 2 else {}
        out.append(f"    {name}:")
        out.append(f"      rule: \"{rule}\"")
        out.append(f"      service: {service}")
        for k, v in extra.items():
            out.append(f"      {k}: {v}")
    out.append("  services:" if services else "  services: {}")
    for name, spec in services.items():
        urls, extra = (spec, {}) if isinstance(spec, list) else spec
        out.append(f"    {name}:")
        out.append("      loadBalancer:")
        for k, v in extra.items():
            out.append(f"        {k}: {v}")
        out.append("        servers:" if urls else "        servers: []")
        for u in urls:
            out.append(f"          - url: \"{u}\"")
    return "\n".join(out) + "\n"


class RawClient:
    """A raw HTTP/1.1 client on one TCP connection, to observe keep-alive and framing exactly."""

    def __init__(self, port, timeout=10.0, source=None):
        """`source`: the client address to connect from (any 127/8 address is loopback)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def read_response(self, head_request=False):
        """Returns (status, headers dict lower-case -> value, body bytes)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            k, v = k.strip().lower(), v.strip()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v  # repeated: joined, as HTTP allows
        if head_request or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while b"\r\n\r\n" not in self.buf and not self.buf.startswith(b"\r\n"):
                        self._fill()
                    if self.buf.startswith(b"\r\n"):
                        self.buf = self.buf[2:]
                    else:
                        _, self.buf = self.buf.split(b"\r\n\r\n", 1)
                    return status, headers, body
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
            return status, headers, body
        while True:
            try:
                self._fill()
            except EOFError:
                break
        body, self.buf = self.buf, b""
        return status, headers, body

    def is_closed(self, wait=1.0):
        """True if the server closed the connection (EOF) within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1)
            return data == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(10.0)

    def close(self):
        self.sock.close()


def get(port, path="/", host=None, headers=None, method="GET", body=None, timeout=10.0, source=None):
    """One request on a fresh connection (from `source` if given); returns (status, headers, body)."""
    c = RawClient(port, timeout, source)
    try:
        hdrs = {"Host": host or f"127.0.0.1:{port}"}
        hdrs.update(headers or {})
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + \
              "Connection: close\r\n\r\n"
        c.send(req.encode() + (body or b""))
        return c.read_response(head_request=(method == "HEAD"))
    finally:
        c.close()


class ClientThreads:
    """Client threads (the `loops`, which return once stopping() is true) that run until stop()."""

    def __init__(self, *loops):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=f, daemon=True) for f in loops]

    def stopping(self):
        return self._stop.is_set()

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout=15):
        self._stop.set()
        for t in self._threads:
            t.join(timeout)


class Traffic(ClientThreads):
    """Threads that keep requesting until stopped: a keep-alive HTTP/1.1 client (which, as browsers
    and Go's client do, sends an idempotent request again on a new connection when a reused one
    closed before any answer), one that opens a connection per request, and (`h2`) curl over
    HTTP/2 (TLS: the entry point needs a TLS router) reusing its connection for batches of 20. Records
    (time, client, status, backend) with the backend's X-Backend; `failures` lists the answers that
    are not a 200 from a backend, and the errors."""

    def __init__(self, port, host=None, h2=True, pause=0.0):
        super().__init__(self._keep_alive, self._fresh, *([self._h2] if h2 else []))
        self.port, self.host, self.pause = port, host, pause
        self.records = []
        self.failures = []

    @property
    def ok(self):
        with self._lock:
            return len(self.records) - len(self.failures)

    @property
    def ok_by_client(self):
        out = {"keep-alive": 0, "fresh": 0, "h2": 0}
        for _, client, status, backend in self.snapshot():
            out[client] += status == 200 and bool(backend)
        return out

    def _result(self, client, status, backend, what=""):
        with self._lock:
            self.records.append((time.time(), client, status, backend))
            if status != 200 or not backend:
                self.failures.append(f"{client}: {status} {backend} {what}".strip())

    def snapshot(self):
        with self._lock:
            return list(self.records)

    def backends_since(self, t):
        """The backends of the 200s that started after `t` (keep-alive and fresh: sent after `t`)."""
        return [r[3] for r in self.snapshot() if r[0] > t and r[2] == 200]

    def _keep_alive(self):
        c = None
        headers = {"Host": self.host} if self.host else {}
        while not self.stopping():
            reused = c is not None
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("GET", "/", headers=headers)
                r = c.getresponse()
                r.read()
                self._result("keep-alive", r.status, r.getheader("X-Backend", ""))
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    c = None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                c.close()
                c = None
                if not reused:  # a fresh connection that failed is a failure; a reused one is retried
                    self._result("keep-alive", 0, "", repr(e))
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                self._result("keep-alive", 0, "", repr(e))
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    def _fresh(self):
        while not self.stopping():
            try:
                status, headers, _ = get(self.port, "/", host=self.host)
                self._result("fresh", status, headers.get("x-backend", ""))
            except Exception as e:  # noqa: BLE001
                self._result("fresh", 0, "", repr(e))
            time.sleep(self.pause)  # a pause keeps long runs of new connections clear of TIME_WAIT exhaustion

    def _h2(self):
        # HTTP/2 over TLS (curl 7.88 cannot reuse an h2c prior-knowledge connection, with any server).
        url = f"https://127.0.0.1:{self.port}/"
        host = ["-H", f"Host: {self.host}"] if self.host else []
        while not self.stopping():
            started = time.time()
            r = subprocess.run(["curl", "-sk", "--http2", *host, "-w", "%{http_code} %header{x-backend}\n",
                                "--max-time", "10", *[a for _ in range(20) for a in ("-o", "/dev/null", url)]],
                               capture_output=True, text=True, timeout=30)
            lines = r.stdout.splitlines()
            for line in lines:
                code, _, backend = line.partition(" ")
                with self._lock:  # the batch's requests count from its start
                    self.records.append((started, "h2", int(code) if code.isdigit() else 0, backend.strip()))
                    if code != "200" or not backend.strip():
                        self.failures.append(f"h2: {line}")
            if r.returncode != 0 or len(lines) != 20:
                self._result("h2", 0, "", f"curl exit {r.returncode}, {len(lines)} answers: {r.stderr[-200:]}")


def admin(*args, timeout=90):
    """Runs `berth <args>` (deploy, rollback, rollout, list...) against this test's admin socket;
    returns the CompletedProcess (text)."""
    return subprocess.run([BERTH, *args], capture_output=True, text=True, timeout=timeout)


class BerthTestCase(unittest.TestCase):
    """Gives each test a temp dir and stops every process it started, even on failure."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="berth-it.")
        self.tmp = self._tmp.name
        self._procs = []
        # Each test's berths (and `berth deploy` & co.) use an admin socket and deploy state of its own.
        os.environ["BERTH_ADMIN_SOCKET"] = os.path.join(self.tmp, "admin.sock")
        os.environ["BERTH_DEPLOY_STATE"] = os.path.join(self.tmp, "deploy-state.json")

    def tearDown(self):
        for p in reversed(self._procs):
            try:
                p.stop()
            except Exception:
                pass
        self._tmp.cleanup()

    def backend(self, name="backend"):
        b = Backend(name)
        self._procs.append(b)
        return b

    def recorder(self, answer=None):
        r = RecordingServer(answer)
        self._procs.append(r)
        return r

    def berth(self, **kw):
        b = Berth(self.tmp, **kw)
        self._procs.append(b)
        return b


def main():
    import warnings
    warnings.simplefilter("ignore", ResourceWarning)  # sockets left to the GC in failure paths
    unittest.main(verbosity=2)
