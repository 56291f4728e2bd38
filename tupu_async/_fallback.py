"""URL download fallback (``url_fallback=True``): when the service cannot download a URL
(per-image code 14), the client downloads it itself and resubmits the content.

The download is size-capped and time-limited; everything downloaded from one URL batch
goes back to the service as one content request. The replacement results carry
``fallback=True``; a URL the client cannot download either keeps its code-14 result, with
the client's own download error added to the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio
import httpx
import msgspec

from ._batching import Batch
from ._constants import MAX_IMAGE_BYTES
from ._events import logger
from ._exceptions import IMAGE_ERROR_CODE, ImageError, InvalidImageError
from ._images import Image, PreparedImage, generated_name, load_image
from ._types import ImageResult

if TYPE_CHECKING:
    from ._client import AsyncTupuClient, _CallOptions

__all__ = [
    "DOWNLOAD_TIMEOUT",
    "MAX_DOWNLOAD_BYTES_RESIZED",
    "DownloadError",
    "download_capped",
    "resubmit_failed_urls",
]

DOWNLOAD_TIMEOUT: Final = 10.0
"""Seconds one fallback download may take, connection included."""
MAX_DOWNLOAD_BYTES_RESIZED: Final = 20 * 1024 * 1024
"""Download cap when a resizer will shrink the content (else the API's 1 MiB)."""


class DownloadError(Exception):
    """A fallback download that failed; the message says why, for the image's result."""


async def download_capped(
    http: httpx.AsyncClient, url: str, *, max_bytes: int, max_seconds: float = DOWNLOAD_TIMEOUT
) -> bytes:
    """GET ``url``: at most ``max_bytes`` of body within ``max_seconds``, else DownloadError."""
    try:
        with anyio.fail_after(max_seconds):
            async with http.stream(
                "GET", url, timeout=httpx.Timeout(max_seconds), follow_redirects=True
            ) as response:
                if response.status_code != 200:
                    raise DownloadError(f"HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise DownloadError(f"{int(declared):,} bytes is over the {max_bytes:,} cap")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"more than the {max_bytes:,}-byte cap")
                    chunks.append(chunk)
                return b"".join(chunks)
    except TimeoutError:
        raise DownloadError(f"timed out after {max_seconds:g}s") from None
    except httpx.HTTPError as exc:
        raise DownloadError(f"{type(exc).__name__}: {exc}") from None


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


async def _fetch_one(
    client: AsyncTupuClient,
    sent: PreparedImage,
    max_bytes: int,
    prepared: dict[int, PreparedImage],
    failed: dict[int, str],
) -> None:
    assert sent.url is not None
    try:
        data = await download_capped(client._http, sent.url, max_bytes=max_bytes)
        image = Image.from_bytes(data, name=sent.name, tag=sent.tag, sequence_id=sent.sequence_id)
        transform = client._transform
        if transform is None:
            loaded = load_image(image, sent.index, sent.tag)
        else:
            loaded = await anyio.to_thread.run_sync(
                lambda: load_image(image, sent.index, sent.tag, transform=transform)
            )
    except (DownloadError, InvalidImageError) as exc:
        failed[sent.index] = str(exc)
        return
    # The URL stays the reported name; the upload gets a plain file name the service keeps.
    assert loaded.content is not None
    assert loaded.format is not None
    loaded.wire_name = generated_name(loaded.content, loaded.format)
    prepared[sent.index] = loaded


async def resubmit_failed_urls(
    client: AsyncTupuClient,
    results: list[ImageResult],
    batch: Batch,
    options: _CallOptions,
) -> list[ImageResult]:
    """Replace the code-14 results of a URL ``batch`` by resubmitting the images as content.

    Returns ``results`` with the same length and order. Fatal errors of the resubmission
    raise, as for any request; other request failures become those images' results.
    """
    from ._client import _CallOptions

    by_index = {im.index: im for im in batch}
    to_fetch = [
        by_index[r.index]
        for r in results
        if r.code == IMAGE_ERROR_CODE and r.index in by_index and by_index[r.index].is_url
    ]
    if not to_fetch:
        return results
    max_bytes = MAX_IMAGE_BYTES if client._transform is None else MAX_DOWNLOAD_BYTES_RESIZED
    prepared: dict[int, PreparedImage] = {}
    failed: dict[int, str] = {}
    async with anyio.create_task_group() as tg:
        for sent in to_fetch:
            tg.start_soon(_fetch_one, client, sent, max_bytes, prepared, failed)
    replacements: dict[int, ImageResult] = {}
    if prepared:
        new_batch = [prepared[im.index] for im in to_fetch if im.index in prepared]
        client._stats.fallbacks += len(new_batch)
        logger.info(
            "url_fallback: the service could not download %d URL(s); resubmitting %d as "
            "content (%d could not be downloaded by the client either)",
            len(to_fetch),
            len(new_batch),
            len(failed),
        )
        fallback_options = _CallOptions(options.tasks, options.referer, "multipart")
        for new in await client._send_batch(new_batch, fallback_options):
            if new.error is not None and new.code != IMAGE_ERROR_CODE:
                new.message = f"the client's fallback upload failed: {new.message}"
            new.fallback = True
            replacements[new.index] = new
    elif failed:
        logger.info(
            "url_fallback: the service could not download %d URL(s), nor could the client",
            len(failed),
        )
    out: list[ImageResult] = []
    for result in results:
        if result.index in replacements:
            out.append(replacements[result.index])
        elif result.index in failed:
            out.append(_with_download_error(result, failed[result.index]))
        else:
            out.append(result)
    return out
