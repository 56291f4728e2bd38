"""TupuClient, the synchronous client: threads, coalescing, WSGI, loops, closing."""

from __future__ import annotations

import gc
import importlib.util
import inspect
import io
import pathlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import anyio
import pytest
from clients import png, sync_client

from tupu_async import (
    AsyncTupuClient,
    AuthenticationError,
    BlockingCallError,
    ClientClosedError,
    Hooks,
    Image,
    InvalidImageError,
    TupuClient,
)
from tupu_async.testing import FakeTupuServer

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def backend(anyio_backend: str) -> str:
    return anyio_backend


@pytest.fixture
def server() -> FakeTupuServer:
    return FakeTupuServer()


@pytest.fixture
def client(server: FakeTupuServer, backend: str) -> Iterator[TupuClient]:
    with sync_client(server, backend) as tupu:
        yield tupu


def test_the_constructor_takes_every_async_client_argument() -> None:
    ours = inspect.signature(TupuClient).parameters
    theirs = inspect.signature(AsyncTupuClient).parameters
    assert [(p.name, p.kind, p.default) for p in theirs.values()] == [
        (p.name, p.kind, p.default) for p in ours.values() if p.name != "backend"
    ]


def test_recognize_and_recognize_many_block_and_return_the_async_results(
    client: TupuClient, server: FakeTupuServer
) -> None:
    response = client.recognize([Image.from_bytes(png(1), name="a.png")], tags=["t"])
    many = client.recognize_many([png(i) for i in range(25)] + [b"not an image"])

    assert response.code == 0
    assert [(r.name, r.tag, r.ok) for r in response.images] == [("a.png", "t", True)]
    assert [r.index for r in many] == list(range(26))
    assert [r.ok for r in many] == [True] * 25 + [False]
    assert isinstance(many[-1].error, InvalidImageError)
    assert server.stats.images_per_request == [1, 10, 10, 5]


def test_a_generator_is_consumed_off_the_event_loop(client: TupuClient) -> None:
    caller = threading.get_ident()
    pulled_in: set[int] = set()

    def source() -> Iterator[bytes]:
        for i in range(12):
            pulled_in.add(threading.get_ident())
            yield png(i)

    results = client.recognize_many(source())

    assert len(results) == 12
    assert all(r.ok for r in results)
    assert caller not in pulled_in  # pulled by worker threads, not by the caller's
    loop_thread = next(t.ident for t in threading.enumerate() if t.name == "tupu-async-loop")
    assert loop_thread not in pulled_in  # ... nor by the event loop


def test_eight_threads_calling_recognize_one_share_one_request(
    server: FakeTupuServer, backend: str
) -> None:
    # Requests of at most 8 images and a linger far above any scheduling delay: the eight
    # calls fill one request exactly, whatever the load on the machine.
    with sync_client(server, backend, max_images_per_request=8, batch_linger=30.0) as tupu:
        barrier = threading.Barrier(8)

        def upload(i: int) -> tuple[str, bool]:
            barrier.wait()
            result = tupu.recognize_one(Image.from_bytes(png(i), name=f"{i}.png"), tag=str(i))
            return result.name, result.tag == str(i) and result.ok

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(upload, range(8)))

    assert outcomes == [(f"{i}.png", True) for i in range(8)]
    assert server.stats.images_per_request == [8]


def test_threads_share_one_client_and_its_stats(client: TupuClient) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: client.recognize_one(png(i)), range(40)))

    assert all(r.ok for r in results)
    assert client.stats.images == 40


def test_iter_recognize_is_a_plain_generator_in_completion_order(client: TupuClient) -> None:
    seen = list(client.iter_recognize(png(i) for i in range(23)))

    assert sorted(r.index for r in seen) == list(range(23))
    assert all(r.ok for r in seen)


def test_closing_iter_recognize_early_cancels_the_rest(
    server: FakeTupuServer, backend: str
) -> None:
    with sync_client(server, backend, max_in_flight=1, qps=5) as tupu:
        results = tupu.iter_recognize(png(i) for i in range(500))
        first = next(results)
        results.close()
        sent_at_close = len(server.stats.images_per_request)

        assert first.ok
        assert sent_at_close < 50
        # The client is still usable, and the abandoned run sends nothing more.
        assert tupu.recognize_one(png(999)).ok
    assert len(server.stats.images_per_request) <= sent_at_close + 2


def test_fatal_errors_raise_from_every_call(server: FakeTupuServer, backend: str) -> None:
    with sync_client(server, backend) as tupu:
        server.remove_secret_id("sync")
        with pytest.raises(AuthenticationError):
            tupu.recognize([png(1)])
        with pytest.raises(AuthenticationError):
            list(tupu.iter_recognize([png(i) for i in range(3)]))
        with pytest.raises(InvalidImageError):
            tupu.recognize_one(b"not an image")


def test_libraries_is_a_blocking_facade(client: TupuClient, server: FakeTupuServer) -> None:
    library_id = server.create_library("blocklist")

    found = client.libraries.search("block")
    added = client.libraries.add_urls(library_id, {"a": "http://img.test/a.jpg"})
    uploaded = client.libraries.add_images(library_id, [("b", png(1))])
    listed = client.libraries.list_images(library_id)
    deleted = client.libraries.delete(library_id, ["a", "missing"])

    assert [lib.id for lib in found] == [library_id]
    assert [(o.name, o.ok) for o in added + uploaded] == [("a", True), ("b", True)]
    assert sorted(image.name for image in listed) == ["a", "b"]
    assert [(o.name, o.ok) for o in deleted] == [("a", True), ("missing", False)]
    assert list(server.library_images(library_id)) == ["b"]


# -- event loops ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_refused_inside_a_running_event_loop(server: FakeTupuServer) -> None:
    sid, key = server.add_credentials("loop")
    with pytest.raises(BlockingCallError, match="AsyncTupuClient"):
        TupuClient(sid, key, base_url="http://fake.tupu.test")


def test_calls_from_inside_a_running_loop_are_refused_without_blocking(
    client: TupuClient, backend: str
) -> None:
    async def inside() -> None:
        with pytest.raises(BlockingCallError, match="worker thread"):
            client.recognize_one(png(1))
        with pytest.raises(BlockingCallError):
            next(client.iter_recognize([png(1)]))
        with pytest.raises(BlockingCallError):
            client.libraries.search()
        # The documented way out: the blocking call in a worker thread.
        result = await anyio.to_thread.run_sync(lambda: client.recognize_one(png(2)))
        assert result.ok

    anyio.run(inside, backend=backend)


def test_usable_from_a_thread_without_an_event_loop(client: TupuClient) -> None:
    box: list[bool] = []
    thread = threading.Thread(target=lambda: box.append(client.recognize_one(png(3)).ok))
    thread.start()
    thread.join()
    assert box == [True]


# -- closing ----------------------------------------------------------------------------------


def test_close_is_idempotent_and_later_calls_say_so(server: FakeTupuServer, backend: str) -> None:
    tupu = sync_client(server, backend)
    assert tupu.recognize_one(png(1)).ok
    tupu.close()
    tupu.close()

    assert tupu.closed
    with pytest.raises(ClientClosedError, match="create a new TupuClient"):
        tupu.recognize_one(png(1))
    with pytest.raises(ClientClosedError):
        list(tupu.iter_recognize([png(1)]))
    assert not [t for t in threading.enumerate() if t.name == "tupu-async-loop"]


def test_close_cancels_calls_blocked_in_other_threads(server: FakeTupuServer, backend: str) -> None:
    server.latency = 60.0
    tupu = sync_client(server, backend)
    errors: list[BaseException] = []
    started = threading.Event()

    def call() -> None:
        started.set()
        try:
            tupu.recognize_one(png(1))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    started.wait()
    while not server.stats.arrivals:  # the request is in flight at the server
        threading.Event().wait(0.005)
    tupu.close()
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], ClientClosedError)


def test_an_interrupted_caller_cancels_its_call_instead_of_leaving_it_running(
    server: FakeTupuServer, backend: str
) -> None:
    """Ctrl-C in a script must stop the requests it started (they are billed), not orphan them."""
    server.latency = 60.0
    cancelled = threading.Event()
    hooks = Hooks(on_cancel=lambda event: cancelled.set())
    tupu = sync_client(server, backend, hooks=hooks, max_in_flight=1)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def interrupt_once_in_flight() -> None:
        while not server.stats.arrivals:
            threading.Event().wait(0.005)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        threading.Thread(target=interrupt_once_in_flight, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            tupu.recognize_many([png(i) for i in range(100)])
        assert cancelled.wait(timeout=30)  # the request in flight was cancelled
        server.latency = 0.0
        assert tupu.recognize_one(png(1000)).ok
        assert len(server.stats.arrivals) == 2  # nothing more of the interrupted run
    finally:
        signal.signal(signal.SIGUSR1, previous)
        tupu.close()


def test_close_does_not_wait_for_a_blocked_generator(server: FakeTupuServer, backend: str) -> None:
    tupu = sync_client(server, backend)
    pulled = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def source() -> Iterator[bytes]:
        yield png(1)
        pulled.set()
        release.wait()  # a queue that never gets another item

    def call() -> None:
        try:
            tupu.recognize_many(source())
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        assert pulled.wait(timeout=30)
        closer = threading.Thread(target=tupu.close)
        closer.start()
        closer.join(timeout=30)
        caller.join(timeout=30)

        assert not closer.is_alive()
        assert not caller.is_alive()
        assert len(errors) == 1
        assert isinstance(errors[0], ClientClosedError)
    finally:
        release.set()


FORGETFUL_SCRIPT = """
import httpx
from tupu_async import TupuClient
from tupu_async.testing import FakeTupuServer

server = FakeTupuServer()
sid, key = server.add_credentials("forgetful")
client = TupuClient(
    sid,
    key,
    base_url="http://fake.tupu.test",
    tupu_public_key=server.public_key_pem,
    http_client=httpx.AsyncClient(transport=server.transport()),
    backend="BACKEND",
)
assert client.recognize_one("https://example.com/a.jpg").ok
print("done, never closed")
"""


def test_a_client_never_closed_does_not_hang_interpreter_exit(backend: str) -> None:
    """A module-level client in a script or WSGI app: exit used to wait on it forever."""
    script = FORGETFUL_SCRIPT.replace("BACKEND", backend)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done, never closed"


def test_a_client_dropped_without_close_stops_its_loop_thread(
    server: FakeTupuServer, backend: str
) -> None:
    tupu = sync_client(server, backend)
    assert tupu.recognize_one(png(1)).ok
    loop = next(t for t in threading.enumerate() if t.ident == tupu._loop_thread)
    del tupu
    gc.collect()
    loop.join(timeout=30)
    assert not loop.is_alive()


def test_construction_errors_leave_no_thread_behind(server: FakeTupuServer) -> None:
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(ValueError, match="qps"):
        sync_client(server, "asyncio", qps=0)
    assert {t.ident for t in threading.enumerate()} <= before


# -- a WSGI app -------------------------------------------------------------------------------


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_flask_example_coalesces_concurrent_uploads(
    server: FakeTupuServer, backend: str
) -> None:
    flask_app = load_example("flask_app")
    with sync_client(server, backend, max_images_per_request=6, batch_linger=30.0) as tupu:
        app = flask_app.create_app(tupu)
        barrier = threading.Barrier(6)

        def post(i: int) -> tuple[int, Any]:
            body = png(i) + (b"porn" if i == 0 else b"")
            barrier.wait()
            response = app.test_client().post(
                "/moderate", data={"file": (io.BytesIO(body), f"{i}.png")}
            )
            return response.status_code, response.get_json()

        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(post, range(6)))
        bad = app.test_client().post("/moderate", data={"file": (io.BytesIO(b"text"), "notes.txt")})
        missing = app.test_client().post("/moderate", data={})

    assert [status for status, _ in replies] == [200] * 6
    assert replies[0][1]["verdict"] == "block"
    assert {reply["name"] for _, reply in replies} == {f"{i}.png" for i in range(6)}
    assert server.stats.images_per_request == [6]
    assert bad.status_code == 400
    assert missing.status_code == 400


def test_an_abandoned_iteration_is_stopped_when_collected(
    server: FakeTupuServer, backend: str
) -> None:
    with sync_client(server, backend, max_in_flight=1, qps=5) as tupu:
        results = tupu.iter_recognize(png(i) for i in range(500))
        assert next(results).ok
        del results
        gc.collect()
        sent = len(server.stats.images_per_request)
        assert tupu.recognize_one(png(999)).ok
    assert sent < 50
    assert len(server.stats.images_per_request) <= sent + 2
