"""Checking what callers pass to ``client.libraries``, and planning its requests.

Bad input raises ``InvalidInputError`` (a ``ValueError``), or ``InvalidImageError`` for
image content and URLs, before anything is sent.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar, Union

import msgspec

from .._constants import ACCEPTED_FORMATS, LIBRARY_NAME_MAX_CHARS
from .._exceptions import InvalidImageError, InvalidInputError
from .._files import open_regular_file, read_regular_file
from .._images import display_path, sniff_format
from .._requests import BASE64_BODY_OVERHEAD
from .._urls import check_image_url, shown
from ._types import ImageLibrary

__all__ = [
    "ContentSource",
    "SyncSource",
    "UploadItem",
    "check_names",
    "check_sendable",
    "check_url",
    "folder_images",
    "library_id_of",
    "name_value_pairs",
    "plan_chunks",
    "read_or_error",
    "to_upload_item",
    "upload_body_base",
    "upload_cost",
]

T = TypeVar("T")

ContentSource = Union[bytes, bytearray, memoryview, "os.PathLike[str]"]
"""Content for ``add_images``: image bytes, or the path of an image file."""
SyncSource = ContentSource | str
"""A desired image in ``sync_library``: bytes, a ``PathLike`` file, or an http(s) URL ``str``."""

_HEADER_BYTES = 32

_encode = msgspec.json.Encoder().encode


def library_id_of(library: str | ImageLibrary) -> str:
    """The id of ``library`` (an id, or an :class:`ImageLibrary`); InvalidInputError when
    empty or not sendable text."""
    if isinstance(library, ImageLibrary):
        library = library.id
    if not isinstance(library, str) or not library.strip():
        raise InvalidInputError(
            "library_id is empty: pass the image library's id (see client.libraries.search() "
            "or the console's 图片名单库 page)"
        )
    check_sendable(library, "library_id")
    return library


def check_sendable(text: str, what: str) -> None:
    """Raise InvalidInputError when ``text`` (described by ``what``) has an unpaired
    surrogate, which cannot be encoded for sending."""
    if text != display_path(text):
        raise InvalidInputError(
            f"{what} {display_path(text)[:40]!r} has an unpaired surrogate, which cannot be "
            f"sent: pass valid Unicode text"
        )


def check_names(names: Sequence[str], what: str) -> None:
    """Raise InvalidInputError unless every name is a non-empty str within the limit, and unique."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise InvalidInputError(
                f"{what}: image names must be str, got {type(name).__name__} {name!r}"
            )
        if not name.strip():
            raise InvalidInputError(f"{what}: an image name is empty: give every image a name")
        check_sendable(name, f"{what}: the image name")
        if len(name) > LIBRARY_NAME_MAX_CHARS:
            raise InvalidInputError(
                f"{what}: the image name {name[:40]!r}… is {len(name)} characters; the API "
                f"allows at most {LIBRARY_NAME_MAX_CHARS}"
            )
        if name in seen:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        repeated = ", ".join(repr(n) for n in duplicates[:5])
        raise InvalidInputError(
            f"{what}: image names must be unique within one call; repeated: {repeated}"
            + (f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else "")
        )


def name_value_pairs(
    items: Mapping[str, T] | Iterable[tuple[str, T]], what: str
) -> list[tuple[str, T]]:
    """``{name: value}`` or ``[(name, value), ...]`` as a list of pairs, in order."""
    if isinstance(items, Mapping):
        return list(items.items())
    if isinstance(items, (str, bytes)):
        raise InvalidInputError(
            f"{what} takes a mapping {{name: value}} or a list of (name, value) pairs"
        )
    if not isinstance(items, Iterable):
        raise InvalidInputError(
            f"{what} takes a mapping {{name: value}} or a list of (name, value) pairs, "
            f"not {type(items).__name__}"
        )
    pairs: list[tuple[str, T]] = []
    for entry in items:
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise InvalidInputError(
                f"{what} takes a mapping {{name: value}} or a list of (name, value) pairs, "
                f"got the entry {entry!r}"
            )
        pairs.append(entry)
    return pairs


def check_url(name: str, url: object) -> str:
    """``url`` when it follows the image URL rule of ``_urls``; InvalidImageError otherwise."""
    return check_image_url(
        url, where=f"image {name!r}: ", local="use add_images for local files and bytes"
    )


@dataclass(frozen=True, slots=True)
class UploadItem:
    """One validated ``add_images`` item: its bytes, or a file read when its chunk is sent."""

    name: str
    size: int
    data: bytes | None = None
    path: pathlib.Path | None = None

    def read(self) -> bytes:
        """The content; a file is read again, and must still be the size it was checked at."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        where = f"image {self.name!r}: {display_path(self.path)}"

        def changed(size: int) -> InvalidImageError:
            return InvalidImageError(f"{where} grew to {size:,} bytes since it was checked")

        data = read_regular_file(self.path, where, limit=self.size, too_large=changed)
        _check_content(self.name, data[:_HEADER_BYTES], len(data), display_path(self.path))
        return data


def _check_content(name: str, head: bytes, size: int, where: str) -> None:
    if size == 0:
        raise InvalidImageError(f"image {name!r}: {where} is empty (0 bytes)")
    fmt = sniff_format(head)
    if fmt is None or fmt not in ACCEPTED_FORMATS:
        raise InvalidImageError(
            f"image {name!r}: {where} is not an image format the API accepts (jpeg, png, "
            f"bmp, tiff, webp, gif, heif): convert it first"
        )


def to_upload_item(name: str, value: object) -> UploadItem:
    """Validate one ``add_images`` value (reads only the head of a file)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        _check_content(name, data[:_HEADER_BYTES], len(data), "the content")
        return UploadItem(name, len(data), data=data)
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        raise InvalidImageError(
            f"image {name!r}: {shown(value)} is a URL: add URLs with add_urls, which lets "
            f"the service download them"
        )
    if isinstance(value, str):
        # As in recognition: a str is never read as a file (web apps pass user strings).
        raise InvalidImageError(
            f"image {name!r}: a str is never read as a local file; pass files as "
            f"pathlib.Path(...) (and URLs to add_urls)"
        )
    if isinstance(value, os.PathLike):
        path = pathlib.Path(value)
        where = display_path(path)
        with open_regular_file(path, f"image {name!r}: {where}") as (fd, size):
            try:
                head = os.read(fd, _HEADER_BYTES)
            except OSError as exc:
                raise InvalidImageError(
                    f"image {name!r}: cannot read {where} ({exc.strerror or exc})"
                ) from None
        _check_content(name, head, size, where)
        return UploadItem(name, size, path=path)
    raise InvalidImageError(
        f"image {name!r}: add_images takes bytes or a file path, not {type(value).__name__}"
    )


def _base64_len(size: int) -> int:
    return 4 * ((size + 2) // 3)


def upload_cost(item: UploadItem) -> int:
    """Bytes one item adds to a base64 upload body (its JSON object and a comma)."""
    return len(_encode({"name": item.name, "content": ""})) + _base64_len(item.size) + 1


def upload_body_base(library_id: str, secret_id: str) -> int:
    """Bytes a base64 upload body for ``library_id`` costs before any item."""
    return (
        len(_encode({"imageLibraryId": library_id, "images": []}))
        + len(_encode(secret_id))
        + BASE64_BODY_OVERHEAD
    )


def folder_images(folder: pathlib.Path) -> tuple[dict[str, UploadItem], list[str]]:
    """The image files directly in ``folder`` by file name, and the other files skipped.

    Hidden files (``.name``) and subfolders are ignored; a file that is not an image the
    API accepts, or cannot be read, is skipped.
    """
    if not folder.is_dir():
        raise InvalidInputError(
            f"{folder} is not a directory: pass a folder of images or a mapping"
        )
    images: dict[str, UploadItem] = {}
    skipped: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            images[path.name] = to_upload_item(path.name, path)
        except InvalidImageError:
            skipped.append(path.name)
    return images, skipped


def read_or_error(item: UploadItem) -> bytes | InvalidImageError:
    """The item's bytes, or the error that makes it unsendable (the file changed)."""
    try:
        return item.read()
    except InvalidImageError as exc:
        return exc
    except OSError as exc:
        return InvalidImageError(
            f"image {item.name!r}: cannot read {item.path} any more ({exc.strerror or exc})"
        )


def plan_chunks(
    costs: Sequence[int], *, max_items: int, max_bytes: int | None = None, base_bytes: int = 0
) -> list[range]:
    """Split items into the fewest consecutive chunks of at most ``max_items`` items and
    ``max_bytes`` bytes.

    ``costs[i]`` is what item ``i`` adds to a request body and ``base_bytes`` what every
    body costs before any item. An item that alone breaks ``max_bytes`` gets a chunk of
    its own.
    """
    if max_items < 1:
        raise ValueError("max_items must be >= 1")
    chunks: list[range] = []
    start = 0
    size = base_bytes
    for i, cost in enumerate(costs):
        count = i - start
        if count and (count >= max_items or (max_bytes is not None and size + cost > max_bytes)):
            chunks.append(range(start, i))
            start = i
            size = base_bytes
        size += cost
    if start < len(costs):
        chunks.append(range(start, len(costs)))
    return chunks
