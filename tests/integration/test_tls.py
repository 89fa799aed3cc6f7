"""HTTPS/1.1 through berth with Traefik's semantics, against real TLS clients (python ssl, curl,
openssl s_client) and certificates made at test time by the openssl CLI: HTTPS-only and plain-only
routers on one port, entry point http.tls and redirections, certificate choice by SNI (files,
inline PEM, wildcards, the store's default, the generated default, ECDSA beside RSA), certificate
files replaced at run time, TLS options (versions, cipher suites, sniStrict, client certificates,
missing options), domain fronting (421), forwarded headers, keep-alive and pipelining over TLS,
large bodies, session resumption, wss://, and bad input."""
import asyncio
import datetime
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse

import websockets
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import test_websocket  # its EchoServer; imported as a module so its tests are not collected here
from harness import BerthTestCase, RawClient, free_port, get, main, wait_for_port, wait_until

CERTS = None  # the module's certificate directory (setUpModule)
_certs_tmp = None


def openssl(*args, cwd=None):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30, cwd=cwd)


def make_ca(d, name, cn):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.pem", "-days", "30", "-subj", f"/CN={cn}")


def make_leaf(d, name, subject, sans=(), ca="ca", key="ec", client=False, aia=None):
    """Writes <name>.pem / <name>.key: a leaf signed by <ca>, with `sans` as DNS names."""
    newkey = ["-newkey", "rsa:2048"] if key == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl("req", "-new", *newkey, "-nodes", "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", subject)
    ext = ["basicConstraints=CA:FALSE",
           "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth"),
           "keyUsage=digitalSignature" + ("" if key == "ec" else ",keyEncipherment")]
    if sans:
        ext.append("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans))
    if aia:
        ext.append("authorityInfoAccess=" + aia)
    with open(f"{d}/{name}.ext", "w") as f:
        f.write("\n".join(ext) + "\n")
    openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/{ca}.pem", "-CAkey", f"{d}/{ca}.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
            "-extfile", f"{d}/{name}.ext", "-out", f"{d}/{name}.pem")


# Hosts the "multi" certificate covers (tests where the certificate itself does not matter).
MULTI_HOSTS = ["m.test", "v13.test", "v12.test", "ciph.test", "mtls.test", "opt.test", "nt.test",
               "ws.test", "rec.test", "p.test", "s.test", "g.test", "p384.test", "h1only.test"]


def setUpModule():
    global CERTS, _certs_tmp
    _certs_tmp = tempfile.TemporaryDirectory(prefix="berth-it-certs.")
    d = CERTS = _certs_tmp.name
    make_ca(d, "ca", "Berth Test CA")
    make_ca(d, "clientca", "Berth Client CA")
    make_ca(d, "otherca", "Unrelated CA")
    make_leaf(d, "a", "/CN=a.test/O=file", ["a.test"])
    make_leaf(d, "a2", "/CN=a.test/O=replaced", ["a.test"])
    make_leaf(d, "b", "/CN=b.test/O=inline", ["b.test"])
    make_leaf(d, "w", "/CN=*.w.test/O=wildcard", ["*.w.test"])
    make_leaf(d, "dflt", "/CN=default.test/O=store-default", ["default.test"])
    make_leaf(d, "dual_ec", "/CN=dual.test/O=ecdsa", ["dual.test"])
    make_leaf(d, "dual_rsa", "/CN=dual.test/O=rsa", ["dual.test"], key="rsa")
    make_leaf(d, "multi", "/CN=multi.test/O=multi", MULTI_HOSTS)
    make_leaf(d, "client", "/CN=good client", ca="clientca", client=True)
    make_leaf(d, "intruder", "/CN=intruder", ca="otherca", client=True)


def tearDownModule():
    _certs_tmp.cleanup()


def concat(out, *paths):
    with open(out, "w") as f:
        for p in paths:
            with open(p) as part:
                f.write(part.read())


def cert(name, part="pem"):
    return os.path.join(CERTS, f"{name}.{part}")


def client_ctx(verify=True, minimum=None, maximum=None, ciphers=None, client_cert=None, alpn=None):
    """A client context; `verify` checks the chain against the test CA and the host name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cert("ca"))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    if ciphers:
        ctx.set_ciphers(ciphers)
    if client_cert:
        ctx.load_cert_chain(cert(client_cert), cert(client_cert, "key"))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def handshake(port, sni, ctx=None, timeout=10.0):
    """A completed TLS handshake to 127.0.0.1:port with `sni` (None: no SNI); the caller closes."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return (ctx or client_ctx(verify=sni is not None)).wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def peer(port, sni, ctx=None):
    """What the server presented: {"cn", "o", "key" ("ec"/"rsa"), "version", "cipher", "alpn"}."""
    s = handshake(port, sni, ctx or client_ctx(verify=False))
    try:
        c = x509.load_der_x509_certificate(s.getpeercert(binary_form=True))
        attr = lambda oid: ",".join(a.value for a in c.subject.get_attributes_for_oid(oid))
        key = c.public_key()
        return {"cn": attr(NameOID.COMMON_NAME), "o": attr(NameOID.ORGANIZATION_NAME),
                "key": "ec" if isinstance(key, ec.EllipticCurvePublicKey) else
                       "rsa" if isinstance(key, rsa.RSAPublicKey) else "other",
                "version": s.version(), "cipher": s.cipher()[0], "alpn": s.selected_alpn_protocol()}
    finally:
        s.close()


class TlsClient(RawClient):
    """RawClient over TLS: the same request/response reading, on an SSL socket."""

    def __init__(self, port, sni, ctx=None, timeout=10.0):
        self.sock = handshake(port, sni, ctx, timeout)
        self.buf = b""


def https_get(port, sni, path="/", host=None, ctx=None, method="GET", body=None, headers=None):
    """One HTTPS request on a fresh connection; Host defaults to the SNI."""
    c = TlsClient(port, sni, ctx)
    try:
        hdrs = {"Host": host or sni}
        hdrs.update(headers or {})
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        c.send(f"{method} {path} HTTP/1.1\r\n".encode() +
               "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()).encode() + b"Connection: close\r\n\r\n" +
               (body or b""))
        return c.read_response(head_request=(method == "HEAD"))
    finally:
        c.close()


def s_client(port, *args, stdin_open=0.5, timeout=15):
    """Runs `openssl s_client` against 127.0.0.1:port; stdin stays open `stdin_open` seconds (so
    TLS 1.3 tickets, sent after the handshake, arrive), then EOF ends it. Returns (rc, output)."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(stdin_open)
        out, _ = p.communicate(b"", timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return p.returncode, out.decode("latin-1")


def served_subject(output):
    m = re.search(r"^subject=(.*)$", output, re.M)
    return m.group(1) if m else None


def fails(fn):
    """Runs fn(); returns the exception it raised if it failed the way a refused TLS peer makes a
    client fail (alert, reset, EOF), or None when it succeeded."""
    try:
        fn()
    except (ssl.SSLError, ConnectionError, EOFError, socket.timeout) as e:
        return e
    return None


def service(name, url):
    return f"    {name}:\n      loadBalancer:\n        servers:\n          - url: \"{url}\"\n"


def pem_block(path, indent):
    with open(path) as f:
        return "|\n" + "".join(" " * indent + line for line in f.read().splitlines(True))


class HttpsBackend:
    """An HTTPS/1.1 server on 127.0.0.1 in this process: answers "tls-backend <SNI>" and counts
    TLS connections."""

    def __init__(self, certfile, keyfile):
        import http.server
        outer = self
        self.connections = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = b"tls-backend " + (outer.sni or "").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        self.sni = None

        def on_sni(sock, name, _ctx):
            outer.sni = name
            outer.connections += 1

        ctx.sni_callback = on_sni
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class OcspResponder:
    """An OCSP responder on 127.0.0.1 (in this process), signing with the CA's own key: answers
    `status` ("good" or "revoked") for the certificate in file `leaf` (set it once made), and
    counts requests."""

    def __init__(self, ca_cert_path, ca_key_path, status="good"):
        import http.server
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509 import ocsp
        outer = self
        self.status = status
        self.requests = 0
        self.leaf = None
        with open(ca_cert_path, "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        with open(ca_key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                outer.requests += 1
                req = ocsp.load_der_ocsp_request(self.rfile.read(int(self.headers["Content-Length"])))
                now = datetime.datetime.utcnow()
                revoked = outer.status == "revoked"
                with open(outer.leaf, "rb") as f:
                    leaf = x509.load_pem_x509_certificate(f.read())
                if req.serial_number != leaf.serial_number:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                builder = ocsp.OCSPResponseBuilder().add_response(
                    leaf, ca, hashes.SHA1(),
                    ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
                    now - datetime.timedelta(minutes=1), now + datetime.timedelta(hours=1),
                    now - datetime.timedelta(days=1) if revoked else None, None
                ).responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
                body = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Tls(BerthTestCase):
    def start(self, dynamic, eps=("web",), ep_extra=None, workers=2):
        """berth with its own static config: entry points `eps` on fresh loopback ports, each with
        `ep_extra[name]` (YAML, indented under the entry point); waits for the first generation."""
        ports = {n: free_port() for n in eps}
        static = "entryPoints:\n"
        for n, p in ports.items():
            static += f"  {n}:\n    address: \"127.0.0.1:{p}\"\n"
            for line in (ep_extra or {}).get(n, "").splitlines():
                static += "    " + line + "\n"
        static += (f"providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\n    watch: true\n"
                   f"workers: {workers}\nlog:\n  level: DEBUG\n")
        proxy = self.berth(static_yaml=static, dynamic_yaml=dynamic, wait=False)
        proxy.ports = ports
        for p in ports.values():
            wait_for_port(p, proc=proxy.proc)
        wait_until(lambda: "configuration generation 1 applied" in proxy.log_text())
        return proxy

    def start_one_tls_router(self, be):
        """berth with one TLS router, Host(`a.test`) to backend `be`, with a.test's certificate."""
        return self.start(f"""
http:
  routers:
    a:
      rule: "Host(`a.test`)"
      service: s
      tls: {{}}
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a")}""")

    def certs_yaml(self, *names):
        return "".join(f"    - certFile: {cert(n)}\n      keyFile: {cert(n, 'key')}\n" for n in names)

    def assert_alive(self, proxy):
        self.assertIsNone(proxy.proc.poll(), "berth exited")

    # ---------------------------------------------------------------- routers, entry points

    def test_tls_router_serves_https_only_plain_router_http_only_on_one_port(self):
        tls_side, plain_side = self.backend("tls-side"), self.backend("plain-side")
        proxy = self.start(f"""
http:
  routers:
    secure:
      rule: "Host(`a.test`)"
      service: t
      tls: {{}}
    plain:
      rule: "Host(`a.test`)"
      service: p
    secure-only:
      rule: "Host(`s.test`)"
      service: t
      tls: {{}}
    plain-only:
      rule: "Host(`p.test`)"
      service: p
  services:
{service("t", tls_side.url)}{service("p", plain_side.url)}
tls:
  certificates:
{self.certs_yaml("a", "multi")}""")
        port = proxy.port
        self.assertEqual(https_get(port, "a.test")[::2], (200, b"tls-side"))
        self.assertEqual(get(port, "/", host="a.test")[::2], (200, b"plain-side"))
        self.assertEqual(https_get(port, "s.test")[::2], (200, b"tls-side"))
        self.assertEqual(get(port, "/", host="s.test")[::2], (404, b"404 page not found\n"))
        self.assertEqual(get(port, "/", host="p.test")[::2], (200, b"plain-side"))
        self.assertEqual(https_get(port, "p.test")[::2], (404, b"404 page not found\n"))
        # ALPN: a client offering only http/1.1 gets it; curl offers h2 first and must be answered
        # in whichever protocol ALPN selected (h2 once berth serves HTTP/2, else HTTP/1.1).
        self.assertEqual(peer(port, "a.test", client_ctx(alpn=["http/1.1"]))["alpn"], "http/1.1")
        alpn = peer(port, "a.test", client_ctx(alpn=["h2", "http/1.1"]))["alpn"]
        self.assertIn(alpn, ("h2", "http/1.1"))
        out = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", "--resolve", f"a.test:{port}:127.0.0.1",
                              "--cacert", cert("ca"), f"https://a.test:{port}/"], capture_output=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.startswith(b"HTTP/2 200" if alpn == "h2" else b"HTTP/1.1 200"), out.stdout[:200])
        self.assertTrue(out.stdout.endswith(b"\r\n\r\ntls-side"), out.stdout[-200:])

    def test_entry_point_http_tls_and_redirection_to_https(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    app:
      rule: "Host(`a.test`)"
      service: s
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a")}""", eps=("web", "websecure"),
                           ep_extra={"web": "http:\n  redirections:\n    entryPoint:\n      to: websecure\n"
                                            "      scheme: https\n",
                                     "websecure": "http:\n  tls: {}\n"})
        web, secure = proxy.ports["web"], proxy.ports["websecure"]
        self.assertEqual(https_get(secure, "a.test")[::2], (200, b"app"))
        self.assertEqual(get(secure, "/", host="a.test")[0], 404)  # the router is HTTPS-only there
        status, headers, _ = get(web, "/a/b?c=d", host="a.test")
        self.assertEqual((status, headers.get("location")), (301, f"https://a.test:{secure}/a/b?c=d"))
        status, headers, _ = get(web, "/form", host="a.test", method="POST", body=b"x=1")
        self.assertEqual((status, headers.get("location")), (308, f"https://a.test:{secure}/form"))
        # Following the redirect with a real client lands on the HTTPS router.
        out = subprocess.run(["curl", "-sS", "-L", "--max-time", "10", "--resolve", f"a.test:{web}:127.0.0.1",
                              "--resolve", f"a.test:{secure}:127.0.0.1", "--cacert", cert("ca"),
                              f"http://a.test:{web}/x"], capture_output=True, timeout=20)
        self.assertEqual((out.returncode, out.stdout), (0, b"app"), out.stderr)

    # ---------------------------------------------------------------- certificates

    def test_certificate_choice_by_sni_files_inline_wildcard_and_store_default(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    app:
      rule: "HostRegexp(`.+`)"
      service: s
      tls: {{}}
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a", "w")}    - certFile: {pem_block(cert("b"), 8)}      keyFile: {pem_block(cert("b", "key"), 8)}
  stores:
    default:
      defaultCertificate:
        certFile: {cert("dflt")}
        keyFile: {cert("dflt", "key")}
""")
        port = proxy.port
        self.assertEqual(peer(port, "a.test", client_ctx())["o"], "file")        # verified against the CA
        self.assertEqual(peer(port, "A.Test")["o"], "file")                      # SNI case ignored
        self.assertEqual(peer(port, "b.test", client_ctx())["o"], "inline")
        self.assertEqual(peer(port, "x.w.test", client_ctx())["cn"], "*.w.test")
        self.assertEqual(peer(port, "a.b.w.test")["o"], "store-default")        # one label only
        self.assertEqual(peer(port, "w.test")["o"], "store-default")
        self.assertEqual(peer(port, "unknown.test")["o"], "store-default")
        self.assertEqual(peer(port, None)["o"], "store-default")                 # no SNI
        self.assertEqual(https_get(port, "x.w.test")[::2], (200, b"app"))
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--resolve", f"b.test:{port}:127.0.0.1",
                              "--cacert", cert("ca"), f"https://b.test:{port}/"], capture_output=True, timeout=20)
        self.assertEqual((out.returncode, out.stdout), (0, b"app"), out.stderr)

    def test_generated_default_certificate_without_a_store_default(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    app:
      rule: "HostRegexp(`.+`)"
      service: s
      tls: {{}}
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a")}""")
        port = proxy.port
        self.assertEqual(peer(port, "a.test")["o"], "file")
        for sni in ("unknown.test", None):
            self.assertEqual(peer(port, sni)["cn"], "TRAEFIK DEFAULT CERT", sni)
        # A client that checks certificates refuses it (self-signed, other name).
        self.assertIsNotNone(fails(lambda: handshake(port, "unknown.test", client_ctx()).close()))
        rc, out = s_client(port, "-servername", "unknown.test", stdin_open=0.1)
        self.assertIn("CN = TRAEFIK DEFAULT CERT", served_subject(out) or "", out)

    def test_ecdsa_and_rsa_certificates_for_one_name(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    app:
      rule: "Host(`dual.test`)"
      service: s
      tls: {{}}
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("dual_ec", "dual_rsa")}""")
        port = proxy.port
        got = peer(port, "dual.test", client_ctx())
        self.assertEqual((got["o"], got["key"]), ("ecdsa", "ec"))
        rc, out = s_client(port, "-servername", "dual.test", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256",
                           stdin_open=0.1)
        self.assertIn("O = rsa", served_subject(out) or "", out)
        self.assertIn("Cipher is ECDHE-RSA-AES128-GCM-SHA256", out)
        # TLS 1.3: the signature algorithms decide.
        rc, out = s_client(port, "-servername", "dual.test", "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256",
                           stdin_open=0.1)
        self.assertIn("O = rsa", served_subject(out) or "", out)
        rc, out = s_client(port, "-servername", "dual.test", "-tls1_2", stdin_open=0.1)
        self.assertIn("O = ecdsa", served_subject(out) or "", out)
        # A python client limited to RSA ciphers on TLS 1.2 gets the RSA certificate and verifies it.
        got = peer(port, "dual.test", client_ctx(maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256"))
        self.assertEqual((got["o"], got["key"], got["version"]), ("rsa", "rsa", "TLSv1.2"))

    def test_replaced_certificate_file_takes_effect_on_next_handshake(self):
        be = self.backend("app")
        crt, key = os.path.join(self.tmp, "a.pem"), os.path.join(self.tmp, "a.key")
        shutil.copy(cert("a"), crt)
        shutil.copy(cert("a", "key"), key)
        proxy = self.start(f"""
http:
  routers:
    app:
      rule: "Host(`a.test`)"
      service: s
      tls: {{}}
  services:
{service("s", be.url)}
tls:
  certificates:
    - certFile: {crt}
      keyFile: {key}
""")
        port = proxy.port
        kept = TlsClient(port, "a.test", client_ctx())
        kept.send("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(kept.read_response()[::2], (200, b"app"))
        self.assertEqual(peer(port, "a.test")["o"], "file")
        for src, dst in ((cert("a2", "key"), key), (cert("a2"), crt)):
            shutil.copy(src, dst + ".new")
            os.replace(dst + ".new", dst)
        wait_until(lambda: peer(port, "a.test")["o"] == "replaced", timeout=10, step=0.1)
        self.assertEqual(peer(port, "a.test", client_ctx())["o"], "replaced")
        self.assertEqual(https_get(port, "a.test")[::2], (200, b"app"))
        # The connection opened before the change still works.
        kept.send("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(kept.read_response()[::2], (200, b"app"))
        kept.close()
        self.assert_alive(proxy)

    # ---------------------------------------------------------------- TLS options

    def test_tls_options_versions_and_cipher_suites_by_host(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    a:
      rule: "Host(`a.test`)"
      service: s
      tls: {{}}
    v13:
      rule: "Host(`v13.test`)"
      service: s
      tls:
        options: modern
    v12:
      rule: "Host(`v12.test`)"
      service: s
      tls:
        options: old
    ciph:
      rule: "Host(`ciph.test`)"
      service: s
      tls:
        options: onecipher
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a", "multi")}  options:
    modern:
      minVersion: VersionTLS13
    old:
      maxVersion: VersionTLS12
    onecipher:
      cipherSuites:
        - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
""")
        port = proxy.port
        tls12 = lambda **kw: client_ctx(maximum=ssl.TLSVersion.TLSv1_2, **kw)
        # Default options: TLS 1.3 preferred, TLS 1.2 accepted, TLS 1.1 refused by the server.
        self.assertEqual(peer(port, "a.test")["version"], "TLSv1.3")
        self.assertEqual(peer(port, "a.test", tls12())["version"], "TLSv1.2")
        rc, out = s_client(port, "-servername", "a.test", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", stdin_open=0.1)
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn("no protocols available", out)  # the client did offer TLS 1.1
        self.assertIn("alert protocol version", out)
        # minVersion TLS 1.3 on v13.test only.
        self.assertEqual(peer(port, "v13.test", client_ctx())["version"], "TLSv1.3")
        self.assertIsNotNone(fails(lambda: peer(port, "v13.test", tls12())))
        rc, out = s_client(port, "-servername", "v13.test", "-tls1_2", stdin_open=0.1)
        self.assertIn("alert protocol version", out)
        self.assertEqual(https_get(port, "v13.test")[::2], (200, b"app"))
        # maxVersion TLS 1.2 on v12.test.
        self.assertEqual(peer(port, "v12.test")["version"], "TLSv1.2")
        self.assertIsNotNone(fails(lambda: peer(port, "v12.test", client_ctx(minimum=ssl.TLSVersion.TLSv1_3))))
        self.assertEqual(https_get(port, "v12.test")[::2], (200, b"app"))
        # One cipher suite for TLS 1.2 on ciph.test.
        self.assertEqual(peer(port, "ciph.test", tls12())["cipher"], "ECDHE-ECDSA-AES256-GCM-SHA384")
        self.assertIsNotNone(fails(lambda: peer(port, "ciph.test", tls12(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))))
        self.assertEqual(peer(port, "a.test", tls12(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))["cipher"],
                         "ECDHE-ECDSA-AES128-GCM-SHA256")

    def test_curve_preferences_and_alpn_protocols_by_host(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    a:
      rule: "Host(`a.test`)"
      service: s
      tls: {{}}
    p384:
      rule: "Host(`p384.test`)"
      service: s
      tls:
        options: p384only
    h1:
      rule: "Host(`h1only.test`)"
      service: s
      tls:
        options: h1only
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a", "multi")}  options:
    p384only:
      curvePreferences: [CurveP384]
    h1only:
      alpnProtocols: [http/1.1]
""")
        port = proxy.port
        # curvePreferences: the key exchange the host allows, whatever the client prefers.
        rc, out = s_client(port, "-servername", "a.test", "-groups", "X25519:P-384", stdin_open=0.1)
        self.assertIn("Server Temp Key: X25519", out)
        rc, out = s_client(port, "-servername", "p384.test", "-groups", "X25519:P-384", stdin_open=0.1)
        self.assertIn("Server Temp Key: ECDH, secp384r1", out)
        rc, out = s_client(port, "-servername", "p384.test", "-groups", "X25519", stdin_open=0.1)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("handshake failure", out)
        self.assertEqual(https_get(port, "p384.test")[::2], (200, b"app"))  # Python offers P-384 too
        # alpnProtocols: h2 is not offered to the client of h1only.test, and HTTP/1.1 serves it.
        both = lambda: client_ctx(alpn=["h2", "http/1.1"])
        self.assertEqual(peer(port, "a.test", both())["alpn"], "h2")
        self.assertEqual(peer(port, "h1only.test", both())["alpn"], "http/1.1")
        self.assertEqual(https_get(port, "h1only.test", ctx=both())[::2], (200, b"app"))

    def test_sni_strict_refuses_unknown_and_missing_sni(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    app:
      rule: "HostRegexp(`.+`)"
      service: s
      tls: {{}}
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a")}  options:
    default:
      sniStrict: true
""")
        port = proxy.port
        self.assertEqual(https_get(port, "a.test")[::2], (200, b"app"))
        self.assertIsNotNone(fails(lambda: peer(port, "unknown.test")))
        self.assertIsNotNone(fails(lambda: peer(port, None)))
        rc, out = s_client(port, "-servername", "unknown.test", stdin_open=0.1)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("unrecognized name", out)  # alert 112
        self.assertEqual(https_get(port, "a.test")[::2], (200, b"app"))

    def test_client_certificates_required_and_verified_if_given(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    mtls:
      rule: "Host(`mtls.test`)"
      service: s
      tls:
        options: required
    opt:
      rule: "Host(`opt.test`)"
      service: s
      tls:
        options: optional
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("multi")}  options:
    required:
      clientAuth:
        caFiles:
          - {cert("clientca")}
        clientAuthType: RequireAndVerifyClientCert
    optional:
      clientAuth:
        caFiles:
          - {cert("clientca")}
        clientAuthType: VerifyClientCertIfGiven
""")
        port = proxy.port
        # RequireAndVerifyClientCert: with TLS 1.3 the refusal reaches the client on its first read.
        self.assertIsNotNone(fails(lambda: https_get(port, "mtls.test")))
        self.assertEqual(https_get(port, "mtls.test", ctx=client_ctx(client_cert="client"))[::2], (200, b"app"))
        self.assertIsNotNone(fails(lambda: https_get(port, "mtls.test", ctx=client_ctx(client_cert="intruder"))))
        tls12 = dict(maximum=ssl.TLSVersion.TLSv1_2)
        self.assertIsNotNone(fails(lambda: https_get(port, "mtls.test", ctx=client_ctx(**tls12))))
        self.assertEqual(https_get(port, "mtls.test", ctx=client_ctx(client_cert="client", **tls12))[::2],
                         (200, b"app"))
        # VerifyClientCertIfGiven.
        self.assertEqual(https_get(port, "opt.test")[::2], (200, b"app"))
        self.assertEqual(https_get(port, "opt.test", ctx=client_ctx(client_cert="client"))[::2], (200, b"app"))
        self.assertIsNotNone(fails(lambda: https_get(port, "opt.test", ctx=client_ctx(client_cert="intruder"))))
        # curl with a client certificate.
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--resolve", f"mtls.test:{port}:127.0.0.1",
                              "--cacert", cert("ca"), "--cert", cert("client"), "--key", cert("client", "key"),
                              f"https://mtls.test:{port}/"], capture_output=True, timeout=20)
        self.assertEqual((out.returncode, out.stdout), (0, b"app"), out.stderr)
        self.assert_alive(proxy)

    def test_client_auth_types_that_do_not_verify(self):
        # (Names of the test certificate: rec.test RequestClientCert, p.test RequireAnyClientCert, nt.test
        # NoClientCert.) RequestClientCert asks and takes any certificate or none; RequireAnyClientCert needs one,
        # verified or not; NoClientCert never asks. passTLSClientCert shows what reached berth.
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    request: {{rule: "Host(`rec.test`)", service: s, middlewares: [pass], tls: {{options: request}}}}
    any: {{rule: "Host(`p.test`)", service: s, middlewares: [pass], tls: {{options: any}}}}
    none: {{rule: "Host(`nt.test`)", service: s, middlewares: [pass], tls: {{options: none}}}}
  middlewares:
    pass: {{passTLSClientCert: {{info: {{subject: {{commonName: true}}}}}}}}
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("multi")}  options:
    request: {{clientAuth: {{clientAuthType: RequestClientCert}}}}
    any: {{clientAuth: {{clientAuthType: RequireAnyClientCert}}}}
    none: {{clientAuth: {{clientAuthType: NoClientCert, caFiles: ["{cert("clientca")}"]}}}}
""")
        port = proxy.port

        def seen(sni, client_cert=None):
            status, _, body = https_get(port, sni, path="/echo", ctx=client_ctx(client_cert=client_cert))
            self.assertEqual(status, 200, body)
            headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
            return headers.get("x-forwarded-tls-client-cert-info")

        self.assertIsNone(seen("rec.test"))
        self.assertIn("CN%3Dintruder", seen("rec.test", "intruder"))  # from an unknown CA: taken
        self.assertIsNotNone(fails(lambda: https_get(port, "p.test")))
        self.assertIn("CN%3Dintruder", seen("p.test", "intruder"))
        self.assertIn("CN%3Dgood+client", seen("p.test", "client"))
        self.assertIsNone(seen("nt.test", "client"), "NoClientCert asked for a certificate")
        self.assert_alive(proxy)

    def test_router_with_missing_tls_options_is_disabled(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    ghost:
      rule: "Host(`g.test`)"
      service: s
      tls:
        options: nope
    fine:
      rule: "Host(`a.test`)"
      service: s
      tls: {{}}
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a", "multi")}""")
        port = proxy.port
        self.assertEqual(https_get(port, "g.test")[0], 404)
        self.assertEqual(https_get(port, "a.test")[::2], (200, b"app"))
        lines = [l for l in proxy.log_text().splitlines() if "ghost" in l and "nope" in l]
        self.assertTrue(lines, proxy.log_text()[-3000:])

    def test_domain_fronting_gets_421_unless_options_match(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    a:
      rule: "Host(`a.test`)"
      service: s
      tls: {{}}
    b:
      rule: "Host(`b.test`)"
      service: s
      tls: {{}}
    m:
      rule: "Host(`m.test`)"
      service: s
      tls:
        options: modern
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a", "b", "multi")}  options:
    modern:
      minVersion: VersionTLS13
""")
        port = proxy.port
        status, _, body = https_get(port, "a.test", "/", host="m.test")
        self.assertEqual(status, 421, body)
        self.assertEqual(https_get(port, "m.test", "/", host="a.test")[0], 421)
        self.assertEqual(https_get(port, "a.test", "/", host="b.test")[::2], (200, b"app"))  # same options
        self.assertEqual(https_get(port, "a.test", "/", host="A.TEST:443")[::2], (200, b"app"))
        self.assertEqual(https_get(port, "m.test")[::2], (200, b"app"))
        # The server name is compared without regard to case, as host names are.
        self.assertEqual(https_get(port, "M.Test", "/", host="m.test")[::2], (200, b"app"))
        self.assertEqual(https_get(port, "M.Test", "/", host="a.test")[0], 421)
        # Over HTTP/2 each stream is checked against its connection's server name.
        for authority, expected in (("a.test", b"421"), ("m.test", b"200")):
            out = subprocess.run(["curl", "-sS", "--http2", "--max-time", "10", "--resolve", f"m.test:{port}:127.0.0.1",
                                  "--cacert", cert("ca"), "-H", f"Host: {authority}", "-o", "/dev/null",
                                  "-w", "%{http_version} %{http_code}", f"https://m.test:{port}/"],
                                 capture_output=True, timeout=20)
            self.assertEqual(out.stdout, b"2 " + expected, out.stderr)

    # ---------------------------------------------------------------- HTTP over TLS

    def test_forwarded_headers_over_tls(self):
        rec = self.recorder()
        proxy = self.start(f"""
http:
  routers:
    secure:
      rule: "Host(`rec.test`)"
      service: r
      tls: {{}}
    plain:
      rule: "Host(`rec.test`)"
      service: r
  services:
{service("r", rec.url)}
tls:
  certificates:
{self.certs_yaml("multi")}""")
        port = proxy.port
        self.assertEqual(https_get(port, "rec.test", "/x", headers={"X-Forwarded-Proto": "http"})[0], 200)
        h = {k.lower(): v for k, v in rec.requests[-1][2].items()}
        self.assertEqual((h.get("x-forwarded-proto"), h.get("x-forwarded-port"), h.get("x-forwarded-host")),
                         ("https", "443", "rec.test"))
        self.assertEqual(https_get(port, "rec.test", "/x", host="rec.test:8443")[0], 200)
        h = {k.lower(): v for k, v in rec.requests[-1][2].items()}
        self.assertEqual((h.get("x-forwarded-proto"), h.get("x-forwarded-port")), ("https", "8443"))
        self.assertEqual(get(port, "/x", host="rec.test")[0], 200)
        h = {k.lower(): v for k, v in rec.requests[-1][2].items()}
        self.assertEqual((h.get("x-forwarded-proto"), h.get("x-forwarded-port")), ("http", "80"))

    def test_keep_alive_with_idle_pauses_and_pipelining_over_tls(self):
        be = self.backend("app")
        proxy = self.start_one_tls_router(be)
        c = TlsClient(proxy.port, "a.test", client_ctx())
        for i in range(4):
            if i:
                time.sleep(0.5)  # longer than the 250 ms after which an idle connection parks
            c.send(f"GET /size/{100 + i} HTTP/1.1\r\nHost: a.test\r\n\r\n")
            status, headers, body = c.read_response()
            self.assertEqual((status, body), (200, b"x" * (100 + i)), i)
            self.assertNotIn("connection", headers)
        c.send("GET /delay/100 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /size/7 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(c.read_response()[::2], (200, b"delayed"))
        self.assertEqual(c.read_response()[::2], (200, b"x" * 7))
        time.sleep(0.5)
        c.send("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(c.read_response()[::2], (200, b"app"))
        self.assertFalse(c.is_closed(wait=0.3))
        c.close()

    def test_requests_in_two_records_of_one_segment_over_tls(self):
        """Two requests in two TLS records that arrive in one read: berth reads both records at once
        (OpenSSL's read-ahead), and serves the second without waiting for the socket again."""
        be = self.backend("app")
        proxy = self.start_one_tls_router(be)
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        self.addCleanup(sock.close)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_ctx().wrap_bio(incoming, outgoing, server_hostname="a.test")
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        sock.sendall(outgoing.read())
        tls.write(b"GET /size/5 HTTP/1.1\r\nHost: a.test\r\n\r\n")  # one record each
        tls.write(b"GET /size/6 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        records = outgoing.read()
        self.assertGreater(len(records), 2 * 40)
        sock.sendall(records)  # both records in one segment
        received = b""
        deadline = time.monotonic() + 5
        while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"x" * 6):
            self.assertLess(time.monotonic(), deadline, f"only this came back: {received!r}")
            try:
                chunk = tls.read(65536)
                if not chunk:  # berth's close_notify
                    break
                received += chunk
                continue
            except ssl.SSLWantReadError:
                pass
            data = sock.recv(65536)
            self.assertTrue(data, f"berth closed the connection after {received!r}")
            incoming.write(data)
        first, second = received.split(b"HTTP/1.1 200")[1:]
        self.assertTrue(first.endswith(b"\r\n\r\nxxxxx"), first)
        self.assertTrue(second.endswith(b"\r\n\r\nxxxxxx"), second)

    def test_client_hello_split_across_segments(self):
        """A ClientHello that arrives in pieces (a big one spans TCP segments) is served once whole."""
        proxy = self.start_one_tls_router(self.backend("app"))
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_ctx().wrap_bio(incoming, outgoing, server_hostname="a.test")
        with self.assertRaises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        for piece in (hello[:3], hello[3:40], hello[40:]):  # inside the record header, then the body
            sock.sendall(piece)
            time.sleep(0.3)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                self.assertTrue(data, "berth closed the connection during the handshake")
                incoming.write(data)
        tls.write(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        sock.sendall(outgoing.read())
        received = b""
        while True:
            try:
                chunk = tls.read(65536)
                if not chunk:  # berth's close_notify
                    break
                received += chunk
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            data = sock.recv(65536)
            if not data:
                break
            incoming.write(data)
        self.assertTrue(received.startswith(b"HTTP/1.1 200"), received)
        self.assertTrue(received.endswith(b"app"), received)

    def test_two_mebibyte_bodies_both_ways_over_tls(self):
        be = self.backend("app")
        big = os.urandom(2 * 1024 * 1024)
        rec = self.recorder(lambda method, path: (200, {}, big if path == "/download" else b"stored"))
        proxy = self.start(f"""
http:
  routers:
    a:
      rule: "Host(`a.test`)"
      service: s
      tls: {{}}
    rec:
      rule: "Host(`rec.test`)"
      service: r
      tls: {{}}
  services:
{service("s", be.url)}{service("r", rec.url)}
tls:
  certificates:
{self.certs_yaml("a", "multi")}""")
        port = proxy.port
        c = TlsClient(port, "rec.test", client_ctx())
        c.send(f"POST /upload HTTP/1.1\r\nHost: rec.test\r\nContent-Length: {len(big)}\r\n\r\n".encode() + big)
        self.assertEqual(c.read_response()[::2], (200, b"stored"))
        self.assertEqual(len(rec.requests[-1][3]), len(big))
        self.assertTrue(rec.requests[-1][3] == big, "uploaded body differs")
        c.send("GET /download HTTP/1.1\r\nHost: rec.test\r\n\r\n")
        status, _, body = c.read_response()
        self.assertEqual((status, len(body)), (200, len(big)))
        self.assertTrue(body == big, "downloaded body differs")
        c.close()
        self.assertEqual(https_get(port, "a.test", "/sink", method="POST", body=big)[::2], (200, b"2097152"))
        status, headers, body = https_get(port, "a.test", "/chunked/2097152")
        self.assertEqual((status, headers.get("transfer-encoding"), body), (200, "chunked", b"x" * 2097152))

    # ---------------------------------------------------------------- session resumption

    def resumption_config(self, be):
        return f"""
http:
  routers:
    a:
      rule: "Host(`a.test`)"
      service: s
      tls: {{}}
    nt:
      rule: "Host(`nt.test`)"
      service: s
      tls:
        options: notickets
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a", "multi")}  options:
    notickets:
      disableSessionTickets: true
"""

    def test_session_resumption_tls13_ticket_on_any_worker(self):
        proxy = self.start(self.resumption_config(self.backend("app")))
        port = proxy.port
        sess = os.path.join(self.tmp, "s0")
        rc, out = s_client(port, "-servername", "a.test", "-tls1_3", "-sess_out", sess)
        self.assertIn("New, TLSv1.3", out)
        self.assertTrue(os.path.exists(sess) and os.path.getsize(sess) > 0, out)
        for i in range(5):  # workers: 2, every new connection may land on either
            rc, out = s_client(port, "-servername", "a.test", "-tls1_3", "-sess_in", sess, stdin_open=0.1)
            self.assertIn("Reused, TLSv1.3", out, f"resumption {i}")

    def test_session_resumption_tls13_resumed_connection_gets_a_new_ticket(self):
        # Clients use a TLS 1.3 ticket once (RFC 8446 C.4; browsers do): each resumed connection
        # must bring a fresh ticket, as Go's server (Traefik) and OpenSSL's own ticket keys do.
        proxy = self.start(self.resumption_config(self.backend("app")))
        port = proxy.port
        sess = os.path.join(self.tmp, "s0")
        rc, out = s_client(port, "-servername", "a.test", "-tls1_3", "-sess_out", sess)
        self.assertIn("New, TLSv1.3", out)
        for i in range(1, 5):
            nxt = os.path.join(self.tmp, f"s{i}")
            rc, out = s_client(port, "-servername", "a.test", "-tls1_3", "-sess_in", sess, "-sess_out", nxt)
            self.assertIn("Reused, TLSv1.3", out, f"resumption {i}")
            self.assertIn("Post-Handshake New Session Ticket arrived", out, f"resumption {i}: no new ticket")
            sess = nxt

    def test_session_resumption_tls12_session_cache_and_ticket(self):
        proxy = self.start(self.resumption_config(self.backend("app")))
        port = proxy.port
        # Without tickets: the server's session cache (shared by the workers).
        sess = os.path.join(self.tmp, "c0")
        rc, out = s_client(port, "-servername", "a.test", "-tls1_2", "-no_ticket", "-sess_out", sess, stdin_open=0.2)
        self.assertIn("New, TLSv1.2", out)
        for i in range(4):
            rc, out = s_client(port, "-servername", "a.test", "-tls1_2", "-no_ticket", "-sess_in", sess,
                               stdin_open=0.1)
            self.assertIn("Reused, TLSv1.2", out, f"resumption {i}")
        # With a ticket.
        sess = os.path.join(self.tmp, "t0")
        rc, out = s_client(port, "-servername", "a.test", "-tls1_2", "-sess_out", sess, stdin_open=0.2)
        self.assertIn("TLS session ticket:", out)
        for i in range(3):
            rc, out = s_client(port, "-servername", "a.test", "-tls1_2", "-sess_in", sess, stdin_open=0.1)
            self.assertIn("Reused, TLSv1.2", out, f"resumption {i}")

    def test_disable_session_tickets(self):
        proxy = self.start(self.resumption_config(self.backend("app")))
        port = proxy.port
        rc, out = s_client(port, "-servername", "a.test", "-tls1_2", stdin_open=0.2)
        self.assertIn("TLS session ticket:", out)  # the default options issue tickets
        rc, out = s_client(port, "-servername", "nt.test", "-tls1_2", stdin_open=0.2)
        self.assertIn("New, TLSv1.2", out)
        self.assertNotIn("TLS session ticket:", out)
        self.assertEqual(https_get(port, "nt.test")[::2], (200, b"app"))

    # ---------------------------------------------------------------- WebSocket

    def test_websocket_over_tls(self):
        echo = test_websocket.EchoServer()
        self._procs.append(echo)
        proxy = self.start(f"""
http:
  routers:
    ws:
      rule: "Host(`ws.test`)"
      service: e
      tls: {{}}
  services:
{service("e", f"http://127.0.0.1:{echo.port}")}
tls:
  certificates:
{self.certs_yaml("multi")}""")
        port = proxy.port

        async def talk():
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            async with websockets.connect(f"wss://ws.test:{port}/chat?x=1", sock=sock, ssl=client_ctx(),
                                          server_hostname="ws.test", max_size=2 ** 24) as ws:
                await ws.send("hello")
                first = await ws.recv()
                big = os.urandom(1024 * 1024)
                await ws.send(big)
                second = await ws.recv()
                await ws.close()
                return first, second == big, ws.close_code
        self.assertEqual(asyncio.run(asyncio.wait_for(talk(), 20)), ("hello", True, 1000))
        self.assertEqual(echo.paths, ["/chat?x=1"])

    # ---------------------------------------------------------------- bad input

    # ---------------------------------------------------------------- passTLSClientCert

    def test_pass_tls_client_cert_pem_and_info(self):
        rec = self.recorder()
        proxy = self.start(f"""
http:
  routers:
    mtls:
      rule: "Host(`mtls.test`)"
      service: s
      middlewares: [cert]
      tls:
        options: required
  middlewares:
    cert:
      passTLSClientCert:
        pem: true
        info:
          notAfter: true
          sans: true
          subject:
            commonName: true
            organization: true
          issuer:
            commonName: true
  services:
{service("s", rec.url)}
tls:
  certificates:
{self.certs_yaml("multi")}  options:
    required:
      clientAuth:
        caFiles:
          - {cert("clientca")}
        clientAuthType: RequireAndVerifyClientCert
""")
        # A client's own copy of the headers never reaches the backend; berth's does.
        status, _, _ = https_get(proxy.port, "mtls.test", ctx=client_ctx(client_cert="client"),
                                 headers={"X-Forwarded-Tls-Client-Cert": "forged"})
        self.assertEqual(status, 200)
        headers = rec.requests[-1][2]
        pem = urllib.parse.unquote_plus(headers["X-Forwarded-Tls-Client-Cert"]).split(",")[0]
        with open(cert("client")) as f:
            expected = "".join(l.strip() for l in f if not l.startswith("-----"))
        self.assertEqual(pem, expected)
        with open(cert("client"), "rb") as f:
            leaf = x509.load_pem_x509_certificate(f.read())
        info = urllib.parse.unquote_plus(headers["X-Forwarded-Tls-Client-Cert-Info"]).split(",Subject=")[0]
        self.assertEqual(info, f'Subject="CN=good client";Issuer="CN=Berth Client CA";'
                               f'NA="{int(leaf.not_valid_after.replace(tzinfo=datetime.timezone.utc).timestamp())}"')
        # Over HTTP/2 the same headers come from the connection's certificate.
        out = subprocess.run(["curl", "-sS", "--http2", "--max-time", "10", "--resolve",
                              f"mtls.test:{proxy.port}:127.0.0.1", "--cacert", cert("ca"), "--cert", cert("client"),
                              "--key", cert("client", "key"), "-o", "/dev/null", "-w", "%{http_version}",
                              f"https://mtls.test:{proxy.port}/"], capture_output=True, timeout=20)
        self.assertEqual(out.stdout, b"2", out.stderr)
        self.assertEqual(urllib.parse.unquote_plus(rec.requests[-1][2]["X-Forwarded-Tls-Client-Cert"]).split(",")[0],
                         expected)

    # ---------------------------------------------------------------- https:// servers

    def test_https_servers_verified_with_the_transport(self):
        backend = HttpsBackend(cert("multi"), cert("multi", "key"))
        self.addCleanup(backend.stop)
        # One worker: one pool, so counting the backend's connections says what the pool reused.
        proxy = self.start(workers=1, dynamic=f"""
http:
  routers:
    good:
      rule: "Host(`good.test`)"
      service: good
    bad:
      rule: "Host(`bad.test`)"
      service: unverified
    skip:
      rule: "Host(`skip.test`)"
      service: skip
  services:
    good:
      loadBalancer:
        serversTransport: trusting
        servers:
          - url: "https://127.0.0.1:{backend.port}"
    unverified:
      loadBalancer:
        servers:
          - url: "https://127.0.0.1:{backend.port}"
    skip:
      loadBalancer:
        serversTransport: insecure
        servers:
          - url: "https://127.0.0.1:{backend.port}"
  serversTransports:
    trusting:
      serverName: s.test
      rootCAs:
        - {cert("ca")}
    insecure:
      insecureSkipVerify: true
""")
        port = proxy.port
        status, _, body = get(port, "/", host="good.test")
        self.assertEqual((status, body), (200, b"tls-backend s.test"))  # SNI: serverName
        self.assertEqual(get(port, "/", host="bad.test")[0], 502)  # the system CAs do not know the test CA
        self.assertEqual(get(port, "/", host="skip.test")[0], 200)
        self.assertIn("certificate verify failed", proxy.log_text())
        # Keep-alive to the server: several requests, one TLS connection.
        before = backend.connections
        for _ in range(5):
            self.assertEqual(get(port, "/", host="good.test")[0], 200)
        self.assertLessEqual(backend.connections - before, 1)
        # A reload that leaves the transport as it was keeps its pooled connections...
        with open(proxy.dynamic_path) as f:
            dynamic = f.read()
        proxy.write_dynamic(dynamic + "\n")
        wait_until(lambda: "configuration generation 2 applied" in proxy.log_text())
        before = backend.connections
        for _ in range(5):
            self.assertEqual(get(port, "/", host="good.test")[0], 200)
        self.assertEqual(backend.connections, before)
        # ...one that changes what the server is verified with does not reuse them: a leaf is no CA.
        proxy.write_dynamic(dynamic.replace(f"- {cert('ca')}", f"- {cert('multi')}"))
        wait_until(lambda: "configuration generation 3 applied" in proxy.log_text())
        for _ in range(4):
            self.assertEqual(get(port, "/", host="good.test")[0], 502)


    # ---------------------------------------------------------------- OCSP stapling

    def test_ocsp_response_stapled_when_the_certificate_names_a_responder(self):
        responder = OcspResponder(cert("ca"), cert("ca", "key"))
        self.addCleanup(responder.stop)
        d = CERTS  # beside the test CA, which signs it
        make_leaf(d, "stapled", "/CN=o.test", ["o.test"], aia=f"OCSP;URI:http://127.0.0.1:{responder.port}/")
        responder.leaf = f"{d}/stapled.pem"
        make_leaf(d, "unstapled", "/CN=u.test", ["u.test"])
        concat(f"{d}/stapled.chain", f"{d}/stapled.pem", cert("ca"))  # the issuer must be in the chain
        proxy = self.start(f"""
http:
  routers:
    o:
      rule: "Host(`o.test`) || Host(`u.test`)"
      service: s
      tls: {{}}
  services:
{service("s", "http://127.0.0.1:1")}
tls:
  certificates:
    - certFile: {d}/stapled.chain
      keyFile: {d}/stapled.key
    - certFile: {d}/unstapled.pem
      keyFile: {d}/unstapled.key
""")
        wait_until(lambda: "OCSP response for" in proxy.log_text(), timeout=10)
        for version in ("-tls1_3", "-tls1_2"):
            _, out = s_client(proxy.port, "-servername", "o.test", "-status", version, stdin_open=0.2)
            self.assertIn("OCSP Response Status: successful", out, version)
            self.assertIn("Cert Status: good", out, version)
        _, out = s_client(proxy.port, "-servername", "u.test", "-status", stdin_open=0.2)
        self.assertIn("OCSP response: no response sent", out)
        # A reload keeps the response: no new fetch.
        fetched = responder.requests
        with open(proxy.dynamic_path) as f:
            proxy.write_dynamic(f.read() + "\n")
        wait_until(lambda: "configuration generation 2 applied" in proxy.log_text())
        _, out = s_client(proxy.port, "-servername", "o.test", "-status", stdin_open=0.2)
        self.assertIn("Cert Status: good", out)
        self.assertEqual(responder.requests, fetched)

    def test_revoked_ocsp_status_is_not_stapled(self):
        responder = OcspResponder(cert("ca"), cert("ca", "key"), status="revoked")
        self.addCleanup(responder.stop)
        d = CERTS
        make_leaf(d, "revoked", "/CN=o.test", ["o.test"], aia=f"OCSP;URI:http://127.0.0.1:{responder.port}/")
        responder.leaf = f"{d}/revoked.pem"
        concat(f"{d}/revoked.chain", f"{d}/revoked.pem", cert("ca"))
        proxy = self.start(f"""
http:
  routers:
    o:
      rule: "Host(`o.test`)"
      service: s
      tls: {{}}
  services:
{service("s", "http://127.0.0.1:1")}
tls:
  certificates:
    - certFile: {d}/revoked.chain
      keyFile: {d}/revoked.key
""")
        wait_until(lambda: "OCSP status is revoked" in proxy.log_text(), timeout=10)
        _, out = s_client(proxy.port, "-servername", "o.test", "-status", stdin_open=0.2)
        self.assertIn("OCSP response: no response sent", out)


    def test_bad_input_leaves_berth_serving(self):
        be = self.backend("app")
        proxy = self.start(f"""
http:
  routers:
    a:
      rule: "Host(`a.test`)"
      service: s
      tls: {{}}
    p:
      rule: "Host(`p.test`)"
      service: s
  services:
{service("s", be.url)}
tls:
  certificates:
{self.certs_yaml("a")}""", ep_extra={"web": "transport:\n  respondingTimeouts:\n    readTimeout: 2s\n"})
        port = proxy.port

        def still_serving():
            self.assert_alive(proxy)
            self.assertEqual(https_get(port, "a.test")[::2], (200, b"app"))
            self.assertEqual(get(port, "/", host="p.test")[::2], (200, b"app"))

        def closed_after(sock, limit):
            """Seconds until the server closes `sock` (whatever it sends first is discarded)."""
            start = time.monotonic()
            sock.settimeout(limit)
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            except socket.timeout:
                self.fail(f"connection still open after {limit}s")
            return time.monotonic() - start

        still_serving()
        # A handshake record whose contents are garbage: refused at once, not left to the timeout.
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"\x16\x03\x01\x00\x20" + b"\xff" * 32)
        self.assertLess(closed_after(s, 5), 1.9)
        s.close()
        still_serving()
        # 0x16 then arbitrary bytes.
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"\x16" + b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        closed_after(s, 5)
        s.close()
        still_serving()
        # A truncated ClientHello, then nothing: closed by readTimeout (2 s), and waiting for the
        # rest costs no CPU (its bytes stay in the socket: the wait must not wake on them again).
        hello = bytes.fromhex("010001fc0303") + os.urandom(32) + b"\x00"
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        cpu_before = proxy.cpu_seconds()
        s.sendall(b"\x16\x03\x01\x02\x00" + hello)
        waited = closed_after(s, 6)
        s.close()
        self.assertGreater(waited, 1.0)
        self.assertLess(proxy.cpu_seconds() - cpu_before, 0.5, "berth spun while waiting for the ClientHello")
        still_serving()
        # The same, then the client closes its side: closed at once.
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"\x16\x03\x01\x02\x00" + hello)
        time.sleep(0.2)
        s.shutdown(socket.SHUT_WR)
        self.assertLess(closed_after(s, 6), 1.0)
        s.close()
        still_serving()
        # Plain HTTP for the HTTPS-only host, HTTPS for the plain-only host.
        self.assertEqual(get(port, "/", host="a.test")[0], 404)
        self.assertEqual(https_get(port, "p.test", ctx=client_ctx(verify=False))[0], 404)
        # A client that goes away mid-handshake.
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"\x16\x03\x01")
        s.close()
        still_serving()
        self.assertNotIn("Segmentation", proxy.log_text())


if __name__ == "__main__":
    main()
