"""A crawler: stream URLs from a file through ``iter_recognize`` into a JSON-lines file.

Memory stays flat however long the list is: URLs are read lazily, at most a window of
requests is in flight, and each result is written as soon as its request completes.
A URL that fails gets its own line with the reason; the crawl goes on.

Against the real API::

    export TUPU_SECRET_ID=... TUPU_PRIVATE_KEY=/path/to/rsa_private_key.pem
    python examples/crawler.py urls.txt results.jsonl

Against the embedded fake server (no account needed)::

    python examples/crawler.py urls.txt results.jsonl --fake
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections import Counter
from collections.abc import AsyncIterator

import anyio

from tupu_async import AsyncTupuClient

VERDICTS = {0: "pass", 1: "block", 2: "review"}


def client_from_env(**options: object) -> AsyncTupuClient:
    """The client, configured from TUPU_SECRET_ID, TUPU_PRIVATE_KEY (path or PEM text), ..."""
    return AsyncTupuClient(
        secret_id=os.environ["TUPU_SECRET_ID"],
        private_key=os.environ["TUPU_PRIVATE_KEY"],
        region=os.environ.get("TUPU_REGION") or "cn",
        base_url=os.environ.get("TUPU_BASE_URL") or None,
        tupu_public_key=os.environ.get("TUPU_PUBLIC_KEY") or None,
        **options,  # type: ignore[arg-type]
    )


async def read_urls(path: str) -> AsyncIterator[str]:
    """The URLs of a file, one per line, read lazily (blank lines and # comments skipped)."""
    async with await anyio.open_file(path, encoding="utf-8") as lines:
        async for line in lines:
            url = line.strip()
            if url and not url.startswith("#"):
                yield url


async def crawl(client: AsyncTupuClient, urls_path: str, out_path: str) -> Counter[str]:
    """Recognise every URL of ``urls_path``; one JSON line each in ``out_path``.

    Returns how many images got each verdict ("failed" for images that got none).
    """
    verdicts: Counter[str] = Counter()
    async with await anyio.open_file(out_path, "w", encoding="utf-8") as out:
        async for result in client.iter_recognize(read_urls(urls_path)):
            await out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
            if not result.ok:
                verdicts["failed"] += 1
            elif result.suggestion is None:
                verdicts["unknown"] += 1
            else:
                verdicts[VERDICTS.get(result.suggestion, "unknown")] += 1
    return verdicts


async def run(urls_path: str, out_path: str) -> Counter[str]:
    async with client_from_env() as client:
        return await crawl(client, urls_path, out_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", help="a text file with one URL per line")
    parser.add_argument("out", help="where to write the JSON lines")
    parser.add_argument("--fake", action="store_true", help="use the embedded fake server")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.fake:
            from tupu_async.testing import spawn_fake_server

            fake = stack.enter_context(spawn_fake_server(secret_id="crawler"))
            assert fake.private_key_pem is not None
            os.environ.update(
                TUPU_SECRET_ID=fake.secret_id,
                TUPU_PRIVATE_KEY=fake.private_key_pem.decode(),
                TUPU_PUBLIC_KEY=fake.public_key_pem.decode(),
                TUPU_BASE_URL=fake.base_url,
            )
        verdicts = anyio.run(run, args.urls, args.out)
    print(", ".join(f"{verdict}: {count}" for verdict, count in sorted(verdicts.items())))


if __name__ == "__main__":
    main()
