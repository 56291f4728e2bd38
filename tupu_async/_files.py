"""Reading a local image file safely: regular files only, bounded in size and time.

Anything but a regular file (FIFO, device, socket, directory) is refused before a byte is
read; at most ``limit + 1`` bytes are ever read, and reading fails once ``timeout`` passed.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from ._exceptions import InvalidImageError

__all__ = ["FILE_READ_TIMEOUT", "open_regular_file", "read_regular_file"]

FILE_READ_TIMEOUT: Final = 30.0
"""Seconds one image file may take to read (slow network file systems) before it fails."""

_CHUNK: Final = 1024 * 1024
_OPEN_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)

TooLarge = Callable[[int], InvalidImageError]
"""Builds the error for a file of the given size (or more) that is over the limit."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _open_error(name: str, exc: OSError) -> InvalidImageError:
    if isinstance(exc, FileNotFoundError):
        return InvalidImageError(f"{name}: no such file")
    if isinstance(exc, IsADirectoryError):
        return InvalidImageError(f"{name}: is a directory, not an image file")
    if isinstance(exc, PermissionError):
        return InvalidImageError(f"{name}: permission denied; check the file's mode")
    if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):
        return InvalidImageError(f"{name}: not a regular file; only regular image files are read")
    return InvalidImageError(f"{name}: cannot read the file ({exc.strerror or exc})")


@contextmanager
def open_regular_file(path: str | os.PathLike[str], name: str) -> Iterator[tuple[int, int]]:
    """``(fd, size)`` of the regular file ``path``, open for reading; closed on exit.

    Raises ``InvalidImageError`` for a missing or unreadable file and for anything that is
    not a regular file, before a byte is read.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _open_error(name, exc) from None
    except ValueError:  # a NUL byte, or text the file system encoding cannot express
        raise InvalidImageError(f"{name}: not a valid file path") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidImageError(
                f"{name}: is {_kind(info.st_mode)}; only regular image files are read"
            )
        yield fd, info.st_size
    except OSError as exc:
        raise _open_error(name, exc) from None
    finally:
        os.close(fd)


def read_regular_file(
    path: str | os.PathLike[str],
    name: str,
    *,
    limit: int,
    too_large: TooLarge,
    timeout: float = FILE_READ_TIMEOUT,
) -> bytes:
    """The whole content of the regular file ``path``, at most ``limit`` bytes.

    Raises ``InvalidImageError``: for a missing or unreadable file, anything that is not
    a regular file, ``too_large(size)`` when it holds more than ``limit`` bytes, and a
    timeout error when reading takes longer than ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    with open_regular_file(path, name) as (fd, size):
        if size > limit:
            raise too_large(size)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            if time.monotonic() > deadline:
                raise InvalidImageError(
                    f"{name}: reading the file took longer than {timeout:g} s; copy it to a "
                    f"local disk, or send it as bytes"
                )
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise too_large(total)
        return b"".join(chunks)
