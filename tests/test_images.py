"""Image inputs: normalisation, format sniffing and validation before anything is sent.

Real tiny images are built with Pillow, so the sniffer sees what encoders really write.
"""

from __future__ import annotations

import io
import os
import pathlib

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


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "locked.jpg"
    file.write_bytes(JPEG)
    file.chmod(0)
    try:
        exc = invalid(load_image, Image.from_path(file), 0, None)
    finally:
        file.chmod(0o600)
    assert "permission" in str(exc)


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
    assert generated_name(a, "jpeg") == generated_name(a, "jpeg")


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
