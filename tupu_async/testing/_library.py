"""The fake server's in-memory image libraries (图片名单库) and their operations.

Answers have the service's shapes: one ``{code, error, name[, url]}`` item per input
item, in input order (details in ``docs/design-fake.md``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import itertools
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Final

from ._formats import sniff_image_format
from ._parsing import LibraryImageItem

__all__ = ["FakeLibrary", "LibraryStore", "StoredImage", "go_time_string"]

STORED_URL_PREFIX: Final = "https://static.tuputech.com/lts/image/original/"


def go_time_string(moment: datetime.datetime) -> str:
    """``moment`` (UTC) as Go prints a ``time.Time`` truncated to milliseconds."""
    moment = moment.astimezone(datetime.timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    millis = moment.microsecond // 1000
    if millis:
        text += f".{millis:03d}".rstrip("0")
    return text + " +0000 UTC"


@dataclasses.dataclass(slots=True)
class StoredImage:
    """One image stored in a fake library (``source``: the URL it came from, or "base64")."""

    name: str
    url: str
    updated_at: datetime.datetime
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "updatedAt": go_time_string(self.updated_at)}


@dataclasses.dataclass(slots=True)
class FakeLibrary:
    """One image library; ``secret_id`` None means every secret id sees it."""

    id: str
    name: str
    type: int = 0
    threshold: float = 0.95
    status: int = 0
    secret_id: str | None = None
    images: dict[str, StoredImage] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "threshold": self.threshold,
            "status": self.status,
            "images": len(self.images),
        }


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class LibraryStore:
    """Every library of one fake server, with the operations the endpoints run."""

    def __init__(self, *, clock: Callable[[], datetime.datetime] = _now) -> None:
        self._libraries: dict[str, FakeLibrary] = {}
        self._counter = itertools.count(1)
        self._clock = clock

    def new_id(self, name: str) -> str:
        """A fresh library id (24 hex digits, as the service's)."""
        number = next(self._counter)
        return hashlib.sha256(f"library:{number}:{name}".encode()).hexdigest()[:24]

    def add(self, library: FakeLibrary) -> str:
        self._libraries[library.id] = library
        return library.id

    def get(self, library_id: str, secret_id: str | None = None) -> FakeLibrary | None:
        library = self._libraries.get(library_id)
        if library is None:
            return None
        if secret_id is not None and library.secret_id not in (None, secret_id):
            return None
        return library

    def search(self, secret_id: str | None, name: str | None) -> list[dict[str, Any]]:
        needle = (name or "").lower()
        return [
            library.to_json()
            for library in self._libraries.values()
            if (secret_id is None or library.secret_id in (None, secret_id))
            and needle in library.name.lower()
        ]

    def add_urls(
        self,
        library: FakeLibrary,
        items: Sequence[LibraryImageItem],
        download_fails: Callable[[str], bool],
    ) -> list[dict[str, Any]]:
        def refusal(item: LibraryImageItem) -> tuple[int, str] | None:
            if not item.name or not item.url:
                return 3, f"missing {'name' if not item.name else 'url'}"
            if download_fails(item.url):
                return 14, "download failed"
            return None

        return self._add(library, items, refusal, from_url=True)

    def add_base64(
        self, library: FakeLibrary, items: Sequence[LibraryImageItem]
    ) -> list[dict[str, Any]]:
        return self._add(library, items, _base64_refusal, from_url=False)

    def delete(
        self, library: FakeLibrary, items: Sequence[LibraryImageItem]
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for item in items:
            name = item.name or ""
            if library.images.pop(name, None) is None:
                results.append({"code": 14, "error": "image not found", "name": name})
            else:
                results.append({"code": 0, "error": "", "name": name})
        return results

    def _add(
        self,
        library: FakeLibrary,
        items: Sequence[LibraryImageItem],
        refusal: Callable[[LibraryImageItem], tuple[int, str] | None],
        *,
        from_url: bool,
    ) -> list[dict[str, Any]]:
        """One ``{code, error, name, url}`` per item: stored, or refused by ``refusal``."""
        results: list[dict[str, Any]] = []
        for item in items:
            refused = refusal(item)
            if refused is not None:
                url = (item.url or "") if from_url else ""
                results.append(_item(*refused, item.name, url))
                continue
            name = item.name or ""
            url = f"{STORED_URL_PREFIX}{library.id}/{urllib.parse.quote(name)}"
            source = (item.url or "") if from_url else "base64"
            library.images.pop(name, None)  # re-adding a name replaces it (and moves it last)
            library.images[name] = StoredImage(name, url, self._clock(), source)
            results.append(_item(0, "", name, url))
        return results

    def reset(self) -> None:
        self._libraries.clear()


def _base64_refusal(item: LibraryImageItem) -> tuple[int, str] | None:
    if not item.name or not item.content:
        return 3, f"missing {'name' if not item.name else 'content'}"
    try:
        data = base64.b64decode(item.content, validate=True)
    except (binascii.Error, ValueError):
        return 14, "invalid base64 image content"
    if sniff_image_format(data) is None:
        return 14, "unsupported image format"
    return None


def _item(code: int, error: str, name: str | None, url: str) -> dict[str, Any]:
    return {"code": code, "error": error, "name": name or "", "url": url}
