"""URL download fallback (``url_fallback=True``): when the service cannot download a URL
(per-image code 14), the client downloads it itself and resubmits the content.

Downloads go through a ``SafeFetcher`` (public addresses only unless allow-listed,
size-capped, time-limited, bounded concurrency); everything downloaded from one URL
batch goes back to the service as one content request. The replacement results carry
``fallback=True``; a URL the client cannot download either keeps its code-14 result, with
the client's own (deliberately generic) download error added to the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import anyio
import msgspec

from ._address_policy import AllowEntry
from ._batching import Batch
from ._constants import MAX_IMAGE_BYTES
from ._exceptions import IMAGE_ERROR_CODE, ImageError, InvalidImageError
from ._images import Image, PreparedImage, generated_name
from ._logging import logger
from ._safe_fetch import DownloadError, SafeFetcher
from ._types import ImageResult

__all__ = ["MAX_DOWNLOAD_BYTES_RESIZED", "LoadFn", "ResubmitFn", "UrlFallback", "make_fallback"]

MAX_DOWNLOAD_BYTES_RESIZED = 20 * 1024 * 1024
"""Download cap when a resizer will shrink the content (else the API's 1 MiB)."""

LoadFn = Callable[[Image, int, "str | None"], Awaitable[PreparedImage]]
"""``load(image, index, tag)``: validate (and resize) downloaded content; raises
``InvalidImageError``."""
ResubmitFn = Callable[[Batch], Awaitable[list[ImageResult]]]
"""``resubmit(batch)``: one content request; one result per image, only fatal errors raise."""
CountFn = Callable[[int], None]


@dataclass(slots=True, eq=False, kw_only=True)
class UrlFallback:
    """Replaces the code-14 results of URL batches by downloading and resubmitting them.

    ``load`` validates a download as the client validates any content image, ``max_bytes``
    caps each download, ``count(n)`` is told how many images were resubmitted. The
    fallback owns ``fetcher``: ``aclose()`` closes it.
    """

    fetcher: SafeFetcher
    load: LoadFn
    max_bytes: int
    count: CountFn

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    async def replace_failed(
        self, results: list[ImageResult], batch: Batch, resubmit: ResubmitFn
    ) -> list[ImageResult]:
        """``results`` of the URL ``batch``, its code-14 ones replaced where possible.

        Same length and order. Fatal errors of the resubmission raise, as for any request.
        """
        by_index = {im.index: im for im in batch}
        to_fetch = [
            by_index[r.index]
            for r in results
            if r.code == IMAGE_ERROR_CODE and r.index in by_index and by_index[r.index].is_url
        ]
        if not to_fetch:
            return results
        prepared: dict[int, PreparedImage] = {}
        failed: dict[int, str] = {}
        async with anyio.create_task_group() as tg:
            for sent in to_fetch:
                tg.start_soon(self._fetch_one, sent, prepared, failed)
        replacements = await self._resubmit(to_fetch, prepared, failed, resubmit)
        out: list[ImageResult] = []
        for result in results:
            if result.index in replacements:
                out.append(replacements[result.index])
            elif result.index in failed:
                out.append(_with_download_error(result, failed[result.index]))
            else:
                out.append(result)
        return out

    async def _fetch_one(
        self, sent: PreparedImage, prepared: dict[int, PreparedImage], failed: dict[int, str]
    ) -> None:
        assert sent.url is not None
        try:
            data = await self.fetcher.fetch(sent.url, max_bytes=self.max_bytes)
            image = Image.from_bytes(
                data, name=sent.name, tag=sent.tag, sequence_id=sent.sequence_id
            )
            loaded = await self.load(image, sent.index, sent.tag)
        except (DownloadError, InvalidImageError) as exc:
            failed[sent.index] = str(exc)
            return
        # The URL stays the reported name; the upload gets a plain file name the service keeps.
        assert loaded.content is not None
        assert loaded.format is not None
        loaded.wire_name = generated_name(loaded.content, loaded.format)
        prepared[sent.index] = loaded

    async def _resubmit(
        self,
        to_fetch: list[PreparedImage],
        prepared: dict[int, PreparedImage],
        failed: dict[int, str],
        resubmit: ResubmitFn,
    ) -> dict[int, ImageResult]:
        if not prepared:
            logger.info(
                "url_fallback: the service could not download %d URL(s), nor could the client",
                len(failed),
            )
            return {}
        new_batch = [prepared[im.index] for im in to_fetch if im.index in prepared]
        self.count(len(new_batch))
        logger.info(
            "url_fallback: the service could not download %d URL(s); resubmitting %d as "
            "content (%d could not be downloaded by the client either)",
            len(to_fetch),
            len(new_batch),
            len(failed),
        )
        replacements: dict[int, ImageResult] = {}
        for new in await resubmit(new_batch):
            if new.error is not None and new.code != IMAGE_ERROR_CODE:
                new.message = f"the client's fallback upload failed: {new.message}"
            new.fallback = True
            replacements[new.index] = new
        return replacements


def make_fallback(
    *, allow_private: Iterable[AllowEntry], load: LoadFn, resized: bool, count: CountFn
) -> UrlFallback:
    """A fallback with its own :class:`SafeFetcher`; downloads are capped at the API's
    image limit, or at :data:`MAX_DOWNLOAD_BYTES_RESIZED` when ``load`` resizes."""
    return UrlFallback(
        fetcher=SafeFetcher(allow_private=allow_private),
        load=load,
        max_bytes=MAX_DOWNLOAD_BYTES_RESIZED if resized else MAX_IMAGE_BYTES,
        count=count,
    )


def _with_download_error(result: ImageResult, reason: str) -> ImageResult:
    message = f"{result.message}; the client's fallback download failed too: {reason}"
    error = result.error
    if isinstance(error, ImageError):
        error = ImageError(
            f"{error}; the client's fallback download failed too: {reason}",
            code=error.code,
            status_code=error.status_code,
            request_id=error.request_id,
        )
    return msgspec.structs.replace(result, message=message, error=error)
