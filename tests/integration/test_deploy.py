"""Blue-green and canary switching by config: a weighted service's weights changed 20 times by file
edits while clients keep sending (HTTP/1.1 keep-alive and new connections, HTTP/2) fail no
request, and after each change every answer comes from the colours the new weights name (a change
applies atomically on every worker: the answers never mix the old and the new split)."""
import time

from harness import BerthTestCase, Traffic, main, wait_until


def weighted(blue, green, blue_url, green_url, sticky=False):
    out = ("http:\n  routers:\n    app: {rule: \"PathPrefix(`/`)\", service: app}\n"
           "    app-tls: {rule: \"PathPrefix(`/`)\", service: app, tls: {}}\n  services:\n"
           f"    app:\n      weighted:\n        services: \"blue:{blue},green:{green}\"\n")
    if sticky:
        out += "        sticky: {cookie: {name: color}}\n"
    return out + (f"    blue:\n      loadBalancer:\n        servers: [{{url: \"{blue_url}\"}}]\n"
                  f"    green:\n      loadBalancer:\n        servers: [{{url: \"{green_url}\"}}]\n")


class WeightChanges(BerthTestCase):
    def test_twenty_weight_changes_under_load_fail_nothing_and_never_mix(self):
        blue, green = self.backend("blue"), self.backend("green")
        proxy = self.berth(dynamic_yaml=weighted(100, 0, blue.url, green.url))
        stages = [(0, 100), (100, 0), (90, 10), (0, 100), (50, 50)] * 4
        expected = {(100, 0): {"blue"}, (0, 100): {"green"}, (90, 10): {"blue", "green"},
                    (50, 50): {"blue", "green"}}
        load = Traffic(proxy.port, "app.test").start()
        answers = load.backends_since
        try:
            for generation, (b, g) in enumerate(stages, start=2):
                proxy.write_dynamic(weighted(b, g, blue.url, green.url))
                wait_until(lambda: f"configuration generation {generation} applied" in proxy.log_text(), timeout=5)
                applied = time.time()
                time.sleep(0.15)  # let requests that started before the change finish
                settled = time.time()
                wait_until(lambda: len(answers(settled)) >= 20, timeout=5)
                seen = set(answers(settled))
                self.assertLessEqual(seen, expected[(b, g)], f"stage {b}/{g}: answers from {seen}")
                if b and g:  # a split sends to both colours
                    wait_until(lambda: set(answers(applied)) >= {"blue", "green"}, timeout=5)
        finally:
            load.stop(timeout=30)
        self.assertEqual(load.failures, [])
        self.assertGreater(len(load.snapshot()), 400)
        self.assertTrue(all(n > 50 for n in load.ok_by_client.values()), load.ok_by_client)


if __name__ == "__main__":
    main()
