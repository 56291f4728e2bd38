"""``python -m tupu_async.testing serve``: the fake server as a command.

It serves until SIGTERM/SIGINT and prints ONE JSON line to stdout once it accepts
connections: ``{"base_url": ..., "public_key_pem": ..., "pid": ..., "secret_ids": [...],
"libraries": {...}}``; for people, the address and a ready-to-paste ``export TUPU_...``
line go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import pathlib
import shlex
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .._keys import load_private_key
from ._faults import ALL_FAULT_KINDS, FaultConfig
from ._pem import private_key_pem, write_private
from ._server import DEFAULT_TASKS, FakeTupuServer
from ._serving import base_url_of, bind_socket, uvicorn_server

__all__ = ["build_parser", "export_line", "main"]


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
            write_private(args.client_key_out, pem)
            client_key_written = True
        else:
            server.add_secret_id(secret_id)
    if args.signing_key_out:
        write_private(args.signing_key_out, private_key_pem(server.signing_key))
    if args.public_key_out:
        pathlib.Path(args.public_key_out).write_bytes(server.public_key_pem)
    libraries = {name: server.create_library(name) for name in args.library}
    return server, libraries


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
    gc.freeze()  # long-lived state out of full collections (docs/design-fake.md)
    await task


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    server, libraries = _server_from_args(args)
    asyncio.run(_serve_until_signalled(server, args.host, args.port, libraries, args))
    return 0
