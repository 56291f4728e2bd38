"""``client.libraries``: the async :class:`Libraries` resource of the image-library API."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .. import _constants as constants
from .._exceptions import (
    APIError,
    ConfigurationError,
    InvalidImageError,
    InvalidInputError,
    TupuError,
    is_fatal,
)
from .._redaction import redact_error
from .._requests import PreparedRequest, build_management_request
from .._sending import RequestSender
from ._inputs import (
    ContentSource,
    SyncSource,
    UploadItem,
    check_names,
    check_sendable,
    check_url,
    folder_images,
    library_id_of,
    name_value_pairs,
    plan_chunks,
    read_or_error,
    to_upload_item,
    upload_body_base,
    upload_cost,
)
from ._types import (
    NO_ANSWER_CODE,
    ImageLibrary,
    LibraryImage,
    LibraryItemOutcome,
    LibrarySyncReport,
)
from ._wire import (
    decode_field,
    image_libraries_decoder,
    item_outcomes_decoder,
    library_images_decoder,
    match_outcomes,
    open_management_body,
    to_library_image,
)

__all__ = ["Libraries"]

T = TypeVar("T")

_CHUNK_CONCURRENCY = 4
_UPLOAD_CONCURRENCY = 2

_Job = Callable[[], Awaitable[list[LibraryItemOutcome]]]


@dataclass(eq=False, repr=False)
class Libraries:
    """The image-library (图片名单) management API, as ``client.libraries``.

    Every call validates its input before sending (``InvalidInputError``; URLs and image
    content ``InvalidImageError``; both are ``ValueError``). Batch calls return exactly
    one :class:`LibraryItemOutcome` per input item, in input order: a request that still
    fails after retries gives failed outcomes for its items. Fatal errors
    (authentication, configuration, a signature that does not verify) raise.

    Args:
        sender: the client's request sender (limiter, signing, retries).
        public_key: the key that verifies signed answers; None skips verification.
        max_concurrency: requests of one call in flight at once (>= 1).

    The per-request limits are attributes (``max_urls_per_request``,
    ``max_images_per_request``, ``max_deletes_per_request``, ``max_body_bytes``); lower
    them for a proxy with a smaller body limit.
    """

    _sender: RequestSender
    _public_key: RSAPublicKey | None
    _: KW_ONLY
    max_concurrency: int = _CHUNK_CONCURRENCY
    max_urls_per_request: int = dataclasses.field(
        default=constants.LIBRARY_MAX_URLS_PER_REQUEST, init=False
    )
    max_images_per_request: int = dataclasses.field(
        default=constants.LIBRARY_MAX_IMAGES_PER_REQUEST, init=False
    )
    max_deletes_per_request: int = dataclasses.field(
        default=constants.LIBRARY_MAX_DELETES_PER_REQUEST, init=False
    )
    max_body_bytes: int = dataclasses.field(default=constants.LIBRARY_MAX_BODY_BYTES, init=False)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")

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
        A malformed answer is retried like a failed attempt."""
        public_key = self._public_key

        def parse(response: httpx.Response) -> list[T] | None:
            try:
                return decode_field(open_management_body(response, public_key), key, decoder)
            except TupuError as exc:
                redact_error(exc)
                raise

        return await self._sender.send(request, parse)

    async def _send_chunk(
        self, path: str, library_id: str, names: Sequence[str], entries: list[dict[str, Any]]
    ) -> list[LibraryItemOutcome]:
        request = self._request(path, {"imageLibraryId": library_id, "images": entries})
        request.image_count = len(entries)
        try:
            answers = await self._send(request, "images", item_outcomes_decoder)
        except TupuError as exc:
            if is_fatal(exc) and not _is_too_large(exc):
                raise
            return _failed(names, exc)
        return match_outcomes(names, answers)

    async def _send_in_chunks(
        self,
        path: str,
        library_id: str,
        names: Sequence[str],
        entries: list[dict[str, Any]],
        max_items: int,
    ) -> list[LibraryItemOutcome]:
        """Send ``entries`` (one per name) in requests of at most ``max_items``."""
        chunks = plan_chunks([0] * len(names), max_items=max_items)
        jobs = [
            partial(
                self._send_chunk,
                path,
                library_id,
                names[c.start : c.stop],
                entries[c.start : c.stop],
            )
            for c in chunks
        ]
        return await self._run_chunks(jobs, self.max_concurrency)

    async def _run_chunks(self, jobs: Sequence[_Job], concurrency: int) -> list[LibraryItemOutcome]:
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
            raise InvalidInputError(f"name must be a str or None, not {type(name).__name__}")
        if name is not None:
            check_sendable(name, "search: the name")
        fields: dict[str, Any] = {"name": name} if name else {}
        request = self._request(constants.LIBRARY_SEARCH_PATH, fields)
        return await self._send(request, "imageLibraries", image_libraries_decoder) or []

    async def list_images(self, library_id: str | ImageLibrary) -> list[LibraryImage]:
        """Every image in the library (name, stored URL, last update)."""
        library_id = library_id_of(library_id)
        request = self._request(constants.LIBRARY_IMAGES_PATH, {"imageLibraryId": library_id})
        images = await self._send(request, "images", library_images_decoder) or []
        return [to_library_image(wire) for wire in images]

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
        library_id = library_id_of(library_id)
        pairs = name_value_pairs(images, "add_urls")
        check_names([name for name, _ in pairs], "add_urls")
        checked = [(name, check_url(name, url)) for name, url in pairs]
        return await self._add_urls(library_id, checked)

    async def _add_urls(
        self, library_id: str, pairs: Sequence[tuple[str, str]]
    ) -> list[LibraryItemOutcome]:
        return await self._send_in_chunks(
            constants.LIBRARY_ADD_URLS_PATH,
            library_id,
            [name for name, _ in pairs],
            [{"name": name, "url": url} for name, url in pairs],
            self.max_urls_per_request,
        )

    async def add_images(
        self,
        library_id: str | ImageLibrary,
        images: Mapping[str, ContentSource] | Iterable[tuple[str, ContentSource]],
    ) -> list[LibraryItemOutcome]:
        """Upload images (base64): ``{name: bytes | path}`` or ``[(name, bytes | path), ...]``.

        Every item is checked to be an image before anything is sent; files are read
        when their request is built. Sent in requests of at most
        ``max_images_per_request`` (100) images and ``max_body_bytes`` (100 MiB) of body;
        an image too large for a body on its own is an ``InvalidImageError``. Returns one
        outcome per image, in input order.
        """
        library_id = library_id_of(library_id)
        pairs = name_value_pairs(images, "add_images")
        check_names([name for name, _ in pairs], "add_images")
        items = await anyio.to_thread.run_sync(
            lambda: [to_upload_item(name, value) for name, value in pairs]
        )
        return await self._add_images(library_id, items)

    def _upload_base(self, library_id: str) -> int:
        return upload_body_base(library_id, self._secret_id)

    async def _add_images(
        self, library_id: str, items: Sequence[UploadItem]
    ) -> list[LibraryItemOutcome]:
        base = self._upload_base(library_id)
        costs = [upload_cost(item) for item in items]
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

        def job(chunk: range) -> _Job:
            async def run() -> list[LibraryItemOutcome]:
                part = [items[i] for i in chunk]
                contents = await anyio.to_thread.run_sync(
                    lambda: [read_or_error(it) for it in part]
                )
                sendable = [
                    (it, data)
                    for it, data in zip(part, contents, strict=True)
                    if isinstance(data, bytes)
                ]
                sent: dict[str, LibraryItemOutcome] = {}
                if sendable:
                    names = [it.name for it, _ in sendable]
                    outcomes = await self._send_chunk(
                        constants.LIBRARY_ADD_BASE64_PATH,
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
        library_id = library_id_of(library_id)
        if not isinstance(names, (str, Iterable)):
            raise InvalidInputError(
                f"delete takes image names (a str or an iterable of strs), not "
                f"{type(names).__name__}"
            )
        name_list = [names] if isinstance(names, str) else list(names)
        check_names(name_list, "delete")
        return await self._delete(library_id, name_list)

    async def _delete(self, library_id: str, names: Sequence[str]) -> list[LibraryItemOutcome]:
        return await self._send_in_chunks(
            constants.LIBRARY_DELETE_PATH,
            library_id,
            names,
            [{"name": name} for name in names],
            self.max_deletes_per_request,
        )

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
        library_id = library_id_of(library_id)
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
        contents: list[UploadItem] = []
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
) -> tuple[dict[str, str | UploadItem], list[str]]:
    """What ``sync_library`` should leave in the library: name -> URL or content."""
    if isinstance(source, Mapping):
        pairs = list(source.items())
        check_names([name for name, _ in pairs], "sync_library")
        desired: dict[str, str | UploadItem] = {}
        for name, value in pairs:
            if isinstance(value, str) and value.startswith(("http://", "https://")):
                desired[name] = check_url(name, value)
            else:
                desired[name] = to_upload_item(name, value)
        return desired, []
    if isinstance(source, (str, os.PathLike)):
        files, skipped = folder_images(pathlib.Path(source))
        check_names(list(files), "sync_library")
        return dict(files), skipped
    raise InvalidInputError(
        f"sync_library takes a folder path or a mapping {{name: bytes | path | url}}, not "
        f"{type(source).__name__}"
    )


def _is_too_large(exc: TupuError) -> bool:
    """HTTP 413: this body was too large; the chunk fails, the call goes on."""
    return isinstance(exc, ConfigurationError) and exc.status_code == 413


def _failed(names: Sequence[str], exc: TupuError) -> list[LibraryItemOutcome]:
    code = exc.code if isinstance(exc, APIError) and exc.code is not None else NO_ANSWER_CODE
    text = str(exc)
    if _is_too_large(exc):
        text += " (lower client.libraries.max_body_bytes so requests are smaller)"
    return [LibraryItemOutcome(name=name, code=code, error=text) for name in names]
