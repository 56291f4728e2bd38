"""What ``tupu-async recognize`` reads: arguments, list files and folders, lazily.

Each input becomes a URL string or an :class:`~tupu_async.Image` whose ``name`` is what
its result reports, so ``--resume`` can compare names with the output file. Anything that
is not a URL is a file path (the client never reads a ``str`` as a file): a missing or
unreadable one becomes that image's error, and the run goes on. Folder walks list only
regular files, so a FIFO or device named ``x.jpg`` is never opened.
"""

from __future__ import annotations

import json
import os
import pathlib
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, TextIO

from .._images import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "count_inputs",
    "expand_inputs",
    "image_files",
    "input_name",
    "names_in_output",
]

IMAGE_EXTENSIONS: Final = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".heic", ".heif"}
)
"""File extensions a folder is expanded to (case-insensitive)."""


def _lines(source: str, stdin: TextIO | None = None) -> Iterator[str]:
    """Non-blank, non-comment lines of a list file (``-`` is standard input)."""
    if source == "-":
        yield from _entries(stdin if stdin is not None else sys.stdin)
        return
    with open(source, encoding="utf-8") as handle:
        yield from _entries(handle)


def _entries(lines: Iterable[str]) -> Iterator[str]:
    """The stripped lines that are neither blank nor ``#`` comments."""
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            yield text


def image_files(folder: pathlib.Path, recursive: bool = False) -> Iterator[pathlib.Path]:
    """Image files in ``folder`` by extension, sorted by path, lazily for deep trees."""
    if recursive:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = pathlib.Path(root, name)
                if path.suffix.lower() in IMAGE_EXTENSIONS and _is_regular(path):
                    yield path
        return
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS:
            yield entry


def _is_regular(path: pathlib.Path) -> bool:
    """A regular file (symlinks followed); ``stat`` never blocks, even on a FIFO."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def _one(text: str, recursive: bool) -> Iterator[str | Image]:
    if text[:8].lower().startswith(("http://", "https://")):
        yield text
        return
    path = pathlib.Path(text).expanduser()
    if path.is_dir():
        for file in image_files(path, recursive):
            yield Image.from_path(file)
    else:
        yield Image.from_path(path)  # the client reports a missing or special file


def expand_inputs(
    args: Sequence[str],
    from_file: str | None = None,
    *,
    recursive: bool = False,
    stdin: TextIO | None = None,
) -> Iterator[str | Image]:
    """Arguments first, then the lines of ``from_file``; folders expand to image files."""
    sources: Iterable[str] = args
    for text in sources:
        yield from _one(text, recursive)
    if from_file is not None:
        for text in _lines(from_file, stdin):
            yield from _one(text, recursive)


def input_name(item: str | Image) -> str:
    """The name the result of ``item`` will carry."""
    if isinstance(item, Image):
        return item.name or ""
    return item[:500]


def count_inputs(args: Sequence[str], from_file: str | None, *, recursive: bool) -> int | None:
    """How many inputs there are (for the progress bar), or None when reading stdin."""
    if from_file == "-":
        return None
    return sum(1 for _ in expand_inputs(args, from_file, recursive=recursive))


def names_in_output(path: pathlib.Path) -> set[str]:
    """Names already in a JSON-lines output file; a torn last line is ignored."""
    names: set[str] = set()
    if not path.exists():
        return names
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("name"), str):
                names.add(record["name"])
    return names
