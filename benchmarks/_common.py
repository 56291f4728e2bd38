"""Shared helpers of the loopback benchmarks (``throughput.py``, ``multiprocess.py``).

Holds: the API ceiling the results are divided by, the client key (RSA-2048, the size the
CPU targets assume), synthetic URL inputs, the fake server in its own process, a throwaway
``redis-server``, an RSS sampler, small statistics, the machine description written with
every result, the results JSON writer and the printed tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import platform
import sys
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tupu_async import AsyncTupuClient
from tupu_async.testing import FakeServerProcess, spawn_fake_server, split_cores

RESULTS = pathlib.Path(__file__).parent / "results"

#: The API's limits per secret id: 50 requests in any second, 10 images per request.
CEILING_QPS = 50
IMAGES_PER_REQUEST = 10
CEILING_IMAGES_PER_S = float(CEILING_QPS * IMAGES_PER_REQUEST)

SECRET_ID = "bench-secret"
#: The slow server of the issue: 300 ms +- 100 ms per answer (uniform), 50-QPS window.
LATENCY = 0.3
JITTER = 0.1


def client_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh client key; 2048 bits by default, as the issue's CPU target assumes."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM, to hand to another process."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def url_images(
    count: int, start: int = 0, prefix: str = "https://img.example.com/b"
) -> Iterator[str]:
    """``count`` distinct plain image URLs (none holds a fake-server magic substring)."""
    for number in range(start, start + count):
        yield f"{prefix}/{number:07d}.jpg"


def fake_server(
    key: rsa.RSAPrivateKey,
    *,
    latency: float = 0.0,
    jitter: float = 0.0,
    qps_limit: float | None = float(CEILING_QPS),
    secret_id: str = SECRET_ID,
) -> FakeServerProcess:
    """A started fake Tupu server in its own process, accepting ``key`` for ``secret_id``.

    It runs on a core of its own (the last one), as the real service has hardware of its
    own: see :func:`pin_client`.
    """
    cores = split_cores()
    return spawn_fake_server(
        secret_id=secret_id,
        public_key=key.public_key(),
        latency=latency,
        latency_jitter=jitter,
        qps_limit=qps_limit,
        cpus=cores[1] if cores else None,
    )


def pin_client() -> str:
    """Keep this (client) process off the fake server's core; say what was done."""
    cores = split_cores()
    if cores is None:
        return "not pinned (one core, or no CPU affinity on this system)"
    os.sched_setaffinity(0, cores[0])
    return f"client on cores {sorted(cores[0])}, fake server on core {sorted(cores[1])}"


def client_for(
    server: FakeServerProcess, key: rsa.RSAPrivateKey | bytes, **options: Any
) -> AsyncTupuClient:
    """A client of ``server`` (its base URL and response-signing key), other options as given."""
    return AsyncTupuClient(
        server.secret_id,
        key,
        base_url=server.base_url,
        tupu_public_key=server.public_key_pem,
        **options,
    )


def batches_of(urls: Iterable[str], size: int = IMAGES_PER_REQUEST) -> list[list[str]]:
    items = list(urls)
    return [items[i : i + size] for i in range(0, len(items), size)]


async def warm_up(server: FakeServerProcess, key: rsa.RSAPrivateKey) -> None:
    """A few requests so the fake server's own first-request costs (imports, code paths)
    do not delay the arrivals it records; then fresh statistics and windows."""
    async with client_for(server, key) as client:
        for batch in batches_of(url_images(30)):
            await client.recognize(batch)
        await client.recognize_one("https://img.example.com/warm.jpg")
    await server.areset()


# -- statistics ----------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def window_overruns(times: Sequence[float], limit: int, window: float = 1.0) -> int:
    """How many of ``times`` close a trailing window ``(t - window, t]`` holding > ``limit``."""
    ordered = sorted(times)
    overruns = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        if end - start + 1 > limit:
            overruns += 1
    return overruns


def send_delays(starts: Sequence[float], arrivals: Sequence[float]) -> list[float]:
    """Server arrival minus client start, matching the i-th earliest of each (same clock).

    Requests leave in the order they were granted (paced ~20 ms apart, while a send takes
    a few ms), so matching by rank pairs each request with its own arrival.
    """
    return [a - s for s, a in zip(sorted(starts), sorted(arrivals), strict=False)]


def overrun_details(
    arrivals: list[float], delays: list[float], started: float, limit: int = CEILING_QPS
) -> list[dict[str, float]]:
    """For each 1 s window of arrivals over ``limit`` (at most 10): where it is and the send
    delays of its first and last request, to tell send-side jitter from limiter errors."""
    ordered = sorted(arrivals)
    found: list[dict[str, float]] = []
    first = 0
    for last, t in enumerate(ordered):
        while ordered[first] <= t - 1.0:
            first += 1
        if last - first + 1 > limit and len(found) < 10:
            found.append({
                "first_request": first,
                "last_request": last,
                "at_s": t - started,
                "span_ms": (t - ordered[first]) * 1e3,
                "first_send_delay_ms": delays[first] * 1e3 if first < len(delays) else -1,
                "last_send_delay_ms": delays[last] * 1e3 if last < len(delays) else -1,
            })  # fmt: skip
    return found


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in [0, 1]); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- the machine and the results -----------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (load average included: other work skews them)."""
    model = ""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "event_loop": "asyncio (default policy)",
    }


def write_results(name: str, data: dict[str, Any]) -> pathlib.Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def fmt(value: object, digits: int = 2) -> str:
    """A table cell: floats rounded, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print an aligned table: the first column left-aligned, the others right-aligned."""
    cells = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    print(f"\n{title}")

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [cell.rjust(widths[i + 1]) for i, cell in enumerate(row[1:])]
        return "  ".join(parts)

    print(line(list(headers)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def check(measured: float, target: float, *, at_most: bool = False) -> bool:
    """Whether ``measured`` meets ``target`` (>= by default, <= with ``at_most``)."""
    return measured <= target if at_most else measured >= target


# -- RSS -----------------------------------------------------------------------------------


class RssSampler:
    """Samples this process's resident set size from a background asyncio task.

    :meth:`mark_baseline` records the RSS at that moment (after a warm-up); ``peak`` is
    the largest sample since the sampler started, ``peak_after_baseline`` the largest one
    taken after the baseline was marked.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.start_rss = self.rss()
        self.peak = self.start_rss
        self.baseline: int | None = None
        self.peak_after_baseline = 0
        self.samples = 0

    def rss(self) -> int:
        rss: int = self._process.memory_info().rss
        return rss

    def _sample(self) -> None:
        rss = self.rss()
        self.samples += 1
        self.peak = max(self.peak, rss)
        if self.baseline is not None:
            self.peak_after_baseline = max(self.peak_after_baseline, rss)

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self._interval)

    def mark_baseline(self) -> None:
        self.baseline = self.rss()
        self.peak_after_baseline = self.baseline

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()


# -- redis-server --------------------------------------------------------------------------
