"""Blue-green and canary switching by config: a weighted service's weights changed 20 times by file
edits while clients keep sending (keep-alive and new connections) fail no request, and after each
change every answer comes from the colours the new weights name (a change applies atomically on
every worker: the answers never mix the old and the new split)."""
import time

from harness import BerthTestCase, Load, main, wait_until


def weighted(blue, green, blue_url, green_url, sticky=False):
    out = ("http:\n  routers:\n    app: {rule: \"PathPrefix(`/`)\", service: app}\n  services:\n"
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
        expected = {(100, 0): {b"blue"}, (0, 100): {b"green"}, (90, 10): {b"blue", b"green"},
                    (50, 50): {b"blue", b"green"}}
        load = Load(proxy.port, "app.test", pause=0).start()
        answers = lambda since: [body for t, _, status, body in load.snapshot() if t > since and status == 200]
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
                    wait_until(lambda: set(answers(applied)) >= {b"blue", b"green"}, timeout=5)
        finally:
            load.stop()
        self.assertEqual(load.failures(), [])
        self.assertGreater(len(load.snapshot()), 400)


if __name__ == "__main__":
    main()
