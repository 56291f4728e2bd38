"""End-to-end: ``client.libraries`` against ``FakeTupuServer``, in process and over loopback.

Each test runs with the server's management answers plain (as the docs show) and signed
(the recognition envelope), and over the in-process transport and real loopback HTTP.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tupu_async._client import AsyncTupuClient
from tupu_async._exceptions import APIError, AuthenticationError, SignatureVerificationError
from tupu_async._libraries import Libraries, LibraryType
from tupu_async._retry import RetryPolicy
from tupu_async.testing import FakeTupuServer

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
NO_WAIT = RetryPolicy(max_retries=2, backoff_base=0.0, backoff_max=0.0)

pytestmark = pytest.mark.anyio


def png(seed: int) -> bytes:
    return PNG + seed.to_bytes(4, "big")


@pytest.fixture(params=["plain", "signed"])
def server(request: pytest.FixtureRequest) -> FakeTupuServer:
    return FakeTupuServer(sign_management_responses=request.param == "signed", qps_limit=None)


@pytest.fixture(params=["in-process", "loopback"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def connected(
    server: FakeTupuServer,
    mode: str,
    *,
    private_key: bytes | None = None,
    **kwargs: Any,
) -> AsyncIterator[AsyncTupuClient]:
    """A client for ``server`` with fresh credentials (or ``private_key``), over ``mode``."""
    sid, key = server.add_credentials("lib-tests")
    key = key if private_key is None else private_key
    kwargs.setdefault("tupu_public_key", server.public_key_pem)
    kwargs.setdefault("retry_policy", NO_WAIT)
    if mode == "in-process":
        http = httpx.AsyncClient(transport=server.transport())
        async with (
            http,
            AsyncTupuClient(
                sid, key, base_url="http://fake.tupu.test", http_client=http, **kwargs
            ) as client,
        ):
            yield client
    else:
        async with (
            server.serve() as base_url,
            AsyncTupuClient(sid, key, base_url=base_url, **kwargs) as client,
        ):
            yield client


def libraries_of(client: AsyncTupuClient) -> Libraries:
    libraries = client.libraries
    assert isinstance(libraries, Libraries)
    return libraries


async def test_the_whole_lifecycle(server: FakeTupuServer, mode: str) -> None:
    library_id = server.create_library("blocked logos", type=1, threshold=0.9)
    async with connected(server, mode) as client:
        libraries = libraries_of(client)
        (library,) = await libraries.search()
        assert (library.id, library.name, library.library_type) == (
            library_id,
            "blocked logos",
            LibraryType.WHITE,
        )
        assert library.threshold == pytest.approx(0.9)
        assert await libraries.search(name="no such library") == []

        added = await libraries.add_urls(
            library_id,
            {
                "a.jpg": "https://images.example.com/a.jpg",
                "broken.jpg": "https://images.example.com/download-fail.jpg",
            },
        )
        assert [(o.name, o.ok) for o in added] == [("a.jpg", True), ("broken.jpg", False)]
        assert added[0].url
        assert added[1].code == 14
        assert added[1].error

        uploaded = await libraries.add_images(library_id, [("b.png", png(1)), ("c.png", png(2))])
        assert all(o.ok for o in uploaded)

        listed = {image.name: image for image in await libraries.list_images(library_id)}
        assert sorted(listed) == ["a.jpg", "b.png", "c.png"]
        for image in listed.values():
            assert image.url
            assert image.updated_at is not None, image.updated_at_raw
            assert image.updated_at.tzinfo is not None
        (library,) = await libraries.search()
        assert library.images == 3

        deleted = await libraries.delete(library_id, ["a.jpg", "never-added.jpg"])
        assert [(o.name, o.ok) for o in deleted] == [("a.jpg", True), ("never-added.jpg", False)]
        assert deleted[1].code == 14
    assert sorted(server.library_images(library_id)) == ["b.png", "c.png"]


async def test_large_batches_are_chunked_within_the_limits(
    server: FakeTupuServer, mode: str
) -> None:
    library_id = server.create_library("big")
    urls = [(f"u{i:04d}.jpg", f"https://images.example.com/img-{i}.jpg") for i in range(2345)]
    contents = [(f"c{i:03d}.png", png(i)) for i in range(230)]
    async with connected(server, mode) as client:
        libraries = libraries_of(client)
        added = await libraries.add_urls(library_id, urls)
        uploaded = await libraries.add_images(library_id, contents)
        assert [o.name for o in added] == [name for name, _ in urls]
        assert [o.name for o in uploaded] == [name for name, _ in contents]
        assert all(o.ok for o in added + uploaded)
        assert len(await libraries.list_images(library_id)) == 2345 + 230
        requests_before = client.stats.requests
        gone = await libraries.delete(library_id, [name for name, _ in contents])
        assert all(o.ok for o in gone)
        assert client.stats.requests - requests_before == 3  # 230 names in chunks of 100
    assert len(server.library_images(library_id)) == 2345


async def test_requests_the_server_refuses_fail_their_items(
    server: FakeTupuServer, mode: str
) -> None:
    library_id = server.create_library("limits")
    async with connected(server, mode) as client:
        libraries = libraries_of(client)
        libraries.max_deletes_per_request = 150  # above the API's 100: the server says 400
        outcomes = await libraries.delete(library_id, [f"n{i}" for i in range(160)])
        assert len(outcomes) == 160
        assert all(not o.ok for o in outcomes)
        assert "1 to 100" in outcomes[0].error
        assert outcomes[-1].code == 14  # the last 10 went in a request of their own

        missing = await libraries.add_urls("no-such-library", {"x": "https://e.com/x.jpg"})
        assert not missing[0].ok
        assert "not found" in missing[0].error
        with pytest.raises(APIError, match="not found"):
            await libraries.list_images("no-such-library")


async def test_sync_a_folder(server: FakeTupuServer, mode: str, tmp_path: pathlib.Path) -> None:
    library_id = server.create_library("synced")
    for i in range(3):
        (tmp_path / f"img{i}.png").write_bytes(png(i))
    (tmp_path / "README.txt").write_text("not an image")
    async with connected(server, mode) as client:
        libraries = libraries_of(client)
        await libraries.add_urls(
            library_id, {"img0.png": "https://e.com/0.png", "stale.jpg": "https://e.com/stale.jpg"}
        )
        preview = await libraries.sync_library(library_id, tmp_path, dry_run=True)
        assert (preview.added, preview.deleted, preview.unchanged, preview.skipped) == (
            ["img1.png", "img2.png"],
            ["stale.jpg"],
            ["img0.png"],
            ["README.txt"],
        )
        assert sorted(server.library_images(library_id)) == ["img0.png", "stale.jpg"]

        report = await libraries.sync_library(library_id, tmp_path)
        assert report.ok
        assert (report.added, report.deleted) == (["img1.png", "img2.png"], ["stale.jpg"])
        assert sorted(server.library_images(library_id)) == ["img0.png", "img1.png", "img2.png"]


async def test_wrong_credentials_raise(server: FakeTupuServer, mode: str) -> None:
    library_id = server.create_library("private")
    _, other_key = server.add_credentials("someone-else")
    async with connected(server, mode, private_key=other_key) as client:
        libraries = libraries_of(client)
        with pytest.raises(AuthenticationError):
            await libraries.search()
        with pytest.raises(AuthenticationError):
            await libraries.add_urls(library_id, {"x": "https://e.com/x.jpg"})


async def test_signed_answers_are_verified(mode: str) -> None:
    server = FakeTupuServer(sign_management_responses=True, qps_limit=None)
    other = FakeTupuServer(qps_limit=None)
    async with connected(server, mode, tupu_public_key=other.public_key_pem) as client:
        with pytest.raises(SignatureVerificationError):
            await libraries_of(client).search()
