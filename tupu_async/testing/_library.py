"""The fake server's in-memory image libraries (图片名单库) and their operations.

Shapes follow ../api-docs/image-library-management.zh.txt: library search returns
``{id, name, type, threshold, status, images}``, image search ``{name, url, updatedAt}``
with ``updatedAt`` in Go's ``time.Time.String()`` form (``2022-06-16 07:01:51.935 +0000
UTC``, millisecond precision, trailing zeros trimmed as Go does), and each add/delete
answers one ``{code, error, name[, url]}`` item per input item, in input order.
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

__all__ = ["ImageLibrary", "LibraryImage", "LibraryStore", "go_time_string"]

STORED_URL_PREFIX: Final = "https://static.tuputech.com/lts/image/original/"


def go_time_string(moment: datetime.datetime) -> str:
    """``moment`` (UTC) as Go prints a ``time.Time`` truncated to milliseconds."""
    moment = moment.astimezone(datetime.timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    millis = moment.microsecond // 1000
    if millis:
        text += f".{millis:03d}".rstrip("0")
    return text + " +0000 UTC"


@dataclasses.dataclass
class LibraryImage:
    """One image stored in a library."""

    name: str
    url: str
    updated_at: datetime.datetime
    source: str = ""  # the URL it was added from, or "base64"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "updatedAt": go_time_string(self.updated_at)}


@dataclasses.dataclass
class ImageLibrary:
    """One image library; ``secret_id`` None means every secret id sees it."""

    id: str
    name: str
    type: int = 0
    threshold: float = 0.95
    status: int = 0
    secret_id: str | None = None
    images: dict[str, LibraryImage] = dataclasses.field(default_factory=dict)

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
        self._libraries: dict[str, ImageLibrary] = {}
        self._counter = itertools.count(1)
        self._clock = clock

    def create(
        self,
        name: str,
        *,
        type: int = 0,
        threshold: float = 0.95,
        status: int = 0,
        secret_id: str | None = None,
    ) -> str:
        number = next(self._counter)
        library_id = hashlib.sha256(f"library:{number}:{name}".encode()).hexdigest()[:24]
        self._libraries[library_id] = ImageLibrary(
            library_id, name, type, threshold, status, secret_id
        )
        return library_id

    def get(self, library_id: str, secret_id: str | None = None) -> ImageLibrary | None:
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
        library: ImageLibrary,
        items: Sequence[LibraryImageItem],
        download_fails: Callable[[str], bool],
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for item in items:
            if not item.name or not item.url:
                missing = "name" if not item.name else "url"
                results.append(_item(3, f"missing {missing}", item.name, item.url or ""))
            elif download_fails(item.url):
                results.append(_item(14, "download failed", item.name, item.url))
            else:
                stored = self._store(library, item.name, source=item.url)
                results.append(_item(0, "", item.name, stored.url))
        return results

    def add_base64(
        self, library: ImageLibrary, items: Sequence[LibraryImageItem]
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for item in items:
            if not item.name or not item.content:
                missing = "name" if not item.name else "content"
                results.append(_item(3, f"missing {missing}", item.name, ""))
                continue
            try:
                data = base64.b64decode(item.content, validate=True)
            except (binascii.Error, ValueError):
                results.append(_item(14, "invalid base64 image content", item.name, ""))
                continue
            if sniff_image_format(data) is None:
                results.append(_item(14, "unsupported image format", item.name, ""))
                continue
            stored = self._store(library, item.name, source="base64")
            results.append(_item(0, "", item.name, stored.url))
        return results

    def delete(
        self, library: ImageLibrary, items: Sequence[LibraryImageItem]
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for item in items:
            name = item.name or ""
            if library.images.pop(name, None) is None:
                results.append({"code": 14, "error": "image not found", "name": name})
            else:
                results.append({"code": 0, "error": "", "name": name})
        return results

    def _store(self, library: ImageLibrary, name: str, *, source: str) -> LibraryImage:
        url = f"{STORED_URL_PREFIX}{library.id}/{urllib.parse.quote(name)}"
        image = LibraryImage(name, url, self._clock(), source)
        library.images.pop(name, None)  # re-adding a name replaces it (and moves it last)
        library.images[name] = image
        return image

    def reset(self) -> None:
        self._libraries.clear()


def _item(code: int, error: str, name: str | None, url: str) -> dict[str, Any]:
    return {"code": code, "error": error, "name": name or "", "url": url}
