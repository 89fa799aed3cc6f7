"""The dashboard in headless Chromium (tests/browser/dashboard_check.mjs, on playwright-core): routers
listed, a router added to the watched file appearing on the open page without a reload, the
config's problems shown, no console errors, no horizontal overflow on a phone; screenshots are
kept under the build directory. Without Chromium or playwright-core the test is skipped, except
in CI (CI=true), where it fails."""
import json
import os
import shutil
import signal
import subprocess

from harness import BERTH, BerthTestCase, main

SOURCE = os.environ.get("BERTH_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
BROWSER_DIR = os.path.join(SOURCE, "tests/browser")
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(BERTH)), "test-artifacts", "dashboard")

DYNAMIC = """http:
  routers:
    shop:
      rule: "Host(`shop.example`) && PathPrefix(`/`)"
      service: shop
      middlewares: [compress]
    blog:
      rule: "Host(`blog.example`)"
      service: blog
      tls: {{}}
    broken:
      rule: "Path(`/broken`)"
      service: missing
  middlewares:
    compress:
      compress: {{}}
  services:
    shop:
      loadBalancer:
        healthCheck: {{path: /, interval: 1s}}
        servers: [{{url: "{a}"}}, {{url: "{b}"}}]
    blog:
      loadBalancer:
        servers: [{{url: "{a}"}}]
"""

ADDED = """    added:
      rule: "PathPrefix(`/added`)"
      service: blog
"""


class Dashboard(BerthTestCase):
    def requirements(self):
        missing = []
        if not os.access(CHROMIUM, os.X_OK):
            missing.append(f"{CHROMIUM} (apt-get install chromium)")
        if shutil.which("node") is None:
            missing.append("node")
        if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
            missing.append("playwright-core (scripts/deps.sh test installs it into tests/browser)")
        if missing:
            message = "missing: " + ", ".join(missing)
            if os.environ.get("CI") == "true":
                self.fail(message)
            self.skipTest(message)

    def test_dashboard_lists_routers_and_follows_the_file_live(self):
        self.requirements()
        a, b = self.backend("a"), self.backend("b")
        dynamic = DYNAMIC.format(a=a.url, b=b.url)
        proxy = self.berth(dynamic_yaml=dynamic, entry_points=("web", "traefik"), args=("--api.insecure=true",))
        next_dynamic = dynamic.replace("  middlewares:\n", ADDED + "  middlewares:\n", 1)
        settings = {
            "url": f"http://127.0.0.1:{proxy.ports['traefik']}/",
            "chromium": CHROMIUM,
            "dynamicPath": proxy.dynamic_path,
            "nextDynamic": next_dynamic,
            "expectRouters": ["shop@file", "blog@file", "broken@file", "api@internal"],
            "addedRouter": "added@file",
            "expectProblem": 'service "missing@file" does not exist',
            "artifacts": ARTIFACTS,
        }
        settings_path = os.path.join(self.tmp, "settings.json")
        with open(settings_path, "w") as f:
            json.dump(settings, f)
        # Its own process group, so that a run over time takes its Chromium along.
        proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "dashboard_check.mjs"), settings_path],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            self.fail("the browser check ran over 180 s:\n" + out)
        print(out)
        self.assertEqual(proc.returncode, 0, out)
        for shot in ("dashboard-laptop.png", "dashboard-phone.png"):
            shot_path = os.path.join(ARTIFACTS, shot)
            self.assertTrue(os.path.getsize(shot_path) > 10_000, shot_path)
            print(f"artifact: {shot_path}")


if __name__ == "__main__":
    main()
