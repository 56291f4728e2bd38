"""Image inputs: the ``Image`` type, normalisation of what callers pass, and validation.

Everything here happens before a request is sent: a bad input becomes an
``InvalidImageError`` that says what to do, and is never sent. A ``str`` is only ever a
URL (see ``_urls``); files come as ``os.PathLike`` or ``Image.from_path`` and are read by
``_files.read_regular_file`` (regular files only, bounded in size and time).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
from collections.abc import Callable
from typing import ClassVar, Final, Literal, Union

import anyio
import msgspec

from ._constants import MAX_IMAGE_BYTES
from ._exceptions import InvalidImageError
from ._files import FILE_READ_TIMEOUT, read_regular_file
from ._formats import accepted_format, animated_format, gif_frame_count, sniff_format
from ._urls import MAX_URL_LENGTH, check_image_url, shown
from ._zip import ZipLimits, read_zip_source

__all__ = [
    "MAX_FIELD_CHARS",
    "MAX_TRANSFORM_INPUT_BYTES",
    "ContentTransform",
    "Image",
    "ImageInput",
    "PreparedImage",
    "check_image",
    "display_path",
    "gif_frame_count",
    "load_image",
    "prepare_url_str",
    "read_path",
    "read_path_in_thread",
    "sniff_format",
    "to_image",
]

ImageKind = Literal["url", "path", "bytes"]
ContentTransform = Callable[[bytes, str, str], bytes]
"""``transform(content, format, name) -> content``: e.g. the optional resizer."""

MAX_TRANSFORM_INPUT_BYTES: Final = 64 * 1024 * 1024
"""Largest content read for a transform (``resize=True``): bigger files are refused unread."""
MAX_FIELD_CHARS: Final = MAX_URL_LENGTH
"""Longest ``name``, ``tag`` or ``sequence_id`` sent: one huge field must not sink its batch."""
_KINDS: Final = ("url", "path", "bytes")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

_MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "webp": "image/webp",
    "heif": "image/heif",
}
_EXT = {
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "bmp": "bmp",
    "tiff": "tif",
    "webp": "webp",
    "heif": "heic",
}


def _text_problem(value: object, what: str) -> str | None:
    """Why ``value`` cannot be an image's ``what`` (name, tag, sequence_id), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{what} must be a str, not {type(value).__name__}"
    if len(value) > MAX_FIELD_CHARS:
        return f"{what} is {len(value):,} characters long, over the {MAX_FIELD_CHARS} allowed"
    bad = _SURROGATE.search(value)
    if bad is not None:
        return (
            f"{what} has an unpaired surrogate ({bad.group()!r}) at position {bad.start()}, "
            f"which cannot be sent as UTF-8: pass valid Unicode text"
        )
    return None


def _check_fields(name: object, tag: object, sequence_id: object) -> None:
    """Constructor checks: ``TypeError`` for a wrong type, ``InvalidImageError`` for text."""
    for value, what in ((name, "name"), (tag, "tag"), (sequence_id, "sequence_id")):
        problem = _text_problem(value, what)
        if problem is not None:
            raise (InvalidImageError if isinstance(value, str) else TypeError)(problem)


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` (or any text) printable: bytes that are not UTF-8 show as ``\\xNN`` escapes.

    File names that are not UTF-8 reach Python as unpaired surrogates, which no UTF-8
    sink (a JSON file, a terminal, the multipart body) can encode.
    """
    text = str(path)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that did not come from undecodable bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Image:
    """One image to recognise: a URL the service downloads, a local file, or bytes.

    Build it with :meth:`from_url`, :meth:`from_path` or :meth:`from_bytes`. ``tag`` is
    the image's custom description (it overrides ``tags=`` on the call) and
    ``sequence_id`` its continuous-frame group id. Constructors raise ``TypeError`` for
    a wrong argument type and ``InvalidImageError`` for a bad value; everything is
    checked again when the image is loaded, so a changed attribute cannot slip through.
    """

    __slots__ = ("data", "kind", "name", "path", "sequence_id", "tag", "url")

    def __init__(
        self,
        kind: ImageKind,
        *,
        url: str | None = None,
        path: pathlib.Path | None = None,
        data: bytes | None = None,
        name: str | None = None,
        tag: str | None = None,
        sequence_id: str | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"Image kind must be 'url', 'path' or 'bytes', not {kind!r}")
        _check_fields(name, tag, sequence_id)
        self.kind: ImageKind = kind
        self.url = url
        self.path = path
        self.data = data
        self.name = name
        self.tag = tag
        self.sequence_id = sequence_id

    @classmethod
    def from_url(cls, url: str, *, tag: str | None = None, sequence_id: str | None = None) -> Image:
        """An image the service downloads; ``InvalidImageError`` when ``url`` breaks the rule."""
        check_image_url(url)
        return cls("url", url=url, name=url, tag=tag, sequence_id=sequence_id)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        tag: str | None = None,
        sequence_id: str | None = None,
    ) -> Image:
        """A local file, read when its request is built; ``name`` defaults to the path."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"Image.from_path needs a str or os.PathLike, not {type(path).__name__}"
            )
        p = pathlib.Path(path)
        return cls(
            "path",
            path=p,
            name=name if name is not None else display_path(p),
            tag=tag,
            sequence_id=sequence_id,
        )

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        name: str | None = None,
        tag: str | None = None,
        sequence_id: str | None = None,
    ) -> Image:
        """Image content; unnamed content gets a stable name derived from its bytes."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidImageError(f"Image.from_bytes needs bytes, not {type(data).__name__}")
        return cls("bytes", data=bytes(data), name=name, tag=tag, sequence_id=sequence_id)

    @classmethod
    def from_zip(
        cls,
        source: bytes | str | os.PathLike[str],
        *,
        tag: str | None = None,
        name: str | None = None,
        limits: ZipLimits | None = None,
    ) -> list[Image]:
        """One image per file member of a ZIP archive (a path or bytes), in archive order.

        Members are named ``archive.zip/member.png`` (``name`` overrides the archive
        part). The archive is inflated in memory under ``limits`` (see ``ZipLimits``); a
        zip bomb, an encrypted member or a symlink raises ``InvalidImageError``.
        """
        archive, members = read_zip_source(source, name=name, limits=limits)
        return [cls.from_bytes(m.data, name=f"{archive}/{m.name}", tag=tag) for m in members]

    def __repr__(self) -> str:
        where = (
            self.url
            if self.kind == "url"
            else self.path
            if self.kind == "path"
            else (f"<{len(self.data or b'')} bytes>")
        )
        return f"Image.{self.kind}({where!r}, name={self.name!r}, tag={self.tag!r})"


ImageInput = Union[str, "os.PathLike[str]", bytes, Image]
"""What every call accepts for one image."""


def to_image(item: object) -> Image:
    """Normalise one input (URL str, path, bytes or ``Image``) without any I/O.

    A ``str`` is only ever a URL: one that is not is refused without looking at the file
    system, so the message never tells whether such a file exists.
    """
    if isinstance(item, Image):
        return item
    if isinstance(item, str):
        check_image_url(item)
        return Image("url", url=item, name=item)
    if isinstance(item, os.PathLike):
        try:
            return Image.from_path(item)
        except (TypeError, ValueError) as exc:
            raise InvalidImageError(f"not a usable file path ({exc})") from None
    if isinstance(item, (bytes, bytearray, memoryview)):
        return Image.from_bytes(bytes(item))
    raise InvalidImageError(
        f"cannot recognise a {type(item).__name__}: pass a URL str, a pathlib.Path, bytes or "
        f"tupu_async.Image"
    )


class PreparedImage(msgspec.Struct, eq=False):
    """An input that passed validation, ready to be packed into a request.

    ``content`` is None for URL images. ``name`` is the name reported back; ``wire_name``
    the one the service sees (default ``name``; an upload's is made a safe file name).
    """

    __slots__: ClassVar[tuple[str, ...]]  # made by msgspec; declared for type checkers

    index: int
    name: str
    url: str | None = None
    content: bytes | None = None
    format: str | None = None
    wire_name: str = ""
    tag: str | None = None
    sequence_id: str | None = None

    def __post_init__(self) -> None:
        wire = self.wire_name or self.name
        self.wire_name = safe_filename(wire) if self.content is not None else wire

    @property
    def is_url(self) -> bool:
        return self.url is not None

    @property
    def mime_type(self) -> str:
        return _MIME.get(self.format or "", "application/octet-stream")

    def __repr__(self) -> str:
        return f"PreparedImage(index={self.index}, name={self.name!r})"


def _too_large(name: str, size: int, max_bytes: int, hint: str) -> InvalidImageError:
    return InvalidImageError(
        f"{name}: {size:,} bytes is over the API's {max_bytes:,}-byte (1 MiB) limit "
        f"per image: {hint}"
    )


_RESIZE_HINT = (
    "resize it so its longest side is 256-512 px (pass resize=True, needs the "
    "tupu-async[images] extra), or send it by URL"
)


def _validate_content(
    data: bytes, name: str, transform: ContentTransform | None, max_bytes: int
) -> tuple[bytes, str]:
    if not data:
        raise InvalidImageError(f"{name}: the image is empty (0 bytes)")
    fmt = accepted_format(data)
    if fmt is None:
        raise InvalidImageError(
            f"{name}: not an image format the Tupu API accepts (jpeg, png, bmp, tiff, webp, "
            f"static gif, heif): convert it first"
        )
    if animated_format(data, fmt):
        raise InvalidImageError(
            f"{name}: an animated {fmt.upper()}; image recognition takes static images only: "
            f"send animations to Tupu's video recognition API instead, or extract a frame"
        )
    if transform is not None:
        if len(data) > MAX_TRANSFORM_INPUT_BYTES:
            raise InvalidImageError(
                f"{name}: {len(data):,} bytes is over the {MAX_TRANSFORM_INPUT_BYTES:,}-byte "
                f"limit for resizing: downscale it before sending"
            )
        data = transform(data, fmt, name)
        fmt = sniff_format(data) or fmt
    if len(data) > max_bytes:
        hint = _RESIZE_HINT if transform is None else "it is still too large after resizing"
        raise _too_large(name, len(data), max_bytes, hint)
    return data, fmt


_UNSAFE_IN_FILENAME = re.compile(r'["\\\x00-\x1f\x7f\ud800-\udfff]')


def safe_filename(name: str) -> str:
    """The upload file name the service can echo back unchanged.

    Quotes, backslashes, control characters and unpaired surrogates do not survive a
    multipart round trip (parsers unescape them differently, or cannot encode them), so
    they become ``_`` on the wire; the result still reports the original name.
    """
    return _UNSAFE_IN_FILENAME.sub("_", name) or "image"


def generated_name(data: bytes, fmt: str) -> str:
    """A stable name for unnamed bytes: the same content always gets the same name."""
    return f"image-{hashlib.blake2b(data, digest_size=8).hexdigest()}.{_EXT.get(fmt, 'img')}"


def check_image(image: object, tag: object) -> tuple[Image, str | None]:
    """``image`` and its effective tag, every field re-checked: ``InvalidImageError`` if bad."""
    if not isinstance(image, Image) or image.kind not in _KINDS:
        raise InvalidImageError(
            f"cannot recognise a {type(image).__name__}: pass a URL str, a pathlib.Path, "
            f"bytes or tupu_async.Image"
        )
    tag = image.tag if image.tag is not None else tag
    for value, what in ((image.name, "name"), (tag, "tag"), (image.sequence_id, "sequence_id")):
        problem = _text_problem(value, what)
        if problem is not None:
            label = image.name if isinstance(image.name, str) else "image"
            raise InvalidImageError(f"{shown(display_path(label))}: {problem}")
    return image, tag  # type: ignore[return-value]


def read_path(
    image: Image, *, transform: ContentTransform | None = None, max_bytes: int = MAX_IMAGE_BYTES
) -> bytes:
    """The content of a path image: a regular file of at most the applicable limit.

    The limit is ``max_bytes`` without a transform and ``MAX_TRANSFORM_INPUT_BYTES`` with
    one; a larger file is refused unread. Raises ``InvalidImageError``.
    """
    path = image.path
    name = image.name or "image"
    if not isinstance(path, (str, os.PathLike)):
        kind = type(path).__name__
        raise InvalidImageError(f"{name}: a path image needs a pathlib.Path, not {kind}")
    if transform is None:
        limit = max_bytes

        def too_large(size: int) -> InvalidImageError:
            return _too_large(name, size, max_bytes, _RESIZE_HINT)

    else:
        limit = max(max_bytes, MAX_TRANSFORM_INPUT_BYTES)

        def too_large(size: int) -> InvalidImageError:
            return InvalidImageError(
                f"{name}: {size:,} bytes is over the {limit:,}-byte limit for resizing: "
                f"downscale it before sending"
            )

    return read_regular_file(path, name, limit=limit, too_large=too_large)


_ABANDON_GRACE: Final = 5.0
"""Seconds past ``FILE_READ_TIMEOUT`` before a read stuck in the kernel is abandoned."""


async def read_path_in_thread(
    image: Image, *, transform: ContentTransform | None = None, max_bytes: int = MAX_IMAGE_BYTES
) -> bytes:
    """:func:`read_path` in a worker thread, never awaited for much longer than its timeout.

    A read blocked in the kernel (a hung network mount) cannot be interrupted: its
    thread is abandoned and the image fails with ``InvalidImageError``, so the run goes on.
    """
    with anyio.move_on_after(FILE_READ_TIMEOUT + _ABANDON_GRACE):
        return await anyio.to_thread.run_sync(
            lambda: read_path(image, transform=transform, max_bytes=max_bytes),
            abandon_on_cancel=True,
        )
    raise InvalidImageError(
        f"{image.name}: reading the file did not finish within {FILE_READ_TIMEOUT:g} s; copy "
        f"it to a local disk, or send it as bytes"
    )


def prepare_url_str(url: str, index: int, tag: str | None) -> PreparedImage:
    """A URL passed as a plain ``str``, checked once: what ``load_image(to_image(url))`` gives.

    Such an image is built here and never seen by the caller, so it cannot change between
    checks and needs no second pass. Raises ``InvalidImageError`` only.
    """
    _, tag = check_image(to_image(url), tag)
    return PreparedImage(index, url, url=url, tag=tag)


def load_image(
    image: Image,
    index: int,
    tag: str | None,
    *,
    transform: ContentTransform | None = None,
    max_bytes: int = MAX_IMAGE_BYTES,
    content: bytes | None = None,
) -> PreparedImage:
    """Read (for paths) and validate one image. Raises ``InvalidImageError`` only.

    ``content`` is a path image's content when the caller has read it already (with
    :func:`read_path`).
    """
    image, tag = check_image(image, tag)
    if image.kind == "url":
        url = check_image_url(image.url)
        return PreparedImage(index, url, url=url, tag=tag, sequence_id=image.sequence_id)
    if image.kind == "path":
        if content is None:
            content = read_path(image, transform=transform, max_bytes=max_bytes)
        name = image.name or display_path(str(image.path))
        data, fmt = _validate_content(content, name, transform, max_bytes)
        return PreparedImage(
            index,
            name,
            content=data,
            format=fmt,
            wire_name=pathlib.Path(image.path or "image").name,
            tag=tag,
            sequence_id=image.sequence_id,
        )
    raw = image.data
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise InvalidImageError(
            f"{image.name or f'image #{index}'}: content must be bytes, not {type(raw).__name__}"
        )
    label = image.name or f"image #{index}"
    data, fmt = _validate_content(bytes(raw), label, transform, max_bytes)
    name = image.name or generated_name(data, fmt)
    return PreparedImage(
        index,
        name,
        content=data,
        format=fmt,
        wire_name=name,
        tag=tag,
        sequence_id=image.sequence_id,
    )


def tag_for(tags: list[str] | None, index: int) -> str | None:
    """The call-level tag of input ``index``, tail-completed: the last tag repeats."""
    if not tags:
        return None
    return tags[index] if index < len(tags) else tags[-1]
