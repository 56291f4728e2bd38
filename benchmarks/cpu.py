"""Client CPU per image (issue 9): tupu_async against a bare httpx loop, repeated.

Two measures, each over real loopback HTTP against the fake Tupu server in its own
process, so this process's CPU time is the client's alone:

1. **At the ceiling** (``throughput.py``'s scenario 1 and its plain-httpx baseline, same
   run, side by side): ``recognize_many`` of 20,000 URL images with the default client
   (qps=50) against a server answering in 300 +- 100 ms, then a bare httpx loop (sign,
   POST, read) at the same pace. Client CPU per image of each and their ratio.
2. **Unpaced**: ``recognize_many`` of 20,000 URL images with ``UnlimitedLimiter`` against
   a zero-latency server with no QPS limit: images/s and client CPU per image, which is
   the library's own cost per image with no idle wake-ups in it.

Each round runs both; the table gives every round and the medians (the machine is
shared, so single runs are noisy). ``--profile`` runs one more unpaced pass under
cProfile and prints the top functions. Writes ``benchmarks/results/cpu.json``.

Run: ``python benchmarks/cpu.py [--rounds 3] [--images 20000] [--profile]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from typing import Any

from _common import (
    client_for,
    client_key,
    fake_server,
    machine_info,
    pin_client,
    print_table,
    url_images,
    warm_up,
    write_results,
)
from cryptography.hazmat.primitives.asymmetric import rsa
from throughput import bench_plain_httpx_cpu, bench_recognize_many, sign_cost_seconds

from tupu_async import UnlimitedLimiter
from tupu_async.testing import FakeServerProcess

LATENCY, JITTER = 0.3, 0.1
PLAIN_REQUESTS = 300


async def bench_unpaced(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, images: int, profile: bool
) -> dict[str, Any]:
    """``recognize_many`` with no client limiter against a zero-latency, unlimited server."""
    await server.areset()
    profiler = cProfile.Profile() if profile else None
    async with client_for(server, key, limiter=UnlimitedLimiter()) as client:
        if profiler is not None:
            profiler.enable()
        cpu_started = time.process_time()
        started = time.perf_counter()
        results = await client.recognize_many(url_images(images))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        if profiler is not None:
            profiler.disable()
    if profiler is not None:
        print("\ncProfile of the unpaced run (top 40 by internal time):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(40)
        print("\ncProfile of the unpaced run (top 40 by cumulative time):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(40)
    return {
        "images": images,
        "images_ok": sum(1 for r in results if r.ok),
        "images_per_s": images / wall,
        "client_cpu_us_per_image": cpu / images * 1e6,
        "profiled": profile,
    }


async def run(rounds: int, images: int, profile: bool) -> dict[str, Any]:
    key = client_key(2048)
    sign_cost = sign_cost_seconds(key)
    print(pin_client())
    per_round: list[dict[str, Any]] = []
    with (
        fake_server(key, latency=LATENCY, jitter=JITTER) as slow,
        fake_server(key, qps_limit=None) as fast,
    ):
        await warm_up(slow, key)
        await warm_up(fast, key)
        for number in range(rounds):
            print(f"round {number + 1} of {rounds} ...", flush=True)
            await asyncio.sleep(1.1)  # let the server's window of earlier traffic drain
            paced = await bench_recognize_many(slow, key, images, sign_cost, False)
            await asyncio.sleep(1.1)
            plain = await bench_plain_httpx_cpu(slow, key, PLAIN_REQUESTS)
            unpaced = await bench_unpaced(fast, key, images, False)
            per_round.append(
                {
                    "client_cpu_us_per_image": paced["client_cpu_us_per_image"],
                    "plain_httpx_cpu_us_per_image": plain["client_cpu_us_per_image"],
                    "ratio": paced["client_cpu_us_per_image"] / plain["client_cpu_us_per_image"],
                    "ratio_to_ceiling": paced["ratio_to_ceiling"],
                    "images_ok": paced["images_ok"],
                    "unpaced_images_per_s": unpaced["images_per_s"],
                    "unpaced_cpu_us_per_image": unpaced["client_cpu_us_per_image"],
                    "unpaced_images_ok": unpaced["images_ok"],
                }
            )
        if profile:
            await bench_unpaced(fast, key, images, True)
    medians = {
        name: statistics.median(r[name] for r in per_round)
        for name in per_round[0]
        if name not in ("images_ok", "unpaced_images_ok")
    }
    return {
        "benchmark": "cpu",
        "environment": machine_info(),
        "setup": {
            "transport": "loopback HTTP, fake server in its own process",
            "client_key_bits": 2048,
            "images_per_run": images,
            "paced_server_latency_s": LATENCY,
            "paced_server_jitter_s": JITTER,
            "plain_httpx_requests": PLAIN_REQUESTS,
        },
        "calibration": {"rsa2048_sign_us": sign_cost * 1e6},
        "rounds": per_round,
        "medians": medians,
    }


def report(data: dict[str, Any]) -> None:
    headers = [
        "round",
        "client us/image",
        "plain httpx us/image",
        "ratio",
        "unpaced images/s",
        "unpaced us/image",
    ]
    rows: list[list[object]] = []
    for index, r in enumerate(data["rounds"], 1):
        rows.append(
            [
                index,
                f"{r['client_cpu_us_per_image']:.0f}",
                f"{r['plain_httpx_cpu_us_per_image']:.0f}",
                f"{r['ratio']:.2f}x",
                f"{r['unpaced_images_per_s']:.0f}",
                f"{r['unpaced_cpu_us_per_image']:.0f}",
            ]
        )
    m = data["medians"]
    rows.append(
        [
            "median",
            f"{m['client_cpu_us_per_image']:.0f}",
            f"{m['plain_httpx_cpu_us_per_image']:.0f}",
            f"{m['ratio']:.2f}x",
            f"{m['unpaced_images_per_s']:.0f}",
            f"{m['unpaced_cpu_us_per_image']:.0f}",
        ]
    )
    print_table("Client CPU per image (RSA-2048)", headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--images", type=int, default=20_000, help="images per run")
    parser.add_argument("--profile", action="store_true", help="cProfile one unpaced run")
    parser.add_argument("--out", default="cpu", help="results file name (without .json)")
    args = parser.parse_args()
    data = asyncio.run(run(args.rounds, args.images, args.profile))
    report(data)
    print(f"\nwrote {write_results(args.out, data)}")


if __name__ == "__main__":
    main()
