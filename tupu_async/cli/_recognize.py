"""``tupu-async recognize``: stream images through ``iter_recognize`` into JSON lines.

Exit codes: 0 every image recognised, 1 some images failed (their lines say why), 2 a
fatal error stopped the run (authentication, configuration, a bad setting, an output
file that is locked by another run or would be overwritten).

``--resume`` skips the images with an ok line in the output file (names compared in
full) and retries the failed ones; their new lines are appended after the old ones.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

from .._images import Image
from .._requests import Transport
from ._config import Settings
from ._inputs import count_inputs, expand_inputs, input_name, names_in_output
from ._output import OutputMode
from ._report import JsonLinesWriter, ProgressBar, Tally, logs_through

__all__ = ["RecognizeJob", "run_recognize"]

EXIT_OK = 0
EXIT_SOME_FAILED = 1


@dataclass
class RecognizeJob:
    """One ``recognize`` invocation, as parsed from the command line."""

    inputs: Sequence[str]
    from_file: str | None = None
    recursive: bool = False
    tasks: Sequence[str] | None = None
    transport: Transport = "multipart"
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    resize: bool = False
    url_fallback: bool = False
    qps: float = 50.0
    max_retries: int = 3
    timeout: float = 30.0


def _pending(job: RecognizeJob, done: set[str]) -> Iterator[str | Image]:
    for item in expand_inputs(job.inputs, job.from_file, recursive=job.recursive):
        if input_name(item) not in done:
            yield item


async def run_recognize(job: RecognizeJob, settings: Settings, console: Console) -> int:
    """Run the job; returns the exit code. Fatal errors raise (the caller maps them to 2)."""
    if job.resume and job.out is None:
        raise ValueError("--resume needs --out FILE: it skips the images already in it")
    if job.resume and job.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: pick one")
    mode: OutputMode = "resume" if job.resume else "overwrite" if job.overwrite else "new"
    # The lock is taken before the file is read, so two runs never share the work.
    with JsonLinesWriter(job.out, mode=mode) as writer:
        done = names_in_output(pathlib.Path(job.out)) if job.resume and job.out else set()
        return await _recognize_into(writer, done, job, settings, console)


async def _recognize_into(
    writer: JsonLinesWriter,
    done: set[str],
    job: RecognizeJob,
    settings: Settings,
    console: Console,
) -> int:
    total = count_inputs(job.inputs, job.from_file, recursive=job.recursive)
    skipped = 0
    if total is not None and done:
        pending_total = sum(1 for _ in _pending(job, done))
        skipped = total - pending_total
        total = pending_total
    if skipped:
        console.print(
            f"resuming: {skipped} images already in {escape(job.out or '')}, skipping them"
        )
    if total == 0:
        console.print("nothing to recognise")
        return EXIT_OK
    options: dict[str, Any] = {
        "qps": job.qps,
        "max_retries": job.max_retries,
        "timeout": job.timeout,
        "resize": job.resize,
        "url_fallback": job.url_fallback,
    }
    tally = Tally()
    client = settings.client(**options)
    with logs_through(console):
        async with client:
            with ProgressBar(console, total, "recognizing") as bar:
                async for result in client.iter_recognize(
                    _pending(job, done), tasks=job.tasks, transport=job.transport
                ):
                    writer.write(result.to_dict())
                    tally.add(result)
                    bar.update(done=tally.total, errors=tally.failed, retries=client.stats.retries)
                bar.finish("done")
            stats = client.stats
    elapsed = bar.elapsed
    console.print(tally.table())
    console.print(
        f"{tally.total} images in {elapsed:.1f}s ({tally.total / max(elapsed, 1e-9):.0f} "
        f"images/s), {stats.requests} requests, {stats.retries} retries"
        + (f", {stats.fallbacks} URL fallbacks" if stats.fallbacks else "")
        + (f"; results in {escape(job.out)}" if job.out else "")
    )
    for line in tally.failure_lines():
        console.print(f"[red]failed[/red] {escape(line)}", highlight=False)
    if tally.failed > len(tally.failure_lines()):
        console.print(f"... and {tally.failed - len(tally.failure_lines())} more failures")
    return EXIT_SOME_FAILED if tally.failed else EXIT_OK
