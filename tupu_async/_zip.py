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
import zipfile
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._exceptions import InvalidImageError

if TYPE_CHECKING:
    from ._images import Image

__all__ = ["ZipLimits", "ZipMember", "images_from_zip", "is_zip", "read_zip_members"]

_CHUNK = 64 * 1024
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


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
            members.append(ZipMember(info.filename, content))
    return members


def images_from_zip(
    source: bytes | str | os.PathLike[str],
    *,
    tag: str | None = None,
    name: str | None = None,
    limits: ZipLimits | None = None,
) -> list[Image]:
    """One ``Image`` per file member, named ``<archive name>/<member path>``."""
    from ._images import Image

    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        archive = name or "archive.zip"
    elif isinstance(source, (str, os.PathLike)):
        path = pathlib.Path(source)
        archive = name or path.name
        try:
            size = path.stat().st_size
            if size > (limits or ZipLimits()).max_archive_bytes:
                raise _refuse(archive, f"{size:,} bytes is over ZipLimits.max_archive_bytes")
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidImageError(f"{archive}: no such file") from None
        except IsADirectoryError:
            raise InvalidImageError(f"{archive}: is a directory, not a ZIP file") from None
        except OSError as exc:
            raise InvalidImageError(f"{archive}: cannot read the file ({exc.strerror})") from None
    else:
        raise InvalidImageError(
            f"Image.from_zip needs a path or bytes, not {type(source).__name__}"
        )
    return [
        Image.from_bytes(member.data, name=f"{archive}/{member.name}", tag=tag)
        for member in read_zip_members(data, archive=archive, limits=limits)
    ]
