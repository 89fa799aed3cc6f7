#!/usr/bin/python3
"""Deploys under load: is a `berth deploy` visible in throughput or p99, and how long from the
command to the switch?

Two berth_test_backends (blue, green), Release build/berth with one worker, wrk (bench/load/
report.lua) with CONNS keep-alive connections on CPU 1, berth and the backends on CPU 0 (as
bench/load/run.sh pins them). For each of ROUNDS rounds, two wrk runs of DURATION:
  steady   no deploy
  deploys  `berth deploy app --target <the other colour>` every INTERVAL seconds, back to back
and wrk's req/s, p50, p99 and errors (socket errors + non-2xx) for each.
Then SWITCHES deploys on an otherwise idle berth, each timed from the command's start to the first
answer from the new target seen by a client polling on a keep-alive connection (so it includes the
CLI's start, the first health check and up to one poll).
Usage: bench/deploy/under_load.py   (env: ROUNDS=3 DURATION=10s CONNS=64 INTERVAL=0.5 SWITCHES=20)"""
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(ROOT, "tests/integration"))
os.environ.setdefault("BERTH_BIN", os.path.join(ROOT, "build/berth"))
os.environ.setdefault("BERTH_BACKEND_BIN", os.path.join(ROOT, "build/tests/support/berth_test_backend"))
from harness import BERTH, BACKEND, free_port, stop, wait_for_port  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = os.environ.get("DURATION", "10s")
CONNS = os.environ.get("CONNS", "64")
INTERVAL = float(os.environ.get("INTERVAL", "0.5"))
SWITCHES = int(os.environ.get("SWITCHES", "20"))


def backend(name, tmp):
    port = free_port()
    p = subprocess.Popen(["taskset", "-c", "0", BACKEND, "--listen", f"127.0.0.1:{port}", "--name", name,
                          "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc=p)
    return p, f"127.0.0.1:{port}"


def wrk(port):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNS}", f"-d{DURATION}", "--latency",
                          "-s", os.path.join(ROOT, "bench/load/report.lua"), f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"RESULT rps=([\d.]+) p50_us=(\d+) p99_us=(\d+) requests=(\d+) errors=(\d+) non2xx=(\d+)", out)
    return {"rps": float(m[1]), "p50": int(m[2]), "p99": int(m[3]), "requests": int(m[4]),
            "errors": int(m[5]) + int(m[6])}


def main():
    tmp = tempfile.mkdtemp(prefix="berth-deploy-bench.")
    env = {**os.environ, "BERTH_ADMIN_SOCKET": f"{tmp}/admin.sock", "BERTH_DEPLOY_STATE": f"{tmp}/state.json"}
    procs = []
    try:
        blue, blue_at = backend("blue", tmp)
        green, green_at = backend("green", tmp)
        procs += [blue, green]
        port = free_port()
        with open(f"{tmp}/dynamic.yml", "w") as f:
            f.write("http:\n  routers:\n    app: {rule: \"PathPrefix(`/`)\", service: app}\n  services:\n"
                    f"    app:\n      loadBalancer:\n        servers: [{{url: \"http://{blue_at}\"}}]\n")
        with open(f"{tmp}/berth.yml", "w") as f:
            f.write(f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\nproviders:\n  file:\n"
                    f"    filename: {tmp}/dynamic.yml\nworkers: 1\nlog:\n  level: WARN\n")
        proxy = subprocess.Popen(["taskset", "-c", "0", BERTH, f"--configFile={tmp}/berth.yml"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proxy)
        wait_for_port(port, proc=proxy)
        time.sleep(0.3)
        targets = [green_at, blue_at]

        def deploy(to):
            r = subprocess.run(["taskset", "-c", "1", BERTH, "deploy", "app", "--target", to, "--health-path", "/"],
                               env=env, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(r.stderr)

        results = {"steady": [], "deploys": []}
        deploys_done = 0
        for _ in range(ROUNDS):
            results["steady"].append(wrk(port))
            stop_flag = threading.Event()

            def deployer():
                nonlocal deploys_done
                i = 0
                while not stop_flag.is_set():
                    deploy(targets[i % 2])
                    i += 1
                    deploys_done += 1
                    stop_flag.wait(INTERVAL)
            t = threading.Thread(target=deployer)
            t.start()
            results["deploys"].append(wrk(port))
            stop_flag.set()
            t.join()

        # Command -> first answer from the new target.
        latencies = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(SWITCHES):
            to = targets[(deploys_done + i) % 2]
            name = "green" if to == green_at else "blue"
            started = time.monotonic()
            cmd = subprocess.Popen([BERTH, "deploy", "app", "--target", to, "--health-path", "/"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while True:
                conn.request("GET", "/")
                r = conn.getresponse()
                if r.read() == name.encode():
                    latencies.append((time.monotonic() - started) * 1000)
                    break
            cmd.wait(60)
        conn.close()

        def med(runs, key):
            return statistics.median(r[key] for r in runs)
        print(f"rounds={ROUNDS} duration={DURATION} conns={CONNS} deploy every {INTERVAL}s "
              f"({deploys_done} deploys during the deploy runs)")
        print("| run | req/s (median) | p50 µs | p99 µs | errors | per-round req/s |")
        print("|---|---|---|---|---|---|")
        for k in ("steady", "deploys"):
            runs = results[k]
            per_round = ", ".join("%.0f" % r["rps"] for r in runs)
            print(f"| {k} | {med(runs, 'rps'):.0f} | {med(runs, 'p50'):.0f} | {med(runs, 'p99'):.0f} | "
                  f"{sum(r['errors'] for r in runs)} | {per_round} |")
        latencies.sort()
        print(f"deploy command -> first answer from the new target, {SWITCHES} deploys: median "
              f"{statistics.median(latencies):.1f} ms, p90 {latencies[int(len(latencies) * 0.9) - 1]:.1f} ms, "
              f"max {latencies[-1]:.1f} ms")
    finally:
        for p in reversed(procs):
            stop(p)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
