"""The image-library (图片名单) management API: ``client.libraries``.

Holds the typed structs of the five management endpoints (:class:`ImageLibrary`,
:class:`LibraryImage`, :class:`LibraryItemOutcome`, :class:`LibrarySyncReport`), the
pure chunk planner (:func:`plan_chunks`), the lenient ``updatedAt`` parser
(:func:`parse_updated_at`) and the :class:`Libraries` resource that validates input,
splits it into requests within the API's limits, sends them through the client's
:class:`~tupu_async._sending.RequestSender` (limiter, fresh signature and retries per
attempt) and maps the answers back to one outcome per input item.

Responses come in two shapes: the plain JSON the docs show, and the signed envelope
``{"json": ..., "signature": ...}`` used by recognition. A signed one is verified with
the client's Tupu public key; a plain one is decoded as it is.
"""

from __future__ import annotations

import enum
import math
import os
import pathlib
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, Union

import anyio
import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ._constants import (
    ACCEPTED_FORMATS,
    LIBRARY_ADD_BASE64_PATH,
    LIBRARY_ADD_URLS_PATH,
    LIBRARY_DELETE_PATH,
    LIBRARY_IMAGES_PATH,
    LIBRARY_MAX_BODY_BYTES,
    LIBRARY_MAX_DELETES_PER_REQUEST,
    LIBRARY_MAX_IMAGES_PER_REQUEST,
    LIBRARY_MAX_URLS_PER_REQUEST,
    LIBRARY_NAME_MAX_CHARS,
    LIBRARY_SEARCH_PATH,
)
from ._envelope import excerpt, open_envelope
from ._exceptions import (
    APIError,
    ConfigurationError,
    InvalidImageError,
    MalformedResponseError,
    TupuError,
    error_for_code,
    error_for_http_status,
    is_fatal,
)
from ._images import sniff_format
from ._requests import BASE64_BODY_OVERHEAD, PreparedRequest, build_management_request
from ._retry import parse_retry_after
from ._sending import RequestSender

__all__ = [
    "ImageLibrary",
    "Libraries",
    "LibraryImage",
    "LibraryItemOutcome",
    "LibrarySyncReport",
    "LibraryType",
    "parse_updated_at",
    "plan_chunks",
]

T = TypeVar("T")

ContentSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]
"""Content for ``add_images``: image bytes, or the path of an image file."""
SyncSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]
"""A desired image in ``sync_library``: bytes, a file path, or an http(s) URL string."""

#: Outcome code for an item that never got a per-item answer from the service (its
#: request failed, or the service's answer left it out).
NO_ANSWER_CODE = -1
# Chunks of one call in flight at once (each still takes limiter permits per attempt);
# base64 uploads carry up to 100 MiB each, so fewer of them.
_CHUNK_CONCURRENCY = 4
_UPLOAD_CONCURRENCY = 2
_HEADER_BYTES = 32

_encode = msgspec.json.Encoder().encode


# --------------------------------------------------------------------------- structs


class LibraryType(enum.IntEnum):
    """An image library's ``type``: 0 a blacklist (block matches), 1 a whitelist (pass them)."""

    BLACK = 0
    WHITE = 1


class ImageLibrary(msgspec.Struct, kw_only=True, rename="camel"):
    """One image library (名单) as ``search`` returns it.

    ``type`` is the raw value (0 black, 1 white; see :attr:`library_type`), ``threshold``
    the similarity above which an image matches, ``status`` the library's state and
    ``images`` how many images it holds.
    """

    id: str
    name: str = ""
    type: int = 0
    threshold: float | None = None
    status: int | None = None
    images: int = 0

    @property
    def library_type(self) -> LibraryType | None:
        """``type`` as a :class:`LibraryType`, or None for a value this library does not know."""
        try:
            return LibraryType(self.type)
        except ValueError:
            return None

    @property
    def image_count(self) -> int:
        """How many images the library holds (the API calls this ``images``)."""
        return self.images


class LibraryImage(msgspec.Struct, kw_only=True, rename="camel"):
    """One image stored in a library, as ``list_images`` returns it.

    ``updated_at`` is timezone-aware, or None when the service sent no time or one that
    could not be read; ``updated_at_raw`` always keeps what the service sent.
    """

    name: str
    url: str | None = None
    updated_at: datetime | None = None
    updated_at_raw: str | None = None


class LibraryItemOutcome(msgspec.Struct, kw_only=True, rename="camel"):
    """What happened to one item of ``add_urls``, ``add_images`` or ``delete``.

    ``code`` is the service's status code for the item (0 success, 14 image error, ...),
    or ``-1`` when the item got no answer of its own (its request failed after retries,
    or the service's answer left it out); ``error`` says why it failed; ``url`` is where
    the service stored an added image. There is exactly one outcome per input item.
    """

    name: str
    code: int
    error: str = ""
    url: str | None = None

    @property
    def ok(self) -> bool:
        """True when the service reported success (code 0) for this item."""
        return self.code == 0


class LibrarySyncReport(msgspec.Struct, kw_only=True):
    """The difference ``sync_library`` found and what it did about it.

    ``added`` and ``deleted`` list the names that were added and deleted successfully (with
    ``dry_run`` True: the names that would be); ``unchanged`` the names present on both
    sides; ``failed`` one outcome per add or delete that did not succeed; ``skipped`` the
    files of a folder that are not images. Names are compared, not content.
    """

    library_id: str
    dry_run: bool
    added: list[str] = msgspec.field(default_factory=list)
    deleted: list[str] = msgspec.field(default_factory=list)
    unchanged: list[str] = msgspec.field(default_factory=list)
    failed: list[LibraryItemOutcome] = msgspec.field(default_factory=list)
    skipped: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def summary(self) -> str:
        verb = "would add" if self.dry_run else "added"
        gone = "would delete" if self.dry_run else "deleted"
        return (
            f"library {self.library_id}: {verb} {len(self.added)}, {gone} {len(self.deleted)}, "
            f"unchanged {len(self.unchanged)}, failed {len(self.failed)}, "
            f"skipped {len(self.skipped)}"
        )


# ------------------------------------------------------------------ updatedAt parsing

_TIME_PATTERN = re.compile(
    r"""
    (?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})
    (?:[T\s]+
      (?P<h>\d{1,2}):(?P<mi>\d{2})
      (?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?
    )?
    \s*(?P<off>Z|[+-]\d{2}(?::?\d{2})?)?
    (?:\s+(?P<zone>[A-Za-z][A-Za-z0-9_/+-]*|[+-]\d{2,4}))?
    (?:\s+m=[+-]?\d+(?:\.\d+)?)?
    """,
    re.VERBOSE,
)
_UTC_NAMES = frozenset({"UTC", "GMT", "Z", "UT"})
# Epoch numbers above this are milliseconds (1e11 seconds is the year 5138).
_EPOCH_MS_THRESHOLD = 1e11


def _parse_offset(text: str) -> timezone:
    if text == "Z":
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) > 2 else 0
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset out of range: {text}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_updated_at(value: object) -> datetime | None:
    """An aware ``datetime`` from the service's ``updatedAt``, or None. Never raises.

    Reads Go's ``time.Time.String()`` form the docs show (``2022-06-16 07:01:51.935 +0000
    UTC``, also without or with more fractional digits, and with a trailing ``m=+…``),
    ISO 8601 (``2022-06-16T07:01:51.935Z``, ``+08:00``) and Unix epoch numbers (seconds, or
    milliseconds when large). A time with no offset is taken as UTC unless it names a
    zone other than UTC/GMT, which cannot be resolved (None). Fractions finer than a
    microsecond are truncated. Anything else, or an impossible date, gives None.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds):
            return None
        if abs(seconds) >= _EPOCH_MS_THRESHOLD:
            seconds /= 1000.0
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _TIME_PATTERN.fullmatch(text)
    if match is None:
        if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            return parse_updated_at(float(text))
        return None
    try:
        offset, zone = match["off"], match["zone"]
        if offset is not None:
            tz = _parse_offset(offset)
        elif zone is None or zone.upper() in _UTC_NAMES:
            tz = timezone.utc
        elif zone[0] in "+-":
            tz = _parse_offset(zone)
        else:
            return None
        frac = (match["frac"] or "")[:6].ljust(6, "0")
        return datetime(
            int(match["y"]),
            int(match["mo"]),
            int(match["d"]),
            int(match["h"] or 0),
            int(match["mi"] or 0),
            int(match["s"] or 0),
            int(frac),
            tzinfo=tz,
        )
    except (ValueError, OverflowError):
        return None


# ------------------------------------------------------------------------ chunking


def plan_chunks(
    costs: Sequence[int], *, max_items: int, max_bytes: int | None = None, base_bytes: int = 0
) -> list[range]:
    """Split items into consecutive chunks of at most ``max_items`` items and ``max_bytes``.

    ``costs[i]`` is what item ``i`` adds to a request body and ``base_bytes`` what every
    body costs before any item. Chunks are filled greedily, in order, which gives the
    fewest possible chunks of consecutive items: every chunk but the last is closed only
    because its next item would break a limit. An item that alone breaks ``max_bytes``
    gets a chunk of its own (callers reject such items before planning).
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


# --------------------------------------------------------------- wire (responses)


class _WireOutcome(msgspec.Struct):
    code: Any = None
    error: Any = None
    name: Any = None
    url: Any = None


class _WireImage(msgspec.Struct, rename="camel"):
    name: Any = None
    url: Any = None
    updated_at: Any = None


_libraries_decoder = msgspec.json.Decoder(list[ImageLibrary] | None)
_images_decoder = msgspec.json.Decoder(list[_WireImage] | None)
_outcomes_decoder = msgspec.json.Decoder(list[_WireOutcome] | None)
_fields_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_any_decoder = msgspec.json.Decoder()


def _check_http_status(response: httpx.Response) -> None:
    status = response.status_code
    if status == 429 or status >= 500:
        raise error_for_http_status(
            status,
            excerpt(response.content),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )


def _error_in(fields: Mapping[str, msgspec.Raw], body: bytes | str, status: int) -> APIError | None:
    """The error a decoded management body reports, if any."""
    error = _any_decoder.decode(fields["error"]) if "error" in fields else None
    code = _any_decoder.decode(fields["code"]) if "code" in fields else None
    message = _any_decoder.decode(fields["message"]) if "message" in fields else None
    if isinstance(error, dict):
        code = error.get("code", code)
        message = error.get("message") or error.get("msg") or message
    elif error not in (None, "", 0, False):
        message = str(error) if not message else f"{message}: {error}"
    text = "" if message is None else str(message)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        return error_for_code(code, text, status_code=status)
    if error not in (None, "", 0, False):
        if status >= 400:
            return APIError(
                f"HTTP {status} from Tupu: {text or excerpt(body)!r}", status_code=status
            )
        return APIError(
            f"Tupu answered with an error: {text or excerpt(body)!r}", status_code=status
        )
    if status >= 400:
        return error_for_http_status(status, excerpt(body))
    return None


def _open_management_body(
    response: httpx.Response, public_key: RSAPublicKey | None
) -> dict[str, msgspec.Raw]:
    """The top-level fields of a management answer, verified if it came signed.

    Raises a classified ``TupuError`` for error statuses, error bodies and garbage.
    """
    _check_http_status(response)
    status = response.status_code
    content = response.content
    try:
        fields = _fields_decoder.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        if status >= 400:
            raise error_for_http_status(status, excerpt(content)) from None
        raise MalformedResponseError(
            f"expected a JSON object from the Tupu management API but got HTTP {status} "
            f"{excerpt(content)!r}",
            status_code=status,
            body_excerpt=excerpt(content),
        ) from None
    body: bytes | str = content
    if "json" in fields:
        text = open_envelope(content, public_key, status_code=status)
        try:
            fields = _fields_decoder.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise MalformedResponseError(
                f"the signed management answer is not a JSON object: {excerpt(text)!r}",
                status_code=status,
                body_excerpt=excerpt(text),
            ) from None
        body = text
    elif "signature" in fields:
        raise MalformedResponseError(
            "the management answer carries a signature but no signed 'json' text, so it "
            f"cannot be verified: {excerpt(content)!r}",
            status_code=status,
            body_excerpt=excerpt(content),
        )
    error = _error_in(fields, body, status)
    if error is not None:
        raise error
    return fields


def _decode_field(
    fields: Mapping[str, msgspec.Raw], key: str, decoder: msgspec.json.Decoder[list[T] | None]
) -> list[T] | None:
    """``fields[key]`` decoded; None when absent or null."""
    raw = fields.get(key)
    if raw is None:
        return None
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedResponseError(
            f"the management answer's {key!r} is not what the docs describe ({exc}): "
            f"{excerpt(bytes(raw))!r}",
            body_excerpt=excerpt(bytes(raw)),
        ) from None


def _to_library_image(wire: _WireImage) -> LibraryImage:
    raw = wire.updated_at
    return LibraryImage(
        name="" if wire.name is None else str(wire.name),
        url=None if wire.url is None else str(wire.url),
        updated_at=parse_updated_at(raw),
        updated_at_raw=None if raw is None else str(raw),
    )


def _as_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def _match_outcomes(
    names: Sequence[str], answers: list[_WireOutcome] | None
) -> list[LibraryItemOutcome]:
    """One outcome per name, in order, from the service's per-item answers.

    Answers are matched by name; answers without a name are matched by position when the
    answer has one entry per item. A name with no answer gets a failed outcome saying so.
    """
    if answers is None:
        return [
            LibraryItemOutcome(
                name=name,
                code=NO_ANSWER_CODE,
                error="the service's answer had no per-image list, so this image's outcome "
                "is unknown: list the library to check it",
            )
            for name in names
        ]
    by_name: dict[str, list[_WireOutcome]] = {}
    nameless = 0
    for entry in answers:
        if isinstance(entry.name, str) and entry.name:
            by_name.setdefault(entry.name, []).append(entry)
        else:
            nameless += 1
    positional = nameless == len(answers) and len(answers) == len(names)
    outcomes: list[LibraryItemOutcome] = []
    for position, name in enumerate(names):
        answer: _WireOutcome | None
        if positional:
            answer = answers[position]
        else:
            queue = by_name.get(name)
            answer = queue.pop(0) if queue else None
        if answer is None:
            outcomes.append(
                LibraryItemOutcome(
                    name=name,
                    code=NO_ANSWER_CODE,
                    error="the service's answer left this image out, so its outcome is unknown: "
                    "list the library to check it",
                )
            )
            continue
        code = _as_code(answer.code)
        error = "" if answer.error is None else str(answer.error)
        url = answer.url if isinstance(answer.url, str) and answer.url else None
        if code is None:
            outcomes.append(
                LibraryItemOutcome(
                    name=name,
                    code=NO_ANSWER_CODE,
                    url=url,
                    error=f"the service gave no status code for this image ({error or 'no error'})",
                )
            )
        else:
            outcomes.append(LibraryItemOutcome(name=name, code=code, error=error, url=url))
    return outcomes


# ------------------------------------------------------------- input validation


def _library_id(library: str | ImageLibrary) -> str:
    if isinstance(library, ImageLibrary):
        library = library.id
    if not isinstance(library, str) or not library.strip():
        raise ValueError(
            "library_id is empty: pass the image library's id (see client.libraries.search() "
            "or the console's 图片名单库 page)"
        )
    return library


def _check_names(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    duplicates: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{what}: image names must be str, got {type(name).__name__} {name!r}")
        if not name.strip():
            raise ValueError(f"{what}: an image name is empty: give every image a name")
        if len(name) > LIBRARY_NAME_MAX_CHARS:
            raise ValueError(
                f"{what}: the image name {name[:40]!r}… is {len(name)} characters; the API "
                f"allows at most {LIBRARY_NAME_MAX_CHARS}"
            )
        if name in seen:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        shown = ", ".join(repr(n) for n in duplicates[:5])
        raise ValueError(
            f"{what}: image names must be unique within one call; repeated: {shown}"
            + (f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else "")
        )


def _pairs(items: Mapping[str, T] | Iterable[tuple[str, T]], what: str) -> list[tuple[str, T]]:
    if isinstance(items, Mapping):
        return list(items.items())
    if isinstance(items, (str, bytes)):
        raise ValueError(f"{what} takes a mapping {{name: value}} or a list of (name, value) pairs")
    pairs: list[tuple[str, T]] = []
    for entry in items:
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise ValueError(
                f"{what} takes a mapping {{name: value}} or a list of (name, value) pairs, "
                f"got the entry {entry!r}"
            )
        pairs.append(entry)
    return pairs


def _check_url(name: str, url: object) -> str:
    if not isinstance(url, str):
        raise InvalidImageError(f"image {name!r}: the URL must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise InvalidImageError(
            f"image {name!r}: {url[:200]!r} is not an http(s) URL; pass URLs starting with "
            f"http:// or https:// (use add_images for local files and bytes)"
        )
    if not rest or rest.startswith("/") or any(c.isspace() for c in url):
        raise InvalidImageError(
            f"image {name!r}: {url[:200]!r} has no host or contains whitespace; percent-encode it"
        )
    return url


class _Content:
    """One validated ``add_images`` item: its bytes, or a file read when its chunk is sent."""

    __slots__ = ("data", "name", "path", "size")

    def __init__(
        self, name: str, *, data: bytes | None = None, path: pathlib.Path | None = None, size: int
    ) -> None:
        self.name = name
        self.data = data
        self.path = path
        self.size = size

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        data = self.path.read_bytes()
        _check_content(self.name, data[:_HEADER_BYTES], len(data), str(self.path))
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


def _content_item(name: str, value: object) -> _Content:
    """Validate one ``add_images`` value (reads only the head of a file)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        _check_content(name, data[:_HEADER_BYTES], len(data), "the content")
        return _Content(name, data=data, size=len(data))
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        raise InvalidImageError(
            f"image {name!r}: {value[:200]!r} is a URL: add URLs with add_urls, which lets "
            f"the service download them"
        )
    if isinstance(value, (str, os.PathLike)):
        path = pathlib.Path(value)
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise InvalidImageError(f"image {name!r}: {path} is not a regular file")
            with path.open("rb") as f:
                head = f.read(_HEADER_BYTES)
        except FileNotFoundError:
            raise InvalidImageError(f"image {name!r}: {path}: no such file") from None
        except PermissionError:
            raise InvalidImageError(
                f"image {name!r}: {path}: permission denied; check the file's mode"
            ) from None
        except OSError as exc:
            raise InvalidImageError(
                f"image {name!r}: cannot read {path} ({exc.strerror or exc})"
            ) from None
        _check_content(name, head, size, str(path))
        return _Content(name, path=path, size=size)
    raise InvalidImageError(
        f"image {name!r}: add_images takes bytes or a file path, not {type(value).__name__}"
    )


def _base64_len(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _upload_cost(item: _Content) -> int:
    """Bytes one item adds to a base64 upload body (its JSON object and a comma)."""
    return len(_encode({"name": item.name, "content": ""})) + _base64_len(item.size) + 1


def _folder_images(folder: pathlib.Path) -> tuple[dict[str, _Content], list[str]]:
    """The image files directly in ``folder`` by file name, and the other files skipped.

    Hidden files (``.name``) and subfolders are ignored; a file that is not an image the
    API accepts, or cannot be read, is skipped.
    """
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a directory: pass a folder of images or a mapping")
    images: dict[str, _Content] = {}
    skipped: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            images[path.name] = _content_item(path.name, path)
        except InvalidImageError:
            skipped.append(path.name)
    return images, skipped


# ------------------------------------------------------------------------ resource


class Libraries:
    """The image-library (图片名单) management API, as ``client.libraries``.

    Every call validates its input before anything is sent (``ValueError``, or
    ``InvalidImageError`` for image content and URLs). Batch calls split their items
    into as few requests as the API's limits allow, send them through the client's
    limiter with retries, and return exactly one :class:`LibraryItemOutcome` per input
    item, in input order: a request that still fails after retries yields failed
    outcomes for its items instead of dropping them. Fatal errors (authentication,
    configuration, a response signature that does not verify) raise.

    The limits are attributes (``max_urls_per_request``, ``max_images_per_request``,
    ``max_deletes_per_request``, ``max_body_bytes``, ``max_concurrency``); lower them for
    a proxy with a smaller body limit.
    """

    def __init__(
        self,
        sender: RequestSender,
        public_key: RSAPublicKey | None,
        *,
        max_concurrency: int = _CHUNK_CONCURRENCY,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self._sender = sender
        self._public_key = public_key
        self.max_urls_per_request = LIBRARY_MAX_URLS_PER_REQUEST
        self.max_images_per_request = LIBRARY_MAX_IMAGES_PER_REQUEST
        self.max_deletes_per_request = LIBRARY_MAX_DELETES_PER_REQUEST
        self.max_body_bytes = LIBRARY_MAX_BODY_BYTES
        self.max_concurrency = max_concurrency

    def __repr__(self) -> str:
        return f"Libraries(secret_id={self._secret_id!r})"

    @property
    def _secret_id(self) -> str:
        return self._sender.signer.secret_id

    # ------------------------------------------------------------------ sending

    def _request(self, path: str, fields: dict[str, Any]) -> PreparedRequest:
        return build_management_request(path, self._secret_id, fields)

    async def _send(
        self, request: PreparedRequest, key: str, decoder: msgspec.json.Decoder[list[T] | None]
    ) -> list[T] | None:
        """Send ``request``; its answer's ``key`` list, decoded (None when absent or null).

        Decoding happens inside the attempt, so a malformed answer is retried too.
        """
        public_key = self._public_key

        def parse(response: httpx.Response) -> list[T] | None:
            return _decode_field(_open_management_body(response, public_key), key, decoder)

        return await self._sender.send(request, parse)

    async def _send_chunk(
        self, path: str, library_id: str, names: Sequence[str], entries: list[dict[str, Any]]
    ) -> list[LibraryItemOutcome]:
        request = self._request(path, {"imageLibraryId": library_id, "images": entries})
        request.image_count = len(entries)
        try:
            answers = await self._send(request, "images", _outcomes_decoder)
        except TupuError as exc:
            if is_fatal(exc) and not _is_too_large(exc):
                raise
            return _failed(names, exc)
        return _match_outcomes(names, answers)

    async def _run_chunks(
        self, jobs: Sequence[Callable[[], Awaitable[list[LibraryItemOutcome]]]], concurrency: int
    ) -> list[LibraryItemOutcome]:
        """Run the chunk jobs, at most ``concurrency`` at once; outcomes in job order.

        The first fatal error cancels the jobs still running and is raised.
        """
        if len(jobs) <= 1 or concurrency <= 1:
            out: list[LibraryItemOutcome] = []
            for job in jobs:
                out.extend(await job())
            return out
        results: list[list[LibraryItemOutcome]] = [[] for _ in jobs]
        fatal: list[BaseException] = []
        next_job = iter(range(len(jobs)))

        async def worker(scope: anyio.CancelScope) -> None:
            for index in next_job:
                try:
                    results[index] = await jobs[index]()
                except Exception as exc:
                    fatal.append(exc)
                    scope.cancel()
                    return

        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, len(jobs))):
                tg.start_soon(worker, tg.cancel_scope)
        if fatal:
            raise fatal[0]
        return [outcome for chunk in results for outcome in chunk]

    # ------------------------------------------------------------------ queries

    async def search(self, name: str | None = None) -> list[ImageLibrary]:
        """The image libraries of this secret id; ``name`` filters them (fuzzy match)."""
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be a str or None, not {type(name).__name__}")
        fields: dict[str, Any] = {"name": name} if name else {}
        request = self._request(LIBRARY_SEARCH_PATH, fields)
        return await self._send(request, "imageLibraries", _libraries_decoder) or []

    async def list_images(self, library_id: str | ImageLibrary) -> list[LibraryImage]:
        """Every image in the library (name, stored URL, last update)."""
        library_id = _library_id(library_id)
        request = self._request(LIBRARY_IMAGES_PATH, {"imageLibraryId": library_id})
        images = await self._send(request, "images", _images_decoder) or []
        return [_to_library_image(wire) for wire in images]

    # ------------------------------------------------------------------ changes

    async def add_urls(
        self,
        library_id: str | ImageLibrary,
        images: Mapping[str, str] | Iterable[tuple[str, str]],
    ) -> list[LibraryItemOutcome]:
        """Add images the service downloads: ``{name: url}`` or ``[(name, url), ...]``.

        Sent in requests of at most ``max_urls_per_request`` (1000) images. Returns one
        outcome per image, in input order; a download failure is that image's outcome
        (code 14), not an exception.
        """
        library_id = _library_id(library_id)
        pairs = _pairs(images, "add_urls")
        _check_names([name for name, _ in pairs], "add_urls")
        checked = [(name, _check_url(name, url)) for name, url in pairs]
        return await self._add_urls(library_id, checked)

    async def _add_urls(
        self, library_id: str, pairs: Sequence[tuple[str, str]]
    ) -> list[LibraryItemOutcome]:
        chunks = plan_chunks([0] * len(pairs), max_items=self.max_urls_per_request)

        def job(chunk: range) -> Callable[[], Awaitable[list[LibraryItemOutcome]]]:
            async def run() -> list[LibraryItemOutcome]:
                part = [pairs[i] for i in chunk]
                return await self._send_chunk(
                    LIBRARY_ADD_URLS_PATH,
                    library_id,
                    [name for name, _ in part],
                    [{"name": name, "url": url} for name, url in part],
                )

            return run

        return await self._run_chunks([job(c) for c in chunks], self.max_concurrency)

    async def add_images(
        self,
        library_id: str | ImageLibrary,
        images: Mapping[str, ContentSource] | Iterable[tuple[str, ContentSource]],
    ) -> list[LibraryItemOutcome]:
        """Upload images (base64): ``{name: bytes | path}`` or ``[(name, bytes | path), ...]``.

        Every item is checked to be an image before anything is sent (files are read
        when their request is built, so memory holds only the requests in flight). Sent
        in requests of at most ``max_images_per_request`` (100) images and
        ``max_body_bytes`` (100 MiB) of body; an image too large for a body on its own is
        an ``InvalidImageError``. Returns one outcome per image, in input order.
        """
        library_id = _library_id(library_id)
        pairs = _pairs(images, "add_images")
        _check_names([name for name, _ in pairs], "add_images")
        items = await anyio.to_thread.run_sync(
            lambda: [_content_item(name, value) for name, value in pairs]
        )
        return await self._add_images(library_id, items)

    def _upload_base(self, library_id: str) -> int:
        return (
            len(_encode({"imageLibraryId": library_id, "images": []}))
            + len(_encode(self._secret_id))
            + BASE64_BODY_OVERHEAD
        )

    async def _add_images(
        self, library_id: str, items: Sequence[_Content]
    ) -> list[LibraryItemOutcome]:
        base = self._upload_base(library_id)
        costs = [_upload_cost(item) for item in items]
        for item, cost in zip(items, costs, strict=True):
            if base + cost > self.max_body_bytes:
                raise InvalidImageError(
                    f"image {item.name!r}: {item.size:,} bytes make a base64 body over the "
                    f"{self.max_body_bytes:,}-byte limit on its own: shrink it, or host it and "
                    f"use add_urls"
                )
        chunks = plan_chunks(
            costs,
            max_items=self.max_images_per_request,
            max_bytes=self.max_body_bytes,
            base_bytes=base,
        )

        def job(chunk: range) -> Callable[[], Awaitable[list[LibraryItemOutcome]]]:
            async def run() -> list[LibraryItemOutcome]:
                part = [items[i] for i in chunk]
                contents = await anyio.to_thread.run_sync(lambda: [_read(it) for it in part])
                sendable = [
                    (it, data)
                    for it, data in zip(part, contents, strict=True)
                    if isinstance(data, bytes)
                ]
                sent: dict[str, LibraryItemOutcome] = {}
                if sendable:
                    names = [it.name for it, _ in sendable]
                    outcomes = await self._send_chunk(
                        LIBRARY_ADD_BASE64_PATH,
                        library_id,
                        names,
                        [{"name": it.name, "content": data} for it, data in sendable],
                    )
                    sent = {o.name: o for o in outcomes}
                return [
                    sent[it.name]
                    if isinstance(data, bytes)
                    else LibraryItemOutcome(name=it.name, code=NO_ANSWER_CODE, error=str(data))
                    for it, data in zip(part, contents, strict=True)
                ]

            return run

        return await self._run_chunks(
            [job(c) for c in chunks], min(self.max_concurrency, _UPLOAD_CONCURRENCY)
        )

    async def delete(
        self, library_id: str | ImageLibrary, names: Iterable[str]
    ) -> list[LibraryItemOutcome]:
        """Delete images by name. Sent in requests of at most ``max_deletes_per_request``
        (100) names; one outcome per name, in input order (a missing name is that name's
        failed outcome, code 14)."""
        library_id = _library_id(library_id)
        name_list = [names] if isinstance(names, str) else list(names)
        _check_names(name_list, "delete")
        return await self._delete(library_id, name_list)

    async def _delete(self, library_id: str, names: Sequence[str]) -> list[LibraryItemOutcome]:
        chunks = plan_chunks([0] * len(names), max_items=self.max_deletes_per_request)

        def job(chunk: range) -> Callable[[], Awaitable[list[LibraryItemOutcome]]]:
            async def run() -> list[LibraryItemOutcome]:
                part = [names[i] for i in chunk]
                return await self._send_chunk(
                    LIBRARY_DELETE_PATH, library_id, part, [{"name": name} for name in part]
                )

            return run

        return await self._run_chunks([job(c) for c in chunks], self.max_concurrency)

    # --------------------------------------------------------------------- sync

    async def sync_library(
        self,
        library_id: str | ImageLibrary,
        source: str | os.PathLike[str] | Mapping[str, SyncSource],
        *,
        dry_run: bool = False,
        delete_missing: bool = True,
    ) -> LibrarySyncReport:
        """Make the library hold exactly the images of ``source``, by name.

        ``source`` is a folder (its image files, not recursive, named by file name; other
        files are reported in ``skipped``) or a mapping ``{name: bytes | path | url}``.
        Lists the library, adds the names it lacks (URLs with ``add_urls``, content with
        ``add_images``), deletes the names ``source`` lacks (unless ``delete_missing`` is
        False) and reports the difference. Names are compared, not content: replacing an
        image under the same name needs a ``delete`` first. ``dry_run`` only computes the
        report. Input is validated before the library is listed.
        """
        library_id = _library_id(library_id)
        desired, skipped = await anyio.to_thread.run_sync(lambda: _desired(source))
        existing = [image.name for image in await self.list_images(library_id)]
        existing_set = set(existing)
        to_add = [name for name in desired if name not in existing_set]
        unchanged = [name for name in desired if name in existing_set]
        to_delete: list[str] = []
        if delete_missing:
            seen: set[str] = set()
            for name in existing:
                if name not in desired and name not in seen:
                    seen.add(name)
                    to_delete.append(name)
        report = LibrarySyncReport(
            library_id=library_id, dry_run=dry_run, unchanged=unchanged, skipped=skipped
        )
        if dry_run:
            report.added = to_add
            report.deleted = to_delete
            return report
        url_pairs: list[tuple[str, str]] = []
        contents: list[_Content] = []
        for name in to_add:
            wanted = desired[name]
            if isinstance(wanted, str):
                url_pairs.append((name, wanted))
            else:
                contents.append(wanted)
        outcomes: list[LibraryItemOutcome] = []
        if url_pairs:
            outcomes += await self._add_urls(library_id, url_pairs)
        if contents:
            outcomes += await self._add_images(library_id, contents)
        added = {o.name for o in outcomes if o.ok}
        report.added = [name for name in to_add if name in added]
        report.failed = [o for o in outcomes if not o.ok]
        if to_delete:
            deletions = await self._delete(library_id, to_delete)
            report.deleted = [o.name for o in deletions if o.ok]
            report.failed += [o for o in deletions if not o.ok]
        return report


def _desired(
    source: str | os.PathLike[str] | Mapping[str, SyncSource],
) -> tuple[dict[str, str | _Content], list[str]]:
    """What ``sync_library`` should leave in the library: name -> URL or content."""
    if isinstance(source, Mapping):
        pairs = list(source.items())
        _check_names([name for name, _ in pairs], "sync_library")
        desired: dict[str, str | _Content] = {}
        for name, value in pairs:
            if isinstance(value, str) and value.startswith(("http://", "https://")):
                desired[name] = _check_url(name, value)
            else:
                desired[name] = _content_item(name, value)
        return desired, []
    if isinstance(source, (str, os.PathLike)):
        files, skipped = _folder_images(pathlib.Path(source))
        _check_names(list(files), "sync_library")
        return dict(files), skipped
    raise ValueError(
        f"sync_library takes a folder path or a mapping {{name: bytes | path | url}}, not "
        f"{type(source).__name__}"
    )


def _read(item: _Content) -> bytes | InvalidImageError:
    """The item's bytes, or the error that makes it unsendable (the file changed)."""
    try:
        return item.read()
    except InvalidImageError as exc:
        return exc
    except OSError as exc:
        return InvalidImageError(
            f"image {item.name!r}: cannot read {item.path} any more ({exc.strerror or exc})"
        )


def _is_too_large(exc: TupuError) -> bool:
    """HTTP 413: this body was too large for the service or a proxy; other chunks may pass."""
    return isinstance(exc, ConfigurationError) and exc.status_code == 413


def _failed(names: Sequence[str], exc: TupuError) -> list[LibraryItemOutcome]:
    code = exc.code if isinstance(exc, APIError) and exc.code is not None else NO_ANSWER_CODE
    text = str(exc)
    if _is_too_large(exc):
        text += " (lower client.libraries.max_body_bytes so requests are smaller)"
    return [LibraryItemOutcome(name=name, code=code, error=text) for name in names]
