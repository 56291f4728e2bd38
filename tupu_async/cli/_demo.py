"""``tupu-async demo``: the whole client path against the embedded fake server.

Generated images go through ``iter_recognize`` to a fake server in a child process (or
a thread); the report compares images/s with the API's ceiling (QPS x 10 images per
request) and shows what the server counted.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._client import AsyncTupuClient
from .._constants import MAX_IMAGES_PER_REQUEST
from .._images import Image
from ._output import OutputMode
from ._report import JsonLinesWriter, ProgressBar, Tally, logs_through

__all__ = ["DemoOptions", "demo_inputs", "run_demo"]

# URL images get these words at these strides, so the fake server (which reads magic
# substrings) returns a realistic mix of verdicts.
_MAGIC_STRIDES: Final = (
    ("sexy", 37),
    ("porn", 89),
    ("politic", 113),
    ("violence", 131),
    ("advert", 151),
    ("smoking", 173),
    ("needs-review", 59),
)
_CONTENT_IMAGES: Final = 12


@dataclass
class DemoOptions:
    """What ``tupu-async demo`` was asked to do."""

    images: int = 3000
    latency: float = 0.3
    jitter: float = 0.1
    qps: float = 50.0
    in_thread: bool = False
    out: str | None = None
    overwrite: bool = False


def _png(width: int, height: int, text: bytes) -> bytes:
    """A tiny valid grey PNG with a tEXt chunk (no Pillow needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes([(x * 7 + y * 3) % 256 for x in range(width)]) for y in range(height)
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"tEXt", b"Comment\x00" + text)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _animated_gif() -> bytes:
    """A two-frame 1x1 GIF: the client rejects it and points at video recognition."""
    frame = b"\x21\xf9\x04\x00\x0a\x00\x00\x00" + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"
    frame += b"\x02\x02\x44\x01\x00"
    return b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff" + frame + frame + b"\x3b"


def _specials(count: int) -> tuple[dict[int, str | Image], int]:
    """Positions of the content images and the bad inputs; how many bad ones fit."""
    bad: list[str | Image] = [
        "http://images.demo.invalid/download-fail/missing.jpg",  # the service: code 14
        Image.from_bytes(b"this is not an image", name="notes.txt"),  # never sent
        Image.from_bytes(_animated_gif(), name="animated.gif"),  # never sent: use video API
        "http://images.demo.invalid/gone/download-fail.png",  # the service: code 14
    ]
    content_words = [b"", b"sexy", b"porn", b""]
    specials: dict[int, str | Image] = {}
    step = max(1, count // (_CONTENT_IMAGES + len(bad) + 1))
    position = step // 2
    for i in range(_CONTENT_IMAGES):
        word = content_words[i % len(content_words)]
        data = _png(16 + i, 16, b"demo image " + word)
        specials[position % count] = Image.from_bytes(data, name=f"upload-{i:02d}.png")
        position += step
    for item in bad:
        specials[position % count] = item
        position += step
    return specials, sum(1 for item in specials.values() if any(item is b for b in bad))


def demo_inputs(count: int) -> tuple[Iterator[str | Image], int]:
    """``count`` lazily generated inputs (mostly URLs, some content images, a few bad
    ones) and how many of them are deliberately bad."""
    if count < 1:
        return iter(()), 0
    specials, bad = _specials(count)

    def generate() -> Iterator[str | Image]:
        for i in range(count):
            if i in specials:
                yield specials[i]
                continue
            word = next((w for w, stride in _MAGIC_STRIDES if i % stride == stride - 1), "photo")
            yield f"http://images.demo.invalid/{word}/{i:06d}.jpg"

    return generate(), bad


@dataclass
class _Server:
    base_url: str
    secret_id: str
    private_key_pem: bytes
    public_key_pem: bytes


async def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the demo; 0 when only the deliberately bad inputs failed, else 1."""
    from ..testing import FakeServerStats, FakeTupuServer, spawn_fake_server, split_cores

    console.print(
        f"[bold]tupu-async demo[/bold]: {options.images} images against a fake Tupu server on "
        f"127.0.0.1 (latency {options.latency:g}s ± {options.jitter:g}s, "
        f"limit {options.qps:g} requests/s)",
        highlight=False,
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(logs_through(console))
        started = time.monotonic()
        in_thread: FakeTupuServer | None = None
        if options.in_thread:
            in_thread = FakeTupuServer(
                qps_limit=options.qps, latency=options.latency, latency_jitter=options.jitter
            )
            secret_id, private_pem = in_thread.add_credentials("demo")
            base_url = stack.enter_context(in_thread.serve_in_thread())
            server = _Server(base_url, secret_id, private_pem, in_thread.public_key_pem)
            process = None
        else:
            cores = split_cores()
            process = stack.enter_context(
                spawn_fake_server(
                    secret_id="demo",
                    qps_limit=options.qps,
                    latency=options.latency,
                    latency_jitter=options.jitter,
                    cpus=cores[1] if cores else None,
                )
            )
            if cores:
                stack.callback(os.sched_setaffinity, 0, os.sched_getaffinity(0))
                os.sched_setaffinity(0, cores[0])
            assert process.private_key_pem is not None
            server = _Server(
                process.base_url, "demo", process.private_key_pem, process.public_key_pem
            )
        where = "a thread" if options.in_thread else f"process {process.pid if process else ''}"
        console.print(
            f"fake server at {server.base_url} in {where} (started in "
            f"{time.monotonic() - started:.1f}s), fresh RSA key pair for secret id "
            f"{server.secret_id!r}",
            highlight=False,
        )
        tally = Tally()
        client = AsyncTupuClient(
            server.secret_id,
            server.private_key_pem,
            base_url=server.base_url,
            tupu_public_key=server.public_key_pem,
            qps=options.qps,
        )
        out_mode: OutputMode = "overwrite" if options.overwrite else "new"
        writer_cm = JsonLinesWriter(options.out, mode=out_mode) if options.out else None
        with writer_cm if writer_cm is not None else contextlib.nullcontext() as writer:
            async with client:
                inputs, expected_failures = demo_inputs(options.images)
                with ProgressBar(console, options.images, "recognizing") as bar:
                    async for result in client.iter_recognize(inputs):
                        tally.add(result)
                        if writer is not None:
                            writer.write(result.to_dict())
                        bar.update(
                            done=tally.total, errors=tally.failed, retries=client.stats.retries
                        )
                    bar.finish("done")
                stats = client.stats
        elapsed = bar.elapsed
        if in_thread is not None:
            server_stats: FakeServerStats = in_thread.stats
        else:
            assert process is not None
            server_stats = await process.astats()
    ceiling = options.qps * MAX_IMAGES_PER_REQUEST
    rate = tally.total / elapsed if elapsed > 0 else 0.0
    numbers = Table(title="Throughput", title_justify="left", show_header=False)
    numbers.add_column("", style="bold")
    numbers.add_column("", justify="right")
    numbers.add_row("images", f"{tally.total} in {elapsed:.2f}s")
    numbers.add_row(
        "images/s", f"[bold cyan]{rate:.0f}[/bold cyan] ({rate / ceiling:.0%} of the ceiling)"
    )
    numbers.add_row(
        "ceiling",
        f"{ceiling:.0f} images/s = {options.qps:g} requests/s x {MAX_IMAGES_PER_REQUEST} images",
    )
    numbers.add_row("requests (client)", f"{stats.requests}")
    numbers.add_row("requests (server)", f"{server_stats.total_requests}")
    numbers.add_row("mean images per request", f"{server_stats.mean_images_per_request:.2f}")
    numbers.add_row(
        "max requests in any 1 s (server)",
        f"{server_stats.max_in_window(1.0)} (limit {options.qps:g})",
    )
    numbers.add_row("HTTP 429 from server", f"{server_stats.http_429}")
    numbers.add_row("retries", f"{stats.retries}")
    console.print(numbers)
    console.print(tally.table())
    for line in tally.failure_lines():
        console.print(f"[red]failed[/red] {escape(line)}", highlight=False)
    expected = expected_failures
    if tally.failed > expected:
        console.print(f"[red]{tally.failed - expected} unexpected failures[/red]")
        return 1
    console.print(
        f"the {expected} failures above are the demo's deliberately bad inputs: each bad "
        f"image gets its own result with the reason, and the run goes on"
    )
    return 0
