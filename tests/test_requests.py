"""Request bodies: what a server parses out of them is exactly what was signed and meant.

JSON bodies are read back with ``json``, multipart bodies with python-multipart (what the
fake server's Starlette uses) and with the standard library's ``email`` parser.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.multipart import Field, File, parse_form

from tupu_async._constants import (
    BASE64_RECOGNITION_PATH,
    LIBRARY_DELETE_PATH,
    LIBRARY_SEARCH_PATH,
    RECOGNITION_PATH,
    TASK_OCR_TEXT,
    TASK_POLITICAL,
    TASK_PORN,
    TASK_VIOLENCE,
)
from tupu_async._images import PreparedImage
from tupu_async._requests import (
    BASE64_BODY_OVERHEAD,
    PreparedRequest,
    base64_image_cost,
    build_base64_request,
    build_json_request,
    build_management_request,
    build_multipart_request,
    build_recognition_request,
    wire_tags,
)
from tupu_async._signing import SignedFields, Signer

KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
SIGNER = Signer("sid-123", KEY)
# The longest auth fields in practice: a 4096-bit signature is 684 base64 characters.
WIDE_SIGNED = SignedFields("99999999999", "0.9999999999999999", "A" * 682 + "==")

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\r\n--\r\n" * 20


def url_image(i: int, *, tag: str | None = None, seq: str | None = None) -> PreparedImage:
    url = f"http://example.com/{i}.jpg?a=1&b=2"
    return PreparedImage(i, url, url=url, tag=tag, sequence_id=seq)


def content_image(
    i: int,
    data: bytes,
    *,
    name: str | None = None,
    fmt: str = "jpeg",
    tag: str | None = None,
    seq: str | None = None,
) -> PreparedImage:
    wire = name if name is not None else f"image-{i}.jpg"
    return PreparedImage(
        i, wire, content=data, format=fmt, wire_name=wire, tag=tag, sequence_id=seq
    )


def json_body(request: PreparedRequest, signed: SignedFields) -> dict[str, Any]:
    body = request.body(signed)
    parsed = json.loads(body)
    assert isinstance(parsed, dict)
    return parsed


def assert_auth_fields(parsed: dict[str, Any], signed: SignedFields) -> None:
    for field in ("timestamp", "nonce", "signature"):
        assert isinstance(parsed[field], str), field
        assert parsed[field] == getattr(signed, field)


class ParsedForm:
    """A multipart body as a server sees it."""

    def __init__(self, request: PreparedRequest, body: bytes) -> None:
        self.fields: list[tuple[str, str]] = []
        self.files: list[tuple[str, str, bytes]] = []

        def on_field(field: Field) -> None:
            self.fields.append(((field.field_name or b"").decode(), (field.value or b"").decode()))

        def on_file(file: File) -> None:
            file.file_object.seek(0)
            self.files.append(
                (
                    (file.field_name or b"").decode(),
                    (file.file_name or b"").decode("utf-8"),
                    file.file_object.read(),
                )
            )

        headers = {
            "Content-Type": request.content_type.encode(),
            "Content-Length": str(len(body)).encode(),
        }
        parse_form(headers, io.BytesIO(body), on_field, on_file)

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name]

    def value(self, name: str) -> str:
        [v] = self.values(name)
        return v


def email_parts(request: PreparedRequest, body: bytes) -> list[Any]:
    raw = b"Content-Type: " + request.content_type.encode() + b"\r\n\r\n" + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    assert message.is_multipart()
    assert not message.defects
    return list(message.iter_parts())


# --- URL JSON ------------------------------------------------------------------------------


def test_json_body_carries_signed_fields_as_strings_and_every_field() -> None:
    images = [url_image(0, tag="room-1", seq="s1"), url_image(1), url_image(2, seq="s2")]
    request = build_json_request(
        "sid-123", images, tasks=[TASK_PORN, TASK_VIOLENCE], referer="https://ref.example/"
    )
    assert request.path == RECOGNITION_PATH + "sid-123"
    assert request.content_type == "application/json"
    assert request.image_count == 3
    signed = SIGNER.sign()
    parsed = json_body(request, signed)
    assert_auth_fields(parsed, signed)
    assert parsed["image"] == [im.url for im in images]
    assert parsed["tag"] == ["room-1", "", ""]
    assert parsed["sequenceId"] == ["s1", "", "s2"]
    assert parsed["task"] == [TASK_PORN, TASK_VIOLENCE]
    assert parsed["referer"] == "https://ref.example/"
    assert set(parsed) == {
        "timestamp", "nonce", "signature", "image", "tag", "sequenceId", "task", "referer"
    }  # fmt: skip


def test_json_body_omits_what_was_not_given() -> None:
    parsed = json_body(build_json_request("sid", [url_image(0)]), SIGNER.sign())
    assert set(parsed) == {"timestamp", "nonce", "signature", "image"}


def test_every_attempt_splices_fresh_auth_into_the_same_static_body() -> None:
    request = build_json_request("sid", [url_image(0, tag="t")], tasks=[TASK_PORN])
    first, second = SIGNER.sign(), SIGNER.sign()
    a, b = json_body(request, first), json_body(request, second)
    assert_auth_fields(a, first)
    assert_auth_fields(b, second)
    assert a["nonce"] != b["nonce"]
    for key in ("image", "tag", "task"):
        assert a[key] == b[key]
    assert request.body(first).endswith(request.body(second)[-request.static_size + 1 :])


def test_json_body_escapes_unusual_tags() -> None:
    tags = ['quote " and \\ backslash', "换行\n制表\t", "\u0000nul", "emoji 🙂"]
    images = [url_image(i, tag=t) for i, t in enumerate(tags)]
    parsed = json_body(build_json_request("sid", images), WIDE_SIGNED)
    assert parsed["tag"] == tags


# --- management -----------------------------------------------------------------------------


def test_management_body_carries_secret_id_and_fields() -> None:
    request = build_management_request(
        LIBRARY_DELETE_PATH, "sid-9", {"libraryId": "lib", "names": ["a", "b"]}
    )
    assert request.path == LIBRARY_DELETE_PATH
    signed = SIGNER.sign()
    parsed = json_body(request, signed)
    assert_auth_fields(parsed, signed)
    assert parsed["secretId"] == "sid-9"
    assert parsed["libraryId"] == "lib"
    assert parsed["names"] == ["a", "b"]


def test_management_body_with_no_fields() -> None:
    request = build_management_request(LIBRARY_SEARCH_PATH, 'odd "sid" 图', {})
    parsed = json_body(request, WIDE_SIGNED)
    assert parsed == {
        "secretId": 'odd "sid" 图',
        "timestamp": WIDE_SIGNED.timestamp,
        "nonce": WIDE_SIGNED.nonce,
        "signature": WIDE_SIGNED.signature,
    }


# --- multipart ------------------------------------------------------------------------------


def test_multipart_parses_into_fields_and_file_parts() -> None:
    images = [
        content_image(0, JPEG, name="a.jpg", tag="t0", seq="s0"),
        content_image(1, PNG, name="b.png", fmt="png"),
    ]
    request = build_multipart_request(
        "sid-123", images, tasks=[TASK_PORN, TASK_OCR_TEXT], referer="https://r.example/"
    )
    assert request.path == RECOGNITION_PATH + "sid-123"
    assert request.content_type.startswith("multipart/form-data; boundary=")
    assert request.image_count == 2
    signed = SIGNER.sign()
    form = ParsedForm(request, request.body(signed))
    assert form.value("timestamp") == signed.timestamp
    assert form.value("nonce") == signed.nonce
    assert form.value("signature") == signed.signature
    assert form.values("tag") == ["t0", ""]
    assert form.values("sequenceId") == ["s0", ""]
    assert form.values("task") == [TASK_PORN, TASK_OCR_TEXT]
    assert form.value("referer") == "https://r.example/"
    assert form.files == [("image", "a.jpg", JPEG), ("image", "b.png", PNG)]


def test_multipart_parts_have_content_types_for_the_stdlib_parser() -> None:
    images = [content_image(0, JPEG), content_image(1, PNG, name="x.png", fmt="png"),
              content_image(2, b"RIFF", name="y.bin", fmt="unknown")]  # fmt: skip
    request = build_multipart_request("sid", images, tasks=[TASK_PORN])
    parts = email_parts(request, request.body(SIGNER.sign()))
    files = [p for p in parts if p.get_filename()]
    assert [p.get_content_type() for p in files] == [
        "image/jpeg", "image/png", "application/octet-stream"
    ]  # fmt: skip
    assert [p.get_payload(decode=True) for p in files] == [JPEG, PNG, b"RIFF"]
    names = [p.get_param("name", header="content-disposition") for p in parts]
    assert names == ["timestamp", "nonce", "signature", "image", "image", "image", "task"]


@pytest.mark.parametrize(
    "name",
    [
        "猫 photo.jpg",
        "résumé.png",
        "back\\slash.jpg",
        "semi;colon=x.jpg",
        "sp ace's.jpg",
        "%22already%22.jpg",
    ],
)
def test_multipart_filenames_survive_the_parser(name: str) -> None:
    image = content_image(0, JPEG, name=name)
    request = build_multipart_request("sid", [image])
    form = ParsedForm(request, request.body(SIGNER.sign()))
    # What the server reads is what regrouping will look for...
    assert form.files == [("image", image.wire_name, JPEG)]
    # ...and ordinary names (non-ASCII, spaces, ';', '=', "'") are sent unchanged.
    if "\\" not in name:
        assert image.wire_name == name


@pytest.mark.parametrize("name", ['say "cheese".jpg', "line\nbreak.jpg", "cr\rlf.jpg"])
def test_multipart_filenames_with_quotes_or_newlines_match_the_wire_name(name: str) -> None:
    image = content_image(0, JPEG, name=name)
    request = build_multipart_request("sid", [image])
    form = ParsedForm(request, request.body(SIGNER.sign()))
    assert form.files[0][1] == image.wire_name


def test_multipart_filenames_with_quotes_do_not_break_the_body() -> None:
    images = [content_image(0, JPEG, name='a"b.jpg'), content_image(1, PNG, name="c.png")]
    request = build_multipart_request("sid", images)
    form = ParsedForm(request, request.body(SIGNER.sign()))
    assert [f[2] for f in form.files] == [JPEG, PNG]
    assert form.files[1][1] == "c.png"


def test_multipart_omits_what_was_not_given_and_uses_fresh_boundaries() -> None:
    images = [content_image(0, JPEG)]
    first = build_multipart_request("sid", images)
    second = build_multipart_request("sid", images)
    assert first.content_type != second.content_type
    form = ParsedForm(first, first.body(WIDE_SIGNED))
    assert {k for k, _ in form.fields} == {"timestamp", "nonce", "signature"}
    assert form.value("signature") == WIDE_SIGNED.signature


def test_multipart_resigning_keeps_the_image_parts() -> None:
    request = build_multipart_request("sid", [content_image(0, JPEG), content_image(1, PNG)])
    for _ in range(3):
        signed = SIGNER.sign()
        form = ParsedForm(request, request.body(signed))
        assert form.value("nonce") == signed.nonce
        assert [f[2] for f in form.files] == [JPEG, PNG]


@settings(max_examples=40, deadline=None)
@given(
    contents=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    tags=st.lists(st.none() | st.text(max_size=8), min_size=4, max_size=4),
)
def test_multipart_round_trips_any_content(contents: list[bytes], tags: list[str | None]) -> None:
    images = [content_image(i, c, tag=tags[i]) for i, c in enumerate(contents)]
    request = build_multipart_request("sid", images)
    form = ParsedForm(request, request.body(WIDE_SIGNED))
    assert [f[2] for f in form.files] == contents
    want_tags = wire_tags(images)
    assert form.values("tag") == (want_tags or [])


# --- base64 --------------------------------------------------------------------------------


def test_base64_body_has_images_tags_and_tasks() -> None:
    images = [content_image(0, JPEG, tag="t0"), content_image(1, PNG, fmt="png")]
    request = build_base64_request("sid-123", images, tasks=[TASK_POLITICAL])
    assert request.path == BASE64_RECOGNITION_PATH + "sid-123"
    assert request.content_type == "application/json"
    signed = SIGNER.sign()
    parsed = json_body(request, signed)
    assert_auth_fields(parsed, signed)
    assert [base64.b64decode(s, validate=True) for s in parsed["images"]] == [JPEG, PNG]
    assert parsed["tags"] == ["t0", ""]
    assert parsed["tasks"] == [TASK_POLITICAL]
    assert set(parsed) == {"timestamp", "nonce", "signature", "images", "tags", "tasks"}


def test_base64_body_without_tags_or_tasks() -> None:
    parsed = json_body(build_base64_request("sid", [content_image(0, JPEG)]), WIDE_SIGNED)
    assert set(parsed) == {"timestamp", "nonce", "signature", "images"}


tag_values = st.none() | st.text(max_size=10) | st.sampled_from(['"', "\\", "\n", "\x00", "图"])


@settings(max_examples=150, deadline=None)
@given(
    contents=st.lists(st.binary(max_size=200), min_size=1, max_size=8),
    tags=st.lists(tag_values, min_size=8, max_size=8),
    tasks=st.none() | st.lists(st.sampled_from([TASK_PORN, TASK_VIOLENCE, "x" * 24]), max_size=7),
)
def test_base64_image_cost_bounds_the_real_body(
    contents: list[bytes], tags: list[str | None], tasks: list[str] | None
) -> None:
    images = [content_image(i, c, tag=tags[i]) for i, c in enumerate(contents)]
    request = build_base64_request("sid", images, tasks=tasks)
    costs = [base64_image_cost(im) for im in images]
    fixed = len(b'{"images":[],"tags":[]}') + (
        len(b',"tasks":') + len(msgspec.json.encode(tasks)) if tasks else 0
    )
    assert request.static_size <= sum(costs) + fixed
    # Each image's cost covers its own base64 string and tag.
    for im, cost in zip(images, costs, strict=True):
        assert cost >= len(json.dumps(base64.b64encode(im.content or b"").decode())) + 1
        tag = im.tag if im.tag is not None else ""
        assert (
            cost
            >= len(json.dumps(base64.b64encode(im.content or b"").decode()))
            + 1
            + len(msgspec.json.encode(tag))
            + 1
        )
    # And the packer's overhead covers everything else, auth fields included.
    assert len(request.body(WIDE_SIGNED)) <= BASE64_BODY_OVERHEAD + sum(costs)


@settings(max_examples=100, deadline=None)
@given(
    contents=st.lists(st.binary(max_size=100), min_size=1, max_size=6),
    extra=st.binary(max_size=300),
    tags=st.lists(tag_values, min_size=7, max_size=7),
)
def test_adding_an_image_grows_the_body_by_at_most_its_cost(
    contents: list[bytes], extra: bytes, tags: list[str | None]
) -> None:
    images = [content_image(i, c, tag=tags[i]) for i, c in enumerate(contents)]
    # A first tag makes every earlier image send "" too; those 3 bytes are in their costs
    # already, so only an image joining an already-tagged (or all-untagged) batch is local.
    already_tagged = any(im.tag is not None for im in images)
    new = content_image(len(images), extra, tag=tags[-1] if already_tagged else None)
    before = build_base64_request("sid", images).static_size
    after = build_base64_request("sid", [*images, new]).static_size
    assert after - before <= base64_image_cost(new)


# --- tags and dispatch -------------------------------------------------------------------


@settings(max_examples=150)
@given(st.lists(st.none() | st.text(max_size=5), min_size=1, max_size=10))
def test_wire_tags_are_explicit_once_any_image_has_one(tags: list[str | None]) -> None:
    images = [url_image(i, tag=t) for i, t in enumerate(tags)]
    got = wire_tags(images)
    if all(t is None for t in tags):
        assert got is None
    else:
        assert got == [t if t is not None else "" for t in tags]
        assert len(got) == len(images)


def test_wire_tags_examples() -> None:
    assert wire_tags([url_image(0), url_image(1)]) is None
    assert wire_tags([url_image(0), url_image(1, tag="b")]) == ["", "b"]
    assert wire_tags([url_image(0, tag="")]) == [""]


def _dispatch(images: Sequence[PreparedImage], transport: str) -> PreparedRequest:
    assert transport in ("multipart", "base64")
    return build_recognition_request(
        "sid",
        images,
        tasks=None,
        referer=None,
        transport="base64" if transport == "base64" else "multipart",
    )


def test_build_recognition_request_picks_the_transport() -> None:
    urls = [url_image(0)]
    contents = [content_image(0, JPEG)]
    assert _dispatch(urls, "multipart").content_type == "application/json"
    assert _dispatch(urls, "base64").path == RECOGNITION_PATH + "sid"
    assert _dispatch(contents, "multipart").content_type.startswith("multipart/form-data")
    assert _dispatch(contents, "base64").path == BASE64_RECOGNITION_PATH + "sid"
