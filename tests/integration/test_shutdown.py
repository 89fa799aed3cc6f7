"""SIGTERM: ping turns 503 and berth keeps accepting for requestAcceptGraceTimeout, then stops
accepting, lets in-flight requests finish within graceTimeOut, closes idle connections, exits 0."""
import signal
import socket
import threading
import time

from harness import BerthTestCase, RawClient, free_port, get, main, router_yaml, wait_for_port


class Shutdown(BerthTestCase):
    def start(self, accept_grace, grace, ping="{}"):
        be = self.backend("drain")
        self.web, self.ping = free_port(), free_port()
        static = f"""
entryPoints:
  web:
    address: "127.0.0.1:{self.web}"
    transport:
      lifeCycle:
        requestAcceptGraceTimeout: {accept_grace}
        graceTimeOut: {grace}
  traefik:
    address: "127.0.0.1:{self.ping}"
    transport:
      lifeCycle:
        requestAcceptGraceTimeout: {accept_grace}
ping: {ping}
providers:
  file:
    filename: {self.tmp}/dynamic.yml
"""
        proxy = self.berth(static_yaml=static, wait=False,
                           dynamic_yaml=router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [be.url]}))
        wait_for_port(self.web, proc=proxy.proc)
        wait_for_port(self.ping, proc=proxy.proc)
        return proxy

    def test_drains_in_flight_requests_then_exits_zero(self):
        proxy = self.start("600ms", "10s")
        idle = RawClient(self.web)
        idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(idle.read_response()[0], 200)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("slow", get(self.web, "/delay/1500")))
        t.start()
        time.sleep(0.2)
        t0 = time.time()
        proxy.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        # Within requestAcceptGraceTimeout: ping says terminating, new requests are still served.
        self.assertEqual(get(self.ping, "/ping")[0], 503)
        self.assertEqual(get(self.web, "/")[0], 200)
        time.sleep(0.8)
        # After it: no new connections, and the idle keep-alive connection was closed.
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.web), timeout=1).close()
        self.assertTrue(idle.is_closed(wait=1.0))
        t.join(10)
        self.assertEqual(result["slow"][:3:2], (200, b"delayed"))
        code = proxy.proc.wait(10)
        self.assertEqual(code, 0)
        self.assertLess(time.time() - t0, 5)

    def test_ping_answers_the_configured_terminating_status(self):
        # ping.terminatingStatusCode: what /ping says while berth shuts down (Traefik's default 503).
        proxy = self.start("600ms", "1s", ping="{terminatingStatusCode: 204}")
        self.assertEqual(get(self.ping, "/ping")[0], 200)
        proxy.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        self.assertEqual(get(self.ping, "/ping")[0], 204)
        self.assertEqual(proxy.proc.wait(10), 0)

    def test_grace_timeout_bounds_the_wait(self):
        proxy = self.start("0s", "1s")
        t = threading.Thread(target=lambda: self._swallow(lambda: get(self.web, "/delay/5000")))
        t.start()
        time.sleep(0.2)
        t0 = time.time()
        proxy.proc.send_signal(signal.SIGTERM)
        code = proxy.proc.wait(10)
        elapsed = time.time() - t0
        t.join(10)
        self.assertEqual(code, 0)
        self.assertTrue(0.8 < elapsed < 3.0, elapsed)

    @staticmethod
    def _swallow(fn):
        try:
            fn()
        except Exception:
            pass


if __name__ == "__main__":
    main()
