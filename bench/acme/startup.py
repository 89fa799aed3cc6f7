#!/usr/bin/python3
"""Time from berth's start to a verified HTTPS answer with a fresh certificate from pebble, against
Debian's lego obtaining the same certificate from the same pebble (issue 6: berth under 1.5 s and
faster than lego, about 6 s here).

Each round starts a fresh pebble (PEBBLE_VA_NOSLEEP=1, no authorization reuse, no badNonce) and
challtestsrv on loopback (tests/integration/pebble_harness.py), then, in alternating order:
  berth: a fresh acme.json, an HTTP-01 resolver on the web entry point and one router
         Host(`a.berth.test`) with tls.certResolver; the clock runs from spawning build/berth to the
         first HTTPS answer (200 from the backend) whose chain verifies against pebble's root only;
  lego:  `lego --http --http.port <the same web port> run` with a fresh --path; the clock runs from
         spawning lego to its exit with the certificate written.
Both register a new account and validate a new authorization. Pebble's own start is not counted.

Usage: bench/acme/startup.py [ROUNDS]   (default 3; BERTH_BIN / BERTH_BACKEND_BIN as for the tests;
scripts/deps.sh test installs pebble and lego). Exit status 1 if berth failed a round."""
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../tests/integration"))

import harness  # noqa: E402
import pebble_harness  # noqa: E402
from pebble_harness import Pebble, https_get_verified  # noqa: E402

HOST = "a.berth.test"
TIMEOUT = 30.0


def berth_round(pebble, web, websecure, backend):
    with tempfile.TemporaryDirectory(prefix="berth-bench-acme.") as tmp:
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{web}\"\n"
                  f"  websecure:\n    address: \"127.0.0.1:{websecure}\"\n"
                  "certificatesResolvers:\n  le:\n    acme:\n      email: bench@berth.test\n"
                  f"      storage: {tmp}/acme.json\n      caServer: {pebble.dir_url}\n      keyType: EC256\n"
                  "      httpChallenge:\n        entryPoint: web\n"
                  f"providers:\n  file:\n    filename: {tmp}/dynamic.yml\n    watch: true\n"
                  "workers: 2\nlog:\n  level: INFO\n")
        dynamic = (f"http:\n  routers:\n    app:\n      rule: \"Host(`{HOST}`)\"\n      entryPoints: [websecure]\n"
                   "      service: app\n      tls:\n        certResolver: le\n"
                   f"  services:\n    app:\n      loadBalancer:\n        servers:\n          - url: \"{backend.url}\"\n")
        roots = pebble.roots()
        t0 = time.monotonic()
        proxy = harness.Berth(tmp, static_yaml=static, dynamic_yaml=dynamic, wait=False,
                              env={"LEGO_CA_CERTIFICATES": pebble.ca_pem_path})
        try:
            listening = None
            while time.monotonic() - t0 < TIMEOUT:
                if proxy.proc.poll() is not None:
                    first = (proxy.log_text().strip().splitlines() or ["(no output)"])[0]
                    return None, f"berth exited with {proxy.proc.returncode}: {first}"
                try:
                    status, body, _ = https_get_verified(websecure, HOST, roots, timeout=2)
                    if status == 200 and body == b"app":
                        return time.monotonic() - t0, f"listening after {listening:.3f}s"
                except OSError as e:  # ssl.SSLError is an OSError: default certificate, not yet listening
                    if listening is None and not isinstance(e, ConnectionRefusedError):
                        listening = time.monotonic() - t0
                time.sleep(0.01)
            tail = " | ".join(proxy.log_text().strip().splitlines()[-3:])
            return None, f"no verified answer within {TIMEOUT:.0f}s (log: {tail})"
        finally:
            proxy.stop()


def lego_round(pebble):
    with tempfile.TemporaryDirectory(prefix="berth-bench-lego.") as tmp:
        t0 = time.monotonic()
        r = pebble_harness.lego_run(pebble, tmp, [HOST], timeout=TIMEOUT + 30)
        took = time.monotonic() - t0
        if r.returncode != 0 or not os.path.exists(f"{tmp}/certificates/{HOST}.crt"):
            return None, f"lego failed: {r.stderr.strip().splitlines()[-1:]}"
        return took, ""


def summary(name, times):
    ok = [t for t in times if t is not None]
    if not ok:
        return f"{name:6s} no successful round"
    return (f"{name:6s} median {statistics.median(ok):6.3f}s  min {min(ok):6.3f}s  max {max(ok):6.3f}s  "
            f"({len(ok)}/{len(times)} rounds)")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    reason = pebble_harness.available() or (None if pebble_harness.LEGO else "lego not installed")
    if reason:
        sys.exit(f"cannot run: {reason}")
    backend = harness.Backend("app")
    berth_times, lego_times = [], []
    try:
        for i in range(rounds):
            web, websecure = harness.free_port(), harness.free_port()
            with Pebble(http_port=web, tls_port=websecure, nonce_reject=0, authz_reuse=0) as pebble:
                order = ("berth", "lego") if i % 2 == 0 else ("lego", "berth")
                for who in order:
                    if who == "berth":
                        took, note = berth_round(pebble, web, websecure, backend)
                        berth_times.append(took)
                    else:
                        took, note = lego_round(pebble)
                        lego_times.append(took)
                    shown = f"{took:6.3f}s" if took is not None else "FAILED "
                    print(f"round {i + 1} {who:5s} {shown} {note}", flush=True)
    finally:
        backend.stop()
    print(summary("berth", berth_times))
    print(summary("lego", lego_times))
    ok_b = [t for t in berth_times if t is not None]
    ok_l = [t for t in lego_times if t is not None]
    if ok_b and ok_l:
        print(f"berth / lego (medians): {statistics.median(ok_b) / statistics.median(ok_l):.2f}")
    sys.exit(0 if ok_b and len(ok_b) == len(berth_times) else 1)


if __name__ == "__main__":
    main()
