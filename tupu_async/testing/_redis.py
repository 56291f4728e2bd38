"""A real, throwaway redis-server on a free loopback port, and a delaying TCP proxy.

For testing code that shares one QPS budget with ``RedisLimiter`` against a real Redis,
as this project's own tests and benchmarks do. :class:`DelayProxy` puts Redis "further
away" (a round-trip delay) or cuts it off (a blackhole) without touching the server.

The server keeps nothing on disk (``--save '' --appendonly no``, run in a temporary
directory) and listens on 127.0.0.1 only. :func:`redis_server_binary` tells whether the
``redis-server`` binary is installed; tests skip without it unless ``TUPU_REQUIRE_REDIS=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

from ._service import Service

__all__ = ["DelayProxy", "RedisServer", "free_port", "redis_required", "redis_server_binary"]

STARTUP_TIMEOUT = 10.0


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server")


def redis_required() -> bool:
    """True when TUPU_REQUIRE_REDIS=1: a missing redis-server must fail the tests, not skip."""
    return os.environ.get("TUPU_REQUIRE_REDIS") == "1"


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now, OUTSIDE the ephemeral range.

    The caller hands it to a child process that binds it later; a port from the kernel's
    ephemeral range could meanwhile be taken by any socket that binds port 0 or connects
    out (another server in that child, a client connection), so none is chosen from it.
    """
    try:
        low = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    draw = random.Random()
    for _ in range(200):
        port = draw.randrange(10000, max(10001, low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class _RedisEndpoint(Service):
    """Something Redis clients reach at ``127.0.0.1:port``."""

    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class RedisServer(_RedisEndpoint):
    """One redis-server process. Use as a context manager, or call start() and stop().

    ``port`` None picks a free port; giving a port lets a test bring a server up on an
    address a client already failed to reach.
    """

    def __init__(self, port: int | None = None, *, binary: str | None = None) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError(
                "redis-server is not installed: apt-get install -y redis-server"
            )
        self.binary = found
        self.port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; raise RuntimeError if it cannot."""
        self._workdir = tempfile.TemporaryDirectory(prefix="tupu-redis-")
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._workdir.name,
                "--daemonize", "no",
                "--loglevel", "warning",
                "--logfile", os.path.join(self._workdir.name, "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if _answers_ping(self.port):
                return self
            time.sleep(0.02)
        log = self._stop_process()
        raise RuntimeError(f"redis-server did not start on port {self.port}; its log: {log}")

    def _stop_process(self) -> str:
        """Stop the process and remove the directory; return what the server logged."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        log = ""
        if self._workdir is not None:
            try:
                with open(os.path.join(self._workdir.name, "redis.log")) as file:
                    log = file.read()[-2000:]
            except OSError:
                pass
            self._workdir.cleanup()
            self._workdir = None
        return log

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        self._stop_process()

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return out.stdout.strip()

    def command_calls(self) -> dict[str, int]:
        """Calls per command since start (``INFO commandstats``), e.g. ``{"evalsha": 812}``."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as sock:
            sock.sendall(b"INFO commandstats\r\n")
            data = b""
            while b"\r\n" not in data:
                data += sock.recv(65536)
            header, _, data = data.partition(b"\r\n")
            size = int(header[1:])
            while len(data) < size:
                data += sock.recv(65536)
        calls: dict[str, int] = {}
        for line in data[:size].decode().splitlines():
            if line.startswith("cmdstat_"):
                name, _, fields = line[len("cmdstat_") :].partition(":")
                for field in fields.split(","):
                    if field.startswith("calls="):
                        calls[name] = int(field[len("calls=") :])
        return calls


class DelayProxy(_RedisEndpoint):
    """A loopback TCP proxy to ``127.0.0.1:target_port`` that delays every byte.

    Each chunk is delivered ``delay / 2`` seconds after it was read, in each direction, so
    a request/reply pays ``delay`` of round trip; order is kept and throughput is not
    limited. :meth:`blackhole` stops delivering anything (connections stay open and new
    ones are accepted, like a network partition) until :meth:`restore`. Runs its own
    event loop in a daemon thread, so it serves sync tests, async tests and benchmark
    processes alike. Use as a context manager, or call start() and stop().
    """

    def __init__(self, target_port: int, *, delay: float = 0.0, port: int | None = None) -> None:
        if not 0.0 <= delay < 10.0:
            raise ValueError(f"delay must be between 0 and 10 seconds, got {delay!r}")
        self.target_port = target_port
        self.delay = delay
        self.port = port if port is not None else free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._flowing: asyncio.Event | None = None  # set while traffic flows
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> DelayProxy:
        """Start listening; return once connections are accepted."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._flowing = asyncio.Event()
            self._flowing.set()
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, "127.0.0.1", self.port)
                )
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="tupu-delay-proxy", daemon=True)
        self._thread.start()
        ready.wait(STARTUP_TIMEOUT)
        if failure:
            raise RuntimeError(f"DelayProxy could not listen on {self.port}: {failure[0]}")
        return self

    def blackhole(self) -> None:
        """Deliver nothing from now on (bytes already read are held, not dropped)."""
        self._in_loop(lambda flowing: flowing.clear())

    def restore(self) -> None:
        """Deliver again, held bytes first."""
        self._in_loop(lambda flowing: flowing.set())

    def _in_loop(self, change: Callable[[asyncio.Event], None]) -> None:
        loop, flowing = self._loop, self._flowing
        if loop is None or flowing is None:
            raise RuntimeError("DelayProxy is not running: call start() first")

        async def apply() -> None:
            change(flowing)

        asyncio.run_coroutine_threadsafe(apply(), loop).result(timeout=10)

    def stop(self) -> None:
        """Close every connection and the listener; join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a connection closed, or the proxy stopping: either way this one is over
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction: a reader task timestamps chunks, this one delivers them."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while True:
                data = await reader.read(65536)
                await queue.put((loop.time() + self.delay / 2, data))
                if not data:
                    return

        reading = loop.create_task(read())
        try:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                assert self._flowing is not None
                await self._flowing.wait()
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await reading
