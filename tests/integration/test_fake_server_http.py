"""The fake Tupu server over real loopback HTTP: uvicorn in the loop, in a thread, in a process.

Faults must look to a real httpx client exactly as they would from a real server: a
dropped connection is a protocol error, a stalled answer a read timeout.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import pytest

from tupu_async._keys import load_public_key
from tupu_async._signing import Signer, verify_signature
from tupu_async.testing import FakeTupuServer, FaultConfig, spawn_fake_server

SECRET = "test-secret"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
CONNECTION_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError)


def signed_body(signer: Signer, images: list[str]) -> dict[str, Any]:
    fields = signer.sign()
    return {
        "image": images,
        "timestamp": fields.timestamp,
        "nonce": fields.nonce,
        "signature": fields.signature,
    }


def verified_inner(response: httpx.Response, public_key_pem: bytes) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    envelope = response.json()
    key = load_public_key(public_key_pem)
    assert verify_signature(key, envelope["json"].encode(), envelope["signature"])
    inner: dict[str, Any] = json.loads(envelope["json"])
    return inner


def credentials(server: FakeTupuServer) -> Signer:
    secret_id, pem = server.add_credentials(SECRET)
    return Signer(secret_id, pem)


@pytest.mark.anyio
async def test_serve_answers_json_and_multipart_over_loopback() -> None:
    server = FakeTupuServer()
    signer = credentials(server)
    async with server.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
        assert base_url.startswith("http://127.0.0.1:")
        url_images = ["http://img.test/a.jpg", "http://img.test/porn.jpg"]
        response = await client.post(
            f"/v3/recognition/{SECRET}", json=signed_body(signer, url_images)
        )
        inner = verified_inner(response, server.public_key_pem)
        assert [s["suggestion"] for s in inner["summary"]] == [0, 1]
        fields = signer.sign()
        uploaded = await client.post(
            f"/v3/recognition/{SECRET}",
            files=[("image", ("x.jpg", JPEG + b"1", "image/jpeg"))],
            data={
                "timestamp": fields.timestamp,
                "nonce": fields.nonce,
                "signature": fields.signature,
            },
        )
        assert verified_inner(uploaded, server.public_key_pem)["summary"][0]["name"] == "x.jpg"
        stats = (await client.get("/_fake/stats")).json()
    assert stats["total_requests"] == 2
    assert stats["images_per_request"] == [2, 1]


@pytest.mark.anyio
async def test_dropped_connection_is_a_client_side_error_and_the_next_request_works() -> None:
    server = FakeTupuServer()
    signer = credentials(server)
    async with server.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
        server.inject("drop_connection")
        with pytest.raises(CONNECTION_ERRORS):
            await client.post(f"/v3/recognition/{SECRET}", json=signed_body(signer, ["http://i/a"]))
        response = await client.post(
            f"/v3/recognition/{SECRET}", json=signed_body(signer, ["http://i/a"])
        )
        assert verified_inner(response, server.public_key_pem)["code"] == 0
    assert server.stats.faults["drop_connection"] == 1


@pytest.mark.anyio
async def test_timeout_fault_times_the_client_out_and_does_not_hold_shutdown() -> None:
    server = FakeTupuServer(faults=FaultConfig(timeout_delay=3.0))
    signer = credentials(server)
    started = time.monotonic()
    async with server.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
        server.inject("timeout")
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                f"/v3/recognition/{SECRET}",
                json=signed_body(signer, ["http://i/a"]),
                timeout=httpx.Timeout(5.0, read=0.2),
            )
    assert time.monotonic() - started < 2.5  # the stalled handler ended with its client


@pytest.mark.anyio
async def test_http_level_faults_over_loopback() -> None:
    server = FakeTupuServer()
    signer = credentials(server)
    async with server.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
        server.inject("http_502", "truncated_body", "http_429", "bad_signature")
        path = f"/v3/recognition/{SECRET}"
        bad_gateway = await client.post(path, json=signed_body(signer, ["http://i/a"]))
        truncated = await client.post(path, json=signed_body(signer, ["http://i/a"]))
        throttled = await client.post(path, json=signed_body(signer, ["http://i/a"]))
        forged = await client.post(path, json=signed_body(signer, ["http://i/a"]))
    assert bad_gateway.status_code == 502
    assert bad_gateway.headers["content-type"] == "text/html"
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.content)
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    envelope = forged.json()
    key = load_public_key(server.public_key_pem)
    assert not verify_signature(key, envelope["json"].encode(), envelope["signature"])


@pytest.mark.anyio
async def test_qps_limit_over_loopback_with_concurrent_requests() -> None:
    server = FakeTupuServer(qps_limit=3, latency=0.05)
    signer = credentials(server)
    statuses: list[int] = []
    async with server.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:

        async def one() -> None:
            body = signed_body(signer, ["http://i/a"])
            statuses.append((await client.post(f"/v3/recognition/{SECRET}", json=body)).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
    assert sorted(statuses) == [200, 200, 200, 429, 429]
    assert server.stats.max_accepted_in_window(1.0) == 3
    assert server.stats.max_in_window(1.0) == 5


def test_serve_in_thread_with_a_sync_client() -> None:
    server = FakeTupuServer(latency=0.05)
    signer = credentials(server)
    with server.serve_in_thread() as base_url, httpx.Client(base_url=base_url) as client:
        started = time.monotonic()
        response = client.post(
            f"/v3/recognition/{SECRET}", json=signed_body(signer, ["http://i/a"])
        )
        answered = time.monotonic()
        assert answered - started >= 0.05
        assert verified_inner(response, server.public_key_pem)["code"] == 0
        server.inject("drop_connection")
        with pytest.raises(CONNECTION_ERRORS):
            client.post(f"/v3/recognition/{SECRET}", json=signed_body(signer, ["http://i/a"]))
    # Recorded on arrival, before the 50 ms latency: at least that long before the answer
    # (whatever the machine's load made of the time in between).
    assert started <= server.stats.arrivals[0] <= answered - 0.05 + 0.001
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/_fake/health")  # stopped with the block


def test_spawned_process_serves_reports_and_stops() -> None:
    with spawn_fake_server(libraries=["faces"], qps_limit=None) as process:
        assert process.running
        assert process.private_key_pem is not None
        signer = Signer(process.secret_id, process.private_key_pem)
        with httpx.Client(base_url=process.base_url) as client:
            before = time.monotonic()
            response = client.post(
                f"/v3/recognition/{SECRET}", json=signed_body(signer, ["http://i/a"] * 3)
            )
            after = time.monotonic()
            assert verified_inner(response, process.public_key_pem)["code"] == 0
            process.inject("http_500")
            failed = client.post(
                f"/v3/recognition/{SECRET}", json=signed_body(signer, ["http://i/b"])
            )
            assert failed.status_code == 500
            library = process.libraries["faces"]
            assert len(library) == 24
        stats = process.stats()
        assert stats.total_requests == 2
        assert stats.images_per_request == [3, 1]
        assert stats.faults == {"http_500": 1}
        assert before <= stats.arrivals[0] <= after  # one monotonic clock for the machine
        process.reset()
        assert process.stats().total_requests == 0
    assert not process.running


@pytest.mark.anyio
async def test_spawned_process_with_a_given_key_and_random_faults() -> None:
    server_for_keys = FakeTupuServer()
    _, pem = server_for_keys.add_credentials("mine")
    signer = Signer("mine", pem)
    public_key = signer._key.public_key()
    options: dict[str, Any] = {
        "secret_id": "mine",
        "public_key": public_key,
        "faults": FaultConfig(rate=1.0, kinds=["code_101"]),
        "summary": False,
    }
    process = await anyio.to_thread.run_sync(lambda: spawn_fake_server(**options))
    try:
        assert process.private_key_pem is None
        async with httpx.AsyncClient(base_url=process.base_url) as client:
            response = await client.post(
                "/v3/recognition/mine", json=signed_body(signer, ["http://i/a"])
            )
        assert verified_inner(response, process.public_key_pem)["code"] == 101
        stats = await process.astats()
        assert stats.faults == {"code_101": 1}
        await process.areset()
    finally:
        await anyio.to_thread.run_sync(process.stop)
