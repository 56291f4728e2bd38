"""URL download fallback (``url_fallback=True``) against the fake server.

The fake server answers code 14 for URLs containing ``download-fail``; the images behind
those URLs are served to the client by a real HTTP server on loopback, which the client
may reach only because the tests allow-list it (``fallback_allow_private``).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from loopback import LoopbackServer, Reply, files

import tupu_async._fallback
from tupu_async import Image, ImageError, ImageResult
from tupu_async._client import AsyncTupuClient
from tupu_async._constants import MAX_IMAGE_BYTES
from tupu_async._safe_fetch import MAX_CONCURRENT_DOWNLOADS, UNREACHABLE
from tupu_async.testing import FakeTupuServer

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
LOOPBACK = ["127.0.0.1"]


class ImageHost:
    """The images behind the test URLs, by path, on a loopback server."""

    def __init__(self, server: LoopbackServer) -> None:
        self.files: dict[str, bytes] = {}
        self.server = server
        server.route = files(self.files)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def downloads(self) -> list[str]:
        return [hit.path for hit in self.server.hits]


@pytest.fixture
def server() -> FakeTupuServer:
    return FakeTupuServer(qps_limit=None)


@pytest.fixture
def host() -> Iterator[ImageHost]:
    with LoopbackServer().running() as loopback:
        yield ImageHost(loopback)


@contextlib.asynccontextmanager
async def fallback_client(
    server: FakeTupuServer, host: ImageHost, **options: object
) -> AsyncIterator[AsyncTupuClient]:
    secret_id, key = server.add_credentials()
    if options.get("url_fallback"):
        options.setdefault("fallback_allow_private", LOOPBACK)
    http = httpx.AsyncClient(mounts={"http://fake": server.transport()})
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


@pytest.mark.anyio
async def test_undownloadable_url_is_resubmitted_as_content(
    server: FakeTupuServer, host: ImageHost
) -> None:
    host.files["/download-fail/cat.png"] = PNG
    urls = [f"{host.url}/a.jpg", f"{host.url}/download-fail/cat.png", f"{host.url}/b.jpg"]

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
        urls.append(Image.from_url(f"{host.url}/download-fail/{i}.png", tag=f"t{i}"))

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
    url = f"{host.url}/download-fail/gone.jpg"  # the image host answers 404 too

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
        (result,) = await client.recognize_many([f"{host.url}/download-fail/page.jpg"])

    assert result.code == 14
    assert "not an image format" in result.message


@pytest.mark.anyio
async def test_download_over_the_cap_is_refused(server: FakeTupuServer, host: ImageHost) -> None:
    host.files["/download-fail/huge.png"] = PNG + b"\x00" * MAX_IMAGE_BYTES

    async with fallback_client(server, host, url_fallback=True) as client:
        (result,) = await client.recognize_many([f"{host.url}/download-fail/huge.png"])

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
        (result,) = await client.recognize_many([f"{host.url}/download-fail/big.png"])

    assert result.ok
    assert result.fallback
    assert [request.kind for request in server.requests] == ["url", "file"]


@pytest.mark.anyio
async def test_without_url_fallback_code_14_stays_and_nothing_is_downloaded(
    server: FakeTupuServer, host: ImageHost
) -> None:
    host.files["/download-fail/cat.png"] = PNG

    async with fallback_client(server, host) as client:
        (result,) = await client.recognize_many([f"{host.url}/download-fail/cat.png"])

    assert result.code == 14
    assert not result.fallback
    assert host.downloads == []


@pytest.mark.anyio
async def test_recognize_one_also_falls_back(server: FakeTupuServer, host: ImageHost) -> None:
    host.files["/download-fail/one.png"] = PNG

    async with fallback_client(server, host, url_fallback=True) as client:
        result = await client.recognize_one(f"{host.url}/download-fail/one.png", tag="x")

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
            await client.recognize_many([f"{host.url}/download-fail/cat.png"])

    records = [r for r in caplog.records if "url_fallback" in r.getMessage()]
    assert records
    assert records[0].levelno == logging.INFO
    assert "resubmitting 1 as content" in records[0].getMessage()


# ------------------------------------------------------- the whole stack over real HTTP


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_fallback_over_loopback_http(
    server: FakeTupuServer, host: ImageHost, anyio_backend: str
) -> None:
    host.files["/download-fail/cat.png"] = PNG
    secret_id, key = server.add_credentials()
    with server.serve_in_thread() as base_url:
        async with AsyncTupuClient(
            secret_id,
            key,
            base_url=base_url,
            tupu_public_key=server.public_key_pem,
            url_fallback=True,
            fallback_allow_private=LOOPBACK,
        ) as client:
            results = await client.recognize_many(
                [
                    f"{host.url}/ok.jpg",
                    f"{host.url}/download-fail/cat.png",
                    f"{host.url}/download-fail/x.png",
                ]
            )

    ok, fallback, missing = results
    assert ok.ok
    assert not ok.fallback
    assert fallback.ok
    assert fallback.fallback
    assert missing.code == 14
    assert "HTTP 404" in missing.message


# ------------------------------------------------------------------------------- SSRF


@pytest.mark.anyio
async def test_without_the_allow_list_a_loopback_url_is_never_downloaded(
    server: FakeTupuServer, host: ImageHost, caplog: pytest.LogCaptureFixture
) -> None:
    host.files["/download-fail/admin.png"] = PNG

    with caplog.at_level(logging.WARNING, logger="tupu_async"):
        async with fallback_client(
            server, host, url_fallback=True, fallback_allow_private=()
        ) as client:
            (result,) = await client.recognize_many([f"{host.url}/download-fail/admin.png"])

    assert host.downloads == []
    assert result.code == 14
    assert not result.fallback
    assert result.message.endswith(f"the client's fallback download failed too: {UNREACHABLE}")
    assert len(server.requests) == 1
    warning = next(r.getMessage() for r in caplog.records if "refused" in r.getMessage())
    assert "loopback" in warning
    assert "fallback_allow_private" in warning
    assert "/download-fail/admin.png" not in warning  # URLs may carry secrets; hosts only


@pytest.mark.anyio
async def test_the_apps_headers_cookies_and_auth_never_reach_the_image_host(
    server: FakeTupuServer, host: ImageHost
) -> None:
    host.files["/download-fail/cat.png"] = PNG
    secret_id, key = server.add_credentials()
    http = httpx.AsyncClient(
        mounts={"http://fake": server.transport()},
        headers={"Authorization": "Bearer app-secret", "X-Api-Key": "app-key"},
        cookies={"session": "app-session"},
        auth=("app-user", "app-password"),
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
            fallback_allow_private=LOOPBACK,
        ) as client,
    ):
        (result,) = await client.recognize_many([f"{host.url}/download-fail/cat.png"])

    assert result.fallback
    (hit,) = host.server.hits
    assert not {"authorization", "x-api-key", "cookie"} & set(hit.headers)
    assert hit.headers["accept-encoding"] == "identity"
    assert "app-" not in repr(hit.headers)


@pytest.mark.anyio
async def test_resubmission_counts_once_per_downloaded_image(
    server: FakeTupuServer, host: ImageHost
) -> None:
    host.files["/download-fail/a.png"] = PNG
    urls = [f"{host.url}/download-fail/a.png", f"{host.url}/download-fail/missing.png"]

    async with fallback_client(server, host, url_fallback=True) as client:
        results = await client.recognize_many(urls)
        stats = client.stats

    assert [r.fallback for r in results] == [True, False]
    assert stats.fallbacks == 1


def test_allow_list_without_url_fallback_is_a_mistake_said_plainly() -> None:
    server = FakeTupuServer()
    secret_id, key = server.add_credentials()
    with pytest.raises(ValueError, match="no effect without url_fallback=True"):
        AsyncTupuClient(secret_id, key, fallback_allow_private=["10.0.0.0/8"])
    with pytest.raises(ValueError, match="not a network"):
        AsyncTupuClient(secret_id, key, url_fallback=True, fallback_allow_private=["a b"])


def test_the_fallback_does_not_know_the_client() -> None:
    tree = ast.parse(inspect.getsource(tupu_async._fallback))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not any("_client" in name for name in imported)
    assert "AsyncTupuClient" not in inspect.getsource(tupu_async._fallback)


@pytest.mark.anyio
async def test_the_clients_fallback_downloads_have_their_own_bound(
    server: FakeTupuServer,
) -> None:
    lock = threading.Condition()
    active = peak = 0
    release = threading.Event()

    def route(path: str) -> Reply:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            lock.notify_all()
        release.wait(timeout=30)
        with lock:
            active -= 1
        return Reply(200, PNG)

    def wait_until_full() -> None:
        with lock:
            lock.wait_for(lambda: active >= MAX_CONCURRENT_DOWNLOADS, timeout=30)

    with LoopbackServer(route).running() as images:
        host = ImageHost(images)
        images.route = route  # after ImageHost, which installs its file route
        urls = [f"{images.url}/download-fail/{i}.png" for i in range(20)]
        done: list[list[ImageResult]] = []
        async with (
            fallback_client(server, host, url_fallback=True) as client,
            anyio.create_task_group() as tg,
        ):

            async def run() -> None:
                done.append(await client.recognize_many(urls))

            tg.start_soon(run)
            await anyio.to_thread.run_sync(wait_until_full)
            release.set()

    assert peak == MAX_CONCURRENT_DOWNLOADS
    assert all(r.ok and r.fallback for r in done[0])
