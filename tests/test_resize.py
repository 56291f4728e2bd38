"""The optional resizer (``resize=True``) on real images generated with Pillow."""

from __future__ import annotations

import io
import os
import pathlib
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from tupu_async import InvalidImageError
from tupu_async._constants import MAX_IMAGE_BYTES
from tupu_async._images import Image, load_image, sniff_format
from tupu_async._resize import MAX_SCANS, MAX_SIDE, MIN_SIDE, Resizer, make_resizer

ORIENTATION = 0x0112


def noise(size: tuple[int, int], mode: str = "RGB") -> PILImage.Image:
    """An image of random pixels: it compresses badly, so large ones are large files."""
    channels = len(mode)
    return PILImage.frombytes(mode, size, os.urandom(size[0] * size[1] * channels))


def gradient(size: tuple[int, int]) -> PILImage.Image:
    """A smooth image that compresses well: small files at any size."""
    return PILImage.linear_gradient("L").resize(size).convert("RGB")


def encode(img: PILImage.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def decode(data: bytes) -> PILImage.Image:
    img = PILImage.open(io.BytesIO(data))
    img.load()
    return img


@pytest.fixture(scope="module")
def resizer() -> Resizer:
    transform = make_resizer()
    assert isinstance(transform, Resizer)
    return transform


@pytest.mark.parametrize(
    ("fmt", "name", "options"),
    [
        ("JPEG", "jpeg", {"quality": 97}),
        ("PNG", "png", {}),
        ("WEBP", "webp", {"quality": 100}),
        ("BMP", "bmp", {}),
        ("TIFF", "tiff", {}),
    ],
)
def test_large_image_shrinks_under_limit_and_keeps_its_format(
    resizer: Resizer, fmt: str, name: str, options: dict[str, object]
) -> None:
    original = encode(noise((2400, 1600)), fmt, **options)
    assert len(original) > MAX_IMAGE_BYTES

    out = resizer(original, name, "big")

    assert len(out) <= MAX_IMAGE_BYTES
    img = decode(out)
    assert img.format == fmt
    assert MIN_SIDE <= max(img.size) <= MAX_SIDE
    assert img.size == (512, 341)  # aspect ratio kept


def test_static_gif_is_reencoded_as_jpeg(resizer: Resizer) -> None:
    original = encode(gradient((1600, 900)).convert("P"), "GIF")

    img = decode(resizer(original, "gif", "flag.gif"))

    assert img.format == "JPEG"
    assert img.size == (512, 288)


def test_small_upright_image_is_returned_byte_for_byte(resizer: Resizer) -> None:
    original = encode(gradient((400, 300)), "JPEG")

    assert resizer(original, "jpeg", "small") is original


def test_exif_orientation_6_is_applied_to_the_pixels(resizer: Resizer) -> None:
    exif = PILImage.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 CW to display": stored landscape, shown portrait
    original = encode(gradient((1200, 600)), "JPEG", exif=exif.tobytes())

    img = decode(resizer(original, "jpeg", "phone.jpg"))

    assert img.size == (256, 512)  # width and height swapped, longest side 512
    assert img.getexif().get(ORIENTATION, 1) == 1


def test_small_rotated_image_is_transposed_but_never_enlarged(resizer: Resizer) -> None:
    exif = PILImage.Exif()
    exif[ORIENTATION] = 6
    original = encode(gradient((300, 120)), "PNG", exif=exif.tobytes())

    img = decode(resizer(original, "png", "rotated.png"))

    assert img.format == "PNG"
    assert img.size == (120, 300)


def test_small_but_heavy_bmp_is_flattened_under_the_limit(resizer: Resizer) -> None:
    original = encode(noise((512, 512), "RGBA"), "BMP")
    assert len(original) > MAX_IMAGE_BYTES

    out = resizer(original, "bmp", "alpha.bmp")

    assert len(out) <= MAX_IMAGE_BYTES
    img = decode(out)
    assert (img.format, img.mode, img.size) == ("BMP", "RGB", (512, 512))


def test_incompressible_png_shrinks_further_within_range(resizer: Resizer) -> None:
    original = encode(noise((512, 512), "RGBA"), "PNG")
    assert len(original) > MAX_IMAGE_BYTES

    out = resizer(original, "png", "noise.png")

    assert len(out) <= MAX_IMAGE_BYTES
    img = decode(out)
    assert img.format == "PNG"
    assert MIN_SIDE <= max(img.size) < MAX_SIDE


def test_content_pillow_cannot_open_passes_when_small_and_fails_when_large(
    resizer: Resizer,
) -> None:
    heif_like = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 100
    assert resizer(heif_like, "heif", "a.heic") is heif_like

    with pytest.raises(InvalidImageError, match="could not be resized"):
        resizer(heif_like + b"\x00" * MAX_IMAGE_BYTES, "heif", "big.heic")


def test_load_image_applies_the_transform_before_the_size_check(
    resizer: Resizer, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(encode(noise((2000, 2000)), "JPEG", quality=98))

    with pytest.raises(InvalidImageError, match="resize=True"):
        load_image(Image.from_path(path), 0, None)

    prepared = load_image(Image.from_path(path), 3, "t", transform=resizer)
    assert prepared.content is not None
    assert len(prepared.content) <= MAX_IMAGE_BYTES
    assert (prepared.format, prepared.index, prepared.tag) == ("jpeg", 3, "t")
    assert sniff_format(prepared.content) == "jpeg"


def test_make_resizer_without_pillow_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)

    with pytest.raises(ImportError, match=r"pip install 'tupu-async\[images\]'"):
        make_resizer()


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(1, 1400),
    height=st.integers(1, 1400),
    fmt=st.sampled_from(["JPEG", "PNG", "WEBP"]),
)
def test_longest_side_is_capped_and_never_enlarged(
    resizer: Resizer, width: int, height: int, fmt: str
) -> None:
    original = encode(gradient((width, height)), fmt)

    img = decode(resizer(original, fmt.lower(), "x"))

    assert max(img.size) == min(MAX_SIDE, max(width, height))
    assert img.format == fmt


def _first_scan_per_component(data: bytes) -> bytes:
    """A sequential JPEG whose first scan carries one component (non-interleaved), as
    libjpeg reads it: its decoder then buffers the whole image's coefficients."""
    sos = data.index(b"\xff\xda")
    length = int.from_bytes(data[sos + 2 : sos + 4], "big")
    components = data[sos + 4]
    assert components == 3
    # Keep Ns=1 and the first component's selector; the entropy data that follows is then
    # only partly valid, which is fine: the pixel budget must refuse before any decoding.
    header = (
        data[sos : sos + 2] + (length - 4).to_bytes(2, "big") + b"\x01" + data[sos + 5 : sos + 7]
    )
    return data[:sos] + header + data[sos + 2 + length - 3 :]


@pytest.mark.parametrize("layout", ["progressive", "multi-scan"])
def test_jpegs_buffering_every_coefficient_are_counted_at_full_size(layout: str) -> None:
    # A progressive (or non-interleaved) JPEG makes libjpeg hold the whole image's DCT
    # coefficients (2 bytes per sample) whatever the draft scale: a 382 KB progressive
    # 10000x10000 grey JPEG peaks at ~240 MiB. Draft-scale counting must not apply.
    img = gradient((2000, 2000))
    if layout == "progressive":
        data = encode(img, "JPEG", progressive=True)
    else:
        data = _first_scan_per_component(encode(img, "JPEG"))
    resizer = Resizer(max_pixels=1_000_000)  # baseline 2000x2000 passes at draft 1000x1000
    with pytest.raises(InvalidImageError, match="pixel budget"):
        resizer(data, "jpeg", "bomb.jpg")
    assert max(decode(resizer(encode(img, "JPEG"), "jpeg", "ok.jpg")).size) == MAX_SIDE


def test_a_small_progressive_jpeg_within_the_budget_is_still_resized(resizer: Resizer) -> None:
    data = encode(gradient((1600, 1200)), "JPEG", progressive=True)
    assert max(decode(resizer(data, "jpeg", "p.jpg")).size) == MAX_SIDE


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding(resizer: Resizer) -> None:
    # Each progressive scan is a pass over the whole image: 20,000 copies of a 31-byte
    # scan (a 667 KB file, 4000x4000 px) kept the resizer busy for minutes.
    data = encode(PILImage.new("L", (1024, 1024), 128), "JPEG", progressive=True)
    last_scan, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    bomb = data[:end] + data[last_scan:end] * MAX_SCANS + data[end:]
    assert len(bomb) < 64 * 1024
    with pytest.raises(InvalidImageError, match="scans"):
        resizer(bomb, "jpeg", "scans.jpg")
    assert max(decode(resizer(data, "jpeg", "ok.jpg")).size) == MAX_SIDE
