"""What the commands show: the live progress bar, the JSON-lines writer and the summary table.

Results (data) go to the output file or standard output; the progress bar and the summary
go to standard error, so piping standard output gives clean JSON lines. When the console
is not a terminal rich draws the bar once, at the end, with no control codes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Final

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .._logging import logger
from .._types import ImageResult
from ._output import OutputMode, open_output

__all__ = [
    "RISK_TYPES",
    "SUGGESTIONS",
    "JsonLinesWriter",
    "ProgressBar",
    "Tally",
    "logs_through",
]

SUGGESTIONS: Final = {0: "pass", 1: "block", 2: "review"}
RISK_TYPES: Final = {
    0: "normal",
    1: "politics",
    2: "porn",
    3: "violence",
    4: "violation",
    5: "advertisement",
    6: "sensitive",
    7: "abuse",
}
_MAX_FAILURES_SHOWN: Final = 5


@dataclass(slots=True)
class Tally:
    """Counts of what came back: by suggestion, by risk type, and the failures."""

    total: int = 0
    ok: int = 0
    fallbacks: int = 0
    suggestions: Counter[str] = field(default_factory=Counter)
    risk_types: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    failure_examples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.total - self.ok

    def add(self, result: ImageResult) -> None:
        self.total += 1
        if result.fallback:
            self.fallbacks += 1
        if not result.ok:
            kind = type(result.error).__name__ if result.error is not None else "error"
            self.failures[kind if result.code == -1 else f"{kind} (code {result.code})"] += 1
            if len(self.failure_examples) < _MAX_FAILURES_SHOWN:
                self.failure_examples.append((result.name, result.message))
            return
        self.ok += 1
        self.suggestions[_label(SUGGESTIONS, result.suggestion)] += 1
        self.risk_types[_label(RISK_TYPES, result.risk_type)] += 1

    def table(self, title: str = "Summary") -> Table:
        """The summary table: one section per kind of count."""
        table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
        table.add_column("", style="bold")
        table.add_column("", overflow="fold")
        table.add_column("images", justify="right")
        table.add_row("images", "total", str(self.total))
        table.add_row("", "recognised", str(self.ok), style="green")
        table.add_row("", "failed", str(self.failed), style="red" if self.failed else "")
        if self.fallbacks:
            table.add_row("", "via URL fallback", str(self.fallbacks))
        table.add_section()
        for i, (label, count) in enumerate(_ordered(self.suggestions, SUGGESTIONS)):
            table.add_row("suggestion" if i == 0 else "", label, str(count))
        table.add_section()
        for i, (label, count) in enumerate(_ordered(self.risk_types, RISK_TYPES)):
            table.add_row("risk type" if i == 0 else "", label, str(count))
        if self.failures:
            table.add_section()
            for i, (kind, count) in enumerate(self.failures.most_common()):
                table.add_row("failures" if i == 0 else "", kind, str(count), style="red")
        return table

    def failure_lines(self) -> list[str]:
        """A few failed images and why, for the end of a run."""
        return [
            message if message.startswith(f"{name}:") else f"{name}: {message}"
            for name, message in self.failure_examples
        ]


def _label(names: dict[int, str], value: int | None) -> str:
    if value is None:
        return "(no summary)"
    return names.get(value, f"other ({value})")


def _ordered(counts: Counter[str], names: dict[int, str]) -> list[tuple[str, int]]:
    known = [(n, counts[n]) for n in names.values() if counts[n]]
    rest = sorted((k, v) for k, v in counts.items() if k not in names.values())
    return known + rest


class JsonLinesWriter:
    """Writes one JSON object per line and flushes it, so an interrupted run loses nothing.

    ``path`` None writes to standard output (looked up at each write, so a progress bar
    that redirects it on a terminal keeps its place). A file is opened by
    :func:`~tupu_async.cli._output.open_output` with ``mode`` (locked; never clobbered
    unless ``mode="overwrite"``) and stays locked until the writer is closed.
    """

    def __init__(self, path: str | None, *, mode: OutputMode = "new") -> None:
        self._file: IO[str] | None = None
        if path is not None:
            self._file = open_output(path, mode)

    def write(self, record: dict[str, object]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        out = self._file if self._file is not None else sys.stdout
        out.write(line)
        out.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ProgressBar:
    """The live bar: images done (of the total when known), images/s, errors and retries."""

    def __init__(self, console: Console, total: int | None, description: str) -> None:
        self.console = console
        self._started = time.monotonic()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[cyan]{task.fields[rate]:>7.1f} images/s"),
            TextColumn("[red]{task.fields[errors]} errors"),
            TextColumn("[yellow]{task.fields[retries]} retries"),
            TimeElapsedColumn(),
            console=console,
            # On a terminal, prints to stdout (JSON lines when no --out) go above the bar.
            redirect_stdout=console.is_terminal and sys.stdout.isatty(),
            redirect_stderr=False,
        )
        self._task: TaskID = self._progress.add_task(
            description, total=total, rate=0.0, errors=0, retries=0
        )
        self.done = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def __enter__(self) -> ProgressBar:
        self._started = time.monotonic()
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, *, done: int, errors: int, retries: int) -> None:
        self.done = done
        elapsed = self.elapsed
        self._progress.update(
            self._task,
            completed=done,
            rate=done / elapsed if elapsed > 0 else 0.0,
            errors=errors,
            retries=retries,
        )

    def finish(self, description: str) -> None:
        self._progress.update(self._task, description=description, total=self.done)


@contextlib.contextmanager
def logs_through(console: Console) -> Iterator[None]:
    """Route the ``tupu_async`` logger through ``console`` while the block runs.

    Log lines (a throttle warning, retries with ``TUPU_LOG=info``) then print above a live
    progress bar instead of tearing it. The level is ``TUPU_LOG`` when set, else WARNING.
    """
    handler = RichHandler(
        console=console, show_time=False, show_path=False, markup=False, rich_tracebacks=False
    )
    level = os.environ.get("TUPU_LOG", "").strip().upper()
    saved = (logger.level, logger.propagate, logger.handlers)
    logger.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "WARNING")
    logger.propagate = False
    logger.handlers = [handler]
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]
