"""Debian's pebble (an RFC 8555 test CA) and pebble-challtestsrv (its DNS) on loopback, for the ACME
tests and bench/acme: a fresh CA and HTTPS certificate for pebble's API per instance (openssl CLI),
every listener on 127.0.0.1 and a run-time port, processes stopped by pid. challtestsrv runs DNS and
its management API only (its other listeners are disabled: their defaults bind all interfaces) and
answers every A query with 127.0.0.1, so pebble's VA reaches the HTTP-01 / TLS-ALPN-01 ports
(`http_port`, `tls_port`: berth's entry points) for any test name. See ../../../shared/cookbook.md
section 3.

Also the checks the tests make on what a server presents: `verify_served_cert` (a handshake with
SNI, the chain verified against given roots by python's ssl), `served_cert` (the same, unverified),
`https_get_verified` and `curl_https` (a request through a verified connection); `VaRelay`, a relay
between pebble's VA and berth, to look at berth while a validation is under way."""
import base64
import dataclasses
import datetime
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")
LEGO = shutil.which("lego")

# id-pe-acmeIdentifier (RFC 8737): only the TLS-ALPN-01 challenge certificate carries it.
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def available():
    """None if pebble can run here, else why not (for skipTest)."""
    if not PEBBLE or not CHALLTESTSRV:
        return "pebble / pebble-challtestsrv not installed (scripts/deps.sh test)"
    if not shutil.which("openssl"):
        return "openssl not installed"
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc, timeout=10.0):
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _openssl(*args, cwd=None):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=cwd)


def hmac_key():
    """A fresh EAB MAC key as Traefik's eab.hmacEncoded and pebble's externalAccountMACKeys want it
    (base64url, no padding)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


class _RefusingCa:
    """What berth finds on pebble's port while pebble is down: a listener on 127.0.0.1 that accepts
    and closes at once, counting connections (each one is an attempt to reach the CA)."""

    def __init__(self, port):
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self._stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def stop(self):
        self._stopping = True
        self.thread.join(5)
        self.sock.close()


class Pebble:
    """pebble + pebble-challtestsrv. `http_port` / `tls_port`: where pebble's VA connects for HTTP-01
    / TLS-ALPN-01 (berth's web / websecure entry points; 0: unused free ports). `validity`: seconds
    (pebble's certificateValidityPeriod). `eab`: {kid: hmacEncoded} makes External Account Binding
    required. `nonce_reject`: PEBBLE_WFE_NONCEREJECT, the percentage of good nonces refused with
    badNonce; 0 (the default here, so tests are deterministic), or None to leave pebble's own default
    (5 %). `authz_reuse`: PEBBLE_AUTHZREUSE (0: every order needs its challenge). The VA does not
    sleep before validating unless `va_nosleep` is False. `alternate_roots`: PEBBLE_ALTERNATE_ROOTS,
    how many more roots pebble makes; each signs its own intermediate for the same intermediate key,
    so every certificate comes with that many alternate chains (Link: <...>;rel="alternate"), chain
    i ending in an intermediate issued by root i (pebble's default chain is chain 0).

    After start: `dir_url`, `ca_pem_path` (the CA of pebble's HTTPS certificate, for
    LEGO_CA_CERTIFICATES), `roots()` / `intermediates()` (PEM of the issuing chain, new at every
    start; `generation` counts starts; `chain=i`: alternate chain i), `log_text()`. `down()` stops pebble only and leaves a
    listener that refuses ACME on its port (counting attempts); `up()` starts pebble again on the
    same ports (same HTTPS certificate, but new roots and no accounts, orders or authorizations:
    pebble keeps its state in memory); `restart()` is both. `stop()` ends everything."""

    def __init__(self, http_port=0, tls_port=0, validity=3600, eab=None, nonce_reject=0, authz_reuse=0,
                 va_nosleep=True, alternate_roots=0, env=None, start_timeout=20.0):
        reason = available()
        if reason:
            raise RuntimeError(reason)
        self._own_tmp = tempfile.TemporaryDirectory(prefix="berth-pebble.")
        self.tmp = self._own_tmp.name
        self.http_port = http_port or _free_port()
        self.tls_port = tls_port or _free_port()
        self.acme_port, self.mgmt_port, self.dns_port, self.cts_port = (_free_port() for _ in range(4))
        self.validity = validity
        self.eab = dict(eab or {})
        self.start_timeout = start_timeout
        self.dir_url = f"https://127.0.0.1:{self.acme_port}/dir"
        self.base_url = f"https://127.0.0.1:{self.acme_port}"
        self.ca_pem_path = os.path.join(self.tmp, "ca.pem")
        self.log_path = os.path.join(self.tmp, "pebble.log")
        self.cts_log_path = os.path.join(self.tmp, "challtestsrv.log")
        self.env = dict(os.environ)
        self.env.update({"PEBBLE_AUTHZREUSE": str(authz_reuse)})
        if va_nosleep:
            self.env["PEBBLE_VA_NOSLEEP"] = "1"
        self.alternate_roots = int(alternate_roots)
        if self.alternate_roots:
            self.env["PEBBLE_ALTERNATE_ROOTS"] = str(self.alternate_roots)
        else:
            self.env.pop("PEBBLE_ALTERNATE_ROOTS", None)
        if nonce_reject is None:
            self.env.pop("PEBBLE_WFE_NONCEREJECT", None)
        else:
            self.env["PEBBLE_WFE_NONCEREJECT"] = str(nonce_reject)
        self.env.update(env or {})
        self.generation = 0
        self._chains = []  # per start: [(root PEM, intermediate PEM) per chain]
        self.proc = self.cts = None
        self._refusing = None
        self._log = self._cts_log = None
        try:
            self._make_certs()
            self._write_config()
            self._start_challtestsrv()
            self.up()
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------------ processes

    def _make_certs(self):
        d = self.tmp
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                 "-subj", "/CN=berth test pebble API CA", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                 "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                 "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-keyout", f"{d}/wfe.key", "-out", f"{d}/wfe.pem")

    def _write_config(self):
        import json
        conf = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": os.path.join(self.tmp, "wfe.pem"),
            "privateKey": os.path.join(self.tmp, "wfe.key"),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(self.eab),
            "externalAccountMACKeys": self.eab,
            "certificateValidityPeriod": int(self.validity),
        }}
        self.config_path = os.path.join(self.tmp, "pebble.json")
        with open(self.config_path, "w") as f:
            json.dump(conf, f, indent=1)

    def _start_challtestsrv(self):
        self._cts_log = open(self.cts_log_path, "a")
        self.cts = subprocess.Popen(
            [CHALLTESTSRV, "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"127.0.0.1:{self.cts_port}", "-defaultIPv4", "127.0.0.1",
             "-defaultIPv6", ""],
            stdout=self._cts_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.tmp)
        deadline = time.time() + self.start_timeout
        while True:
            if self.cts.poll() is not None:
                raise RuntimeError(f"pebble-challtestsrv exited with {self.cts.returncode}: {self._tail(self.cts_log_path)}")
            try:
                with socket.create_connection(("127.0.0.1", self.cts_port), timeout=0.2):
                    return
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("pebble-challtestsrv did not start")
                time.sleep(0.05)

    def up(self):
        """Starts pebble (again) on its ports; waits for /dir and fetches the new chain."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("pebble already running")
        if self._refusing is not None:
            self._refusing.stop()
            self._refusing = None
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "a")
        self._log.write(f"=== berth harness: pebble start #{self.generation + 1}\n")
        self._log.flush()
        self.proc = subprocess.Popen([PEBBLE, "-config", self.config_path, "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.tmp, env=self.env)
        deadline = time.time() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pebble exited with {self.proc.returncode}: {self._tail(self.log_path)}")
            try:
                self._get(self.acme_port, "/dir")
                break
            except (OSError, ssl.SSLError):
                if time.time() > deadline:
                    raise RuntimeError(f"pebble's /dir not answering after {self.start_timeout}s")
                time.sleep(0.05)
        chains = [(self._get(self.mgmt_port, f"/roots/{i}").decode(),
                   self._get(self.mgmt_port, f"/intermediates/{i}").decode())
                  for i in range(1 + self.alternate_roots)]
        self._chains.append(chains)
        self.generation += 1
        for i, (root, inter) in enumerate(chains):
            suffix = "" if i == 0 else f".{i}"
            for name, pem in (("root", root), ("intermediate", inter)):
                with open(os.path.join(self.tmp, f"{name}-{self.generation}{suffix}.pem"), "w") as f:
                    f.write(pem)
        self.log_offset_at_start = self.log_size()

    def down(self):
        """Stops pebble (not challtestsrv) and refuses ACME on its port until `up()`."""
        _stop(self.proc)
        self._refusing = _RefusingCa(self.acme_port)

    @property
    def down_connections(self):
        """Connections made to pebble's port while it was down (since the last `down()`)."""
        return self._refusing.connections if self._refusing else 0

    def restart(self, down_for=0.0):
        self.down()
        time.sleep(down_for)
        self.up()

    def stop(self):
        if self._refusing is not None:
            self._refusing.stop()
            self._refusing = None
        _stop(self.proc)
        _stop(self.cts)
        for f in (self._log, self._cts_log):
            if f is not None:
                f.close()
        self._log = self._cts_log = None
        if self._own_tmp is not None:
            self._own_tmp.cleanup()
            self._own_tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ API and state

    def _ctx(self):
        return ssl.create_default_context(cafile=self.ca_pem_path)

    def _get(self, port, path, timeout=5.0):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=self._ctx()))
        with opener.open(f"https://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.read()

    def roots(self, generation=None, chain=0):
        """PEM of the root of pebble's issuing chain (of the current start, or of start #generation;
        `chain`: of alternate chain #chain, /roots/<chain> in pebble's management API)."""
        return self._chains[(generation or self.generation) - 1][chain][0]

    def intermediates(self, generation=None, chain=0):
        return self._chains[(generation or self.generation) - 1][chain][1]

    def root_path(self, generation=None, chain=0):
        suffix = "" if chain == 0 else f".{chain}"
        return os.path.join(self.tmp, f"root-{generation or self.generation}{suffix}.pem")

    def intermediate_path(self, generation=None, chain=0):
        suffix = "" if chain == 0 else f".{chain}"
        return os.path.join(self.tmp, f"intermediate-{generation or self.generation}{suffix}.pem")

    def add_a(self, host, addresses):
        """A per-name A record in challtestsrv (every other name resolves to 127.0.0.1)."""
        import json
        req = urllib.request.Request(f"http://127.0.0.1:{self.cts_port}/add-a", method="POST",
                                     data=json.dumps({"host": host, "addresses": addresses}).encode())
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5).read()

    def cert_status(self, serial_hex):
        """pebble's /cert-status-by-serial/<hex> (JSON text)."""
        return self._get(self.mgmt_port, f"/cert-status-by-serial/{serial_hex}").decode()

    # ------------------------------------------------------------------ log

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_text(self, since=0):
        if self._log is not None:
            self._log.flush()
        with open(self.log_path, errors="replace") as f:
            f.seek(since)
            return f.read()

    def orders(self, since=0):
        """Orders pebble created (log lines 'Added order "<id>" to the db')."""
        return re.findall(r'Added order "([^"]+)"', self.log_text(since))

    def issued_serials(self, since=0):
        """Serial numbers (ints) of the certificates pebble issued, in order."""
        return [int(s, 16) for s in re.findall(r"Issued certificate serial ([0-9a-f]+)", self.log_text(since))]

    def accounts_created(self, since=0):
        return len(re.findall(r"There are now \d+ accounts in memory", self.log_text(since)))

    def requests(self, since=0):
        """API requests pebble logged ('POST /order-plz -> calling handler()' ...)."""
        return re.findall(r"(GET|HEAD|POST) (\S+) -> calling handler", self.log_text(since))

    @staticmethod
    def _tail(path, n=15):
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def tail(self, n=15):
        return self._tail(self.log_path, n)


class VaRelay:
    """A TCP relay on 127.0.0.1 (`port`) to `target_port` (a berth entry point), put between pebble's
    VA and berth (pass `port` as Pebble's http_port or tls_port) to look at berth while a validation
    is under way: `on_first(head)` runs once, with what the first connection sent first (an HTTP
    request head, or the start of a TLS ClientHello), before anything of any connection reaches
    berth; the challenge is published by then (the VA connects only once berth says it is ready)
    and not yet answered. `heads`: what each connection sent first; `errors`: what on_first raised."""

    def __init__(self, target_port, on_first=None, timeout=10.0):
        self.target_port, self.on_first, self.timeout = target_port, on_first, timeout
        self.heads, self.errors = [], []
        self._lock = threading.Lock()
        self._stopping = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        up = None
        try:
            conn.settimeout(self.timeout)
            head = conn.recv(65536)
            while head and not head.startswith(b"\x16") and b"\r\n\r\n" not in head:  # 0x16: a TLS handshake
                more = conn.recv(65536)
                if not more:
                    break
                head += more
            if not head:
                return
            with self._lock:  # every connection waits here until on_first is done
                self.heads.append(head)
                if len(self.heads) == 1 and self.on_first is not None:
                    try:
                        self.on_first(head)
                    except Exception as e:  # noqa: BLE001 - reported through `errors`
                        self.errors.append(e)
            up = socket.create_connection(("127.0.0.1", self.target_port), timeout=self.timeout)
            up.sendall(head)
            while True:
                ready, _, _ = select.select([conn, up], [], [], self.timeout)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is conn else conn).sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            if up is not None:
                up.close()

    def stop(self):
        self._stopping = True
        self.thread.join(5)
        self.sock.close()


# ---------------------------------------------------------------------- what a server presents


@dataclasses.dataclass
class ServedCert:
    serial: int
    not_before: datetime.datetime   # naive UTC
    not_after: datetime.datetime    # naive UTC
    sans: list
    key: str                        # "ec" / "rsa" / "other"
    key_size: int                   # bits (256 for P-256, 384 for P-384, 2048 ...)
    curve: str                      # "secp256r1", "secp384r1" or ""
    issuer_cn: str
    subject_cn: str
    acme_identifier: bool           # carries id-pe-acmeIdentifier (a TLS-ALPN-01 challenge certificate)
    sha256: str
    alpn: str                       # the protocol the handshake selected, or None
    der: bytes = dataclasses.field(repr=False, default=b"")

    @property
    def serial_hex(self):
        return format(self.serial, "x")

    @property
    def lifetime(self):
        return (self.not_after - self.not_before).total_seconds()

    def seconds_left(self):
        return (self.not_after - datetime.datetime.utcnow()).total_seconds()


def describe(der, alpn=None):
    c = x509.load_der_x509_certificate(der)
    try:
        sans = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    try:
        c.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
        acme_id = True
    except x509.ExtensionNotFound:
        acme_id = False
    key = c.public_key()
    kind = "ec" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa" if isinstance(key, rsa.RSAPublicKey) else "other"
    cn = lambda name: ",".join(a.value for a in name.get_attributes_for_oid(x509.NameOID.COMMON_NAME))
    return ServedCert(serial=c.serial_number, not_before=c.not_valid_before, not_after=c.not_valid_after,
                      sans=list(sans), key=kind, key_size=getattr(key, "key_size", 0),
                      curve=key.curve.name if kind == "ec" else "", issuer_cn=cn(c.issuer),
                      subject_cn=cn(c.subject), acme_identifier=acme_id,
                      sha256=hashlib.sha256(der).hexdigest(), alpn=alpn, der=der)


def client_context(cadata=None, alpn=None):
    """Verifies the chain against `cadata` (PEM text, one or more certificates) and the host name;
    None: verifies nothing."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cadata is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=cadata)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def _handshake(port, sni, ctx, timeout):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def verify_served_cert(port, sni, cadata, alpn=None, timeout=10.0):
    """A TLS handshake to 127.0.0.1:port with `sni`, the chain verified against `cadata` (PEM roots:
    pass only the root to require the server to send the intermediate, as Traefik does) and the name
    checked (`sni` None: no SNI is sent and no name checked, the chain still is). Returns the leaf as
    a ServedCert; raises ssl.SSLError (or OSError) otherwise."""
    ctx = client_context(cadata, alpn)
    if sni is None:
        ctx.check_hostname = False
    s = _handshake(port, sni, ctx, timeout)
    try:
        return describe(s.getpeercert(binary_form=True), s.selected_alpn_protocol())
    finally:
        s.close()


def served_cert(port, sni, alpn=None, timeout=10.0):
    """The leaf the server presents for `sni`, unverified."""
    s = _handshake(port, sni, client_context(None, alpn), timeout)
    try:
        return describe(s.getpeercert(binary_form=True), s.selected_alpn_protocol())
    finally:
        s.close()


def served_chain(port, sni, timeout=20):
    """The certificates the server sends for `sni` (leaf first, as sent; unverified), as
    cryptography x509 objects (openssl s_client -showcerts: python 3.11's ssl cannot show them)."""
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", sni, "-showcerts"],
                         input=b"", capture_output=True, timeout=timeout)
    pems = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", out.stdout, re.S)
    return [x509.load_pem_x509_certificate(p) for p in pems]


def common_name(name):
    """The CN of an x509.Name (several joined with ',')."""
    return ",".join(a.value for a in name.get_attributes_for_oid(x509.NameOID.COMMON_NAME))


def https_get_verified(port, sni, cadata, path="/", host=None, timeout=10.0):
    """GET over a verified TLS connection (HTTP/1.1, Connection: close). Returns
    (status, body bytes, ServedCert)."""
    s = _handshake(port, sni, client_context(cadata, ["http/1.1"]), timeout)
    try:
        cert = describe(s.getpeercert(binary_form=True), s.selected_alpn_protocol())
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or sni}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return status, body, cert


def curl_https(port, host, cafile, path="/", timeout=10):
    """curl https://host:port/path with host -> 127.0.0.1 and only `cafile` trusted.
    Returns (curl exit code, HTTP status, body bytes, stderr text)."""
    out = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout), "--resolve", f"{host}:{port}:127.0.0.1",
                          "--cacert", cafile, "-w", "\n%{http_code}", f"https://{host}:{port}{path}"],
                         capture_output=True, timeout=timeout + 10)
    body, _, code = out.stdout.rpartition(b"\n")
    return out.returncode, int(code or 0), body, out.stderr.decode(errors="replace")


def lego_run(pebble, path, domains, challenge="http", port=None, eab=None, email="t@berth.test", timeout=60,
             key_type="ec256"):
    """Debian's lego against `pebble`: HTTP-01 on 127.0.0.1:`port` (default pebble.http_port) or
    TLS-ALPN-01 on `port` (default pebble.tls_port). `eab`: (kid, hmac). Returns the CompletedProcess;
    the certificate lands in <path>/certificates/<first domain>.crt (leaf + intermediate)."""
    if not LEGO:
        raise RuntimeError("lego not installed (scripts/deps.sh test)")
    args = [LEGO, "--server", pebble.dir_url, "--accept-tos", "--email", email, "--path", path, "--key-type", key_type]
    for d in domains:
        args += ["-d", d]
    if eab:
        args += ["--eab", "--kid", eab[0], "--hmac", eab[1]]
    if challenge == "http":
        args += ["--http", "--http.port", f"127.0.0.1:{port or pebble.http_port}"]
    else:
        args += ["--tls", "--tls.port", f"127.0.0.1:{port or pebble.tls_port}"]
    args.append("run")
    env = dict(os.environ, LEGO_CA_CERTIFICATES=pebble.ca_pem_path)
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
