"""WebSocket through berth with python3-websockets on both ends: messages both ways (small and
large), the backend closing, the client closing, an idle tunnel closed after the entry point's
idleTimeout, a busy tunnel closed at webSocket.maxLifetime, a tunnel surviving a config reload, a
tunnel living through `berth deploy` until its drain timeout, and a 101 nobody asked for refused."""
import asyncio
import logging
import os
import re
import signal
import threading
import time

import websockets

from harness import BERTH, BerthTestCase, free_port, get, main, wait_for_port, wait_until

logging.getLogger("websockets").setLevel(logging.CRITICAL)  # an idle-closed tunnel is expected here


class EchoServer:
    """A websockets server on 127.0.0.1 in its own thread: echoes, or closes on "bye"."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.paths = []
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def handler(ws, path):
            self.paths.append(path)
            async for message in ws:
                if message == "bye":
                    await ws.close(code=4000, reason="server says bye")
                    return
                await ws.send(message)

        async def start():
            self.server = await websockets.serve(handler, "127.0.0.1", 0, max_size=2 ** 24)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def stop(self):
        async def shut():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


class WebSocket(BerthTestCase):
    def start(self, idle="180s", lifetime=None, grace=None):
        self.echo = EchoServer()
        self._procs.append(self.echo)
        self.dynamic = (f"http:\n  routers:\n    ws: {{rule: \"PathPrefix(`/`)\", service: s}}\n  services:\n"
                        f"    s: {{loadBalancer: {{servers: [{{url: \"http://127.0.0.1:{self.echo.port}\"}}]}}}}\n")
        port = free_port()
        static = (f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n    transport:\n"
                  f"      respondingTimeouts: {{idleTimeout: {idle}}}\n"
                  + (f"      lifeCycle: {{graceTimeOut: {grace}}}\n" if grace else "")
                  + (f"    webSocket: {{maxLifetime: {lifetime}}}\n" if lifetime else "") + "providers:\n  file:\n"
                  f"    filename: {self.tmp}/dynamic.yml\nworkers: 1\nlog: {{level: DEBUG}}\n")
        self.proxy = self.berth(static_yaml=static, dynamic_yaml=self.dynamic, wait=False)
        wait_for_port(port, proc=self.proxy.proc)
        self.url = f"ws://127.0.0.1:{port}"

    def test_messages_flow_both_ways_until_a_side_closes(self):
        self.start()

        async def talk():
            async with websockets.connect(self.url + "/chat?room=1", max_size=2 ** 24) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                big = "x" * (3 * 1024 * 1024)
                await ws.send(big)
                assert await ws.recv() == big
                await ws.send(b"\x00\x01binary")
                assert await ws.recv() == b"\x00\x01binary"
                await ws.send("bye")
                try:
                    await ws.recv()
                except websockets.ConnectionClosed as e:
                    return e.code, e.reason
        self.assertEqual(run(talk()), (4000, "server says bye"))
        self.assertEqual(self.echo.paths, ["/chat?room=1"])

        async def client_closes():
            ws = await websockets.connect(self.url + "/")
            await ws.send("one")
            assert await ws.recv() == "one"
            await ws.close()
            return ws.close_code
        self.assertEqual(run(client_closes()), 1000)

    def test_tunnel_survives_a_hot_upgrade_until_the_grace_timeout(self):
        self.start(grace="2s")
        old = self.proxy.proc.pid
        successor = []

        async def upgrade_while_open():
            async with websockets.connect(self.url + "/", ping_interval=None) as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                os.kill(old, signal.SIGUSR2)
                deadline = time.time() + 10
                while "serving on the sockets of the berth this one replaces" not in self.proxy.log_text():
                    assert time.time() < deadline, "no successor"
                    await asyncio.sleep(0.02)
                successor.extend(int(p) for p in re.findall(r"started with \d+ workers \(process (\d+)\)",
                                                              self.proxy.log_text())[1:])
                # The old process drains: its tunnel goes on; new connections reach the successor.
                await asyncio.sleep(0.5)
                await ws.send("during")
                assert await ws.recv() == "during"
                async with websockets.connect(self.url + "/", ping_interval=None) as fresh:
                    await fresh.send("new")
                    assert await fresh.recv() == "new"
                # graceTimeOut (2 s) after the handover, the old process closes what is left and exits.
                started = time.time()
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                except websockets.ConnectionClosed:
                    return time.time() - started
                return None
        try:
            closed_after = run(upgrade_while_open())
            self.assertIsNotNone(closed_after)
            self.assertGreater(closed_after, 0.8)  # not at the handover: ~1.5 s after this wait began
            self.assertEqual(self.proxy.proc.wait(timeout=10), 0)
            self.assertIn("grace timeout reached with 1 connections still open", self.proxy.log_text())
        finally:
            for pid in successor:
                os.kill(pid, signal.SIGTERM)

    def test_tunnel_survives_reload_and_idle_tunnels_close(self):
        self.start(idle="1s")

        async def reload_then_talk():
            async with websockets.connect(self.url + "/", ping_interval=None) as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                self.proxy.write_dynamic(self.dynamic + "    other: {loadBalancer: {servers: [{url: \"http://127.0.0.1:9\"}]}}\n")
                await asyncio.sleep(0.3)  # the new generation is live; the tunnel is not part of it
                await ws.send("after")
                assert await ws.recv() == "after"
                start = time.monotonic()
                try:
                    await ws.recv()  # nothing moves: the idle limit ends the tunnel
                except websockets.ConnectionClosed:
                    return time.monotonic() - start
        waited = run(reload_then_talk())
        self.assertGreater(waited, 0.5)
        self.assertIn("configuration generation 2 applied", self.proxy.log_text())

    def test_tunnel_lives_through_a_deploy_until_the_drain_timeout(self):
        self.start()
        green = EchoServer()
        self._procs.append(green)
        wait_until(lambda: os.path.exists(os.environ["BERTH_ADMIN_SOCKET"]), timeout=5)

        async def through_deploy():
            async with websockets.connect(self.url + "/old", ping_interval=None) as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                # --force: the echo server answers plain GETs with 426, so no health check here.
                deploy = await asyncio.create_subprocess_exec(
                    BERTH, "deploy", "s", "--target", f"127.0.0.1:{green.port}", "--force", "--drain-timeout", "1500ms",
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                started = time.monotonic()
                await asyncio.sleep(0.7)
                await ws.send("during")  # switched, and still tunnelled to the old target
                assert await ws.recv() == "during"
                out, err = await deploy.communicate()
                took = time.monotonic() - started
                try:
                    await asyncio.wait_for(ws.recv(), 3)
                    closed = False
                except websockets.ConnectionClosed:
                    closed = True
                return deploy.returncode, out.decode() + err.decode(), took, closed
        code, out, took, closed = run(through_deploy())
        self.assertEqual(code, 0, out)
        self.assertIn("1 exchange(s) still on the old targets were closed", out)
        self.assertGreater(took, 1.4)  # the deploy waited for the tunnel, up to the drain timeout
        self.assertTrue(closed, "the old target's tunnel is closed after the drain timeout")

        async def fresh():
            async with websockets.connect(self.url + "/new") as ws:
                await ws.send("x")
                return await ws.recv()
        self.assertEqual(run(fresh()), "x")
        self.assertEqual((self.echo.paths, green.paths), (["/old"], ["/new"]))

    def test_busy_tunnel_ends_at_its_lifetime(self):
        self.start(idle="10s", lifetime="1500ms")

        async def chat():
            async with websockets.connect(self.url + "/", ping_interval=None) as ws:
                start = time.monotonic()
                sent = 0
                try:
                    while time.monotonic() - start < 8:  # traffic every 100 ms: never idle
                        await ws.send(f"m{sent}")
                        assert await ws.recv() == f"m{sent}"
                        sent += 1
                        await asyncio.sleep(0.1)
                except websockets.ConnectionClosed:
                    return time.monotonic() - start, sent
        lived, sent = run(chat())
        self.assertGreater(lived, 1.3)
        self.assertLess(lived, 4.0)  # well before the 8 s the client would go on for
        self.assertGreater(sent, 8)
        # A new tunnel gets a lifetime of its own.
        self.assertEqual(run(self._echo_once()), "again")

    async def _echo_once(self):
        async with websockets.connect(self.url + "/") as ws:
            await ws.send("again")
            return await ws.recv()

    def test_unrequested_switch_of_protocols_is_refused(self):
        rogue = self.recorder(lambda m, p: (101, {"Upgrade": "websocket", "Connection": "Upgrade"}, b""))
        proxy = self.berth(dynamic_yaml=f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s}}\n"
                                        f"  services:\n    s: {{loadBalancer: {{servers: [{{url: \"{rogue.url}\"}}]}}}}\n")
        self.assertEqual(get(proxy.port, "/")[0], 502)
        # Asked for, but the 101 names no protocol: refused as well (as Go's reverse proxy does).
        bare = self.recorder(lambda m, p: (101, {}, b""))
        proxy.write_dynamic(f"http:\n  routers:\n    r: {{rule: \"PathPrefix(`/`)\", service: s}}\n"
                            f"  services:\n    s: {{loadBalancer: {{servers: [{{url: \"{bare.url}\"}}]}}}}\n")
        wait_until(lambda: "configuration generation 2 applied" in proxy.log_text())
        self.assertEqual(get(proxy.port, "/", headers={"Connection": "Upgrade", "Upgrade": "websocket"})[0], 502)


if __name__ == "__main__":
    main()
