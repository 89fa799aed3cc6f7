"""Access logs and berth's own log through the real binary: Traefik's common, genericCLF and json
lines field by field, the filters, header modes, SIGUSR1 reopening after a rename (logrotate),
a failing disk that never holds requests up, and log.format json to log.filePath."""
import calendar
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

from harness import BERTH, Berth, BerthTestCase, free_port, get, main, wait_for_port, wait_until

CLF = re.compile(r'^(\S+) - (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d+|-) (\d+|-) "((?:[^"\\]|\\.)*)" '
                 r'"((?:[^"\\]|\\.)*)" (\d+|-) "([^"]*)" "([^"]*)" (\d+)ms$')
GENERIC_CLF = re.compile(r'^(\S+) - (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d+|-) (\d+|-) "((?:[^"\\]|\\.)*)" '
                         r'"((?:[^"\\]|\\.)*)"$')
RFC3339_NANO = re.compile(r'^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$')


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def clf_time(text):
    """Seconds since the epoch of "24/Jul/2026:10:33:15 +0000"."""
    t = time.strptime(text, "%d/%b/%Y:%H:%M:%S %z")
    return calendar.timegm(t) - t.tm_gmtoff


def rfc3339(text):
    """Seconds since the epoch of Go's RFC 3339 (nanoseconds, trailing zeros trimmed)."""
    m = RFC3339_NANO.match(text)
    assert m, text
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = m.group(7)
    assert frac is None or not frac.endswith("0"), f"Go trims trailing zeros: {text}"
    zone = m.group(8)
    offset = 0 if zone == "Z" else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return calendar.timegm((y, mo, d, h, mi, s)) + float(frac or 0) - offset


class AccessLogs(BerthTestCase):
    def setUp(self):
        super().setUp()
        self.alpha = self.backend("alpha")
        self.access_path = os.path.join(self.tmp, "logs", "access.log")  # logs/ does not exist yet

    def start(self, access_log, log="  level: DEBUG\n", routers="", middlewares="", services="", extra=""):
        """berth with `accessLog:` and `log:` sections as given; router alpha (Host alpha.test) -> alpha."""
        port = free_port()
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n"
                  f"providers:\n  file:\n    filename: {os.path.join(self.tmp, 'dynamic.yml')}\n    watch: true\n"
                  f"workers: 2\n{extra}log:\n{log}accessLog:\n{access_log}")
        dynamic = (f"http:\n  routers:\n    alpha:\n      rule: \"Host(`alpha.test`)\"\n      service: alpha\n{routers}"
                   + (f"  middlewares:\n{middlewares}" if middlewares else "")
                   + f"  services:\n    alpha:\n      loadBalancer:\n        servers: [{{url: \"{self.alpha.url}\"}}]\n"
                   + services)
        self.proxy = self.berth(static_yaml=static, dynamic_yaml=dynamic, entry_points=(), wait=False)
        wait_for_port(port, proc=self.proxy.proc)
        return port

    def lines(self, path=None):
        path = path or self.access_path
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertTrue(text == "" or text.endswith("\n"), "whole lines only")
        return text.splitlines()

    def wait_lines(self, n, path=None):
        wait_until(lambda: len(self.lines(path)) >= n, timeout=5)
        lines = self.lines(path)
        self.assertEqual(len(lines), n, lines)
        return lines

    def test_common_line_field_by_field(self):
        port = self.start(f"  filePath: {self.access_path}\n"
                          "  fields:\n    headers:\n      names:\n        User-Agent: keep\n        Referer: keep\n")
        before = time.time()
        status, _, body = get(port, "/echo?x=1", host="alpha.test",
                              headers={"User-Agent": "it-agent/1.0", "Referer": "http://ref.test/\"q\""})
        self.assertEqual(status, 200)
        self.assertEqual(get(port, "/missing", host="nobody.test")[0], 404)
        lines = self.wait_lines(2)
        by_path = {}
        for line in lines:
            m = CLF.match(line)
            self.assertIsNotNone(m, line)
            by_path[m.group(5)] = m.groups()
        host, user, stamp, method, path, proto, code, size, referer, agent, count, router, url, ms = by_path["/echo?x=1"]
        self.assertEqual((host, user, method, proto, code), ("127.0.0.1", "-", "GET", "HTTP/1.1", "200"))
        self.assertTrue(stamp.endswith(" +0000"), stamp)
        self.assertLessEqual(abs(clf_time(stamp) - before), 5)
        self.assertEqual(int(size), len(body))
        self.assertEqual(referer, 'http://ref.test/\\"q\\"')  # quotes escaped inside the quoted field
        self.assertEqual(agent, "it-agent/1.0")
        self.assertEqual((router, url), ("alpha@file", self.alpha.url))
        self.assertLess(int(ms), 5000)
        # Berth's own 404, before any router: the names are dashes.
        host, user, stamp, method, path, proto, code, size, referer, agent, count2, router, url, ms = by_path["/missing"]
        self.assertEqual((code, referer, agent, router, url), ("404", "-", "-", "-", "-"))
        self.assertEqual(int(size), len(b"404 page not found\n"))
        self.assertNotEqual(count, count2)
        self.assertEqual(sorted([int(count), int(count2)])[1] - sorted([int(count), int(count2)])[0], 1)

    def test_big_bodies_do_not_garble_the_logged_heads(self):
        # The request body and the response body reuse the buffers the heads were read into: the
        # line must still show the heads as they were.
        port = self.start(f"  filePath: {self.access_path}\n  format: json\n"
                          "  fields:\n    headers:\n      names:\n        User-Agent: keep\n        X-Backend: keep\n")
        status, _, body = get(port, "/sink", host="alpha.test", method="POST", body=b"z" * 300_000,
                              headers={"User-Agent": "uploader/1"})
        self.assertEqual((status, body), (200, b"300000"))
        status, _, body = get(port, "/size/400000", host="alpha.test", headers={"User-Agent": "downloader/1"})
        self.assertEqual((status, len(body)), (200, 400_000))
        up, down = (json.loads(line) for line in self.wait_lines(2))
        self.assertEqual((up["RequestMethod"], up["RequestPath"], up["request_User-Agent"]), ("POST", "/sink", "uploader/1"))
        self.assertEqual(up["RequestContentSize"], 300_000)
        self.assertEqual(up["origin_X-Backend"], "alpha")
        self.assertEqual((down["RequestMethod"], down["RequestPath"], down["request_User-Agent"]),
                         ("GET", "/size/400000", "downloader/1"))
        self.assertEqual(down["origin_X-Backend"], "alpha")
        self.assertEqual(down["DownstreamContentSize"], 400_000)

    def test_http2_lines_count_the_body_alone(self):
        # Over HTTP/2 the response head goes out as fields (no HTTP/1.1 head is written), and a
        # stream's size is its DATA: the body's bytes, as over HTTP/1.1.
        port = self.start(f"  filePath: {self.access_path}\n  format: json\n")
        sizes = {"/size/5000": 5000, "/chunked/3000": 3000, "/status/204": 0}
        for path in sizes:
            out = subprocess.run(["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", "-o", "/dev/null",
                                  "-w", "%{http_version} %{size_download}", "--resolve", f"alpha.test:{port}:127.0.0.1",
                                  f"http://alpha.test:{port}{path}"], capture_output=True, text=True, timeout=20)
            self.assertEqual(out.stdout, f"2 {sizes[path]}", out.stderr)
        # A body sent without content-length crosses the exchange chunked: its size is still the DATA's.
        upload = os.urandom(70_000)
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", "-T", "-",
                              "--resolve", f"alpha.test:{port}:127.0.0.1", f"http://alpha.test:{port}/sink"],
                             input=upload, capture_output=True, timeout=20)
        self.assertEqual(out.stdout, b"70000", out.stderr)
        sizes["/sink"] = len(b"70000")
        lines = [json.loads(line) for line in self.wait_lines(4)]
        for o in lines:
            self.assertEqual(o["RequestProtocol"], "HTTP/2.0")
            self.assertEqual(o["DownstreamContentSize"], sizes[o["RequestPath"]], o)
            self.assertEqual(o["OriginContentSize"], sizes[o["RequestPath"]], o)
            self.assertEqual(o["RequestContentSize"], 70_000 if o["RequestPath"] == "/sink" else 0, o)

    def test_chunked_and_compressed_bodies_count_without_their_framing(self):
        # Over HTTP/1.1 berth relays a chunked body as it came, and chunks what it compresses:
        # the sizes are still the body's bytes, as the client's reader sees them (Traefik's).
        port = self.start(f"  filePath: {self.access_path}\n  format: json\n",
                          routers="    zipped:\n      rule: \"Host(`zip.test`)\"\n      service: alpha\n"
                                  "      middlewares: [zip]\n",
                          middlewares="    zip:\n      compress: {}\n")
        got = {}
        gzip = ["-H", "Accept-Encoding: gzip"]
        for host, path, extra in (("alpha.test", "/chunked/3000", []), ("zip.test", "/size/20000", gzip),
                                  ("zip.test", "/chunked/30000", gzip)):
            head_path = os.path.join(self.tmp, "head.txt")
            out = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-D", head_path,
                                  "-w", "%{size_download}", "-H", f"Host: {host}", *extra,
                                  f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=20)
            self.assertEqual(out.returncode, 0, out.stderr)
            head = read(head_path).lower()
            self.assertIn("transfer-encoding: chunked", head)   # framed on the wire
            self.assertEqual("content-encoding: gzip" in head, host == "zip.test", head)
            got[(host, path)] = int(out.stdout)
        self.assertEqual(got[("alpha.test", "/chunked/3000")], 3000)
        lines = [json.loads(line) for line in self.wait_lines(3)]
        for o in lines:
            self.assertEqual(o["DownstreamContentSize"], got[(o["RequestHost"], o["RequestPath"])], o)
            if o["RequestHost"] == "alpha.test":  # passed on as it came
                self.assertEqual(o["OriginContentSize"], 3000, o)

    def test_chunked_uploads_count_without_their_framing(self):
        # RequestContentSize is the chunks' data, whichever way berth takes the body in: whole with
        # the head, relayed as it comes, stored by the buffering middleware, or pumped into an
        # HTTP/2 stream to an h2c server (a second berth in front of the backend).
        inner_dir = os.path.join(self.tmp, "inner")
        os.makedirs(inner_dir)
        inner_port = free_port()
        inner = Berth(inner_dir, static_yaml=(
            f"entryPoints:\n  web:\n    address: \"127.0.0.1:{inner_port}\"\n"
            f"providers:\n  file:\n    filename: {inner_dir}/dynamic.yml\nlog:\n  level: DEBUG\n"),
            dynamic_yaml=("http:\n  routers:\n    all:\n      rule: \"PathPrefix(`/`)\"\n      service: alpha\n"
                          f"  services:\n    alpha:\n      loadBalancer:\n        servers: [{{url: \"{self.alpha.url}\"}}]\n"),
            wait=False)
        self._procs.append(inner)
        wait_for_port(inner_port, proc=inner.proc)
        port = self.start(f"  filePath: {self.access_path}\n  format: json\n",
                          routers="    buffered:\n      rule: \"Host(`buf.test`)\"\n      service: alpha\n"
                                  "      middlewares: [buf]\n"
                                  "    pumped:\n      rule: \"Host(`h2.test`)\"\n      service: inner\n",
                          middlewares="    buf:\n      buffering: {}\n",
                          services=("    inner:\n      loadBalancer:\n"
                                    f"        servers: [{{url: \"h2c://127.0.0.1:{inner_port}\"}}]\n"))
        cases = (("alpha.test", "/sink?whole", [b"a" * 10] * 20, True),
                 ("alpha.test", "/sink?relayed", [b"b" * 1000] * 300, False),
                 ("buf.test", "/sink?stored", [b"c" * 10] * 200, False),
                 ("h2.test", "/sink?pumped", [b"d" * 1000] * 300, False))
        for host, target, chunks, one_write in cases:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                head = f"POST {target} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                framed = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks] + [b"0\r\nX-Trailer: t\r\n\r\n"]
                if one_write:
                    s.sendall(head + b"".join(framed))
                else:
                    s.sendall(head)
                    for piece in framed:
                        s.sendall(piece)
                r = http.client.HTTPResponse(s)
                r.begin()
                self.assertEqual((r.status, int(r.read())), (200, sum(map(len, chunks))), target)
        lines = {json.loads(line)["RequestPath"]: json.loads(line) for line in self.wait_lines(len(cases))}
        for host, target, chunks, _ in cases:
            self.assertEqual(lines[target]["RequestContentSize"], sum(map(len, chunks)), lines[target])

    def test_generic_clf_stops_after_the_user_agent(self):
        port = self.start(f"  filePath: {self.access_path}\n  format: genericCLF\n")
        self.assertEqual(get(port, "/echo", host="alpha.test", headers={"User-Agent": "it"})[0], 200)
        line = self.wait_lines(1)[0]
        m = GENERIC_CLF.match(line)
        self.assertIsNotNone(m, line)
        self.assertEqual(m.group(4, 5, 6, 7), ("GET", "/echo", "HTTP/1.1", "200"))
        self.assertEqual(m.group(9, 10), ("-", "-"))  # headers are dropped by default, as in Traefik
        self.assertTrue(line.endswith('"-" "-"'), line)

    def test_json_fields(self):
        port = self.start(f"  filePath: {self.access_path}\n  format: json\n"
                          "  fields:\n    names:\n      StartLocal: drop\n"
                          "    headers:\n      defaultMode: keep\n      names:\n        Authorization: redact\n"
                          "        X-Drop-Me: drop\n")
        before = time.time()
        status, _, body = get(port, "/echo/json?q=1", host="alpha.test:8000", method="POST", body=b"hello",
                              headers={"User-Agent": "json-agent", "Authorization": "Bearer secret",
                                       "X-Drop-Me": "1", "X-Multi": "a"})
        self.assertEqual(status, 200)
        line = self.wait_lines(1)[0]
        o = json.loads(line)
        keys = list(o.keys())
        self.assertEqual(keys, sorted(keys), "keys in encoding/json's order")
        self.assertEqual(o["ClientHost"], "127.0.0.1")
        self.assertRegex(o["ClientPort"], r"^\d+$")  # a string, as in Traefik
        self.assertEqual(o["ClientAddr"], f"127.0.0.1:{o['ClientPort']}")
        self.assertEqual(o["ClientUsername"], "-")
        self.assertEqual(o["DownstreamStatus"], 200)
        self.assertEqual(o["DownstreamContentSize"], len(body))
        self.assertEqual(o["OriginStatus"], 200)
        self.assertIsInstance(o["Duration"], int)
        self.assertGreater(o["Duration"], 0)
        self.assertLessEqual(o["OriginDuration"], o["Duration"])
        self.assertEqual(o["Overhead"], o["Duration"] - o["OriginDuration"])
        self.assertEqual(o["RequestAddr"], "alpha.test:8000")
        self.assertEqual((o["RequestHost"], o["RequestPort"]), ("alpha.test", "8000"))
        self.assertEqual(o["RequestContentSize"], 5)
        self.assertIsInstance(o["RequestCount"], int)
        self.assertEqual((o["RequestMethod"], o["RequestPath"], o["RequestProtocol"], o["RequestScheme"]),
                         ("POST", "/echo/json?q=1", "HTTP/1.1", "http"))
        self.assertEqual(o["RetryAttempts"], 0)
        self.assertEqual((o["RouterName"], o["ServiceName"]), ("alpha@file", "alpha@file"))
        self.assertEqual(o["ServiceURL"], self.alpha.url)
        self.assertEqual(o["ServiceAddr"], f"127.0.0.1:{self.alpha.port}")
        self.assertNotIn("StartLocal", o)  # dropped by fields.names
        self.assertTrue(o["StartUTC"].endswith("Z"))
        self.assertLessEqual(abs(rfc3339(o["StartUTC"]) - before), 5)
        self.assertNotIn("TLSVersion", o)
        self.assertEqual((o["entryPointName"], o["level"], o["msg"]), ("web", "info", ""))
        self.assertLessEqual(abs(rfc3339(o["time"]) - before), 5)
        self.assertEqual(o["request_User-Agent"], "json-agent")
        self.assertEqual(o["request_Authorization"], "REDACTED")
        self.assertEqual(o["request_X-Multi"], "a")
        self.assertNotIn("request_X-Drop-Me", o)
        self.assertNotIn("request_Host", o)
        self.assertEqual(o["origin_Content-Type"], "application/json")
        self.assertEqual(o["downstream_Content-Type"], "application/json")

    def test_filters_keep_matching_lines_only(self):
        dead = free_port()
        port = self.start(f"  filePath: {self.access_path}\n  format: json\n"
                          "  filters:\n    statusCodes: [\"404\", \"500-599\"]\n    retryAttempts: true\n"
                          "    minDuration: 250ms\n",
                          routers="    flaky:\n      rule: \"Host(`flaky.test`)\"\n      service: flaky\n"
                                  "      middlewares: [again]\n",
                          middlewares="    again:\n      retry: {attempts: 2}\n",
                          services=f"    flaky:\n      loadBalancer:\n        servers: [{{url: \"http://127.0.0.1:{dead}\"}},"
                                   f" {{url: \"{self.alpha.url}\"}}]\n")
        base = len(self.lines())
        self.assertEqual(get(port, "/fast", host="alpha.test")[0], 200)           # no filter matches
        self.assertEqual(get(port, "/status/404", host="alpha.test")[0], 404)     # statusCodes
        self.assertEqual(get(port, "/status/503", host="alpha.test")[0], 503)     # statusCodes
        self.assertEqual(get(port, "/delay/400", host="alpha.test")[0], 200)      # minDuration
        for _ in range(6):
            self.assertEqual(get(port, "/retried", host="flaky.test")[0], 200)   # some retried
        time.sleep(0.5)
        lines = [json.loads(line) for line in self.lines()[base:]]
        paths = [o["RequestPath"] for o in lines]
        self.assertNotIn("/fast", paths)
        for p in ("/status/404", "/status/503", "/delay/400"):
            self.assertIn(p, paths)
        retried = [o for o in lines if o["RequestPath"] == "/retried"]
        self.assertGreaterEqual(len(retried), 1, "each worker's round robin sends one of two to the dead server")
        for o in retried:
            self.assertGreaterEqual(o["RetryAttempts"], 1)
            self.assertEqual(o["DownstreamStatus"], 200)
        delayed = [o for o in lines if o["RequestPath"] == "/delay/400"][0]
        self.assertGreater(delayed["Duration"], 250_000_000)

    def test_sigusr1_reopens_both_logs_after_a_rename(self):
        own = os.path.join(self.tmp, "own", "berth.log")
        port = self.start(f"  filePath: {self.access_path}\n",
                          log=f"  level: INFO\n  filePath: {own}\n")
        self.assertEqual(get(port, "/one", host="alpha.test")[0], 200)
        self.wait_lines(1)
        wait_until(lambda: os.path.exists(own) and "started" in read(own), timeout=5)
        os.rename(self.access_path, self.access_path + ".1")
        os.rename(own, own + ".1")
        # Lines written between the rename and the signal still go to the renamed files.
        self.assertEqual(get(port, "/two", host="alpha.test")[0], 200)
        wait_until(lambda: len(self.lines(self.access_path + ".1")) == 2, timeout=5)
        self.proxy.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: os.path.exists(self.access_path) and os.path.exists(own), timeout=5)
        self.assertEqual(get(port, "/three", host="alpha.test")[0], 200)
        new = self.wait_lines(1)
        self.assertIn('"GET /three HTTP/1.1" 200', new[0])
        old = self.lines(self.access_path + ".1")
        self.assertEqual([CLF.match(line).group(5) for line in old], ["/one", "/two"])
        wait_until(lambda: "SIGUSR1" in read(own), timeout=5)
        self.assertNotIn("SIGUSR1", read(own + ".1"))
        # Still alive and serving after the signal; a second one is handled too.
        self.proxy.proc.send_signal(signal.SIGUSR1)
        self.assertEqual(get(port, "/four", host="alpha.test")[0], 200)
        self.wait_lines(2)
        self.assertEqual(self.proxy.stop(), 0)

    def test_own_log_as_json_to_a_file(self):
        own = os.path.join(self.tmp, "own", "berth.log")
        port = self.start("  format: common\n", log=f"  level: DEBUG\n  format: json\n  filePath: {own}\n")
        self.assertEqual(get(port, "/", host="alpha.test")[0], 200)
        wait_until(lambda: os.path.exists(own) and "started with" in read(own), timeout=5)
        self.assertEqual(self.proxy.stop(), 0)
        lines = read(own).splitlines()
        self.assertGreater(len(lines), 2)
        levels = set()
        for line in lines:
            o = json.loads(line)
            self.assertEqual(list(o.keys()), ["level", "time", "message"], line)
            self.assertRegex(o["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            levels.add(o["level"])
        self.assertTrue(levels <= {"debug", "info", "warn", "error"}, levels)
        self.assertIn("info", levels)
        self.assertTrue(any("berth stopped" in json.loads(line)["message"] for line in lines))
        # Nothing of berth's own log went to stderr; the access log (no filePath) went to stdout.
        out = read(self.proxy.log_path)
        self.assertNotIn("started with", out)
        self.assertRegex(out, r'127\.0\.0\.1 - - \[[^\]]+\] "GET / HTTP/1\.1" 200 \d+ "-" "-" \d+ "alpha@file"')

    def test_a_failing_disk_drops_lines_but_never_requests(self):
        if not os.access("/dev/full", os.W_OK):
            self.skipTest("no /dev/full")
        port = self.start("  filePath: /dev/full\n  format: json\n",
                          extra="metrics:\n  prometheus:\n    entryPoint: web\n")
        t0 = time.time()
        for i in range(50):
            self.assertEqual(get(port, f"/n{i}", host="alpha.test")[0], 200)
        self.assertLess(time.time() - t0, 20)
        wait_until(lambda: "cannot write to /dev/full" in self.proxy.log_text(), timeout=5)
        self.assertEqual(self.proxy.log_text().count("cannot write to /dev/full"), 1, "logged once, not per line")
        metrics = get(port, "/metrics")[2].decode()
        dropped = re.search(r"^berth_accesslog_dropped_lines_total (\d+)$", metrics, re.M)
        self.assertTrue(dropped, metrics[-1500:])
        wait_until(lambda: int(re.search(r"^berth_accesslog_dropped_lines_total (\d+)$",
                                         get(port, "/metrics")[2].decode(), re.M).group(1)) == 50, timeout=5)
        self.assertEqual(self.proxy.stop(), 0)

    def test_internal_answers_are_logged_only_with_add_internals(self):
        port = self.start(f"  filePath: {self.access_path}\n", extra="ping:\n  entryPoint: web\n")
        self.assertEqual(get(port, "/ping", host="alpha.test")[0], 200)
        self.assertEqual(get(port, "/x", host="alpha.test")[0], 200)
        self.assertNotIn("/ping", "\n".join(self.wait_lines(1)))
        self.proxy.stop()
        os.remove(self.access_path)
        port = self.start(f"  filePath: {self.access_path}\n  addInternals: true\n", extra="ping:\n  entryPoint: web\n")
        self.assertEqual(get(port, "/ping", host="alpha.test")[0], 200)
        line = self.wait_lines(1)[0]
        self.assertIn('"GET /ping HTTP/1.1" 200', line)
        self.assertIn('"ping@internal"', line)

    def test_a_log_file_that_cannot_be_opened_stops_the_start(self):
        blocker = os.path.join(self.tmp, "blocker")
        with open(blocker, "w") as f:
            f.write("a file where a directory should be\n")
        static = os.path.join(self.tmp, "bad.yml")
        with open(static, "w") as f:
            f.write(f"entryPoints:\n  web:\n    address: \"127.0.0.1:{free_port()}\"\n"
                    f"accessLog:\n  filePath: {blocker}/access.log\n")
        r = subprocess.run([BERTH, f"--configFile={static}"], capture_output=True, timeout=30, text=True)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("accessLog.filePath", r.stderr)
        self.assertIn(f"{blocker}/access.log", r.stderr)
        # The same for berth's own log.
        with open(static, "w") as f:
            f.write(f"entryPoints:\n  web:\n    address: \"127.0.0.1:{free_port()}\"\n"
                    f"log:\n  filePath: {blocker}/berth.log\n")
        r = subprocess.run([BERTH, f"--configFile={static}"], capture_output=True, timeout=30, text=True)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(f"log.filePath: {blocker}/berth.log", r.stderr)

    def test_bad_access_log_config_names_its_place(self):
        static = os.path.join(self.tmp, "bad.yml")
        with open(static, "w") as f:
            f.write("entryPoints:\n  web:\n    address: 127.0.0.1:1\naccessLog:\n  format: xml\n"
                    "  filters:\n    statusCodes: [\"600\"]\n  fields:\n    headers:\n      defaultMode: hide\n"
                    "log:\n  format: yaml\n")
        r = subprocess.run([BERTH, "check", f"--configFile={static}"], capture_output=True, timeout=30, text=True)
        self.assertNotEqual(r.returncode, 0)
        out = r.stdout + r.stderr
        self.assertIn("bad.yml:5:11: invalid accessLog.format \"xml\"", out)
        self.assertIn("bad.yml:7:19", out)
        self.assertIn("bad.yml:10:20", out)
        self.assertIn("bad.yml:12:11: invalid log.format \"yaml\"", out)


if __name__ == "__main__":
    main()
