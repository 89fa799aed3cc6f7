"""Middlewares through berth with Traefik's semantics: addPrefix, stripPrefix, replacePath,
redirectScheme, headers (custom request/response headers), chain, basicAuth/digestAuth with real
clients (curl --digest, users files), and the error cases."""
import json

from harness import BerthTestCase, free_port, get, main, wait_for_port, wait_until

DYNAMIC = """
http:
  routers:
    add:
      rule: "PathPrefix(`/add`)"
      service: s
      middlewares: [add-api]
    strip:
      rule: "PathPrefix(`/strip`)"
      service: s
      middlewares: [strip-it]
    replace:
      rule: "PathPrefix(`/replace`)"
      service: s
      middlewares: [replace-echo]
    https:
      rule: "Host(`secure.test`)"
      service: s
      middlewares: [to-https]
    https-port:
      rule: "Host(`port.test`)"
      service: s
      middlewares: [to-https-8443]
    headers:
      rule: "PathPrefix(`/hdr`)"
      service: s
      middlewares: [strip-hdr, custom]
    chained:
      rule: "PathPrefix(`/chain`)"
      service: s
      middlewares: [both]
    missing:
      rule: "PathPrefix(`/missing`)"
      service: s
      middlewares: [nope]
    unreadable:
      rule: "PathPrefix(`/auth`)"
      service: s
      middlewares: [auth]
    unsupported:
      rule: "PathPrefix(`/grpc`)"
      service: s
      middlewares: [grpc]
    cyclic:
      rule: "PathPrefix(`/loop`)"
      service: s
      middlewares: [loop-a]
  middlewares:
    add-api:
      addPrefix:
        prefix: /echo
    strip-it:
      stripPrefix:
        prefixes: ["/nothing", "/strip"]
    replace-echo:
      replacePath:
        path: /echo
    to-https:
      redirectScheme:
        scheme: https
        permanent: true
    to-https-8443:
      redirectScheme:
        scheme: https
        port: "8443"
    strip-hdr:
      stripPrefix:
        prefixes: ["/hdr"]
    custom:
      headers:
        customRequestHeaders:
          X-Tenant: acme
          User-Agent: ""
        customResponseHeaders:
          X-Served-By: berth
          X-Backend: ""
    both:
      chain:
        middlewares: [strip-chain, custom]
    strip-chain:
      stripPrefix:
        prefixes: ["/chain"]
    auth:
      basicAuth:
        usersFile: /nonexistent/berth-users
    grpc:
      grpcWeb: {}
    loop-a:
      chain:
        middlewares: [loop-b]
    loop-b:
      chain:
        middlewares: [loop-a]
  services:
    s:
      loadBalancer:
        servers:
          - url: "{url}"
"""


def one_route(url, **middlewares):
    """Dynamic config: every path goes to the server at `url` through `middlewares`, in order
    (name=definition, a YAML flow mapping)."""
    names = ", ".join(middlewares)
    defs = "".join(f"    {name}: {definition}\n" for name, definition in middlewares.items())
    return (f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s, middlewares: [{names}]}}\n"
            f"  middlewares:\n{defs}"
            f"  services:\n    s: {{loadBalancer: {{servers: [{{url: \"{url}\"}}]}}}}\n")


class Middlewares(BerthTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend("mw")
        self.port = free_port()
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{self.port}\"\n"
                  f"    forwardedHeaders:\n      trustedIPs: [\"127.0.0.2\"]\n"
                  f"providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\n")
        self.proxy = self.berth(static_yaml=static, wait=False, dynamic_yaml=DYNAMIC.replace("{url}", self.be.url))
        wait_for_port(self.port, proc=self.proxy.proc)

    def echo(self, path, **kw):
        status, headers, body = get(self.port, path, **kw)
        self.assertEqual(status, 200, body)
        data = json.loads(body)
        return data["target"], {k.lower(): v for k, v in data["headers"]}, headers

    def test_add_prefix(self):
        target, _, _ = self.echo("/add/x?y=1")
        self.assertEqual(target, "/echo/add/x?y=1")

    def test_strip_prefix_sets_x_forwarded_prefix(self):
        # /strip/echo -> /echo at the backend, with X-Forwarded-Prefix: /strip
        target, h, _ = self.echo("/strip/echo?a=b")
        self.assertEqual(target, "/echo?a=b")
        self.assertEqual(h["x-forwarded-prefix"], "/strip")

    def test_replace_path_keeps_the_original_in_x_replaced_path(self):
        target, h, _ = self.echo("/replace/some/thing")
        self.assertEqual(target, "/echo")
        self.assertEqual(h["x-replaced-path"], "/replace/some/thing")

    def test_redirect_scheme(self):
        status, headers, body = get(self.port, "/a/b?c=d", host="secure.test:8080")
        self.assertEqual((status, headers["location"], body), (301, "https://secure.test/a/b?c=d", b"Moved Permanently"))
        status, headers, _ = get(self.port, "/form", host="secure.test", method="POST", body=b"x=1")
        self.assertEqual((status, headers["location"]), (308, "https://secure.test/form"))
        status, headers, _ = get(self.port, "/", host="port.test")
        self.assertEqual((status, headers["location"]), (302, "https://port.test:8443/"))
        status, headers, _ = get(self.port, "/", host="port.test", method="DELETE")
        self.assertEqual(status, 307)
        # Already https according to a trusted proxy in front: no redirect, the request goes through.
        status, _, _ = get(self.port, "/", host="secure.test", headers={"X-Forwarded-Proto": "https"},
                           source="127.0.0.2")
        self.assertEqual(status, 200)
        # The same header from an untrusted client does not prevent the redirect.
        status, _, _ = get(self.port, "/", host="secure.test", headers={"X-Forwarded-Proto": "https"})
        self.assertEqual(status, 301)

    def test_custom_headers_both_ways(self):
        target, h, resp = self.echo("/hdr/echo", headers={"User-Agent": "curl/8", "X-Tenant": "evil"})
        self.assertEqual(target, "/echo")
        self.assertEqual(h["x-tenant"], "acme")
        self.assertNotIn("user-agent", h)
        self.assertEqual(resp["x-served-by"], "berth")
        self.assertNotIn("x-backend", resp)

    def test_chain_applies_its_middlewares_in_order(self):
        target, h, resp = self.echo("/chain/echo")
        self.assertEqual(target, "/echo")
        self.assertEqual(h["x-forwarded-prefix"], "/chain")
        self.assertEqual(h["x-tenant"], "acme")
        self.assertEqual(resp["x-served-by"], "berth")

    def test_routers_with_missing_unsupported_or_cyclic_middlewares_are_disabled(self):
        for path in ("/missing", "/auth", "/grpc", "/loop"):
            self.assertEqual(get(self.port, path)[0], 404, path)
        log = self.proxy.log_text()
        self.assertIn('router missing@file disabled: middleware "nope@file" does not exist', log)
        self.assertIn('middleware grpc@file: type "grpcWeb" is not supported yet', log)
        self.assertIn('router unsupported@file disabled: middleware "grpc@file" does not exist', log)
        # An auth middleware that cannot load its users never lets a request through unchecked.
        self.assertIn('middleware auth@file: cannot read usersFile "/nonexistent/berth-users"', log)
        self.assertIn('router unreadable@file disabled: middleware "auth@file" is invalid', log)
        self.assertRegex(log, r"router cyclic@file disabled: middleware chain through .* is cyclic")



class Authentication(BerthTestCase):
    """basicAuth and digestAuth with users files and curl as the client (curl does the digest dance)."""

    def test_users_files_and_real_clients(self):
        import os
        import subprocess
        app = self.backend("app")
        htpasswd = os.path.join(self.tmp, "users.htpasswd")
        with open(htpasswd, "w") as f:
            f.write("# team\nalice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n\n")
        htdigest = os.path.join(self.tmp, "users.htdigest")
        with open(htdigest, "w") as f:
            f.write("dave:traefik:e550659286a2a9ce47e3a9da5e97f84d\n")  # MD5("dave:traefik:pw4")
        proxy = self.berth(dynamic_yaml=f"""
http:
  routers:
    basic: {{rule: "PathPrefix(`/echo/basic`)", service: s, middlewares: [basic]}}
    digest: {{rule: "PathPrefix(`/echo/digest`)", service: s, middlewares: [digest]}}
  middlewares:
    basic: {{basicAuth: {{usersFile: "{htpasswd}", realm: "staff only"}}}}
    digest: {{digestAuth: {{usersFile: "{htdigest}", headerField: X-User, removeHeader: true}}}}
  services:
    s: {{loadBalancer: {{servers: [{{url: "{app.url}"}}]}}}}
""")
        base = f"http://127.0.0.1:{proxy.port}"

        def curl(*args):
            out = subprocess.run(["curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", *args],
                                 capture_output=True, text=True, timeout=20)
            return out.stdout

        status, headers, _ = get(proxy.port, "/echo/basic")
        self.assertEqual((status, headers["www-authenticate"]), (401, 'Basic realm="staff only"'))
        self.assertEqual(curl("-u", "alice:secret", base + "/echo/basic"), "200")
        self.assertEqual(curl("-u", "alice:nope", base + "/echo/basic"), "401")
        # Without removeHeader the backend still sees the credentials.
        _, _, body = get(proxy.port, "/echo/basic", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
        self.assertIn("Authorization", [n for n, _ in json.loads(body)["headers"]])

        status, headers, _ = get(proxy.port, "/echo/digest")
        self.assertEqual(status, 401)
        self.assertRegex(headers["www-authenticate"], r'^Digest realm="traefik", nonce="[^"]+", opaque="[^"]+", '
                                                      r'algorithm=MD5, qop="auth"$')
        self.assertEqual(curl("--digest", "-u", "dave:pw4", base + "/echo/digest"), "200")
        self.assertEqual(curl("--digest", "-u", "dave:wrong", base + "/echo/digest"), "401")
        out = subprocess.run(["curl", "-s", "-m", "10", "--digest", "-u", "dave:pw4", base + "/echo/digest"],
                             capture_output=True, text=True, timeout=20).stdout
        seen = dict((n.lower(), v) for n, v in json.loads(out)["headers"])
        self.assertEqual(seen.get("x-user"), "dave")
        self.assertNotIn("authorization", seen)

    def test_forward_auth_asks_the_auth_server_and_copies_its_answer(self):
        def answer(method, path):
            return auth_answers[path]
        auth_answers = {}
        auth = self.recorder(lambda method, path: answer(method, path))
        app = self.backend("app")
        proxy = self.berth(dynamic_yaml=one_route(
            app.url, fa=f'{{forwardAuth: {{address: "{auth.url}/verify?app=1", authResponseHeaders: [X-User], '
                        'authRequestHeaders: [Authorization], addAuthCookiesToResponse: [session]}}'))
        auth_answers["/verify?app=1"] = (200, {"X-User": "alice", "Set-Cookie": "session=abc; Path=/"}, b"")
        status, headers, body = get(proxy.port, "/echo/x?q=1", headers={"Authorization": "Bearer t", "X-Other": "1",
                                                                         "X-User": "forged"})
        self.assertEqual(status, 200)
        seen = {n.lower(): v for n, v in json.loads(body)["headers"]}
        self.assertEqual(seen["x-user"], "alice", "authResponseHeaders replace what the client sent")
        self.assertEqual(headers.get("set-cookie"), "session=abc; Path=/")
        method, path, sent, _ = auth.requests[-1]
        self.assertEqual((method, path), ("GET", "/verify?app=1"))
        self.assertEqual(sent.get("Authorization"), "Bearer t")
        self.assertNotIn("X-Other", sent, "only authRequestHeaders are sent")
        self.assertEqual(sent.get("X-Forwarded-Method"), "GET")
        self.assertEqual(sent.get("X-Forwarded-Uri"), "/echo/x?q=1")
        self.assertEqual(sent.get("X-Forwarded-For"), "127.0.0.1")

        # A refusal (or a redirect to a login page) goes to the client as the auth server wrote it.
        auth_answers["/verify?app=1"] = (302, {"Location": "https://login.example/?next=x"}, b"go log in")
        status, headers, body = get(proxy.port, "/echo/x")
        self.assertEqual((status, headers.get("location"), body), (302, "https://login.example/?next=x", b"go log in"))
        self.assertEqual(headers.get("x-backend"), "recorder", "the auth server's answer, not the app's")
        auth_answers["/verify?app=1"] = (401, {"WWW-Authenticate": "Bearer"}, b"")
        status, headers, _ = get(proxy.port, "/echo/x")
        self.assertEqual((status, headers.get("www-authenticate")), (401, "Bearer"))
        # Two forwardAuth middlewares in a row: each answer's headers reach the backend.
        auth2 = self.recorder(lambda m, p: (200, {"X-Team": "blue"}, b""))
        auth_answers["/verify?app=1"] = (200, {"X-User": "bob"}, b"")
        proxy.write_dynamic(one_route(
            app.url, fa=f'{{forwardAuth: {{address: "{auth.url}/verify?app=1", authResponseHeaders: [X-User]}}}}',
            fa2=f'{{forwardAuth: {{address: "{auth2.url}/", authResponseHeaders: [X-Team]}}}}'))
        wait_until(lambda: "configuration generation 2 applied" in proxy.log_text())
        _, _, body = get(proxy.port, "/echo/two")
        seen = {n.lower(): v for n, v in json.loads(body)["headers"]}
        self.assertEqual((seen.get("x-user"), seen.get("x-team")), ("bob", "blue"))
        # An unreachable auth server is a 500, never a pass.
        auth.stop()
        self.assertEqual(get(proxy.port, "/echo/x")[0], 500)

    def test_forward_auth_trusts_forward_headers_only_from_trusted_peers(self):
        # trustForwardHeader passes the client's X-Forwarded-* on to the auth server, as Traefik
        # does, but only from a peer in forwardedHeaders.trustedIPs: from anyone else they are the
        # real ones, or an auth server deciding by X-Forwarded-Host and -Uri could be lied to.
        auth = self.recorder(lambda m, p: (200, {}, b""))
        app = self.backend("app")
        port = free_port()
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n"
                  f"    forwardedHeaders:\n      trustedIPs: [127.0.0.3]\n"
                  f"providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\n")
        proxy = self.berth(static_yaml=static, wait=False, dynamic_yaml=one_route(
            app.url, fa=f'{{forwardAuth: {{address: "{auth.url}/verify", trustForwardHeader: true}}}}'))
        wait_for_port(port, proc=proxy.proc)
        claims = {"X-Forwarded-Host": "public.test", "X-Forwarded-Uri": "/public", "X-Forwarded-For": "10.9.9.9",
                  "X-Forwarded-Method": "HEAD", "X-Forwarded-Proto": "https"}
        forwarded = lambda sent: {k: sent.get(k) for k in claims}
        self.assertEqual(get(port, "/admin?x=1", host="private.test", headers=claims)[0], 200)
        self.assertEqual(forwarded(auth.requests[-1][2]),
                         {"X-Forwarded-Host": "private.test", "X-Forwarded-Uri": "/admin?x=1",
                          "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http"})
        self.assertEqual(get(port, "/admin?x=1", host="private.test", headers=claims, source="127.0.0.3")[0], 200)
        self.assertEqual(forwarded(auth.requests[-1][2]), {**claims, "X-Forwarded-For": "10.9.9.9, 127.0.0.3"})

    def test_forward_auth_response_headers_regex_copies_matches_and_drops_the_clients_own(self):
        # authResponseHeadersRegex: the auth server's headers the regex matches reach the server;
        # the client's own that match are removed (Traefik), so none can be forged.
        auth = self.recorder(lambda m, p: (200, {"X-Auth-User": "alice", "X-Other": "no"}, b""))
        app = self.backend("app")
        proxy = self.berth(dynamic_yaml=one_route(
            app.url, fa=f'{{forwardAuth: {{address: "{auth.url}/verify", authResponseHeadersRegex: "^X-Auth-"}}}}'))
        status, _, body = get(proxy.port, "/echo", headers={"X-Auth-User": "mallory", "X-Auth-Role": "admin",
                                                             "X-Keep": "1"})
        self.assertEqual(status, 200)
        seen = {n.lower(): v for n, v in json.loads(body)["headers"]}
        self.assertEqual(seen.get("x-auth-user"), "alice")
        self.assertNotIn("x-auth-role", seen, "the client's own X-Auth-Role is removed")
        self.assertNotIn("x-other", seen, "only matching headers are copied")
        self.assertEqual(seen.get("x-keep"), "1")

    def test_reload_while_an_auth_server_thinks(self):
        """An exchange that waits on forwardAuth across a reload still gets a sound server pick."""
        import threading
        import time
        a, b = self.backend("a"), self.backend("b")

        def slow(method, path):
            time.sleep(0.6)
            return 200, {}, b""
        auth = self.recorder(slow)
        many = "".join(f"    s{i}: {{loadBalancer: {{servers: [{{url: \"{b.url}\"}}]}}}}\n" for i in range(20))
        proxy = self.berth(dynamic_yaml=f"""
http:
  routers:
    r: {{rule: "PathPrefix(`/`)", service: s19, middlewares: [fa]}}
  middlewares:
    fa: {{forwardAuth: {{address: "{auth.url}/"}}}}
  services:
{many}""")
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(get(proxy.port, "/"))) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        # Fewer services now: the waiting exchanges come back to a picker sized for the new snapshot.
        proxy.write_dynamic(f"""
http:
  routers:
    r: {{rule: "PathPrefix(`/`)", service: only, middlewares: [fa]}}
  middlewares:
    fa: {{forwardAuth: {{address: "{auth.url}/"}}}}
  services:
    only: {{loadBalancer: {{servers: [{{url: "{a.url}"}}, {{url: "{a.url}"}}]}}}}
""")
        for t in threads:
            t.join(10)
        self.assertEqual(sorted((s, h.get("x-backend")) for s, h, _ in answers), [(200, "b")] * 4)
        self.assertEqual(get(proxy.port, "/")[1].get("x-backend"), "a")


class Concurrency(BerthTestCase):
    def test_buffering_retry_expression_resends_the_stored_body(self):
        answers = [503, 503, 201]
        rec = self.recorder(lambda m, p: (answers.pop(0) if answers else 500, {}, b"done"))
        proxy = self.berth(dynamic_yaml=one_route(
            rec.url, buf='{buffering: {retryExpression: "ResponseCode() == 503 && Attempts() < 5"}}'))
        status, _, body = get(proxy.port, "/upload", method="POST", body=b"z" * 5000)
        self.assertEqual((status, body), (201, b"done"))
        self.assertEqual([(m, len(b)) for m, _, _, b in rec.requests], [("POST", 5000)] * 3,
                         "a non-idempotent POST is replayed because its body was stored")

    def test_in_flight_req_caps_concurrent_requests_per_source_and_releases_slots(self):
        import threading
        import time
        app = self.backend("app")
        proxy = self.berth(dynamic_yaml=one_route(app.url, one='{inFlightReq: {amount: 1}}'))
        slow = {}
        t = threading.Thread(target=lambda: slow.update(answer=get(proxy.port, "/delay/800")))
        t.start()
        time.sleep(0.3)
        self.assertEqual(get(proxy.port, "/")[0], 429, "a second request from the same source waits its turn")
        self.assertEqual(get(proxy.port, "/", source="127.0.0.2")[0], 200, "other sources are not affected")
        t.join()
        self.assertEqual(slow["answer"][0], 200)
        # Slots come back however the exchange ended: answered, failed upstream, or refused. (A slot
        # is given back just after the answer's last byte is written, so the next request, on
        # another connection and maybe another worker, may briefly still find it taken: a leaked
        # slot would refuse it for ever.)
        for _ in range(5):
            wait_until(lambda: get(proxy.port, "/")[0] == 200, timeout=3)
        app.stop()
        for _ in range(3):
            wait_until(lambda: get(proxy.port, "/")[0] == 502, timeout=3)

    def test_circuit_breaker_lets_traffic_back_gradually_over_recovery_duration(self):
        import time
        state = {"status": 500}
        rec = self.recorder(lambda m, p: (state["status"], {}, b"app"))
        proxy = self.berth(args=("--workers=1",), dynamic_yaml=one_route(
            rec.url, cb='{circuitBreaker: {expression: "ResponseCodeRatio(500, 600, 0, 600) > 0.5", '
                        'fallbackDuration: 500ms, recoveryDuration: 4s}}'))
        self.assertEqual(get(proxy.port, "/")[0], 500)  # checked at once: 100% 5xx trips the breaker
        self.assertEqual(get(proxy.port, "/")[0], 503)
        state["status"] = 200
        time.sleep(0.7)  # fallbackDuration over: the next request starts the recovery
        t0 = time.time()
        early = []
        for _ in range(30):  # the first 1.5 s of 4: at most a fifth of the requests may pass
            early.append(get(proxy.port, "/")[0])
            time.sleep(0.05)
        self.assertEqual(set(early) - {200, 503}, set(), early)
        self.assertGreaterEqual(early.count(503), 20, f"recovery let too much through at first: {early}")
        self.assertGreaterEqual(early.count(200), 1, f"recovery let nothing through: {early}")
        time.sleep(max(0.0, t0 + 4.5 - time.time()))
        self.assertEqual([get(proxy.port, "/")[0] for _ in range(10)], [200] * 10, "recovery did not end")

    def test_buffering_reads_chunked_uploads_whole_and_enforces_the_limit(self):
        from harness import RawClient
        app = self.backend("app")
        proxy = self.berth(dynamic_yaml=one_route(app.url, buf='{buffering: {maxRequestBodyBytes: 1000}}'))
        c = RawClient(proxy.port)
        chunks = b"".join(b"%x\r\n%s\r\n" % (100, b"x" * 100) for _ in range(5)) + b"0\r\n\r\n"
        head = b"POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        c.send(head + chunks[:123])  # the rest arrives later: berth waits for all of it
        import time
        time.sleep(0.2)
        c.send(chunks[123:])
        self.assertEqual(c.read_response()[::2], (200, b"500"))
        # Keep-alive still works, and an oversized chunked body gets 413 (the connection closes).
        big = b"".join(b"%x\r\n%s\r\n" % (400, b"y" * 400) for _ in range(3)) + b"0\r\n\r\n"
        c.send(head + big)
        status, headers, _ = c.read_response()
        self.assertEqual(status, 413)
        self.assertEqual(headers.get("connection"), "close")
        c.close()
        # A Content-Length body that arrives after the head, in pieces, is read whole and forwarded.
        c = RawClient(proxy.port)
        c.send(b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 700\r\n\r\n")
        time.sleep(0.1)
        c.send(b"a" * 300)
        time.sleep(0.1)
        c.send(b"b" * 400)
        self.assertEqual(c.read_response()[::2], (200, b"700"))
        c.close()


class EntryPointOptions(BerthTestCase):
    """entryPoints.<name>.http.redirections.entryPoint and entryPoints.<name>.http.middlewares."""

    def test_redirection_and_entry_point_middlewares(self):
        be = self.backend("ep")
        web, secure, other = free_port(), free_port(), free_port()
        static = f"""
entryPoints:
  web:
    address: "127.0.0.1:{web}"
    http:
      redirections:
        entryPoint:
          to: websecure
  websecure:
    address: "127.0.0.1:{secure}"
    http:
      middlewares: [stamp@file]
  other:
    address: "127.0.0.1:{other}"
    http:
      redirections:
        entryPoint:
          to: ":443"
          scheme: https
          permanent: false
providers:
  file:
    filename: {self.tmp}/dynamic.yml
"""
        dynamic = f"""
http:
  routers:
    app:
      rule: "PathPrefix(`/`)"
      service: s
    high:
      rule: "Path(`/pinned`)"
      service: s
      priority: 9000000000000000000
  middlewares:
    stamp:
      headers:
        customResponseHeaders:
          X-Entry: secure
  services:
    s:
      loadBalancer:
        servers:
          - url: "{be.url}"
"""
        proxy = self.berth(static_yaml=static, dynamic_yaml=dynamic, wait=False)
        for p in (web, secure, other):
            wait_for_port(p, proc=proxy.proc)
        status, headers, _ = get(web, "/a?b=1", host="example.test")
        self.assertEqual((status, headers["location"]), (301, f"https://example.test:{secure}/a?b=1"))
        # The redirect router has priority MaxInt-1: even a router with a huge priority loses.
        self.assertEqual(get(web, "/pinned", host="example.test")[0], 301)
        status, headers, _ = get(other, "/x", host="example.test", method="POST", body=b"1")
        self.assertEqual((status, headers["location"]), (307, "https://example.test/x"))
        status, headers, body = get(secure, "/", host="example.test")
        self.assertEqual((status, body, headers.get("x-entry")), (200, b"ep", "secure"))


if __name__ == "__main__":
    main()
