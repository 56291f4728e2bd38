"""Hunting the lone HTTP 429 of scenario 1 (``throughput.py``): repeated rounds, each
dumping the requests around any 1 s window of gate times over the ceiling.

For every request: the client's ``on_request`` time, the server's arrival and gate time
(matched by rank), so a window over 50 can be blamed on the client (starts too close)
or on the fake (an arrival stamped late).

The recording limiter also logs each permit and when its request was on the wire
(the ``SentHook`` time), which tells a client lag from a late stamp at the fake.

Run: ``python benchmarks/burst_429.py [--rounds 10] [--images 20000] [--dump DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from _common import (
    CEILING_QPS,
    client_for,
    client_key,
    fake_server,
    pin_client,
    url_images,
    warm_up,
)
from cryptography.hazmat.primitives.asymmetric import rsa

from tupu_async import Hooks, LocalLimiter, RequestEvent, UnlimitedLimiter
from tupu_async._limiter import SentHook
from tupu_async.testing import FakeServerProcess

LATENCY, JITTER = 0.3, 0.1


class RecordingLimiter(LocalLimiter):
    """A LocalLimiter that records each permit time and when its request was on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.permits: list[float] = []
        self.sent: list[float] = []

    def _sent_hook(self, started: float) -> SentHook:
        inner = super()._sent_hook(started)
        self.permits.append(started)

        def sent() -> None:
            self.sent.append(time.monotonic())
            inner()

        return sent


def first_overrun(times: list[float], limit: int) -> tuple[int, int] | None:
    first = 0
    for last, t in enumerate(times):
        while times[first] <= t - 1.0:
            first += 1
        if last - first + 1 > limit:
            return first, last
    return None


def closest(starts: list[float], arrivals: list[float], gates: list[float]) -> dict[str, Any]:
    """The tightest span of 51 consecutive requests (ms) on each clock, and where the
    arrival one is: how close each side came to 51 in one second."""
    n = CEILING_QPS

    def spans(t: list[float]) -> list[float]:
        return [(t[i + n] - t[i]) * 1e3 for i in range(len(t) - n)]

    s, a, g = spans(starts), spans(arrivals), spans(gates)
    i = min(range(len(a)), key=a.__getitem__)
    j = min(range(len(s)), key=s.__getitem__)
    return {
        "client_min_ms": round(s[j], 2),
        "client_min_at": j,
        "arrival_min_ms": round(a[i], 2),
        "arrival_min_at": i,
        "client_span_there_ms": round(s[i], 2),
        "first_delay_ms": round((arrivals[i] - starts[i]) * 1e3, 2),
        "last_delay_ms": round((arrivals[i + n] - starts[i + n]) * 1e3, 2),
        "gate_min_ms": round(min(g), 2),
        "arrival_spans_under_1010ms": sum(x < 1010 for x in a),
    }


async def one_round(
    server: FakeServerProcess, key: rsa.RSAPrivateKey, images: int, dump: str | None = None
) -> dict[str, Any]:
    await server.areset()
    starts: list[float] = []

    def on_request(event: RequestEvent) -> None:
        starts.append(time.monotonic())

    limiter = RecordingLimiter()
    async with client_for(
        server, key, hooks=Hooks(on_request=on_request), limiter=limiter
    ) as client:
        t0 = time.monotonic()
        results = await client.recognize_many(url_images(images))
        wall = time.monotonic() - t0
        stats = client.stats
    s = await server.astats()
    sid = server.secret_id
    rows = [
        (a, g, ok)
        for a, g, k, ok in zip(
            s.arrivals, s.gate_times, s.arrival_secret_ids, s.arrival_accepted, strict=False
        )
        if k == sid
    ]
    gates = sorted(g for _, g, _ in rows)
    arrivals = sorted(a for a, _, _ in rows)
    starts.sort()
    over_gate = first_overrun(gates, CEILING_QPS)
    over_arrival = first_overrun(arrivals, CEILING_QPS)
    out: dict[str, Any] = {
        "ok": sum(r.ok for r in results),
        "requests": stats.requests,
        "throttles": stats.throttles,
        "ratio": images / wall / (CEILING_QPS * 10),
        "over_gate": over_gate,
        "over_arrival": over_arrival,
        "over_client": first_overrun(starts, CEILING_QPS),
        "closest": closest(starts, arrivals, gates),
        "wire": closest(sorted(limiter.permits), arrivals, sorted(limiter.sent)),
    }
    if dump:
        with open(dump, "w") as f:  # noqa: ASYNC230 - once per round, after the run
            json.dump(
                {
                    "permits": sorted(limiter.permits),
                    "sent": sorted(limiter.sent),
                    "starts": starts,
                    "arrivals": arrivals,
                    "gates": gates,
                },
                f,
            )
    hit = over_gate or over_arrival
    if hit:
        lo, hi = hit
        print(
            f"  window {lo}..{hi}: arrival span {(arrivals[hi] - arrivals[lo]) * 1e3:.1f} ms, "
            f"client-start span {(starts[hi] - starts[lo]) * 1e3:.1f} ms"
        )
        for i in list(range(max(0, lo - 3), lo + 4)) + list(
            range(hi - 3, min(len(arrivals), hi + 3))
        ):
            gap_s = (starts[i] - starts[i - 1]) * 1e3 if i else 0.0
            gap_a = (arrivals[i] - arrivals[i - 1]) * 1e3 if i else 0.0
            print(
                f"    #{i}: start {starts[i] - t0:9.4f} (+{gap_s:5.1f} ms)  arrival "
                f"{arrivals[i] - t0:9.4f} (+{gap_a:5.1f} ms)  "
                f"delay {(arrivals[i] - starts[i]) * 1e3:5.1f} ms"
            )
    return out


async def main(rounds: int, images: int, dump_dir: str | None, unpaced: bool) -> None:
    print(pin_client())
    key = client_key()
    server = fake_server(key, latency=LATENCY, jitter=JITTER)
    # As in cpu.py: a second, unlimited fake on the same core, driven flat out between rounds.
    fast = fake_server(key, qps_limit=None) if unpaced else None
    try:
        await warm_up(server, key)
        for r in range(rounds):
            if fast is not None:
                async with client_for(fast, key, limiter=UnlimitedLimiter()) as client:
                    await client.recognize_many(url_images(images))
                await asyncio.sleep(1.1)
            dump = f"{dump_dir}/round{r}.json" if dump_dir else None
            out = await one_round(server, key, images, dump)
            print(f"round {r}: {out}", flush=True)
    finally:
        server.stop()
        if fast is not None:
            fast.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--dump", default=None, help="directory for per-round JSON of all times")
    p.add_argument("--unpaced", action="store_true", help="cpu.py's unpaced run between rounds")
    a = p.parse_args()
    asyncio.run(main(a.rounds, a.images, a.dump, a.unpaced))
    sys.exit(0)
