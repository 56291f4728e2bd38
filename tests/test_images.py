"""Image inputs: normalisation, format sniffing and validation before anything is sent.

Real tiny images are built with Pillow, so the sniffer sees what encoders really write.
"""

from __future__ import annotations

import ctypes
import io
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from tupu_async import Image, InvalidImageError, TupuError
from tupu_async._constants import ACCEPTED_FORMATS, MAX_IMAGE_BYTES
from tupu_async._images import (
    PreparedImage,
    generated_name,
    gif_frame_count,
    load_image,
    prepare_url_str,
    safe_filename,
    sniff_format,
    tag_for,
    to_image,
)


def pillow_image(fmt: str, size: tuple[int, int] = (4, 4), **options: object) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (200, 30, 30)).save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_gif(frames: int = 3) -> bytes:
    images = [PILImage.new("RGB", (4, 4), (i * 60, 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    return buffer.getvalue()


JPEG = pillow_image("JPEG")
PNG = pillow_image("PNG")
WEBP = pillow_image("WEBP")
BMP = pillow_image("BMP")
TIFF = pillow_image("TIFF")
GIF = pillow_image("GIF")
ANIMATED_GIF = animated_gif()
HEIC_HEADER = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 32


def invalid(call: object, *args: object, **kwargs: object) -> InvalidImageError:
    assert callable(call)
    with pytest.raises(InvalidImageError) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TupuError)
    return info.value


# --- to_image ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://example.com/a.jpg", "https://example.com/a?b=c&d=e"])
def test_to_image_url(url: str) -> None:
    image = to_image(url)
    assert image.kind == "url"
    assert image.url == url
    assert image.name == url


def test_to_image_pathlike_is_a_file(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "cat.png"
    file.write_bytes(PNG)
    image = to_image(file)
    assert image.kind == "path"
    assert image.path == file
    assert image.name == str(file)


def test_a_str_naming_an_existing_file_is_never_read(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "cat.png"
    file.write_bytes(PNG)
    exc = invalid(to_image, str(file))
    assert "pathlib.Path" in str(exc)


@pytest.mark.parametrize("data", [JPEG, bytearray(JPEG), memoryview(JPEG)])
def test_to_image_bytes_like(data: bytes) -> None:
    image = to_image(data)
    assert image.kind == "bytes"
    assert image.data == JPEG
    assert isinstance(image.data, bytes)
    assert image.name is None


def test_to_image_passes_an_image_through() -> None:
    image = Image.from_url("http://example.com/x.jpg", tag="t", sequence_id="s")
    assert to_image(image) is image


@pytest.mark.parametrize(
    "text",
    [
        "cat.jpg",
        "",
        "ftp://example.com/a.jpg",
        "www.example.com/a.jpg",
        "/no/such/file.png",
        "HTTP//example.com",
    ],
)
def test_str_that_is_not_a_url(text: str) -> None:
    exc = invalid(to_image, text)
    assert "not an http(s) URL" in str(exc)
    assert "pathlib.Path" in str(exc)


def test_the_message_does_not_tell_whether_a_file_exists(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "real.png"
    file.write_bytes(PNG)
    (tmp_path / "text.png").write_bytes(b"not an image")
    messages = {
        str(invalid(to_image, str(path))).replace(str(path), "<p>")
        for path in (file, tmp_path / "text.png", tmp_path / "gone.png", tmp_path)
    }
    assert len(messages) == 1


def test_long_garbage_str_is_truncated_in_the_message() -> None:
    exc = invalid(to_image, "x" * 10_000)
    assert len(str(exc)) < 500


@pytest.mark.parametrize("item", [123, 1.5, None, ["http://a.com/x.jpg"], {"url": "x"}, object()])
def test_non_image_types_are_refused(item: object) -> None:
    exc = invalid(to_image, item)
    assert type(item).__name__ in str(exc)
    assert "tupu_async.Image" in str(exc)


@pytest.mark.parametrize(
    "url", ["http://", "https://", "http:///path", "http://host/a b.jpg", "http://host/\n"]
)
def test_unusable_urls(url: str) -> None:
    invalid(Image.from_url, url)
    invalid(to_image, url)
    invalid(prepare_url_str, url, 0, None)


@pytest.mark.parametrize(
    ("url", "tag"),
    [
        ("https://img.example.com/a.jpg", None),
        ("http://img.example.com/b.png?x=1", "shop-7"),
        ("HTTPS://Img.Example.com:8443/c.gif#f", ""),
    ],
)
def test_a_str_url_prepares_as_the_general_path_does(url: str, tag: str | None) -> None:
    fast = prepare_url_str(url, 3, tag)
    slow = load_image(to_image(url), 3, tag)
    for field in PreparedImage.__slots__:
        assert getattr(fast, field) == getattr(slow, field), field


def test_a_str_url_with_a_bad_tag_is_refused_like_the_general_path() -> None:
    url = "https://img.example.com/a.jpg"
    bad_tag = "x\ud800y"  # an unpaired surrogate cannot be sent
    invalid(prepare_url_str, url, 0, bad_tag)
    invalid(load_image, to_image(url), 0, bad_tag)


def test_from_url_needs_a_scheme() -> None:
    exc = invalid(Image.from_url, "example.com/a.jpg")
    assert "http://" in str(exc)


def test_from_bytes_refuses_str() -> None:
    invalid(Image.from_bytes, "not bytes")


def test_image_repr_does_not_dump_content() -> None:
    text = repr(Image.from_bytes(b"\xff\xd8\xff" + b"secret" * 100, tag="t"))
    assert "secret" not in text
    assert "603 bytes" in text


# --- load_image: validation --------------------------------------------------------------------


def test_missing_file(tmp_path: pathlib.Path) -> None:
    exc = invalid(load_image, Image.from_path(tmp_path / "gone.jpg"), 0, None)
    assert "no such file" in str(exc)
    assert "gone.jpg" in str(exc)


def test_directory(tmp_path: pathlib.Path) -> None:
    exc = invalid(load_image, Image.from_path(tmp_path), 0, None)
    assert "directory" in str(exc)


_LOAD = """
import sys
from tupu_async import Image, InvalidImageError
from tupu_async._images import load_image
try:
    load_image(Image.from_path(sys.argv[1]), 0, None)
except InvalidImageError as exc:
    print(exc)
else:
    print("read it")
"""
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


def _drop_file_capabilities() -> None:
    """In the child before exec: root without the capabilities that bypass file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="file modes and capabilities")
def test_unreadable_file(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "locked.jpg"
    file.write_bytes(JPEG)
    file.chmod(0)
    try:
        if os.geteuid() != 0:
            message = str(invalid(load_image, Image.from_path(file), 0, None))
        else:
            # Root reads anything: load the file in a child that has lost that power.
            proc = subprocess.run(
                [sys.executable, "-c", _LOAD, str(file)],
                preexec_fn=_drop_file_capabilities,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            message = proc.stdout
    finally:
        file.chmod(0o600)
    assert "locked.jpg: permission denied" in message


def test_empty_content(tmp_path: pathlib.Path) -> None:
    assert "empty" in str(invalid(load_image, Image.from_bytes(b""), 0, None))
    file = tmp_path / "empty.jpg"
    file.write_bytes(b"")
    assert "empty" in str(invalid(load_image, Image.from_path(file), 0, None))


def test_content_over_one_mib_mentions_resize(tmp_path: pathlib.Path) -> None:
    big = b"\xff\xd8\xff" + b"\x00" * MAX_IMAGE_BYTES
    exc = invalid(load_image, Image.from_bytes(big, name="big.jpg"), 0, None)
    assert "resize=True" in str(exc)
    assert "big.jpg" in str(exc)
    file = tmp_path / "big.jpg"
    file.write_bytes(big)
    assert "resize=True" in str(invalid(load_image, Image.from_path(file), 0, None))


def test_exactly_one_mib_is_accepted(tmp_path: pathlib.Path) -> None:
    at_limit = b"\xff\xd8\xff" + b"\x00" * (MAX_IMAGE_BYTES - 3)
    assert len(at_limit) == MAX_IMAGE_BYTES
    assert load_image(Image.from_bytes(at_limit), 0, None).content == at_limit
    file = tmp_path / "limit.jpg"
    file.write_bytes(at_limit)
    assert load_image(Image.from_path(file), 0, None).content == at_limit


@pytest.mark.parametrize(
    "data",
    [
        b"hello world",
        b"%PDF-1.4\n",
        b"\x00" * 64,
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
        b"\x00\x00\x01\x00\x01\x00 ico",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ],
    ids=["text", "pdf", "zeros", "wav", "ico", "svg"],
)
def test_unknown_format(data: bytes) -> None:
    exc = invalid(load_image, Image.from_bytes(data, name="thing"), 0, None)
    assert "format" in str(exc)
    assert "jpeg" in str(exc)


def test_animated_gif_points_to_video_recognition() -> None:
    assert gif_frame_count(ANIMATED_GIF) >= 2
    exc = invalid(load_image, Image.from_bytes(ANIMATED_GIF, name="anim.gif"), 0, None)
    assert "animated" in str(exc)
    assert "video recognition" in str(exc)


def test_static_gif_is_accepted() -> None:
    assert gif_frame_count(GIF) == 1
    prepared = load_image(Image.from_bytes(GIF), 0, None)
    assert prepared.format == "gif"
    assert prepared.mime_type == "image/gif"


@pytest.mark.parametrize("cut", [0, 6, 11, 13, 20, 30])
def test_gif_frame_count_of_truncated_gifs_never_raises(cut: int) -> None:
    assert gif_frame_count(ANIMATED_GIF[:cut]) in (0, 1)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_gif_frame_count_never_raises(tail: bytes) -> None:
    assert gif_frame_count(b"GIF89a" + tail) >= 0


# --- sniff_format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (JPEG, "jpeg"),
        (PNG, "png"),
        (WEBP, "webp"),
        (BMP, "bmp"),
        (TIFF, "tiff"),
        (GIF, "gif"),
        (ANIMATED_GIF, "gif"),
        (HEIC_HEADER, "heif"),
        (pillow_image("TIFF", compression="tiff_lzw"), "tiff"),
        (pillow_image("JPEG", quality=10, progressive=True), "jpeg"),
        (pillow_image("WEBP", lossless=True), "webp"),
    ],
    ids=[
        "jpeg",
        "png",
        "webp",
        "bmp",
        "tiff",
        "gif",
        "animated-gif",
        "heic",
        "tiff-lzw",
        "jpeg-progressive",
        "webp-lossless",
    ],
)
def test_sniff_format_of_real_images(data: bytes, fmt: str) -> None:
    assert sniff_format(data) == fmt
    assert fmt in ACCEPTED_FORMATS


def test_big_endian_tiff_is_recognised() -> None:
    assert sniff_format(b"MM\x00*" + b"\x00" * 12) == "tiff"


@pytest.mark.parametrize(
    "data", [b"", b"\xff", b"\xff\xd8", b"RIFF\x00\x00\x00\x00WEB", b"GIF8", b"\x89PNG"]
)
def test_sniff_format_of_too_short_data(data: bytes) -> None:
    assert sniff_format(data) is None


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_sniff_format_returns_a_known_format_or_none(data: bytes) -> None:
    assert sniff_format(data) in ACCEPTED_FORMATS | {None}


@pytest.mark.parametrize(
    ("data", "fmt", "mime", "ext"),
    [
        (JPEG, "jpeg", "image/jpeg", ".jpg"),
        (PNG, "png", "image/png", ".png"),
        (WEBP, "webp", "image/webp", ".webp"),
        (BMP, "bmp", "image/bmp", ".bmp"),
        (TIFF, "tiff", "image/tiff", ".tif"),
    ],
)
def test_load_bytes_sets_format_mime_and_generated_name(
    data: bytes, fmt: str, mime: str, ext: str
) -> None:
    prepared = load_image(Image.from_bytes(data), 3, None)
    assert prepared.index == 3
    assert prepared.format == fmt
    assert prepared.mime_type == mime
    assert prepared.content == data
    assert prepared.name.endswith(ext)
    assert prepared.wire_name == prepared.name
    assert not prepared.is_url


# --- names ------------------------------------------------------------------------------------


def test_generated_names_are_stable_for_the_same_content() -> None:
    first = load_image(Image.from_bytes(PNG), 0, None)
    second = load_image(Image.from_bytes(bytes(PNG)), 7, None)
    assert first.name == second.name
    assert first.name == generated_name(PNG, "png")
    assert first.name.startswith("image-")
    assert load_image(Image.from_bytes(JPEG), 0, None).name != first.name


@settings(max_examples=100)
@given(a=st.binary(min_size=1, max_size=64), b=st.binary(min_size=1, max_size=64))
def test_generated_names_differ_for_different_content(a: bytes, b: bytes) -> None:
    assert (generated_name(a, "png") == generated_name(b, "png")) == (a == b)
    stem = generated_name(a, "png").removesuffix(".png")
    assert generated_name(a, "jpeg") == f"{stem}.jpg"  # the format picks only the extension
    assert generated_name(a, "no-such-format") == f"{stem}.img"


def test_explicit_name_is_kept() -> None:
    prepared = load_image(Image.from_bytes(PNG, name="avatar 1.png"), 0, None)
    assert prepared.name == "avatar 1.png"
    assert prepared.wire_name == "avatar 1.png"


def test_path_image_reports_the_path_and_sends_the_file_name(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "猫.jpg"
    file.write_bytes(JPEG)
    prepared = load_image(Image.from_path(file, sequence_id="s1"), 2, "call-tag")
    assert prepared.name == str(file)
    assert prepared.wire_name == "猫.jpg"
    assert prepared.content == JPEG
    assert prepared.format == "jpeg"
    assert prepared.tag == "call-tag"
    assert prepared.sequence_id == "s1"


def test_url_image_is_not_read() -> None:
    prepared = load_image(Image.from_url("http://example.com/a.jpg"), 0, None)
    assert prepared.is_url
    assert prepared.content is None
    assert prepared.name == prepared.wire_name == "http://example.com/a.jpg"


# --- tags ------------------------------------------------------------------------------------


def test_image_tag_overrides_the_call_tag() -> None:
    assert load_image(Image.from_bytes(PNG, tag="own"), 0, "call").tag == "own"
    assert load_image(Image.from_bytes(PNG), 0, "call").tag == "call"
    assert load_image(Image.from_bytes(PNG), 0, None).tag is None
    assert load_image(Image.from_bytes(PNG, tag=""), 0, "call").tag == ""


def test_non_str_tag_is_refused() -> None:
    invalid(load_image, Image.from_bytes(PNG), 0, 5)


def docs_tail_completion(tags: list[str], count: int) -> list[str]:
    """The docs' rule: tags pair with images; missing ones repeat the last tag given."""
    return [tags[i] if i < len(tags) else tags[-1] for i in range(count)]


@settings(max_examples=200)
@given(tags=st.lists(st.text(max_size=5), max_size=6), count=st.integers(0, 12))
def test_tag_for_is_the_docs_tail_completion(tags: list[str], count: int) -> None:
    got = [tag_for(tags, i) for i in range(count)]
    if not tags:
        assert got == [None] * count
    else:
        assert got == docs_tail_completion(tags, count)


def test_tag_for_examples() -> None:
    assert tag_for(["a", "b"], 0) == "a"
    assert tag_for(["a", "b"], 1) == "b"
    assert tag_for(["a", "b"], 5) == "b"
    assert tag_for(None, 0) is None
    assert tag_for([], 3) is None


# --- transforms (the resize hook) ------------------------------------------------------------


def test_transform_sees_content_format_and_name() -> None:
    seen: list[tuple[int, str, str]] = []

    def shrink(data: bytes, fmt: str, name: str) -> bytes:
        seen.append((len(data), fmt, name))
        return PNG

    big = b"\xff\xd8\xff" + b"\x00" * (2 * MAX_IMAGE_BYTES)
    prepared = load_image(Image.from_bytes(big, name="big.jpg"), 0, None, transform=shrink)
    assert seen == [(len(big), "jpeg", "big.jpg")]
    assert prepared.content == PNG
    assert prepared.format == "png"


def test_transform_output_still_too_large(tmp_path: pathlib.Path) -> None:
    big = b"\xff\xd8\xff" + b"\x00" * (2 * MAX_IMAGE_BYTES)
    file = tmp_path / "big.jpg"
    file.write_bytes(big)
    exc = invalid(load_image, Image.from_path(file), 0, None, transform=lambda d, f, n: d)
    assert "still too large after resizing" in str(exc)


def test_prepared_image_repr_is_short() -> None:
    text = repr(PreparedImage(0, "x", content=b"\x00" * 10_000))
    assert len(text) < 80


# --- exact contracts the checks above leave open ------------------------------------------


def test_constructors_keep_every_field(tmp_path: pathlib.Path) -> None:
    path = Image.from_path(tmp_path / "a.jpg", tag="t", sequence_id="s1")
    data = Image.from_bytes(PNG, name="n.png", tag="u", sequence_id="s2")
    url = Image.from_url("http://img.test/a.jpg", tag="v", sequence_id="s3")
    assert (url.tag, url.sequence_id, url.name) == ("v", "s3", "http://img.test/a.jpg")
    assert (path.tag, path.sequence_id, path.name) == ("t", "s1", str(tmp_path / "a.jpg"))
    assert (data.tag, data.sequence_id, data.name) == ("u", "s2", "n.png")


def test_from_bytes_names_the_wrong_type() -> None:
    exc = invalid(Image.from_bytes, "not bytes")
    assert str(exc) == "Image.from_bytes needs bytes, not str"


def test_repr_shows_where_each_kind_comes_from(tmp_path: pathlib.Path) -> None:
    url = Image.from_url("http://img.test/a.jpg", tag="t")
    path = Image.from_path(tmp_path / "b.png", name="b")
    assert repr(url) == "Image.url('http://img.test/a.jpg', name='http://img.test/a.jpg', tag='t')"
    assert repr(path) == f"Image.path({tmp_path / 'b.png'!r}, name='b', tag=None)"
    assert repr(Image.from_bytes(PNG)) == f"Image.bytes('<{len(PNG)} bytes>', name=None, tag=None)"


@pytest.mark.parametrize(
    "brand", [b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc", b"avif"]
)
def test_every_heif_brand_is_recognised(brand: bytes) -> None:
    assert sniff_format(b"\x00\x00\x00\x18ftyp" + brand + b"\x00" * 8) == "heif"
    assert sniff_format(b"\x00\x00\x00\x18free" + brand + b"\x00" * 8) is None  # no ftyp box
    assert sniff_format(b"\x00\x00\x00\x18ftyp" + brand.upper() + b"\x00" * 8) is None


def gif(
    frames: int,
    *,
    global_bits: int | None = None,
    local_bits: int | None = None,
    flags: int = 0,
    extension: bool = True,
    trailer: bool = True,
) -> bytes:
    """A GIF with ``frames`` frames, optional colour tables of 2**(bits+1) entries."""
    screen_flags = flags | (0x80 | global_bits if global_bits is not None else 0)
    out = b"GIF89a" + b"\x01\x00\x01\x00" + bytes([screen_flags]) + b"\x00\x00"
    if global_bits is not None:
        out += b"\xff" * (3 * 2 ** (global_bits + 1))  # misread as a block size: overrun
    for _ in range(frames):
        if extension:
            out += b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # graphic control extension
        local = flags | (0x80 | local_bits if local_bits is not None else 0)
        out += b"\x2c" + b"\x00" * 8 + bytes([local])
        if local_bits is not None:
            out += b"\xff" * (3 * 2 ** (local_bits + 1))
        out += b"\x02" + b"\x02\x4c\x01" + b"\x00"  # LZW code size, one sub-block, end
    return out + (b"\x3b" if trailer else b"")


@pytest.mark.parametrize("frames", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"global_bits": 3},
        {"local_bits": 3},
        {"global_bits": 0, "local_bits": 5},
        {"flags": 0x01},  # size bits set, but no colour table
        {"extension": False},
        {"trailer": False},
    ],
)
def test_gif_frames_are_counted_through_every_block(frames: int, options: dict[str, Any]) -> None:
    data = gif(frames, **options)
    assert gif_frame_count(data, stop_after=10) == frames
    assert gif_frame_count(data) == min(frames, 2)  # counting stops at the second frame


def test_a_truncated_gif_counts_no_frames() -> None:
    assert gif_frame_count(b"GIF89a\x01\x00") == 0
    assert gif_frame_count(gif(3)[:40], stop_after=10) == 0


def test_too_large_says_how_to_shrink_it() -> None:
    big = b"\xff\xd8\xff" + b"\x00" * 100
    exc = invalid(load_image, Image.from_bytes(big, name="big.jpg"), 0, None, max_bytes=50)
    assert str(exc) == (
        "big.jpg: 103 bytes is over the API's 50-byte (1 MiB) limit per image: resize it so "
        "its longest side is 256-512 px (pass resize=True, needs the tupu-async[images] "
        "extra), or send it by URL"
    )
    shrunk = invalid(
        load_image, Image.from_bytes(big, name="big.jpg"), 0, None,
        transform=lambda data, fmt, name: data, max_bytes=50,
    )  # fmt: skip
    assert str(shrunk).endswith("limit per image: it is still too large after resizing")


def test_generated_names_carry_a_64_bit_digest() -> None:
    name = generated_name(PNG, "png")
    assert len(name) == len("image-") + 16 + len(".png")
    int(name[len("image-") : -len(".png")], 16)  # hexadecimal


RULE = (
    "an image URL needs the http:// or https:// scheme and a host, at most 8192 characters, "
    "and no spaces or control characters (percent-encode them)"
)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://img.test/a b.jpg", "contains ' ' at position 17"),
        ("https://img.test/a\tb", "contains '\\t' at position 18"),
        ("http://", "has no host"),
    ],
)
def test_a_url_with_no_host_or_whitespace_says_to_percent_encode_it(url: str, why: str) -> None:
    exc = invalid(Image.from_url, url)
    assert str(exc) == f"{url!r} {why}: {RULE}"


def test_a_url_may_carry_another_url_in_its_query() -> None:
    url = "http://img.test/go?to=file:///a.jpg"
    assert Image.from_url(url).url == url


def test_load_image_keeps_index_names_and_sequence_id(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "cat.png"
    file.write_bytes(PNG)
    named = load_image(Image.from_path(file, name="custom", sequence_id="s1"), 7, None)
    assert (named.index, named.name, named.sequence_id) == (7, "custom", "s1")
    url = load_image(Image.from_url("http://img.test/a.jpg", sequence_id="s2"), 3, "t")
    assert (url.index, url.wire_name, url.sequence_id, url.tag) == (
        3,
        "http://img.test/a.jpg",
        "s2",
        "t",
    )


def test_load_image_names_the_file_in_content_errors(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_bytes(b"just text")
    exc = invalid(load_image, Image.from_path(file), 0, None)
    assert str(exc).startswith(f"{file}: not an image format the Tupu API accepts")


def test_an_unreadable_path_says_why(tmp_path: pathlib.Path) -> None:
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    exc = invalid(load_image, Image.from_path(loop), 0, None)
    assert str(exc) == f"{loop}: cannot read the file (Too many levels of symbolic links)"


def test_a_tag_must_be_a_str() -> None:
    exc = invalid(load_image, Image.from_bytes(PNG), 0, 5)
    assert str(exc) == "'image': tag must be a str, not int"


def test_unsafe_file_name_characters_become_underscores() -> None:
    assert safe_filename('a"b\\c\x00d.png') == "a_b_c_d.png"
    assert safe_filename("") == "image"
