"""The public types ``client.libraries`` returns, and the lenient ``updatedAt`` parser."""

from __future__ import annotations

import enum
import math
import re
from datetime import datetime, timedelta, timezone

import msgspec

__all__ = [
    "NO_ANSWER_CODE",
    "ImageLibrary",
    "LibraryImage",
    "LibraryItemOutcome",
    "LibrarySyncReport",
    "LibraryType",
    "parse_updated_at",
]

#: Outcome code for an item that never got a per-item answer from the service (its
#: request failed, or the service's answer left it out).
NO_ANSWER_CODE = -1


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
# Epoch numbers above this are milliseconds.
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

    Reads Go's ``time.Time.String()`` form (``2022-06-16 07:01:51.935 +0000 UTC``), ISO
    8601 and Unix epoch numbers (seconds, or milliseconds when large). No offset means
    UTC; a named zone other than UTC/GMT, anything else, or an impossible date gives None.
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
