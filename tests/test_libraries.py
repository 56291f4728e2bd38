"""Unit tests of the image-library management resource against hand-written handlers.

Every test talks to an ``httpx.MockTransport``: a small in-memory library store
(:class:`MiniStore`) or a one-off handler, so chunking, per-item outcomes, retries,
signed and plain answers and validation are checked without a server or real time.
"""

from __future__ import annotations

import base64
import json
import math
import pathlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tupu_async._events import ClientStats, Hooks
from tupu_async._exceptions import (
    APIError,
    AuthenticationError,
    InvalidImageError,
    InvalidInputError,
    MalformedResponseError,
    RateLimitError,
    SignatureVerificationError,
    TupuError,
)
from tupu_async._libraries import Libraries
from tupu_async._libraries._inputs import ContentSource, plan_chunks
from tupu_async._libraries._types import (
    ImageLibrary,
    LibraryImage,
    LibraryItemOutcome,
    LibrarySyncReport,
    LibraryType,
    parse_updated_at,
)
from tupu_async._limiter import UnlimitedLimiter
from tupu_async._retry import RetryPolicy
from tupu_async._sending import RequestSender
from tupu_async._signing import Signer, sign_message, verify_signature

CLIENT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
SERVER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
SECRET_ID = "secret-under-test"
BASE_URL = "http://tupu.test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 40

Handler = Callable[[httpx.Request], httpx.Response]


def make_libraries(handler: Handler, *, max_retries: int = 2, verify: bool = True) -> Libraries:
    """A ``Libraries`` over a mock transport: no limit, no backoff, server key trusted."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    sender = RequestSender(
        http=http,
        base_url=BASE_URL,
        signer=Signer(SECRET_ID, CLIENT_KEY),
        limiter=UnlimitedLimiter(),
        policy=RetryPolicy(max_retries=max_retries, backoff_base=0.0, backoff_max=0.0),
        hooks=Hooks(),
        stats=ClientStats(),
    )
    return Libraries(sender, SERVER_KEY.public_key() if verify else None)


def plain(payload: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


def signed(payload: Any, key: rsa.RSAPrivateKey = SERVER_KEY) -> httpx.Response:
    text = json.dumps(payload, ensure_ascii=False)
    signature = sign_message(key, text.encode())
    return httpx.Response(200, json={"json": text, "signature": signature})


def recording(sent: list[httpx.Request]) -> Handler:
    """A handler that records every request and answers ``{}``."""

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return plain({})

    return handler


def body_of(request: httpx.Request) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(request.content)
    return data


class MiniStore:
    """An in-memory stand-in for the five endpoints, recording every request it gets.

    ``fail`` maps a name to the per-item code it gets when added; ``sign`` answers with
    signed envelopes; ``drop`` names are left out of add answers.
    """

    def __init__(self, *, sign: bool = False) -> None:
        self.images: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, int] = {}
        self.drop: set[str] = set()
        self.sign = sign
        self.library_id = "lib-1"

    def answer(self, payload: Any) -> httpx.Response:
        return signed(payload) if self.sign else plain(payload)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = body_of(request)
        path = request.url.path
        self.requests.append((path, body))
        auth = f"{body['secretId']},{body['timestamp']},{body['nonce']}".encode()
        assert verify_signature(CLIENT_KEY.public_key(), auth, body["signature"])
        if path.endswith("/image-library/search"):
            return self.answer(
                {
                    "imageLibraries": [
                        {
                            "id": self.library_id,
                            "name": "blocked",
                            "type": 0,
                            "threshold": 0.95,
                            "status": 0,
                            "images": len(self.images),
                        }
                    ]
                }
            )
        if body.get("imageLibraryId") != self.library_id:
            return plain({"error": "image library not found"}, 400)
        if path.endswith("/image/search"):
            return self.answer({"images": list(self.images.values())})
        results = []
        for item in body["images"]:
            name = item["name"]
            if name in self.drop:
                continue
            if path.endswith("/image/delete"):
                if self.images.pop(name, None) is None:
                    results.append({"code": 14, "error": "image not found", "name": name})
                else:
                    results.append({"code": 0, "error": "", "name": name})
                continue
            code = self.fail.get(name, 0)
            url = item.get("url") or f"https://static.test/{name}"
            if code == 0:
                if "content" in item:
                    assert base64.b64decode(item["content"])[:4] in (PNG[:4], JPEG[:4])
                self.images[name] = {
                    "name": name,
                    "url": url,
                    "updatedAt": "2022-06-16 07:01:51.935 +0000 UTC",
                }
                results.append({"code": 0, "error": "", "name": name, "url": url})
            else:
                results.append({"code": code, "error": "download failed", "name": name, "url": url})
        return self.answer({"images": results})

    def calls(self, suffix: str) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path.endswith(suffix)]


# ------------------------------------------------------------------- updatedAt


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "2022-06-16 07:01:51.935 +0000 UTC",
            datetime(2022, 6, 16, 7, 1, 51, 935000, tzinfo=timezone.utc),
        ),
        ("2022-06-16 07:01:51 +0000 UTC", datetime(2022, 6, 16, 7, 1, 51, tzinfo=timezone.utc)),
        (
            "2022-06-16 07:01:51.935123456 +0800 CST",
            datetime(2022, 6, 16, 7, 1, 51, 935123, tzinfo=timezone(timedelta(hours=8))),
        ),
        (
            "2022-06-16 07:01:51.9 +0000 UTC m=+3.000000001",
            datetime(2022, 6, 16, 7, 1, 51, 900000, tzinfo=timezone.utc),
        ),
        ("2022-06-16T07:01:51.935Z", datetime(2022, 6, 16, 7, 1, 51, 935000, tzinfo=timezone.utc)),
        (
            "2022-06-16T07:01:51+08:00",
            datetime(2022, 6, 16, 7, 1, 51, tzinfo=timezone(timedelta(hours=8))),
        ),
        ("2022-06-16T07:01:51", datetime(2022, 6, 16, 7, 1, 51, tzinfo=timezone.utc)),
        (1655362911935, datetime(2022, 6, 16, 7, 1, 51, 935000, tzinfo=timezone.utc)),
        (1655362911, datetime(2022, 6, 16, 7, 1, 51, tzinfo=timezone.utc)),
        ("2022-06-16 07:01:51 CST", None),  # a zone name without an offset is ambiguous
        ("2022-13-01 00:00:00 +0000 UTC", None),
        ("2022-06-16 07:01:60 +0000 UTC", None),
        ("yesterday", None),
        ("", None),
        (None, None),
        (True, None),
        (float("nan"), None),
        ({"not": "a time"}, None),
    ],
)
def test_parse_updated_at(raw: object, expected: datetime | None) -> None:
    assert parse_updated_at(raw) == expected


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from(
            [timezone.utc, timezone(timedelta(hours=8)), timezone(timedelta(hours=-7, minutes=-30))]
        ),
    )
)
def test_go_time_strings_round_trip(moment: datetime) -> None:
    offset = moment.strftime("%z")
    text = moment.strftime("%Y-%m-%d %H:%M:%S") + f".{moment.microsecond:06d} {offset} XYZ"
    parsed = parse_updated_at(text)
    assert parsed == moment
    assert parsed is not None
    assert parsed.tzinfo is not None


@given(st.one_of(st.text(max_size=60), st.integers(), st.floats(), st.none()))
def test_parse_updated_at_never_raises(raw: object) -> None:
    parsed = parse_updated_at(raw)
    assert parsed is None or parsed.tzinfo is not None


# -------------------------------------------------------------------- chunking


@given(
    costs=st.lists(st.integers(min_value=0, max_value=50), max_size=300),
    max_items=st.integers(min_value=1, max_value=20),
    max_bytes=st.one_of(st.none(), st.integers(min_value=60, max_value=400)),
    base=st.integers(min_value=0, max_value=10),
)
def test_plan_chunks_is_minimal_ordered_and_within_limits(
    costs: list[int], max_items: int, max_bytes: int | None, base: int
) -> None:
    chunks = plan_chunks(costs, max_items=max_items, max_bytes=max_bytes, base_bytes=base)
    # Every item exactly once, in order, consecutive.
    assert [i for chunk in chunks for i in chunk] == list(range(len(costs)))
    assert all(len(chunk) >= 1 for chunk in chunks)
    for position, chunk in enumerate(chunks):
        assert len(chunk) <= max_items
        size = base + sum(costs[i] for i in chunk)
        if max_bytes is not None:
            assert size <= max_bytes
        # Minimal: a chunk closes only because its next item would break a limit.
        if position + 1 < len(chunks):
            following = costs[chunk.stop]
            assert len(chunk) == max_items or (
                max_bytes is not None and size + following > max_bytes
            )
    if max_bytes is None:
        assert len(chunks) == math.ceil(len(costs) / max_items)


def test_plan_chunks_gives_an_oversized_item_its_own_chunk() -> None:
    assert plan_chunks([5, 50, 5], max_items=10, max_bytes=20) == [
        range(1),
        range(1, 2),
        range(2, 3),
    ]
    with pytest.raises(ValueError, match="max_items"):
        plan_chunks([1], max_items=0)


# ------------------------------------------------------------------ structs


def test_structs_expose_typed_helpers() -> None:
    library = msgspec.json.decode(
        b'{"id":"a","name":"n","type":1,"threshold":0.9,"status":0,"images":3}',
        type=ImageLibrary,
    )
    assert library.library_type is LibraryType.WHITE
    assert library.image_count == 3
    assert ImageLibrary(id="x", type=7).library_type is None
    assert LibraryItemOutcome(name="a", code=0).ok
    assert not LibraryItemOutcome(name="a", code=14, error="x").ok
    report = LibrarySyncReport(library_id="l", dry_run=True, added=["a"])
    assert report.ok
    assert "would add 1" in report.summary()


# ------------------------------------------------------------- search / list


@pytest.mark.anyio
@pytest.mark.parametrize("sign", [False, True])
async def test_search_decodes_plain_and_signed_answers(sign: bool) -> None:
    store = MiniStore(sign=sign)
    libraries = make_libraries(store)
    found = await libraries.search()
    assert found == [
        ImageLibrary(id="lib-1", name="blocked", type=0, threshold=0.95, status=0, images=0)
    ]
    assert found[0].library_type is LibraryType.BLACK
    ((path, body),) = store.requests
    assert path == "/v3/management/image-library/search"
    assert "name" not in body
    assert body["secretId"] == SECRET_ID
    await libraries.search(name="bl")
    assert store.requests[-1][1]["name"] == "bl"


@pytest.mark.anyio
async def test_search_with_an_empty_or_null_list() -> None:
    answers = iter([plain({"imageLibraries": None}), plain({})])
    libraries = make_libraries(lambda request: next(answers))
    assert await libraries.search() == []
    assert await libraries.search() == []


@pytest.mark.anyio
async def test_a_bad_signature_raises_and_is_never_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return signed({"imageLibraries": []}, key=OTHER_KEY)

    libraries = make_libraries(handler)
    with pytest.raises(SignatureVerificationError):
        await libraries.search()
    assert len(calls) == 1
    # The same answer is accepted when verification is off.
    assert await make_libraries(handler, verify=False).search() == []


@pytest.mark.anyio
async def test_an_envelope_without_signature_is_refused() -> None:
    libraries = make_libraries(lambda r: plain({"json": '{"imageLibraries": []}'}))
    with pytest.raises(SignatureVerificationError):
        await libraries.search()


@pytest.mark.anyio
async def test_list_images_parses_times_and_keeps_the_raw_text() -> None:
    answer = {
        "images": [
            {
                "name": "a.jpg",
                "url": "https://s/a.jpg",
                "updatedAt": "2022-06-16 07:01:51.935 +0000 UTC",
            },
            {"name": "b.jpg", "url": "https://s/b.jpg", "updatedAt": "not a time"},
            {"name": "c.jpg", "url": "https://s/c.jpg"},
        ]
    }
    store: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        store.append(body_of(request))
        return plain(answer)

    images = await make_libraries(handler).list_images("lib-9")
    assert store[0]["imageLibraryId"] == "lib-9"
    assert images[0] == LibraryImage(
        name="a.jpg",
        url="https://s/a.jpg",
        updated_at=datetime(2022, 6, 16, 7, 1, 51, 935000, tzinfo=timezone.utc),
        updated_at_raw="2022-06-16 07:01:51.935 +0000 UTC",
    )
    assert images[1].updated_at is None
    assert images[1].updated_at_raw == "not a time"
    assert images[2].updated_at is None
    assert images[2].updated_at_raw is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response", "error"),
    [
        (plain({"error": "image library not found"}, 400), APIError),
        (plain({"error": {"code": 6, "message": "bad secretId"}}), AuthenticationError),
        (plain({"code": 1, "message": "auth failed"}), AuthenticationError),
        (httpx.Response(200, content=b"<html>bad gateway</html>"), MalformedResponseError),
        (plain({"imageLibraries": "nope"}), MalformedResponseError),
        (httpx.Response(404, content=b"not found"), APIError),
        (plain({"signature": "abc", "imageLibraries": []}), MalformedResponseError),
    ],
)
async def test_errors_of_single_calls_raise(response: httpx.Response, error: type) -> None:
    libraries = make_libraries(lambda request: response, max_retries=1)
    with pytest.raises(error) as caught:
        await libraries.search()
    if response.status_code == 400:
        assert "image library not found" in str(caught.value)


@pytest.mark.anyio
async def test_429_and_5xx_are_retried() -> None:
    answers = iter(
        [
            plain({"error": "slow down"}, 429, **{"Retry-After": "0"}),
            httpx.Response(502, content=b"bad gateway"),
            plain({"imageLibraries": []}),
        ]
    )
    libraries = make_libraries(lambda request: next(answers), max_retries=2)
    assert await libraries.search() == []
    with pytest.raises(RateLimitError):
        await make_libraries(
            lambda r: plain({}, 429, **{"Retry-After": "0"}), max_retries=1
        ).search()


@pytest.mark.anyio
async def test_malformed_answers_are_retried_then_fail_their_items() -> None:
    answers = iter([plain({"imageLibraries": "nope"}), plain({"imageLibraries": []})])
    assert await make_libraries(lambda r: next(answers)).search() == []
    calls: list[httpx.Request] = []

    def garbage(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=b'{"images": [1, 2')

    (outcome,) = await make_libraries(garbage, max_retries=1).delete("lib-1", ["a"])
    assert len(calls) == 2
    assert outcome.code == -1
    assert "JSON" in outcome.error


# ------------------------------------------------------------ batch changes


def run(fn: Callable[[], Awaitable[None]]) -> None:
    anyio.run(fn)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    count=st.integers(min_value=0, max_value=60),
    limit=st.integers(min_value=1, max_value=12),
    as_mapping=st.booleans(),
    concurrency=st.integers(min_value=1, max_value=4),
)
def test_add_urls_chunking_properties(
    count: int, limit: int, as_mapping: bool, concurrency: int
) -> None:
    async def main() -> None:
        store = MiniStore()
        libraries = make_libraries(store)
        libraries.max_urls_per_request = limit
        libraries.max_concurrency = concurrency
        pairs = [(f"img-{i}.jpg", f"https://example.com/{i}.jpg") for i in range(count)]
        outcomes = await libraries.add_urls("lib-1", dict(pairs) if as_mapping else pairs)
        sent = store.calls("/image/create/url")
        assert len(sent) == math.ceil(count / limit)
        assert all(1 <= len(body["images"]) <= limit for body in sent)
        assert sorted(item["name"] for body in sent for item in body["images"]) == sorted(
            name for name, _ in pairs
        )
        assert [o.name for o in outcomes] == [name for name, _ in pairs]
        assert all(o.ok and o.url == url for o, (_, url) in zip(outcomes, pairs, strict=True))

    run(main)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=600), max_size=30),
    limit=st.integers(min_value=1, max_value=8),
)
def test_add_images_chunks_by_count_and_body_size(sizes: list[int], limit: int) -> None:
    async def main() -> None:
        store = MiniStore()
        raw_bodies: list[int] = []

        def handler(request: httpx.Request) -> httpx.Response:
            raw_bodies.append(len(request.content))
            return store(request)

        libraries = make_libraries(handler)
        libraries.max_images_per_request = limit
        libraries.max_body_bytes = 6000
        images = [(f"{i}.png", PNG + b"\x01" * size) for i, size in enumerate(sizes)]
        outcomes = await libraries.add_images("lib-1", images)
        sent = store.calls("/image/create/base64")
        assert all(len(body["images"]) <= limit for body in sent)
        assert all(size <= libraries.max_body_bytes for size in raw_bodies)
        assert [o.name for o in outcomes] == [name for name, _ in images]
        assert all(o.ok for o in outcomes)
        received = {i["name"]: base64.b64decode(i["content"]) for b in sent for i in b["images"]}
        assert received == dict(images)
        # As few requests as the limits allow (consecutive chunks, greedy).
        assert len(sent) == len(
            plan_chunks(
                [
                    len(json.dumps({"name": n, "content": ""}).replace(" ", ""))
                    + 1
                    + 4 * math.ceil(len(data) / 3)
                    for n, data in images
                ],
                max_items=limit,
                max_bytes=6000,
                base_bytes=libraries._upload_base("lib-1"),
            )
        )

    run(main)


@pytest.mark.anyio
async def test_add_urls_default_limit_is_1000_per_request() -> None:
    store = MiniStore()
    pairs = [(f"{i}", f"http://e.com/{i}") for i in range(2345)]
    outcomes = await make_libraries(store).add_urls("lib-1", pairs)
    sizes = sorted((len(b["images"]) for b in store.calls("/image/create/url")), reverse=True)
    assert sizes == [1000, 1000, 345]  # chunks run concurrently, so in any order
    assert len(outcomes) == 2345
    assert all(o.ok for o in outcomes)


@pytest.mark.anyio
async def test_per_item_failures_and_missing_items_come_back_per_item() -> None:
    store = MiniStore(sign=True)
    store.fail["bad.jpg"] = 14
    store.drop.add("lost.jpg")
    outcomes = await make_libraries(store).add_urls(
        "lib-1",
        {
            "ok.jpg": "http://e.com/ok.jpg",
            "bad.jpg": "http://e.com/bad.jpg",
            "lost.jpg": "http://e.com/lost.jpg",
        },
    )
    ok, bad, lost = outcomes
    assert ok.ok
    assert ok.url == "http://e.com/ok.jpg"
    assert (bad.code, bad.error, bad.ok) == (14, "download failed", False)
    assert lost.code == -1
    assert "left this image out" in lost.error


@pytest.mark.anyio
async def test_a_chunk_failing_after_retries_fails_only_its_items() -> None:
    store = MiniStore()
    attempts: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        first = body_of(request)["images"][0]["name"]
        attempts[first] = attempts.get(first, 0) + 1
        if first == "n3":  # the second chunk always fails
            return httpx.Response(503, content=b"overloaded")
        return store(request)

    libraries = make_libraries(handler, max_retries=2)
    libraries.max_deletes_per_request = 3
    libraries.max_urls_per_request = 3
    names = [f"n{i}" for i in range(8)]
    outcomes = await libraries.add_urls("lib-1", [(n, f"http://e.com/{n}") for n in names])
    assert attempts == {"n0": 1, "n3": 3, "n6": 1}
    assert [o.name for o in outcomes] == names
    assert [o.ok for o in outcomes] == [True] * 3 + [False] * 3 + [True] * 2
    assert all(o.code == -1 and "HTTP 503" in o.error for o in outcomes[3:6])


@pytest.mark.anyio
async def test_a_coded_chunk_error_keeps_its_code() -> None:
    libraries = make_libraries(lambda r: plain({"code": 14, "message": "image error"}))
    outcomes = await libraries.delete("lib-1", ["a", "b"])
    assert [(o.name, o.code) for o in outcomes] == [("a", 14), ("b", 14)]


@pytest.mark.anyio
async def test_an_unknown_library_fails_every_item_without_raising() -> None:
    store = MiniStore()
    outcomes = await make_libraries(store).delete("no-such-library", ["a", "b"])
    assert [o.ok for o in outcomes] == [False, False]
    assert all("image library not found" in o.error for o in outcomes)
    assert len(store.requests) == 1  # a 400 is not retried


@pytest.mark.anyio
async def test_413_fails_the_chunk_and_says_what_to_do() -> None:
    libraries = make_libraries(lambda r: httpx.Response(413, content=b"too large"))
    (outcome,) = await libraries.add_images("lib-1", {"a.png": PNG})
    assert not outcome.ok
    assert "max_body_bytes" in outcome.error


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response",
    [
        plain({"code": 1, "message": "authentication failed"}),
        httpx.Response(401, content=b"unauthorized"),
        signed({"images": []}, key=OTHER_KEY),
    ],
)
async def test_fatal_errors_raise_out_of_concurrent_chunks(response: httpx.Response) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return response

    libraries = make_libraries(handler)
    libraries.max_deletes_per_request = 2
    with pytest.raises((AuthenticationError, SignatureVerificationError)):
        await libraries.delete("lib-1", [f"n{i}" for i in range(20)])
    assert len(calls) < 10  # stopped early, not one request per chunk after the failure


@pytest.mark.anyio
async def test_outcomes_without_names_map_by_position() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        items = body_of(request)["images"]
        return plain(
            {"images": [{"code": 0 if i == 0 else 14, "error": ""} for i in range(len(items))]}
        )

    outcomes = await make_libraries(handler).add_images("lib-1", [("x", PNG), ("y", JPEG)])
    assert [(o.name, o.code) for o in outcomes] == [("x", 0), ("y", 14)]


@pytest.mark.anyio
async def test_answers_without_a_list_or_code_fail_safely() -> None:
    answers = iter([plain({}), plain({"images": [{"name": "a"}]})])
    libraries = make_libraries(lambda r: next(answers))
    (first,) = await libraries.delete("lib-1", "a")
    assert first.code == -1
    assert "no per-image list" in first.error
    (second,) = await libraries.delete("lib-1", "a")
    assert second.code == -1
    assert "no status code" in second.error


@pytest.mark.anyio
async def test_add_images_reads_paths_and_bytes(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    store = MiniStore()
    images: dict[str, ContentSource] = {"a": tmp_path / "a.png", "b": JPEG}
    outcomes = await make_libraries(store).add_images("lib-1", images)
    assert [o.name for o in outcomes if o.ok] == ["a", "b"]
    (body,) = store.calls("/image/create/base64")
    assert [base64.b64decode(i["content"]) for i in body["images"]] == [PNG, JPEG]


@pytest.mark.anyio
async def test_add_images_never_reads_a_str_as_a_file(tmp_path: pathlib.Path) -> None:
    """A user-submitted string naming a local file must not upload that file."""
    (tmp_path / "a.png").write_bytes(PNG)
    store = MiniStore()
    libraries = make_libraries(store)
    for value in (str(tmp_path / "a.png"), str(tmp_path / "missing.png")):
        with pytest.raises(InvalidImageError, match=r"pathlib\.Path") as caught:
            await libraries.add_images("lib-1", {"c": value})  # type: ignore[arg-type]
        assert "missing" not in str(caught.value)  # the same answer, existing or not
    assert store.calls("/image/create/base64") == []


@pytest.mark.anyio
async def test_a_file_that_stops_being_an_image_fails_only_itself(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    store = MiniStore()
    libraries = make_libraries(store)
    real_run_chunks = libraries._run_chunks

    async def change_file_then_run(*args: Any) -> list[LibraryItemOutcome]:
        path.write_bytes(b"now text")
        return await real_run_chunks(*args)

    monkeypatch.setattr(libraries, "_run_chunks", change_file_then_run)
    a, b = await libraries.add_images("lib-1", [("a", path), ("b", PNG)])
    assert not a.ok
    assert "not an image" in a.error
    assert b.ok


# ------------------------------------------------------------------ validation


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda L: L.add_urls("", {"a": "http://e.com/a"}), ValueError, "library_id is empty"),
        (lambda L: L.list_images("  "), ValueError, "library_id is empty"),
        (lambda L: L.add_urls("lib", {"": "http://e.com/a"}), ValueError, "name is empty"),
        (lambda L: L.add_urls("lib", {"x" * 513: "http://e.com/a"}), ValueError, "at most 512"),
        (
            lambda L: L.add_urls("lib", [("a", "http://e.com/1"), ("a", "http://e.com/2")]),
            ValueError,
            "repeated: 'a'",
        ),
        (lambda L: L.add_urls("lib", {"a": "ftp://e.com/a"}), InvalidImageError, "http(s)"),
        (lambda L: L.add_urls("lib", {"a": "http:///a"}), InvalidImageError, "no host"),
        (lambda L: L.add_urls("lib", ["a"]), ValueError, "(name, value) pairs"),
        (lambda L: L.add_images("lib", {"a": b"plain text"}), InvalidImageError, "not an image"),
        (lambda L: L.add_images("lib", {"a": b""}), InvalidImageError, "empty"),
        (lambda L: L.add_images("lib", {"a": "http://e.com/a.png"}), InvalidImageError, "add_urls"),
        (
            lambda L: L.add_images("lib", {"a": pathlib.Path("/no/such/file.png")}),
            InvalidImageError,
            "no such file",
        ),
        (lambda L: L.add_images("lib", {"a": 3}), InvalidImageError, "bytes or a file path"),
        (lambda L: L.delete("lib", ["a", "b", "a"]), ValueError, "unique"),
        (lambda L: L.search(name=3), ValueError, "name must be"),
    ],
)
async def test_bad_input_raises_before_sending(
    call: Callable[[Libraries], Awaitable[Any]], error: type, message: str
) -> None:
    sent: list[httpx.Request] = []
    libraries = make_libraries(recording(sent))
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        await call(libraries)
    assert sent == []


@pytest.mark.anyio
async def test_an_image_too_large_for_any_body_is_rejected_before_sending() -> None:
    sent: list[httpx.Request] = []
    libraries = make_libraries(recording(sent))
    libraries.max_body_bytes = 8000
    with pytest.raises(InvalidImageError, match=r"'big'.*on its own"):
        await libraries.add_images("lib", [("small", PNG), ("big", PNG + b"\0" * 5000)])
    assert sent == []


@pytest.mark.anyio
async def test_empty_inputs_send_nothing() -> None:
    sent: list[httpx.Request] = []
    libraries = make_libraries(recording(sent))
    assert await libraries.add_urls("lib", {}) == []
    assert await libraries.add_images("lib", []) == []
    assert await libraries.delete("lib", []) == []
    assert sent == []


@pytest.mark.anyio
async def test_an_image_library_object_can_stand_for_its_id() -> None:
    store = MiniStore()
    libraries = make_libraries(store)
    (library,) = await libraries.search()
    assert await libraries.list_images(library) == []


# ------------------------------------------------------------------------ sync


@pytest.mark.anyio
async def test_sync_library_from_a_folder(tmp_path: pathlib.Path) -> None:
    (tmp_path / "keep.png").write_bytes(PNG)
    (tmp_path / "new.jpg").write_bytes(JPEG)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(PNG)
    (tmp_path / "sub").mkdir()
    store = MiniStore()
    store.images = {
        n: {"name": n, "url": f"https://s/{n}", "updatedAt": None} for n in ("keep.png", "old.png")
    }
    libraries = make_libraries(store)

    preview = await libraries.sync_library("lib-1", tmp_path, dry_run=True)
    assert preview == LibrarySyncReport(
        library_id="lib-1",
        dry_run=True,
        added=["new.jpg"],
        deleted=["old.png"],
        unchanged=["keep.png"],
        skipped=["notes.txt"],
    )
    assert [path for path, _ in store.requests] == ["/v3/management/image/search"]

    report = await libraries.sync_library("lib-1", tmp_path)
    assert (report.added, report.deleted, report.unchanged, report.failed) == (
        ["new.jpg"],
        ["old.png"],
        ["keep.png"],
        [],
    )
    assert sorted(store.images) == ["keep.png", "new.jpg"]
    again = await libraries.sync_library("lib-1", tmp_path)
    assert (again.added, again.deleted, again.unchanged) == ([], [], ["keep.png", "new.jpg"])


@pytest.mark.anyio
async def test_sync_library_from_a_mapping_reports_failures() -> None:
    store = MiniStore()
    store.images = {"stale": {"name": "stale", "url": "https://s/stale"}}
    store.fail["broken"] = 14
    libraries = make_libraries(store)
    report = await libraries.sync_library(
        "lib-1",
        {"u": "https://e.com/u.jpg", "broken": "https://e.com/x.jpg", "c": PNG},
        delete_missing=False,
    )
    assert report.added == ["u", "c"]
    assert report.deleted == []
    assert [(o.name, o.code) for o in report.failed] == [("broken", 14)]
    assert not report.ok
    assert "stale" in store.images


@pytest.mark.anyio
async def test_sync_library_validates_before_listing(tmp_path: pathlib.Path) -> None:
    store = MiniStore()
    libraries = make_libraries(store)
    with pytest.raises(InvalidImageError):
        await libraries.sync_library("lib-1", {"a": b"text"})
    with pytest.raises(ValueError, match="not a directory"):
        await libraries.sync_library("lib-1", tmp_path / "missing")
    with pytest.raises(ValueError, match="folder path or a mapping"):
        await libraries.sync_library("lib-1", 42)  # type: ignore[arg-type]
    assert store.requests == []


# --- bad arguments are TupuErrors (and still ValueErrors) --------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda lib: lib.search(5), "name must be a str"),
        (lambda lib: lib.search("caf\udce9"), "unpaired surrogate"),
        (lambda lib: lib.list_images(None), "library_id"),
        (lambda lib: lib.list_images("lib\ud800"), "unpaired surrogate"),
        (lambda lib: lib.add_urls("lib-1", None), "mapping"),
        (lambda lib: lib.add_urls("lib-1", ["http://e.test/a.jpg"]), "mapping"),
        (lambda lib: lib.add_urls("lib-1", {5: "http://e.test/a.jpg"}), "must be str"),
        (lambda lib: lib.add_images("lib-1", [("a", b"x"), ("a", b"y")]), "unique"),
        (lambda lib: lib.add_images("lib-1", {"": b"x"}), "empty"),
        (lambda lib: lib.delete("lib-1", None), "names"),
        (lambda lib: lib.delete("lib-1", [1, 2]), "must be str"),
    ],
)
async def test_bad_arguments_raise_invalid_input_errors(
    call: Callable[[Libraries], Awaitable[object]], match: str
) -> None:
    store = MiniStore()
    with pytest.raises(InvalidInputError, match=match) as info:
        await call(make_libraries(store))
    assert isinstance(info.value, TupuError)
    assert isinstance(info.value, ValueError)
    assert store.requests == []
