"""The cold process of ``network.py``: a new interpreter that runs one ``recognize_many``.

Only the standard library is imported before the clock starts, so tupu_async's imports,
key loading, connection set-up and the first sends are all measured, as for a new user.
Prints one JSON line: the run's ratio inputs and the client's own view.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()
CPU_STARTED = time.process_time()

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    from tupu_async import AsyncTupuClient, LocalLimiter

    limiter = LocalLimiter(50, recovery=5.0, policy=args.policy)
    async with AsyncTupuClient(
        args.secret_id,
        pathlib.Path(args.key_file),
        base_url=args.base_url,
        tupu_public_key=bytes.fromhex(args.server_key_hex),
        limiter=limiter,
    ) as client:
        urls = (f"https://img.example.com/c/{n:07d}.jpg" for n in range(args.images))
        called = time.perf_counter()
        results = await client.recognize_many(urls)
        ended = time.perf_counter()
        stats = client.stats
    cpu = time.process_time() - CPU_STARTED
    indexes = [r.index for r in results]
    belief = stats.limiter
    print(
        json.dumps(
            {
                "wall_s": ended - called,
                "wall_from_interpreter_start_s": ended - STARTED,
                "cpu_s": cpu,
                "images_failed": sum(1 for r in results if not r.ok),
                "indexes_unique": len(set(indexes)),
                "indexes_total": len(indexes),
                "client_requests": stats.requests,
                "client_throttles": stats.throttles,
                "limiter_rate_at_end": belief.rate if belief else None,
                "limiter_margin_ms_at_end": belief.margin * 1e3 if belief else None,
                "jitter_throttles": belief.jitter_throttles if belief else None,
                "foreign_throttles": belief.foreign_throttles if belief else None,
            }
        )
    )


if __name__ == "__main__":
    import anyio

    parser = argparse.ArgumentParser()
    for name in ("--base-url", "--key-file", "--server-key-hex", "--secret-id", "--policy"):
        parser.add_argument(name, required=True)
    parser.add_argument("--images", type=int, required=True)
    anyio.run(main, parser.parse_args())
