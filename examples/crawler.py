"""A crawler: stream URLs from a file through ``iter_recognize`` into a JSON-lines file.

Memory stays flat however long the list is: URLs are read lazily, at most a window of
requests is in flight, and each result is written as soon as its request completes.
A URL that fails gets its own line with the reason; the crawl goes on.

Install the examples' dependencies once (from a clone, in a venv)::

    pip install -e '.[examples]'

Against the embedded fake server (no account needed), with the shipped URL list
(examples/urls.txt, 45 URLs)::

    python examples/crawler.py --fake                       # writes results.jsonl
    python examples/crawler.py my-urls.txt out.jsonl --fake

Against the real API::

    export TUPU_SECRET_ID=... TUPU_PRIVATE_KEY=/path/to/rsa_private_key.pem
    python examples/crawler.py my-urls.txt results.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys
from collections import Counter
from collections.abc import AsyncIterator

import anyio

from tupu_async import AsyncTupuClient, Suggestion

SHIPPED_URLS = pathlib.Path(__file__).resolve().parent / "urls.txt"


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
            elif isinstance(result.suggestion, Suggestion):
                verdicts[result.suggestion.name.lower()] += 1
            else:  # no summary on this account, or a value the docs do not list
                verdicts["unknown"] += 1
    return verdicts


async def run(urls_path: str, out_path: str) -> Counter[str]:
    async with client_from_env() as client:
        return await crawl(client, urls_path, out_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "urls",
        nargs="?",
        default=str(SHIPPED_URLS),
        help="a text file with one URL per line (default: the shipped examples/urls.txt)",
    )
    parser.add_argument(
        "out", nargs="?", default="results.jsonl", help="where to write the JSON lines"
    )
    parser.add_argument("--fake", action="store_true", help="use the embedded fake server")
    args = parser.parse_args()
    if not os.path.isfile(args.urls):  # before the output file is created
        sys.exit(f"error: {args.urls}: no such file; give a text file with one URL per line")
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
        try:
            verdicts = anyio.run(run, args.urls, args.out)
        except BaseException:
            out = pathlib.Path(args.out)
            if out.exists() and out.stat().st_size == 0:
                out.unlink()  # leave no empty output behind
            raise
    print(", ".join(f"{verdict}: {count}" for verdict, count in sorted(verdicts.items())))
    print(f"{sum(verdicts.values())} results in {args.out}")


if __name__ == "__main__":
    main()
