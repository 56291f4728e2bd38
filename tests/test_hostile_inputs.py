"""Hostile image inputs, tried as an attacker (or an unlucky crawler) would.

A ``str`` is only ever a URL; files must be regular files, read within size and time
bounds; every odd item becomes its own error result and the run completes with one
result per input and no exception but a ``TupuError``.
"""

from __future__ import annotations

import array
import io
import os
import pathlib
import stat
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from clients import FAST_RETRIES, PNG_1x1, in_process_client, png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from tupu_async import AsyncTupuClient, Image, InvalidImageError, TupuError
from tupu_async import _images as images_module
from tupu_async._images import load_image, to_image
from tupu_async._requests import Transport
from tupu_async._urls import MAX_URL_LENGTH, URL_RULE, check_image_url
from tupu_async.testing import FakeTupuServer

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs and /dev/zero are POSIX")


def _frames(fmt: str, count: int = 3) -> bytes:
    frames = [PILImage.new("RGB", (8, 8), (i * 70, 20, 200 - i * 50)) for i in range(count)]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=40, loop=0)
    return buffer.getvalue()


def _static(fmt: str) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8), (10, 200, 30)).save(buffer, fmt)
    return buffer.getvalue()


class Files:
    """A folder of special files: good, non-UTF-8 named, FIFO, huge sparse, text."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.good = root / "good.png"
        self.good.write_bytes(png(1))
        raw = os.path.join(os.fsencode(root), b"\xff\xfe-latin1-\xe9.png")
        with open(raw, "wb") as handle:
            handle.write(png(2))
        self.non_utf8 = pathlib.Path(os.fsdecode(raw))
        self.fifo = root / "x.jpg"
        os.mkfifo(self.fifo)
        self.huge = root / "huge.jpg"
        with open(self.huge, "wb") as handle:
            handle.truncate(3 * 1024**3)  # sparse: 3 GiB that cost no disk
        self.text = root / "notes.png"
        self.text.write_bytes(b"secret text, not an image")
        self.missing = root / "missing.jpg"

    def paths(self) -> list[pathlib.Path]:
        return [
            self.good,
            self.non_utf8,
            self.fifo,
            self.huge,
            self.text,
            self.missing,
            self.root,
            pathlib.Path("/dev/zero"),
            pathlib.Path("/dev/null"),
        ]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("hostile"))


def _check_run(items: list[Any], results: list[Any]) -> None:
    assert [r.index for r in results] == list(range(len(items)))
    for result in results:
        assert result.ok or isinstance(result.error, TupuError)
        result.name.encode("utf-8")  # printable by any sink: no unpaired surrogates
        if result.tag is not None:
            result.tag.encode("utf-8")


# --- the items the issue reproduced ---------------------------------------------------------


@pytest.mark.anyio
async def test_one_odd_item_never_aborts_the_run(files: Files) -> None:
    server = FakeTupuServer(qps_limit=None)
    renamed = Image.from_bytes(png(3), name="fine.png")
    renamed.name = 7  # type: ignore[assignment]
    numbered = Image.from_bytes(png(4))
    numbered.sequence_id = 12345  # type: ignore[assignment]
    items: list[Any] = [
        "http://images.test/ok-1.jpg",
        files.non_utf8,
        png(5),  # its call-level tag has a lone surrogate
        Image.from_url("http://images.test/ok-2.jpg"),
        renamed,
        numbered,
        "http://images.test/a b.jpg",
        "http://images.test/\x00.jpg",
        "http://images.test/" + "x" * (5 * 1024 * 1024),
        None,
        str(files.good),
        files.fifo,
        pathlib.Path("/dev/zero"),
        png(6),
    ]
    tags = [""] * 2 + ["\udcff"] + [""] * (len(items) - 3)
    started = time.monotonic()
    async with in_process_client(server) as client:
        results = await client.recognize_many(items, tags=tags)
    assert time.monotonic() - started < 5
    _check_run(items, results)
    ok = {r.index for r in results if r.ok}
    assert ok == {0, 1, 3, 13}
    assert "unpaired surrogate" in str(results[2].error)
    assert results[1].name == os.fsencode(files.non_utf8).decode("utf-8", "backslashreplace")
    assert "\\xff\\xfe-latin1-\\xe9.png" in results[1].name
    assert "name must be a str" in str(results[4].error)
    assert "sequence_id must be a str" in str(results[5].error)
    for index in (6, 7, 8):
        assert URL_RULE in str(results[index].error)
        assert len(str(results[index].error)) < 1000
    assert "NoneType" in str(results[9].error)
    assert "pathlib.Path" in str(results[10].error)
    assert "FIFO" in str(results[11].error)
    assert "device" in str(results[12].error)


def test_a_tag_with_a_lone_surrogate_fails_only_its_image() -> None:
    prepared = load_image(Image.from_bytes(png(1)), 0, "fine")
    assert prepared.tag == "fine"
    with pytest.raises(InvalidImageError, match="unpaired surrogate"):
        load_image(Image.from_bytes(png(1)), 0, "bad \ud800")


def test_a_huge_tag_fails_only_its_image() -> None:
    with pytest.raises(InvalidImageError, match="over the 8192 allowed"):
        load_image(Image.from_bytes(png(1)), 0, "t" * (5 * 1024 * 1024))
    with pytest.raises(InvalidImageError, match="sequence_id is 8,193 characters"):
        Image.from_bytes(png(1), sequence_id="s" * 8193)
    assert load_image(Image.from_bytes(png(1)), 0, "t" * 8192).tag == "t" * 8192


def test_constructors_raise_at_construction() -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        Image.from_bytes(png(1), name=7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sequence_id must be a str"):
        Image.from_url("http://a.test/x.jpg", sequence_id=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidImageError, match="surrogate"):
        Image.from_bytes(png(1), tag="\udc80")
    with pytest.raises(TypeError, match=r"str or os\.PathLike"):
        Image.from_path(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        Image("file")  # type: ignore[arg-type]


async def _one_url() -> AsyncIterator[str]:
    yield "http://images.test/a.jpg"


@pytest.mark.anyio
async def test_single_calls_raise_tupu_errors_for_non_images() -> None:
    server = FakeTupuServer()
    async with in_process_client(server) as client:
        with pytest.raises(InvalidImageError, match="NoneType"):
            await client.recognize(None)  # type: ignore[arg-type]
        with pytest.raises(InvalidImageError, match="int"):
            await client.recognize(5)  # type: ignore[arg-type]
        with pytest.raises(InvalidImageError, match="NoneType"):
            await client.recognize_one(None)  # type: ignore[arg-type]
        with pytest.raises(InvalidImageError, match="NoneType"):
            await client.recognize_many(None)  # type: ignore[arg-type]
        with pytest.raises(InvalidImageError, match="async iterable"):
            await client.recognize(_one_url())  # type: ignore[arg-type]
        with pytest.raises(InvalidImageError, match="not an http"):
            await client.recognize_one("/etc/passwd")
        (single,) = await client.recognize_many("http://images.test/one.jpg")
        assert single.ok
    assert server.stats.total_requests == 1


@pytest.mark.anyio
async def test_a_deeply_nested_unsigned_body_is_a_tupu_error() -> None:
    depth = 200_000

    def nested(request: httpx.Request) -> httpx.Response:
        body = '{"json":' + "[" * depth + "]" * depth + "}"
        return httpx.Response(200, content=body.encode())

    server = FakeTupuServer()
    sid, key = server.add_credentials("nested")
    async with AsyncTupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        verify_signature=False,
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(nested)),
    ) as client:
        with pytest.raises(TupuError):
            await client.recognize(["http://images.test/a.jpg"])
        (result,) = await client.recognize_many(["http://images.test/a.jpg"])
    assert isinstance(result.error, TupuError)


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://h.test/a b.jpg",
        "http://h.test/a\tb.jpg",
        "http://h.test/\x7f",
        "http://h.test/\u3000.jpg",
        "http://h.test/\u2028",
        "http://h.test/\ud800",
        "http://h.test/" + "a" * MAX_URL_LENGTH,
        "http://",
        "https:///path",
        "http://:80/x",
        "http://h.test:99999/x",
        "http://[::1/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//h.test/a.jpg",
    ],
)
def test_urls_that_break_the_rule_are_refused(url: str) -> None:
    with pytest.raises(InvalidImageError) as info:
        check_image_url(url)
    assert len(str(info.value)) < 600
    with pytest.raises(InvalidImageError):
        to_image(url)


@pytest.mark.parametrize(
    "url",
    [
        "HTTPS://H.TEST/A.JPG",
        "http://例子.测试/图片.jpg",
        "https://bucket.s3.test/k.jpg?X-Amz-Signature=abc&X-Amz-Credential=a%2Fb",
        "http://[::1]:8080/a.png",
        "http://h.test/" + "a" * (MAX_URL_LENGTH - len("http://h.test/")),
    ],
)
def test_urls_that_follow_the_rule_pass(url: str) -> None:
    assert check_image_url(url) == url
    assert to_image(url).url == url


# --- special and huge files ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("resize", [False, True])
async def test_fifo_and_dev_zero_fail_fast(files: Files, resize: bool) -> None:
    server = FakeTupuServer()
    items: list[Any] = [files.fifo, pathlib.Path("/dev/zero"), Image.from_path(files.fifo)]
    started = time.monotonic()
    async with in_process_client(server, resize=resize) as client:
        results = await client.recognize_many(items)
        with pytest.raises(InvalidImageError, match="FIFO"):
            await client.recognize_one(files.fifo)
    assert time.monotonic() - started < 2
    assert [type(r.error) for r in results] == [InvalidImageError] * 3
    assert "FIFO" in str(results[0].error)
    assert "device" in str(results[1].error)
    assert server.stats.total_requests == 0


def test_sockets_and_symlinks_to_devices_are_refused(tmp_path: pathlib.Path) -> None:
    import socket

    sock_path = tmp_path / "s.png"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock_path))
        with pytest.raises(InvalidImageError, match="not a regular file"):
            load_image(Image.from_path(sock_path), 0, None)
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    with pytest.raises(InvalidImageError, match="is a device"):
        load_image(Image.from_path(link), 0, None)


@pytest.mark.anyio
async def test_resize_never_reads_a_huge_file(files: Files) -> None:
    server = FakeTupuServer()
    started = time.monotonic()
    async with in_process_client(server, resize=True) as client:
        (result,) = await client.recognize_many([files.huge])
    assert time.monotonic() - started < 2
    assert "3,221,225,472 bytes" in str(result.error)
    assert "limit for resizing" in str(result.error)


def test_a_file_whose_size_is_unknown_is_cut_at_limit_plus_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tupu_async import _files

    # /dev/urandom reports st_size 0 and never ends, like a file that keeps growing.
    monkeypatch.setattr(stat, "S_ISREG", lambda mode: True)
    with pytest.raises(InvalidImageError, match="too big: 3000001"):
        _files.read_regular_file(
            "/dev/urandom",
            "urandom",
            limit=3_000_000,
            too_large=lambda size: InvalidImageError(f"too big: {size}"),
        )


def test_reading_stops_at_the_deadline(files: Files) -> None:
    from tupu_async._files import read_regular_file

    with pytest.raises(InvalidImageError, match="longer than"):
        read_regular_file(
            files.good, "good.png", limit=10_000, too_large=InvalidImageError, timeout=-1
        )


@pytest.mark.anyio
async def test_a_read_stuck_in_the_kernel_is_abandoned(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def stuck(image: Image, **kwargs: Any) -> bytes:
        entered.set()
        release.wait(10)
        return png(1)

    monkeypatch.setattr(images_module, "read_path", stuck)
    monkeypatch.setattr(images_module, "FILE_READ_TIMEOUT", 0.5)
    monkeypatch.setattr(images_module, "_ABANDON_GRACE", 0.5)
    server = FakeTupuServer()
    started = time.monotonic()
    try:
        async with in_process_client(server) as client:
            results = await client.recognize_many([files.good, png(2)])
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert entered.is_set()
    assert elapsed < 5  # the read itself would have blocked for 10 s
    assert "did not finish" in str(results[0].error)
    assert results[1].ok


def test_the_cli_folder_walk_lists_regular_files_only(files: Files) -> None:
    from tupu_async.cli._inputs import expand_inputs, image_files

    for recursive in (False, True):
        listed = set(image_files(files.root, recursive))
        assert files.fifo not in listed
        assert files.good in listed
    started = time.monotonic()
    items = list(expand_inputs([str(files.root)], recursive=True))
    assert time.monotonic() - started < 2
    assert all(isinstance(item, Image) and item.path != files.fifo for item in items)


# --- animations and pixel bombs ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF"])
def test_animations_are_refused_without_pillow(fmt: str) -> None:
    with pytest.raises(InvalidImageError, match="animated"):
        load_image(Image.from_bytes(_frames(fmt), name="a"), 0, None)
    assert load_image(Image.from_bytes(_static(fmt)), 0, None).content == _static(fmt)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF"])
def test_animations_are_refused_by_the_resizer(fmt: str) -> None:
    from tupu_async._resize import Resizer

    with pytest.raises(InvalidImageError, match="animated"):
        Resizer()(_frames(fmt), fmt.lower(), "a")


def test_jpeg_is_decoded_at_draft_scale_within_the_pixel_budget() -> None:
    from tupu_async._resize import Resizer

    def encoded(fmt: str) -> bytes:
        buffer = io.BytesIO()
        PILImage.new("RGB", (2000, 2000), (90, 90, 160)).save(buffer, fmt)
        return buffer.getvalue()

    resizer = Resizer(max_pixels=1_000_000)  # 2000x2000 is 4 MP; JPEG draft decodes 1000x1000
    shrunk = resizer(encoded("JPEG"), "jpeg", "big.jpg")
    assert max(PILImage.open(io.BytesIO(shrunk)).size) == 512
    with pytest.raises(InvalidImageError, match="pixel budget"):
        resizer(encoded("PNG"), "png", "big.png")


_BOMB_SCRIPT = """
import resource, struct, sys, zlib
from tupu_async._resize import Resizer
from tupu_async._exceptions import InvalidImageError

def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

side = 9000
deflate = zlib.compressobj(9)
row = bytes(1 + 3 * side)  # filter byte + RGB
idat = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
bomb = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
resizer = Resizer()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    resizer(bomb, "png", "bomb.png")
    outcome = "accepted"
except InvalidImageError as exc:
    outcome = str(exc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(bomb), after - before, outcome)
"""


def test_a_decompression_bomb_png_is_refused_with_bounded_memory() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _BOMB_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    size, grown_kib, outcome = done.stdout.split(" ", 2)
    assert int(size) < 1024 * 1024  # a small file...
    assert "9000x9000 px is over" in outcome  # ...declaring 81 MP, refused before decoding
    assert int(grown_kib) < 32 * 1024  # peak memory grew by under 32 MiB (decoding: 300+)


# --- hypothesis: anything through recognize_many --------------------------------------------

_NASTY_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "\ud800", "a\udcff", "\x00", "\r\n", "é" * 40, "\u202e", '"\\']),
)
_URLISH = st.builds(lambda s: "http://images.test/" + s, _NASTY_TEXT) | st.builds(
    lambda s, t: s + t,
    st.sampled_from(["http://", "https://", "HTTP://", "ftp://", ""]),
    _NASTY_TEXT,
)


def _raw_image(
    kind: str, url: object, path: object, data: object, name: object, tag: object, seq: object
) -> Image:
    """An ``Image`` whose attributes were set after construction: nothing re-checked yet."""
    image = Image.from_bytes(b"")
    for attr, value in zip(
        ("kind", "url", "path", "data", "name", "tag", "sequence_id"),
        (kind, url, path, data, name, tag, seq),
        strict=True,
    ):
        object.__setattr__(image, attr, value)
    return image


class _Hostile:
    """An object whose attributes and ``str`` raise."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} for you")

    def __str__(self) -> str:
        raise RuntimeError("no str")


class _BadPath(os.PathLike[str]):
    def __fspath__(self) -> str:
        raise RuntimeError("no path")


class _HostileStr(str):
    """A URL-looking ``str`` whose methods raise."""

    def __getitem__(self, key: object) -> str:
        raise RuntimeError("no slicing")

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def lower(self) -> str:
        raise RuntimeError("no lower")


class _HostileBytes(bytes):
    def __len__(self) -> int:
        raise RuntimeError("no len")

    def __getitem__(self, key: object) -> Any:
        raise RuntimeError("no slicing")


class _ReturnsPath(os.PathLike[str]):
    def __init__(self, value: object) -> None:
        self.value = value

    def __fspath__(self) -> str:
        return self.value  # type: ignore[return-value]


class _HostileImage(Image):
    def __getattribute__(self, name: str) -> Any:
        if name == "kind":
            raise RuntimeError("no kind")
        return super().__getattribute__(name)


def _released() -> memoryview:
    view = memoryview(b"\x89PNG")
    view.release()
    return view


def _odd_shapes() -> list[object]:
    """Objects that look like inputs but break the usual protocols in other ways."""
    two_d = memoryview(PNG_1x1[:64]).cast("B", shape=[8, 8])
    return [
        _HostileStr("http://images.test/a.jpg"),
        _HostileBytes(PNG_1x1),
        _ReturnsPath(7),
        _ReturnsPath(b"/etc/hostname"),
        _ReturnsPath("nul\x00.jpg"),
        pathlib.Path("nul\x00.jpg"),
        pathlib.Path("x" * 5000),
        pathlib.Path("/".join(["d"] * 3000)),
        _released(),
        memoryview(array.array("d", [1.0, 2.0])),
        two_d,
        bytearray(PNG_1x1),
        object.__new__(_HostileImage),
        {"url": "http://images.test/a.jpg"},
        {1, 2},
        (x for x in [PNG_1x1]),
        bytes,
        10**5000,
        float("nan"),
        ...,
    ]


def _items(files: Files) -> st.SearchStrategy[Any]:
    scalar = st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.just(_Hostile()),
        st.just(_BadPath()),
        # Built afresh per draw: some cannot be hashed, and a generator is used up.
        st.integers(0, len(_odd_shapes()) - 1).map(lambda i: _odd_shapes()[i]),
    )
    content = st.one_of(st.binary(max_size=40), st.integers(0, 1000).map(png))
    path = st.sampled_from(files.paths())
    anything = st.one_of(scalar, _NASTY_TEXT, content, path, _URLISH)
    image = st.builds(
        _raw_image,
        st.sampled_from(["url", "path", "bytes", "zip"]),
        anything,
        anything,
        anything,
        st.one_of(st.none(), _NASTY_TEXT, st.integers()),
        st.one_of(st.none(), _NASTY_TEXT, st.integers()),
        st.one_of(st.none(), _NASTY_TEXT, st.integers()),
    )
    return st.one_of(anything, image, st.lists(anything, max_size=2))


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["multipart", "base64"])
async def test_odd_shapes_never_abort_the_run_nor_the_good_images(
    transport: Transport,
) -> None:
    shapes = _odd_shapes()
    items: list[Any] = [x for shape in shapes for x in (shape, png(len(shapes)))]
    server = FakeTupuServer(qps_limit=None)
    async with in_process_client(server, qps=1000) as client:
        results = await client.recognize_many(items, transport=transport)
    _check_run(items, results)
    assert all(r.ok for r in results[1::2])  # every good image still got its answer


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("transport", ["multipart", "base64"])
def test_any_items_complete_with_one_result_each(
    files: Files, backend: str, transport: Transport
) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        items=st.lists(_items(files), max_size=14),
        tags=st.none() | st.lists(_NASTY_TEXT, max_size=4),
    )
    def run(items: list[Any], tags: list[str] | None) -> None:
        async def main() -> list[Any]:
            server = FakeTupuServer(qps_limit=None)
            async with in_process_client(server, qps=1000, retry_policy=FAST_RETRIES) as client:
                return await client.recognize_many(items, tags=tags, transport=transport)

        results = anyio.run(main, backend=backend)
        _check_run(items, results)

    run()


@pytest.mark.anyio
async def test_library_uploads_refuse_special_files_fast(files: Files) -> None:
    from test_libraries import MiniStore, make_libraries

    store = MiniStore()
    started = time.monotonic()
    for special in (files.fifo, pathlib.Path("/dev/zero"), files.root):
        with pytest.raises(InvalidImageError, match="only regular image files"):
            await make_libraries(store).add_images("lib-1", {"x": special})
    assert time.monotonic() - started < 2
    assert store.calls("/image/create/base64") == []


@pytest.mark.anyio
async def test_library_urls_and_names_follow_the_same_rules() -> None:
    from test_libraries import MiniStore, make_libraries

    store = MiniStore()
    libraries = make_libraries(store)
    with pytest.raises(InvalidImageError, match="contains '\\\\x00'"):
        await libraries.add_urls("lib-1", {"a": "http://e.test/\x00.jpg"})
    with pytest.raises(InvalidImageError, match="over the limit"):
        await libraries.add_urls("lib-1", {"a": "http://e.test/" + "x" * MAX_URL_LENGTH})
    with pytest.raises(ValueError, match="unpaired surrogate"):
        await libraries.add_urls("lib-1", {"caf\udce9": "http://e.test/a.jpg"})
    assert store.requests == []


# --- single calls and streaming: the same guarantees ----------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_any_item_through_recognize_one_and_iter_recognize(files: Files, backend: str) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(items=st.lists(_items(files), min_size=1, max_size=6))
    def run(items: list[Any]) -> None:
        async def main() -> tuple[list[Any], list[Any]]:
            server = FakeTupuServer(qps_limit=None)
            singles: list[Any] = []
            async with in_process_client(server, qps=1000) as client:
                for item in items:
                    try:
                        singles.append(await client.recognize_one(item))
                    except TupuError as exc:
                        singles.append(exc)
                streamed = [r async for r in client.iter_recognize(items)]
            return singles, sorted(streamed, key=lambda r: r.index)

        singles, streamed = anyio.run(main, backend=backend)
        assert len(singles) == len(items)
        _check_run(items, streamed)
        for single, result in zip(singles, streamed, strict=True):
            # The same input is refused by both calls, or by neither.
            assert isinstance(single, InvalidImageError) == isinstance(
                result.error, InvalidImageError
            )

    run()
