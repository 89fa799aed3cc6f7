"""The compress middleware through berth with real decoders: gzip checked with Python's zlib, br and
zstd with curl --compressed; thresholds, content-type filters, no double compression, streaming of
chunked bodies, HTTP/1.0 clients and keep-alive after a compressed body."""
import gzip
import subprocess

from harness import BerthTestCase, RawClient, get, main


class Compress(BerthTestCase):
    def setUp(self):
        super().setUp()
        self.app = self.backend("app")
        self.encoded = self.recorder(lambda m, p: (200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"},
                                                   gzip.compress(b"z" * 3000)))
        self.proxy = self.berth(dynamic_yaml=f"""
http:
  routers:
    r: {{rule: "PathPrefix(`/`)", service: s, middlewares: [zip]}}
    picky: {{rule: "PathPrefix(`/picky`)", service: s, middlewares: [strip, no-text]}}
    pre: {{rule: "PathPrefix(`/pre`)", service: encoded, middlewares: [zip]}}
    br: {{rule: "PathPrefix(`/br`)", service: s, middlewares: [strip, only-br]}}
    dz: {{rule: "PathPrefix(`/dz`)", service: s, middlewares: [strip, default-zstd]}}
    json: {{rule: "PathPrefix(`/json`)", service: s, middlewares: [strip, json-only]}}
  middlewares:
    zip: {{compress: {{}}}}
    no-text: {{compress: {{excludedContentTypes: [text/plain]}}}}
    strip: {{stripPrefix: {{prefixes: [/picky, /br, /dz, /json]}}}}
    only-br: {{compress: {{encodings: [br]}}}}
    default-zstd: {{compress: {{defaultEncoding: zstd}}}}
    json-only: {{compress: {{includedContentTypes: [application/json]}}}}
  services:
    s: {{loadBalancer: {{servers: [{{url: "{self.app.url}"}}]}}}}
    encoded: {{loadBalancer: {{servers: [{{url: "{self.encoded.url}"}}]}}}}
""")
        self.port = self.proxy.port

    def curl(self, path, *args):
        out = subprocess.run(["curl", "-s", "-m", "10", "-D", "-", *args, f"http://127.0.0.1:{self.port}{path}"],
                             capture_output=True, timeout=20).stdout
        head, _, body = out.partition(b"\r\n\r\n")
        headers = {l.split(b":", 1)[0].strip().lower().decode(): l.split(b":", 1)[1].strip().decode()
                   for l in head.split(b"\r\n")[1:] if b":" in l}
        return headers, body

    def test_gzip_body_decodes_to_the_original(self):
        for path, size in (("/size/5000", 5000), ("/chunked/200000", 200000)):
            status, headers, body = get(self.port, path, headers={"Accept-Encoding": "gzip"})
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("content-encoding"), "gzip", path)
            self.assertNotIn("content-length", headers)
            self.assertIn("Accept-Encoding", headers.get("vary", ""))
            self.assertEqual(gzip.decompress(body), b"x" * size, path)
            self.assertLess(len(body), size // 10)

    def test_br_and_zstd_with_curl(self):
        for encoding in ("br", "zstd"):
            headers, body = self.curl("/size/100000", "--compressed", "-H", f"Accept-Encoding: {encoding}")
            self.assertEqual(headers.get("content-encoding"), encoding)
            self.assertEqual(body, b"x" * 100000, encoding)

    def test_what_is_not_compressed(self):
        status, headers, body = get(self.port, "/size/100", headers={"Accept-Encoding": "gzip"})
        self.assertNotIn("content-encoding", headers, "under minResponseBodyBytes (1024)")
        self.assertEqual(body, b"x" * 100)
        status, headers, body = get(self.port, "/size/5000")
        self.assertNotIn("content-encoding", headers, "the client did not ask")
        status, headers, body = get(self.port, "/size/5000", headers={"Accept-Encoding": "gzip;q=0, identity"})
        self.assertNotIn("content-encoding", headers, "the client refused gzip")
        status, headers, body = get(self.port, "/picky/size/5000", headers={"Accept-Encoding": "gzip"})
        self.assertNotIn("content-encoding", headers, "text/plain is excluded on this router")
        status, headers, body = get(self.port, "/picky/echo?" + "a" * 2000, headers={"Accept-Encoding": "gzip"})
        self.assertEqual(headers.get("content-encoding"), "gzip", "application/json is not excluded")
        status, headers, body = get(self.port, "/pre", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(headers.get("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(body), b"z" * 3000, "an encoded body is never encoded twice")
        status, headers, body = get(self.port, "/size/5000", method="HEAD", headers={"Accept-Encoding": "gzip"})
        self.assertEqual((status, body), (200, b""))

    def test_encodings_default_encoding_and_included_content_types(self):
        # encodings: [br]: a client taking gzip or br gets br; one taking gzip alone, no encoding.
        headers, body = self.curl("/br/size/5000", "--compressed", "-H", "Accept-Encoding: gzip, br")
        self.assertEqual((headers.get("content-encoding"), body), ("br", b"x" * 5000))
        status, headers, body = get(self.port, "/br/size/5000", headers={"Accept-Encoding": "gzip"})
        self.assertNotIn("content-encoding", headers)
        # defaultEncoding: zstd for a request without Accept-Encoding (decoded by the zstd tool).
        status, headers, body = get(self.port, "/dz/size/5000")
        self.assertEqual(headers.get("content-encoding"), "zstd")
        plain = subprocess.run(["zstd", "-d", "-c"], input=body, capture_output=True, timeout=20).stdout
        self.assertEqual(plain, b"x" * 5000)
        # includedContentTypes: [application/json]: JSON is compressed, text/plain is not.
        status, headers, body = get(self.port, "/json/size/5000", headers={"Accept-Encoding": "gzip"})
        self.assertNotIn("content-encoding", headers)
        status, headers, body = get(self.port, "/json/echo?" + "a" * 2000, headers={"Accept-Encoding": "gzip"})
        self.assertEqual(headers.get("content-encoding"), "gzip")
        self.assertIn(b'"target"', gzip.decompress(body))

    def test_keep_alive_and_http10_clients(self):
        c = RawClient(self.port)
        for _ in range(3):
            c.send(b"GET /chunked/3000 HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
            status, headers, body = c.read_response()
            self.assertEqual((status, headers.get("transfer-encoding")), (200, "chunked"))
            self.assertEqual(gzip.decompress(body), b"x" * 3000)
        c.close()
        c = RawClient(self.port)
        c.send(b"GET /size/5000 HTTP/1.0\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
        status, headers, body = c.read_response()
        self.assertNotIn("transfer-encoding", headers, "HTTP/1.0 has no chunked coding: the body ends at close")
        self.assertEqual(gzip.decompress(body), b"x" * 5000)
        c.close()


if __name__ == "__main__":
    main()
