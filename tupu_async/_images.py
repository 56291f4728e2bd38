"""Image inputs: the ``Image`` type, normalisation of what callers pass, and validation.

Everything here happens before a request is sent: a bad input becomes an
``InvalidImageError`` that says what to do, and is never sent.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Union

from ._constants import ACCEPTED_FORMATS, MAX_IMAGE_BYTES
from ._exceptions import InvalidImageError

if TYPE_CHECKING:
    from ._zip import ZipLimits

__all__ = [
    "ContentTransform",
    "Image",
    "ImageInput",
    "PreparedImage",
    "load_image",
    "sniff_format",
    "to_image",
]

ImageKind = Literal["url", "path", "bytes"]
ContentTransform = Callable[[bytes, str, str], bytes]
"""``transform(content, format, name) -> content``: e.g. the optional resizer."""

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


class Image:
    """One image to recognise: a URL the service downloads, a local file, or bytes.

    Build it with :meth:`from_url`, :meth:`from_path` or :meth:`from_bytes`. ``tag`` is
    the image's custom description (it overrides ``tags=`` on the call) and
    ``sequence_id`` its continuous-frame group id.
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
        self.kind: ImageKind = kind
        self.url = url
        self.path = path
        self.data = data
        self.name = name
        self.tag = tag
        self.sequence_id = sequence_id

    @classmethod
    def from_url(cls, url: str, *, tag: str | None = None, sequence_id: str | None = None) -> Image:
        _check_url(url)
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
        p = pathlib.Path(path)
        return cls("path", path=p, name=name or str(p), tag=tag, sequence_id=sequence_id)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        name: str | None = None,
        tag: str | None = None,
        sequence_id: str | None = None,
    ) -> Image:
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
        from ._zip import images_from_zip

        return images_from_zip(source, tag=tag, name=name, limits=limits)

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


def _is_http_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def _check_url(url: str) -> None:
    if not isinstance(url, str) or not _is_http_url(url):
        raise InvalidImageError(
            f"{url!r} is not an http(s) URL: pass a URL starting with http:// or https://, "
            f"or a local file as pathlib.Path"
        )
    rest = url.split("://", 1)[1]
    if not rest or rest.startswith("/") or any(c in url for c in " \r\n\t"):
        raise InvalidImageError(
            f"{url!r} is not a usable URL (no host, or whitespace in it): percent-encode it"
        )


def to_image(item: object) -> Image:
    """Normalise one input (str, path, bytes or ``Image``) without any I/O but a stat."""
    if isinstance(item, Image):
        return item
    if isinstance(item, str):
        if _is_http_url(item):
            return Image.from_url(item)
        if item and os.path.isfile(item):
            return Image.from_path(item)
        raise InvalidImageError(
            f"{item[:200]!r} is neither an http(s) URL nor an existing file: pass URLs with "
            f"their http:// or https:// scheme, and files as pathlib.Path or an existing path"
        )
    if isinstance(item, os.PathLike):
        return Image.from_path(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return Image.from_bytes(bytes(item))
    raise InvalidImageError(
        f"cannot recognise a {type(item).__name__}: pass a URL str, a pathlib.Path, bytes or "
        f"tupu_async.Image"
    )


def sniff_format(data: bytes) -> str | None:
    """The image format from its magic bytes, or None when it is not one we know."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (
        b"heic",
        b"heix",
        b"mif1",
        b"msf1",
        b"heim",
        b"heis",
        b"hevc",
        b"avif",
    ):
        return "heif"
    return None


def gif_frame_count(data: bytes, stop_after: int = 2) -> int:
    """Frames in a GIF (counting stops at ``stop_after``); 0 when the GIF is malformed."""
    try:
        pos = 13
        flags = data[10]
        if flags & 0x80:
            pos += 3 * (2 ** ((flags & 0x07) + 1))
        frames = 0
        while pos < len(data):
            block = data[pos]
            if block == 0x3B:  # trailer
                break
            if block == 0x21:  # extension: label, then sub-blocks
                pos += 2
            elif block == 0x2C:  # image descriptor
                frames += 1
                if frames >= stop_after:
                    return frames
                local = data[pos + 9]
                pos += 10
                if local & 0x80:
                    pos += 3 * (2 ** ((local & 0x07) + 1))
                pos += 1  # LZW minimum code size
            else:
                return frames
            while True:  # sub-blocks
                size = data[pos]
                pos += 1
                if size == 0:
                    break
                pos += size
        return frames
    except IndexError:
        return 0


class PreparedImage:
    """An input that passed validation, ready to be packed into a request.

    ``content`` is None for URL images; ``wire_name`` is the name the service sees (the
    URL, or the file name of an upload) and ``name`` the one reported back.
    """

    __slots__ = ("content", "format", "index", "name", "sequence_id", "tag", "url", "wire_name")

    def __init__(
        self,
        index: int,
        name: str,
        *,
        url: str | None = None,
        content: bytes | None = None,
        format: str | None = None,
        wire_name: str | None = None,
        tag: str | None = None,
        sequence_id: str | None = None,
    ) -> None:
        self.index = index
        self.name = name
        self.url = url
        self.content = content
        self.format = format
        wire = wire_name if wire_name is not None else name
        self.wire_name = safe_filename(wire) if content is not None else wire
        self.tag = tag
        self.sequence_id = sequence_id

    @property
    def is_url(self) -> bool:
        return self.url is not None

    @property
    def mime_type(self) -> str:
        return _MIME.get(self.format or "", "application/octet-stream")

    def __repr__(self) -> str:
        return f"PreparedImage(index={self.index}, name={self.name!r})"


def _validate_content(
    data: bytes, name: str, transform: ContentTransform | None, max_bytes: int
) -> tuple[bytes, str]:
    if not data:
        raise InvalidImageError(f"{name}: the image is empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None or fmt not in ACCEPTED_FORMATS:
        raise InvalidImageError(
            f"{name}: not an image format the Tupu API accepts (jpeg, png, bmp, tiff, webp, "
            f"static gif, heif): convert it first"
        )
    if fmt == "gif" and gif_frame_count(data) > 1:
        raise InvalidImageError(
            f"{name}: an animated GIF; image recognition takes static images only: send "
            f"animated GIFs to Tupu's video recognition API instead, or extract a frame"
        )
    if transform is not None:
        data = transform(data, fmt, name)
        fmt = sniff_format(data) or fmt
    if len(data) > max_bytes:
        hint = (
            "resize it so its longest side is 256-512 px (pass resize=True, needs the "
            "tupu-async[images] extra), or send it by URL"
            if transform is None
            else "it is still too large after resizing"
        )
        raise InvalidImageError(
            f"{name}: {len(data):,} bytes is over the API's {max_bytes:,}-byte (1 MiB) limit "
            f"per image: {hint}"
        )
    return data, fmt


_UNSAFE_IN_FILENAME = re.compile(r'["\\\x00-\x1f\x7f]')


def safe_filename(name: str) -> str:
    """The upload file name the service can echo back unchanged.

    Quotes, backslashes and control characters do not survive a multipart round trip
    (parsers unescape them differently), so they become ``_`` on the wire; the result
    still reports the original name.
    """
    return _UNSAFE_IN_FILENAME.sub("_", name) or "image"


def generated_name(data: bytes, fmt: str) -> str:
    """A stable name for unnamed bytes: the same content always gets the same name."""
    return f"image-{hashlib.blake2b(data, digest_size=8).hexdigest()}.{_EXT.get(fmt, 'img')}"


def load_image(
    image: Image,
    index: int,
    tag: str | None,
    *,
    transform: ContentTransform | None = None,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> PreparedImage:
    """Read (for paths) and validate one image. Raises ``InvalidImageError``."""
    tag = image.tag if image.tag is not None else tag
    if tag is not None and not isinstance(tag, str):
        raise InvalidImageError(f"tag {tag!r} must be a str")
    if image.kind == "url":
        assert image.url is not None
        _check_url(image.url)
        return PreparedImage(
            index, image.url, url=image.url, tag=tag, sequence_id=image.sequence_id
        )
    if image.kind == "path":
        assert image.path is not None
        path = image.path
        name = image.name or str(path)
        try:
            size = path.stat().st_size
            if transform is None and size > max_bytes:
                raise InvalidImageError(
                    f"{name}: {size:,} bytes is over the API's {max_bytes:,}-byte (1 MiB) limit "
                    f"per image: resize it so its longest side is 256-512 px (pass resize=True, "
                    f"needs the tupu-async[images] extra)"
                )
            data = path.read_bytes()
        except IsADirectoryError:
            raise InvalidImageError(f"{name}: is a directory, not an image file") from None
        except FileNotFoundError:
            raise InvalidImageError(f"{name}: no such file") from None
        except PermissionError:
            raise InvalidImageError(f"{name}: permission denied; check the file's mode") from None
        except OSError as exc:
            raise InvalidImageError(f"{name}: cannot read the file ({exc.strerror})") from None
        data, fmt = _validate_content(data, name, transform, max_bytes)
        return PreparedImage(
            index,
            name,
            content=data,
            format=fmt,
            wire_name=path.name,
            tag=tag,
            sequence_id=image.sequence_id,
        )
    data = image.data or b""
    label = image.name or f"image #{index}"
    data, fmt = _validate_content(data, label, transform, max_bytes)
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
