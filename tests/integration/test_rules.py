"""Traefik v3 rule matchers end to end through berth: the request decides which backend answers."""
from harness import BerthTestCase, get, main, wait_until


class Rules(BerthTestCase):
    def setUp(self):
        super().setUp()
        names = ["regexhost", "regexpath", "header", "query", "local2", "fallback", "explicit"]
        self.be = {n: self.backend(n) for n in names}
        routers = {
            "regexhost": ("HostRegexp(`^[a-z]+\\\\.apps\\\\.test$`)", "regexhost"),
            "regexpath": ("PathRegexp(`^/items/[0-9]+$`)", "regexpath"),
            "header": ("Header(`X-Canary`, `yes`) && PathPrefix(`/`)", "header"),
            "query": ("Query(`v`, `2`) && PathPrefix(`/`)", "query"),
            "local2": ("ClientIP(`127.0.0.2/32`) && PathPrefix(`/who`)", "local2"),
            "fallback": ("PathPrefix(`/`)", "fallback"),
            # Shorter than fallback's rule but wins by explicit priority.
            "explicit": ("Path(`/p`)", "explicit", {"priority": 1000}),
        }
        lines = ["http:", "  routers:"]
        for name, spec in routers.items():
            lines += [f"    {name}:", f"      rule: \"{spec[0]}\"", f"      service: {spec[1]}"]
            for k, v in (spec[2] if len(spec) > 2 else {}).items():
                lines.append(f"      {k}: {v}")
        lines.append("  services:")
        for name, b in self.be.items():
            lines += [f"    {name}:", "      loadBalancer:", "        servers:", f"          - url: \"{b.url}\""]
        self.proxy = self.berth(dynamic_yaml="\n".join(lines) + "\n")
        self.port = self.proxy.port

    def test_each_matcher_routes_its_requests(self):
        self.assertEqual(get(self.port, "/", host="shop.apps.test")[2], b"regexhost")
        self.assertEqual(get(self.port, "/", host="shop.apps.test.evil")[2], b"fallback")
        self.assertEqual(get(self.port, "/items/42")[2], b"regexpath")
        self.assertEqual(get(self.port, "/items/42x")[2], b"fallback")
        self.assertEqual(get(self.port, "/", headers={"X-Canary": "yes"})[2], b"header")
        self.assertEqual(get(self.port, "/", headers={"X-Canary": "no"})[2], b"fallback")
        self.assertEqual(get(self.port, "/search?q=a+b&v=2")[2], b"query")
        self.assertEqual(get(self.port, "/search?v=%32")[2], b"query")  # %32 is "2"
        self.assertEqual(get(self.port, "/search?v=3")[2], b"fallback")
        self.assertEqual(get(self.port, "/who", source="127.0.0.2")[2], b"local2")
        self.assertEqual(get(self.port, "/who", source="127.0.0.1")[2], b"fallback")
        self.assertEqual(get(self.port, "/p")[2], b"explicit")

    def test_bad_regexp_disables_only_its_router(self):
        self.proxy.write_dynamic(
            "http:\n  routers:\n    bad:\n      rule: \"PathRegexp(`([`)\"\n      service: s\n"
            "    good:\n      rule: \"PathPrefix(`/`)\"\n      service: s\n"
            f"  services:\n    s:\n      loadBalancer:\n        servers:\n          - url: \"{self.be['header'].url}\"\n")
        wait_until(lambda: get(self.port, "/")[2] == b"header")
        self.assertRegex(self.proxy.log_text(), r"router bad@file disabled: .*column 1: PathRegexp: invalid regular expression")

    def test_routers_needing_missing_features_are_disabled_not_served_bare(self):
        # A router whose middleware (here grpcWeb, not implemented yet) cannot be applied must not
        # serve without it, and a router meant for HTTPS only must not answer plain HTTP (it is
        # served over TLS: test_tls.py).
        url = self.be["header"].url
        self.proxy.write_dynamic(
            "http:\n  routers:\n"
            "    guarded:\n      rule: \"PathPrefix(`/admin`)\"\n      service: s\n      middlewares: [auth]\n"
            "    secure:\n      rule: \"PathPrefix(`/secure`)\"\n      service: s\n      tls: {}\n"
            "    open:\n      rule: \"PathPrefix(`/open`)\"\n      service: s\n"
            "  middlewares:\n    auth:\n      grpcWeb:\n        allowOrigins: [\"*\"]\n"
            f"  services:\n    s:\n      loadBalancer:\n        servers:\n          - url: \"{url}\"\n")
        wait_until(lambda: get(self.port, "/open")[2] == b"header")
        self.assertEqual(get(self.port, "/admin")[0], 404)
        self.assertEqual(get(self.port, "/secure")[0], 404)
        log = self.proxy.log_text()
        self.assertIn('middleware auth@file: type "grpcWeb" is not supported yet', log)
        self.assertIn('router guarded@file disabled: middleware "auth@file" does not exist', log)


if __name__ == "__main__":
    main()
