"""Traefik's API and the dashboard's files through the real berth: api.insecure on the `traefik`
entry point, every endpoint's JSON against a file-provider config with broken elements (disabled,
with their error and its place), server health flipping DOWN and UP live under a health check,
request counts per router, api@internal behind basicAuth on a user's router, and api.dashboard off."""
import base64
import json

from harness import Backend, BerthTestCase, get, main, wait_until

CONFIG = """http:
  routers:
    app:
      rule: "PathPrefix(`/`)"
      service: app
      entryPoints: [web]
    broken:
      rule: "Path(`/broken`)"
      service: missing
      entryPoints: [web]
    typo:
      rule: "Path(`/typo`)"
      servce: app
  services:
    app:
      loadBalancer:
        healthCheck: {{path: /, interval: 100ms, timeout: 500ms}}
        servers:
          - url: "{a}"
          - url: "{b}"
"""


def api(port, path, headers=None):
    status, hdrs, body = get(port, path, headers=headers)
    if status != 200:
        raise AssertionError(f"GET {path}: {status} {body!r}")
    assert hdrs["content-type"].startswith("application/json"), hdrs
    return json.loads(body), hdrs


def named(items, name):
    for item in items:
        if item["name"] == name:
            return item
    raise AssertionError(f"{name} not in {[i['name'] for i in items]}")


class Api(BerthTestCase):
    def insecure(self, dynamic, *flags):
        proxy = self.berth(dynamic_yaml=dynamic, entry_points=("web", "traefik"),
                           args=("--api.insecure=true", "--ping", *flags))
        return proxy, proxy.ports["web"], proxy.ports["traefik"]

    def test_endpoints_show_each_element_with_its_status_and_errors(self):
        a, b = self.backend("a"), self.backend("b")
        proxy, web, dash = self.insecure(CONFIG.format(a=a.url, b=b.url))

        overview, _ = api(dash, "/api/overview")
        self.assertEqual(overview["http"]["routers"]["total"], 6)  # 3 + api, dashboard and ping @internal
        self.assertEqual(overview["http"]["routers"]["errors"], 2)
        self.assertEqual(overview["providers"], ["File"])
        self.assertEqual(overview["generation"], 1)
        wheres = [p["where"] for p in overview["problems"]]
        self.assertIn(f"{proxy.dynamic_path}:7:5", wheres)

        routers, hdrs = api(dash, "/api/http/routers")
        self.assertEqual(hdrs["x-next-page"], "1")
        broken = named(routers, "broken@file")
        self.assertEqual(broken["status"], "disabled")
        self.assertEqual(broken["error"], [f"{proxy.dynamic_path}:7:5: router broken@file disabled: "
                                           "service \"missing@file\" does not exist"])
        typo = named(routers, "typo@file")
        self.assertEqual(typo["status"], "disabled")
        self.assertIn(f"{proxy.dynamic_path}:13:7", typo["error"][0])
        app = named(routers, "app@file")
        self.assertEqual((app["status"], app["rule"], app["service"], app["using"], app["provider"]),
                         ("enabled", "PathPrefix(`/`)", "app@file", ["web"], "file"))
        self.assertNotIn("error", app)
        self.assertEqual(named(routers, "api@internal")["using"], ["traefik"])
        self.assertEqual(named(routers, "ping@internal")["rule"], "PathPrefix(`/ping`)")

        one, _ = api(dash, "/api/http/routers/broken%40file")
        self.assertEqual(one["name"], "broken@file")
        status, _, body = get(dash, "/api/http/routers/nope@file")
        self.assertEqual((status, json.loads(body)), (404, {"message": "router not found: nope@file"}))

        services, _ = api(dash, "/api/http/services")
        svc = named(services, "app@file")
        self.assertEqual(svc["type"], "loadbalancer")
        self.assertEqual(svc["usedBy"], ["app@file"])
        self.assertEqual(svc["serverStatus"], {a.url: "UP", b.url: "UP"})
        self.assertEqual(named(services, "api@internal")["provider"], "internal")

        eps, _ = api(dash, "/api/entrypoints")
        self.assertEqual([e["name"] for e in eps], ["traefik", "web"])
        self.assertEqual(named(eps, "web")["address"], f"127.0.0.1:{web}")
        raw, _ = api(dash, "/api/rawdata")
        self.assertEqual(sorted(raw), ["middlewares", "routers", "services"])
        self.assertIn("serverStatus", raw["services"]["app@file"])
        version, _ = api(dash, "/api/version")
        self.assertIn("Version", version)
        disabled, _ = api(dash, "/api/http/routers?status=disabled")
        self.assertEqual([r["name"] for r in disabled], ["broken@file", "typo@file"])
        page, hdrs = api(dash, "/api/http/routers?per_page=4&page=1")
        self.assertEqual((len(page), hdrs["x-next-page"]), (4, "2"))
        self.assertEqual(get(dash, "/api/http/routers?page=9")[0], 400)
        self.assertEqual(get(dash, "/api/overview", method="POST", body=b"")[0], 405)

        # The API is on `traefik` only; web routes to the backends as before.
        self.assertEqual(get(web, "/api/overview")[1].get("x-backend") in ("a", "b"), True)
        self.assertEqual(get(dash, "/ping")[2], b"OK")

    def test_requests_per_router_are_counted(self):
        a, b = self.backend("a"), self.backend("b")
        _, web, dash = self.insecure(CONFIG.format(a=a.url, b=b.url))
        for _ in range(5):
            self.assertEqual(get(web, "/")[0], 200)
        # An exchange is counted just after its answer has left: the API may be asked a moment before.
        wait_until(lambda: api(dash, "/api/http/routers/app@file")[0]["requests"] == 5)
        app, _ = api(dash, "/api/http/routers/app@file")
        self.assertEqual(app["requests"], 5)
        self.assertEqual(app["serverErrors"], 0)
        self.assertEqual(named(api(dash, "/api/http/routers")[0], "api@internal")["requests"], 0)

    def test_server_health_flips_down_and_up_live(self):
        a, b = self.backend("a"), self.backend("b")
        proxy, _, dash = self.insecure(CONFIG.format(a=a.url, b=b.url))
        status = lambda: api(dash, "/api/http/services/app@file")[0]["serverStatus"]
        self.assertEqual(status(), {a.url: "UP", b.url: "UP"})
        b.stop()
        wait_until(lambda: status()[b.url] == "DOWN", timeout=5)
        self.assertEqual(status()[a.url], "UP")
        again = Backend("b", port=b.port)
        self._procs.append(again)
        wait_until(lambda: status()[b.url] == "UP", timeout=5)
        self.assertEqual(api(dash, "/api/overview")[0]["generation"], 1, "no reload was needed")

    def test_dashboard_files_and_redirects(self):
        a, b = self.backend("a"), self.backend("b")
        _, _, dash = self.insecure(CONFIG.format(a=a.url, b=b.url))
        status, hdrs, _ = get(dash, "/")
        self.assertEqual((status, hdrs["location"]), (302, "dashboard/"))
        self.assertEqual(get(dash, "/dashboard")[:2][1]["location"], "dashboard/")
        status, hdrs, body = get(dash, "/dashboard/")
        self.assertEqual(status, 200)
        self.assertTrue(hdrs["content-type"].startswith("text/html"))
        self.assertIn("script-src 'self'", hdrs["content-security-policy"])
        self.assertEqual(hdrs["cache-control"], "no-cache")
        self.assertIn(b"app.js", body)
        status, hdrs, body = get(dash, "/dashboard/app.js")
        self.assertEqual(status, 200)
        self.assertTrue(hdrs["content-type"].startswith("text/javascript"))
        etag = hdrs["etag"]
        status, hdrs, body = get(dash, "/dashboard/app.js", headers={"If-None-Match": etag})
        self.assertEqual((status, body, "content-length" in hdrs), (304, b"", False))
        self.assertTrue(get(dash, "/dashboard/style.css")[1]["content-type"].startswith("text/css"))
        self.assertEqual(get(dash, "/dashboard/nope.js")[0], 404)

    def test_api_internal_behind_basic_auth_without_insecure(self):
        a = self.backend("a")
        users = "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"  # test / test
        dynamic = f"""http:
  routers:
    dash:
      rule: "PathPrefix(`/api`) || PathPrefix(`/dashboard`)"
      service: api@internal
      middlewares: [auth]
    app:
      rule: "PathPrefix(`/`)"
      service: app
  middlewares:
    auth:
      basicAuth:
        users: ["{users}"]
  services:
    app:
      loadBalancer:
        servers: [{{url: "{a.url}"}}]
"""
        proxy = self.berth(dynamic_yaml=dynamic, args=("--api",))
        port = proxy.port
        status, hdrs, _ = get(port, "/api/overview")
        self.assertEqual(status, 401)
        self.assertIn("Basic", hdrs["www-authenticate"])
        creds = {"Authorization": "Basic " + base64.b64encode(b"test:test").decode()}
        overview, _ = api(port, "/api/overview", headers=creds)
        self.assertEqual(overview["http"]["routers"]["errors"], 0)
        routers, _ = api(port, "/api/http/routers", headers=creds)
        self.assertEqual(sorted(r["name"] for r in routers), ["app@file", "dash@file"], "no internal routers")
        self.assertEqual(named(routers, "dash@file")["middlewares"], ["auth@file"])
        status, hdrs, body = get(port, "/dashboard/", headers=creds)
        self.assertEqual(status, 200)
        self.assertIn(b"<title>berth dashboard</title>", body)
        self.assertEqual(get(port, "/dashboard/")[0], 401)
        self.assertEqual(get(port, "/")[1].get("x-backend"), "a")

    def test_dashboard_off_keeps_the_api(self):
        a, b = self.backend("a"), self.backend("b")
        _, _, dash = self.insecure(CONFIG.format(a=a.url, b=b.url), "--api.dashboard=false")
        self.assertEqual(api(dash, "/api/version")[0]["Codename"], "berth")
        self.assertEqual(get(dash, "/dashboard/")[0], 404)
        services, _ = api(dash, "/api/http/services")
        self.assertNotIn("dashboard@internal", [s["name"] for s in services])


if __name__ == "__main__":
    main()
