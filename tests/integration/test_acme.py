"""berth's ACME client (certificatesResolvers.<name>.acme, routers with tls.certResolver) against
Debian's pebble and pebble-challtestsrv on loopback (pebble_harness.py): HTTP-01 and TLS-ALPN-01
issuance end to end, key types, External Account Binding, domains from Host() rules and
tls.domains, an entry point's http.tls.certResolver, preferredChain (pebble's alternate chains), tls.stores.default.defaultGeneratedCert, no
order for a name a file-provider certificate covers, the challenge answered before routers and
entry-point redirections and withdrawn after issuance (HTTP-01 and TLS-ALPN-01, watched through a
relay between pebble's VA and berth), acme.json in Traefik's format (mode 0600, read as Traefik
wrote it, reused across restarts, corrupt, in an unwritable directory), badNonce retries, backing
off from a failing CA, renewal of a short-lived certificate under traffic, and renewal while
pebble is down. Every wait is bounded (issuance: ISSUE_TIMEOUT; a berth that never contacts
pebble fails after CONTACT_TIMEOUT). berth trusts pebble's API through LEGO_CA_CERTIFICATES, as
Traefik does. About 3 minutes, most of it the two renewal tests waiting for 60 s and 120 s
certificates to age."""
import base64
import datetime
import glob
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
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import pebble_harness
from harness import BerthTestCase, Berth, RawClient, free_port, get, main, wait_for_port, wait_until
from pebble_harness import (Pebble, common_name, curl_https, describe, https_get_verified, served_cert, served_chain,
                            verify_served_cert)

HOST = "a.berth.test"
EMAIL = "test@berth.test"
ISSUE_TIMEOUT = 20.0    # from berth's start to a verified certificate (the issue's target: 1.5 s)
CONTACT_TIMEOUT = 8.0   # berth must have sent pebble a request by then, else the test fails at once
LOCKED_DIR = "immutable-store"  # the unwritable storage directory (chattr +i when root)


def setUpModule():
    reason = pebble_harness.available()
    if reason and os.environ.get("CI"):
        raise RuntimeError(f"ACME tests cannot run in CI: {reason}")  # scripts/deps.sh test installs all
    if reason:
        raise unittest.SkipTest(reason)
    # A run killed during test_unwritable_storage_directory leaves its directory immutable.
    # (A live run holds it for seconds; one older than 10 minutes is left over.)
    for d in glob.glob(os.path.join(tempfile.gettempdir(), "berth-it.*", LOCKED_DIR)):
        if time.time() - os.stat(d).st_mtime > 600 and shutil.which("chattr"):
            subprocess.run(["chattr", "-i", d], capture_output=True, timeout=10)
            shutil.rmtree(os.path.dirname(d), ignore_errors=True)


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def pem_certs(text):
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", text, re.S)


def read_store(path):
    with open(path) as f:
        return json.load(f)


def stored_certificates(store, resolver="le"):
    """[(domain dict, leaf ServedCert, chain PEM text, key PEM text)] of `resolver` in an acme.json."""
    out = []
    for c in (store.get(resolver) or {}).get("Certificates") or []:
        chain = base64.b64decode(c["certificate"]).decode()
        leaf = x509.load_pem_x509_certificate(pem_certs(chain)[0].encode())
        out.append((c["domain"], describe(leaf.public_bytes(serialization.Encoding.DER)), chain,
                    base64.b64decode(c["key"]).decode()))
    return out


def issue_cert(subject_cn, key, issuer_cn, issuer_key, ca, sans=(), days=3650):
    """An X.509 certificate valid from five minutes ago for `days`; `sans`: DNS names (and
    extendedKeyUsage serverAuth)."""
    now = datetime.datetime.utcnow() - datetime.timedelta(minutes=5)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def file_certificate(directory, name, days=365):
    """A self-made CA and a certificate for `name` it signed (valid `days`), written as
    <directory>/<name>.crt and .key for the file provider. Returns (cert path, key path, CA PEM,
    leaf serial)."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = issue_cert("berth test file-provider CA", ca_key, "berth test file-provider CA", ca_key, True, days=days)
    leaf = issue_cert(name, leaf_key, "berth test file-provider CA", ca_key, False, [name], days=days)
    cert_path, key_path = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    with open(cert_path, "wb") as f:
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_path, key_path, ca.public_bytes(serialization.Encoding.PEM).decode(), leaf.serial_number


def traefik_acme_json(account_uri_base, name):
    """An acme.json as Traefik v3 (lego v4) writes it, for resolver "le", holding a certificate for
    `name` from a throwaway CA (root -> intermediate -> leaf, valid 10 years): base64 of the PEM
    chain without the root, base64 of a PKCS#1 PEM key, an RSA-4096 account key as base64 PKCS#1
    DER, KeyType "4096"; plus a resolver with no account. Returns (dict, root PEM, leaf serial)."""
    root_key, int_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    leaf_key = rsa.generate_private_key(65537, 2048)
    root = issue_cert("Traefik-era Root", root_key, "Traefik-era Root", root_key, True)
    inter = issue_cert("Traefik-era Intermediate", int_key, "Traefik-era Root", root_key, True)
    leaf = issue_cert(name, leaf_key, "Traefik-era Intermediate", int_key, False, [name])
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()
    account_key = rsa.generate_private_key(65537, 4096)
    store = {
        "le": {
            "Account": {
                "Email": EMAIL,
                "Registration": {"body": {"status": "valid", "contact": [f"mailto:{EMAIL}"]},
                                 "uri": f"{account_uri_base}/my-account/1"},
                "PrivateKey": b64(account_key.private_bytes(serialization.Encoding.DER,
                                                            serialization.PrivateFormat.TraditionalOpenSSL,
                                                            serialization.NoEncryption())),
                "KeyType": "4096",
            },
            "Certificates": [{
                "domain": {"main": name},
                "certificate": b64(pem(leaf) + pem(inter)),
                "key": b64(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                                  serialization.NoEncryption())),
                "Store": "default",
            }],
        },
        "otherresolver": {"Account": None, "Certificates": []},
    }
    return store, pem(root), leaf.serial_number


class TlsClient(RawClient):
    """RawClient over a verified TLS connection (keep-alive requests on one connection)."""

    def __init__(self, port, sni, cadata, timeout=10.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self.sock = pebble_harness.client_context(cadata, ["http/1.1"]).wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise
        self.buf = b""


class HttpsTraffic(threading.Thread):
    """HTTPS requests through berth until stopped, each verified against `cadata` (PEM roots; `trust`
    adds one): a fresh connection every `interval` seconds, and a request every `ka_interval` on one
    long-lived keep-alive connection (which must never be dropped). Records failures (time, what)
    and the leaf serials seen."""

    def __init__(self, port, sni, cadata, expect_body, interval=0.05, ka_interval=0.25):
        super().__init__(daemon=True)
        self.port, self.sni, self.cadata, self.expect = port, sni, cadata, expect_body
        self.interval, self.ka_interval = interval, ka_interval
        self.failures, self.serials = [], []
        self.ok = self.ka_ok = 0
        self._stop_event = threading.Event()

    def trust(self, pem):
        self.cadata = self.cadata + pem

    def _note(self, cert):
        if not self.serials or self.serials[-1] != cert.serial:
            self.serials.append(cert.serial)

    def run(self):
        ka, next_ka = None, 0.0
        while not self._stop_event.is_set():
            try:
                status, body, cert = https_get_verified(self.port, self.sni, self.cadata, timeout=5)
                if (status, body) != (200, self.expect):
                    self.failures.append((time.time(), f"fresh connection: {status} {body[:80]!r}"))
                else:
                    self.ok += 1
                    self._note(cert)
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failures.append((time.time(), f"fresh connection: {e!r}"))
            if time.time() >= next_ka:
                next_ka = time.time() + self.ka_interval
                try:
                    if ka is None:
                        ka = TlsClient(self.port, self.sni, self.cadata, timeout=5)
                    ka.send(f"GET / HTTP/1.1\r\nHost: {self.sni}\r\n\r\n")
                    status, _, body = ka.read_response()
                    if (status, body) != (200, self.expect):
                        self.failures.append((time.time(), f"keep-alive: {status} {body[:80]!r}"))
                    else:
                        self.ka_ok += 1
                except Exception as e:  # noqa: BLE001
                    self.failures.append((time.time(), f"keep-alive connection: {e!r}"))
                    if ka is not None:
                        ka.close()
                    ka = None
            self._stop_event.wait(self.interval)
        if ka is not None:
            ka.close()

    def finish(self):
        self._stop_event.set()
        self.join(15)


class Acme(BerthTestCase):
    def setUp(self):
        super().setUp()
        self.web, self.websecure = free_port(), free_port()
        self.store_dir = os.path.join(self.tmp, "store")
        os.mkdir(self.store_dir, 0o700)
        self.storage = os.path.join(self.store_dir, "acme.json")
        self._runs = 0
        self._immutable = []

    def tearDown(self):
        for d in self._immutable:
            subprocess.run(["chattr", "-i", d], capture_output=True, timeout=10)
        super().tearDown()

    # ------------------------------------------------------------------ set-up helpers

    def start_pebble(self, **kw):
        kw.setdefault("http_port", self.web)
        kw.setdefault("tls_port", self.websecure)
        p = Pebble(**kw)
        self._procs.append(p)
        return p

    def static_yaml(self, pebble, key_type="EC256", challenge="http", eab=None, duration=None, storage=None,
                    eps=("web", "websecure"), ep_extra=None, preferred_chain=None):
        ports = {"web": self.web, "websecure": self.websecure}
        out = "entryPoints:\n"
        for name in eps:
            out += f"  {name}:\n    address: \"127.0.0.1:{ports[name]}\"\n"
            for line in (ep_extra or {}).get(name, "").splitlines():
                out += "    " + line + "\n"
        out += ("certificatesResolvers:\n  le:\n    acme:\n"
                f"      email: {EMAIL}\n      storage: {storage or self.storage}\n"
                f"      caServer: {pebble.dir_url}\n      keyType: {key_type}\n")
        if challenge == "http":
            out += "      httpChallenge:\n        entryPoint: web\n"
        else:
            out += "      tlsChallenge: {}\n"
        if eab:
            out += f"      eab:\n        kid: {eab[0]}\n        hmacEncoded: {eab[1]}\n"
        if duration:
            out += f"      certificatesDuration: {duration}\n"
        if preferred_chain is not None:
            out += f"      preferredChain: {json.dumps(preferred_chain)}\n"
        out += ("providers:\n  file:\n    filename: {dynamic}\n    watch: true\n"
                "workers: 2\nlog:\n  level: DEBUG\n")
        return out

    def dynamic_yaml(self, backend, routers=None, extra=""):
        """routers: {name: (rule, extra router YAML lines[, False: no TLS])}; default: Host(HOST)
        with certResolver le. Every router goes to service app (`backend`) on websecure with
        tls.certResolver le unless its extra lines say otherwise; `extra`: more services."""
        routers = routers or {"app": (f"Host(`{HOST}`)", "")}
        out = "http:\n  routers:\n"
        for name, (rule, more, *tls) in routers.items():
            out += f"    {name}:\n      rule: \"{rule}\"\n"
            if "entryPoints" not in more:
                out += "      entryPoints: [websecure]\n"
            if "service:" not in more:
                out += "      service: app\n"
            if "tls:" not in more and (not tls or tls[0]):
                out += "      tls:\n        certResolver: le\n"
            out += "".join(f"      {line}\n" for line in more.splitlines() if line)
        out += ("  services:\n    app:\n      loadBalancer:\n        servers:\n"
                f"          - url: \"{backend.url}\"\n")
        return out + extra

    def start_berth(self, pebble, dynamic, static=None, wait_ports=("web", "websecure"), lego_env=True, **static_kw):
        """berth in its own directory (a second one in a test keeps the first one's log), with
        LEGO_CA_CERTIFICATES naming the CA of pebble's API (unless not `lego_env`: then it is
        empty). Waits for its entry points."""
        self._runs += 1
        d = os.path.join(self.tmp, f"berth-{self._runs}")
        os.mkdir(d)
        static = (static or self.static_yaml(pebble, **static_kw)).replace("{dynamic}", os.path.join(d, "dynamic.yml"))
        since = pebble.log_size()
        proxy = Berth(d, static_yaml=static, dynamic_yaml=dynamic, wait=False,
                      env={"LEGO_CA_CERTIFICATES": pebble.ca_pem_path if lego_env else ""})
        self._procs.append(proxy)
        proxy.pebble_since = since
        proxy.started = time.time()
        ports = {"web": self.web, "websecure": self.websecure}
        try:
            for name in wait_ports:
                wait_for_port(ports[name], proc=proxy.proc)
        except RuntimeError as e:
            self.fail(f"berth did not start: {e}" + self.diagnostics(proxy, pebble))
        return proxy

    def diagnostics(self, proxy, pebble):
        log = proxy.log_text().splitlines()
        acme = [line for line in log if "acme" in line]
        return ("\n--- berth log, acme lines (last 40):\n" + "\n".join(acme[-40:]) +
                "\n--- berth log (last 30 lines):\n" + "\n".join(log[-30:]) +
                "\n--- pebble log (last 12 lines):\n" + pebble.tail(12))

    def wait_for_cert(self, proxy, pebble, sni=HOST, timeout=ISSUE_TIMEOUT, cadata=None, exclude=(),
                      contact_check=True, port=None, stop_if=None):
        """Polls until berth serves `sni` (None: a handshake without SNI, the name not checked) a
        certificate verified against `cadata` (default: the current pebble's root only, so berth must
        send the intermediate) whose serial is not in `exclude`.
        Fails after `timeout`, at once if berth exits, and after CONTACT_TIMEOUT if `contact_check`
        and pebble has seen no request since berth started."""
        start, last = time.time(), None
        while True:
            if proxy.proc.poll() is not None:
                self.fail(f"berth exited with {proxy.proc.returncode}" + self.diagnostics(proxy, pebble))
            try:
                c = verify_served_cert(port or self.websecure, sni, cadata or pebble.roots(), timeout=3)
                if c.serial not in exclude:
                    return c
                last = f"still serving serial {c.serial_hex}"
            except (ssl.SSLError, OSError) as e:
                last = repr(e)
            elapsed = time.time() - start
            if elapsed > timeout:
                self.fail(f"no certificate for {sni} verified within {timeout:.0f}s (last: {last})" +
                          self.diagnostics(proxy, pebble))
            if contact_check and time.time() - proxy.started > CONTACT_TIMEOUT and \
                    not pebble.requests(proxy.pebble_since):
                self.fail(f"berth sent pebble no request in {CONTACT_TIMEOUT:.0f}s (no ACME client?)" +
                          self.diagnostics(proxy, pebble))
            if stop_if is not None:
                stop_if()
            time.sleep(0.1)

    def wait_for_stored(self, path, sni=HOST, serial=None, timeout=5.0):
        """Waits until the acme.json at `path` holds a certificate for `sni` (with `serial` if
        given); returns (store dict, (domain, leaf, chain, key))."""
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            try:
                store = read_store(path)
                for entry in stored_certificates(store):
                    if sni in entry[1].sans and (serial is None or entry[1].serial == serial):
                        return store, entry
                last = f"no matching certificate in {[e[1].sans for e in stored_certificates(store)]}"
            except (OSError, ValueError, KeyError, TypeError) as e:
                last = repr(e)
            time.sleep(0.1)
        self.fail(f"{path} does not hold the certificate for {sni} after {timeout}s ({last})")

    def assert_alive(self, proxy):
        self.assertIsNone(proxy.proc.poll(), "berth exited:\n" + proxy.log_text()[-3000:])

    # ------------------------------------------------------------------ issuance

    def test_http01_issuance_end_to_end(self):
        pebble = self.start_pebble()
        be = self.backend("app")
        static = self.static_yaml(pebble, key_type="EC256") + "metrics:\n  prometheus:\n    entryPoint: web\n"
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), static=static)
        cert = self.wait_for_cert(proxy, pebble)
        took = time.time() - proxy.started
        self.assertEqual(cert.sans, [HOST])
        # The metrics count the order and show the certificate's expiry for its domain.
        metrics = get(self.web, "/metrics")[2].decode()
        self.assertIn('berth_acme_orders_total{resolver="le",result="obtained"} 1\n', metrics)
        self.assertIn('berth_acme_orders_total{resolver="le",result="failed"} 0\n', metrics)
        self.assertIn(f'berth_tls_domain_not_after{{domain="{HOST}"}} ', metrics)
        self.assertEqual((cert.key, cert.curve), ("ec", "secp256r1"))
        self.assertTrue(cert.issuer_cn.startswith("Pebble Intermediate CA"), cert.issuer_cn)
        self.assertIn(cert.serial, pebble.issued_serials(proxy.pebble_since))
        self.assertEqual(len(pebble.orders(proxy.pebble_since)), 1)
        # curl, trusting only pebble's root: the chain berth sends must include the intermediate.
        rc, status, body, err = curl_https(self.websecure, HOST, pebble.root_path())
        self.assertEqual((rc, status, body), (0, 200, b"app"), err)
        status, body, through = https_get_verified(self.websecure, HOST, pebble.roots())
        self.assertEqual((status, body, through.serial), (200, b"app", cert.serial))
        # openssl agrees about the chain berth sends.
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.websecure}", "-servername", HOST,
                              "-CAfile", pebble.root_path(), "-verify_return_error", "-showcerts"],
                             input=b"", capture_output=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stdout[-1500:])
        self.assertIn(b"Verify return code: 0 (ok)", out.stdout)
        self.assertGreaterEqual(out.stdout.count(b"-----BEGIN CERTIFICATE-----"), 2)
        self.assert_alive(proxy)
        print(f"\n  HTTP-01: verified certificate {took:.2f}s after berth's start", end=" ")

    def test_ca_certificates_make_the_ca_server_trusted(self):
        # Without LEGO_CA_CERTIFICATES, nothing berth trusts signed pebble's HTTPS certificate: no
        # order. caCertificates naming pebble's CA is then the way, as in Traefik.
        pebble = self.start_pebble()
        be = self.backend("app")
        untrusted = self.start_berth(pebble, self.dynamic_yaml(be), lego_env=False)
        wait_until(lambda: "certificate verify failed" in untrusted.log_text(), timeout=20)
        self.assertEqual(len(pebble.orders(untrusted.pebble_since)), 0)
        untrusted.stop()
        static = self.static_yaml(pebble).replace(
            "      keyType: EC256\n", f"      keyType: EC256\n      caCertificates: [\"{pebble.ca_pem_path}\"]\n")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), static=static, lego_env=False)
        cert = self.wait_for_cert(proxy, pebble)
        self.assertEqual(cert.sans, [HOST])
        self.assert_alive(proxy)

    def test_tls_alpn01_issuance_without_an_http_entry_point(self):
        # Only websecure exists, and pebble's HTTP-01 port is a dead one: only TLS-ALPN-01 can work.
        pebble = self.start_pebble(http_port=free_port())
        be = self.backend("app")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), challenge="tls", eps=("websecure",),
                                 wait_ports=("websecure",))
        # Meanwhile ordinary clients (ALPN h2/http1.1, or none) must never get the challenge certificate.
        seen_challenge_cert, stop = [], threading.Event()

        def ordinary_clients():
            while not stop.is_set():
                for alpn in (["h2", "http/1.1"], None):
                    try:
                        c = served_cert(self.websecure, HOST, alpn=alpn, timeout=3)
                        if c.acme_identifier:
                            seen_challenge_cert.append((alpn, c.alpn))
                    except (ssl.SSLError, OSError):
                        pass
                stop.wait(0.05)

        t = threading.Thread(target=ordinary_clients, daemon=True)
        t.start()
        try:
            cert = self.wait_for_cert(proxy, pebble)
        finally:
            stop.set()
            t.join(10)
        self.assertEqual(cert.sans, [HOST])
        self.assertFalse(cert.acme_identifier)
        self.assertEqual(seen_challenge_cert, [], "a client without acme-tls/1 got the TLS-ALPN-01 certificate")
        self.assertNotIn("Attempting to validate w/ HTTP", pebble.log_text(proxy.pebble_since))  # pebble logs only HTTP-01
        rc, status, body, err = curl_https(self.websecure, HOST, pebble.root_path())
        self.assertEqual((rc, status, body), (0, 200, b"app"), err)

    def test_key_types_rsa2048_and_ec384(self):
        pebble = self.start_pebble()
        be = self.backend("app")
        for key_type, kind, size in (("RSA2048", "rsa", 2048), ("EC384", "ec", 384)):
            with self.subTest(key_type=key_type):
                storage = os.path.join(self.store_dir, f"{key_type}.json")
                proxy = self.start_berth(pebble, self.dynamic_yaml(be), key_type=key_type, storage=storage)
                try:
                    cert = self.wait_for_cert(proxy, pebble)
                    self.assertEqual((cert.key, cert.key_size), (kind, size))
                    _, (_, leaf, _, key_pem) = self.wait_for_stored(storage, serial=cert.serial)
                    key = serialization.load_pem_private_key(key_pem.encode(), None)
                    self.assertEqual(key.key_size, size)
                    self.assertIsInstance(key, rsa.RSAPrivateKey if kind == "rsa" else ec.EllipticCurvePrivateKey)
                finally:
                    proxy.stop()

    def test_external_account_binding(self):
        kid, hmac = "kid-1", pebble_harness.hmac_key()
        pebble = self.start_pebble(eab={kid: hmac})
        be = self.backend("app")
        # A wrong MAC key: pebble refuses the account, berth says why and keeps running.
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), eab=(kid, pebble_harness.hmac_key()),
                                 storage=os.path.join(self.store_dir, "wrong.json"))
        deadline = time.time() + 8
        while time.time() < deadline and not re.search(r"external ?account", proxy.log_text(), re.I):
            time.sleep(0.1)
        self.assertRegex(proxy.log_text(), re.compile(r"external ?account", re.I))
        with self.assertRaises((ssl.SSLError, OSError)):
            verify_served_cert(self.websecure, HOST, pebble.roots())
        self.assertEqual(pebble.issued_serials(proxy.pebble_since), [])
        self.assert_alive(proxy)
        proxy.stop()
        # The right one: issued.
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), eab=(kid, hmac))
        cert = self.wait_for_cert(proxy, pebble)
        self.assertIn(f'Successful newAccount Binding with CA using kid "{kid}"', pebble.log_text(proxy.pebble_since))
        self.assertEqual(https_get_verified(self.websecure, HOST, pebble.roots())[:2], (200, b"app"))
        self.assertIn(cert.serial, pebble.issued_serials(proxy.pebble_since))

    def test_domains_from_host_rules_and_tls_domains(self):
        pebble = self.start_pebble()
        be = self.backend("app")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be, {
            "two-hosts": ("Host(`a.berth.test`) || Host(`b.berth.test`)", ""),
            "declared": ("Host(`c.berth.test`)",
                         "tls:\n  certResolver: le\n  domains:\n    - main: c.berth.test\n"
                         "      sans: [d.berth.test]"),
        }))
        ab = self.wait_for_cert(proxy, pebble, "a.berth.test")
        self.assertEqual(sorted(ab.sans), ["a.berth.test", "b.berth.test"])
        self.assertEqual(self.wait_for_cert(proxy, pebble, "b.berth.test").serial, ab.serial)
        cd = self.wait_for_cert(proxy, pebble, "c.berth.test")
        self.assertEqual(sorted(cd.sans), ["c.berth.test", "d.berth.test"])
        self.assertEqual(self.wait_for_cert(proxy, pebble, "d.berth.test").serial, cd.serial)
        self.assertEqual(len(pebble.orders(proxy.pebble_since)), 2, "one order per router")
        self.assertEqual(https_get_verified(self.websecure, "b.berth.test", pebble.roots())[:2], (200, b"app"))

    def test_preferred_chain(self):
        """PEBBLE_ALTERNATE_ROOTS=1: pebble offers every certificate with a second chain (Link:
        <...>;rel="alternate"): the same intermediate (subject and key) issued by a second root
        (/roots/1). pebble's chains stop below the root, so a chain's top issuer CN is its root's CN,
        "Pebble Root CA <random hex>", new at every start (lego --preferred-chain takes root 1's CN to
        choose the alternate). preferredChain naming it: berth serves and stores the alternate, which
        verifies against root 1 alone and not against root 0. Without preferredChain, or with one no
        chain offers: the default chain (root 0), as lego keeps it."""
        pebble = self.start_pebble(alternate_roots=1)
        roots = [pebble.roots(chain=i) for i in (0, 1)]
        tops = [common_name(x509.load_pem_x509_certificate(r.encode()).subject) for r in roots]
        inters = [x509.load_pem_x509_certificate(pem_certs(pebble.intermediates(chain=i))[-1].encode()) for i in (0, 1)]
        self.assertEqual([common_name(c.issuer) for c in inters], tops, "pebble's intermediates vs roots")
        self.assertNotEqual(tops[0], tops[1])
        be = self.backend("app")

        def run(preferred, storage):
            """berth with `preferred` (None: no preferredChain); returns (index of the one root the
            served chain verifies against, served chain, stored chain PEM, leaf serial)."""
            proxy = self.start_berth(pebble, self.dynamic_yaml(be), storage=storage, preferred_chain=preferred)
            cert = self.wait_for_cert(proxy, pebble, cadata=roots[0] + roots[1])
            verifies = []
            for i, root in enumerate(roots):
                try:
                    verifies.append((i, verify_served_cert(self.websecure, HOST, root).serial))
                except ssl.SSLError:
                    pass
            chain = served_chain(self.websecure, HOST)
            _, (_, _, stored, _) = self.wait_for_stored(storage, serial=cert.serial)
            desc = (f"preferredChain {preferred!r} (roots: {tops}): served chain " +
                    str([(common_name(c.subject), common_name(c.issuer)) for c in chain]) +
                    f", verifies against roots {[i for i, _ in verifies]}" + self.diagnostics(proxy, pebble))
            self.assertEqual(len(verifies), 1, desc)
            self.assertEqual(verifies[0][1], cert.serial, desc)
            self.assertEqual(chain[0].serial_number, cert.serial, desc)
            self.assertEqual(len(chain), 2, desc)  # leaf + intermediate, no root
            self.assert_alive(proxy)
            self.assertEqual(proxy.stop(), 0)
            return verifies[0][0], chain, stored, cert.serial, desc

        chosen, chain, stored, serial, desc = run(tops[1], os.path.join(self.store_dir, "preferred.json"))
        self.assertEqual(chosen, 1, "berth did not serve the preferred (alternate) chain: " + desc)
        self.assertEqual(common_name(chain[-1].issuer), tops[1], desc)
        self.assertEqual(chain[-1].public_bytes(serialization.Encoding.PEM).decode(),
                         pem_certs(pebble.intermediates(chain=1))[-1], desc)
        stored_certs = [x509.load_pem_x509_certificate(p.encode()) for p in pem_certs(stored)]
        self.assertEqual(stored_certs[0].serial_number, serial)
        self.assertEqual(common_name(stored_certs[-1].issuer), tops[1], "acme.json holds another chain: " + desc)

        for preferred, name in ((None, "default"), ("Pebble Root CA offered by no chain", "unknown")):
            chosen, chain, stored, serial, desc = run(preferred, os.path.join(self.store_dir, f"{name}.json"))
            self.assertEqual(chosen, 0, "berth did not serve pebble's default chain: " + desc)
            self.assertEqual(common_name(chain[-1].issuer), tops[0], desc)
            stored_certs = [x509.load_pem_x509_certificate(p.encode()) for p in pem_certs(stored)]
            self.assertEqual(stored_certs[0].serial_number, serial)
            self.assertEqual(common_name(stored_certs[-1].issuer), tops[0], "acme.json holds another chain: " + desc)

    # ------------------------------------------------------------------ HTTP-01 before anything else

    def test_http01_challenge_answered_before_routers(self):
        pebble = self.start_pebble()
        be = self.backend("app")
        catch_all = self.recorder()
        extra = ("    catch-all:\n      loadBalancer:\n        servers:\n"
                 f"          - url: \"{catch_all.url}\"\n")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be, {
            "app": (f"Host(`{HOST}`)", ""),
            "everything-on-web": ("PathPrefix(`/`)", "entryPoints: [web]\nservice: catch-all\npriority: 1000000", False),
        }, extra=extra))
        self.wait_for_cert(proxy, pebble)
        challenge_requests = [r for r in catch_all.requests if "/.well-known/acme-challenge/" in r[1]]
        self.assertEqual(challenge_requests, [], "the catch-all router received the HTTP-01 validation")
        # The router itself works for everything else on web.
        self.assertEqual(get(self.web, "/x", host=HOST)[::2], (200, b"recorder"))

    def test_http01_challenge_answered_before_entry_point_redirection(self):
        # The most common Traefik set-up: web redirects everything to websecure.
        pebble = self.start_pebble()
        be = self.backend("app")
        redirect = "http:\n  redirections:\n    entryPoint:\n      to: websecure\n      scheme: https\n"
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), ep_extra={"web": redirect})
        self.wait_for_cert(proxy, pebble)
        status, headers, _ = get(self.web, "/x", host=HOST)
        self.assertEqual((status, headers.get("location")), (301, f"https://{HOST}:{self.websecure}/x"))

    # ------------------------------------------------------------------ challenges withdrawn

    def test_http01_challenge_withdrawn_after_issuance(self):
        """pebble's VA reaches berth's web entry point through a relay that, before the first
        validation request goes on, asks berth for the same token itself: web answers the key
        authorization, websecure does not. Once the certificate is served, web answers 404 for it."""
        probes = {}

        def during_validation(head):
            path = head.split(b" ", 2)[1].decode()
            probes["token"] = path.rsplit("/", 1)[1]
            probes["web"] = get(self.web, path, host=HOST, timeout=5)
            probes["websecure"] = https_get_verified(self.websecure, HOST, None, path=path, timeout=5)[:2]

        relay = pebble_harness.VaRelay(self.web, during_validation)
        self._procs.append(relay)
        pebble = self.start_pebble(http_port=relay.port)
        be = self.backend("app")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be))
        made_up = "/.well-known/acme-challenge/made-up-token-" + "x" * 30
        self.assertEqual(get(self.web, made_up, host=HOST)[0], 404, "an unknown token was answered")
        self.wait_for_cert(proxy, pebble)
        self.assertEqual(relay.errors, [])
        self.assertIn("token", probes, "pebble's VA never came through the relay")
        token = probes["token"]
        self.assertIn(f"/.well-known/acme-challenge/{token}", pebble.log_text(proxy.pebble_since))
        status, _, body = probes["web"]
        self.assertEqual(status, 200, "web did not answer the challenge while it was under way")
        self.assertTrue(body.decode(errors="replace").startswith(token + "."), body[:200])
        self.assertNotIn(token.encode(), probes["websecure"][1], "websecure answered the HTTP-01 challenge")
        path = f"/.well-known/acme-challenge/{token}"
        deadline, answer = time.time() + 3, None
        while time.time() < deadline:
            answer = get(self.web, path, host=HOST, timeout=5)
            if answer[0] == 404:
                break
            time.sleep(0.05)
        self.assertEqual(answer[0], 404, f"the challenge is still answered after issuance: {answer[0]} {answer[2][:120]!r}")
        self.assertNotIn(token.encode(), answer[2])
        self.assertEqual(get(self.web, made_up, host=HOST)[0], 404)
        self.assert_alive(proxy)

    def test_tls_alpn01_challenge_withdrawn_after_issuance(self):
        """TLS-ALPN-01 through a relay: while the validation is under way, a client offering
        acme-tls/1 gets the challenge certificate and one offering h2/http/1.1 does not; after
        issuance acme-tls/1 gets no challenge certificate (refused, or no acme-tls/1 selected) and
        h2/http/1.1 gets the real one."""
        probes = {}

        def during_validation(_head):
            probes["acme"] = served_cert(self.websecure, HOST, alpn=["acme-tls/1"], timeout=5)
            probes["ordinary"] = served_cert(self.websecure, HOST, alpn=["h2", "http/1.1"], timeout=5)

        relay = pebble_harness.VaRelay(self.websecure, during_validation)
        self._procs.append(relay)
        pebble = self.start_pebble(http_port=free_port(), tls_port=relay.port)
        be = self.backend("app")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), challenge="tls", eps=("websecure",),
                                 wait_ports=("websecure",))
        cert = self.wait_for_cert(proxy, pebble)
        self.assertEqual(relay.errors, [])
        self.assertIn("acme", probes, "pebble's VA never came through the relay")
        self.assertTrue(probes["acme"].acme_identifier, "no challenge certificate for acme-tls/1 during the validation")
        self.assertEqual(probes["acme"].alpn, "acme-tls/1")
        self.assertEqual(probes["acme"].sans, [HOST])
        self.assertFalse(probes["ordinary"].acme_identifier, "h2/http/1.1 got the challenge certificate")
        # After issuance: the challenge context is gone.
        deadline = time.time() + 3
        while True:
            try:
                c = served_cert(self.websecure, HOST, alpn=["acme-tls/1"], timeout=5)
            except (ssl.SSLError, OSError) as e:
                after = f"refused: {e!r}"
                break
            after = f"certificate {c.serial_hex} (acmeIdentifier: {c.acme_identifier}), ALPN {c.alpn!r}"
            if not c.acme_identifier and c.alpn != "acme-tls/1":
                break
            if time.time() > deadline:
                self.fail(f"3 s after issuance acme-tls/1 still gets the challenge: {after}")
            time.sleep(0.05)
        for alpn in (["h2", "http/1.1"], ["http/1.1"]):
            real = verify_served_cert(self.websecure, HOST, pebble.roots(), alpn=alpn)
            self.assertEqual((real.serial, real.acme_identifier), (cert.serial, False), alpn)
            self.assertIn(real.alpn, alpn)
        self.assertEqual(https_get_verified(self.websecure, HOST, pebble.roots())[:2], (200, b"app"))
        print(f"\n  acme-tls/1 after issuance: {after}", end=" ")

    # ------------------------------------------------------------------ where the names come from

    def test_entry_point_cert_resolver_for_router_without_tls(self):
        # entryPoints.websecure.http.tls.certResolver: the router has no tls section of its own.
        pebble = self.start_pebble()
        be = self.backend("app")
        name = "ep.berth.test"
        dynamic = self.dynamic_yaml(be, {"app": (f"Host(`{name}`)", "", False)})
        self.assertNotIn("tls", dynamic)
        proxy = self.start_berth(pebble, dynamic, ep_extra={"websecure": "http:\n  tls:\n    certResolver: le\n"})
        cert = self.wait_for_cert(proxy, pebble, name)
        self.assertEqual(cert.sans, [name])
        self.assertEqual(https_get_verified(self.websecure, name, pebble.roots())[:2], (200, b"app"))
        self.assertEqual(len(pebble.orders(proxy.pebble_since)), 1)

    def test_default_generated_cert_from_resolver(self):
        """tls.stores.default.defaultGeneratedCert names resolver le and dflt.berth.test, which no
        router uses: berth orders it and serves it as the default certificate (no SNI, unknown SNI)."""
        pebble = self.start_pebble()
        be = self.backend("app")
        name = "dflt.berth.test"
        extra = ("tls:\n  stores:\n    default:\n      defaultGeneratedCert:\n        resolver: le\n"
                 f"        domain:\n          main: {name}\n")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be, {"app": ("Host(`other.berth.test`)", "tls: {}")}, extra=extra))
        cert = self.wait_for_cert(proxy, pebble, None)
        self.assertEqual(cert.sans, [name])
        self.assertEqual(served_cert(self.websecure, "unknown.berth.test").serial, cert.serial, "unknown SNI")
        self.assertEqual(verify_served_cert(self.websecure, name, pebble.roots()).serial, cert.serial)
        self.assertEqual(len(pebble.orders(proxy.pebble_since)), 1)
        self.assert_alive(proxy)

    def test_name_covered_by_a_file_certificate_gets_no_order(self):
        """A file-provider certificate (a self-made CA, valid a year) covers file.berth.test, whose
        router names resolver le: no order for it; the file certificate is served. Another router's
        name (acme.berth.test) is ordered, so the resolver is at work meanwhile."""
        pebble = self.start_pebble()
        be = self.backend("app")
        cert_path, key_path, file_ca, file_serial = file_certificate(self.tmp, "file.berth.test")
        extra = f"tls:\n  certificates:\n    - certFile: {cert_path}\n      keyFile: {key_path}\n"
        proxy = self.start_berth(pebble, self.dynamic_yaml(be, {
            "acme": ("Host(`acme.berth.test`)", ""),
            "file": ("Host(`file.berth.test`)", ""),
        }, extra=extra))
        self.wait_for_cert(proxy, pebble, "file.berth.test", timeout=5, cadata=file_ca, contact_check=False)
        self.wait_for_cert(proxy, pebble, "acme.berth.test")
        time.sleep(max(0.0, proxy.started + 3 - time.time()) + 1)  # >= 3 s after start, 1 s after the first certificate
        log = proxy.log_text()
        self.assertEqual(len(pebble.orders(proxy.pebble_since)), 1,
                         "berth ordered a name a valid file certificate covers:\n" +
                         "\n".join(line for line in log.splitlines() if "acme:" in line))
        self.assertNotIn("certificate for file.berth.test", log)
        served = verify_served_cert(self.websecure, "file.berth.test", file_ca)
        self.assertEqual(served.serial, file_serial)
        self.assertEqual(https_get_verified(self.websecure, "file.berth.test", file_ca)[:2], (200, b"app"))
        self.assert_alive(proxy)

    # ------------------------------------------------------------------ storage

    def test_storage_is_traefik_format_and_mode_0600(self):
        pebble = self.start_pebble()
        be = self.backend("app")
        old = os.umask(0)  # berth must not rely on the umask for the file's mode
        try:
            proxy = self.start_berth(pebble, self.dynamic_yaml(be))
        finally:
            os.umask(old)
        cert = self.wait_for_cert(proxy, pebble)
        store, (domain, leaf, chain, key_pem) = self.wait_for_stored(self.storage, serial=cert.serial)
        self.assertEqual(os.stat(self.storage).st_mode & 0o777, 0o600)
        self.assertEqual(list(store), ["le"])
        account = store["le"]["Account"]
        self.assertEqual(account["Email"], EMAIL)
        self.assertTrue(account["Registration"]["uri"].startswith(pebble.base_url), account["Registration"])
        self.assertIn("body", account["Registration"])
        serialization.load_der_private_key(base64.b64decode(account["PrivateKey"]), None)  # base64 DER
        self.assertEqual(domain["main"], HOST)
        entry = store["le"]["Certificates"][0]
        self.assertEqual(entry.get("Store"), "default")
        self.assertEqual(leaf.serial, cert.serial)
        self.assertGreaterEqual(len(pem_certs(chain)), 2, "certificate holds the chain (leaf + intermediate)")
        key = serialization.load_pem_private_key(key_pem.encode(), None)
        served = x509.load_der_x509_certificate(cert.der)
        self.assertEqual(key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
                         served.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        leftovers = [n for n in os.listdir(self.store_dir) if n != "acme.json" and not n.endswith(".lock")]
        self.assertEqual(leftovers, [], "temporary files left beside acme.json")

    def test_empty_storage_file_as_traefik_docs_create_it(self):
        # Traefik's documentation: touch acme.json && chmod 600 acme.json.
        pebble = self.start_pebble()
        be = self.backend("app")
        with open(self.storage, "w"):
            pass
        os.chmod(self.storage, 0o600)
        proxy = self.start_berth(pebble, self.dynamic_yaml(be))
        cert = self.wait_for_cert(proxy, pebble)
        self.wait_for_stored(self.storage, serial=cert.serial)
        self.assertEqual(os.stat(self.storage).st_mode & 0o777, 0o600)

    def test_restart_reuses_acme_json_without_a_new_order(self):
        pebble = self.start_pebble()
        be = self.backend("app")
        dynamic = self.dynamic_yaml(be)
        proxy = self.start_berth(pebble, dynamic)
        cert = self.wait_for_cert(proxy, pebble)
        self.wait_for_stored(self.storage, serial=cert.serial)
        since = proxy.pebble_since
        # A configuration change that names the same host again: no second order for it.
        proxy.write_dynamic(self.dynamic_yaml(be, {"app": (f"Host(`{HOST}`)", ""),
                                                   "app-api": (f"Host(`{HOST}`) && PathPrefix(`/api`)", "")}))
        deadline = time.time() + 10
        while time.time() < deadline and "configuration generation 2 applied" not in proxy.log_text():
            time.sleep(0.05)
        self.assertIn("configuration generation 2 applied", proxy.log_text())
        time.sleep(2)
        self.assertEqual(len(pebble.orders(since)), 1, "a second order for a name with a valid certificate")
        self.assertEqual(proxy.stop(), 0)
        # berth again, same acme.json: the same certificate at once, no order, no new account.
        mark = pebble.log_size()
        proxy2 = self.start_berth(pebble, dynamic)
        again = self.wait_for_cert(proxy2, pebble, timeout=5, contact_check=False)
        self.assertEqual(again.serial, cert.serial)
        time.sleep(3)
        self.assertEqual(verify_served_cert(self.websecure, HOST, pebble.roots()).serial, cert.serial)
        self.assertEqual(pebble.orders(mark), [], "berth ordered again although acme.json holds a valid certificate")
        self.assertEqual(pebble.accounts_created(mark), 0, "berth registered a new account instead of acme.json's")
        self.assertEqual(https_get_verified(self.websecure, HOST, pebble.roots())[:2], (200, b"app"))

    def test_traefik_written_acme_json_is_served_as_is(self):
        pebble = self.start_pebble()
        be = self.backend("app")
        traefik_store, root_pem, leaf_serial = traefik_acme_json(pebble.base_url, "t.berth.test")
        with open(self.storage, "w") as f:
            json.dump(traefik_store, f, indent=2)  # Traefik writes json.MarshalIndent(..., "", "  ")
        os.chmod(self.storage, 0o600)
        proxy = self.start_berth(pebble, self.dynamic_yaml(be, {"app": ("Host(`t.berth.test`)", "")}))
        cert = self.wait_for_cert(proxy, pebble, "t.berth.test", timeout=5, cadata=root_pem, contact_check=False)
        self.assertEqual(cert.serial, leaf_serial)
        self.assertEqual(https_get_verified(self.websecure, "t.berth.test", root_pem)[:2], (200, b"app"))
        time.sleep(3)
        self.assertEqual(pebble.orders(proxy.pebble_since), [], "berth ordered a name acme.json already covers")
        self.assertEqual(verify_served_cert(self.websecure, "t.berth.test", root_pem).serial, leaf_serial)
        # Nothing of the file was lost (berth may rewrite it, never drop what it holds).
        store, _ = self.wait_for_stored(self.storage, "t.berth.test", leaf_serial)
        self.assertEqual(store["le"]["Account"]["PrivateKey"], traefik_store["le"]["Account"]["PrivateKey"])
        self.assertIn("otherresolver", store)
        self.assertEqual(os.stat(self.storage).st_mode & 0o777, 0o600)
        self.assert_alive(proxy)

    def test_corrupt_storage_is_reported_and_kept_aside(self):
        pebble = self.start_pebble()
        be = self.backend("app")
        corrupt = b'{"le": {"Account": {"Email": "test@berth.test", "Registration": {"body": '
        with open(self.storage, "wb") as f:
            f.write(corrupt)
        os.chmod(self.storage, 0o600)
        proxy = self.start_berth(pebble, self.dynamic_yaml(be))
        cert = self.wait_for_cert(proxy, pebble)
        self.assertIn(self.storage, proxy.log_text(), "the corrupt storage file is not named in the log")
        self.wait_for_stored(self.storage, serial=cert.serial)
        kept = []
        for name in os.listdir(self.store_dir):
            with open(os.path.join(self.store_dir, name), "rb") as f:
                if f.read() == corrupt:
                    kept.append(name)
        self.assertTrue(kept, f"the corrupt file's content was lost (directory: {os.listdir(self.store_dir)})")
        self.assert_alive(proxy)

    def test_unwritable_storage_directory(self):
        """berth cannot create acme.json: it says so (naming the file) and still serves the certificate
        it obtained, from memory, as Traefik does; it does not exit."""
        pebble = self.start_pebble()
        be = self.backend("app")
        locked = os.path.join(self.tmp, LOCKED_DIR)
        os.mkdir(locked, 0o700)
        storage = os.path.join(locked, "acme.json")
        if os.geteuid() == 0:  # root ignores directory modes: make the directory immutable instead
            if not shutil.which("chattr"):
                self.skipTest("running as root without chattr (e2fsprogs)")
            r = subprocess.run(["chattr", "+i", locked], capture_output=True, timeout=10)
            if r.returncode != 0:
                self.skipTest(f"chattr +i not possible here: {r.stderr.decode().strip()}")
            self._immutable.append(locked)
        else:
            os.chmod(locked, 0o500)
            self.addCleanup(os.chmod, locked, 0o700)
        with self.assertRaises(OSError):  # the directory really is unwritable
            open(os.path.join(locked, "probe"), "w").close()
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), storage=storage)
        cert = self.wait_for_cert(proxy, pebble)
        deadline = time.time() + 5
        while time.time() < deadline and storage not in proxy.log_text():
            time.sleep(0.1)
        self.assertIn(storage, proxy.log_text(), "no log line names the storage that cannot be written")
        self.assertFalse(os.path.exists(storage))
        time.sleep(2)
        self.assert_alive(proxy)
        status, body, served = https_get_verified(self.websecure, HOST, pebble.roots())
        self.assertEqual((status, body, served.serial), (200, b"app", cert.serial))

    # ------------------------------------------------------------------ protocol robustness

    def test_bad_nonce_is_retried_with_pebbles_default_rejection_rate(self):
        # PEBBLE_WFE_NONCEREJECT left unset: pebble refuses 5 % of good nonces with badNonce. Three
        # orders make about thirty signed requests, so a retry is likely needed in most runs.
        pebble = self.start_pebble(nonce_reject=None)
        self.assertIn("Configured to reject 5% of good nonces", pebble.log_text())
        be = self.backend("app")
        hosts = ["a.berth.test", "b.berth.test", "c.berth.test"]
        proxy = self.start_berth(pebble, self.dynamic_yaml(be, {f"r{i}": (f"Host(`{h}`)", "") for i, h in enumerate(hosts)}))
        for h in hosts:
            self.assertEqual(self.wait_for_cert(proxy, pebble, h, timeout=30).sans, [h])
        self.assertEqual(len(pebble.issued_serials(proxy.pebble_since)), 3)

    def test_failing_ca_is_not_hammered(self):
        # Every nonce refused: nothing can succeed. berth logs the problem and backs off, but as from a
        # CA in trouble (3 s, doubling), not as from a refusal (a minute): a run of badNonce says
        # nothing about the order.
        pebble = self.start_pebble(nonce_reject=100)
        be = self.backend("app")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be))
        time.sleep(12)
        posts = [r for r in pebble.requests(proxy.pebble_since) if r[0] == "POST"]
        self.assertGreater(len(posts), 0, "berth never tried")
        self.assertLessEqual(len(posts), 60, f"{len(posts)} POSTs to a failing CA in 12 s")
        backoffs = re.findall(r"cannot get a certificate .*badNonce.*\(next try in (\w+);", proxy.log_text())
        self.assertEqual(backoffs[:2], ["3s", "6s"], proxy.log_text()[-3000:])
        self.assert_alive(proxy)

    # ------------------------------------------------------------------ renewal

    def test_renewal_of_short_lived_certificate_with_zero_failed_requests(self):
        pebble = self.start_pebble(validity=60)
        be = self.backend("app")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), duration=1)
        first = self.wait_for_cert(proxy, pebble)
        self.assertLess(first.lifetime, 61)
        traffic = HttpsTraffic(self.websecure, HOST, pebble.roots(), b"app")
        traffic.start()
        try:
            # A third of the lifetime left: about 40 s in; it must be replaced before it expires.
            second = self.wait_for_cert(proxy, pebble, exclude=(first.serial,), contact_check=False,
                                        timeout=max(first.seconds_left(), 1) + 5)
            renewed_at = (datetime.datetime.utcnow() - first.not_before).total_seconds()
            time.sleep(3)
        finally:
            traffic.finish()
        self.assertGreater(second.not_after, first.not_after)
        self.assertGreaterEqual(renewed_at, first.lifetime / 3, "renewed long before a third of the lifetime was left")
        self.assertEqual(traffic.failures[:10], [], f"{len(traffic.failures)} failed requests during renewal")
        self.assertGreater(traffic.ok, 100)
        self.assertGreater(traffic.ka_ok, 20)
        self.assertEqual(traffic.serials[:1], [first.serial])
        self.assertIn(second.serial, traffic.serials, "the traffic never saw the new certificate")
        self.assertEqual(len(pebble.orders(proxy.pebble_since)), 2, "exactly one renewal order")
        self.wait_for_stored(self.storage, serial=second.serial)
        print(f"\n  renewed {renewed_at:.1f}s into a {first.lifetime:.0f}s certificate; "
              f"{traffic.ok} + {traffic.ka_ok} keep-alive requests, none failed", end=" ")

    def test_pebble_down_during_renewal(self):
        """pebble stops right after the first issuance; a listener that refuses ACME takes its port and
        counts berth's attempts. Once berth has tried to renew (and failed), the old certificate must
        still be served; then pebble comes back on the same port: new roots and no accounts (its state
        is in memory), so berth must register again and obtain a certificate from the new pebble,
        before the old one expires and with no failed request meanwhile."""
        pebble = self.start_pebble(validity=120)
        be = self.backend("app")
        proxy = self.start_berth(pebble, self.dynamic_yaml(be), duration=1)
        first = self.wait_for_cert(proxy, pebble)
        old_roots = pebble.roots()
        pebble.down()
        traffic = HttpsTraffic(self.websecure, HOST, old_roots, b"app", interval=0.2, ka_interval=1.0)
        traffic.start()
        try:
            # Connections before a third of the lifetime has passed are not renewal attempts.
            third = first.not_before + datetime.timedelta(seconds=first.lifetime / 3)
            deadline = first.not_after - datetime.timedelta(seconds=10)
            baseline = None
            while datetime.datetime.utcnow() < deadline:
                if proxy.proc.poll() is not None:
                    self.fail("berth exited" + self.diagnostics(proxy, pebble))
                if baseline is None and datetime.datetime.utcnow() >= third:
                    baseline = pebble.down_connections
                if baseline is not None and pebble.down_connections > baseline:
                    break
                time.sleep(0.2)
            self.assertTrue(baseline is not None and pebble.down_connections > baseline,
                            "berth did not try to renew by 10 s before the certificate expired")
            attempt_at = (datetime.datetime.utcnow() - first.not_before).total_seconds()
            time.sleep(1.0)
            still = verify_served_cert(self.websecure, HOST, old_roots)
            self.assertEqual(still.serial, first.serial, "the old certificate is no longer served")
            mark = pebble.log_size()
            pebble.up()
            traffic.trust(pebble.roots())
            second = self.wait_for_cert(proxy, pebble, contact_check=False,
                                        timeout=max(first.seconds_left(), 1) + 20)
            back_after = (datetime.datetime.utcnow() - first.not_before).total_seconds()
            time.sleep(2)
        finally:
            traffic.finish()
        self.assertNotEqual(second.serial, first.serial)
        self.assertGreaterEqual(pebble.accounts_created(mark), 1, "berth did not register with the new pebble")
        self.assertIn(second.serial, pebble.issued_serials(mark))
        self.assertEqual(traffic.failures[:10], [], f"{len(traffic.failures)} failed requests "
                                                    f"(first attempt at {attempt_at:.0f}s, new certificate at {back_after:.0f}s)")
        self.assertIn(second.serial, traffic.serials)
        self.wait_for_stored(self.storage, serial=second.serial)
        print(f"\n  renewal tried at {attempt_at:.0f}s with the CA down; new certificate at {back_after:.0f}s "
              f"of {first.lifetime:.0f}s", end=" ")


if __name__ == "__main__":
    main()
