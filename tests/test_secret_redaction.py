"""The secret id stays out of logs and exceptions, whoever writes them.

The secret id is part of every API path, so httpx's own request log line and any error
body that echoes the path (a gateway's JSON error page) would carry it.
"""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest
from clients import PNG_1x1

from tupu_async import AsyncTupuClient, RetryPolicy, TupuError
from tupu_async.testing import FakeTupuServer

SECRET = "sid-0123456789abcdef"
ONE_RETRY = RetryPolicy(max_retries=1, backoff_base=0.001, backoff_max=0.001)


def _client(server: FakeTupuServer, answer: httpx.Response | None) -> AsyncTupuClient:
    sid, key = server.add_credentials(SECRET)
    transport: httpx.AsyncBaseTransport = (
        server.transport() if answer is None else httpx.MockTransport(lambda request: answer)
    )
    return AsyncTupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        tupu_public_key=server.public_key_pem,
        http_client=httpx.AsyncClient(transport=transport),
        retry_policy=ONE_RETRY,
    )


@pytest.mark.anyio
async def test_httpx_request_log_lines_do_not_show_the_secret_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with _client(FakeTupuServer(), None) as client:
        await client.recognize_one(PNG_1x1)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("httpx")]
    assert any("/v3/recognition/<secretId>" in line for line in lines)
    assert not any(SECRET in line for line in lines)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [404, 500, 200])
async def test_an_error_body_echoing_the_path_does_not_leak_it(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    # A Spring-style gateway error page echoes the request path, secret id included.
    body = f'{{"status": {status}, "path": "/v3/recognition/{SECRET}"}}'
    caplog.set_level(logging.DEBUG)
    async with _client(FakeTupuServer(), httpx.Response(status, text=body)) as client:
        [result] = await client.recognize_many([PNG_1x1])
        try:  # an unsigned 200 without the list is an empty library, not an error
            await client.libraries.list_images("lib")
        except TupuError as exc:
            shown = "".join(traceback.format_exception(exc))
        else:
            assert status == 200
            shown = ""
    assert isinstance(result.error, TupuError)
    shown += "".join(traceback.format_exception(result.error))
    shown += repr(result) + str(getattr(result.error, "body_excerpt", ""))
    assert "<secretId>" in shown
    assert SECRET not in shown
    assert not any(SECRET in r.getMessage() for r in caplog.records)


def test_only_whole_tokens_of_real_length_are_redacted() -> None:
    from tupu_async._redaction import redact, register_secret

    register_secret("s")  # a test id: never registered, or every "s" would go
    register_secret("abcdef0123456789")
    assert redact("5 s, abcdef0123456789x, /v3/recognition/abcdef0123456789?x") == (
        "5 s, abcdef0123456789x, /v3/recognition/<secretId>?x"
    )
