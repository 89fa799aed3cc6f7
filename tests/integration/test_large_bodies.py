"""2 GiB bodies stream through berth in both directions with bounded memory (backpressure), read
from berth's own RSS while the transfer runs."""
import socket
import threading
import time

from harness import BerthTestCase, main, router_yaml

TWO_GIB = 2 * 1024 ** 3


class LargeBodies(BerthTestCase):
    def setUp(self):
        super().setUp()
        be = self.backend("big")
        self.proxy = self.berth(dynamic_yaml=router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [be.url]}))
        self.peak = 0
        self.sampling = True

    def sample_rss(self):
        while self.sampling:
            self.peak = max(self.peak, self.proxy.rss_kib())
            time.sleep(0.02)

    def run_with_sampling(self, fn):
        base = self.proxy.rss_kib()
        sampler = threading.Thread(target=self.sample_rss)
        sampler.start()
        try:
            result = fn()
        finally:
            self.sampling = False
            sampler.join()
        print(f"berth RSS: {base} KiB before, {self.peak} KiB peak during the transfer")
        self.assertLess(self.peak - base, 64 * 1024, "berth buffered the body instead of streaming it")
        return result

    def test_upload_2gib(self):
        def upload():
            s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=60)
            s.sendall(f"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {TWO_GIB}\r\n\r\n".encode())
            chunk = b"u" * (1 << 20)
            for _ in range(TWO_GIB // len(chunk)):
                s.sendall(chunk)
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(str(TWO_GIB).encode()):
                part = s.recv(4096)
                if not part:
                    break
                data += part
            s.close()
            return data
        data = self.run_with_sampling(upload)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
        self.assertTrue(data.endswith(str(TWO_GIB).encode()))

    def test_download_2gib(self):
        def download():
            s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=60)
            s.sendall(b"GET /size/%d HTTP/1.1\r\nHost: x\r\n\r\n" % TWO_GIB)
            buf = bytearray(1 << 20)
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            head, rest = head.split(b"\r\n\r\n", 1)
            got = len(rest)
            view = memoryview(buf)
            while got < TWO_GIB:
                n = s.recv_into(view)
                if n == 0:
                    break
                got += n
            s.close()
            return head, got
        head, got = self.run_with_sampling(download)
        self.assertIn(b"Content-Length: %d" % TWO_GIB, head)
        self.assertEqual(got, TWO_GIB)


if __name__ == "__main__":
    main()
