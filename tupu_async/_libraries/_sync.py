"""``TupuClient.libraries``: the blocking face of :class:`~tupu_async.Libraries`."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Protocol, TypeVar

from ._inputs import ContentSource, SyncSource
from ._resource import Libraries
from ._types import ImageLibrary, LibraryImage, LibraryItemOutcome, LibrarySyncReport

__all__ = ["SyncLibraries"]

T = TypeVar("T")


class _Caller(Protocol):
    def __call__(self, what: str, fn: Callable[[], Awaitable[T]]) -> T: ...


class SyncLibraries:
    """The image-library (名单) management API, blocking; same calls and results as
    ``AsyncTupuClient.libraries``, run on the ``TupuClient``'s event loop."""

    def __init__(self, libraries: Libraries, call: _Caller) -> None:
        self._libraries = libraries
        self._call = call

    def search(self, name: str | None = None) -> list[ImageLibrary]:
        return self._call("libraries.search", partial(self._libraries.search, name))

    def list_images(self, library_id: str | ImageLibrary) -> list[LibraryImage]:
        return self._call("libraries.list_images", partial(self._libraries.list_images, library_id))

    def add_urls(
        self,
        library_id: str | ImageLibrary,
        images: Mapping[str, str] | Iterable[tuple[str, str]],
    ) -> list[LibraryItemOutcome]:
        return self._call(
            "libraries.add_urls", partial(self._libraries.add_urls, library_id, images)
        )

    def add_images(
        self,
        library_id: str | ImageLibrary,
        images: Mapping[str, ContentSource] | Iterable[tuple[str, ContentSource]],
    ) -> list[LibraryItemOutcome]:
        return self._call(
            "libraries.add_images", partial(self._libraries.add_images, library_id, images)
        )

    def delete(
        self, library_id: str | ImageLibrary, names: Iterable[str]
    ) -> list[LibraryItemOutcome]:
        return self._call("libraries.delete", partial(self._libraries.delete, library_id, names))

    def sync_library(
        self,
        library_id: str | ImageLibrary,
        source: str | os.PathLike[str] | Mapping[str, SyncSource],
        *,
        dry_run: bool = False,
        delete_missing: bool = True,
    ) -> LibrarySyncReport:
        return self._call(
            "libraries.sync_library",
            partial(
                self._libraries.sync_library,
                library_id,
                source,
                dry_run=dry_run,
                delete_missing=delete_missing,
            ),
        )
