"""A private Docker engine for integration tests (see shared cookbook, section 2).

`Dockerd` starts dockerd on a unix socket in a short temp dir (no bridge, no iptables, nothing on
TCP), with its own data and exec roots, and waits for /_ping. The test image `berth-it:test` is made
without a registry (`docker import` of a rootfs holding the static /bin/busybox, /bin/sh and a
static build of tests/support/test_backend.cpp as /bin/backend). Containers run with `--init
--network host` and their backends listen on 127.0.0.1 only: no -p publishing, no 172.x traffic.
Every process is stopped by its pid, every wait is bounded, and whatever is left (containers,
shims, containerd, mounts, the temp dir) is removed by `stop()`, also at exit if a test failed.
Call `Dockerd` methods that start the daemon from the main thread (the daemon gets PDEATHSIG)."""
import atexit
import ctypes
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("BERTH_SOURCE_DIR", os.path.join(HERE, "../.."))
BACKEND_SOURCE = os.path.join(SOURCE_DIR, "tests/support/test_backend.cpp")
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
# The 20.10 CLI from docker.io matches the 20.10 daemon; any other `docker` on PATH works too.
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "docker")
COMPOSE = shutil.which("docker-compose") or "docker-compose"
BUSYBOX = "/bin/busybox"
IMAGE = "berth-it:test"
DIR_PREFIX = "bdit."   # /tmp/bdit.XXXXXXXX/{d.sock,data,exec,owner.pid,dockerd.log}
IMAGE_DIR_PREFIX = "berth-img."  # in the temp dir: owner.pid, rootfs/, rootfs.tar

_live = set()          # Dockerd instances not stopped yet (atexit stops them)
_image_tar = None      # the rootfs tarball, made once per process
_image_dir = None


def unavailable():
    """Why docker tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    for path, what in ((DOCKERD, "dockerd"), (BUSYBOX, "a static /bin/busybox (busybox-static)")):
        if not os.path.exists(path):
            return f"{what} is not installed"
    if not shutil.which(DOCKER):
        return "the docker CLI is not installed"
    if not os.environ.get("BERTH_STATIC_BACKEND_BIN") and not shutil.which("g++"):
        return "g++ is needed to build the static test backend"
    return None


# ---------------------------------------------------------------- image

def static_backend():
    """Path of a statically linked berth_test_backend: $BERTH_STATIC_BACKEND_BIN, else built with
    g++ once per source version into the temp dir (about 3 s, niced)."""
    given = os.environ.get("BERTH_STATIC_BACKEND_BIN")
    if given:
        return given
    with open(BACKEND_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"berth-static-backend-{digest}")
    if os.path.exists(path):
        return path
    partial = f"{path}.{os.getpid()}.part"
    out = subprocess.run(["nice", "-n", "10", "g++", "-std=c++20", "-O2", "-static", "-pthread",
                          "-o", partial, BACKEND_SOURCE], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"static build of the test backend failed:\n{out.stderr[-3000:]}")
    os.replace(partial, path)  # atomic: a concurrent test process sees all or nothing
    return path


def image_tarball():
    """A tar of the test image's rootfs (made once per process): /bin/busybox, /bin/sh -> busybox,
    /bin/backend (static), /tmp, /www/index.html."""
    global _image_tar, _image_dir
    if _image_tar:
        return _image_tar
    _image_dir = tempfile.mkdtemp(prefix=IMAGE_DIR_PREFIX)
    with open(os.path.join(_image_dir, "owner.pid"), "w") as f:
        f.write(str(os.getpid()))
    root = os.path.join(_image_dir, "rootfs")
    for d in ("bin", "tmp", "www"):
        os.makedirs(os.path.join(root, d))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy(BUSYBOX, os.path.join(root, "bin/busybox"))
    os.symlink("busybox", os.path.join(root, "bin/sh"))
    shutil.copy(static_backend(), os.path.join(root, "bin/backend"))
    os.chmod(os.path.join(root, "bin/backend"), 0o755)
    with open(os.path.join(root, "www/index.html"), "w") as f:
        f.write("ok\n")
    tar = os.path.join(_image_dir, "rootfs.tar")
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True, timeout=60)
    _image_tar = tar
    return tar


def backend_command(*backends, ignore_term=False, ready=False, ignore=()):
    """The container command for one or more backends, each (name, port) on 127.0.0.1:port.
    `ignore_term`: the shell under tini ignores SIGTERM and the backends never see it, so the
    container keeps serving until `docker stop -t N` sends SIGKILL after N seconds (a graceful
    shutdown window). `ignore`: more signal names the shell ignores the same way ("USR1", "HUP",
    "QUIT": tini forwards them to the shell only). `ready`: create /tmp/ready first (see
    `health_args`)."""
    signals = (["TERM"] if ignore_term else []) + [s for s in ignore if s != "TERM" or not ignore_term]
    if len(backends) == 1 and not signals and not ready:
        name, port = backends[0]
        return ["/bin/backend", "--listen", f"127.0.0.1:{port}", "--name", name]
    script = f'trap "" {" ".join(signals)}; ' if signals else ""
    if ready:
        script += "touch /tmp/ready; "
    for name, port in backends:
        script += f"/bin/backend --listen 127.0.0.1:{port} --name {name} & "
    return ["/bin/sh", "-c", script + "wait"]


def health_args(port, interval="250ms", start_period="60s", retries=1):
    """A health check that passes while /tmp/ready exists and the backend answers on `port`.
    Failures during the start period do not count, so without /tmp/ready a container stays
    `starting`; after it was healthy once, one failure makes it `unhealthy`."""
    return ["--health-cmd", f"test -f /tmp/ready && wget -q -O /dev/null http://127.0.0.1:{port}/",
            "--health-interval", interval, "--health-timeout", "2s", "--health-retries", str(retries),
            "--health-start-period", start_period]


# ---------------------------------------------------------------- daemon

def _die_with_parent():
    # If the test process is killed (even by SIGKILL), dockerd gets SIGTERM.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _pids_mentioning(text):
    """Pids of processes whose command line contains `text` (our unique temp dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_and_wait(pid, sig=signal.SIGKILL, timeout=10.0):
    try:
        os.kill(pid, sig)
    except OSError:
        return
    deadline = time.time() + timeout
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)


class DockerError(RuntimeError):
    pass


class Dockerd:
    """One private dockerd. `.socket` (path), `.host` (unix://...), `.env` (os.environ with
    DOCKER_HOST and a private DOCKER_CONFIG), `run(*args)` (the docker CLI against it)."""

    def __init__(self, live_restore=False, load_image=True):
        reap_stale()
        self.dir = tempfile.mkdtemp(prefix=DIR_PREFIX, dir="/tmp")  # short: unix socket paths <= 107 bytes
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        self.socket = os.path.join(self.dir, "d.sock")
        self.host = f"unix://{self.socket}"
        self.data_root = os.path.join(self.dir, "data")
        self.exec_root = os.path.join(self.dir, "exec")
        self.log_path = os.path.join(self.dir, "dockerd.log")
        env = {k: v for k, v in os.environ.items()
               if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "COMPOSE_FILE",
                            "COMPOSE_PROJECT_NAME")}
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=os.path.join(self.dir, "cli"))
        self.env = env
        self.live_restore = live_restore
        self.proc = None
        self._log = None
        _live.add(self)
        _install_sigterm_handler()
        try:
            self.start()
            if load_image:
                self.load_image()
        except BaseException:
            self.stop()
            raise

    # -- daemon lifecycle

    def start(self, timeout=30.0):
        """Starts dockerd (again, on the same socket and data root) and waits for /_ping."""
        if self.proc is not None and self.proc.poll() is None:
            raise DockerError("dockerd is already running")
        args = [DOCKERD, "--iptables=false", "--ip6tables=false", "--bridge=none",
                "-H", self.host, "--data-root", self.data_root, "--exec-root", self.exec_root,
                "--pidfile", os.path.join(self.dir, "dockerd.pid"), "--log-level", "warn"]
        if self.live_restore:
            args.append("--live-restore")
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise DockerError(f"dockerd exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.api("GET", "/_ping", timeout=1.0)[0] == 200:
                    self.start_seconds = time.time() - t0
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise DockerError(f"dockerd not answering /_ping after {timeout}s:\n{self.log_tail()}")

    def stop_daemon(self, timeout=30.0):
        """Stops dockerd only (SIGTERM by pid, SIGKILL after `timeout`); the data root stays.
        With live_restore the containers keep running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # containerd is dockerd's child; it normally exits with it (live-restore leaves only shims).
        for pidfile in glob.glob(os.path.join(self.exec_root, "containerd", "*.pid")):
            pid = _read_int(pidfile)
            if pid and _alive(pid) and pid in _pids_mentioning(self.dir):
                _kill_and_wait(pid, signal.SIGTERM, 5.0)
                _kill_and_wait(pid)
        if self._log:
            self._log.close()
            self._log = None

    def restart(self, timeout=30.0):
        """dockerd stopped and started again on the same socket and data root."""
        self.stop_daemon(timeout)
        self.start(timeout)

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Removes every container, stops dockerd, kills whatever is left by pid, unmounts what
        is left under the temp dir and removes it. Idempotent; never raises."""
        def attempt(step):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                print(f"docker_harness: cleanup step failed: {e!r}")

        if self.is_running():
            attempt(self.rm_all)
            attempt(lambda: self.run("network", "prune", "-f", timeout=30, check=False))
        attempt(self.stop_daemon)
        attempt(self._kill_leftovers)
        attempt(self._unmount_all)
        shutil.rmtree(self.dir, ignore_errors=True)
        _live.discard(self)

    def _kill_leftovers(self):
        # Containers left running without a daemon (live-restore, or a daemon that died): kill each
        # container's init by pid (its pid namespace goes with it), then shims and anything else
        # started with our temp dir on its command line.
        for init_pid in glob.glob(os.path.join(self.exec_root, "containerd", "daemon", "*", "moby", "*",
                                               "init.pid")):
            pid = _read_int(init_pid)
            if pid:
                _kill_and_wait(pid)
        for pid in _pids_mentioning(self.dir):
            _kill_and_wait(pid)

    def _unmount_all(self):
        _unmount_under(self.dir)

    def log_tail(self, n=40):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # -- clients

    def api(self, method, path, timeout=5.0):
        """One Engine API request over the socket: (status, parsed JSON or text)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket)
            s.sendall(f"{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def run(self, *args, check=True, timeout=60.0, input=None):
        """The docker CLI against this daemon; returns the CompletedProcess (text)."""
        out = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise DockerError(f"docker {' '.join(args)} -> {out.returncode}: {out.stderr.strip()}")
        return out

    docker = run

    def compose(self, project, file, *args, check=True, timeout=120.0):
        """docker-compose (v1) -p project -f file *args against this daemon."""
        out = subprocess.run([COMPOSE, "--ansi", "never", "-p", project, "-f", file, *args], env=self.env,
                             capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise DockerError(f"docker-compose {' '.join(args)} -> {out.returncode}: {out.stderr.strip()}")
        return out

    def load_image(self, tag=IMAGE):
        self.run("import", image_tarball(), tag, timeout=120)

    def rm_all(self, timeout=60.0):
        """docker rm -f of every container (first: dockerd would wait out stop timeouts)."""
        ids = self.run("ps", "-aq", timeout=timeout).stdout.split()
        if ids:
            self.run("rm", "-f", *ids, timeout=timeout, check=False)

    # -- containers

    def run_container(self, name, command, labels=None, extra=(), init=True, detach=True, create_only=False):
        """`docker run -d --init --network host` of the test image; returns the container id.
        `labels`: dict (order kept). `extra`: more docker-run options (health, --expose, ...)."""
        args = ["create" if create_only else "run"]
        if detach and not create_only:
            args.append("-d")
        if init:
            args.append("--init")
        args += ["--network", "host", "--name", name]
        for k, v in (labels or {}).items():
            args += ["--label", f"{k}={v}"]
        args += list(extra)
        args += [IMAGE, *command]
        return self.run(*args).stdout.strip()

    def inspect(self, name):
        status, body = self.api("GET", f"/containers/{name}/json")
        if status != 200:
            raise DockerError(f"inspect {name}: {status} {body}")
        return body

    def health(self, name):
        """State.Health.Status ("" without a health check), or the state if not running."""
        state = self.inspect(name)["State"]
        if state.get("Status") != "running":
            return state.get("Status", "")
        return (state.get("Health") or {}).get("Status", "")

    def wait_health(self, name, status, timeout=15.0):
        t0 = time.time()
        last = None
        while time.time() - t0 < timeout:
            last = self.health(name)
            if last == status:
                return time.time() - t0
            time.sleep(0.05)
        raise AssertionError(f"container {name} is {last!r}, not {status!r}, after {timeout}s")

    def is_container_running(self, name):
        try:
            return self.inspect(name)["State"]["Status"] == "running"
        except DockerError:
            return False


def wait_serving(port, timeout=10.0):
    """Waits until something accepts on 127.0.0.1:port (a backend inside a container)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return time.time() - t0
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def listeners_outside_loopback():
    """TCP/UDP listeners bound to a non-loopback address (`ss -Hltun`), as 'proto addr:port'."""
    out = subprocess.run(["ss", "-Hltun"], capture_output=True, text=True, timeout=10).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        local = parts[4]
        addr = local.rsplit(":", 1)[0].strip("[]").split("%")[0]
        if addr.startswith("127.") or addr == "::1" or addr.startswith("::ffff:127."):
            continue
        found.add(f"{parts[0]} {local}")
    return found


# ---------------------------------------------------------------- cleanup at exit

def _unmount_under(path):
    for _ in range(3):
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f
                      if line.split()[1] == path or line.split()[1].startswith(path + "/")]
        if not mounts:
            return
        for m in sorted(mounts, key=len, reverse=True):
            if subprocess.run(["umount", m], capture_output=True, timeout=30).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True, timeout=30)


def reap_stale():
    """Removes what a killed test process left (its dockerd got SIGTERM through PDEATHSIG, but the
    temp dir and an nsfs mount stay): only our own dirs whose owner is dead and that no process
    mentions."""
    for d in glob.glob(f"/tmp/{DIR_PREFIX}*") + glob.glob(os.path.join(tempfile.gettempdir(), IMAGE_DIR_PREFIX + "*")):
        owner = _read_int(os.path.join(d, "owner.pid"))
        if owner is None or _alive(owner) or _pids_mentioning(d):
            continue
        _unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


def _cleanup_all():
    for d in list(_live):
        d.stop()
    if _image_dir:
        shutil.rmtree(_image_dir, ignore_errors=True)


atexit.register(_cleanup_all)


def _install_sigterm_handler():
    # SIGTERM to the test process becomes KeyboardInterrupt, so atexit cleanup runs.
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def on_term(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")
        signal.signal(signal.SIGTERM, on_term)
