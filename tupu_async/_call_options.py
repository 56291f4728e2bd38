"""The options of one recognition call, and the checks on a call's arguments."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._batching import Batch
from ._constants import MAX_BASE64_BODY_BYTES
from ._exceptions import InvalidImageError
from ._images import Image
from ._requests import PreparedRequest, Transport, build_recognition_request

__all__ = ["CallOptions", "as_inputs", "tag_list"]

_TRANSPORTS: tuple[Transport, ...] = ("multipart", "base64")


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What one call asks of the service. Hashable: calls with equal options (and images
    of the same kind) may share a request. Build it with :meth:`of`, which validates."""

    tasks: tuple[str, ...] | None = None
    referer: str | None = None
    transport: Transport = "multipart"

    @classmethod
    def of(cls, tasks: Sequence[str] | None, referer: str | None, transport: str) -> CallOptions:
        """Validated options; ``ValueError`` naming the bad argument."""
        checked = next((t for t in _TRANSPORTS if t == transport), None)
        if checked is None:
            raise ValueError(f"transport must be 'multipart' or 'base64', not {transport!r}")
        if isinstance(tasks, str):
            tasks = [tasks]
        if tasks is not None:
            bad = [t for t in tasks if not isinstance(t, str) or not t.strip()]
            if bad:
                raise ValueError(f"tasks must be non-empty task id strings, got {bad!r}")
        if referer is not None and not isinstance(referer, str):
            raise ValueError("referer must be a str")
        return cls(tuple(tasks) if tasks else None, referer or None, checked)

    def build(self, secret_id: str, batch: Batch) -> PreparedRequest:
        """The request for ``batch`` (one kind of image) with these options."""
        return build_recognition_request(
            secret_id, batch, tasks=self.tasks, referer=self.referer, transport=self.transport
        )

    def build_one(self, secret_id: str, batch: Batch) -> PreparedRequest:
        """The request ``recognize`` sends for all of ``batch``; ``ValueError`` when the API
        would refuse it (kinds mixed, a repeated ``sequence_id``, base64 body over 30 MiB)."""
        if len({p.is_url for p in batch}) > 1:
            raise ValueError(
                "recognize got URL and content images together, which the API forbids in one "
                "request: send them separately, or use recognize_many, which splits them"
            )
        seq = [p.sequence_id for p in batch if p.sequence_id is not None]
        if len(seq) != len(set(seq)):
            raise ValueError(
                "a sequence_id may appear only once per request (the API requires "
                "frames of one sequence to be unique per request): use recognize_many"
            )
        request = self.build(secret_id, batch)
        if self.by_position(batch) and request.static_size + 1024 > MAX_BASE64_BODY_BYTES:
            raise ValueError(
                "these images make a base64 body over the API's 30 MiB limit: send fewer per "
                "request, or use recognize_many, which packs by size"
            )
        return request

    def by_position(self, batch: Batch) -> bool:
        """Whether the answer to ``batch`` maps to it by position (it carries no names)."""
        return not batch[0].is_url and self.transport == "base64"


def as_inputs(images: object, call: str) -> Iterable[Any] | AsyncIterable[Any]:
    """The images argument as an iterable: one bare image is a list of one.

    ``InvalidImageError`` when it is neither an image nor an (async) iterable of images.
    """
    if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike, Image)):
        return [images]
    if isinstance(images, (Iterable, AsyncIterable)):
        return images
    raise InvalidImageError(
        f"{call} needs an image or an iterable of images, not {type(images).__name__}: pass "
        f"URL strs, pathlib.Paths, bytes or tupu_async.Image objects"
    )


def tag_list(tags: Sequence[str] | None) -> list[str] | None:
    """``tags`` as a list (one str is a list of one); ``ValueError`` for a non-str tag."""
    if tags is None:
        return None
    if isinstance(tags, str):
        return [tags]
    out = list(tags)
    bad = [t for t in out if not isinstance(t, str)]
    if bad:
        raise ValueError(f"tags must be strings, got {bad[:3]!r}")
    return out
