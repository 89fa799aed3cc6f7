"""Blue-green and canary switching by config: a weighted service's weights changed 20 times by file
edits while clients keep sending (keep-alive and new connections) fail no request, and after each
change every answer comes from the colours the new weights name (a change applies atomically on
every worker: the answers never mix the old and the new split)."""
import re
import threading
import time

from harness import BerthTestCase, RawClient, get, main, wait_until


def weighted(blue, green, blue_url, green_url, sticky=False):
    out = ("http:\n  routers:\n    app: {rule: \"PathPrefix(`/`)\", service: app}\n  services:\n"
           f"    app:\n      weighted:\n        services: \"blue:{blue},green:{green}\"\n")
    if sticky:
        out += "        sticky: {cookie: {name: color}}\n"
    return out + (f"    blue:\n      loadBalancer:\n        servers: [{{url: \"{blue_url}\"}}]\n"
                  f"    green:\n      loadBalancer:\n        servers: [{{url: \"{green_url}\"}}]\n")


class Clients:
    """A keep-alive client and a new-connection client, sending until stopped; every answer is
    recorded with the time it came back."""

    def __init__(self, port):
        self.port = port
        self.answers = []  # (time, body)
        self.failures = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._keep_alive, daemon=True),
                         threading.Thread(target=self._fresh, daemon=True)]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _record(self, status, body):
        with self._lock:
            if status == 200:
                self.answers.append((time.time(), body))
            else:
                self.failures.append((status, body[:100]))

    def _keep_alive(self):
        c = RawClient(self.port, timeout=5)
        while not self._stop.is_set():
            try:
                c.send(f"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
                status, _, body = c.read_response()
                self._record(status, body)
            except Exception as e:  # noqa: BLE001
                self._record(0, repr(e).encode())
                c.close()
                c = RawClient(self.port, timeout=5)
        c.close()

    def _fresh(self):
        while not self._stop.is_set():
            try:
                status, _, body = get(self.port, "/", host="app.test")
                self._record(status, body)
            except Exception as e:  # noqa: BLE001
                self._record(0, repr(e).encode())


class WeightChanges(BerthTestCase):
    def test_twenty_weight_changes_under_load_fail_nothing_and_never_mix(self):
        blue, green = self.backend("blue"), self.backend("green")
        proxy = self.berth(dynamic_yaml=weighted(100, 0, blue.url, green.url))
        stages = [(0, 100), (100, 0), (90, 10), (0, 100), (50, 50)] * 4
        expected = {(100, 0): {b"blue"}, (0, 100): {b"green"}, (90, 10): {b"blue", b"green"},
                    (50, 50): {b"blue", b"green"}}
        clients = Clients(proxy.port).start()
        try:
            for generation, (b, g) in enumerate(stages, start=2):
                proxy.write_dynamic(weighted(b, g, blue.url, green.url))
                wait_until(lambda: f"configuration generation {generation} applied" in proxy.log_text(), timeout=5)
                applied = time.time()
                time.sleep(0.15)  # let requests that started before the change finish
                settled = time.time()
                wait_until(lambda: sum(1 for t, _ in clients.answers if t > settled) >= 20, timeout=5)
                seen = {body for t, body in clients.answers if t > settled}
                self.assertLessEqual(seen, expected[(b, g)], f"stage {b}/{g}: answers from {seen}")
                if b and g:  # a split sends to both colours
                    wait_until(lambda: {body for t, body in clients.answers if t > applied} >= {b"blue", b"green"},
                               timeout=5)
        finally:
            clients.stop()
        self.assertEqual(clients.failures, [])
        self.assertGreater(len(clients.answers), 400)


if __name__ == "__main__":
    main()
