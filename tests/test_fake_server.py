"""The fake Tupu server, in process: protocol, limits, results, faults, stats, management."""

from __future__ import annotations

import base64
import datetime
import json
import pathlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tupu_async._constants import (
    LIBRARY_ADD_BASE64_PATH,
    LIBRARY_ADD_URLS_PATH,
    LIBRARY_DELETE_PATH,
    LIBRARY_IMAGES_PATH,
    LIBRARY_SEARCH_PATH,
    MAX_IMAGE_BYTES,
    TASK_AD,
    TASK_OCR_TEXT,
    TASK_POLITICAL,
    TASK_PORN,
    TASK_VIOLATION,
    TASK_VIOLENCE,
    TASK_VULGAR,
)
from tupu_async._keys import load_public_key
from tupu_async._signing import Signer, verify_signature
from tupu_async.testing import (
    ALL_FAULT_KINDS,
    DEFAULT_TASKS,
    FakeServerStats,
    FakeTupuServer,
    FaultConfig,
    max_arrivals_in_window,
)
from tupu_async.testing._formats import sniff_image_format
from tupu_async.testing._library import go_time_string

SECRET = "test-secret"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def jpeg(payload: bytes = b"") -> bytes:
    return JPEG + payload


def urls(count: int, prefix: str = "http://img.test/") -> list[str]:
    return [f"{prefix}{i}.jpg" for i in range(count)]


class Harness:
    """A fake server, a signer for one secret id and an in-process client."""

    def __init__(self, server: FakeTupuServer, client: httpx.AsyncClient) -> None:
        self.server = server
        self.client = client
        self.secret_id, pem = server.add_credentials(SECRET)
        self.signer = Signer(self.secret_id, pem)
        self.public_key = load_public_key(server.public_key_pem)

    def credentials(self) -> dict[str, str]:
        fields = self.signer.sign()
        return {"timestamp": fields.timestamp, "nonce": fields.nonce, "signature": fields.signature}

    async def recognize_urls(self, images: Sequence[str], **extra: Any) -> httpx.Response:
        body = {"image": list(images), **extra, **self.credentials()}
        return await self.client.post(f"/v3/recognition/{self.secret_id}", json=body)

    async def upload(
        self, files: Sequence[tuple[str, bytes]], **fields: str | list[str]
    ) -> httpx.Response:
        parts = [("image", (name, data, "application/octet-stream")) for name, data in files]
        return await self.client.post(
            f"/v3/recognition/{self.secret_id}",
            files=parts,
            data={**fields, **self.credentials()},
        )

    async def base64(self, contents: Sequence[bytes], **extra: Any) -> httpx.Response:
        images = [base64.b64encode(c).decode() for c in contents]
        body = {"images": images, **extra, **self.credentials()}
        return await self.client.post(
            f"/v3/recognition/image/sync/base64/{self.secret_id}", json=body
        )

    async def manage(self, path: str, **fields: Any) -> httpx.Response:
        body = {"secretId": self.secret_id, **fields, **self.credentials()}
        return await self.client.post(path, json=body)

    def inner(self, response: httpx.Response) -> dict[str, Any]:
        """The verified inner JSON of a signed envelope."""
        assert response.status_code == 200, response.text
        envelope = response.json()
        assert set(envelope) == {"json", "signature"}
        assert verify_signature(self.public_key, envelope["json"].encode(), envelope["signature"])
        inner: dict[str, Any] = json.loads(envelope["json"])
        return inner


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    server = FakeTupuServer()
    async with httpx.AsyncClient(transport=server.transport(), base_url="http://fake") as client:
        yield Harness(server, client)


async def _harness_for(server: FakeTupuServer) -> tuple[Harness, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=server.transport(), base_url="http://fake")
    return Harness(server, client), client


# -- the successful path -------------------------------------------------------------------


@pytest.mark.anyio
async def test_url_request_gets_a_signed_envelope_with_every_task(harness: Harness) -> None:
    fields = harness.signer.sign()
    body = {"image": urls(3), "timestamp": fields.timestamp, "nonce": fields.nonce}
    body["signature"] = fields.signature
    response = await harness.client.post(f"/v3/recognition/{SECRET}", json=body)
    inner = harness.inner(response)
    assert inner["code"] == 0
    assert inner["message"] == "success"
    assert inner["nonce"] == fields.nonce
    assert abs(inner["timestamp"] - time.time() * 1000) < 60_000  # milliseconds
    uuid.UUID(inner["requestId"])
    for task in DEFAULT_TASKS:
        assert [entry["name"] for entry in inner[task]["fileList"]] == urls(3)
        assert all("tag" not in entry for entry in inner[task]["fileList"])
    assert [s["name"] for s in inner["summary"]] == urls(3)
    assert set(inner) == {
        *DEFAULT_TASKS,
        "code",
        "message",
        "nonce",
        "timestamp",
        "requestId",
        "summary",
    }


@pytest.mark.anyio
async def test_task_results_have_the_shapes_of_real_responses(harness: Harness) -> None:
    inner = harness.inner(await harness.recognize_urls(["http://img.test/politic-porn.jpg"]))
    porn = inner[TASK_PORN]
    assert porn["statistic"] == [1, 0, 0]
    assert porn["reviewCount"] == 0
    entry = porn["fileList"][0]
    assert {"label", "rate", "review", "name", "subLabel"} <= set(entry)
    political = inner[TASK_POLITICAL]["fileList"][0]
    assert political["label"] == 0
    assert {"objects", "similarity", "faceId", "facePosition", "review"} <= set(political)
    assert len(political["facePosition"]) == 4
    violence = inner[TASK_VIOLENCE]
    assert len(violence["fileList"][0]["labels"]) == 5
    assert len(violence["fileList"][0]["rates"]) == 5
    assert violence["topNStatistic"] == [{"count": 1, "label": 0}]
    assert len(inner[TASK_AD]["statistic"]) == 4
    assert inner[TASK_OCR_TEXT]["fileList"][0]["objects"] == []
    assert len(inner[TASK_VIOLATION]["statistic"]) == 9
    assert {"label", "rate", "review"} <= set(inner[TASK_VULGAR]["fileList"][0])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("literal", "signed_over", "code"),
    [
        ("1.2e-05", "0.000012", 0),  # the service rebuilds the number as JavaScript prints it
        ("1.2e-05", "1.2e-05", 1),  # so a signature over the literal fails
        ("1.2E-4", "0.00012", 0),
        ("1.2E-4", "1.2E-4", 1),
        ("0.5", "0.5", 0),
        ("12345", "12345", 0),
        ("12345.0", "12345", 0),
        ("12345.0", "12345.0", 1),
        ("1e21", "1e+21", 0),  # large values keep JavaScript's exponent form
        ("1e21", "1000000000000000000000", 1),
    ],
)
async def test_json_number_nonces_are_checked_in_their_javascript_spelling(
    harness: Harness, literal: str, signed_over: str, code: int
) -> None:
    timestamp = str(int(time.time()))
    fields = harness.signer.sign(timestamp=timestamp, nonce=signed_over)
    body = (
        f'{{"image": ["http://img.test/a.jpg"], "timestamp": {timestamp}, "nonce": {literal}, '
        f'"signature": "{fields.signature}"}}'
    )
    response = await harness.client.post(
        f"/v3/recognition/{SECRET}", content=body, headers={"content-type": "application/json"}
    )
    inner = harness.inner(response)
    assert inner["code"] == code
    assert f'"nonce":{literal}' in response.json()["json"]  # echoed as the number sent


@pytest.mark.anyio
async def test_json_number_timestamps_are_checked_in_their_javascript_spelling(
    harness: Harness,
) -> None:
    seconds = int(time.time())
    digits = str(seconds)
    literal = f"{digits[0]}.{digits[1:]}e{len(digits) - 1}"  # 1.76e9: JavaScript prints 1760000000
    for signed_over, code in ((str(seconds), 0), (literal, 1)):
        fields = harness.signer.sign(timestamp=signed_over)
        body = (
            f'{{"image": ["http://img.test/a.jpg"], "timestamp": {literal}, '
            f'"nonce": "{fields.nonce}", "signature": "{fields.signature}"}}'
        )
        response = await harness.client.post(
            f"/v3/recognition/{SECRET}",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert harness.inner(response)["code"] == code, signed_over


@pytest.mark.anyio
async def test_millisecond_timestamps_are_accepted(harness: Harness) -> None:
    fields = harness.signer.sign(timestamp=str(int(time.time() * 1000)))
    body = {
        "image": urls(1),
        "timestamp": fields.timestamp,
        "nonce": fields.nonce,
        "signature": fields.signature,
    }
    inner = harness.inner(await harness.client.post(f"/v3/recognition/{SECRET}", json=body))
    assert inner["code"] == 0


@pytest.mark.anyio
async def test_multipart_upload_names_images_by_filename(harness: Harness) -> None:
    inner = harness.inner(await harness.upload([("a.jpg", jpeg(b"1")), ("b.png", PNG + b"2")]))
    assert [e["name"] for e in inner[TASK_PORN]["fileList"]] == ["a.jpg", "b.png"]
    assert harness.server.requests[-1].kind == "file"


@pytest.mark.anyio
async def test_urlencoded_form_carries_urls(harness: Harness) -> None:
    form = {"image": urls(2), "tag": ["x"], **harness.credentials()}
    response = await harness.client.post(f"/v3/recognition/{SECRET}", data=form)
    inner = harness.inner(response)
    assert [s["tag"] for s in inner["summary"]] == ["x", "x"]


@pytest.mark.anyio
async def test_multipart_url_fields_and_files_cannot_be_mixed(harness: Harness) -> None:
    files = [("image", ("a.jpg", jpeg(), "image/jpeg"))]
    data = {"image": "http://img.test/a.jpg", **harness.credentials()}
    response = await harness.client.post(f"/v3/recognition/{SECRET}", files=files, data=data)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 3


@pytest.mark.anyio
async def test_same_image_same_result_and_seed_changes_it(harness: Harness) -> None:
    first = harness.inner(await harness.recognize_urls(urls(4)))
    again = harness.inner(await harness.recognize_urls(urls(4)))
    for task in DEFAULT_TASKS:
        assert first[task] == again[task]
    other = FakeTupuServer(seed=1)
    other_harness, client = await _harness_for(other)
    async with client:
        reseeded = other_harness.inner(await other_harness.recognize_urls(urls(4)))
    assert reseeded[TASK_PORN] != first[TASK_PORN]


# -- authentication -------------------------------------------------------------------------


async def _code_for(harness: Harness, secret_id: str, body: dict[str, Any]) -> int:
    response = await harness.client.post(f"/v3/recognition/{secret_id}", json=body)
    code: int = harness.inner(response)["code"]
    return code


@pytest.mark.anyio
async def test_unknown_secret_id_is_code_6(harness: Harness) -> None:
    fields = Signer("nobody", harness.signer._key).sign()
    body = {
        "image": urls(1),
        "timestamp": fields.timestamp,
        "nonce": fields.nonce,
        "signature": fields.signature,
    }
    assert await _code_for(harness, "nobody", body) == 6


@pytest.mark.anyio
async def test_secret_id_without_public_key_is_code_9(harness: Harness) -> None:
    harness.server.add_secret_id("keyless")
    fields = Signer("keyless", harness.signer._key).sign()
    body = {
        "image": urls(1),
        "timestamp": fields.timestamp,
        "nonce": fields.nonce,
        "signature": fields.signature,
    }
    assert await _code_for(harness, "keyless", body) == 9


@pytest.mark.anyio
async def test_wrong_key_missing_fields_and_tampering_are_code_1(harness: Harness) -> None:
    _, other_pem = FakeTupuServer().add_credentials("x")
    fields = Signer(SECRET, other_pem).sign()
    body = {
        "image": urls(1),
        "timestamp": fields.timestamp,
        "nonce": fields.nonce,
        "signature": fields.signature,
    }
    assert await _code_for(harness, SECRET, body) == 1
    good = harness.credentials()
    assert (
        await _code_for(
            harness,
            SECRET,
            {"image": urls(1), "timestamp": good["timestamp"], "nonce": good["nonce"]},
        )
        == 1
    )
    tampered = {"image": urls(1), **good, "nonce": good["nonce"] + "1"}
    assert await _code_for(harness, SECRET, tampered) == 1


@pytest.mark.anyio
async def test_clock_skew_is_code_12(harness: Harness) -> None:
    fields = harness.signer.sign(timestamp=str(int(time.time()) - 301))
    body = {
        "image": urls(1),
        "timestamp": fields.timestamp,
        "nonce": fields.nonce,
        "signature": fields.signature,
    }
    assert await _code_for(harness, SECRET, body) == 12


@pytest.mark.anyio
async def test_a_replayed_timestamp_and_nonce_is_code_1(harness: Harness) -> None:
    body = {"image": urls(1), **harness.credentials()}
    assert await _code_for(harness, SECRET, body) == 0
    assert await _code_for(harness, SECRET, body) == 1


@pytest.mark.anyio
async def test_user_supplied_public_key_is_accepted(harness: Harness) -> None:
    _, pem = FakeTupuServer().add_credentials("mine")
    harness.server.register_public_key("mine", Signer("mine", pem)._key.public_key())
    fields = Signer("mine", pem).sign()
    body = {
        "image": urls(1),
        "timestamp": fields.timestamp,
        "nonce": fields.nonce,
        "signature": fields.signature,
    }
    assert await _code_for(harness, "mine", body) == 0


# -- limits ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_more_than_ten_images_is_http_400(harness: Harness) -> None:
    response = await harness.recognize_urls(urls(11))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 3
    assert "10" in response.json()["error"]["message"]


@pytest.mark.anyio
async def test_no_image_is_code_3(harness: Harness) -> None:
    assert harness.inner(await harness.recognize_urls([]))["code"] == 3


@pytest.mark.anyio
async def test_bad_images_get_code_14_and_stay_out_of_the_file_lists(harness: Harness) -> None:
    files = [
        ("ok.jpg", jpeg(b"fine")),
        ("big.jpg", jpeg(b"x" * MAX_IMAGE_BYTES)),
        ("text.txt", b"hello, not an image"),
        ("exact.jpg", jpeg(b"y" * (MAX_IMAGE_BYTES - len(JPEG)))),
    ]
    inner = harness.inner(await harness.upload(files))
    assert [s["code"] for s in inner["summary"]] == [0, 14, 14, 0]
    assert "too large" in inner["summary"][1]["message"]
    assert "format" in inner["summary"][2]["message"]
    for task in DEFAULT_TASKS:
        assert [e["name"] for e in inner[task]["fileList"]] == ["ok.jpg", "exact.jpg"]


@pytest.mark.anyio
async def test_download_failures_are_code_14(harness: Harness) -> None:
    harness.server.fail_download(lambda url: url.endswith(".gone"))
    images = [
        "http://a.test/download-fail.jpg",
        "http://a.test/404",  # an ordinary URL: only the magic word fails
        "http://a.test/x.gone",
        "ftp://a.test/x.jpg",
        "http://a.test/ok.jpg",
    ]
    inner = harness.inner(await harness.recognize_urls(images))
    assert [s["code"] for s in inner["summary"]] == [14, 0, 14, 14, 0]
    assert inner["summary"][0]["message"] == "download failed"
    assert [e["name"] for e in inner[TASK_PORN]["fileList"]] == [
        "http://a.test/404",
        "http://a.test/ok.jpg",
    ]


@pytest.mark.anyio
async def test_unsupported_content_type_is_http_400(harness: Harness) -> None:
    response = await harness.client.post(
        f"/v3/recognition/{SECRET}", content=b"image", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 400


@pytest.mark.anyio
async def test_malformed_json_is_http_400(harness: Harness) -> None:
    response = await harness.client.post(
        f"/v3/recognition/{SECRET}", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 3


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xdb", "jpeg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"GIF89a", "gif"),
        (b"BM\x00\x00", "bmp"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"\x00\x00\x00\x18ftypheic", "heif"),
        (b"%PDF-1.4", None),
        (b"", None),
    ],
)
def test_sniff_image_format(data: bytes, expected: str | None) -> None:
    assert sniff_image_format(data) == expected


# -- base64 endpoint ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_base64_results_carry_no_names(harness: Harness) -> None:
    inner = harness.inner(await harness.base64([jpeg(b"a"), b"not an image"], tags=["t"]))
    assert [s["code"] for s in inner["summary"]] == [0, 14]
    assert all("name" not in s for s in inner["summary"])
    assert [s["tag"] for s in inner["summary"]] == ["t", "t"]
    for task in DEFAULT_TASKS:
        assert len(inner[task]["fileList"]) == 1
        assert "name" not in inner[task]["fileList"][0]
    assert harness.server.requests[-1].kind == "base64"


@pytest.mark.anyio
async def test_base64_invalid_content_is_code_14(harness: Harness) -> None:
    body = {"images": ["!!not base64!!"], **harness.credentials()}
    response = await harness.client.post(f"/v3/recognition/image/sync/base64/{SECRET}", json=body)
    assert harness.inner(response)["summary"][0]["code"] == 14


@pytest.mark.anyio
async def test_base64_body_over_30_mib_is_http_413(harness: Harness) -> None:
    big = "A" * (30 * 1024 * 1024)
    body = {"images": [big], **harness.credentials()}
    response = await harness.client.post(f"/v3/recognition/image/sync/base64/{SECRET}", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == 14


@pytest.mark.anyio
async def test_base64_task_filter_and_tail_completion(harness: Harness) -> None:
    response = await harness.base64([jpeg(b"1"), jpeg(b"2")], tasks=[TASK_PORN], tags=["a", "b"])
    inner = harness.inner(response)
    assert TASK_PORN in inner
    assert TASK_POLITICAL not in inner
    assert [e["tag"] for e in inner[TASK_PORN]["fileList"]] == ["a", "b"]


# -- tags, sequence ids and tasks -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([], None),
        (["a"], ["a", "a", "a"]),
        (["a", "b"], ["a", "b", "b"]),
        (["a", "b", "c", "d"], ["a", "b", "c"]),
        ("solo", ["solo", "solo", "solo"]),
    ],
)
async def test_tag_tail_completion(
    harness: Harness, tags: list[str] | str, expected: list[str] | None
) -> None:
    inner = harness.inner(await harness.recognize_urls(urls(3), tag=tags))
    if expected is None:
        assert all("tag" not in s for s in inner["summary"])
        assert all("tag" not in e for e in inner[TASK_PORN]["fileList"])
    else:
        assert [s["tag"] for s in inner["summary"]] == expected
        assert [e["tag"] for e in inner[TASK_PORN]["fileList"]] == expected


@pytest.mark.anyio
async def test_sequence_ids_are_tail_completed(harness: Harness) -> None:
    harness.inner(await harness.recognize_urls(urls(3), sequenceId=["room-1"], referer="http://r"))
    recorded = harness.server.requests[-1]
    assert recorded.sequence_ids == ["room-1"] * 3
    assert recorded.referer == "http://r"
    assert recorded.tags is None


@pytest.mark.anyio
async def test_only_requested_tasks_appear(harness: Harness) -> None:
    inner = harness.inner(
        await harness.recognize_urls(urls(2), task=[TASK_VIOLENCE, TASK_PORN, TASK_PORN])
    )
    assert [key for key in inner if key in DEFAULT_TASKS] == [TASK_VIOLENCE, TASK_PORN]


@pytest.mark.anyio
async def test_a_task_the_server_does_not_run_is_code_7(harness: Harness) -> None:
    inner = harness.inner(await harness.recognize_urls(urls(1), task=["ffffffffffffffffffffffff"]))
    assert inner["code"] == 7
    assert "ffffffffffffffffffffffff" in inner["message"]


@pytest.mark.anyio
async def test_extra_unknown_tasks_get_generic_results() -> None:
    extra = "0123456789abcdef01234567"
    server = FakeTupuServer(tasks=[TASK_PORN, extra])
    harness, client = await _harness_for(server)
    async with client:
        inner = harness.inner(await harness.recognize_urls(urls(1)))
    assert {"label", "rate", "review", "name"} <= set(inner[extra]["fileList"][0])
    assert "reviewCount" in inner[extra]


# -- summary ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_magic_words_force_the_summary(harness: Harness) -> None:
    images = [
        "http://i.test/porn.jpg",
        "http://i.test/sexy.jpg",
        "http://i.test/politic.jpg",
        "http://i.test/violence.jpg",
        "http://i.test/needs-review.jpg",
    ]
    inner = harness.inner(await harness.recognize_urls(images))
    summary = inner["summary"]
    assert [(s["suggestion"], s["riskType"], s.get("riskTask")) for s in summary] == [
        (1, 2, TASK_PORN),
        (2, 2, TASK_PORN),
        (1, 1, TASK_POLITICAL),
        (1, 3, TASK_VIOLENCE),
        (2, 2, TASK_PORN),
    ]
    labels = [e["label"] for e in inner[TASK_PORN]["fileList"]]
    assert labels[:2] == [0, 1]
    assert inner[TASK_PORN]["fileList"][4]["review"] is True
    assert inner[TASK_VIOLENCE]["fileList"][3]["label"] == 1
    assert inner[TASK_POLITICAL]["fileList"][2]["label"] == 0


@pytest.mark.anyio
async def test_magic_words_in_uploaded_content(harness: Harness) -> None:
    inner = harness.inner(await harness.upload([("a.jpg", jpeg(b"porn")), ("b.jpg", jpeg(b"ok"))]))
    assert [s["suggestion"] for s in inner["summary"]] == [1, 0]


@pytest.mark.anyio
async def test_summary_agrees_with_task_results_and_mostly_passes(harness: Harness) -> None:
    harness.server.qps_limit = None
    suggestions: list[int] = []
    for batch in range(20):
        inner = harness.inner(await harness.recognize_urls(urls(10, f"http://i.test/{batch}/")))
        for position, entry in enumerate(inner["summary"]):
            suggestions.append(entry["suggestion"])
            porn = inner[TASK_PORN]["fileList"][position]
            if entry["suggestion"] == 0:
                assert "riskTask" not in entry
                assert entry["riskType"] == 0
                assert porn["label"] == 2
                assert not porn["review"]
            else:
                risky = inner[entry["riskTask"]]["fileList"][position]
                assert risky["review"] or risky["label"] != 2
    assert suggestions.count(0) > 0.85 * len(suggestions)
    assert suggestions.count(2) > 0  # a small deterministic fraction goes to review


@pytest.mark.anyio
async def test_summary_can_be_disabled() -> None:
    harness, client = await _harness_for(FakeTupuServer(summary=False))
    async with client:
        inner = harness.inner(await harness.recognize_urls(urls(2)))
    assert "summary" not in inner
    assert len(inner[TASK_PORN]["fileList"]) == 2


# -- QPS -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_qps_limit_answers_429_and_counts_only_accepted() -> None:
    harness, client = await _harness_for(FakeTupuServer(qps_limit=5))
    async with client:
        statuses = [(await harness.recognize_urls(urls(1))).status_code for _ in range(8)]
        other_id, other_pem = harness.server.add_credentials("other")
        fields = Signer(other_id, other_pem).sign()
        other = await client.post(
            f"/v3/recognition/{other_id}",
            json={
                "image": urls(1),
                "timestamp": fields.timestamp,
                "nonce": fields.nonce,
                "signature": fields.signature,
            },
        )
        throttled = await harness.recognize_urls(urls(1))
    assert statuses == [200] * 5 + [429] * 3
    assert other.status_code == 200  # the window is per secret id
    assert throttled.headers["retry-after"] == "1"
    assert throttled.json()["error"]["code"] == 429
    stats = harness.server.stats
    assert stats.throttled == 4
    assert stats.http_429 == 4
    assert stats.max_in_window(1.0, SECRET) == 9
    assert stats.max_accepted_in_window(1.0, SECRET) == 5
    assert stats.max_accepted_in_window(1.0) == 6


@pytest.mark.anyio
async def test_qps_window_slides() -> None:
    import anyio

    harness, client = await _harness_for(FakeTupuServer(qps_limit=2))
    async with client:
        first = [(await harness.recognize_urls(urls(1))).status_code for _ in range(3)]
        await anyio.sleep(1.05)
        later = (await harness.recognize_urls(urls(1))).status_code
    assert first == [200, 200, 429]
    assert later == 200


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_injected_http_faults(harness: Harness) -> None:
    harness.server.inject("http_500", "http_502", "http_429")
    server_error = await harness.recognize_urls(urls(1))
    bad_gateway = await harness.recognize_urls(urls(1))
    throttled = await harness.recognize_urls(urls(1))
    assert server_error.status_code == 500
    assert "error" in server_error.json()
    assert bad_gateway.status_code == 502
    assert bad_gateway.headers["content-type"] == "text/html"
    assert b"502 Bad Gateway" in bad_gateway.content
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    assert harness.inner(await harness.recognize_urls(urls(1)))["code"] == 0  # queue drained
    assert harness.server.stats.faults == {"http_500": 1, "http_502": 1, "http_429": 1}


@pytest.mark.anyio
async def test_injected_code_faults_are_signed_envelopes(harness: Harness) -> None:
    harness.server.inject("code_100", "code_101")
    assert harness.inner(await harness.recognize_urls(urls(1)))["code"] == 100
    assert harness.inner(await harness.recognize_urls(urls(1)))["code"] == 101


@pytest.mark.anyio
async def test_bad_signature_fault_does_not_verify(harness: Harness) -> None:
    harness.server.inject("bad_signature")
    response = await harness.recognize_urls(urls(1))
    envelope = response.json()
    assert response.status_code == 200
    base64.b64decode(envelope["signature"], validate=True)
    assert json.loads(envelope["json"])["code"] == 0
    assert not verify_signature(
        harness.public_key, envelope["json"].encode(), envelope["signature"]
    )


@pytest.mark.anyio
async def test_truncated_body_fault_is_half_an_envelope(harness: Harness) -> None:
    harness.server.inject("truncated_body")
    response = await harness.recognize_urls(urls(2))
    assert response.status_code == 200
    assert response.content.startswith(b'{"json":')
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


@pytest.mark.anyio
async def test_drop_connection_fault_raises_remote_protocol_error(harness: Harness) -> None:
    harness.server.inject("drop_connection")
    with pytest.raises(httpx.RemoteProtocolError):
        await harness.recognize_urls(urls(1))
    assert harness.inner(await harness.recognize_urls(urls(1)))["code"] == 0
    assert harness.server.stats.faults["drop_connection"] == 1


@pytest.mark.anyio
async def test_timeout_fault_raises_read_timeout() -> None:
    server = FakeTupuServer(faults=FaultConfig(timeout_delay=30.0))
    harness, client = await _harness_for(server)
    async with client:
        server.inject("timeout")
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                f"/v3/recognition/{SECRET}",
                json={"image": urls(1), **harness.credentials()},
                timeout=httpx.Timeout(5.0, read=0.05),
            )
        assert time.monotonic() - started < 5.0  # the client's timeout, not the fault's delay
        server.faults = FaultConfig(timeout_delay=0.01)
        server.inject("timeout")
        with pytest.raises(httpx.ReadTimeout):
            await harness.recognize_urls(urls(1))  # in process a timeout fault always times out
    assert server.stats.faults["timeout"] == 2


@pytest.mark.anyio
async def test_latency_beyond_the_read_timeout_times_out() -> None:
    harness, client = await _harness_for(FakeTupuServer(latency=1.0))
    async with client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                f"/v3/recognition/{SECRET}",
                json={"image": urls(1), **harness.credentials()},
                timeout=httpx.Timeout(5.0, read=0.05),
            )


@pytest.mark.anyio
async def test_latency_is_applied_after_arrival_is_recorded() -> None:
    harness, client = await _harness_for(FakeTupuServer(latency=0.1, latency_jitter=0.02))
    async with client:
        before = time.monotonic()
        harness.inner(await harness.recognize_urls(urls(1)))
        elapsed = time.monotonic() - before
    assert 0.08 <= elapsed < 1.0
    assert harness.server.stats.arrivals[0] - before < 0.05


@pytest.mark.anyio
async def test_random_faults_are_deterministic_and_counted() -> None:
    kinds = ("http_500", "code_100", "bad_signature")

    async def run() -> list[int]:
        server = FakeTupuServer(qps_limit=None, faults=FaultConfig(rate=0.5, kinds=kinds, seed=3))
        harness, client = await _harness_for(server)
        async with client:
            statuses = []
            for _ in range(30):
                response = await harness.recognize_urls(urls(1))
                body = response.json()
                statuses.append(
                    response.status_code if "json" not in body else json.loads(body["json"])["code"]
                )
        assert 5 < sum(server.stats.faults.values()) < 25
        assert set(server.stats.faults) <= set(kinds)
        return statuses

    assert await run() == await run()


def test_fault_config_validates() -> None:
    with pytest.raises(ValueError, match="rate"):
        FaultConfig(rate=1.5)
    with pytest.raises(ValueError, match="unknown fault"):
        FaultConfig(rate=0.1, kinds=["meteor"])
    with pytest.raises(ValueError, match="unknown fault"):
        FakeTupuServer().inject("meteor")
    assert set(FaultConfig().kinds) == set(ALL_FAULT_KINDS)


# -- stats ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stats_count_paths_images_and_roundtrip_json(harness: Harness) -> None:
    await harness.recognize_urls(urls(3))
    await harness.recognize_urls(urls(5))
    await harness.base64([jpeg()])
    stats = harness.server.stats
    assert stats.total_requests == 3
    assert stats.requests_by_path[f"/v3/recognition/{SECRET}"] == 2
    assert stats.images_per_request == [3, 5, 1]
    assert stats.images_histogram == {1: 1, 3: 1, 5: 1}
    assert stats.mean_images_per_request == 3.0
    assert stats.status_counts[200] == 3
    assert stats.code_counts[0] == 3
    served = await harness.client.get("/_fake/stats")
    copy = FakeServerStats.from_dict(served.json())
    assert copy.to_dict() == stats.to_dict()
    assert served.json()["max_in_1s"] == 3
    reset = await harness.client.post("/_fake/reset")
    assert reset.status_code == 200
    await harness.client.get("/_fake/stats")
    assert harness.server.stats.total_requests == 0  # control endpoints are not counted


@pytest.mark.anyio
async def test_inject_over_http(harness: Harness) -> None:
    response = await harness.client.post("/_fake/inject", json={"kinds": ["http_500"]})
    assert response.json() == {"pending": ["http_500"]}
    assert (await harness.recognize_urls(urls(1))).status_code == 500
    bad = await harness.client.post("/_fake/inject", json={"kinds": ["meteor"]})
    assert bad.status_code == 400


@pytest.mark.anyio
async def test_reset_stats_keeps_counting_requests_in_flight(harness: Harness) -> None:
    await harness.recognize_urls(urls(1))
    harness.server.reset_stats()
    await harness.recognize_urls(urls(2))
    assert harness.server.stats.images_per_request == [2]
    assert harness.server.stats.arrival_secret_ids == [SECRET]


@pytest.mark.anyio
async def test_unknown_paths_and_methods(harness: Harness) -> None:
    assert (await harness.client.get("/nowhere")).status_code == 404
    assert (await harness.client.get(f"/v3/recognition/{SECRET}")).status_code == 405
    assert (await harness.client.post("/v3/recognition/a/b")).status_code == 404


def _brute_force_max(times: list[float], window: float) -> int:
    return max((sum(1 for a in times if t - window < a <= t) for t in times), default=0)


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.floats(0, 20, allow_nan=False).map(lambda t: round(t, 3)), max_size=60),
    window=st.sampled_from([0.001, 0.25, 0.5, 1.0, 2.5]),
)
def test_max_in_window_matches_a_brute_force_count(times: list[float], window: float) -> None:
    assert max_arrivals_in_window(times, window) == _brute_force_max(times, window)


def test_max_in_window_is_half_open() -> None:
    assert max_arrivals_in_window([0.0, 1.0], 1.0) == 1  # (0, 1] excludes 0
    assert max_arrivals_in_window([0.0, 0.999, 1.0], 1.0) == 2
    assert max_arrivals_in_window([5.0, 5.0, 5.0], 1.0) == 3
    with pytest.raises(ValueError, match="window"):
        max_arrivals_in_window([1.0], 0)


# -- image library management ------------------------------------------------------------------


@pytest.mark.anyio
async def test_library_search_filters_by_name(harness: Harness) -> None:
    faces = harness.server.create_library("Known Faces", threshold=0.9)
    harness.server.create_library("logos", type=1)
    response = await harness.manage(LIBRARY_SEARCH_PATH, name="face")
    assert response.json() == {
        "imageLibraries": [
            {
                "id": faces,
                "name": "Known Faces",
                "type": 0,
                "threshold": 0.9,
                "status": 0,
                "images": 0,
            }
        ]
    }
    everything = (await harness.manage(LIBRARY_SEARCH_PATH)).json()["imageLibraries"]
    assert [lib["name"] for lib in everything] == ["Known Faces", "logos"]
    assert re.fullmatch(r"[0-9a-f]{24}", faces)


@pytest.mark.anyio
async def test_library_add_list_replace_delete(harness: Harness) -> None:
    library = harness.server.create_library("blocklist")
    added = await harness.manage(
        LIBRARY_ADD_URLS_PATH,
        imageLibraryId=library,
        images=[
            {"name": "a.jpg", "url": "http://img.test/a.jpg"},
            {"name": "b.jpg", "url": "http://img.test/download-fail.jpg"},
        ],
    )
    first, failed = added.json()["images"]
    assert first["code"] == 0
    assert first["error"] == ""
    assert first["name"] == "a.jpg"
    assert first["url"].startswith("https://static.tuputech.com/lts/image/original/")
    assert failed["code"] == 14
    assert failed["name"] == "b.jpg"
    content = base64.b64encode(jpeg(b"face")).decode()
    uploaded = await harness.manage(
        LIBRARY_ADD_BASE64_PATH,
        imageLibraryId=library,
        images=[{"name": "a.jpg", "content": content}, {"name": "c.jpg", "content": "AAAA"}],
    )
    assert [item["code"] for item in uploaded.json()["images"]] == [0, 14]
    assert list(harness.server.library_images(library)) == ["a.jpg"]
    assert harness.server.library_images(library)["a.jpg"].source == "base64"  # replaced
    listed = (await harness.manage(LIBRARY_IMAGES_PATH, imageLibraryId=library)).json()
    (image,) = listed["images"]
    assert set(image) == {"name", "url", "updatedAt"}
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,3})? \+0000 UTC", image["updatedAt"]
    )
    deleted = await harness.manage(
        LIBRARY_DELETE_PATH, imageLibraryId=library, images=[{"name": "a.jpg"}, {"name": "zz"}]
    )
    assert deleted.json() == {
        "images": [
            {"code": 0, "error": "", "name": "a.jpg"},
            {"code": 14, "error": "image not found", "name": "zz"},
        ]
    }
    assert harness.server.library_images(library) == {}


@pytest.mark.anyio
async def test_library_errors_are_plain_http_400(harness: Harness) -> None:
    library = harness.server.create_library("l")
    unknown = await harness.manage(LIBRARY_IMAGES_PATH, imageLibraryId="f" * 24)
    assert unknown.status_code == 400
    assert "error" in unknown.json()
    empty = await harness.manage(LIBRARY_DELETE_PATH, imageLibraryId=library, images=[])
    assert empty.status_code == 400
    too_many = [{"name": str(i), "url": f"http://i.test/{i}.jpg"} for i in range(1001)]
    over = await harness.manage(LIBRARY_ADD_URLS_PATH, imageLibraryId=library, images=too_many)
    assert over.status_code == 400
    exactly = await harness.manage(
        LIBRARY_ADD_URLS_PATH, imageLibraryId=library, images=too_many[:1000]
    )
    assert len(exactly.json()["images"]) == 1000
    forged = await harness.client.post(
        LIBRARY_SEARCH_PATH,
        json={"secretId": SECRET, "timestamp": "1", "nonce": "0.5", "signature": "AAAA"},
    )
    assert forged.status_code == 400
    assert forged.json()["error"]["code"] == 1


@pytest.mark.anyio
async def test_signed_management_responses() -> None:
    server = FakeTupuServer(sign_management_responses=True)
    harness, client = await _harness_for(server)
    async with client:
        library = server.create_library("signed")
        inner = harness.inner(await harness.manage(LIBRARY_IMAGES_PATH, imageLibraryId=library))
        assert inner["code"] == 0
        assert inner["images"] == []
        denied = await client.post(
            LIBRARY_SEARCH_PATH,
            json={"secretId": "nobody", "timestamp": "1", "nonce": "0.5", "signature": "AAAA"},
        )
        assert harness.inner(denied)["code"] == 6


@pytest.mark.anyio
async def test_management_shares_the_qps_window() -> None:
    server = FakeTupuServer(qps_limit=2)
    harness, client = await _harness_for(server)
    async with client:
        await harness.recognize_urls(urls(1))
        assert (await harness.manage(LIBRARY_SEARCH_PATH)).status_code == 200
        assert (await harness.manage(LIBRARY_SEARCH_PATH)).status_code == 429


@pytest.mark.anyio
async def test_management_base64_body_over_100_mib_is_413(harness: Harness) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": LIBRARY_ADD_BASE64_PATH,
        "headers": [(b"content-length", str(100 * 1024 * 1024 + 1).encode())],
    }
    await harness.server.app(scope, receive, send)
    assert sent[0]["status"] == 413


def test_go_time_string_trims_like_go() -> None:
    utc = datetime.timezone.utc
    moment = datetime.datetime(2022, 6, 16, 7, 1, 51, 935_123, tzinfo=utc)
    assert go_time_string(moment) == "2022-06-16 07:01:51.935 +0000 UTC"
    assert go_time_string(moment.replace(microsecond=930_000)) == "2022-06-16 07:01:51.93 +0000 UTC"
    assert go_time_string(moment.replace(microsecond=0)) == "2022-06-16 07:01:51 +0000 UTC"


def test_serve_command_options_build_the_server(tmp_path: pathlib.Path) -> None:
    from tupu_async.testing._command import _server_from_args, build_parser

    key_out = tmp_path / "client.pem"
    signing_out = tmp_path / "server.pem"
    args = build_parser().parse_args(
        [
            "serve",
            "--secret-id", "a",
            "--secret-id", "b",
            "--client-key-out", str(key_out),
            "--qps", "0",
            "--latency", "0.3",
            "--jitter", "0.1",
            "--library", "faces",
            "--fault-rate", "0.5",
            "--fault-kinds", "http_500,timeout",
            "--retry-after", "none",
            "--signing-key-out", str(signing_out),
            "--no-summary",
        ]
    )  # fmt: skip
    server, libraries = _server_from_args(args)
    assert server.qps_limit is None
    assert (server.latency, server.latency_jitter, server.summary) == (0.3, 0.1, False)
    assert server.faults.kinds == ("http_500", "timeout")
    assert server.faults.retry_after is None
    assert list(server.library_images(libraries["faces"])) == []
    assert server.secret_ids == ("a", "b")
    assert oct(key_out.stat().st_mode & 0o777) == "0o600"
    assert b"BEGIN RSA PRIVATE KEY" in key_out.read_bytes()
    signing_key = FakeTupuServer(private_key=signing_out.read_bytes())
    assert signing_key.public_key_pem == server.public_key_pem
    with pytest.raises(SystemExit):
        _server_from_args(build_parser().parse_args(["serve", "--public-key-file", "x.pem"]))


@pytest.mark.anyio
async def test_a_server_without_tasks_answers_code_13() -> None:
    harness, client = await _harness_for(FakeTupuServer(tasks=[]))
    async with client:
        assert harness.inner(await harness.recognize_urls(urls(1)))["code"] == 13


def test_stats_snapshot_is_independent() -> None:
    stats = FakeServerStats()
    stats.record_arrival(1.0, "/p")
    copy = stats.snapshot()
    stats.record_arrival(1.5, "/p")
    assert copy.arrivals == [1.0]
    assert stats.max_in_window(1.0) == 2
