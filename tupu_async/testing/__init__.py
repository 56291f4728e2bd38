"""A faithful fake of the Tupu API for tests, benchmarks and demos: ``tupu_async.testing``.

In-process (no sockets; asyncio or trio)::

    server = FakeTupuServer()
    secret_id, private_key = server.add_credentials()
    async with AsyncTupuClient(
        secret_id=secret_id,
        private_key=private_key,
        tupu_public_key=server.public_key_pem,
        http_client=httpx.AsyncClient(transport=server.transport(), base_url="http://fake"),
    ) as client:
        ...

Over loopback HTTP: ``async with server.serve() as base_url``, ``with
server.serve_in_thread() as base_url``, or in a separate process with
``spawn_fake_server()`` (``python -m tupu_async.testing serve``).

Magic substrings in an image's content or URL force outcomes (``MAGIC_OUTCOMES``): for
instance ``b"porn"`` is blocked, ``b"sexy"`` sent to review, a URL containing
``download-fail`` fails with code 14 (the whole table: ``docs/fake-server.md``). Faults
are injected at random (``FaultConfig``) or in order (``server.inject("http_500")``).
"""

from __future__ import annotations

from .._public import rehome as _rehome
from ._faults import ALL_FAULT_KINDS, FaultConfig
from ._jsontext import JSON_STYLES, JsonStyle, js_number_text
from ._library import FakeLibrary, StoredImage
from ._process import FakeServerProcess, spawn_fake_server, split_cores
from ._redis import DelayProxy, RedisServer
from ._server import DEFAULT_TASKS, DOWNLOAD_FAIL_WORD, FakeTupuServer
from ._stats import FakeServerStats, RecordedRequest, max_arrivals_in_window
from ._transport import FakeServerTransport
from ._verdicts import MAGIC_OUTCOMES

__all__ = [
    "ALL_FAULT_KINDS",
    "DEFAULT_TASKS",
    "DOWNLOAD_FAIL_WORD",
    "JSON_STYLES",
    "MAGIC_OUTCOMES",
    "DelayProxy",
    "FakeLibrary",
    "FakeServerProcess",
    "FakeServerStats",
    "FakeServerTransport",
    "FakeTupuServer",
    "FaultConfig",
    "JsonStyle",
    "RecordedRequest",
    "RedisServer",
    "StoredImage",
    "js_number_text",
    "max_arrivals_in_window",
    "spawn_fake_server",
    "split_cores",
]

_rehome(globals(), __all__, __name__)  # reprs and errors say tupu_async.testing.X
