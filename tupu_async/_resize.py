"""Optional image preparation (``resize=True``): shrink content images to what the API wants.

The Tupu docs recommend a longest side of 256-512 px and cap uploads at 1 MiB. The
resizer returned by :func:`make_resizer` is a ``ContentTransform`` applied to every content
image before its size check. It needs Pillow (the ``tupu-async[images]`` extra), imported
only when a resizer is made.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from ._constants import MAX_IMAGE_BYTES
from ._exceptions import InvalidImageError
from ._images import ContentTransform

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["MAX_PIXELS", "MAX_SCANS", "MAX_SIDE", "MIN_SIDE", "Resizer", "make_resizer"]

MAX_SIDE: Final = 512
"""Longest side (px) an image is downsized to: the top of the API's recommended range."""
MIN_SIDE: Final = 256
"""Smallest longest side (px) the resizer shrinks to when it must cut bytes further."""

MAX_PIXELS: Final = 36_000_000
"""Pixel budget of one decode, checked from the header before any pixel is decoded."""

MAX_SCANS: Final = 64
"""Most scans a JPEG may have to be resized (each is a pass over the whole image)."""

_ANIMATED_FORMATS: Final = frozenset({"GIF", "PNG", "WEBP"})
"""Formats whose animations the API refuses (an MPO photo's extra frames are fine)."""
_KEEP_FORMATS: Final = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF"}
"""Formats the API accepts that are re-encoded as themselves; anything else becomes JPEG."""
_JPEG_QUALITIES: Final = (88, 80, 70, 60, 45, 35)
_WEBP_QUALITIES: Final = (85, 75, 65, 50, 35)
_SHRINK_STEP: Final = 0.8
_EXIF_ORIENTATION: Final = 0x0112


class Resizer:
    """A ``ContentTransform``: ``resizer(content, format, name) -> content``.

    Guarantees for every image Pillow can open:

    - it is only ever downsized, never enlarged: the longest side ends up at most 512 px
      and, when an image had to shrink, at least 256 px (unless it was smaller already);
    - nothing over ``max_pixels`` is decoded (``InvalidImageError`` instead), so a small
      file declaring huge dimensions cannot exhaust memory; JPEGs count at draft scale;
    - animations (GIF, APNG, WebP) are refused like the API refuses them;
    - the result is under ``max_bytes`` (1 MiB) or ``InvalidImageError`` is raised;
    - EXIF orientation is applied to the pixels, so the service sees the image upright;
    - JPEG, PNG, WebP, BMP and TIFF keep their format; other formats (static GIF, HEIF)
      are re-encoded as JPEG, and so is anything that cannot get under the limit otherwise.

    An image that is already at most 512 px, under the limit and upright is returned
    unchanged, byte for byte. Content Pillow cannot open is returned as is when it is
    under the limit (the API's own check decides), and rejected otherwise.
    """

    def __init__(
        self,
        *,
        max_side: int = MAX_SIDE,
        max_bytes: int = MAX_IMAGE_BYTES,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        if max_side < MIN_SIDE:
            raise ValueError(f"max_side must be at least {MIN_SIDE} px")
        if max_pixels < max_side * max_side:
            raise ValueError(f"max_pixels must be at least max_side squared ({max_side**2:,})")
        from PIL import Image as PILImageModule
        from PIL import ImageOps

        self._pil = PILImageModule
        self._ops = ImageOps
        self.max_side = max_side
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    def __call__(self, content: bytes, format: str, name: str) -> bytes:
        pil = self._pil
        try:
            img = pil.open(io.BytesIO(content))
            if img.format in _ANIMATED_FORMATS and getattr(img, "is_animated", False):
                raise InvalidImageError(
                    f"{name}: an animated {img.format}; image recognition takes static images "
                    f"only: send animations to Tupu's video recognition API, or extract a frame"
                )
            longest = max(img.size)
            if img.format == "JPEG":
                _check_scans(content, name)
                self._check_coefficients(img, content, name)
                img.draft("RGB", (self.max_side, self.max_side))
            self._check_pixels(img, name)  # before anything that decodes (PNG EXIF does)
            orientation = _orientation(img)
            upright = orientation in (0, 1)
            if longest <= self.max_side and upright and len(content) <= self.max_bytes:
                return content
            img.load()
            if max(img.size) > self.max_side:
                img.thumbnail((self.max_side, self.max_side), pil.Resampling.LANCZOS)
            if orientation not in (0, 1):
                img = self._ops.exif_transpose(img)
            return self._shrink(img, format, name)
        except InvalidImageError:
            raise
        except (pil.DecompressionBombError, pil.DecompressionBombWarning, MemoryError):
            raise InvalidImageError(
                f"{name}: too many pixels to resize safely; downscale it before sending"
            ) from None
        except Exception as exc:  # Pillow raises many types for content it cannot read
            if len(content) <= self.max_bytes:
                return content
            raise InvalidImageError(
                f"{name}: could not be resized ({type(exc).__name__}: {exc}) and is over the "
                f"{self.max_bytes:,}-byte (1 MiB) limit: convert it to JPEG first"
            ) from None

    def _check_pixels(self, img: PILImage, name: str) -> None:
        width, height = img.size
        if width * height > self.max_pixels:
            raise InvalidImageError(
                f"{name}: {width}x{height} px is over the {self.max_pixels:,}-pixel budget for "
                f"resizing (a small file can declare huge dimensions): downscale it before "
                f"sending, or send it by URL"
            )

    def _check_coefficients(self, img: PILImage, content: bytes, name: str) -> None:
        """Refuse a JPEG whose full-size coefficient buffer is over the budget's bytes."""
        layers: list[tuple[int, int, int, int]] = getattr(img, "layer", [])
        if not layers:
            return
        if not img.info.get("progressive") and _first_scan_components(content) >= len(layers):
            return  # one interleaved scan: decoded row by row, at draft scale
        h_max = max(h for _, h, _, _ in layers)
        v_max = max(v for _, _, v, _ in layers)
        samples = sum(h * v for _, h, v, _ in layers) / (h_max * v_max)
        width, height = img.size
        if width * height * samples * 2 > self.max_pixels * 4:
            raise InvalidImageError(
                f"{name}: a progressive or multi-scan JPEG of {width}x{height} px is decoded "
                f"at full size, over the {self.max_pixels:,}-pixel budget for resizing: "
                f"downscale it (or save it as baseline JPEG) before sending, or send it by URL"
            )

    def _shrink(self, img: PILImage, format: str, name: str) -> bytes:
        target = _KEEP_FORMATS.get(format, "JPEG")
        side = min(self.max_side, max(img.size))
        while True:
            scaled = _scaled(img, side, self._pil)
            for data in _encodings(scaled, target, self._pil):
                if len(data) <= self.max_bytes:
                    return data
            if target != "JPEG" and side <= MIN_SIDE:
                target = "JPEG"  # the format cannot get small enough: fall back to JPEG
                side = min(self.max_side, max(img.size))
                continue
            if side <= MIN_SIDE:
                break
            side = max(MIN_SIDE, int(side * _SHRINK_STEP))
        raise InvalidImageError(
            f"{name}: still over the {self.max_bytes:,}-byte (1 MiB) limit after resizing to "
            f"{side} px: send it by URL instead"
        )


def _check_scans(content: bytes, name: str) -> None:
    """Refuse a JPEG with more than ``MAX_SCANS`` scans (SOS markers; entropy-coded data
    escapes 0xFF, so the count is never low)."""
    scans = content.count(b"\xff\xda")
    if scans > MAX_SCANS:
        raise InvalidImageError(
            f"{name}: a JPEG with {scans:,} scans (over {MAX_SCANS}) would take minutes to "
            f"decode; re-save it as a baseline JPEG before sending, or send it by URL"
        )


_SOS: Final = 0xDA
_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8)})


def _first_scan_components(content: bytes) -> int:
    """Components in a JPEG's first scan (SOS ``Ns``); 0 when no scan header is found."""
    at = 2  # after SOI
    while at + 4 <= len(content):
        if content[at] != 0xFF:
            return 0
        marker = content[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE_MARKERS:
            at += 2
            continue
        if marker == _SOS:
            return content[at + 4] if at + 4 < len(content) else 0
        at += 2 + int.from_bytes(content[at + 2 : at + 4], "big")
    return 0


def _orientation(img: PILImage) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF: treat as upright
        return 1
    return value if isinstance(value, int) else 1


def _scaled(img: PILImage, side: int, pil: Any) -> PILImage:
    if max(img.size) <= side:
        return img
    out = img.copy()
    out.thumbnail((side, side), pil.Resampling.LANCZOS)
    return out


def _for_jpeg(img: PILImage, pil: Any) -> PILImage:
    """JPEG holds no alpha and no palette: flatten on white, convert to RGB (or keep L)."""
    if img.mode in ("RGB", "L", "CMYK"):
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = pil.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background  # type: ignore[no-any-return]
    return img.convert("RGB")


def _encodings(img: PILImage, target: str, pil: Any) -> Iterator[bytes]:
    """Encodings of ``img`` as ``target``, best quality first; each made only when asked for."""
    icc = img.info.get("icc_profile")
    extra: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if target == "JPEG":
        rgb = _for_jpeg(img, pil)
        for quality in _JPEG_QUALITIES:
            yield _save(rgb, "JPEG", quality=quality, optimize=True, **extra)
    elif target == "WEBP":
        for quality in _WEBP_QUALITIES:
            yield _save(img, "WEBP", quality=quality, method=4, **extra)
    elif target == "PNG":
        yield _save(img, "PNG", optimize=True, **extra)
    elif target == "TIFF":
        flat = img if img.mode in ("RGB", "RGBA", "L", "CMYK") else img.convert("RGBA")
        yield _save(flat, "TIFF", compression="tiff_adobe_deflate")
    else:
        yield _save(img if img.mode in ("RGB", "L", "P", "1") else _for_jpeg(img, pil), "BMP")


def _save(img: PILImage, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def make_resizer(
    *, max_side: int = MAX_SIDE, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_PIXELS
) -> ContentTransform:
    """A resizer for ``resize=True``; raises ``ImportError`` when Pillow is missing."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        raise ImportError("resize=True needs Pillow: pip install 'tupu-async[images]'") from None
    return Resizer(max_side=max_side, max_bytes=max_bytes, max_pixels=max_pixels)
