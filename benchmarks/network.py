"""Issue 9: the local limiter on a real-looking network, against the first release's policy.

Scenarios (real loopback HTTP, the fake server in its own process answering in 300 +- 100
ms, 50 requests per second per secret id counted at its QPS gate, no Retry-After on the
gate's 429s as the API documents none):

- ``cold``: a new Python interpreter per run (imports, key loading, connection set-up all
  on the clock), the fake adding one 20 ms round trip before a new connection's first
  request reaches the gate;
- ``jitter-0/20/40/80``: each request reaches the gate uniform(0, J ms) after it arrived;
- ``foreign-15``: another client spends 15 QPS evenly on the same secret id (the ratio is
  of the 350 images/s it leaves).

Each scenario runs with the adaptive policy and with the first release's pause-1 s-and-
halve (``LocalLimiter(policy="pause-halve")``) in the same run. Reported per run: images/s
as a ratio of the ceiling, 429s per request, images failed, images lost or duplicated,
windows over 50 at the gate, client CPU per image; and the client CPU per image of the
jitter-0 run against the plain-httpx loop of ``throughput.py`` at the same pace.

    python benchmarks/network.py            # 3,000 images per run (about 3 minutes)
    python benchmarks/network.py --quick    # 1,000 images per run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

from _common import (
    CEILING_IMAGES_PER_S,
    CEILING_QPS,
    IMAGES_PER_REQUEST,
    JITTER,
    LATENCY,
    SECRET_ID,
    client_for,
    client_key,
    machine_info,
    pin_client,
    print_table,
    private_pem,
    url_images,
    window_overruns,
    write_results,
)
from cryptography.hazmat.primitives.asymmetric import rsa
from throughput import bench_plain_httpx_cpu

from tupu_async import LocalLimiter
from tupu_async.testing import FakeServerProcess, spawn_fake_server, split_cores

POLICIES = ("adaptive", "pause-halve")
COLD_SETUP_S = 0.02
FOREIGN_QPS = 15.0


def server_with(key: rsa.RSAPrivateKey, **knobs: Any) -> FakeServerProcess:
    cores = split_cores()
    return spawn_fake_server(
        secret_id=SECRET_ID,
        public_key=key.public_key(),
        latency=LATENCY,
        latency_jitter=JITTER,
        qps_limit=float(CEILING_QPS),
        qps_retry_after=None,
        cpus=cores[1] if cores else None,
        **knobs,
    )


async def in_process_run(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, images: int, policy: str
) -> dict[str, Any]:
    await server.areset()
    limiter = LocalLimiter(CEILING_QPS, recovery=CEILING_QPS / 10, policy=policy)  # type: ignore[arg-type]
    cpu = time.process_time()
    started = time.perf_counter()
    async with client_for(server, key, limiter=limiter) as client:
        results = await client.recognize_many(url_images(images))
        wall = time.perf_counter() - started
        stats = client.stats
    cpu = time.process_time() - cpu
    return summarise(results, stats, wall, cpu, images)


def summarise(
    results: list[Any], stats: Any, wall: float, cpu: float, images: int
) -> dict[str, Any]:
    indexes = sorted(r.index for r in results)
    belief = stats.limiter
    return {
        "images": images,
        "wall_s": wall,
        "images_per_s": images / wall,
        "images_failed": sum(1 for r in results if not r.ok),
        "images_lost_or_duplicated": (images - len(set(indexes)))
        + (len(indexes) - len(set(indexes))),
        "client_requests": stats.requests,
        "client_throttles": stats.throttles,
        "client_cpu_us_per_image": cpu / images * 1e6,
        "limiter_rate_at_end": belief.rate if belief else None,
        "limiter_margin_ms_at_end": belief.margin * 1e3 if belief else None,
        "jitter_throttles": belief.jitter_throttles if belief else None,
        "foreign_throttles": belief.foreign_throttles if belief else None,
    }


def cold_run(server: FakeServerProcess, key_file: str, images: int, policy: str) -> dict[str, Any]:
    """A new interpreter (``_cold_child.py``) runs ``recognize_many``; its view, summarised."""
    command = [
        sys.executable,
        str(pathlib.Path(__file__).with_name("_cold_child.py")),
        "--base-url", server.base_url,
        "--key-file", key_file,
        "--server-key-hex", server.public_key_pem.hex(),
        "--secret-id", SECRET_ID,
        "--images", str(images),
        "--policy", policy,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    wall, total, unique = seen.pop("wall_s"), seen.pop("indexes_total"), seen.pop("indexes_unique")
    cpu = seen.pop("cpu_s")
    return {
        "images": images,
        "wall_s": wall,
        "images_per_s": images / wall,
        "images_lost_or_duplicated": (images - unique) + (total - unique),
        "client_cpu_us_per_image": cpu / images * 1e6,
        "images_per_s_from_interpreter_start": images / seen["wall_from_interpreter_start_s"],
        "note": "wall from the recognize_many call, on a client entered just before it in a "
        "new interpreter; CPU from interpreter start (imports, key loading included)",
        **seen,
    }


def server_side(stats: Any, requests_share: float) -> dict[str, Any]:
    gates = [g for g, sid in zip(stats.gate_times, stats.arrival_secret_ids, strict=True)
             if sid == SECRET_ID]  # fmt: skip
    ours = len(gates)
    return {
        "requests_at_gate": ours,
        "http_429": stats.http_429,
        "http_429_per_request": stats.http_429 / ours if ours else 0.0,
        "gate_windows_over_50": window_overruns(gates, CEILING_QPS),
        "arrival_windows_over_50": window_overruns(stats.arrivals_for(SECRET_ID), CEILING_QPS),
        "foreign_accepted": stats.foreign_accepted,
        "foreign_throttled": stats.foreign_throttled,
        "share_of_ceiling_available": requests_share,
    }


async def scenario(
    name: str, key: rsa.RSAPrivateKey, key_file: str, images: int, **knobs: Any
) -> dict[str, Any]:
    available = 1.0 - knobs.get("foreign_qps", 0.0) / CEILING_QPS
    out: dict[str, Any] = {"knobs": knobs, "runs": {}}
    with server_with(key, **knobs) as server:
        for policy in POLICIES:
            await server.areset()
            await asyncio.sleep(1.1)  # the gate's window of earlier traffic drains
            print(f"  {name} / {policy} ...", flush=True)
            if name == "cold":
                await server.areset()
                run = await asyncio.to_thread(cold_run, server, key_file, images, policy)
            else:
                run = await in_process_run(server, key, images, policy)
            run["server"] = server_side(await server.astats(), available)
            run["ratio_to_ceiling"] = run["images_per_s"] / CEILING_IMAGES_PER_S
            run["ratio_to_available"] = run["ratio_to_ceiling"] / available
            requests = images // IMAGES_PER_REQUEST
            floor = (requests - 1) / (CEILING_QPS * available) + LATENCY
            run["efficiency_vs_floor"] = floor / run["wall_s"]
            out["runs"][policy] = run
    return out


def write_key(directory: str, key: rsa.RSAPrivateKey) -> str:
    path = os.path.join(directory, "client.pem")
    pathlib.Path(path).write_bytes(private_pem(key))
    return path


async def run(images: int) -> dict[str, Any]:
    key = client_key(2048)
    with tempfile.TemporaryDirectory() as directory:
        key_file = write_key(directory, key)
        scenarios: dict[str, Any] = {}
        scenarios["cold"] = await scenario(
            "cold", key, key_file, images, connection_setup=COLD_SETUP_S
        )
        for jitter_ms in (0, 20, 40, 80):
            scenarios[f"jitter-{jitter_ms}"] = await scenario(
                f"jitter-{jitter_ms}", key, key_file, images, arrival_jitter=jitter_ms / 1e3
            )
        scenarios["foreign-15"] = await scenario(
            "foreign-15", key, key_file, images, foreign_qps=FOREIGN_QPS
        )
        with server_with(key) as server:
            await asyncio.sleep(1.1)
            plain = await bench_plain_httpx_cpu(server, key, images // IMAGES_PER_REQUEST)
    ours = scenarios["jitter-0"]["runs"]["adaptive"]["client_cpu_us_per_image"]
    return {
        "benchmark": "network",
        "environment": machine_info(),
        "setup": {
            "transport": "loopback HTTP, fake server in its own process",
            "server_latency_s": LATENCY,
            "server_latency_jitter_s": JITTER,
            "gate_retry_after": None,
            "images_per_run": images,
            "cold_connection_setup_s": COLD_SETUP_S,
            "baseline": "LocalLimiter(policy='pause-halve'): the first release's 429 policy",
        },
        "scenarios": scenarios,
        "cpu": {
            "plain_httpx": plain,
            "tupu_async_jitter_0_us_per_image": ours,
            "ratio_to_plain_httpx": ours / plain["client_cpu_us_per_image"],
        },
    }


COLUMNS = [
    "scenario", "x avail", "x floor", "429 %", "failed", "lost/dup",
    "arrival >50", "gate >50", "margin ms", "CPU us/img",
]  # fmt: skip


def report(data: dict[str, Any]) -> None:
    rows = []
    for name, scenario_data in data["scenarios"].items():
        for policy, r in scenario_data["runs"].items():
            rows.append([
                f"{name} {policy}",
                r["ratio_to_available"],
                r["efficiency_vs_floor"],
                r["server"]["http_429_per_request"] * 100,
                r["images_failed"],
                r["images_lost_or_duplicated"],
                r["server"]["arrival_windows_over_50"],
                r["server"]["gate_windows_over_50"],
                r["limiter_margin_ms_at_end"],
                r["client_cpu_us_per_image"],
            ])  # fmt: skip
    print_table(
        f"recognize_many of {data['setup']['images_per_run']:,} images per run "
        "(ratio: of the ceiling, or of what the foreign client leaves)",
        COLUMNS,
        rows,
    )
    cpu = data["cpu"]
    print(
        f"\nclient CPU per image: tupu_async {cpu['tupu_async_jitter_0_us_per_image']:.0f} us vs "
        f"plain httpx {cpu['plain_httpx']['client_cpu_us_per_image']:.0f} us = "
        f"{cpu['ratio_to_plain_httpx']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 images per run")
    parser.add_argument("--images", type=int, default=None, help="images per run")
    parser.add_argument("--report", metavar="JSON", help="print the tables of a results file")
    args = parser.parse_args()
    if args.report:
        report(json.loads(pathlib.Path(args.report).read_text()))
        return
    # Each 429 is counted in the tables; the client's WARNING per 429 would drown them.
    logging.getLogger("tupu_async").setLevel(logging.ERROR)
    images = args.images or (1000 if args.quick else 3000)
    print(pin_client())
    data = asyncio.run(run(images))
    data["mode"] = "quick" if args.quick or args.images else "full"
    path = write_results("network-quick" if data["mode"] == "quick" else "network", data)
    report(data)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
