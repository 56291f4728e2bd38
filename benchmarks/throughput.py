"""Throughput benchmark (issue 3): tupu_async against the API's ceiling and simple baselines.

Everything runs over real loopback HTTP against the fake Tupu server in its OWN process
(``spawn_fake_server``), so this process holds only the client: its CPU time and event loop
are the client's alone. The client signs with a fresh RSA-2048 key. The ceiling is the API's
limit per secret id: 50 requests/s x 10 images = 500 images/s.

Scenarios, side by side in one run:

1. ``recognize_many`` with the default client (qps=50) over 20,000 URL images against a
   server answering in 300 +- 100 ms (uniform) and enforcing a 50-QPS sliding window:
   images/s and its ratio to 500 images/s; efficiency against this run's physical floor,
   ``floor = (requests - 1) / 50 s + 0.3 s`` (the CONFIGURED mean latency; the floor with
   the mean latency the client observed, which adds loopback and server time, is reported
   too); the most requests the server saw arrive in any 1 s window; HTTP 429s; mean images
   per request; client CPU per image (``time.process_time`` of this process over the call)
   and the share of it spent in RSA signing (``Signer.sign`` timed on its own, times the
   number of requests).
2. Baselines on the same server: the official SDK's pattern (one request of 10 images at a
   time, sequentially, via ``client.recognize``) on a 300-image subset, its rate
   extrapolated linearly to the full size (it is latency-bound, so the rate is flat); and a
   naive ``asyncio.gather`` of ``recognize`` calls with no limiter
   (``limiter=UnlimitedLimiter()``, ``max_retries=0``) over 2,000 images: its 429s, the most
   arrivals in 1 s, and the rate of the images that succeeded.
3. 500 concurrent ``recognize_one`` callers (all started at once): mean images per request
   and the callers' mean/p95 latency; and the latency added by lingering: a lone
   ``recognize_one`` vs a lone ``recognize([one])``, interleaved, 30 ms apart (so the
   limiter never delays them), against a zero-latency server.
4. Memory: 1,000,000 URL images from a generator through ``iter_recognize`` (the consumer
   drops each result) against a zero-latency server with no QPS limit and the client's
   limiter lifted (``UnlimitedLimiter``): peak RSS growth of this process above its RSS
   after a warm-up, sampled every 20 ms by a background task; images/s too (the single
   server process is the bottleneck here, not the client).

Run: ``python benchmarks/throughput.py [--quick] [--profile]``; ``--quick`` scales every size
down for a smoke run (< ~60 s); ``--profile`` runs scenario 1 under cProfile and prints the
top functions (CPU figures of that run are then inflated). Writes
``benchmarks/results/throughput.json`` (``throughput-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import logging
import os
import pstats
import sys
import time
from typing import Any

import httpx
from _common import (
    CEILING_IMAGES_PER_S,
    CEILING_QPS,
    IMAGES_PER_REQUEST,
    JITTER,
    LATENCY,
    RssSampler,
    batches_of,
    check,
    client_for,
    client_key,
    fake_server,
    machine_info,
    mean,
    overrun_details,
    percentile,
    pin_client,
    print_table,
    send_delays,
    url_images,
    warm_up,
    window_overruns,
    write_results,
)
from cryptography.hazmat.primitives.asymmetric import rsa

from tupu_async import Hooks, RequestEvent
from tupu_async._limiter import UnlimitedLimiter
from tupu_async._signing import Signer
from tupu_async.testing import FakeServerProcess, max_arrivals_in_window

MB = 1024 * 1024

TARGET_EFFICIENCY = 0.98
TARGET_IMAGES_PER_REQUEST = 9.9
TARGET_CPU_US_PER_IMAGE = 60.0
TARGET_COALESCED_IMAGES_PER_REQUEST = 9.5
TARGET_RSS_GROWTH_MB = 50.0


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How many images each scenario uses."""

    main: int
    sdk: int
    naive: int
    callers: int
    lone_samples: int
    stream: int
    stream_warmup: int
    httpx_requests: int


FULL = Sizes(
    main=20_000,
    sdk=300,
    naive=2_000,
    callers=500,
    lone_samples=100,
    stream=1_000_000,
    stream_warmup=50_000,
    httpx_requests=300,
)
QUICK = Sizes(
    main=2_000, sdk=100, naive=2_000, callers=500, lone_samples=30, stream=50_000,
    stream_warmup=10_000, httpx_requests=100,
)  # fmt: skip


def sign_cost_seconds(key: rsa.RSAPrivateKey, calls: int = 300) -> float:
    """CPU seconds of one ``Signer.sign`` with ``key`` (best of three runs)."""
    signer = Signer("bench-secret", key)
    for _ in range(10):
        signer.sign()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(calls):
            signer.sign()
        best = min(best, (time.process_time() - started) / calls)
    return best


def server_view(stats: Any, secret_id: str) -> dict[str, Any]:
    """What the server counted: arrivals, the most in any 1 s window, 429s, packing."""
    arrivals = stats.arrivals_for(secret_id)
    return {
        "requests_arrived": len(arrivals),
        "max_arrivals_in_any_1s": stats.max_in_window(1.0, secret_id) if arrivals else 0,
        "max_accepted_in_any_1s": stats.max_accepted_in_window(1.0, secret_id) if arrivals else 0,
        "http_429": stats.http_429,
        "mean_images_per_request": stats.mean_images_per_request,
        "images_histogram": stats.images_histogram,
        "first_arrival": min(arrivals) if arrivals else None,
        "last_arrival": max(arrivals) if arrivals else None,
    }


# -- 1. recognize_many at the ceiling --------------------------------------------------------


async def bench_recognize_many(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, images: int, sign_cost: float,
    profile: bool,
) -> dict[str, Any]:  # fmt: skip
    await server.areset()
    latencies: list[float] = []
    starts: list[float] = []

    def on_request(event: RequestEvent) -> None:
        starts.append(time.monotonic())

    def on_response(event: RequestEvent) -> None:
        if event.error is None and event.elapsed is not None:
            latencies.append(event.elapsed)

    hooks = Hooks(on_request=on_request, on_response=on_response)
    profiler = cProfile.Profile() if profile else None
    async with client_for(server, key, hooks=hooks) as client:
        if profiler is not None:
            profiler.enable()
        cpu_started = time.process_time()
        times_started = os.times()
        started_mono = time.monotonic()
        started = time.perf_counter()
        results = await client.recognize_many(url_images(images))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        times_ended = os.times()
        if profiler is not None:
            profiler.disable()
        stats = client.stats
    server_stats = await server.astats()
    view = server_view(server_stats, server.secret_id)
    arrivals = server_stats.arrivals_for(server.secret_id)
    delays = send_delays(starts, arrivals)
    ok = sum(1 for r in results if r.ok)
    requests = stats.requests
    observed_latency = mean(latencies)
    floor_configured = (requests - 1) / CEILING_QPS + LATENCY
    floor_observed = (requests - 1) / CEILING_QPS + observed_latency
    span = (view["last_arrival"] or 0.0) - (view["first_arrival"] or 0.0)
    if profiler is not None:
        print("\ncProfile of scenario 1 (top 30 by internal time):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(30)
    return {
        "images": images,
        "images_ok": ok,
        "requests": requests,
        "retries": stats.retries,
        "client_throttles": stats.throttles,
        "wall_s": wall,
        "images_per_s": images / wall,
        "ratio_to_ceiling": images / wall / CEILING_IMAGES_PER_S,
        "floor_s_configured_latency": floor_configured,
        "floor_s_observed_latency": floor_observed,
        "efficiency_vs_floor": floor_configured / wall,
        "efficiency_vs_floor_observed_latency": floor_observed / wall,
        "observed_request_latency_mean_s": observed_latency,
        "observed_request_latency_p95_s": percentile(latencies, 0.95),
        "start_to_first_arrival_s": (view["first_arrival"] or started_mono) - started_mono,
        "arrivals_span_s": span,
        "arrival_rate_req_per_s": (view["requests_arrived"] - 1) / span if span > 0 else None,
        "last_arrival_to_end_s": started_mono + wall - (view["last_arrival"] or 0.0),
        "client_max_starts_in_any_1s": max_arrivals_in_window(starts, 1.0) if starts else 0,
        "client_max_starts_in_any_1_015s": max_arrivals_in_window(starts, 1.015) if starts else 0,
        "server_arrival_windows_over_50": window_overruns(arrivals, CEILING_QPS),
        "overrun_windows": overrun_details(arrivals, delays, started_mono),
        "send_delay_ms": {
            "p50": percentile(delays, 0.5) * 1e3,
            "p99": percentile(delays, 0.99) * 1e3,
            "max": max(delays, default=float("nan")) * 1e3,
            "note": "server arrival - client start (on_request hook), matched by rank",
        },
        "client_cpu_s": cpu,
        "client_cpu_us_per_image": cpu / images * 1e6,
        "client_cpu_user_s": times_ended.user - times_started.user,
        "client_cpu_system_s": times_ended.system - times_started.system,
        "rsa_sign_us_per_request": sign_cost * 1e6,
        "rsa_sign_share_of_cpu": sign_cost * requests / cpu if cpu > 0 else None,
        "client_cpu_us_per_image_excluding_signing": (cpu - sign_cost * requests) / images * 1e6,
        "profiled": profile,
        "server": view,
    }


async def bench_plain_httpx_cpu(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, requests: int
) -> dict[str, Any]:
    """CPU of a bare httpx loop at the same pace and concurrency as scenario 1.

    One task per request started every 1.015/50 s (the limiter's spacing): sign with the
    same key, POST the official SDK's form (x-www-form-urlencoded, 10 image URLs), read
    the body. No verification, decoding or regrouping: what HTTP + signing alone cost here.
    """
    await server.areset()
    signer = Signer(server.secret_id, key)
    url = f"{server.base_url}/v3/recognition/{server.secret_id}"
    batches = batches_of(url_images(requests * IMAGES_PER_REQUEST))
    statuses: dict[int, int] = {}
    spacing = 1.015 / CEILING_QPS
    async with httpx.AsyncClient(timeout=30.0) as http:

        async def one(batch: list[str]) -> None:
            signed = signer.sign()
            form = {
                "secretId": server.secret_id,
                "timestamp": signed.timestamp,
                "nonce": signed.nonce,
                "signature": signed.signature,
                "image": batch,
            }
            response = await http.post(url, data=form)
            await response.aread()
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        cpu_started = time.process_time()
        started = time.perf_counter()
        tasks = []
        for index, batch in enumerate(batches):
            tasks.append(asyncio.create_task(one(batch)))
            await asyncio.sleep(max(0.0, started + (index + 1) * spacing - time.perf_counter()))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return {
        "requests": requests,
        "statuses": statuses,
        "wall_s": wall,
        "client_cpu_us_per_request": cpu / requests * 1e6,
        "client_cpu_us_per_image": cpu / requests / IMAGES_PER_REQUEST * 1e6,
    }


async def wake_cost_seconds(wakes: int = 50) -> float:
    """CPU seconds charged per ``asyncio.sleep(0.02)`` of an idle event loop, on this machine.

    A calibration: on bare metal this is ~10-20 us; in a VM every block and wake-up can
    cost far more, and every request of a paced client sleeps and wakes a few times.
    """
    started = time.process_time()
    for _ in range(wakes):
        await asyncio.sleep(0.02)
    return (time.process_time() - started) / wakes


# -- 2. baselines ----------------------------------------------------------------------------


async def bench_sdk_pattern(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, images: int, full_size: int
) -> dict[str, Any]:
    """One request of 10 at a time, each awaited before the next: the official SDK's loop."""
    await server.areset()
    ok = 0
    async with client_for(server, key) as client:
        started = time.perf_counter()
        for batch in batches_of(url_images(images)):
            response = await client.recognize(batch)
            ok += sum(1 for r in response.images if r.ok)
        wall = time.perf_counter() - started
    view = server_view(await server.astats(), server.secret_id)
    rate = images / wall
    return {
        "images": images,
        "images_ok": ok,
        "wall_s": wall,
        "images_per_s": rate,
        "ratio_to_ceiling": rate / CEILING_IMAGES_PER_S,
        "extrapolated_to_images": full_size,
        "extrapolated_wall_s": full_size / rate,
        "extrapolation": "linear: sequential requests are latency-bound, so the rate is flat",
        "server": view,
    }


async def bench_naive_gather(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, images: int
) -> dict[str, Any]:
    """Every request at once with asyncio.gather, no limiter, no retries."""
    await server.areset()
    batches = batches_of(url_images(images))
    async with client_for(server, key, limiter=UnlimitedLimiter(), max_retries=0) as client:
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(client.recognize(batch) for batch in batches), return_exceptions=True
        )
        wall = time.perf_counter() - started
    errors: dict[str, int] = {}
    ok = 0
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            name = type(outcome).__name__
            errors[name] = errors.get(name, 0) + 1
        else:
            ok += sum(1 for r in outcome.images if r.ok)
    view = server_view(await server.astats(), server.secret_id)
    return {
        "images": images,
        "requests": len(batches),
        "images_ok": ok,
        "failed_requests": errors,
        "wall_s": wall,
        "ok_images_per_s": ok / wall,
        "ratio_to_ceiling": ok / wall / CEILING_IMAGES_PER_S,
        "server": view,
    }


# -- 3. recognize_one coalescing ----------------------------------------------------------------


async def bench_coalescing(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, callers: int
) -> dict[str, Any]:
    await server.areset()
    async with client_for(server, key) as client:

        async def one(url: str) -> tuple[float, bool]:
            started = time.perf_counter()
            result = await client.recognize_one(url)
            return time.perf_counter() - started, result.ok

        started = time.perf_counter()
        outcomes = await asyncio.gather(*(one(url) for url in url_images(callers)))
        wall = time.perf_counter() - started
        requests = client.stats.requests
    view = server_view(await server.astats(), server.secret_id)
    latencies = [latency for latency, _ in outcomes]
    return {
        "callers": callers,
        "images_ok": sum(1 for _, ok in outcomes if ok),
        "requests": requests,
        "mean_images_per_request": view["mean_images_per_request"],
        "latency_mean_s": mean(latencies),
        "latency_p50_s": percentile(latencies, 0.5),
        "latency_p95_s": percentile(latencies, 0.95),
        "latency_max_s": max(latencies),
        "wall_s": wall,
        "server": view,
    }


async def bench_lone_latency(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, samples: int
) -> dict[str, Any]:
    """A lone recognize_one vs a lone recognize([one]), interleaved, 30 ms apart."""
    await server.areset()
    direct: list[float] = []
    coalesced: list[float] = []
    urls = url_images(2 * samples + 2)
    async with client_for(server, key) as client:
        await client.recognize([next(urls)])  # open the connection first
        await client.recognize_one(next(urls))
        for _ in range(samples):
            await asyncio.sleep(0.03)
            started = time.perf_counter()
            await client.recognize([next(urls)])
            direct.append(time.perf_counter() - started)
            await asyncio.sleep(0.03)
            started = time.perf_counter()
            await client.recognize_one(next(urls))
            coalesced.append(time.perf_counter() - started)
        linger = client.batch_linger
    return {
        "samples": samples,
        "batch_linger_s": linger,
        "recognize_median_s": percentile(direct, 0.5),
        "recognize_mean_s": mean(direct),
        "recognize_one_median_s": percentile(coalesced, 0.5),
        "recognize_one_mean_s": mean(coalesced),
        "added_latency_median_s": percentile(coalesced, 0.5) - percentile(direct, 0.5),
        "added_latency_mean_s": mean(coalesced) - mean(direct),
    }


# -- 4. memory while streaming --------------------------------------------------------------------


async def bench_streaming_memory(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, images: int, warmup: int
) -> dict[str, Any]:
    await server.areset()
    seen = failed = 0
    warm_at = 0.0
    checkpoint = max(1, images // 10)
    trajectory: list[tuple[int, float]] = []
    async with (
        client_for(server, key, limiter=UnlimitedLimiter()) as client,
        RssSampler() as rss,
    ):
        started = time.perf_counter()
        async for result in client.iter_recognize(url_images(images)):
            seen += 1
            if not result.ok:
                failed += 1
            if seen == warmup:
                rss.mark_baseline()
                warm_at = time.perf_counter()
            if seen % checkpoint == 0:
                trajectory.append((seen, round(rss.rss() / MB, 1)))
        wall = time.perf_counter() - started
        requests = client.stats.requests
    baseline = rss.baseline if rss.baseline is not None else rss.start_rss
    growth = rss.peak_after_baseline - baseline
    after_warmup = wall - (warm_at - started)
    return {
        "images": images,
        "images_seen": seen,
        "images_failed": failed,
        "requests": requests,
        "warmup_images": warmup,
        "wall_s": wall,
        "images_per_s": seen / wall,
        "images_per_s_after_warmup": (seen - warmup) / after_warmup if after_warmup > 0 else None,
        "rss_start_mb": rss.start_rss / MB,
        "rss_baseline_after_warmup_mb": baseline / MB,
        "rss_peak_mb": rss.peak / MB,
        "rss_growth_after_warmup_mb": growth / MB,
        "rss_growth_from_start_mb": (rss.peak - rss.start_rss) / MB,
        "rss_samples": rss.samples,
        "rss_mb_by_images_seen": trajectory,
    }


# -- the run ---------------------------------------------------------------------------------------


async def run(sizes: Sizes, quick: bool, profile: bool) -> dict[str, Any]:
    key = client_key(2048)
    sign_cost = sign_cost_seconds(key)
    wake_cost = await wake_cost_seconds()
    print(
        f"RSA-2048 Signer.sign: {sign_cost * 1e6:.0f} us CPU per request; an idle "
        f"asyncio.sleep(0.02) costs {wake_cost * 1e6:.0f} us CPU here"
    )
    with (
        fake_server(key, latency=LATENCY, jitter=JITTER) as slow,
        fake_server(key, qps_limit=None) as fast,
    ):
        print(f"slow fake server {slow.base_url} (pid {slow.pid}); fast one {fast.base_url}")
        await warm_up(slow, key)
        await warm_up(fast, key)
        await asyncio.sleep(1.1)
        print(f"1. recognize_many x {sizes.main:,} ...", flush=True)
        main = await bench_recognize_many(slow, key, sizes.main, sign_cost, profile)
        await asyncio.sleep(1.1)
        plain = await bench_plain_httpx_cpu(slow, key, sizes.httpx_requests)
        await asyncio.sleep(1.1)
        print(f"2. official-SDK pattern x {sizes.sdk:,}; naive gather x {sizes.naive:,} ...")
        sdk = await bench_sdk_pattern(slow, key, sizes.sdk, sizes.main)
        await asyncio.sleep(1.1)  # let the server's window of earlier traffic drain
        naive = await bench_naive_gather(slow, key, sizes.naive)
        await asyncio.sleep(1.1)
        print(f"3. {sizes.callers} concurrent recognize_one callers; lone-caller latency ...")
        coalescing = await bench_coalescing(slow, key, sizes.callers)
        lone = await bench_lone_latency(fast, key, sizes.lone_samples)
        print(f"4. streaming {sizes.stream:,} images through iter_recognize ...", flush=True)
        memory = await bench_streaming_memory(fast, key, sizes.stream, sizes.stream_warmup)
    return {
        "benchmark": "throughput",
        "mode": "quick" if quick else "full",
        "environment": machine_info(),
        "setup": {
            "transport": "loopback HTTP, fake server in its own process",
            "client_key_bits": 2048,
            "server_latency_s": LATENCY,
            "server_jitter_s": JITTER,
            "server_qps_limit": CEILING_QPS,
            "ceiling_images_per_s": CEILING_IMAGES_PER_S,
            "floor": "(requests - 1) / 50 s + configured mean latency 0.3 s",
        },
        "sizes": sizes.__dict__,
        "calibration": {
            "rsa2048_sign_us": sign_cost * 1e6,
            "idle_asyncio_sleep_20ms_cpu_us": wake_cost * 1e6,
        },
        "recognize_many": main,
        "plain_httpx_cpu_baseline": plain,
        "sdk_pattern": sdk,
        "naive_gather": naive,
        "recognize_one_concurrent": coalescing,
        "recognize_one_lone": lone,
        "streaming_memory": memory,
    }


def report(data: dict[str, Any]) -> None:
    main, sdk, naive = data["recognize_many"], data["sdk_pattern"], data["naive_gather"]
    plain, calibration = data["plain_httpx_cpu_baseline"], data["calibration"]
    co, lone = data["recognize_one_concurrent"], data["recognize_one_lone"]
    mem = data["streaming_memory"]
    print_table(
        f"Throughput ({data['mode']} mode), loopback, server {LATENCY * 1000:.0f} +- "
        f"{JITTER * 1000:.0f} ms, 50-QPS window; ceiling {CEILING_IMAGES_PER_S:.0f} images/s",
        ["scenario", "images", "ok", "wall s", "ok img/s", "x ceiling", "max/1s", "429s",
         "img/req"],
        [
            ["tupu_async recognize_many", main["images"], main["images_ok"], main["wall_s"],
             main["images_ok"] / main["wall_s"], main["ratio_to_ceiling"],
             main["server"]["max_arrivals_in_any_1s"], main["server"]["http_429"],
             main["server"]["mean_images_per_request"]],
            ["official-SDK loop (sequential)", sdk["images"], sdk["images_ok"], sdk["wall_s"],
             sdk["images_per_s"], sdk["ratio_to_ceiling"],
             sdk["server"]["max_arrivals_in_any_1s"], sdk["server"]["http_429"],
             sdk["server"]["mean_images_per_request"]],
            ["naive gather, no limiter", naive["images"], naive["images_ok"], naive["wall_s"],
             naive["ok_images_per_s"], naive["ratio_to_ceiling"],
             naive["server"]["max_arrivals_in_any_1s"], naive["server"]["http_429"],
             naive["server"]["mean_images_per_request"]],
            [f"{co['callers']} recognize_one callers", co["callers"], co["images_ok"],
             co["wall_s"], co["images_ok"] / co["wall_s"],
             co["images_ok"] / co["wall_s"] / CEILING_IMAGES_PER_S,
             co["server"]["max_arrivals_in_any_1s"], co["server"]["http_429"],
             co["mean_images_per_request"]],
        ],
    )  # fmt: skip
    print(
        f"  official-SDK loop: {sdk['images']} images measured, extrapolated linearly to "
        f"{sdk['extrapolated_to_images']:,}: {sdk['extrapolated_wall_s']:,.0f} s, "
        f"{main['images_per_s'] / sdk['images_per_s']:.1f}x slower than recognize_many"
    )
    print(
        f"  naive gather: failed requests {naive['failed_requests']}; max accepted in 1 s "
        f"{naive['server']['max_accepted_in_any_1s']}"
    )
    delay = main["send_delay_ms"]
    sign_share = main["rsa_sign_share_of_cpu"] or 0.0
    print_table(
        "Checks",
        ["measure", "measured", "target", "met"],
        [
            ["recognize_many efficiency vs floor (0.3 s latency)",
             f"{main['efficiency_vs_floor']:.3f}", ">= 0.98",
             check(main["efficiency_vs_floor"], TARGET_EFFICIENCY)],
            [f"  floor {main['floor_s_configured_latency']:.2f} s; with observed mean latency "
             f"{main['observed_request_latency_mean_s'] * 1000:.0f} ms",
             f"{main['efficiency_vs_floor_observed_latency']:.3f}", "-", "-"],
            ["  arrival rate while saturated (req/s; limiter pace 49.26)",
             fmt_opt(main["arrival_rate_req_per_s"]), "-", "-"],
            ["  wall = to 1st arrival + arrivals span + last answer (s)",
             f"{main['start_to_first_arrival_s']:.2f} + "
             f"{main['arrivals_span_s']:.2f} + {main['last_arrival_to_end_s']:.2f}", "-", "-"],
            ["recognize_many images/s / 500", f"{main['ratio_to_ceiling']:.3f}", "-", "-"],
            ["max requests in any 1 s (server, at arrival)",
             str(main["server"]["max_arrivals_in_any_1s"]), "<= 50",
             check(main["server"]["max_arrivals_in_any_1s"], CEILING_QPS, at_most=True)],
            ["  client starts: max in any 1 s / in any 1.015 s",
             f"{main['client_max_starts_in_any_1s']} / "
             f"{main['client_max_starts_in_any_1_015s']}", "-", "-"],
            ["  send delay to server arrival p50 / p99 / max (ms)",
             f"{delay['p50']:.1f} / {delay['p99']:.1f} / {delay['max']:.1f}", "-", "-"],
            ["HTTP 429s", str(main["server"]["http_429"]), "0",
             main["server"]["http_429"] == 0],
            ["mean images per request", f"{main['server']['mean_images_per_request']:.3f}",
             ">= 9.9",
             check(main["server"]["mean_images_per_request"], TARGET_IMAGES_PER_REQUEST)],
            ["client CPU per image (us, RSA-2048)", f"{main['client_cpu_us_per_image']:.1f}",
             "<= 60", check(main["client_cpu_us_per_image"], TARGET_CPU_US_PER_IMAGE,
                            at_most=True)],
            ["  of which RSA signing",
             f"{sign_share * 100:.0f} % ({main['rsa_sign_us_per_request']:.0f} us/req)",
             "-", "-"],
            ["  user / system CPU (s)",
             f"{main['client_cpu_user_s']:.2f} / {main['client_cpu_system_s']:.2f}", "-", "-"],
            ["  excluding signing (us/image)",
             f"{main['client_cpu_us_per_image_excluding_signing']:.1f}", "-", "-"],
            ["  plain httpx + signing, same pace (us/image)",
             f"{plain['client_cpu_us_per_image']:.1f}", "-", "-"],
            ["  tupu_async / plain httpx CPU",
             f"{main['client_cpu_us_per_image'] / plain['client_cpu_us_per_image']:.2f}x",
             "-", "-"],
            ["  idle asyncio.sleep(0.02) CPU here (us)",
             f"{calibration['idle_asyncio_sleep_20ms_cpu_us']:.0f}", "-", "-"],
            [f"{co['callers']} recognize_one: mean images per request",
             f"{co['mean_images_per_request']:.2f}", ">= 9.5",
             check(co["mean_images_per_request"], TARGET_COALESCED_IMAGES_PER_REQUEST)],
            [f"{co['callers']} recognize_one: latency mean / p95 (s)",
             f"{co['latency_mean_s']:.3f} / {co['latency_p95_s']:.3f}", "-", "-"],
            ["lone recognize_one - lone recognize (ms, median)",
             f"{lone['added_latency_median_s'] * 1000:.1f}",
             f"~linger {lone['batch_linger_s'] * 1000:.0f}", "-"],
            ["  lone recognize / recognize_one median (ms)",
             f"{lone['recognize_median_s'] * 1000:.1f} / "
             f"{lone['recognize_one_median_s'] * 1000:.1f}", "-", "-"],
            [f"iter_recognize {mem['images']:,} images: RSS growth after warm-up (MB)",
             f"{mem['rss_growth_after_warmup_mb']:.1f}", "< 50",
             mem["rss_growth_after_warmup_mb"] < TARGET_RSS_GROWTH_MB],
            ["  RSS start / after warm-up / peak (MB)",
             f"{mem['rss_start_mb']:.0f} / {mem['rss_baseline_after_warmup_mb']:.0f} / "
             f"{mem['rss_peak_mb']:.0f}", "-", "-"],
            ["  streaming images/s (no limits)", f"{mem['images_per_s']:,.0f}", "-", "-"],
        ],
    )  # fmt: skip


def fmt_opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes (smoke run)")
    parser.add_argument("--profile", action="store_true", help="cProfile scenario 1")
    parser.add_argument(
        "--stream-images", type=int, default=None, help="override the size of scenario 4"
    )
    args = parser.parse_args()
    # The naive baseline draws ~100 throttle warnings; the tables count them instead.
    logging.getLogger("tupu_async").setLevel(logging.ERROR)
    sizes = QUICK if args.quick else FULL
    if args.stream_images:
        warmup = min(sizes.stream_warmup, args.stream_images // 5)
        sizes = dataclasses.replace(sizes, stream=args.stream_images, stream_warmup=warmup)
    pinning = pin_client()
    data = asyncio.run(run(sizes, args.quick, args.profile))
    data["pinning"] = pinning
    path = write_results("throughput-quick" if args.quick else "throughput", data)
    report(data)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
