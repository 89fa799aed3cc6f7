"""Declarative scenarios: every tests/scenarios/*.yaml is a list of cases (backends, config, requests,
expected answers) and each case becomes one test method, test_<file>_<name>, so a routing feature
adds a data file, not code. The format is described in tests/scenarios/README.md.

Each scenario gets its own berth_test_backend processes and its own berth (static config generated
here, dynamic config from the scenario), all on 127.0.0.1 ports chosen at run time and stopped by
BerthTestCase when the test ends. A scenario with an unknown key or placeholder fails, naming it."""
import collections
import glob
import ipaddress
import json
import os
import re
import socket
import time

import yaml

from harness import BerthTestCase, RawClient, free_port, main, wait_for_port

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scenarios")
SCENARIO_KEYS = {"name", "backends", "static", "dynamic", "requests", "log_contains", "cookie_jar"}
REQUEST_KEYS = {"path", "method", "host", "headers", "body", "repeat", "source", "entry_point", "expect"}
EXPECT_KEYS = {"status", "backend", "body", "body_contains", "headers", "headers_match", "headers_absent",
               "upstream_headers", "upstream_headers_absent", "backend_counts"}
RESERVED_NAMES = {"dead", "hostname"}
PLACEHOLDER = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


class ScenarioError(Exception):
    """The scenario itself is malformed (as opposed to berth answering wrongly)."""


def check_keys(where, value, allowed):
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def validate(sc):
    """Rejects typos and wrong shapes before anything is started."""
    check_keys("scenario", sc, SCENARIO_KEYS)
    for key in ("name", "dynamic", "requests"):
        if key not in sc:
            raise ScenarioError(f"scenario: missing required key {key!r}")
    backends = sc.get("backends", [])
    if not isinstance(backends, list) or not all(isinstance(b, str) and re.fullmatch(r"[\w-]+", b)
                                                 for b in backends):
        raise ScenarioError(f"backends: expected a list of simple names, got {backends!r}")
    if RESERVED_NAMES & set(backends) or len(set(backends)) != len(backends):
        raise ScenarioError(f"backends: duplicate or reserved name ({sorted(RESERVED_NAMES)}) in {backends}")
    if not isinstance(sc.get("static", {}), dict):
        raise ScenarioError("static: expected a mapping of static config keys")
    for name, ep in (sc.get("static", {}).get("entryPoints") or {}).items():
        if isinstance(ep, dict) and "address" in ep:
            raise ScenarioError(f"static.entryPoints.{name}.address: addresses are generated (127.0.0.1:free port)")
    entry_points = {"web", *(sc.get("static", {}).get("entryPoints") or {})}
    if not isinstance(sc["requests"], list) or not sc["requests"]:
        raise ScenarioError("requests: expected a non-empty list")
    for i, req in enumerate(sc["requests"], 1):
        check_keys(f"request #{i}", req, REQUEST_KEYS)
        if "path" not in req or "expect" not in req:
            raise ScenarioError(f"request #{i}: 'path' and 'expect' are required")
        check_keys(f"request #{i} expect", req["expect"], EXPECT_KEYS)
        if req.get("entry_point", "web") not in entry_points:
            raise ScenarioError(f"request #{i}: unknown entry_point {req['entry_point']!r}; known: {sorted(entry_points)}")
        if "source" in req and not ipaddress.ip_address(req["source"]).is_loopback:
            raise ScenarioError(f"request #{i}: source {req['source']} is not a loopback address")
        if "backend_counts" in req["expect"] and "repeat" not in req:
            raise ScenarioError(f"request #{i}: backend_counts needs repeat")
    if not isinstance(sc.get("log_contains", []), list):
        raise ScenarioError("log_contains: expected a list of strings")


def substitute(value, table):
    """Replaces {{placeholders}} in every string of `value` (recursively)."""
    if isinstance(value, str):
        def one(m):
            if m.group(1) not in table:
                raise ScenarioError(f"unknown placeholder {m.group(0)}; known: {sorted(table)}")
            return table[m.group(1)]
        return PLACEHOLDER.sub(one, value)
    if isinstance(value, list):
        return [substitute(v, table) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, table) for k, v in value.items()}
    return value


def merge(base, extra):
    """Deep-merges mapping `extra` into `base`."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def send(port, req):
    """Sends one request on a fresh connection; returns (status, headers lower-case, body bytes)."""
    method = req.get("method", "GET")
    body = req.get("body")
    body = body.encode() if isinstance(body, str) else body
    hdrs = {"Host": req.get("host", f"127.0.0.1:{port}")}
    hdrs.update({k: str(v) for k, v in (req.get("headers") or {}).items()})
    if body is not None:
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {req['path']} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    c = RawClient(port, source=req.get("source"))
    try:
        c.send(head.encode() + b"Connection: close\r\n\r\n" + (body or b""))
        return c.read_response(head_request=(method == "HEAD"))
    finally:
        c.close()


def upstream_headers(body):
    """The request headers the backend saw, from /echo's JSON: lower-case name -> values joined by ", "."""
    try:
        pairs = json.loads(body)["headers"]
    except (ValueError, KeyError, TypeError):
        # upstream_headers* need the request to reach the backend's /echo (middlewares may rewrite
        # the path on the way, so this is checked on the answer, not on the request).
        raise AssertionError(f"upstream_headers need an answer from the backend's /echo, got {body[:200]!r}") from None
    seen = {}
    for name, value in pairs:
        seen.setdefault(name.lower(), []).append(value)
    return {k: ", ".join(v) for k, v in seen.items()}


def check_response(expect, status, headers, body):
    """Returns a list of mismatches between one response and `expect` (backend_counts excluded)."""
    errors = []

    def differ(what, want, got):
        if want != got:
            errors.append(f"{what}: want {want!r}, got {got!r}")
    if "status" in expect:
        differ("status", expect["status"], status)
    if "backend" in expect:
        differ("backend (X-Backend)", expect["backend"], headers.get("x-backend"))
    if "body" in expect:
        differ("body", str(expect["body"]).encode(), body)
    contains = expect.get("body_contains", [])
    for part in [contains] if isinstance(contains, str) else contains:
        if str(part).encode() not in body:
            errors.append(f"body does not contain {part!r}: {body[:300]!r}")
    for name, want in (expect.get("headers") or {}).items():
        differ(f"response header {name}", str(want), headers.get(name.lower()))
    for name, pattern in (expect.get("headers_match") or {}).items():
        got = headers.get(name.lower())
        if got is None or not re.fullmatch(pattern, got):
            errors.append(f"response header {name}: want a match of {pattern!r}, got {got!r}")
    for name in expect.get("headers_absent", []):
        if name.lower() in headers:
            errors.append(f"response header {name} should be absent, got {headers[name.lower()]!r}")
    if "upstream_headers" in expect or "upstream_headers_absent" in expect:
        seen = upstream_headers(body)
        for name, want in (expect.get("upstream_headers") or {}).items():
            differ(f"upstream header {name}", str(want), seen.get(name.lower()))
        for name in expect.get("upstream_headers_absent", []):
            if name.lower() in seen:
                errors.append(f"upstream header {name} should be absent, got {seen[name.lower()]!r}")
    return errors


class Scenarios(BerthTestCase):
    def run_scenario(self, sc):
        validate(sc)
        backends = {name: self.backend(name) for name in sc.get("backends", [])}
        table = {name: b.url for name, b in backends.items()}
        table.update({f"addr:{name}": f"127.0.0.1:{b.port}" for name, b in backends.items()})
        table["dead"] = f"http://127.0.0.1:{free_port()}"  # nobody listens there
        table["hostname"] = socket.gethostname()           # what X-Forwarded-Server carries

        dynamic_path = os.path.join(self.tmp, "dynamic.yml")  # where harness.Berth writes it
        static = {"entryPoints": {"web": {}}, "providers": {"file": {"filename": dynamic_path, "watch": True}},
                  "workers": 2, "log": {"level": "DEBUG"}}
        merge(static, sc.get("static", {}))
        ports = {}
        for name in list(static["entryPoints"]):
            ports[name] = free_port()
            static["entryPoints"][name] = dict(static["entryPoints"][name] or {}, address=f"127.0.0.1:{ports[name]}")
            table[f"port:{name}"] = str(ports[name])

        dynamic = substitute(sc["dynamic"], table)
        if not isinstance(dynamic, str):  # a mapping instead of text
            dynamic = yaml.safe_dump(dynamic)
        requests = substitute(sc["requests"], table)
        proxy = self.berth(static_yaml=yaml.safe_dump(static), dynamic_yaml=dynamic, wait=False)
        proxy.ports = ports
        not_started = None
        try:
            for port in ports.values():
                wait_for_port(port, proc=proxy.proc)
        except RuntimeError as e:
            not_started = str(e)
        if not_started:
            self.fail(f"berth did not start: {not_started}\n--- berth log ---\n{proxy.log_text()[-3000:]}")

        failures = []
        jar = {}  # cookie_jar: cookies set by earlier answers, sent back like a browser
        for i, req in enumerate(requests, 1):
            ep = req.get("entry_point", "web")
            what = (f"request #{i} {req.get('method', 'GET')} {req['path']} host={req.get('host', '-')} "
                    f"entry_point={ep}" + (f" source={req['source']}" if "source" in req else ""))
            expect = req["expect"]
            counts = collections.Counter()
            for n in range(int(req.get("repeat", 1))):
                if sc.get("cookie_jar") and jar:
                    req = dict(req, headers=dict({"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())},
                                                 **(req.get("headers") or {})))
                try:
                    status, headers, body = send(ports[ep], req)
                except (OSError, EOFError, ValueError) as e:
                    failures.append(f"{what} (try {n + 1}): no valid answer: {e!r}")
                    break
                counts[headers.get("x-backend")] += 1
                for cookie in filter(None, headers.get("set-cookie", "").split(", ")):
                    name, _, value = cookie.split(";")[0].partition("=")
                    jar[name.strip()] = value.strip()
                errors = check_response(expect, status, headers, body)
                if errors:
                    failures.append(f"{what} (try {n + 1}): " + "; ".join(errors))
                    break
            else:
                if "backend_counts" in expect:
                    want = {k: v for k, v in expect["backend_counts"].items() if v}
                    if want != dict(counts):
                        failures.append(f"{what}: backend_counts want {want}, got {dict(counts)}")

        for text in substitute(sc.get("log_contains", []), table):
            deadline = time.time() + 5
            while text not in proxy.log_text() and time.time() < deadline:
                time.sleep(0.05)
            if text not in proxy.log_text():
                failures.append(f"log does not contain {text!r}")
        if failures:
            self.fail("\n  " + "\n  ".join(failures) + "\n--- berth log (tail) ---\n" + proxy.log_text()[-3000:])


def add_test(method_name, origin, sc=None, error=None):
    """Adds test_<file>_<name> to Scenarios; a file or name problem becomes a failing test too."""
    while hasattr(Scenarios, method_name):
        method_name += "_again"
        error = error or "duplicate scenario name in this file"

    def test(self):
        problem = error
        if not problem:
            try:
                self.run_scenario(sc)
            except ScenarioError as e:
                problem = f"malformed scenario: {e}"
        if problem:
            self.fail(f"{origin}: {problem}")
    test.__name__ = method_name
    setattr(Scenarios, method_name, test)


def load_all():
    for path in sorted(glob.glob(os.path.join(SCENARIO_DIR, "*.yaml"))):
        stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        try:
            with open(path) as f:
                cases = yaml.safe_load(f)
            if not isinstance(cases, list):
                raise ScenarioError("a scenario file must be a YAML list")
        except (yaml.YAMLError, ScenarioError) as e:
            add_test(f"test_{stem}_load", path, error=f"cannot load: {e}")
            continue
        for i, sc in enumerate(cases, 1):
            name = sc.get("name") if isinstance(sc, dict) else None
            ident = re.sub(r"\W", "_", str(name)) if name else f"scenario_{i}"
            add_test(f"test_{stem}_{ident}", f"{os.path.basename(path)} scenario #{i} ({name})", sc)


load_all()

if __name__ == "__main__":
    main()
