"""Envelopes: the real signed vectors verify and decode; anything else is a clear TupuError.

The signature covers the inner text exactly as received, so the tests also show that a
re-serialised text no longer verifies. Fuzzing (random bytes, truncations, bit flips,
and mutations re-signed with a test key so that only the content is odd) must never get
anything but a ``TupuError`` out of ``verify_envelope``.
"""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tupu_async import (
    APIError,
    AuthenticationError,
    ClockSkewError,
    ConfigurationError,
    MalformedResponseError,
    RateLimitError,
    RecognitionResponse,
    ServerError,
    SignatureVerificationError,
    TupuError,
    verify_envelope,
)
from tupu_async._constants import (
    TASK_AD,
    TASK_OCR_TEXT,
    TASK_POLITICAL,
    TASK_PORN,
    TASK_VIOLENCE,
)
from tupu_async._envelope import decode_inner, open_envelope
from tupu_async._error_bodies import excerpt
from tupu_async._keys import official_public_key
from tupu_async._signing import sign_message
from tupu_async._types import (
    AdFile,
    FaceObject,
    GenericFile,
    OcrFile,
    PoliticalFile,
    PornFile,
    SubLabel,
    SummaryItem,
    TopNCount,
    ViolenceFile,
)

VECTORS = pathlib.Path(__file__).parent / "vectors"
BODY_2018 = (VECTORS / "real-response-2018.json").read_bytes()
BODY_2023 = (VECTORS / "real-callback-2023.json").read_bytes()
OFFICIAL_PEM = VECTORS / "tupu-official-public-key.pem"
TEXT_2018: str = json.loads(BODY_2018)["json"]
TEXT_2023: str = json.loads(BODY_2023)["json"]

TEST_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
TEST_PUB = TEST_KEY.public_key()
TEST_PUB_PEM = TEST_PUB.public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)

URL_2018 = "http://f10.baidu.com/it/u=114725220,1711467603&fm=76"
UNKNOWN_2018_FACE = "59101e2540f7575536ab3144"
UNKNOWN_2018_OTHER = "5808841f5e1778ef49219a99"


def signed(text: str, *, key: rsa.RSAPrivateKey = TEST_KEY) -> bytes:
    """An envelope around ``text``, signed with the test key."""
    sig = sign_message(key, text.encode("utf-8"))
    return json.dumps({"json": text, "signature": sig}).encode()


def envelope(text: str, signature: str) -> bytes:
    return json.dumps({"json": text, "signature": signature}).encode()


def sig_of(body: bytes) -> str:
    value = json.loads(body)["signature"]
    assert isinstance(value, str)
    return value


# --- the real vectors -----------------------------------------------------------------------


def test_2018_vector_verifies_and_decodes() -> None:
    resp = verify_envelope(BODY_2018)
    assert isinstance(resp, RecognitionResponse)
    assert resp.ok
    assert resp.code == 0
    assert resp.message == "success"
    assert resp.nonce == "0.387212879582294"
    assert resp.timestamp == 1524559433501
    assert resp.timestamp > 10**12  # milliseconds
    assert resp.request_id is None
    assert resp.summary is None
    assert resp.json_text == TEXT_2018
    assert set(resp.tasks) == {TASK_PORN, TASK_AD, UNKNOWN_2018_FACE, UNKNOWN_2018_OTHER}

    porn = resp.tasks[TASK_PORN]
    assert porn.statistic == [0, 0, 1]
    assert porn.review_count == 0
    assert porn.file_list == [
        PornFile(name=URL_2018, label=2, rate=0.8929816285769144, review=False)
    ]

    ad = resp.tasks[TASK_AD]
    assert ad.statistic == [0, 0, 1, 0]
    assert ad.review_count == 1
    assert ad.file_list == [AdFile(name=URL_2018, label=2, rate=0.725216805934906, review=True)]


def test_2018_unknown_tasks_decode_as_generic_files_keeping_extra() -> None:
    resp = verify_envelope(BODY_2018)
    face = resp.tasks[UNKNOWN_2018_FACE].file_list[0]
    assert isinstance(face, GenericFile)
    assert face.name == URL_2018
    assert face.label == 3
    assert face.review is False
    assert face.rate is None
    assert face.extra == {
        "objects": [{"relatives": [], "label": 3, "similarity": 0, "faceId": ""}],
        "relatives": [],
        "similarity": 0,
        "faceId": "",
    }
    other = resp.tasks[UNKNOWN_2018_OTHER]
    assert other.statistic == [1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert other.file_list == [
        GenericFile(name=URL_2018, label=0, rate=0.893445611000061, review=False)
    ]


def test_2018_regroups_into_one_image_with_every_task() -> None:
    resp = verify_envelope(BODY_2018)
    assert len(resp.images) == 1
    image = resp.images[0]
    assert image.index == 0
    assert image.name == URL_2018
    assert image.ok
    assert image.error is None
    assert image.suggestion is None
    assert image.risk_type is None
    assert set(image.tasks) == set(resp.tasks)
    assert image.tasks[TASK_PORN] is resp.tasks[TASK_PORN].file_list[0]


def test_2023_vector_verifies_and_decodes_head_and_summary() -> None:
    resp = verify_envelope(BODY_2023)
    assert resp.code == 0
    assert resp.message == "success"
    assert resp.nonce == "0.265046801"  # a JSON number on the wire, rendered to str
    assert isinstance(resp.nonce, str)
    assert resp.timestamp == 1673346488265
    assert resp.request_id == "73346487-e19a-49ac-944c-cd50081a2e61"
    assert resp.json_text == TEXT_2023
    assert resp.summary is not None
    assert len(resp.summary) == 1
    item = resp.summary[0]
    assert isinstance(item, SummaryItem)
    assert item.code == 0
    assert item.suggestion == 2
    assert item.risk_type == 2
    assert item.risk_task == TASK_PORN
    assert item.tag is not None
    assert json.loads(item.tag)["callbackData"] == "test-callbackData"
    assert set(resp.tasks) == {TASK_PORN, TASK_POLITICAL, TASK_OCR_TEXT, TASK_VIOLENCE}


def test_2023_typed_task_structs() -> None:
    resp = verify_envelope(BODY_2023)
    porn = resp.tasks[TASK_PORN].file_list[0]
    assert isinstance(porn, PornFile)
    assert porn.label == 1
    assert porn.rate == 0.8984967729559958
    assert porn.review is False
    assert porn.sub_label == SubLabel(label=18, rate=0.21453628821023063, review=False)
    assert resp.tasks[TASK_PORN].statistic == [0, 1, 0]

    political = resp.tasks[TASK_POLITICAL].file_list[0]
    assert isinstance(political, PoliticalFile)
    assert political.label == 2
    assert political.face_id == "非政治人物"
    assert political.type_name == "非政治人物"
    assert political.similarity == 0
    assert political.face_position is not None
    assert len(political.face_position) == 4
    assert political.face_position[0] == (0.30214843, 0.1875)
    assert len(political.objects) == 1
    face = political.objects[0]
    assert isinstance(face, FaceObject)
    assert face.type_name == "非政治人物"
    assert face.face_url == ""
    assert face.label == 2

    ocr = resp.tasks[TASK_OCR_TEXT].file_list[0]
    assert isinstance(ocr, OcrFile)
    assert ocr.label == 0
    assert ocr.rate == 1.0
    assert ocr.objects == ()

    violence = resp.tasks[TASK_VIOLENCE].file_list[0]
    assert isinstance(violence, ViolenceFile)
    assert violence.label == 0
    assert violence.labels == (0, 10, 25, 8, 13)
    assert violence.rates is not None
    assert len(violence.rates) == 5
    assert violence.rates[0] == 0.9991529339260514
    assert resp.tasks[TASK_VIOLENCE].top_n_statistic == [TopNCount(label=0, count=1)]


def test_2023_names_have_ampersands_from_the_literal_u0026_escapes() -> None:
    assert "\\u0026" in TEXT_2023
    assert "&" not in TEXT_2023
    resp = verify_envelope(BODY_2023)
    assert resp.summary is not None
    name = resp.summary[0].name
    assert name is not None
    assert "&X-Amz-Credential=" in name
    assert "\\u0026" not in name
    for task in resp.tasks.values():
        assert task.file_list[0].name == name


def test_2023_regroups_with_summary_fields() -> None:
    resp = verify_envelope(BODY_2023)
    assert len(resp.images) == 1
    image = resp.images[0]
    assert image.ok
    assert image.suggestion == 2
    assert image.risk_type == 2
    assert image.risk_task == TASK_PORN
    assert image.request_id == "73346487-e19a-49ac-944c-cd50081a2e61"
    assert image.tag is not None
    assert image.tag.startswith('{"callbackData"')
    assert set(image.tasks) == set(resp.tasks)


@pytest.mark.parametrize("body", [BODY_2018, BODY_2023], ids=["2018", "2023"])
def test_vectors_accept_bytes_str_and_every_key_spelling(body: bytes) -> None:
    pem = OFFICIAL_PEM.read_bytes()
    for key in (None, OFFICIAL_PEM, str(OFFICIAL_PEM), pem, pem.decode(), official_public_key()):
        for b in (body, body.decode("utf-8")):
            assert verify_envelope(b, key).code == 0


@pytest.mark.parametrize("body", [BODY_2018, BODY_2023], ids=["2018", "2023"])
def test_open_envelope_returns_the_text_as_received(body: bytes) -> None:
    text = json.loads(body)["json"]
    assert open_envelope(body, official_public_key()) == text
    assert open_envelope(body, None) == text


# --- signatures -----------------------------------------------------------------------------


def _reserialisations(text: str) -> list[str]:
    data = json.loads(text)
    return [
        json.dumps(data),
        json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        json.dumps(data, separators=(",", ":")),
        msgspec.json.encode(data).decode(),
    ]


def test_reserialising_the_2023_text_breaks_verification() -> None:
    for again in _reserialisations(TEXT_2023):
        assert json.loads(again) == json.loads(TEXT_2023)  # the same data...
        assert again != TEXT_2023  # ...but not the same text (\u0026, raw Chinese)
        with pytest.raises(SignatureVerificationError):
            verify_envelope(envelope(again, sig_of(BODY_2023)))


def test_reserialising_the_2018_text_with_other_spacing_breaks_verification() -> None:
    again = json.dumps(json.loads(TEXT_2018))  # ", " and ": " separators
    assert again != TEXT_2018
    with pytest.raises(SignatureVerificationError):
        verify_envelope(envelope(again, sig_of(BODY_2018)))
    # Only a byte-identical text verifies: the compact re-encoding happens to be one.
    compact = json.dumps(json.loads(TEXT_2018), separators=(",", ":"))
    assert compact == TEXT_2018
    assert verify_envelope(envelope(compact, sig_of(BODY_2018))).code == 0


@pytest.mark.parametrize("body", [BODY_2018, BODY_2023], ids=["2018", "2023"])
def test_tampered_signature_is_refused(body: bytes) -> None:
    text = json.loads(body)["json"]
    raw = bytearray(base64.b64decode(sig_of(body)))
    raw[10] ^= 0x40
    with pytest.raises(SignatureVerificationError, match="does not verify"):
        verify_envelope(envelope(text, base64.b64encode(bytes(raw)).decode()))
    with pytest.raises(SignatureVerificationError):
        verify_envelope(envelope(text, "not base64 at all!"))
    with pytest.raises(SignatureVerificationError, match="no signature"):
        verify_envelope(json.dumps({"json": text}))
    with pytest.raises(SignatureVerificationError, match="no signature"):
        verify_envelope(envelope(text, ""))


def test_tampered_content_is_refused() -> None:
    tampered = TEXT_2018.replace('"label":2', '"label":0', 1)
    assert tampered != TEXT_2018
    with pytest.raises(SignatureVerificationError):
        verify_envelope(envelope(tampered, sig_of(BODY_2018)))


def test_wrong_public_key_refuses_the_vectors() -> None:
    with pytest.raises(SignatureVerificationError, match="tupu_public_key"):
        verify_envelope(BODY_2023, TEST_PUB_PEM)


def test_test_key_envelopes_verify_with_the_test_key_only() -> None:
    body = signed(TEXT_2023)
    assert verify_envelope(body, TEST_PUB).request_id == "73346487-e19a-49ac-944c-cd50081a2e61"
    with pytest.raises(SignatureVerificationError):
        verify_envelope(body)


def test_nonzero_code_is_returned_not_raised() -> None:
    resp = verify_envelope(signed('{"code":7,"message":"task not allowed"}'), TEST_PUB)
    assert resp.code == 7
    assert not resp.ok
    assert resp.message == "task not allowed"
    assert resp.images == []


# --- bodies that are not envelopes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "cls", "code"),
    [
        (b'{"error": {"code": 1, "message": "auth failed"}}', AuthenticationError, 1),
        (b'{"error": {"code": 6, "msg": "bad secret"}}', AuthenticationError, 6),
        (b'{"error": {"code": 12, "message": "timestamp"}}', ClockSkewError, 12),
        (b'{"error": {"code": 7}}', ConfigurationError, 7),
        (b'{"error": {"code": 100, "message": "oops"}}', ServerError, 100),
        (b'{"code": 12, "message": "timestamp error"}', ClockSkewError, 12),
        (b'{"code": 13, "message": "no task"}', ConfigurationError, 13),
        (b'{"error": "something went wrong"}', APIError, None),
    ],
)
def test_plain_json_error_bodies_become_api_errors(
    body: bytes, cls: type[APIError], code: int | None
) -> None:
    for b in (body, body.decode()):
        with pytest.raises(cls) as info:
            verify_envelope(b)
        assert info.value.code == code
    if code is None:
        assert "something went wrong" in str(info.value)


def test_clock_skew_plain_error_says_to_fix_the_clock() -> None:
    with pytest.raises(ClockSkewError, match="clock"):
        verify_envelope(b'{"error": {"code": 12, "message": "timestamp error"}}')


@pytest.mark.parametrize(
    ("status", "cls"),
    [(429, RateLimitError), (500, ServerError), (502, ServerError), (401, AuthenticationError)],
)
def test_plain_error_with_http_status(status: int, cls: type[APIError]) -> None:
    with pytest.raises(cls) as info:
        open_envelope(b'{"error": "Too Many Requests"}', official_public_key(), status_code=status)
    assert info.value.status_code == status


@pytest.mark.parametrize(
    ("status", "cls"), [(502, ServerError), (503, ServerError), (429, RateLimitError)]
)
def test_html_error_page_with_error_status(status: int, cls: type[APIError]) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    with pytest.raises(cls) as info:
        open_envelope(page, official_public_key(), status_code=status)
    assert "Bad Gateway" in str(info.value)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html><head><title>502 Bad Gateway</title></head></html>", ["HTML", "Bad Gateway"]),
        (b"<!DOCTYPE html><html>oops</html>", ["HTML", "oops"]),
        (b"", ["empty"]),
        (b"   \r\n ", ["empty"]),
        (BODY_2018[:100], ["truncated", "59101e2540f7575536ab3144"]),
        (b'{"json": "{\\"code\\":0}", "signa', ["truncated"]),
        (b"[1, 2", ["truncated"]),
        (b"Service Unavailable", ["non-JSON", "Service Unavailable"]),
        (b"\xff\xfe\x00garbage", ["non-JSON"]),
        (b"{}", ["no 'json' field"]),
        (b'{"signature": "abc"}', ["no 'json' field"]),
        (b"[]", ["envelope"]),
        (b'"just a string"', ["envelope"]),
        (b"null", ["envelope"]),
        (b'{"json": 5, "signature": "x"}', ["envelope"]),
        (b'{"json": "x", "signature": 5}', ["envelope"]),
    ],
)
def test_non_envelopes_are_malformed_response_errors_describing_the_body(
    body: bytes, words: list[str]
) -> None:
    with pytest.raises(MalformedResponseError) as info:
        verify_envelope(body)
    for word in words:
        assert word in str(info.value)
    assert isinstance(info.value.body_excerpt, str)


def test_malformed_error_keeps_status_and_a_bounded_excerpt() -> None:
    page = b"<html>" + b"x" * 5000 + b"</html>"
    with pytest.raises(MalformedResponseError) as info:
        open_envelope(page, None, status_code=200)
    assert info.value.status_code == 200
    assert info.value.body_excerpt.startswith("<html>")
    assert len(info.value.body_excerpt) <= 201
    assert len(str(info.value)) < 600


@pytest.mark.parametrize("status", [None, 200])
def test_html_description_reads_well(status: int | None) -> None:
    with pytest.raises(MalformedResponseError) as info:
        open_envelope(b"<html>proxy</html>", None, status_code=status)
    assert "(," not in str(info.value)
    assert " ," not in str(info.value)


def test_open_envelope_str_with_lone_surrogate_is_a_tupu_error() -> None:
    with pytest.raises(TupuError):
        open_envelope("\ud800", None)


def test_verify_envelope_str_with_lone_surrogate_is_a_tupu_error() -> None:
    with pytest.raises(MalformedResponseError):
        verify_envelope("\ud800{")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("not json", ["not the JSON"]),
        ("[1, 2]", ["not the JSON"]),
        ('{"message": "no code"}', ["code"]),
        ('{"code": "0"}', ["not the JSON"]),
        ('{"code": 0, "summary": 5}', ["not the JSON"]),
        ('{"code": 0, "t": {"fileList": 5}}', ["not the JSON"]),
        ('{"code": 0, "t": {"fileList": [1, 2]}}', ["not the JSON"]),
        ('{"code": 0, "' + TASK_PORN + '": {"fileList": ["x"]}}', ["not the JSON"]),
    ],
)
def test_signed_text_that_is_not_the_documented_json(text: str, words: list[str]) -> None:
    with pytest.raises(MalformedResponseError) as info:
        verify_envelope(signed(text), TEST_PUB)
    for word in words:
        assert word in str(info.value)


# --- typed tasks that drifted ---------------------------------------------------------------


def _mutate_2023(task_id: str, field: str, value: Any) -> str:
    doc = json.loads(TEXT_2023)
    doc[task_id]["fileList"][0][field] = value
    return json.dumps(doc, ensure_ascii=False)


@pytest.mark.parametrize(
    ("task_id", "field", "value"),
    [
        (TASK_PORN, "rate", "0.89"),
        (TASK_PORN, "subLabel", [1, 2]),
        (TASK_PORN, "review", "no"),
        (TASK_POLITICAL, "objects", {"not": "a list"}),
        (TASK_POLITICAL, "facePosition", "0,0,1,1"),
        (TASK_VIOLENCE, "labels", ["a", "b"]),
        (TASK_OCR_TEXT, "objects", [{"position": "weird"}]),
        (TASK_OCR_TEXT, "label", "zero"),
    ],
)
def test_typed_task_with_drifted_field_falls_back_to_generic(
    task_id: str, field: str, value: Any
) -> None:
    resp = verify_envelope(signed(_mutate_2023(task_id, field, value)), TEST_PUB)
    entry = resp.tasks[task_id].file_list[0]
    assert isinstance(entry, GenericFile)
    assert entry.name is not None
    assert "&X-Amz-Credential=" in entry.name
    if field == "label":
        assert entry.label == value
    else:
        assert entry.label == json.loads(TEXT_2023)[task_id]["fileList"][0]["label"]
    if field not in ("rate", "review", "name", "tag", "label"):
        assert entry.extra[field] == value
    # The other tasks keep their typed structs.
    for other_id, task in resp.tasks.items():
        if other_id != task_id:
            assert not isinstance(task.file_list[0], GenericFile)
    assert resp.images[0].tasks[task_id] is entry


def test_decode_inner_keeps_unknown_scalar_keys_in_extra() -> None:
    resp = decode_inner('{"code":0,"message":"ok","version":"3.1","flag":true}')
    assert resp.extra == {"version": "3.1", "flag": True}
    assert resp.tasks == {}


def test_decode_inner_renders_numeric_nonce_and_request_id_as_str() -> None:
    resp = decode_inner('{"code":0,"nonce":0.5,"requestId":123,"timestamp":1.7e12}')
    assert resp.nonce == "0.5"
    assert resp.request_id == "123"
    assert resp.timestamp == 1_700_000_000_000


@pytest.mark.parametrize("task_id", ["5f00000000000000000000aa", TASK_PORN])
def test_huge_integer_rate_is_not_a_crash(task_id: str) -> None:
    huge = "1" + "0" * 400  # a valid JSON number, far beyond a float's range
    text = '{"code":0,"' + task_id + '":{"fileList":[{"name":"a","rate":' + huge + "}]}}"
    resp = verify_envelope(signed(text), TEST_PUB)

    # The entry cannot be typed (a rate is a float): it is kept whole, the number exact.
    (image,) = resp.images
    entry = image.tasks[task_id]
    assert isinstance(entry, GenericFile)
    assert entry.rate is None
    assert entry.extra == {"rate": int(huge)}


# --- fuzzing: nothing but TupuError ---------------------------------------------------------


def _never_anything_but_tupu_error(body: bytes | str, key: Any = None) -> None:
    try:
        resp = verify_envelope(body, key)
    except TupuError:
        return
    assert isinstance(resp, RecognitionResponse)
    if resp.summary is not None:
        assert len(resp.images) == len(resp.summary)
    else:
        longest = max((len(t.file_list) for t in resp.tasks.values()), default=0)
        assert len(resp.images) == longest
    assert [im.index for im in resp.images] == list(range(len(resp.images)))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_tupu_errors(body: bytes) -> None:
    _never_anything_but_tupu_error(body)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_random_text_only_raises_tupu_errors(body: str) -> None:
    _never_anything_but_tupu_error(body)


@settings(max_examples=150, deadline=None)
@given(which=st.sampled_from([BODY_2018, BODY_2023]), cut=st.integers(min_value=0))
def test_truncated_vectors_raise_tupu_errors(which: bytes, cut: int) -> None:
    cut %= len(which)
    with pytest.raises(TupuError):
        verify_envelope(which[:cut])


@settings(max_examples=150, deadline=None)
@given(
    which=st.sampled_from([BODY_2018, BODY_2023]),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
        min_size=1,
        max_size=4,
    ),
)
def test_byte_flipped_vectors_only_raise_tupu_errors(
    which: bytes, flips: list[tuple[int, int]]
) -> None:
    body = bytearray(which)
    for position, mask in flips:
        body[position % len(body)] ^= mask
    _never_anything_but_tupu_error(bytes(body))


_KEYS = [
    "code", "message", "timestamp", "nonce", "requestId", "summary", "fileList", "name",
    "label", "rate", "review", "tag", "statistic", "reviewCount", "topNStatistic",
    "subLabel", "subLabels", "objects", "facePosition", "labels", "rates", "suggestion",
    "riskType", "riskTask", "count", TASK_PORN, TASK_POLITICAL, TASK_OCR_TEXT,
    TASK_VIOLENCE, TASK_AD, "5f00000000000000000000aa",
]  # fmt: skip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "\u0026", "非政治人物", URL_2018])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=12,
)

Path = tuple[Any, ...]


def _paths(node: Any, prefix: Path = ()) -> list[Path]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _mutate(doc: Any, data: st.DataObject) -> Any:
    paths = _paths(doc)
    path = data.draw(st.sampled_from(paths), label="path")
    op = data.draw(st.sampled_from(["replace", "delete", "insert"]), label="op")
    if not path:
        return data.draw(json_values) if op == "replace" else doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "replace":
        parent[last] = data.draw(json_values, label="value")
    elif op == "delete":
        del parent[last]
    elif isinstance(parent[last], dict):
        key = data.draw(st.sampled_from(_KEYS), label="key")
        parent[last][key] = data.draw(json_values, label="value")
    elif isinstance(parent[last], list):
        parent[last].append(data.draw(json_values, label="value"))
    return doc


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from([TEXT_2018, TEXT_2023]),
    rounds=st.integers(min_value=1, max_value=3),
    ascii_only=st.booleans(),
    data=st.data(),
)
@example(which=TEXT_2023, rounds=0, ascii_only=False, data=None)
def test_resigned_mutations_only_raise_tupu_errors(
    which: str, rounds: int, ascii_only: bool, data: st.DataObject | None
) -> None:
    doc = json.loads(which)
    for _ in range(rounds):
        assert data is not None
        doc = _mutate(doc, data)
    text = json.dumps(doc, ensure_ascii=ascii_only)
    _never_anything_but_tupu_error(signed(text), TEST_PUB)


file_entries = st.dictionaries(st.sampled_from(_KEYS), json_scalars, max_size=6) | st.dictionaries(
    st.sampled_from(_KEYS), json_values, max_size=3
)


@settings(max_examples=100, deadline=None)
@given(
    doc=st.fixed_dictionaries(
        {"code": st.integers(min_value=0, max_value=200)},
        optional={
            "message": json_values,
            "nonce": json_values,
            "timestamp": json_values,
            "requestId": json_values,
            "summary": st.lists(
                st.dictionaries(st.sampled_from(_KEYS), json_scalars, max_size=6), max_size=4
            )
            | json_values,
            TASK_PORN: st.fixed_dictionaries({"fileList": st.lists(file_entries, max_size=4)}),
            "5f00000000000000000000aa": st.fixed_dictionaries(
                {"fileList": st.lists(file_entries, max_size=4)}
            ),
        },
    )
)
def test_resigned_random_documents_only_raise_tupu_errors(doc: dict[str, Any]) -> None:
    _never_anything_but_tupu_error(signed(json.dumps(doc)), TEST_PUB)


# --- hostile nesting ---------------------------------------------------------------------------

_DEPTH = 200_000  # a 400 KB body: far deeper than any decoder stack


@pytest.mark.parametrize("where", ["outer", "inner", "inner-error"])
def test_a_deeply_nested_unsigned_body_is_a_tupu_error(where: str) -> None:
    nested = "[" * _DEPTH + "]" * _DEPTH
    if where == "outer":
        body = '{"json":null,"error":' + nested + "}"
    else:
        field = "message" if where == "inner-error" else "x"
        inner = '{"code":0,"' + field + '":' + nested + "}"
        body = json.dumps({"json": inner, "signature": "x"})
    assert len(body) >= 400_000
    with pytest.raises(TupuError):
        decode_inner(open_envelope(body.encode(), None))


def test_verify_envelope_refuses_deep_nesting_as_a_tupu_error() -> None:
    nested = "[" * _DEPTH + "]" * _DEPTH
    with pytest.raises(TupuError):
        verify_envelope('{"json":' + nested + ',"signature":"x"}')


# --- what a body that is not an envelope is reported as -----------------------------------

ENVELOPE = "expected a signed Tupu envelope {'json': ..., 'signature': ...} but got "


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", None, ENVELOPE + "an empty body"),
        (b" \n", 200, ENVELOPE + "an empty HTTP 200 body"),
        (b"  <html>bad gateway</html>", None, ENVELOPE + "an HTML page, probably a proxy or "
         "gateway error: '<html>bad gateway</html>'"),
        (b"<p>x</p>", 200, ENVELOPE + "an HTML page (HTTP 200), probably a proxy or gateway "
         "error: '<p>x</p>'"),
        (b'{"json": 1', None, ENVELOPE + "a truncated or invalid JSON body: '{\"json\": 1'"),
        (b"plain text", 200, ENVELOPE + "a non-JSON HTTP 200 body: 'plain text'"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_json_is_described(
    body: bytes, status: int | None, message: str
) -> None:
    with pytest.raises(MalformedResponseError) as info:
        open_envelope(body, TEST_PUB, status_code=status)
    assert str(info.value) == message
    assert info.value.status_code == status


NO_SIGNED = "Tupu answered with an error and no signed result: "


@pytest.mark.parametrize(
    ("body", "status", "cls", "code", "message"),
    [
        # the inner error wins over the outer code and message
        (b'{"error": {"code": 7, "message": "inner"}, "code": 6, "message": "outer"}', 200,
         ConfigurationError, 7, "Tupu code 7 (inner): task not allowed"),
        (b'{"error": {"code": 7, "msg": "via msg"}}', 200,
         ConfigurationError, 7, "Tupu code 7 (via msg): task not allowed"),
        # a code that is not an int is ignored; the outer one and its message stand in
        (b'{"error": {"code": "7"}, "code": 6, "message": "outer"}', 200,
         AuthenticationError, 6, "Tupu code 6 (outer): secretId error"),
        (b'{"code": 12}', None, ClockSkewError, 12, "Tupu code 12 (no message): timestamp"),
        (b'{"error": "quota exceeded"}', None, APIError, None, NO_SIGNED + "'quota exceeded'"),
        (b'{"error": "quota"}', 200, APIError, None, NO_SIGNED + "'quota'"),
        (b'{"code": 0}', None, APIError, None, NO_SIGNED + "'{\"code\": 0}'"),
        (b'{"error": "bad"}', 400, APIError, None,
         "HTTP 400 from Tupu; body: '{\"error\": \"bad\"}'"),
        (b'{"error": "who?"}', 403, AuthenticationError, None, "HTTP 403: the service refused"),
    ],
)  # fmt: skip
def test_a_plain_error_body_becomes_the_matching_error(
    body: bytes, status: int | None, cls: type[APIError], code: int | None, message: str
) -> None:
    with pytest.raises(APIError) as info:
        open_envelope(body, TEST_PUB, status_code=status)
    error = info.value
    assert type(error) is cls
    assert error.code == code
    assert error.status_code == status
    assert str(error).startswith(message)


def test_a_summary_whose_fields_drifted_in_type_keeps_what_fits() -> None:
    text = json.dumps(
        {
            "code": 0,
            "summary": [
                {
                    "code": "14",
                    "message": "download failed",
                    "name": "a.jpg",
                    "suggestion": "2",
                    "riskType": "-1",
                    "riskTask": "54bcfc6c329af61034f7c2fc",
                    "tag": "t",
                },
                {"code": True, "message": 3, "name": None, "suggestion": 1.5, "riskType": "x"},
                {"code": 7, "suggestion": 1, "riskType": 2, "riskTask": 9, "tag": ["t"]},
            ],
        }
    )
    assert decode_inner(text).summary == [
        SummaryItem(
            code=14,
            message="download failed",
            name="a.jpg",
            suggestion=2,
            risk_type=-1,
            risk_task="54bcfc6c329af61034f7c2fc",
            tag="t",
        ),
        SummaryItem(code=0),
        SummaryItem(code=7, suggestion=1, risk_type=2),
    ]


@pytest.mark.parametrize(
    ("summary", "why"),
    [
        ('{"a": 1}', "(summary must be a list)"),
        ("[1]", "(summary entries must be objects)"),
        ('["x"]', "(summary entries must be objects)"),
    ],
)
def test_a_summary_that_is_not_a_list_of_objects_is_malformed(summary: str, why: str) -> None:
    with pytest.raises(MalformedResponseError) as info:
        decode_inner('{"code": 0, "summary": ' + summary + "}")
    assert f"not the JSON Tupu documents {why}:" in str(info.value)


def test_an_excerpt_is_cut_at_200_characters_with_an_ellipsis() -> None:
    assert excerpt("x" * 200) == "x" * 200
    assert excerpt("x" * 201) == "x" * 200 + "…"
    assert excerpt(b"a \n\t b") == "a b"  # whitespace runs collapse


def test_an_unknown_task_keeps_only_well_typed_fields_and_its_statistics() -> None:
    task_id = "5f00000000000000000000aa"
    text = json.dumps(
        {
            "code": 0,
            task_id: {
                "fileList": [
                    {"name": 5, "rate": 0.5, "review": "yes", "tag": "t"},
                    {"name": "b", "review": True, "tag": 7},
                ],
                "reviewCount": 3,
                "topNStatistic": [{"label": 1, "count": 2}],
            },
        }
    )
    task = decode_inner(text).tasks[task_id]
    first, second = task.file_list
    assert (first.name, first.review, first.tag) == (None, None, "t")
    assert (second.name, second.review, second.tag) == ("b", True, None)
    assert task.review_count == 3
    assert task.top_n_statistic == [TopNCount(label=1, count=2)]


def test_an_unknown_task_with_a_non_object_entry_is_malformed() -> None:
    text = '{"code": 0, "5f00000000000000000000aa": {"fileList": [1]}}'
    with pytest.raises(MalformedResponseError) as info:
        decode_inner(text)
    assert "Expected `object`, got `int` - at `$.fileList[0]`" in str(info.value)
    assert info.value.body_excerpt == text


def test_the_head_of_a_response_defaults_and_coerces() -> None:
    bare = decode_inner('{"code": 0}')
    assert (bare.message, bare.timestamp, bare.nonce, bare.request_id) == ("", None, None, None)
    odd = decode_inner(
        '{"code": 0, "message": 5, "timestamp": true, "nonce": null, "requestId": null}'
    )
    assert (odd.message, odd.timestamp, odd.nonce, odd.request_id) == ("5", None, None, None)
    assert decode_inner('{"code": 0, "message": "ok"}').message == "ok"


def test_a_response_without_code_is_malformed() -> None:
    with pytest.raises(MalformedResponseError) as info:
        decode_inner('{"message": "ok"}')
    assert "not the JSON Tupu documents (missing 'code'):" in str(info.value)


def test_signature_failures_say_what_to_check() -> None:
    text = '{"code": 0}'
    with pytest.raises(SignatureVerificationError) as unsigned:
        open_envelope(json.dumps({"json": text}).encode(), TEST_PUB)
    assert str(unsigned.value) == (
        "the response envelope carries no signature, so it cannot be trusted; if you really "
        "talk to a server that does not sign, pass verify_signature=False"
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(SignatureVerificationError) as forged:
        open_envelope(signed(text, key=other), TEST_PUB)
    assert str(forged.value) == (
        "the response signature does not verify with the Tupu public key: the response was "
        "altered in transit or came from another server. Check base_url, and pass "
        "tupu_public_key= if you talk to a fake or private deployment"
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"not json at all", 400), (b'{"other": 1}', 400), (b'{"other": 1}', 502)],
)
def test_an_error_status_without_an_envelope_is_an_http_error(body: bytes, status: int) -> None:
    with pytest.raises(APIError) as info:
        open_envelope(body, TEST_PUB, status_code=status)
    assert info.value.status_code == status
    assert str(info.value).endswith(f"body: {body.decode()!r}")


def test_a_json_body_without_json_field_under_400_is_malformed() -> None:
    with pytest.raises(MalformedResponseError) as info:
        open_envelope(b'{"other": 1}', TEST_PUB, status_code=399)
    assert str(info.value) == (
        "the response has no 'json' field, so it is not a Tupu envelope: '{\"other\": 1}'"
    )
    assert info.value.status_code == 399
    assert info.value.body_excerpt == '{"other": 1}'
