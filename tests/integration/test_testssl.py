"""testssl.sh (Debian's testssl.sh package, 3.0.x) against berth's HTTPS entry point with Traefik's
default TLS options: one bounded scan of the groups that judge the TLS layer (protocols, standard
cipher categories, forward secrecy, server preferences, server defaults, vulnerabilities, ciphers
per protocol), parsed from testssl's pretty JSON. Asserts: nothing below TLS 1.2 offered, TLS 1.2
and 1.3 offered, every offered cipher forward secret, no finding of severity MEDIUM, HIGH or
CRITICAL, no scan error, and berth still serving afterwards.

The router serves an ECDSA and an RSA certificate for one name, as Traefik users commonly have
(ACME's default key type is RSA), so every cipher suite berth enables can be negotiated: with an
ECDSA certificate alone the ECDHE-RSA and RSA key exchange suites would stay hidden.

Exceptions, each with its reason:
- cert_revocation <cert#N> (HIGH, "Neither CRL nor OCSP URI provided"): a property of the
  certificates this test mints with its private CA, not of berth. Giving them an OCSP responder
  URL would make berth fetch OCSP responses for stapling (it does for such certificates).
- sessionresumption_ticket (WARN, "check failed because of connect problem") is tolerated, while
  any other WARN fails the test: testssl 3.0.x runs `openssl s_client -sess_out ... </dev/null`,
  and with TLS 1.3 the client often closes before the NewSessionTicket (sent right after the
  client's Finished) is read, so the second, resuming, connection has no session file. The same
  race shows against `openssl s_server`; ticket resumption itself is covered by test_tls.py.
No exception for HTTP header findings: the -h group (HSTS, security headers: a proxy passes the
application's) is not run at all. LOW findings do not fail the test; berth's defaults, like Go's,
include ECDHE CBC suites, which testssl reports as LOW (cipherlist_AVERAGE, LUCKY13).

Nothing leaves the machine: --ip 127.0.0.1 with --nodns none (no A/AAAA/PTR/CAA/MX lookups),
no --phone-out (no CRL, OCSP or pwnedkeys fetches), NXCONNECT=127.0.0.1:0 (testssl's probes of the
local openssl otherwise connect to "invalid.", a DNS query each), and a clean environment so no
preset variable turns any of that back on. Its probes of the local openssl also run
`openssl s_client` without -connect, which dials localhost:4433 (loopback) and closes.

Runtime: 65-75 s against a release build on two cores (the scan is most of it); bounded at
SCAN_TIMEOUT."""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import unittest

from harness import BerthTestCase, RawClient, free_port, main, wait_for_port, wait_until

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")  # Debian installs /usr/bin/testssl
HOST = "berth.test"
SCAN_TIMEOUT = 400  # seconds; ctest gives the whole file 600
GROUPS = ["--protocols", "--std", "--fs", "--server-preference", "--server-defaults", "--vulnerable",
          "--cipher-per-proto"]
FAILING = ("MEDIUM", "HIGH", "CRITICAL")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certs(d):
    """A test CA and two leaves for HOST signed by it (ECDSA P-256 and RSA 2048), valid one year
    (testssl rates certificates expiring within 60 days MEDIUM or worse)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "400", "-subj", "/CN=Berth testssl CA")
    for name, newkey, usage in (("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "digitalSignature"),
                                ("rsa", ["-newkey", "rsa:2048"], "digitalSignature,keyEncipherment")):
        openssl("req", "-new", *newkey, "-nodes", "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr",
                "-subj", f"/CN={HOST}/O={name}")
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(f"basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage={usage}\n"
                    f"subjectAltName=DNS:{HOST}\n")
        openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
                "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "365",
                "-extfile", f"{d}/{name}.ext", "-out", f"{d}/{name}.pem")


def findings(report):
    """Every finding of the pretty JSON's first (only) scan result, as (section, dict)."""
    scan = report["scanResult"][0]
    return [(section, f) for section, items in scan.items() if isinstance(items, list)
            for f in items if isinstance(f, dict) and "id" in f]


def forward_secret_kx(kx):
    """The first word of testssl's key exchange column: ECDH or DH (as in "ECDH 253", "DH 2048") are
    ephemeral, hence forward secret; RSA, PSK, ... are not."""
    return kx in ("ECDH", "DH")


def forward_secret_name(name):
    """An OpenSSL cipher suite name as testssl's cipher order lists it."""
    return name.startswith(("ECDHE-", "DHE-", "EDH-", "TLS_"))


def https_get(port, cafile):
    """GET / over TLS with SNI and Host HOST, the chain verified against the test CA: (status, body)."""
    c = RawClient.__new__(RawClient)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sock, c.buf = ssl.create_default_context(cafile=cafile).wrap_socket(raw, server_hostname=HOST), b""
    try:
        c.send(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
        status, _, body = c.read_response()
        return status, body
    finally:
        c.close()


def excepted(f):
    """The MEDIUM-or-worse findings this test tolerates (see the module's docstring)."""
    return f["id"].startswith("cert_revocation") and f["finding"] == "Neither CRL nor OCSP URI provided"


class TestSsl(BerthTestCase):
    def start(self, certs):
        port = free_port()
        static = (f"entryPoints:\n  websecure:\n    address: \"127.0.0.1:{port}\"\n"
                  f"providers:\n  file:\n    filename: {self.tmp}/dynamic.yml\n    watch: true\n"
                  f"workers: 2\nlog:\n  level: INFO\n")
        be = self.backend("app")
        dynamic = f"""http:
  routers:
    app:
      rule: "Host(`{HOST}`)"
      service: s
      tls: {{}}
  services:
    s:
      loadBalancer:
        servers:
          - url: "{be.url}"
tls:
  certificates:
    - certFile: {certs}/ec.pem
      keyFile: {certs}/ec.key
    - certFile: {certs}/rsa.pem
      keyFile: {certs}/rsa.key
"""
        proxy = self.berth(static_yaml=static, dynamic_yaml=dynamic, wait=False)
        proxy.ports = {"websecure": port}
        wait_for_port(port, proc=proxy.proc)
        wait_until(lambda: "configuration generation 1 applied" in proxy.log_text())
        return proxy

    def scan(self, port, cafile):
        """Runs testssl.sh in its own process group (stopped by that id on timeout); returns
        (exit code, parsed JSON, text output, seconds)."""
        out_json = os.path.join(self.tmp, "testssl.json")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": self.tmp, "TMPDIR": self.tmp,
               "LC_ALL": "C", "TERM": "dumb", "NXCONNECT": "127.0.0.1:0"}
        cmd = [TESTSSL, "--quiet", "--color", "0", "--warnings", "batch", "--nodns", "none", "--ip", "127.0.0.1",
               "--connect-timeout", "10", "--openssl-timeout", "10", "--add-ca", cafile,
               "--jsonfile-pretty", out_json, *GROUPS, f"https://{HOST}:{port}/"]
        start = time.time()
        p = subprocess.Popen(cmd, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            text, _ = p.communicate(timeout=SCAN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # testssl and the openssl processes it started
            p.communicate()
            self.fail(f"testssl.sh took longer than {SCAN_TIMEOUT}s")
        elapsed = time.time() - start
        text = text.decode("utf-8", "replace")
        if os.environ.get("BERTH_TESTSSL_REPORT"):  # a directory to keep testssl's report in
            shutil.copy(out_json, os.environ["BERTH_TESTSSL_REPORT"])
            with open(os.path.join(os.environ["BERTH_TESTSSL_REPORT"], "testssl.txt"), "w") as f:
                f.write(text)
        self.assertLess(p.returncode, 242, f"testssl.sh failed (exit {p.returncode}):\n{text[-3000:]}")
        with open(out_json) as f:
            return p.returncode, json.load(f), text, elapsed

    @unittest.skipUnless(TESTSSL, "testssl.sh not installed (Debian package testssl.sh; scripts/deps.sh test)")
    def test_testssl_finds_no_weakness_with_default_tls_options(self):
        certs = os.path.join(self.tmp, "certs")
        os.mkdir(certs)
        make_certs(certs)
        proxy = self.start(certs)
        port = proxy.ports["websecure"]
        rc, report, text, elapsed = self.scan(port, f"{certs}/ca.pem")
        print(f"testssl.sh: exit {rc}, {elapsed:.0f}s", flush=True)
        all_findings = findings(report)
        by_id = {f["id"]: f for _, f in all_findings}
        context = "\n" + text[-6000:]

        # The scan ran against berth: the right target, each group present, no scan error.
        scan = report["scanResult"][0]
        self.assertEqual((scan.get("targetHost"), scan.get("ip"), scan.get("port")), (HOST, "127.0.0.1", str(port)))
        for section in ("protocols", "ciphers", "pfs", "serverPreferences", "serverDefaults", "vulnerabilities",
                        "cipherTests"):
            self.assertTrue(scan.get(section), f"no {section} in testssl's report" + context)
        errors = [f for _, f in all_findings if f.get("severity") == "FATAL" or
                  (f.get("severity") == "WARN" and f["id"] != "sessionresumption_ticket")]
        self.assertEqual(errors, [], "testssl could not complete checks" + context)

        with self.subTest("protocols"):
            finding = lambda i: by_id.get(i, {}).get("finding", "(missing)")
            below = {p: finding(p) for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
                     if not finding(p).startswith("not offered")}
            self.assertEqual(below, {}, "protocols below TLS 1.2 offered")
            self.assertEqual(finding("TLS1_2"), "offered")
            self.assertIn(finding("TLS1_3"), ("offered", "offered with final"))

        with self.subTest("forward secrecy"):
            # Per protocol, each cipher the server accepted: "cipher-tls1_2_xc02b": "TLS 1.2  xc02b
            # ECDHE-ECDSA-AES128-GCM-SHA256  ECDH 253  AESGCM  128  TLS_ECDHE_ECDSA_WITH_...".
            offered = {}
            for section, f in all_findings:
                if f["id"].startswith("cipher-"):
                    proto = f["id"][len("cipher-"):].rsplit("_x", 1)[0]
                    cols = f["finding"].split()
                    i = next(n for n, c in enumerate(cols) if re.fullmatch(r"x[0-9a-fA-F]+", c))
                    offered.setdefault(proto, []).append((cols[i + 1], cols[i + 2]))
            not_fs = [f"{proto} {name} (key exchange {kx})" for proto, suites in offered.items()
                      for name, kx in suites if not forward_secret_kx(kx)]
            # The server's cipher order lists what it accepts per protocol, the other way.
            for proto in ("TLSv1_2", "TLSv1_3"):
                names = by_id.get(f"cipherorder_{proto}", {}).get("finding", "").split()
                not_fs += [f"{proto} {name} (cipher order)" for name in names if not forward_secret_name(name)]
            # (Go, hence Traefik, has left the RSA key exchange suites out of its defaults since Go 1.22.)
            self.assertEqual(not_fs, [], "cipher suites without forward secrecy offered")
            self.assertEqual(sorted(offered), ["tls1_2", "tls1_3"], offered)
            self.assertEqual(by_id["PFS"]["severity"], "OK", by_id["PFS"])

        with self.subTest("no finding of severity MEDIUM or worse"):
            bad = [f"{section}: {f['id']} {f['severity']}: {f['finding']}" for section, f in all_findings
                   if f.get("severity") in FAILING and not excepted(f)]
            self.assertEqual(bad, [], "testssl.sh findings" + context)

        # berth survived the scan (ROBOT, renegotiation, heartbleed probes...) and still serves.
        self.assertIsNone(proxy.proc.poll(), "berth exited during the scan")
        self.assertEqual(https_get(port, f"{certs}/ca.pem"), (200, b"app"))


if __name__ == "__main__":
    main()
