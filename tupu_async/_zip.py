"""ZIP archives of images, read in memory with zip-bomb limits.

Every member is inflated into memory (nothing is ever written to disk) while its size and
compression ratio are counted as the bytes come out: sizes in the headers are never
trusted. An archive that breaks a limit, or holds an encrypted member or a symlink, is
refused as a whole with ``InvalidImageError``. Directory entries and macOS ``__MACOSX/``
metadata are skipped. A member that is not an image is not refused here: it becomes an
image that fails validation on its own, like any other bad input.
"""

from __future__ import annotations

import io
import os
import pathlib
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass

from ._exceptions import InvalidImageError

__all__ = ["ZipLimits", "ZipMember", "is_zip", "read_zip_members", "read_zip_source"]

_CHUNK = 64 * 1024
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_END = b"PK\x05\x06"
_END_SIZE = 22
_END64_SIZE = 56 + 20  # the ZIP64 end record and its locator, just before the end record
_CENTRAL = b"PK\x01\x02"
_ENTRIES_PER_MEMBER = 4
"""Central-directory entries read per allowed member (directories, ``__MACOSX/`` included)."""
_BIDI = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))


@dataclass(frozen=True)
class ZipLimits:
    """The limits an archive must stay within, all measured while inflating.

    ``max_ratio`` is the largest uncompressed/compressed ratio of a member (and of the
    whole archive); it applies once a member has inflated past ``ratio_floor`` bytes, so
    tiny, very compressible files are not refused.
    """

    max_members: int = 1000
    max_member_bytes: int = 16 * 1024 * 1024
    max_total_bytes: int = 256 * 1024 * 1024
    max_archive_bytes: int = 512 * 1024 * 1024
    max_ratio: float = 100.0
    ratio_floor: int = 1024 * 1024


@dataclass(frozen=True)
class ZipMember:
    """One inflated member: its path inside the archive and its content."""

    name: str
    data: bytes


def is_zip(data: bytes) -> bool:
    """Whether ``data`` starts like a ZIP archive (a local header, or an empty archive)."""
    return data[:4] in _ZIP_MAGIC


def _refuse(archive: str, why: str) -> InvalidImageError:
    return InvalidImageError(f"{archive}: refused: {why}")


def _directory_entries(data: bytes) -> int:
    """At most how many entries ``zipfile`` will parse: the central-directory signatures in
    the bytes before the end record that its size fields can span, counted without parsing."""
    end = len(data) - _END_SIZE
    if end < 0 or data[end : end + 4] != _END or data[-2:] != b"\0\0":
        end = data.rfind(_END, max(0, len(data) - _END_SIZE - 0xFFFF))
    if end < 0 or len(data) - end < _END_SIZE:
        return 0
    size = struct.unpack_from("<L", data, end + 12)[0]
    start = end - _END64_SIZE
    if start >= 0 and data[end - 20 : end - 16] == b"PK\x06\x07":  # a ZIP64 locator
        located = struct.unpack_from("<Q", data, end - 12)[0]
        for record in (start, located):  # where readers look for the ZIP64 end record
            if data[record : record + 4] == b"PK\x06\x06":
                size = max(size, struct.unpack_from("<Q", data, record + 40)[0])
                start = min(start, record)
    return data.count(_CENTRAL, max(0, start - size), end)


def _label(info: zipfile.ZipInfo) -> str:
    """The member's path as a printable label: control and bidi-override characters
    (a NUL, terminal escapes, a right-to-left override) are shown as escapes."""
    name = info.orig_filename if "\0" in info.orig_filename else info.filename
    if os.sep != "/":
        name = name.replace(os.sep, "/")
    return "".join(
        ascii(c)[1:-1] if c in _BIDI or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in name
    )


def _skipped(info: zipfile.ZipInfo) -> bool:
    name = info.filename
    return info.is_dir() or name.startswith("__MACOSX/") or "/__MACOSX/" in name


def _check_entry(archive: str, info: zipfile.ZipInfo) -> None:
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        raise _refuse(archive, f"member {info.filename!r} is a symlink; archive the file itself")
    if info.flag_bits & 0x1:
        raise _refuse(
            archive, f"member {info.filename!r} is encrypted; re-create the archive unencrypted"
        )


def _inflate(
    archive: str,
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limits: ZipLimits,
    total_before: int,
) -> bytes:
    """The member's bytes, counted chunk by chunk against every limit."""
    out = bytearray()
    compressed = max(info.compress_size, 1)
    with zf.open(info) as member:
        while True:
            chunk = member.read(_CHUNK)
            if not chunk:
                break
            out += chunk
            size = len(out)
            if size > limits.max_member_bytes:
                raise _refuse(
                    archive,
                    f"member {info.filename!r} inflates to over "
                    f"{limits.max_member_bytes:,} bytes (ZipLimits.max_member_bytes)",
                )
            if total_before + size > limits.max_total_bytes:
                raise _refuse(
                    archive,
                    f"its members inflate to over {limits.max_total_bytes:,} bytes in all "
                    f"(ZipLimits.max_total_bytes): split it into smaller archives",
                )
            if size > limits.ratio_floor and size / compressed > limits.max_ratio:
                raise _refuse(
                    archive,
                    f"member {info.filename!r} inflates more than {limits.max_ratio:g}x "
                    f"(ZipLimits.max_ratio): a zip bomb, or data that is not images",
                )
    return bytes(out)


def read_zip_members(
    data: bytes, *, archive: str = "archive.zip", limits: ZipLimits | None = None
) -> list[ZipMember]:
    """The file members of a ZIP archive in archive order. Raises ``InvalidImageError``."""
    limits = limits or ZipLimits()
    if len(data) > limits.max_archive_bytes:
        raise _refuse(archive, f"{len(data):,} bytes is over ZipLimits.max_archive_bytes")
    listed = _directory_entries(data)
    if listed > _ENTRIES_PER_MEMBER * limits.max_members:
        raise _refuse(
            archive,
            f"it lists {listed:,} entries, far over ZipLimits.max_members "
            f"({limits.max_members:,}): split it into smaller archives",
        )
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise _refuse(archive, f"not a readable ZIP archive ({exc})") from None
    members: list[ZipMember] = []
    total = 0
    with zf:
        entries = [info for info in zf.infolist() if not _skipped(info)]
        if len(entries) > limits.max_members:
            raise _refuse(
                archive,
                f"{len(entries):,} members is over ZipLimits.max_members "
                f"({limits.max_members:,}): split it into smaller archives",
            )
        for info in entries:
            _check_entry(archive, info)
            try:
                content = _inflate(archive, zf, info, limits, total)
            except InvalidImageError:
                raise
            except (
                zipfile.BadZipFile,
                NotImplementedError,
                RuntimeError,
                EOFError,
                OSError,
                ValueError,
                zlib.error,
            ) as exc:
                raise _refuse(archive, f"member {info.filename!r} cannot be read ({exc})") from None
            total += len(content)
            if total > limits.ratio_floor and total / len(data) > limits.max_ratio:
                raise _refuse(
                    archive,
                    f"it inflates more than {limits.max_ratio:g}x its size "
                    f"(ZipLimits.max_ratio): a zip bomb, or data that is not images",
                )
            members.append(ZipMember(_label(info), content))
    return members


def _read_archive(path: pathlib.Path, archive: str, limit: int) -> bytes:
    """A regular file's bytes, at most ``limit``: a FIFO, a device such as ``/dev/zero``
    or a directory is refused without blocking or reading it."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InvalidImageError(f"{archive}: no such file") from None
    except IsADirectoryError:
        raise InvalidImageError(f"{archive}: is a directory, not a ZIP file") from None
    except OSError as exc:
        raise InvalidImageError(f"{archive}: cannot read the file ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InvalidImageError(f"{archive}: is a directory, not a ZIP file")
        if not stat.S_ISREG(mode):
            raise _refuse(archive, "not a regular file (a pipe or a device): pass a ZIP file")
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InvalidImageError(f"{archive}: cannot read the file ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise _refuse(archive, f"over {limit:,} bytes (ZipLimits.max_archive_bytes)")
    return data


def read_zip_source(
    source: bytes | str | os.PathLike[str], *, name: str | None, limits: ZipLimits | None
) -> tuple[str, list[ZipMember]]:
    """The archive's label and its file members, from a path or the archive's bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        archive = name or "archive.zip"
    elif isinstance(source, (str, os.PathLike)):
        path = pathlib.Path(source)
        archive = name or path.name
        data = _read_archive(path, archive, (limits or ZipLimits()).max_archive_bytes)
    else:
        raise InvalidImageError(
            f"Image.from_zip needs a path or bytes, not {type(source).__name__}"
        )
    return archive, read_zip_members(data, archive=archive, limits=limits)
