"""Packing images into requests: pure, no I/O, no time.

A request never holds more than ``max_images`` images, never mixes URL and content
images (the API forbids it), never carries two frames of one ``sequence_id`` (the docs
require them unique per request) and, for the base64 endpoint, never exceeds the JSON
body limit. Images keep their relative order within each kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ._constants import MAX_BASE64_BODY_BYTES, MAX_IMAGES_PER_REQUEST
from ._images import PreparedImage
from ._requests import BASE64_BODY_OVERHEAD, Transport, base64_image_cost

__all__ = ["Batch", "Packer", "pack"]

Batch = list[PreparedImage]


@dataclass(slots=True)
class _Open:
    images: Batch = field(default_factory=list)
    bytes: int = BASE64_BODY_OVERHEAD
    sequence_ids: set[str] = field(default_factory=set)


@dataclass(slots=True, kw_only=True)
class Packer:
    """Accumulates images and hands out full batches as soon as they fill.

    ``add`` returns the batches that became complete (zero or one); ``flush`` returns
    whatever is still open. One open batch per kind (URL / content).
    """

    max_images: int = MAX_IMAGES_PER_REQUEST
    transport: Transport = "multipart"
    max_body_bytes: int = MAX_BASE64_BODY_BYTES
    _open: dict[bool, _Open] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.max_images < 1:
            raise ValueError("max_images_per_request must be at least 1")

    @property
    def pending(self) -> int:
        return sum(len(o.images) for o in self._open.values())

    def add(self, image: PreparedImage) -> list[Batch]:
        kind = image.is_url
        current = self._open.get(kind)
        done: list[Batch] = []
        cost = 0 if kind or self.transport != "base64" else base64_image_cost(image)
        if current is not None and (
            (image.sequence_id is not None and image.sequence_id in current.sequence_ids)
            or (cost and current.bytes + cost > self.max_body_bytes)
        ):
            done.append(current.images)
            current = None
        if current is None:
            current = self._open[kind] = _Open()
        current.images.append(image)
        current.bytes += cost
        if image.sequence_id is not None:
            current.sequence_ids.add(image.sequence_id)
        if len(current.images) >= self.max_images:
            done.append(current.images)
            del self._open[kind]
        return done

    def flush(self) -> list[Batch]:
        done = [o.images for o in self._open.values() if o.images]
        self._open.clear()
        return done


def pack(
    images: Iterable[PreparedImage],
    *,
    max_images: int = MAX_IMAGES_PER_REQUEST,
    transport: Transport = "multipart",
    max_body_bytes: int = MAX_BASE64_BODY_BYTES,
) -> list[Batch]:
    """All batches for ``images`` at once (what the engine does incrementally)."""
    packer = Packer(max_images=max_images, transport=transport, max_body_bytes=max_body_bytes)
    out: list[Batch] = []
    for im in images:
        out.extend(packer.add(im))
    out.extend(packer.flush())
    return out
