"""How to test YOUR app with ``tupu_async.testing.FakeTupuServer`` (run it with pytest).

The fake speaks the real protocol (signed requests, signed responses, QPS limit, per-image
codes), in-process through an httpx transport, so these tests need no account, no network
and no mocks of tupu-async itself. Magic words in an image's URL or content force verdicts
(``porn`` blocks, ``sexy`` goes to review, ``download-fail`` gives code 14), and
``server.inject(...)`` queues faults for the next requests.

    pip install -e '.[examples]'     # once, from a clone, in a venv
    pytest examples/testing_your_app.py
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from tupu_async import AsyncTupuClient, SignatureVerificationError
from tupu_async.testing import FakeTupuServer

# ------------------------------------------------------------------ the code under test


async def moderate_urls(client: AsyncTupuClient, urls: Sequence[str]) -> dict[str, str]:
    """Your app's logic: decide "publish", "hide", "human" or "retry" for each URL."""
    decisions: dict[str, str] = {}
    for result in await client.recognize_many(urls):
        if not result.ok:
            decisions[result.name] = "retry"
        elif result.suggestion == 1:
            decisions[result.name] = "hide"
        elif result.suggestion == 2:
            decisions[result.name] = "human"
        else:
            decisions[result.name] = "publish"
    return decisions


# ------------------------------------------------------------------------ the fixtures


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # your app's event loop ("trio" works too)


@pytest.fixture
def fake_tupu() -> FakeTupuServer:
    return FakeTupuServer()


@pytest.fixture
async def client(fake_tupu: FakeTupuServer) -> AsyncIterator[AsyncTupuClient]:
    secret_id, private_key = fake_tupu.add_credentials()
    async with (
        httpx.AsyncClient(transport=fake_tupu.transport(), base_url="http://fake-tupu") as http,
        AsyncTupuClient(
            secret_id=secret_id,
            private_key=private_key,
            base_url="http://fake-tupu",
            tupu_public_key=fake_tupu.public_key_pem,  # the fake signs with its own key
            http_client=http,
        ) as client,
    ):
        yield client


# --------------------------------------------------------------------------- the tests


@pytest.mark.anyio
async def test_clean_images_are_published(client: AsyncTupuClient) -> None:
    decisions = await moderate_urls(client, ["https://cdn.example/cat.jpg"])

    assert decisions == {"https://cdn.example/cat.jpg": "publish"}


@pytest.mark.anyio
async def test_porn_is_hidden_and_borderline_goes_to_a_human(client: AsyncTupuClient) -> None:
    decisions = await moderate_urls(
        client, ["https://cdn.example/porn/1.jpg", "https://cdn.example/sexy/2.jpg"]
    )

    assert decisions == {
        "https://cdn.example/porn/1.jpg": "hide",
        "https://cdn.example/sexy/2.jpg": "human",
    }


@pytest.mark.anyio
async def test_an_image_the_service_cannot_download_is_retried_later(
    client: AsyncTupuClient,
) -> None:
    decisions = await moderate_urls(
        client, ["https://cdn.example/download-fail/3.jpg", "https://cdn.example/4.jpg"]
    )

    assert decisions["https://cdn.example/download-fail/3.jpg"] == "retry"
    assert decisions["https://cdn.example/4.jpg"] == "publish"


@pytest.mark.anyio
async def test_transient_server_errors_are_retried_by_the_client(
    client: AsyncTupuClient, fake_tupu: FakeTupuServer
) -> None:
    fake_tupu.inject("http_502", "code_100")  # the next two requests fail

    decisions = await moderate_urls(client, ["https://cdn.example/5.jpg"])

    assert decisions["https://cdn.example/5.jpg"] != "retry"  # recognised in the end
    assert fake_tupu.stats.total_requests == 3  # two failures, then the success


@pytest.mark.anyio
async def test_a_forged_response_is_never_trusted(
    client: AsyncTupuClient, fake_tupu: FakeTupuServer
) -> None:
    fake_tupu.inject("bad_signature")

    with pytest.raises(SignatureVerificationError):
        await moderate_urls(client, ["https://cdn.example/6.jpg"])


@pytest.mark.anyio
async def test_many_urls_are_packed_ten_per_request(
    client: AsyncTupuClient, fake_tupu: FakeTupuServer
) -> None:
    urls = [f"https://cdn.example/{i}.jpg" for i in range(95)]

    decisions = await moderate_urls(client, urls)

    assert len(decisions) == 95
    assert fake_tupu.stats.total_requests == 10
