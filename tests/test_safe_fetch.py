"""``SafeFetcher``: the URL fallback's downloads cannot be turned against the app's network.

Names resolve through a stub resolver; a canary HTTP server on loopback stands for every
internal service and must never be contacted unless allow-listed. ``RoutedBackend``
stands for the internet: connections to a "public" address go to a loopback server.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import ssl
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
import trustme
from loopback import LoopbackServer, Reply, RoutedBackend, StubResolver, files

from tupu_async._safe_fetch import UNREACHABLE, DownloadError, SafeFetcher

PUBLIC = "93.184.215.14"
PUBLIC6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"

FORBIDDEN = [
    "127.0.0.1",
    "127.3.2.1",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.251",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.10",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fd00:ec2::254",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:8.8.8.8",
    "::127.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::1",
    "2002:7f00:1::1",
    "2002:a00:1::1",
    "2001:db8::1",
    "2001::1",
    "100::1",
    "fec0::1",
]


@pytest.fixture
def canary() -> Iterator[LoopbackServer]:
    with LoopbackServer().running() as server:
        yield server


@contextlib.asynccontextmanager
async def fetcher(**options: object) -> AsyncIterator[SafeFetcher]:
    f = SafeFetcher(**options)  # type: ignore[arg-type]
    try:
        yield f
    finally:
        await f.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("address", FORBIDDEN)
async def test_a_name_resolving_to_a_forbidden_address_is_never_contacted(
    canary: LoopbackServer, address: str
) -> None:
    backend = RoutedBackend({address: canary.port})  # were it contacted, the canary would know
    resolver = StubResolver({"evil.test": [[address]]})
    async with fetcher(resolver=resolver, network_backend=backend) as f:
        with pytest.raises(DownloadError) as caught:
            await f.fetch(f"http://evil.test:{canary.port}/latest/meta-data/", max_bytes=1000)

    assert str(caught.value) == UNREACHABLE
    assert backend.connects == []
    assert canary.hits == []


@pytest.mark.anyio
@pytest.mark.parametrize("address", [PUBLIC, PUBLIC6, "64:ff9b::808:808", "2002:808:808::1"])
async def test_a_public_address_is_connected_to_exactly_as_checked(
    canary: LoopbackServer, address: str
) -> None:
    canary.route = files({"/cat.png": b"meow"})
    backend = RoutedBackend({address: canary.port})
    resolver = StubResolver({"images.test": [[address]]})
    async with fetcher(resolver=resolver, network_backend=backend) as f:
        body = await f.fetch("http://images.test/cat.png", max_bytes=1000)

    assert body == b"meow"
    assert backend.connects == [(address, 80)]
    assert canary.hits[0].headers["host"] == "images.test"


@pytest.mark.anyio
async def test_https_verifies_the_name_while_connecting_to_the_checked_address() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("images.test").configure_cert(server_tls)
    sni: list[str | None] = []

    def record_sni(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        sni.append(name)

    server_tls.sni_callback = record_sni
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)

    with LoopbackServer(files({"/cat.png": b"meow"}), tls=server_tls).running() as tls:
        backend = RoutedBackend({PUBLIC: tls.port})
        resolver = StubResolver({"images.test": [[PUBLIC]], "other.test": [[PUBLIC]]})
        async with fetcher(resolver=resolver, network_backend=backend, ssl_context=client_tls) as f:
            assert await f.fetch("https://images.test/cat.png", max_bytes=100) == b"meow"
            with pytest.raises(DownloadError, match=UNREACHABLE):  # its certificate is not ours
                await f.fetch("https://other.test/cat.png", max_bytes=100)

    assert backend.connects == [(PUBLIC, 443), (PUBLIC, 443)]
    assert sni == ["images.test", "other.test"]
    assert [h.headers["host"] for h in tls.hits] == ["images.test"]


@pytest.mark.anyio
async def test_an_answer_mixing_public_and_private_is_refused(canary: LoopbackServer) -> None:
    backend = RoutedBackend({PUBLIC: canary.port, "10.0.0.7": canary.port})
    resolver = StubResolver({"mixed.test": [[PUBLIC, "10.0.0.7"]]})
    async with fetcher(resolver=resolver, network_backend=backend) as f:
        with pytest.raises(DownloadError, match=UNREACHABLE):
            await f.fetch("http://mixed.test/x.png", max_bytes=1000)

    assert backend.connects == []
    assert canary.hits == []


@pytest.mark.anyio
async def test_dns_rebinding_public_then_private_connects_only_to_the_checked_address(
    canary: LoopbackServer,
) -> None:
    with LoopbackServer(files({"/a.png": b"public"})).running() as internet:
        backend = RoutedBackend({PUBLIC: internet.port})
        # First answer public (what a check-then-connect client checks), then loopback.
        resolver = StubResolver({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
        url = f"http://rebind.test:{canary.port}/a.png"
        async with fetcher(resolver=resolver, network_backend=backend) as f:
            assert await f.fetch(url, max_bytes=1000) == b"public"
            assert resolver.calls == ["rebind.test"]  # resolved once, for the connection
            with pytest.raises(DownloadError, match=UNREACHABLE):
                await f.fetch(url, max_bytes=1000)  # a new connection: resolved and refused

    assert backend.connects == [(PUBLIC, canary.port)]
    assert canary.hits == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "0.0.0.0",
        "localhost",
        "2130706433",
        "0x7f.1",
        "public@127.0.0.1",
        "127.1",
        "0177.0.0.1",
        "017700000001",
        "0x7f000001",
        "0",
        "localhost.",
        "127.0.0.1.",
        "LOCALHOST",
        "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits
        "127\u30020\u30020\u30021",  # ideographic full stops
        "[::1]",
        "[fe80::1%25lo]",
        "[::127.0.0.1]",
        "[::ffff:0:7f00:1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
    ],
)
async def test_loopback_urls_with_the_real_resolver_never_reach_the_canary(
    canary: LoopbackServer, host: str
) -> None:
    async with fetcher() as f:
        with pytest.raises(DownloadError, match=UNREACHABLE):
            await f.fetch(f"http://{host}:{canary.port}/admin", max_bytes=1000)

    assert canary.hits == []


@pytest.mark.anyio
@pytest.mark.parametrize("allow", [["127.0.0.1"], ["127.0.0.0/8"], ["canary.test"]])
async def test_the_allow_list_opts_private_hosts_back_in(
    canary: LoopbackServer, allow: list[str]
) -> None:
    canary.route = files({"/ok.png": b"intranet"})
    resolver = StubResolver({"canary.test": [["127.0.0.1"]]})
    async with fetcher(allow_private=allow, resolver=resolver) as f:
        assert await f.fetch(f"http://canary.test:{canary.port}/ok.png", max_bytes=100) == (
            b"intranet"
        )

    assert len(canary.hits) == 1


@pytest.mark.anyio
async def test_an_allow_listed_name_does_not_open_other_names(canary: LoopbackServer) -> None:
    resolver = StubResolver({"other.test": [["127.0.0.1"]]})
    async with fetcher(allow_private=["canary.test"], resolver=resolver) as f:
        with pytest.raises(DownloadError, match=UNREACHABLE):
            await f.fetch(f"http://other.test:{canary.port}/", max_bytes=100)

    assert canary.hits == []


def test_bad_allow_list_entries_say_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="not a network"):
        SafeFetcher(allow_private=["http://intranet/"])
    with pytest.raises(ValueError, match="not int"):
        SafeFetcher(allow_private=[10])  # type: ignore[list-item]


# ------------------------------------------------------------------------------ redirects


@pytest.mark.anyio
async def test_a_redirect_to_a_private_address_is_refused(canary: LoopbackServer) -> None:
    def route(path: str) -> Reply:
        return Reply(302, headers={"Location": f"http://127.0.0.1:{canary.port}/secret"})

    with LoopbackServer(route).running() as internet:
        backend = RoutedBackend({PUBLIC: internet.port})
        resolver = StubResolver({"images.test": [[PUBLIC]]})
        async with fetcher(resolver=resolver, network_backend=backend) as f:
            with pytest.raises(DownloadError, match=UNREACHABLE):
                await f.fetch("http://images.test/cat.png", max_bytes=1000)

    assert [h.path for h in internet.hits] == ["/cat.png"]
    assert canary.hits == []


@pytest.mark.anyio
async def test_redirects_are_followed_up_to_the_limit_and_no_further() -> None:
    def route(path: str) -> Reply:
        hop = int(path.rsplit("/", 1)[1])
        if path.startswith("/ends/") and hop == 3:
            return Reply(200, b"found")
        return Reply(302, headers={"Location": f"/{path.split('/')[1]}/{hop + 1}"})

    with LoopbackServer(route).running() as internet:
        backend = RoutedBackend({PUBLIC: internet.port})
        resolver = StubResolver({"images.test": [[PUBLIC]]})
        async with fetcher(resolver=resolver, network_backend=backend, max_redirects=3) as f:
            assert await f.fetch("http://images.test/ends/0", max_bytes=100) == b"found"
            with pytest.raises(DownloadError, match="more than 3 redirects"):
                await f.fetch("http://images.test/loops/0", max_bytes=100)

    loops = [h.path for h in internet.hits if h.path.startswith("/loops/")]
    assert loops == ["/loops/0", "/loops/1", "/loops/2", "/loops/3"]


@pytest.mark.anyio
async def test_a_redirect_to_another_scheme_is_refused(canary: LoopbackServer) -> None:
    canary.route = lambda path: Reply(302, headers={"Location": "file:///etc/passwd"})
    async with fetcher(allow_private=["127.0.0.1"]) as f:
        with pytest.raises(DownloadError, match=UNREACHABLE):
            await f.fetch(f"{canary.url}/x", max_bytes=100)


# --------------------------------------------------------------------------------- limits


@pytest.mark.anyio
async def test_a_gzip_bomb_is_refused_without_being_inflated(canary: LoopbackServer) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    canary.route = lambda path: Reply(200, bomb, {"Content-Encoding": "gzip"})
    async with fetcher(allow_private=["127.0.0.1"]) as f:
        tracemalloc.start()
        try:
            with pytest.raises(DownloadError, match="compressed body"):
                await f.fetch(f"{canary.url}/bomb.png", max_bytes=1024 * 1024)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak < 2 * 1024 * 1024
    assert canary.hits[0].headers["accept-encoding"] == "identity"


@pytest.mark.anyio
async def test_an_endless_body_is_cut_at_the_cap_while_streaming(canary: LoopbackServer) -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"x" * 65536

    canary.route = lambda path: Reply(200, chunks=endless())
    cap = 1024 * 1024
    async with fetcher(allow_private=["127.0.0.1"]) as f:
        tracemalloc.start()
        try:
            with pytest.raises(DownloadError, match="more than the 1,048,576-byte cap"):
                await f.fetch(f"{canary.url}/endless.png", max_bytes=cap)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak < 3 * cap
    # The socket buffers hold a few chunks more; the server did not send a 100 MiB.
    assert canary.chunks_sent < 1600


@pytest.mark.anyio
async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    canary: LoopbackServer,
) -> None:
    canary.route = lambda path: Reply(200, b"x" * 5000)
    async with fetcher(allow_private=["127.0.0.1"]) as f:
        with pytest.raises(DownloadError, match="5,000 bytes is over the 4,999-byte cap"):
            await f.fetch(f"{canary.url}/big.png", max_bytes=4999)


@pytest.mark.anyio
async def test_concurrent_downloads_are_bounded() -> None:
    bound, total = 3, 10
    lock = threading.Condition()
    active = 0
    peak = 0
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
        return Reply(200, b"ok")

    def wait_until_full() -> None:
        with lock:
            lock.wait_for(lambda: active >= bound, timeout=30)

    with LoopbackServer(route).running() as server:
        async with fetcher(allow_private=["127.0.0.1"], max_concurrency=bound) as f:
            bodies: list[bytes] = []

            async def one(i: int) -> None:
                bodies.append(await f.fetch(f"{server.url}/{i}", max_bytes=100))

            async with anyio.create_task_group() as tg:
                for i in range(total):
                    tg.start_soon(one, i)
                await anyio.to_thread.run_sync(wait_until_full)
                release.set()

    assert bodies == [b"ok"] * total
    assert peak == bound


@pytest.mark.anyio
async def test_refused_closed_and_silent_hosts_give_one_message(canary: LoopbackServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    release = threading.Event()

    def silent(path: str) -> Reply:
        release.wait(timeout=30)
        return Reply(200, b"late")

    messages = []
    with LoopbackServer(silent).running() as slow:
        async with fetcher(allow_private=["127.0.0.1"], timeout=0.5) as f:
            for url in (f"http://127.0.0.1:{closed_port}/", f"{slow.url}/"):
                with pytest.raises(DownloadError) as caught:
                    await f.fetch(url, max_bytes=100)
                messages.append(str(caught.value))
        release.set()
    async with fetcher() as f:  # not allow-listed: refused by policy
        with pytest.raises(DownloadError) as caught:
            await f.fetch(f"{canary.url}/", max_bytes=100)
        messages.append(str(caught.value))

    assert messages == [UNREACHABLE] * 3


# ------------------------------------------------------------- nothing of the app's client


@pytest.mark.anyio
async def test_cookies_set_by_one_url_are_never_sent_to_another(canary: LoopbackServer) -> None:
    canary.route = lambda path: Reply(200, b"ok", {"Set-Cookie": "session=victim; Path=/"})
    async with fetcher(allow_private=["127.0.0.1"]) as f:
        await f.fetch(f"{canary.url}/a", max_bytes=100)
        await f.fetch(f"{canary.url}/b", max_bytes=100)

    assert "cookie" not in canary.hits[1].headers


@pytest.mark.anyio
async def test_proxy_environment_variables_are_ignored(
    canary: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, canary.url)
    with LoopbackServer(files({"/x.png": b"direct"})).running() as images:
        async with fetcher(allow_private=["127.0.0.1"]) as f:
            assert await f.fetch(f"{images.url}/x.png", max_bytes=100) == b"direct"

    assert canary.hits == []
