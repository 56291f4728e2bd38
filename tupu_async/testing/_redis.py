"""A real, throwaway redis-server on a free loopback port, for tests and benchmarks.

For testing code that shares one QPS budget with ``RedisLimiter`` against a real Redis,
as this project's own tests and benchmarks do.

The server keeps nothing on disk (``--save '' --appendonly no``, run in a temporary
directory) and listens on 127.0.0.1 only. :func:`redis_server_binary` tells whether the
``redis-server`` binary is installed; tests skip without it unless ``TUPU_REQUIRE_REDIS=1``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

__all__ = ["RedisServer", "free_port", "redis_required", "redis_server_binary"]

STARTUP_TIMEOUT = 10.0


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server")


def redis_required() -> bool:
    """True when TUPU_REQUIRE_REDIS=1: a missing redis-server must fail the tests, not skip."""
    return os.environ.get("TUPU_REQUIRE_REDIS") == "1"


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
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

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

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

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
