"""Middlewares through berth with Traefik's semantics: addPrefix, stripPrefix, replacePath,
redirectScheme, headers (custom request/response headers), chain, and the error cases."""
import json

from harness import BerthTestCase, free_port, get, main, wait_for_port

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
    unsupported:
      rule: "PathPrefix(`/auth`)"
      service: s
      middlewares: [auth]
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
        users: ["u:$apr1$x$y"]
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
        for path in ("/missing", "/auth", "/loop"):
            self.assertEqual(get(self.port, path)[0], 404, path)
        log = self.proxy.log_text()
        self.assertIn('router missing@file disabled: middleware "nope@file" does not exist', log)
        self.assertIn('middleware auth@file: type "basicAuth" is not supported yet', log)
        self.assertIn('router unsupported@file disabled: middleware "auth@file" does not exist', log)
        self.assertRegex(log, r"router cyclic@file disabled: middleware chain through .* is cyclic")



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
