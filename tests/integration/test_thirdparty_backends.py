"""berth in front of backends it did not write: Debian's busybox httpd and nginx, on loopback."""
import hashlib
import os
import shutil
import subprocess
import unittest

from harness import BerthTestCase, RawClient, free_port, get, main, router_yaml, stop, wait_for_port


class ThirdPartyBackends(BerthTestCase):
    def setUp(self):
        super().setUp()
        self.www = os.path.join(self.tmp, "www")
        os.makedirs(self.www)
        self.blob = os.urandom(3 * 1024 * 1024 + 17)
        with open(os.path.join(self.www, "blob.bin"), "wb") as f:
            f.write(self.blob)
        with open(os.path.join(self.www, "index.html"), "w") as f:
            f.write("<h1>hello from a static server</h1>\n")
        self.extra = []

    def tearDown(self):
        for p in self.extra:
            stop(p)
        super().tearDown()

    def check_through_berth(self, backend_port, keep_alive_checks=True):
        proxy = self.berth(dynamic_yaml=router_yaml({"r": ("PathPrefix(`/`)", "s")},
                                                    {"s": [f"http://127.0.0.1:{backend_port}"]}))
        status, _, body = get(proxy.port, "/index.html")
        self.assertEqual((status, body), (200, b"<h1>hello from a static server</h1>\n"))
        status, headers, body = get(proxy.port, "/blob.bin")
        self.assertEqual(status, 200)
        self.assertEqual(hashlib.sha256(body).hexdigest(), hashlib.sha256(self.blob).hexdigest())
        self.assertEqual(get(proxy.port, "/missing")[0], 404)
        if keep_alive_checks:
            c = RawClient(proxy.port)
            for _ in range(50):
                c.send("GET /index.html HTTP/1.1\r\nHost: static.test\r\n\r\n")
                self.assertEqual(c.read_response()[0], 200)
            c.close()
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                              "--max-time", "20", f"http://127.0.0.1:{proxy.port}/blob.bin"],
                             capture_output=True, text=True)
        self.assertEqual(out.stdout, f"200 {len(self.blob)}")

    @unittest.skipUnless(shutil.which("busybox"), "busybox not installed")
    def test_busybox_httpd(self):
        port = free_port()
        p = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", self.www],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.extra.append(p)
        wait_for_port(port, proc=p)
        self.check_through_berth(port, keep_alive_checks=True)

    @unittest.skipUnless(shutil.which("nginx"), "nginx not installed")
    def test_nginx(self):
        port = free_port()
        conf = os.path.join(self.tmp, "nginx.conf")
        t = self.tmp
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {t}/nginx.pid; error_log {t}/nginx-error.log;
events {{ worker_connections 256; }}
http {{ access_log off; client_body_temp_path {t}; proxy_temp_path {t}; fastcgi_temp_path {t};
  uwsgi_temp_path {t}; scgi_temp_path {t};
  server {{ listen 127.0.0.1:{port}; root {self.www}; }} }}
""")
        p = subprocess.Popen(["nginx", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.extra.append(p)
        wait_for_port(port, proc=p)
        self.check_through_berth(port)


if __name__ == "__main__":
    main()
