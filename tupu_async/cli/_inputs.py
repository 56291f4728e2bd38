"""What ``tupu-async recognize`` reads: arguments, list files and folders, lazily.

Each input becomes a URL string or an :class:`~tupu_async.Image` whose ``name`` is what
its result reports. An argument that is neither a URL nor an existing file or folder is
found by ``missing_arguments`` before anything runs; any other bad input becomes that
image's error. A ``.zip`` file stands for its member images.
"""

from __future__ import annotations

import os
import pathlib
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, TextIO

from .._exceptions import InvalidImageError
from .._images import Image
from .._logging import logger
from ._output import done_names

__all__ = [
    "ARCHIVE_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "count_inputs",
    "expand_inputs",
    "image_files",
    "input_name",
    "missing_arguments",
    "names_in_output",
]

IMAGE_EXTENSIONS: Final = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".heic", ".heif"}
)
"""File extensions a folder is expanded to (case-insensitive), besides ``.zip``."""

ARCHIVE_EXTENSIONS: Final = frozenset({".zip"})
_FOLDER_EXTENSIONS: Final = IMAGE_EXTENSIONS | ARCHIVE_EXTENSIONS


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


def image_files(
    folder: pathlib.Path, recursive: bool = False, *, archives: bool = False
) -> Iterator[pathlib.Path]:
    """Image files (and ZIP files with ``archives``) in ``folder`` by extension, sorted by
    path, lazily for deep trees."""
    wanted = _FOLDER_EXTENSIONS if archives else IMAGE_EXTENSIONS
    if recursive:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = pathlib.Path(root, name)
                if path.suffix.lower() in wanted and _is_regular(path):
                    yield path
        return
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() in wanted:
            yield entry


def _is_regular(path: pathlib.Path) -> bool:
    """A regular file (symlinks followed); ``stat`` never blocks, even on a FIFO."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def _file(path: pathlib.Path) -> Iterator[Image]:
    """A file's inputs: its member images for a ZIP archive, else the file itself."""
    if path.suffix.lower() not in ARCHIVE_EXTENSIONS or not _is_regular(path):
        yield Image.from_path(path)  # the client reports a missing or special file
        return
    try:
        members = Image.from_zip(path, name=str(path))
    except InvalidImageError as exc:
        logger.warning("%s", exc)
        yield Image.from_path(path)
        return
    yield from members


def _one(text: str, recursive: bool) -> Iterator[str | Image]:
    if _is_url(text):
        yield text
        return
    path = pathlib.Path(text).expanduser()
    if path.is_dir():
        for file in image_files(path, recursive, archives=True):
            yield from _file(file)
    else:
        yield from _file(path)


def _is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def missing_arguments(args: Sequence[str]) -> list[str]:
    """The arguments that are neither an http(s) URL nor an existing file or folder."""
    return [a for a in args if not _is_url(a) and not pathlib.Path(a).expanduser().exists()]


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
    """The name the result of ``item`` will carry, in full."""
    if isinstance(item, Image):
        return item.name or ""
    return item


def count_inputs(args: Sequence[str], from_file: str | None, *, recursive: bool) -> int | None:
    """How many inputs there are (for the progress bar), or None when reading stdin."""
    if from_file == "-":
        return None
    return sum(1 for _ in expand_inputs(args, from_file, recursive=recursive))


def names_in_output(path: pathlib.Path) -> set[str]:
    """Names with an ok line in a JSON-lines output file (failed ones are not done)."""
    if not path.exists():
        return set()
    with open(path, encoding="utf-8", errors="replace") as handle:
        return done_names(handle)
