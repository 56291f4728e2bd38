"""``FakeServerProcess``: a fake server in a child process, driven over HTTP."""

from __future__ import annotations

import json
import os
import pathlib
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .._keys import KeySource, load_private_key, load_public_key
from ._faults import FaultConfig
from ._pem import generate_private_key, private_key_pem, public_key_pem, write_private
from ._server import DEFAULT_TASKS
from ._service import Service
from ._stats import FakeServerStats

__all__ = ["FakeServerProcess", "spawn_fake_server", "split_cores"]


def _package_root() -> str:
    """The directory holding the ``tupu_async`` package, for the child's ``PYTHONPATH``."""
    return str(pathlib.Path(__file__).resolve().parents[2])


class FakeServerProcess(Service):
    """A fake server running in a child process, driven over HTTP.

    Guarantees: after :meth:`start` (or entering the ``with`` block) the server accepts
    connections at :attr:`base_url`; :meth:`stop` (or leaving the block) terminates it
    and removes its temporary files. When no ``public_key`` is given a key pair is
    generated for ``secret_id``: :attr:`private_key_pem` holds its private half.
    ``cpus`` pins the child to those CPU cores (Linux), e.g. ``{1}`` with the client on 0.
    """

    def __init__(
        self,
        *,
        secret_id: str = "test-secret",
        public_key: KeySource | RSAPublicKey | None = None,
        more_credentials: Mapping[str, KeySource | RSAPublicKey] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        qps_limit: float | None = 50.0,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        summary: bool = True,
        tasks: Sequence[str] = DEFAULT_TASKS,
        seed: int = 0,
        max_clock_skew: float = 300.0,
        faults: FaultConfig | None = None,
        libraries: Sequence[str] = (),
        sign_management_responses: bool = False,
        replay_protection: bool = True,
        signing_key: KeySource | None = None,
        python: str = sys.executable,
        startup_timeout: float = 30.0,
        cpus: set[int] | None = None,
        arrival_jitter: float = 0.0,
        connection_setup: float = 0.0,
        foreign_qps: float = 0.0,
        qps_retry_after: float | None = 1.0,
    ) -> None:
        self.secret_id = secret_id
        self._cpus = set(cpus) if cpus else None
        self.private_key_pem: bytes | None = None
        if public_key is None:
            client_key = generate_private_key(1024)
            self.private_key_pem = private_key_pem(client_key)
            public_key = client_key.public_key()
        self._credentials: dict[str, RSAPublicKey] = {secret_id: load_public_key(public_key)}
        for other_id, other_key in (more_credentials or {}).items():
            self._credentials[other_id] = load_public_key(other_key)
        self._options: dict[str, Any] = {
            "host": host,
            "port": port,
            "qps_limit": qps_limit,
            "latency": latency,
            "latency_jitter": latency_jitter,
            "summary": summary,
            "tasks": tasks,
            "seed": seed,
            "max_clock_skew": max_clock_skew,
            "faults": faults,
            "libraries": libraries,
            "sign_management_responses": sign_management_responses,
            "replay_protection": replay_protection,
            "signing_key": signing_key,
            "arrival_jitter": arrival_jitter,
            "connection_setup": connection_setup,
            "foreign_qps": foreign_qps,
            "qps_retry_after": qps_retry_after,
        }
        self._python = python
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._stderr: IO[bytes] | None = None
        self.base_url = ""
        self.public_key_pem = b""
        self.libraries: dict[str, str] = {}
        self.pid = 0

    def _command(self, directory: pathlib.Path) -> list[str]:
        options = self._options
        command = [self._python, "-m", "tupu_async.testing", "serve"]
        command += ["--host", options["host"], "--port", str(options["port"])]
        for index, (secret_id, key) in enumerate(self._credentials.items()):
            path = directory / f"client-{index}.pub.pem"
            path.write_bytes(public_key_pem(key))
            command += ["--secret-id", secret_id, "--public-key-file", str(path)]
        qps = options["qps_limit"]
        command += ["--qps", "none" if qps is None else repr(float(qps))]
        command += ["--latency", repr(float(options["latency"]))]
        command += ["--jitter", repr(float(options["latency_jitter"]))]
        command += ["--seed", str(options["seed"]), "--tasks", ",".join(options["tasks"])]
        command += ["--max-clock-skew", repr(float(options["max_clock_skew"]))]
        command += ["--arrival-jitter", repr(float(options["arrival_jitter"]))]
        command += ["--connection-setup", repr(float(options["connection_setup"]))]
        command += ["--foreign-qps", repr(float(options["foreign_qps"]))]
        retry_after = options["qps_retry_after"]
        command += ["--qps-retry-after", "none" if retry_after is None else repr(retry_after)]
        if not options["summary"]:
            command.append("--no-summary")
        if not options["replay_protection"]:
            command.append("--no-replay-protection")
        if options["sign_management_responses"]:
            command.append("--sign-management-responses")
        for name in options["libraries"]:
            command += ["--library", name]
        faults: FaultConfig | None = options["faults"]
        if faults is not None:
            retry_after = "none" if faults.retry_after is None else repr(float(faults.retry_after))
            command += ["--fault-rate", repr(float(faults.rate))]
            command += ["--fault-kinds", ",".join(faults.kinds), "--fault-seed", str(faults.seed)]
            command += ["--timeout-delay", repr(float(faults.timeout_delay))]
            command += ["--retry-after", retry_after]
        if options["signing_key"] is not None:
            path = directory / "server.key.pem"
            write_private(str(path), private_key_pem(load_private_key(options["signing_key"])))
            command += ["--signing-key-in", str(path)]
        return command

    def start(self) -> FakeServerProcess:
        """Start the child and wait until it serves; raise RuntimeError if it cannot."""
        if self._process is not None:
            return self
        self._tempdir = tempfile.TemporaryDirectory(prefix="fake-tupu-")
        directory = pathlib.Path(self._tempdir.name)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [_package_root(), *filter(None, [env.get("PYTHONPATH")])]
        )
        self._stderr = open(directory / "stderr.log", "w+b")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self._command(directory),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        line = self._read_ready_line()
        if line is None:
            detail = self._stderr_tail()
            self.stop()
            raise RuntimeError(f"the fake Tupu server process did not start:\n{detail}")
        ready = json.loads(line)
        self.base_url = ready["base_url"]
        self.public_key_pem = ready["public_key_pem"].encode("ascii")
        self.libraries = dict(ready.get("libraries", {}))
        self.pid = int(ready["pid"])
        if self._cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.pid, self._cpus)
        return self

    def _read_ready_line(self) -> str | None:
        process = self._process
        if process is None or process.stdout is None:
            return None
        stdout = process.stdout
        lines: queue.Queue[bytes] = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=self._startup_timeout)
        except queue.Empty:
            return None
        text = line.decode("utf-8", "replace").strip()
        return text if text.startswith("{") else None

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()[-4000:].decode("utf-8", "replace")

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 10 s) and clean up."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- control over HTTP ---------------------------------------------------------------

    def _url(self, name: str) -> str:
        if not self.base_url:
            raise RuntimeError("the fake server process is not started: call start() first")
        return f"{self.base_url}/_fake/{name}"

    def stats(self) -> FakeServerStats:
        """The child's statistics (``GET /_fake/stats``)."""
        response = httpx.get(self._url("stats"), timeout=30.0)
        response.raise_for_status()
        return FakeServerStats.from_dict(response.json())

    async def astats(self) -> FakeServerStats:
        async with httpx.AsyncClient(timeout=30.0) as client:
            response = await client.get(self._url("stats"))
        response.raise_for_status()
        return FakeServerStats.from_dict(response.json())

    def reset(self) -> None:
        """Fresh statistics, QPS windows, fault queue and replay cache in the child."""
        httpx.post(self._url("reset"), timeout=30.0).raise_for_status()

    async def areset(self) -> None:
        async with httpx.AsyncClient(timeout=30.0) as client:
            (await client.post(self._url("reset"))).raise_for_status()

    def inject(self, *kinds: str) -> None:
        """Queue faults for the child's next recognition requests."""
        response = httpx.post(self._url("inject"), json={"kinds": list(kinds)}, timeout=30.0)
        response.raise_for_status()

    def __repr__(self) -> str:
        state = f"base_url={self.base_url!r}" if self.running else "stopped"
        return f"FakeServerProcess({state}, secret_id={self.secret_id!r})"


def split_cores() -> tuple[set[int], set[int]] | None:
    """(client cores, server cores): the last usable core for the fake server, the rest
    for the client; None where affinity is not supported or only one core is usable.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return set(cores[:-1]), {cores[-1]}


def spawn_fake_server(**options: Any) -> FakeServerProcess:
    """Start a fake server process (``FakeServerProcess`` options) and return its handle.

    Use it as a context manager to stop it: ``with spawn_fake_server(latency=0.3) as p:``.
    """
    return FakeServerProcess(**options).start()
