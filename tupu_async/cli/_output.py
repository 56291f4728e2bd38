"""The ``--out`` file: exclusively locked, never clobbered by accident, resumable.

A run holds an exclusive advisory lock on its output file from before it reads it until
it ends, so a second process on the same file stops at once (exit 2) instead of doing
the same work. An existing non-empty file is only appended to (``--resume``) or
replaced (``--overwrite``) when asked; otherwise the run refuses to start.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable
from typing import IO, Literal

__all__ = ["OutputFileError", "OutputMode", "done_names", "open_output"]

OutputMode = Literal["new", "resume", "overwrite"]


class OutputFileError(Exception):
    """The output file cannot be used as asked; the message says what to do (exit 2)."""


def _lock(fd: int, path: str) -> None:
    """Take an exclusive non-blocking lock on ``fd`` or raise ``OutputFileError``."""
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise _busy(path) from None
    else:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(path) from None


def _busy(path: str) -> OutputFileError:
    return OutputFileError(
        f"{path} is in use by another tupu-async process (it holds the file's lock): wait "
        f"for it to finish, or write to another --out file"
    )


def open_output(path: str, mode: OutputMode) -> IO[str]:
    """Open ``path`` for appending JSON lines, locked, according to ``mode``.

    ``"new"`` refuses an existing non-empty file, ``"resume"`` keeps it (ending a torn
    last line first), ``"overwrite"`` empties it, only once the lock is held. Files that
    are not regular (a pipe, ``/dev/stdout``) are opened as they are, without a lock.
    The lock lasts until the returned file is closed.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise OutputFileError(f"cannot open --out file {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return open(fd, "a", encoding="utf-8", closefd=True)
        _lock(fd, path)
        size = os.fstat(fd).st_size
        if mode == "overwrite":
            os.ftruncate(fd, 0)
        elif size and mode == "new":
            raise OutputFileError(
                f"{path} already exists and is not empty: pass --resume to continue it "
                f"(images already recognised are skipped), or --overwrite to replace it"
            )
        elif size and mode == "resume":
            os.lseek(fd, -1, os.SEEK_END)
            if os.read(fd, 1) != b"\n":
                os.write(fd, b"\n")  # a torn last line: start ours on a fresh line
        os.lseek(fd, 0, os.SEEK_END)
        return open(fd, "a", encoding="utf-8", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def done_names(lines: Iterable[str]) -> set[str]:
    """Names with an ``"ok": true`` line: failed lines are not done, so they are retried.

    Unreadable lines (a torn last line) are ignored. Names are compared in full.
    """
    names: set[str] = set()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and record.get("ok") is True
            and isinstance(record.get("name"), str)
        ):
            names.add(record["name"])
    return names
