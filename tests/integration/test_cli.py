"""The command line, as Traefik users start it: --configFile, every static option as a flag with
case-insensitive keys, `berth check` with file:line problems, `berth version`, and start-up errors."""
import os
import subprocess

from harness import BERTH, BerthTestCase, free_port, get, main, router_yaml, wait_for_port


class Cli(BerthTestCase):
    def run_berth(self, *args, timeout=20):
        return subprocess.run([BERTH, *args], capture_output=True, text=True, timeout=timeout)

    def test_version(self):
        out = self.run_berth("version")
        self.assertEqual(out.returncode, 0)
        self.assertRegex(out.stdout, r"^berth version \d+\.\d+\.\d+\nallocator: (jemalloc|glibc)\n")
        # The sanitizer build brings its own allocator; every other build links jemalloc.
        sanitized = "asan" in subprocess.run(["ldd", BERTH], capture_output=True, text=True).stdout
        self.assertIn("allocator: glibc" if sanitized else "allocator: jemalloc", out.stdout)

    def test_flags_alone_start_berth_with_case_insensitive_keys(self):
        be = self.backend("flagged")
        dyn = os.path.join(self.tmp, "dyn.yml")
        with open(dyn, "w") as f:
            f.write(router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [be.url]}))
        port, ping_port = free_port(), free_port()
        proc = subprocess.Popen([BERTH, f"--entrypoints.WEB.address=127.0.0.1:{port}",
                                 f"--entryPoints.traefik.address=127.0.0.1:{ping_port}",
                                 f"--PROVIDERS.file.FILENAME={dyn}", "--providers.file.watch=true",
                                 "--log.level=DEBUG", "--ping"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_port(port, proc=proc)
            wait_for_port(ping_port, proc=proc)
            self.assertEqual(get(port, "/")[2], b"flagged")
            self.assertEqual(get(ping_port, "/ping")[:3:2], (200, b"OK"))
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=15)
        self.assertEqual(proc.returncode, 0)
        self.assertIn("DBG", err)

    def test_flag_overrides_config_file(self):
        be = self.backend("override")
        file_port, flag_port = free_port(), free_port()
        dyn = os.path.join(self.tmp, "dyn.yml")
        with open(dyn, "w") as f:
            f.write(router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": [be.url]}))
        static = os.path.join(self.tmp, "berth.yml")
        with open(static, "w") as f:
            f.write(f"entryPoints:\n  web:\n    address: 127.0.0.1:{file_port}\n"
                    f"providers:\n  file:\n    filename: {dyn}\n")
        proc = subprocess.Popen([BERTH, f"--configFile={static}", f"--entryPoints.web.address=127.0.0.1:{flag_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(flag_port, proc=proc)
            self.assertEqual(get(flag_port, "/")[2], b"override")
        finally:
            proc.terminate()
            proc.wait(15)

    def test_check_reports_every_problem_with_file_and_line(self):
        dyn = os.path.join(self.tmp, "dyn.yml")
        with open(dyn, "w") as f:
            f.write("http:\n  routers:\n    r1:\n      rule: \"Host(`a`) &&\"\n      service: s\n"
                    "    r2:\n      rule: \"Host(`b`)\"\n      service: nope\n      colour: blue\n"
                    "  services:\n    s:\n      loadBalancer:\n        servers:\n          - url: \"ftp://x\"\n")
        static = os.path.join(self.tmp, "berth.yml")
        with open(static, "w") as f:
            f.write(f"entryPoints:\n  web:\n    address: 127.0.0.1:{free_port()}\n"
                    f"providers:\n  file:\n    filename: {dyn}\n")
        out = self.run_berth("check", f"--configFile={static}")
        self.assertNotEqual(out.returncode, 0)
        self.assertRegex(out.stdout, r"dyn\.yml:9:7: .*colour")
        self.assertRegex(out.stdout, r"dyn\.yml:3:5: router r1@file disabled: .*column")
        self.assertRegex(out.stdout, r"dyn\.yml:14:\d+: .*ftp://x")
        clean = os.path.join(self.tmp, "clean.yml")
        with open(clean, "w") as f:
            f.write(router_yaml({"r": ("PathPrefix(`/`)", "s")}, {"s": ["http://127.0.0.1:1"]}))
        with open(static, "w") as f:
            f.write(f"entryPoints:\n  web:\n    address: 127.0.0.1:{free_port()}\n"
                    f"providers:\n  file:\n    filename: {clean}\n")
        out = self.run_berth("check", f"--configFile={static}")
        self.assertEqual(out.returncode, 0, out.stdout)

    def test_bad_static_config_refuses_to_start_and_names_the_place(self):
        static = os.path.join(self.tmp, "berth.yml")
        with open(static, "w") as f:
            f.write("entryPoints:\n  web:\n    adress: \":80\"\n    transport:\n"
                    "      respondingTimeouts:\n        readTimeout: soon\n")
        out = self.run_berth(f"--configFile={static}")
        self.assertEqual(out.returncode, 2)
        self.assertRegex(out.stderr, r"berth\.yml:3:5: unknown key \"adress\"")
        self.assertRegex(out.stderr, r"berth\.yml:6:\d+: .*soon")
        out = self.run_berth("--entryPoints.web.address=127.0.0.1:1", "--log.levle=DEBUG")
        self.assertEqual(out.returncode, 2)
        self.assertIn("--log.levle", out.stderr)

    def test_port_in_use_is_a_clear_start_error(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            out = self.run_berth(f"--entryPoints.web.address=127.0.0.1:{port}")
            self.assertEqual(out.returncode, 2)
            self.assertIn(f"cannot listen on \"127.0.0.1:{port}\"", out.stderr)
        finally:
            s.close()

    def test_default_config_serves_ping_and_the_dashboard(self):
        # The README's run command uses config/berth.yml; run it with its ports moved to free ones.
        src = os.environ.get("BERTH_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
        web, dash = free_port(), free_port()
        proc = subprocess.Popen([BERTH, f"--configFile={src}/config/berth.yml",
                                 f"--entryPoints.web.address=127.0.0.1:{web}",
                                 f"--entryPoints.traefik.address=127.0.0.1:{dash}"],
                                cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(dash, proc=proc)
            self.assertEqual(get(dash, "/ping")[:3:2], (200, b"OK"))
            status, headers, _ = get(dash, "/")
            self.assertEqual((status, headers["location"]), (302, "dashboard/"))
            status, headers, body = get(dash, "/dashboard/")
            self.assertEqual(status, 200)
            self.assertIn("text/html", headers["content-type"])
            self.assertIn(b"berth dashboard", body)
            self.assertIn(b"No routers yet", body)  # the newcomer's hint, shown until a router exists
            self.assertEqual(get(dash, "/api/overview")[0], 200)
            self.assertEqual(get(web, "/")[0], 404)
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
