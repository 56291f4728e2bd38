"""Turning call inputs into prepared images, and recognition responses into results."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ._envelope import decode_inner, open_envelope
from ._exceptions import IMAGE_ERROR_CODE, InvalidImageError, TupuError, error_for_code
from ._freshness import ReplayGuard
from ._images import (
    ContentTransform,
    Image,
    PreparedImage,
    check_image,
    display_path,
    load_image,
    prepare_url_str,
    read_path_in_thread,
    tag_for,
    to_image,
)
from ._redaction import redact_error
from ._requests import Transport
from ._sending import raise_for_transient_status
from ._types import RecognitionResponse

__all__ = ["ImageLoader", "RecognitionParser"]


@dataclass(frozen=True, slots=True)
class ImageLoader:
    """Validates call inputs into :class:`PreparedImage` objects, resizing with
    ``transform`` when one is set. File reads (bounded in time) and resizing run in
    worker threads."""

    transform: ContentTransform | None = None

    async def prepare(
        self, item: object, index: int, tags: list[str] | None, transport: Transport
    ) -> PreparedImage:
        """Validate one input: raises ``InvalidImageError`` and nothing else (an
        unforeseen failure becomes an ``InvalidImageError`` naming the cause)."""
        try:
            return await self._prepare(item, index, tags, transport)
        except InvalidImageError:
            raise
        except Exception as exc:
            detail = display_path(str(exc))[:200]
            raise InvalidImageError(
                f"image #{index}: could not be prepared ({type(exc).__name__}: {detail}); "
                f"pass a URL str, a pathlib.Path, bytes or tupu_async.Image"
            ) from exc

    async def _prepare(
        self, item: object, index: int, tags: list[str] | None, transport: Transport
    ) -> PreparedImage:
        if type(item) is str:  # the common case, checked in one pass
            return prepare_url_str(item, index, tag_for(tags, index))
        image, tag = check_image(to_image(item), tag_for(tags, index))
        if image.kind != "url" and image.sequence_id is not None and transport == "base64":
            raise InvalidImageError(
                f"{image.name or f'image #{index}'}: the base64 endpoint has no sequenceId "
                f"field; send images with a sequence_id with transport='multipart'"
            )
        return await self.load(image, index, tag)

    async def load(self, image: Image, index: int, tag: str | None) -> PreparedImage:
        """``load_image``, with file reads and resizing in worker threads."""
        transform = self.transform
        if image.kind == "url" or (image.kind == "bytes" and transform is None):
            return load_image(image, index, tag)
        content = None
        if image.kind == "path":
            content = await read_path_in_thread(image, transform=transform)
            if transform is None:
                return load_image(image, index, tag, content=content)
        return await anyio.to_thread.run_sync(
            lambda: load_image(image, index, tag, transform=transform, content=content)
        )


@dataclass(frozen=True, slots=True)
class RecognitionParser:
    """Parses a recognition response: verified with ``public_key`` (None skips the
    check), fresh per ``replay_guard`` (None skips it). Raises a redacted ``TupuError``."""

    public_key: RSAPublicKey | None
    replay_guard: ReplayGuard | None

    def __call__(self, response: httpx.Response) -> RecognitionResponse:
        try:
            return self._parse(response)
        except TupuError as exc:
            redact_error(exc)
            raise

    def _parse(self, response: httpx.Response) -> RecognitionResponse:
        raise_for_transient_status(response)
        status = response.status_code
        text = open_envelope(response.content, self.public_key, status_code=status)
        decoded = decode_inner(text)
        if decoded.code not in (0, IMAGE_ERROR_CODE):
            # Errors first: code 12 explains a skewed clock better than staleness would.
            raise error_for_code(
                decoded.code, decoded.message, status_code=status, request_id=decoded.request_id
            )
        if self.replay_guard is not None:
            self.replay_guard.check(decoded.timestamp, decoded.nonce, text)
        return decoded
