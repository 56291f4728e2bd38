"""Multi-process benchmark (issue 6): 4 worker processes sharing ONE secret id.

Four worker processes (``multiprocessing``, spawn) each run an ``AsyncTupuClient`` for the
SAME secret id against ONE fake Tupu server process over loopback HTTP; the server answers
in 300 +- 100 ms and enforces the API's 50-QPS sliding window per secret id, counting at
arrival. Each worker runs ``recognize_many`` over its own share of URL images. All workers
are started first, then released at one moment (a start time on the shared monotonic
clock); the combined wall time runs from the first worker's start to the last one's end.

Side by side, in one run:

- ``redis``: every worker uses ``RedisLimiter(url, key=f"tupu:{secret_id}")`` on one real
  ``redis-server`` (started here on a free port; skipped, with a message, when the binary
  is missing). The shared budget should give ~the ceiling with no window overrun.
- ``local-split``: every worker uses the local limiter at qps = 50 / 4 (a static split;
  the best a process can do alone when it knows how many siblings it has).
- ``local-50``: every worker uses the default local limiter at qps = 50, as if it owned
  the budget: 4x the allowed rate, answered with 429s.

Reported per scenario: combined images/s of images that succeeded and its ratio to the
500 images/s ceiling (target >= 0.95 for ``redis``); efficiency against the floor
``(requests - 1) / 50 s + 0.3 s``; the most requests the server saw arrive in any 1 s
window (must be <= 50), the windows over 50 and the 429s; the most request starts the
workers made together in any 1 s (their on_request hooks, one clock); retries, failed
images, and each worker's own images/s (fairness).

Run: ``python benchmarks/multiprocess.py [--quick]`` (writes
``benchmarks/results/multiprocess.json``, or ``multiprocess-quick.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import multiprocessing.queues
import time
import traceback
from typing import Any

from _common import (
    CEILING_IMAGES_PER_S,
    CEILING_QPS,
    IMAGES_PER_REQUEST,
    JITTER,
    LATENCY,
    check,
    client_key,
    fake_server,
    machine_info,
    overrun_details,
    percentile,
    print_table,
    private_pem,
    send_delays,
    url_images,
    warm_up,
    window_overruns,
    write_results,
)

from tupu_async import AsyncTupuClient, Hooks, RequestEvent
from tupu_async._window_schedule import DEFAULT_MARGIN
from tupu_async.testing import FakeServerProcess, max_arrivals_in_window
from tupu_async.testing._redis import RedisServer, redis_server_binary

WORKERS = 4
FULL_PER_WORKER = 2_500
QUICK_PER_WORKER = 500
TARGET_RATIO = 0.95
#: Seconds between releasing the workers and their common start time.
START_DELAY = 0.5
WORKER_TIMEOUT = 900.0


# -- the worker process ------------------------------------------------------------------


class _LateSlotLog(logging.Handler):
    """Collects RedisLimiter's debug records of slots given up because the caller woke up
    late: (monotonic time, milliseconds late). Only a diagnostic: the message may change."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.late: list[tuple[float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "after the slot" in str(record.msg) and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            self.late.append((time.monotonic(), float(args[0])))  # type: ignore[arg-type]


async def _probe_wakes(lateness: list[float], period: float = 0.05) -> None:
    """Sleep ``period`` again and again, recording how late each wake-up is."""
    while True:
        planned = time.monotonic() + period
        await asyncio.sleep(period)
        lateness.append(time.monotonic() - planned)


async def _work(config: dict[str, Any], go: multiprocessing.queues.Queue[float]) -> dict[str, Any]:
    starts: list[float] = []
    lateness: list[float] = []

    def on_request(event: RequestEvent) -> None:
        starts.append(time.monotonic())

    late_log = _LateSlotLog()
    limiter: Any = None
    if config["mode"] == "redis":
        tupu_logger = logging.getLogger("tupu_async")
        tupu_logger.setLevel(logging.DEBUG)
        tupu_logger.propagate = False
        tupu_logger.addHandler(late_log)
        from tupu_async import RedisLimiter

        limiter = RedisLimiter(
            config["redis_url"], key=f"tupu:{config['secret_id']}", qps=CEILING_QPS
        )
    client = AsyncTupuClient(
        config["secret_id"],
        config["private_key_pem"],
        base_url=config["base_url"],
        tupu_public_key=config["server_public_key_pem"],
        qps=config["qps"],
        limiter=limiter,
        hooks=Hooks(on_request=on_request),
    )
    async with client:
        config["ready"].put(config["index"])
        start_at = await asyncio.to_thread(go.get)
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        probe = asyncio.create_task(_probe_wakes(lateness))
        started = time.monotonic()
        cpu_started = time.process_time()
        results = await client.recognize_many(
            url_images(config["images"], start=config["index"] * config["images"])
        )
        ended = time.monotonic()
        cpu = time.process_time() - cpu_started
        probe.cancel()
        stats = client.stats
    return {
        "index": config["index"],
        "started": started,
        "ended": ended,
        "images": len(results),
        "images_ok": sum(1 for r in results if r.ok),
        "requests": stats.requests,
        "retries": stats.retries,
        "throttles": stats.throttles,
        "failed_requests": stats.failures,
        "cpu_s": cpu,
        "starts": starts,
        "wake_lateness": lateness,
        "late_slots": [(t - started, ms) for t, ms in late_log.late if t >= started],
    }


def worker_main(
    config: dict[str, Any],
    go: multiprocessing.queues.Queue[float],
    results: multiprocessing.queues.Queue[dict[str, Any]],
) -> None:
    """A worker process: one client, released by the parent, reports one dict."""
    logging.getLogger("tupu_async").setLevel(logging.ERROR)  # 429 warnings are counted
    try:
        results.put(asyncio.run(_work(config, go)))
    except BaseException:
        results.put({"index": config["index"], "error": traceback.format_exc()})
        config["ready"].put(config["index"])  # never leave the parent waiting


# -- the parent ----------------------------------------------------------------------------


def run_scenario(
    name: str,
    server: FakeServerProcess,
    key_pem: bytes,
    *,
    qps: float,
    per_worker: int,
    redis: RedisServer | None = None,
) -> dict[str, Any]:
    """Start the workers, release them at one moment, collect and combine their reports."""
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.queues.Queue[int] = context.Queue()
    go: multiprocessing.queues.Queue[float] = context.Queue()
    results: multiprocessing.queues.Queue[dict[str, Any]] = context.Queue()
    server.reset()
    processes = []
    for index in range(WORKERS):
        config = {
            "mode": "redis" if redis else "local",
            "index": index,
            "secret_id": server.secret_id,
            "private_key_pem": key_pem,
            "base_url": server.base_url,
            "server_public_key_pem": server.public_key_pem,
            "redis_url": redis.url if redis else None,
            "qps": qps,
            "images": per_worker,
            "ready": ready,
        }
        process = context.Process(target=worker_main, args=(config, go, results), daemon=True)
        process.start()
        processes.append(process)
    for _ in processes:
        ready.get(timeout=120)
    start_at = time.monotonic() + START_DELAY
    for _ in processes:
        go.put(start_at)
    reports = [results.get(timeout=WORKER_TIMEOUT) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError(f"scenario {name}: a worker failed:\n" + "\n".join(errors))
    reports.sort(key=lambda r: r["index"])
    stats = server.stats()
    combined = combine(name, qps, per_worker, start_at, reports, stats, server.secret_id)
    if redis is not None:
        # One script call books several slots, so calls no longer count slots: slots given
        # up late are in "late_slots_given_up" (the limiter's debug log).
        calls = redis.command_calls()
        scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
        combined["redis_script_calls"] = scripts
        combined["redis_script_calls_per_request"] = scripts / max(1, combined["requests"])
    return combined


def combine(
    name: str,
    qps: float,
    per_worker: int,
    start_at: float,
    reports: list[dict[str, Any]],
    stats: Any,
    secret_id: str,
) -> dict[str, Any]:
    first = min(r["started"] for r in reports)
    last = max(r["ended"] for r in reports)
    wall = last - first
    images = sum(r["images"] for r in reports)
    ok = sum(r["images_ok"] for r in reports)
    starts = [t for r in reports for t in r["starts"]]
    arrivals = stats.arrivals_for(secret_id)
    delays = send_delays(starts, arrivals)
    lateness = [t for r in reports for t in r["wake_lateness"]]
    late_slots = [item for r in reports for item in r["late_slots"]]
    late_tolerance = DEFAULT_MARGIN / 2
    needed = -(-images // IMAGES_PER_REQUEST)
    floor = (needed - 1) / CEILING_QPS + LATENCY
    return {
        "scenario": name,
        "workers": len(reports),
        "qps_per_worker": qps,
        "images_per_worker": per_worker,
        "images": images,
        "images_ok": ok,
        "images_failed": images - ok,
        "release_lag_ms": (first - start_at) * 1e3,
        "start_spread_ms": (max(r["started"] for r in reports) - first) * 1e3,
        "wall_s": wall,
        "ok_images_per_s": ok / wall,
        "ratio_to_ceiling": ok / wall / CEILING_IMAGES_PER_S,
        "floor_s": floor,
        "efficiency_vs_floor": floor / wall if ok == images else None,
        "requests": sum(r["requests"] for r in reports),
        "retries": sum(r["retries"] for r in reports),
        "client_throttles": sum(r["throttles"] for r in reports),
        "failed_requests": sum(r["failed_requests"] for r in reports),
        "client_cpu_us_per_image": sum(r["cpu_s"] for r in reports) / images * 1e6,
        "client_max_starts_in_any_1s": max_arrivals_in_window(starts, 1.0) if starts else 0,
        "client_max_starts_in_any_1_015s": max_arrivals_in_window(starts, 1.015) if starts else 0,
        "wake_lateness_ms": {
            "probe": "a task in each worker sleeping 50 ms in a loop during the run",
            "samples": len(lateness),
            "p50": percentile(lateness, 0.5) * 1e3,
            "p99": percentile(lateness, 0.99) * 1e3,
            "max": max(lateness, default=float("nan")) * 1e3,
            "share_over_half_margin": (
                sum(1 for t in lateness if t > late_tolerance) / len(lateness) if lateness else 0.0
            ),
        },
        "late_slots_given_up": {
            "source": "RedisLimiter debug log 'woke N ms after the slot' in each worker",
            "count": len(late_slots),
            "in_first_second": sum(1 for at, _ in late_slots if at < 1.0),
            "late_ms_p50": percentile([ms for _, ms in late_slots], 0.5),
            "late_ms_max": max((ms for _, ms in late_slots), default=float("nan")),
        },
        "send_delay_ms": {
            "p50": percentile(delays, 0.5) * 1e3,
            "p99": percentile(delays, 0.99) * 1e3,
            "max": max(delays, default=float("nan")) * 1e3,
        },
        "server": {
            "requests_arrived": len(arrivals),
            "max_arrivals_in_any_1s": stats.max_in_window(1.0, secret_id) if arrivals else 0,
            "max_accepted_in_any_1s": (
                stats.max_accepted_in_window(1.0, secret_id) if arrivals else 0
            ),
            "arrival_windows_over_50": window_overruns(arrivals, CEILING_QPS),
            "overrun_windows": overrun_details(arrivals, delays, first),
            "http_429": stats.http_429,
            "mean_images_per_request": stats.mean_images_per_request,
        },
        "per_worker": [
            {
                "index": r["index"],
                "wall_s": r["ended"] - r["started"],
                "images_ok": r["images_ok"],
                "ok_images_per_s": r["images_ok"] / (r["ended"] - r["started"]),
                "requests": r["requests"],
                "throttles": r["throttles"],
            }
            for r in reports
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="4 processes sharing one secret id")
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes (smoke run)")
    args = parser.parse_args()
    per_worker = QUICK_PER_WORKER if args.quick else FULL_PER_WORKER
    key = client_key(2048)
    key_pem = private_pem(key)
    scenarios: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    with fake_server(key, latency=LATENCY, jitter=JITTER) as server:
        asyncio.run(warm_up(server, key))
        time.sleep(1.1)
        if redis_server_binary() is None:
            skipped["redis"] = "redis-server is not installed (apt-get install redis-server)"
            print(f"SKIPPING the redis scenario: {skipped['redis']}")
        else:
            with RedisServer() as redis:
                print(f"redis: {redis.version()} on {redis.url}")
                print(f"redis: {WORKERS} x {per_worker:,} images, RedisLimiter ...", flush=True)
                scenarios.append(
                    run_scenario(
                        "redis", server, key_pem, qps=50.0, per_worker=per_worker,
                        redis=redis,
                    )
                )  # fmt: skip
            time.sleep(1.1)
        split = CEILING_QPS / WORKERS
        print(f"local-split: {WORKERS} x {per_worker:,} images, local qps={split:g} ...")
        scenarios.append(
            run_scenario("local-split", server, key_pem, qps=split, per_worker=per_worker)
        )
        time.sleep(1.1)
        print(f"local-50: {WORKERS} x {per_worker:,} images, local qps=50 each ...", flush=True)
        scenarios.append(
            run_scenario("local-50", server, key_pem, qps=float(CEILING_QPS), per_worker=per_worker)
        )
    data = {
        "benchmark": "multiprocess",
        "mode": "quick" if args.quick else "full",
        "environment": machine_info(),
        "setup": {
            "transport": "loopback HTTP, one fake server process, spawn-started workers",
            "workers": WORKERS,
            "client_key_bits": 2048,
            "server_latency_s": LATENCY,
            "server_jitter_s": JITTER,
            "server_qps_limit": CEILING_QPS,
            "ceiling_images_per_s": CEILING_IMAGES_PER_S,
            "floor": "(ceil(images / 10) - 1) / 50 s + configured mean latency 0.3 s",
        },
        "skipped": skipped,
        "scenarios": {s["scenario"]: s for s in scenarios},
    }
    path = write_results("multiprocess-quick" if args.quick else "multiprocess", data)
    report(data)
    print(f"\nresults: {path}")


def report(data: dict[str, Any]) -> None:
    rows = []
    for s in data["scenarios"].values():
        server = s["server"]
        rows.append([
            f"{s['scenario']} (qps {s['qps_per_worker']:g} each)", s["images"], s["images_ok"],
            s["wall_s"], s["ok_images_per_s"], s["ratio_to_ceiling"],
            "-" if s["efficiency_vs_floor"] is None else f"{s['efficiency_vs_floor']:.3f}",
            server["max_arrivals_in_any_1s"], server["arrival_windows_over_50"],
            server["http_429"], s["retries"],
        ])  # fmt: skip
    print_table(
        f"{WORKERS} processes, one secret id, loopback; server {LATENCY * 1000:.0f} +- "
        f"{JITTER * 1000:.0f} ms, 50-QPS window; ceiling {CEILING_IMAGES_PER_S:.0f} images/s",
        ["scenario", "images", "ok", "wall s", "ok img/s", "x ceiling", "vs floor", "max/1s",
         ">50 wins", "429s", "retries"],
        rows,
    )  # fmt: skip
    checks = []
    redis = data["scenarios"].get("redis")
    if redis is not None:
        checks += [
            ["redis: combined images/s / 500", f"{redis['ratio_to_ceiling']:.3f}", ">= 0.95",
             check(redis["ratio_to_ceiling"], TARGET_RATIO)],
            ["redis: max requests in any 1 s (server, at arrival)",
             str(redis["server"]["max_arrivals_in_any_1s"]), "<= 50",
             check(redis["server"]["max_arrivals_in_any_1s"], CEILING_QPS, at_most=True)],
            ["redis: HTTP 429s", str(redis["server"]["http_429"]), "0",
             redis["server"]["http_429"] == 0],
            ["redis: workers' starts, max in any 1 s / 1.015 s",
             f"{redis['client_max_starts_in_any_1s']} / "
             f"{redis['client_max_starts_in_any_1_015s']}", "-", "-"],
            ["redis: send delay p50 / p99 / max (ms)",
             "{p50:.1f} / {p99:.1f} / {max:.1f}".format(**redis["send_delay_ms"]), "-", "-"],
            ["redis: wake-up lateness p50 / p99 / max (ms)",
             "{p50:.1f} / {p99:.1f} / {max:.1f}".format(**redis["wake_lateness_ms"]), "-", "-"],
            ["redis: share of wake-ups later than margin/2 (7.5 ms)",
             f"{redis['wake_lateness_ms']['share_over_half_margin'] * 100:.1f} %", "-", "-"],
            ["redis: script calls per request (each books several slots)",
             f"{redis['redis_script_calls_per_request']:.2f}", "-", "-"],
            ["redis: slots given up late (debug log): count, in 1st s, median ms late",
             "{count} , {in_first_second} , {late_ms_p50:.1f}".format(
                 **redis["late_slots_given_up"]), "-", "-"],
            ["redis: send delays (ms) of first / last request of each window over 50",
             ", ".join(f"{w['first_send_delay_ms']:.0f}/{w['last_send_delay_ms']:.0f}"
                       for w in redis["server"]["overrun_windows"]) or "-", "-", "-"],
            ["redis: per-worker images/s",
             " ".join(f"{w['ok_images_per_s']:.0f}" for w in redis["per_worker"]), "-", "-"],
            ["redis: start spread across workers (ms)", f"{redis['start_spread_ms']:.1f}",
             "-", "-"],
        ]  # fmt: skip
    else:
        checks.append(["redis", f"skipped: {data['skipped'].get('redis')}", "-", "-"])
    for name in ("local-split", "local-50"):
        s = data["scenarios"][name]
        checks.append([
            f"{name}: images/s / 500; failed images",
            f"{s['ratio_to_ceiling']:.3f}; {s['images_failed']}", "-", "-",
        ])  # fmt: skip
    print_table("Checks", ["measure", "measured", "target", "met"], checks)


if __name__ == "__main__":
    main()
