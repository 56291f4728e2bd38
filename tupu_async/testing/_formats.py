"""Image format sniffing from magic bytes, for the formats the Tupu API accepts.

Independent of the client's sniffing on purpose (see ``docs/design-fake.md``).
"""

from __future__ import annotations

__all__ = ["sniff_image_format"]

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})


def sniff_image_format(data: bytes) -> str | None:
    """The format name (``"jpeg"``, ``"png"``, ...) of ``data``, or None when not accepted."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "heif"
    return None
