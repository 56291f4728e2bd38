"""Image formats from magic bytes, and animation detection, without decoding anything.

Pure functions over bytes: they never raise on truncated or hostile content, and they
look at no more than the headers (a PNG's chunks before its first ``IDAT``, a WebP's
``VP8X`` flags, a GIF's block structure).
"""

from __future__ import annotations

from ._constants import ACCEPTED_FORMATS

__all__ = ["accepted_format", "animated_format", "gif_frame_count", "sniff_format"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEIF_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc", b"avif")
_WEBP_ANIMATION_FLAG = 0x02


def sniff_format(data: bytes) -> str | None:
    """The image format from its magic bytes, or None when it is not one we know."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(_PNG_SIGNATURE):
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


def accepted_format(data: bytes) -> str | None:
    """The format of ``data`` when the API accepts it (``ACCEPTED_FORMATS``), else None."""
    fmt = sniff_format(data)
    return fmt if fmt in ACCEPTED_FORMATS else None


def gif_frame_count(data: bytes, stop_after: int = 2) -> int:
    """Frames in a GIF (counting stops at ``stop_after``); 0 when the GIF is malformed."""
    try:
        pos = 13
        flags = data[10]
        if flags & 0x80:
            pos += 3 * (2 ** ((flags & 0x07) + 1))
        frames = 0
        while pos < len(data):
            block = data[pos]
            if block == 0x3B:  # trailer
                break
            if block == 0x21:  # extension: label, then sub-blocks
                pos += 2
            elif block == 0x2C:  # image descriptor
                frames += 1
                if frames >= stop_after:
                    return frames
                local = data[pos + 9]
                pos += 10
                if local & 0x80:
                    pos += 3 * (2 ** ((local & 0x07) + 1))
                pos += 1  # LZW minimum code size
            else:
                return frames
            while True:  # sub-blocks
                size = data[pos]
                pos += 1
                if size == 0:
                    break
                pos += size
        return frames
    except IndexError:
        return 0


def _png_is_animated(data: bytes) -> bool:
    """An ``acTL`` chunk announcing more than one frame before the first ``IDAT``."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT" or kind == b"IEND":
            return False
        if kind == b"acTL":
            frames = int.from_bytes(data[pos + 8 : pos + 12], "big")
            return frames > 1
        pos += 12 + length  # length, type, data, CRC
    return False


def _webp_is_animated(data: bytes) -> bool:
    """The extended (``VP8X``) header's animation flag."""
    return data[12:16] == b"VP8X" and len(data) > 20 and bool(data[20] & _WEBP_ANIMATION_FLAG)


def animated_format(data: bytes, fmt: str) -> bool:
    """True when ``data`` (already sniffed as ``fmt``) is an animation: GIF, APNG or WebP."""
    if fmt == "gif":
        return gif_frame_count(data) > 1
    if fmt == "png":
        return _png_is_animated(data)
    if fmt == "webp":
        return _webp_is_animated(data)
    return False
