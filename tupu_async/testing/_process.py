"""The fake server as a separate process: the ``serve`` command and a handle to spawn it.

``python -m tupu_async.testing serve --port 0 --secret-id ID --public-key-file pub.pem``
serves until SIGTERM/SIGINT and prints ONE JSON line to stdout once it accepts
connections: ``{"base_url": ..., "public_key_pem": ..., "pid": ..., "libraries": {...}}``,
and, for people, the address and a ready-to-paste ``export TUPU_...`` line to stderr
(``--public-key-out`` writes the response-signing public key to a PEM file for it).
``spawn_fake_server()`` starts that command and reads the line, so benchmarks can run
server and client on separate cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import pathlib
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .._keys import KeySource, load_private_key, load_public_key
from ._faults import ALL_FAULT_KINDS, FaultConfig
from ._server import (
    DEFAULT_TASKS,
    FakeTupuServer,
    generate_private_key,
    private_key_pem,
    public_key_pem,
)
from ._serving import base_url_of, bind_socket, uvicorn_server
from ._stats import FakeServerStats

__all__ = ["FakeServerProcess", "export_line", "main", "spawn_fake_server", "split_cores"]

# -- the command ---------------------------------------------------------------------------


def _optional_float(text: str) -> float | None:
    if text.lower() in ("none", "off", "0", ""):
        return None
    return float(text)


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tupu_async.testing", description="The fake Tupu API server."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the fake API over HTTP until stopped")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument(
        "--secret-id", action="append", default=[], help="a secret id to accept (repeatable)"
    )
    serve.add_argument(
        "--public-key-file",
        action="append",
        default=[],
        help="the PEM public key of the matching --secret-id (repeatable, in the same order)",
    )
    serve.add_argument(
        "--client-key-out",
        help="generate a key pair for the first --secret-id that has no --public-key-file "
        "and write its private key (PKCS#1 PEM) here",
    )
    serve.add_argument(
        "--public-key-out",
        help="write the public key that verifies the fake's responses (PEM) here, for "
        "TUPU_PUBLIC_KEY / tupu_public_key=",
    )
    serve.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    serve.add_argument("--jitter", type=float, default=0.0, help="+/- seconds of latency jitter")
    serve.add_argument(
        "--qps", type=_optional_float, default=50.0, help="QPS limit per secret id (0: none)"
    )
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--no-summary", action="store_true")
    serve.add_argument(
        "--tasks", type=_comma_list, default=list(DEFAULT_TASKS), help="comma-separated task ids"
    )
    serve.add_argument("--max-clock-skew", type=float, default=300.0)
    serve.add_argument("--no-replay-protection", action="store_true")
    serve.add_argument("--signing-key-in", help="PEM private key to sign responses with")
    serve.add_argument("--signing-key-out", help="write the response-signing private key here")
    serve.add_argument("--fault-rate", type=float, default=0.0)
    serve.add_argument(
        "--fault-kinds", type=_comma_list, default=list(ALL_FAULT_KINDS), help="comma-separated"
    )
    serve.add_argument("--fault-seed", type=int, default=0)
    serve.add_argument("--timeout-delay", type=float, default=5.0)
    serve.add_argument("--retry-after", type=_optional_float, default=1.0)
    serve.add_argument(
        "--library", action="append", default=[], help="create an image library (repeatable)"
    )
    serve.add_argument("--sign-management-responses", action="store_true")
    serve.add_argument(
        "--arrival-jitter",
        type=float,
        default=0.0,
        help="each request reaches the QPS gate uniform(0, this) seconds after it arrived",
    )
    serve.add_argument(
        "--connection-setup",
        type=float,
        default=0.0,
        help="seconds more before the first request of a new connection reaches the QPS gate",
    )
    serve.add_argument(
        "--foreign-qps",
        type=float,
        default=0.0,
        help="another client's evenly paced requests per second on every secret id",
    )
    serve.add_argument(
        "--qps-retry-after",
        type=_optional_float,
        default=1.0,
        help="the Retry-After of the QPS limit's 429s ('none' or 0: no header)",
    )
    return parser


def _server_from_args(args: argparse.Namespace) -> tuple[FakeTupuServer, dict[str, str]]:
    if len(args.public_key_file) > len(args.secret_id):
        raise SystemExit("each --public-key-file needs its --secret-id (given in the same order)")
    faults = FaultConfig(
        rate=args.fault_rate,
        kinds=args.fault_kinds,
        seed=args.fault_seed,
        timeout_delay=args.timeout_delay,
        retry_after=args.retry_after,
    )
    signing_key = (
        load_private_key(pathlib.Path(args.signing_key_in)) if args.signing_key_in else None
    )
    server = FakeTupuServer(
        qps_limit=args.qps,
        latency=args.latency,
        latency_jitter=args.jitter,
        summary=not args.no_summary,
        tasks=args.tasks,
        seed=args.seed,
        private_key=signing_key,
        max_clock_skew=args.max_clock_skew,
        faults=faults,
        sign_management_responses=args.sign_management_responses,
        replay_protection=not args.no_replay_protection,
        arrival_jitter=args.arrival_jitter,
        connection_setup=args.connection_setup,
        foreign_qps=args.foreign_qps,
        qps_retry_after=args.qps_retry_after,
    )
    client_key_written = False
    for index, secret_id in enumerate(args.secret_id):
        if index < len(args.public_key_file):
            server.register_public_key(secret_id, pathlib.Path(args.public_key_file[index]))
        elif args.client_key_out and not client_key_written:
            _, pem = server.add_credentials(secret_id)
            _write_private(args.client_key_out, pem)
            client_key_written = True
        else:
            server.add_secret_id(secret_id)
    if args.signing_key_out:
        _write_private(args.signing_key_out, private_key_pem(server.signing_key))
    if args.public_key_out:
        pathlib.Path(args.public_key_out).write_bytes(server.public_key_pem)
    libraries = {name: server.create_library(name) for name in args.library}
    return server, libraries


def _write_private(path: str, pem: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def export_line(
    base_url: str,
    secret_ids: Sequence[str],
    *,
    client_key: str | None = None,
    public_key: str | None = None,
) -> str:
    """A shell line that points the ``tupu-async`` CLI (and the examples) at the fake."""
    settings = {"TUPU_BASE_URL": base_url}
    if secret_ids:
        settings["TUPU_SECRET_ID"] = secret_ids[0]
    if client_key:
        settings["TUPU_PRIVATE_KEY"] = str(pathlib.Path(client_key).resolve())
    if public_key:
        settings["TUPU_PUBLIC_KEY"] = str(pathlib.Path(public_key).resolve())
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in settings.items())


def _tell_people(ready: Mapping[str, Any], args: argparse.Namespace) -> None:
    """What a person at a terminal needs, on stderr (stdout's JSON line is for programs)."""
    lines = [f"fake Tupu API on {ready['base_url']} (Ctrl-C stops it); for the CLI:"]
    lines.append(
        export_line(
            ready["base_url"],
            ready["secret_ids"],
            client_key=args.client_key_out,
            public_key=args.public_key_out,
        )
    )
    if not args.public_key_out:
        lines.append("(add --public-key-out tupu.pub.pem to get TUPU_PUBLIC_KEY in that line)")
    if args.public_key_file and not args.client_key_out:  # the user's own key pair
        lines.append("(and TUPU_PRIVATE_KEY=<the private half of your --public-key-file>)")
    elif not args.client_key_out:
        lines.append("(add --client-key-out client.pem for a private key the fake accepts)")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


async def _serve_until_signalled(
    server: FakeTupuServer,
    host: str,
    port: int,
    libraries: dict[str, str],
    args: argparse.Namespace,
) -> None:
    await server.warm_up()
    sock = bind_socket(host, port)
    uvicorn = uvicorn_server(server.app)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        uvicorn.should_exit = True

    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
    task = asyncio.ensure_future(uvicorn.serve(sockets=[sock]))
    while not uvicorn.started:
        if task.done():
            await task
            raise SystemExit("the fake Tupu server did not start")
        await asyncio.sleep(0.002)
    ready = {
        "base_url": base_url_of(sock),
        "public_key_pem": server.public_key_pem.decode("ascii"),
        "pid": os.getpid(),
        "secret_ids": list(server.secret_ids),
        "libraries": libraries,
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    _tell_people(ready, args)
    # The fake's long-lived state (result pools, stores) would make every full garbage
    # collection walk it: a 20-30 ms pause that stamps arrivals late, a jitter of the
    # fake, not of the service. Freeze what exists now. (Raising the thresholds instead
    # made it worse: each request leaves cyclic garbage, and collecting 60,000 young
    # objects at once paused the server for 200 ms, measured.)
    gc.freeze()
    await task


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    server, libraries = _server_from_args(args)
    asyncio.run(_serve_until_signalled(server, args.host, args.port, libraries, args))
    return 0


# -- the handle ----------------------------------------------------------------------------


def _package_root() -> str:
    """The directory holding the ``tupu_async`` package, for the child's ``PYTHONPATH``."""
    return str(pathlib.Path(__file__).resolve().parents[2])


class FakeServerProcess:
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
            _write_private(str(path), private_key_pem(load_private_key(options["signing_key"])))
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
            # Like the real service, the fake gets hardware of its own: on a small machine
            # a benchmark pins it away from the client so neither steals the other's core.
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

    # -- context management ------------------------------------------------------------------

    def __enter__(self) -> FakeServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"base_url={self.base_url!r}" if self.running else "stopped"
        return f"FakeServerProcess({state}, secret_id={self.secret_id!r})"


def split_cores() -> tuple[set[int], set[int]] | None:
    """(client cores, server cores): the last usable core for the fake server, the rest
    for the client; None where affinity is not supported or only one core is usable.

    Benchmarks and the demo give the fake server a core of its own, as the real service
    has its own hardware, so that neither process's scheduling shows up as network jitter.
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
