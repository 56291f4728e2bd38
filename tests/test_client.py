"""The client against the fake server, in process, on asyncio and trio."""

from __future__ import annotations

import gc
import pathlib

import anyio
import pytest
from clients import in_process_client, png

from tupu_async import (
    AuthenticationError,
    ClientClosedError,
    Hooks,
    Image,
    ImageResult,
    InvalidImageError,
    PornFile,
    RequestEvent,
    RetryPolicy,
    ServerError,
    SignatureVerificationError,
)
from tupu_async._constants import TASK_POLITICAL, TASK_PORN
from tupu_async.testing import FakeTupuServer

pytestmark = pytest.mark.anyio


def urls(n: int, prefix: str = "http://img.test/") -> list[str]:
    return [f"{prefix}{i}.jpg" for i in range(n)]


async def test_recognize_urls_returns_one_result_per_image_in_order() -> None:
    server = FakeTupuServer()
    async with in_process_client(server) as client:
        resp = await client.recognize(urls(3), tags=["a", "b"], tasks=[TASK_PORN])
    assert resp.code == 0
    assert [r.name for r in resp.images] == urls(3)
    assert [r.tag for r in resp.images] == ["a", "b", "b"]  # tail-completed on our side
    assert all(r.ok for r in resp.images)
    assert set(resp.tasks) == {TASK_PORN}
    assert all(isinstance(r.tasks[TASK_PORN], PornFile) for r in resp.images)
    assert server.stats.total_requests == 1


@pytest.mark.parametrize("transport", ["multipart", "base64"])
async def test_recognize_content_with_both_transports(transport: str) -> None:
    server = FakeTupuServer()
    images = [png(1), Image.from_bytes(png(2), name="two.png", tag="own"), png(1)]
    async with in_process_client(server) as client:
        resp = await client.recognize(images, transport=transport, tags=["t"])  # type: ignore[arg-type]
    assert len(resp.images) == 3
    assert [r.index for r in resp.images] == [0, 1, 2]
    assert resp.images[1].name == "two.png"
    assert [r.tag for r in resp.images] == ["t", "own", "t"]
    # identical content gives identical results; the duplicate name maps one-to-one
    assert resp.images[0].name == resp.images[2].name
    assert resp.images[0].tasks.keys() == resp.images[2].tasks.keys()
    assert all(r.ok for r in resp.images)


async def test_duplicate_urls_in_one_request_map_one_to_one() -> None:
    server = FakeTupuServer()
    u = "http://img.test/same.jpg"
    async with in_process_client(server) as client:
        resp = await client.recognize([u, u, u], tags=["x", "y", "z"])
    assert [r.tag for r in resp.images] == ["x", "y", "z"]
    assert all(r.ok and r.tasks for r in resp.images)


async def test_magic_urls_give_block_and_download_failures_are_per_image() -> None:
    server = FakeTupuServer()
    async with in_process_client(server) as client:
        resp = await client.recognize(
            [
                "http://img.test/porn.jpg",
                "http://img.test/download-fail.jpg",
                "http://img.test/ok.jpg",
            ]
        )
    porn, failed, fine = resp.images
    assert porn.ok
    assert porn.suggestion == 1
    assert porn.tasks[TASK_PORN].label == 0
    assert not failed.ok
    assert failed.code == 14
    assert failed.error is not None
    assert fine.ok


async def test_recognize_rejects_bad_input_before_sending(tmp_path: pathlib.Path) -> None:
    server = FakeTupuServer()
    async with in_process_client(server) as client:
        with pytest.raises(ValueError, match="recognize_many"):
            await client.recognize(urls(11))
        with pytest.raises(ValueError, match="forbids"):
            await client.recognize(["http://img.test/a.jpg", png(1)])
        with pytest.raises(InvalidImageError, match="no such file"):
            await client.recognize([tmp_path / "missing.jpg"])
        with pytest.raises(InvalidImageError, match="not an http"):
            await client.recognize(["not a url"])
        with pytest.raises(InvalidImageError, match="1 MiB"):
            await client.recognize([png(0) + bytes(1024 * 1024)])
        with pytest.raises(ValueError, match="sequence_id"):
            await client.recognize(
                [
                    Image.from_url("http://a.test/1", sequence_id="s"),
                    Image.from_url("http://a.test/2", sequence_id="s"),
                ]
            )
    assert server.stats.total_requests == 0


async def test_files_are_read_when_their_request_is_built(tmp_path: pathlib.Path) -> None:
    server = FakeTupuServer()
    path = tmp_path / "cat.png"
    path.write_bytes(png(7))
    async with in_process_client(server) as client:
        resp = await client.recognize([path, Image.from_path(str(path))])
    assert [r.name for r in resp.images] == [str(path), str(path)]
    assert all(r.ok for r in resp.images)


async def test_recognize_many_mixed_inputs_keep_order_and_report_bad_ones() -> None:
    server = FakeTupuServer()
    inputs: list[object] = []
    for i in range(57):
        inputs.append(f"http://img.test/{i}.jpg" if i % 3 else png(i))
    inputs[10] = "definitely not an image"
    inputs[20] = b""
    async with in_process_client(server) as client:
        results = await client.recognize_many(inputs)  # type: ignore[arg-type]
    assert [r.index for r in results] == list(range(57))
    assert isinstance(results[10].error, InvalidImageError)
    assert isinstance(results[20].error, InvalidImageError)
    assert sum(r.ok for r in results) == 55
    # URL and content never share a request; every request holds at most 10
    assert max(server.stats.images_per_request) <= 10
    assert sum(server.stats.images_per_request) == 55


async def test_recognize_many_accepts_async_iterables_and_tags() -> None:
    server = FakeTupuServer()
    sent: list[int] = []
    first_thirteen_answered = anyio.Event()

    def answered(event: RequestEvent) -> None:
        sent.append(event.images)
        if sum(sent) == 13:
            first_thirteen_answered.set()

    async def source() -> object:
        for i in range(25):
            yield f"http://img.test/{i}.jpg"
            if i == 12:
                # A stall: the source gives nothing more until the partial batch of 3 has
                # been flushed by linger and answered (it would wait forever otherwise).
                with anyio.fail_after(30):
                    await first_thirteen_answered.wait()

    hooks = Hooks(on_response=answered)
    async with in_process_client(server, hooks=hooks) as client:
        results = await client.recognize_many(source(), tags=["first", "rest"])  # type: ignore[arg-type]
    assert sum(sent) == 25  # every image was sent once, in batches of at most 10
    assert max(sent) <= 10
    assert len(results) == 25
    assert results[0].tag == "first"
    assert all(r.tag == "rest" for r in results[1:])


async def test_fatal_errors_raise_and_stop_the_run() -> None:
    server = FakeTupuServer()
    client = in_process_client(server)
    # a different key than the one registered: the server answers code 1
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    client._signer = type(client._signer)(client.secret_id, other)
    client._sender._signer = client._signer
    async with client:
        with pytest.raises(AuthenticationError):
            await client.recognize_many(urls(200))
    assert server.stats.total_requests < 20


async def test_a_closed_http_client_is_a_fatal_tupu_error_not_a_raw_runtime_error() -> None:
    server = FakeTupuServer()
    client = in_process_client(server)
    async with client:
        await client._http.aclose()  # the app closed the httpx client it lent us
        with pytest.raises(ClientClosedError, match="http_client"):
            await client.recognize(urls(2))
        with pytest.raises(ClientClosedError):
            await client.recognize_many(urls(30))
    assert server.stats.total_requests == 0
    with pytest.raises(ClientClosedError, match="closed"):
        async with client:
            pass


async def test_bad_response_signature_is_fatal() -> None:
    server = FakeTupuServer()
    server.inject("bad_signature")
    async with in_process_client(server) as client:
        with pytest.raises(SignatureVerificationError):
            await client.recognize(urls(2))


async def test_transient_faults_are_retried_with_fresh_signatures() -> None:
    server = FakeTupuServer()
    server.inject("http_500", "drop_connection", "code_100")
    async with in_process_client(server) as client:
        resp = await client.recognize(urls(2))
        assert resp.code == 0
        assert client.stats.retries == 3
    # the server refuses replayed (timestamp, nonce) pairs, so each attempt was re-signed
    assert server.stats.total_requests == 4


async def test_recognize_raises_after_retries_but_batches_report_per_image() -> None:
    server = FakeTupuServer()
    policy = RetryPolicy(max_retries=1, backoff_base=0.001, backoff_max=0.002)
    async with in_process_client(server, retry_policy=policy) as client:
        server.inject("http_500", "http_500")
        with pytest.raises(ServerError):
            await client.recognize(urls(2))
        server.inject("http_502", "http_502")
        results = await client.recognize_many(urls(3))
    assert [r.ok for r in results] == [False, False, False]
    assert all(isinstance(r.error, ServerError) for r in results)


async def test_recognize_one_coalesces_concurrent_callers() -> None:
    server = FakeTupuServer(qps_limit=None)
    results: list[ImageResult] = []
    async with in_process_client(server, batch_linger=0.02, qps=1000) as client:

        async def one(i: int) -> None:
            results.append(await client.recognize_one(f"http://img.test/{i}.jpg", tag=str(i)))

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    assert len(results) == 200
    assert {r.tag for r in results} == {str(i) for i in range(200)}
    assert all(r.index == 0 and r.ok for r in results)
    assert {r.name for r in results} == set(urls(200))
    mean = sum(server.stats.images_per_request) / len(server.stats.images_per_request)
    assert mean >= 9.5


async def test_recognize_one_raises_invalid_input_and_needs_async_with() -> None:
    server = FakeTupuServer()
    client = in_process_client(server)
    with pytest.raises(RuntimeError, match="async with"):
        await client.recognize_one("http://img.test/a.jpg")
    async with client:
        with pytest.raises(InvalidImageError):
            await client.recognize_one("nope")
    await client.aclose()


async def test_iter_recognize_streams_and_break_cancels_in_flight_work() -> None:
    server = FakeTupuServer(qps_limit=None, latency=0.05)
    pulled = 0
    source_closed = anyio.Event()

    def endless() -> object:
        nonlocal pulled
        i = 0
        try:
            while True:
                pulled += 1
                yield f"http://img.test/{i}.jpg"
                i += 1
        finally:
            source_closed.set()

    async with in_process_client(server, qps=1000, max_in_flight=4) as client:
        seen = 0
        async for _ in client.iter_recognize(endless()):  # type: ignore[arg-type]
            seen += 1
            if seen == 35:
                break
        # The abandoned generator is finalised by the event loop, which cancels its work;
        # the source is released (closed) only once that work has ended.
        with anyio.fail_after(30):
            while not source_closed.is_set():
                gc.collect()  # the cancelled work's frames may sit in reference cycles
                await anyio.sleep(0.01)
        assert client.stats.in_flight == 0
        requests_after_break = client.stats.requests
        pulled_after_break = pulled
    assert client.stats.requests == requests_after_break  # nothing new was started
    assert pulled == pulled_after_break
    # the window bounds how far input is read ahead of the consumer: the results it took,
    # one stream buffer (10), four requests in flight (40), one batch being packed (10)
    assert pulled <= 35 + 10 + 4 * 10 + 10 + 1


async def test_cancelling_recognize_many_leaves_nothing_running() -> None:
    server = FakeTupuServer(qps_limit=None, latency=0.2)
    async with in_process_client(server, qps=1000) as client:
        with anyio.move_on_after(0.1):
            await client.recognize_many(urls(300))
        assert client.stats.in_flight == 0
    assert client._task_group is None


async def test_tasks_filter_and_political_task_decode() -> None:
    server = FakeTupuServer()
    async with in_process_client(server) as client:
        resp = await client.recognize(["http://img.test/politician.jpg"], tasks=[TASK_POLITICAL])
    assert set(resp.images[0].tasks) == {TASK_POLITICAL}
