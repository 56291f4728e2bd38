"""URL download fallback (``url_fallback=True``) against the fake server.

The fake server answers code 14 for URLs containing ``download-fail``; the images behind
those URLs are served to the client by an httpx ``MockTransport`` mounted for their host
(and, in one test, by a real HTTP server on loopback).
"""

from __future__ import annotations

import contextlib
import http.server
import io
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest

from tupu_async import Image, ImageError, ImageResult, RetryPolicy, ServerError
from tupu_async._client import AsyncTupuClient
from tupu_async._constants import MAX_IMAGE_BYTES
from tupu_async._fallback import DownloadError, download_capped
from tupu_async.testing import FakeTupuServer

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
IMAGES = "http://images.test"


class ImageHost:
    """The images behind the test URLs, by path; counts the downloads."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.downloads: list[str] = []
        self.delay = 0.0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.downloads.append(request.url.path)
        if self.delay:
            await anyio.sleep(self.delay)
        body = self.files.get(request.url.path)
        if body is None:
            return httpx.Response(404, text="not found")
        return httpx.Response(200, content=body)


@pytest.fixture
def server() -> FakeTupuServer:
    return FakeTupuServer(qps_limit=None)


@pytest.fixture
def host() -> ImageHost:
    return ImageHost()


@contextlib.asynccontextmanager
async def fallback_client(
    server: FakeTupuServer, host: ImageHost, **options: object
) -> AsyncIterator[AsyncTupuClient]:
    secret_id, key = server.add_credentials()
    http = httpx.AsyncClient(
        mounts={
            "http://fake": server.transport(),
            IMAGES: httpx.MockTransport(host.handle),
        }
    )
    async with (
        http,
        AsyncTupuClient(
            secret_id,
            key,
            base_url="http://fake",
            tupu_public_key=server.public_key_pem,
            http_client=http,
            **options,  # type: ignore[arg-type]
        ) as client,
    ):
        yield client


def _by_name(results: list[ImageResult]) -> dict[str, ImageResult]:
    return {r.name: r for r in results}


@pytest.mark.anyio
async def test_undownloadable_url_is_resubmitted_as_content(
    server: FakeTupuServer, host: ImageHost
) -> None:
    host.files["/download-fail/cat.png"] = PNG
    urls = [f"{IMAGES}/a.jpg", f"{IMAGES}/download-fail/cat.png", f"{IMAGES}/b.jpg"]

    async with fallback_client(server, host, url_fallback=True) as client:
        results = await client.recognize_many(urls)
        stats = client.stats

    assert [r.name for r in results] == urls
    assert [r.index for r in results] == [0, 1, 2]
    assert all(r.ok for r in results)
    assert [r.fallback for r in results] == [False, True, False]
    assert results[1].to_dict()["fallback"] is True
    assert results[1].tasks  # a real recognition result, from the content upload
    assert host.downloads == ["/download-fail/cat.png"]
    assert stats.fallbacks == 1
    assert [request.kind for request in server.requests] == ["url", "file"]
    assert server.requests[1].tags is None


@pytest.mark.anyio
async def test_all_fallbacks_of_a_batch_share_one_content_request(
    server: FakeTupuServer, host: ImageHost
) -> None:
    urls = []
    for i in range(6):
        host.files[f"/download-fail/{i}.png"] = PNG
        urls.append(Image.from_url(f"{IMAGES}/download-fail/{i}.png", tag=f"t{i}"))

    async with fallback_client(server, host, url_fallback=True) as client:
        results = await client.recognize_many(urls)

    assert all(r.ok and r.fallback for r in results)
    assert [r.tag for r in results] == [f"t{i}" for i in range(6)]
    assert len(server.requests) == 2  # the URL request and ONE content request
    assert server.requests[1].kind == "file"
    assert len(server.requests[1].names) == 6
    assert server.requests[1].tags == [f"t{i}" for i in range(6)]


@pytest.mark.anyio
async def test_a_url_the_client_cannot_download_keeps_code_14_with_both_reasons(
    server: FakeTupuServer, host: ImageHost
) -> None:
    url = f"{IMAGES}/download-fail/gone.jpg"  # the image host answers 404 too

    async with fallback_client(server, host, url_fallback=True) as client:
        (result,) = await client.recognize_many([url])

    assert not result.ok
    assert not result.fallback
    assert result.code == 14
    assert isinstance(result.error, ImageError)
    assert "fallback download failed too: HTTP 404" in result.message
    assert "HTTP 404" in str(result.error)
    assert len(server.requests) == 1  # nothing was resubmitted


@pytest.mark.anyio
async def test_download_that_is_not_an_image_is_not_resubmitted(
    server: FakeTupuServer, host: ImageHost
) -> None:
    host.files["/download-fail/page.jpg"] = b"<html>login required</html>"

    async with fallback_client(server, host, url_fallback=True) as client:
        (result,) = await client.recognize_many([f"{IMAGES}/download-fail/page.jpg"])

    assert result.code == 14
    assert "not an image format" in result.message


@pytest.mark.anyio
async def test_download_over_the_cap_is_refused(server: FakeTupuServer, host: ImageHost) -> None:
    host.files["/download-fail/huge.png"] = PNG + b"\x00" * MAX_IMAGE_BYTES

    async with fallback_client(server, host, url_fallback=True) as client:
        (result,) = await client.recognize_many([f"{IMAGES}/download-fail/huge.png"])

    assert result.code == 14
    assert "cap" in result.message


@pytest.mark.anyio
async def test_with_resize_a_large_download_is_shrunk_and_resubmitted(
    server: FakeTupuServer, host: ImageHost
) -> None:
    from PIL import Image as PILImage

    big = io.BytesIO()
    PILImage.frombytes("RGB", (1100, 1000), os.urandom(1100 * 1000 * 3)).save(big, "PNG")
    assert len(big.getvalue()) > MAX_IMAGE_BYTES
    host.files["/download-fail/big.png"] = big.getvalue()

    async with fallback_client(server, host, url_fallback=True, resize=True) as client:
        (result,) = await client.recognize_many([f"{IMAGES}/download-fail/big.png"])

    assert result.ok
    assert result.fallback
    assert [request.kind for request in server.requests] == ["url", "file"]


@pytest.mark.anyio
async def test_without_url_fallback_code_14_stays_and_nothing_is_downloaded(
    server: FakeTupuServer, host: ImageHost
) -> None:
    host.files["/download-fail/cat.png"] = PNG

    async with fallback_client(server, host) as client:
        (result,) = await client.recognize_many([f"{IMAGES}/download-fail/cat.png"])

    assert result.code == 14
    assert not result.fallback
    assert host.downloads == []


@pytest.mark.anyio
async def test_recognize_one_also_falls_back(server: FakeTupuServer, host: ImageHost) -> None:
    host.files["/download-fail/one.png"] = PNG

    async with fallback_client(server, host, url_fallback=True) as client:
        result = await client.recognize_one(f"{IMAGES}/download-fail/one.png", tag="x")

    assert result.ok
    assert result.fallback
    assert (result.index, result.tag) == (0, "x")


@pytest.mark.anyio
async def test_fallback_is_logged_at_info(
    server: FakeTupuServer, host: ImageHost, caplog: pytest.LogCaptureFixture
) -> None:
    host.files["/download-fail/cat.png"] = PNG

    with caplog.at_level(logging.INFO, logger="tupu_async"):
        async with fallback_client(server, host, url_fallback=True) as client:
            await client.recognize_many([f"{IMAGES}/download-fail/cat.png"])

    records = [r for r in caplog.records if "url_fallback" in r.getMessage()]
    assert records
    assert records[0].levelno == logging.INFO
    assert "resubmitting 1 as content" in records[0].getMessage()


@pytest.mark.anyio
async def test_download_capped_times_out(host: ImageHost) -> None:
    host.files["/slow.png"] = PNG
    host.delay = 5.0
    async with httpx.AsyncClient(transport=httpx.MockTransport(host.handle)) as http:
        with pytest.raises(DownloadError, match=r"timed out after 0\.05s"):
            await download_capped(http, f"{IMAGES}/slow.png", max_bytes=1000, max_seconds=0.05)


@pytest.mark.anyio
async def test_download_capped_stops_reading_at_the_cap() -> None:
    chunks_sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(100):
            chunks_sent += 1
            yield b"x" * 1000

    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream())  # no Content-Length: chunked

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        with pytest.raises(DownloadError, match="more than the 2,500-byte cap"):
            await download_capped(http, f"{IMAGES}/endless", max_bytes=2500)
    assert chunks_sent < 100


# ---------------------------------------------------------------- over real loopback HTTP


@contextlib.contextmanager
def loopback_image_host(files: dict[str, bytes]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_fallback_over_loopback_http(server: FakeTupuServer, anyio_backend: str) -> None:
    secret_id, key = server.add_credentials()
    with (
        loopback_image_host({"/download-fail/cat.png": PNG}) as images,
        server.serve_in_thread() as base_url,
    ):
        async with AsyncTupuClient(
            secret_id,
            key,
            base_url=base_url,
            tupu_public_key=server.public_key_pem,
            url_fallback=True,
        ) as client:
            results = await client.recognize_many(
                [f"{images}/ok.jpg", f"{images}/download-fail/cat.png", f"{images}/404/x.png"]
            )

    ok, fallback, missing = results
    assert ok.ok
    assert not ok.fallback
    assert fallback.ok
    assert fallback.fallback
    assert missing.code == 14
    assert "HTTP 404" in missing.message


@pytest.mark.anyio
async def test_a_download_that_cannot_connect_keeps_code_14_and_says_why(
    server: FakeTupuServer,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    secret_id, key = server.add_credentials()
    url = f"{IMAGES}/download-fail/unreachable.jpg"
    http = httpx.AsyncClient(
        mounts={"http://fake": server.transport(), IMAGES: httpx.MockTransport(refuse)}
    )
    async with (
        http,
        AsyncTupuClient(
            secret_id,
            key,
            base_url="http://fake",
            tupu_public_key=server.public_key_pem,
            http_client=http,
            url_fallback=True,
        ) as client,
    ):
        (result,) = await client.recognize_many([url])

    assert result.code == 14
    assert isinstance(result.error, ImageError)
    assert "fallback download failed too: ConnectError: connection refused" in result.message
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_a_fallback_upload_that_keeps_failing_fails_only_its_images(
    server: FakeTupuServer, host: ImageHost
) -> None:
    host.files["/download-fail/cat.png"] = PNG
    urls = [f"{IMAGES}/ok.jpg", f"{IMAGES}/download-fail/cat.png"]
    served = host.handle

    async def serve_then_break_the_service(request: httpx.Request) -> httpx.Response:
        server.inject(*["http_502"] * 5)  # every attempt of the upload that follows
        return await served(request)

    host.handle = serve_then_break_the_service  # type: ignore[method-assign]
    policy = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002)
    async with fallback_client(server, host, url_fallback=True, retry_policy=policy) as client:
        results = await client.recognize_many(urls)

    assert [r.name for r in results] == urls  # nothing lost, nothing duplicated
    assert results[0].ok
    failed = results[1]
    assert not failed.ok
    assert failed.fallback
    assert isinstance(failed.error, ServerError)
    assert failed.message.startswith("the client's fallback upload failed: ")
    assert len(server.pending_faults) == 5 - 3  # the upload was tried 1 + max_retries times
