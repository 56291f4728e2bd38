"""``FakeTupuServer``: the public face of the fake Tupu API (keys, knobs, serving)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Final, Generic, Literal, TypeVar, overload

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from .._constants import MAX_QPS, Task
from .._keys import KeySource, load_private_key, load_public_key
from ._app import FakeTupuApp
from ._auth import Authenticator
from ._faults import FaultConfig, FaultPlan
from ._jsontext import JsonStyle, StyleCycle
from ._library import FakeLibrary, LibraryStore, StoredImage
from ._pem import generate_private_key, private_key_pem, public_key_pem
from ._qps import SlidingWindowLimit
from ._results import Recognizer
from ._serving import serve_in_loop, serve_in_thread
from ._state import AppSettings
from ._stats import FakeServerStats, RecordedRequest
from ._transport import FakeServerTransport

__all__ = [
    "DEFAULT_TASKS",
    "DOWNLOAD_FAIL_WORD",
    "FakeTupuServer",
    "default_download_fails",
]

DEFAULT_TASKS: Final[tuple[str, ...]] = (
    Task.PORN,
    Task.POLITICAL,
    Task.VIOLENCE,
    Task.AD,
    Task.OCR_TEXT,
    Task.VULGAR,
    Task.VIOLATION,
)
"""The seven task ids the fake server runs by default (every known Tupu image task)."""


_T = TypeVar("_T")

DOWNLOAD_FAIL_WORD: Final = "download-fail"
"""A URL containing this fails with code 14 (download failed), as an unreachable one would."""


def default_download_fails(url: str) -> bool:
    """True for URLs the fake cannot "download": not http(s), or containing
    ``download-fail`` (an explicit magic word: ordinary URLs, ``/404`` included, work)."""
    return not url.startswith(("http://", "https://")) or DOWNLOAD_FAIL_WORD in url


def _seconds(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0 seconds")


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _retry_after(name: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0 or None, got {value!r}")


def _qps_limit(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be > 0 or None (no limit)")


def _anything(name: str, value: object) -> None:
    pass


class _Knob(Generic[_T]):
    """A ``FakeTupuServer`` attribute kept on its app's ``settings`` or ``qps``, checked
    by ``check(name, value)`` when set."""

    def __init__(
        self,
        holder: Literal["settings", "qps"],
        check: Callable[[str, _T], None] = _anything,
        *,
        attribute: str = "",
    ) -> None:
        self._holder = holder
        self._check = check
        self._name = ""
        self._attribute = attribute

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._attribute = self._attribute or name

    @overload
    def __get__(self, server: None, owner: type) -> _Knob[_T]: ...
    @overload
    def __get__(self, server: FakeTupuServer, owner: type) -> _T: ...
    def __get__(self, server: FakeTupuServer | None, owner: type) -> _Knob[_T] | _T:
        if server is None:
            return self
        value: _T = getattr(getattr(server._app, self._holder), self._attribute)
        return value

    def __set__(self, server: FakeTupuServer, value: _T) -> None:
        self._check(self._name, value)
        setattr(getattr(server._app, self._holder), self._attribute, value)


class FakeTupuServer:
    """A faithful, deterministic fake of the Tupu API, in-process or over loopback HTTP.

    Guarantees:

    - the protocol of the real service: signed requests checked (codes 1, 6,
      9, 12, replay), QPS per secret id (HTTP 429), the 10-image, 1 MiB and 30 MiB limits,
      tag tail completion, task filtering (code 7), per-image code 14, a summary, and
      every answer signed with :attr:`public_key_pem`'s private half;
    - the same image (content or URL) always gets the same result for a given ``seed``;
      magic substrings force outcomes (``tupu_async.testing.MAGIC_OUTCOMES``);
    - faults (``FaultConfig`` and :meth:`inject`) apply per recognition HTTP request (not
      to management requests) and are counted;
    - :attr:`stats` records every request's monotonic arrival time before any latency;
    - as strict as the service on spelling: a nonce or timestamp sent as a JSON number is
      checked in its JavaScript spelling (``1.2e-05`` as ``0.000012``), and the signed
      response text is escaped per ``json_style`` (see :data:`JSON_STYLES`), so a client
      must verify the text exactly as received; multipart ZIP uploads stand for their
      member images;
    - network knobs delay when a request reaches the QPS gate (``arrival_jitter``,
      ``connection_setup``) or share its window with another client (``foreign_qps``);
      ``stats.gate_times`` records when each did.

    Not thread-safe for concurrent mutation; serve it from one event loop at a time.
    """

    def __init__(
        self,
        *,
        qps_limit: float | None = MAX_QPS,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        summary: bool = True,
        tasks: Sequence[str] = DEFAULT_TASKS,
        seed: int = 0,
        private_key: KeySource | RSAPrivateKey | None = None,
        max_clock_skew: float = 300.0,
        faults: FaultConfig | None = None,
        sign_management_responses: bool = False,
        replay_protection: bool = True,
        json_style: JsonStyle = "go",
        arrival_jitter: float = 0.0,
        connection_setup: float = 0.0,
        foreign_qps: float = 0.0,
        qps_retry_after: float | None = 1.0,
    ) -> None:
        if latency < 0 or latency_jitter < 0:
            raise ValueError("latency and latency_jitter must be >= 0 seconds")
        for name, value in (
            ("arrival_jitter", arrival_jitter),
            ("connection_setup", connection_setup),
            ("foreign_qps", foreign_qps),
        ):
            _finite(name, value)
        _retry_after("qps_retry_after", qps_retry_after)
        if isinstance(tasks, str):
            raise TypeError("tasks must be a sequence of task ids, not one string")
        self._download_predicates: list[Callable[[str], bool]] = [default_download_fails]
        key = generate_private_key(1024) if private_key is None else load_private_key(private_key)
        self._app = FakeTupuApp(
            settings=AppSettings(
                latency=latency,
                latency_jitter=latency_jitter,
                summary=summary,
                tasks=tuple(tasks),
                sign_management_responses=sign_management_responses,
                json_style=StyleCycle(json_style),
                arrival_jitter=arrival_jitter,
                connection_setup=connection_setup,
                qps_retry_after=qps_retry_after,
            ),
            signing_key=key,
            authenticator=Authenticator(
                max_clock_skew=max_clock_skew, replay_protection=replay_protection
            ),
            recognizer=Recognizer(seed=seed, download_fails=self._download_fails),
            libraries=LibraryStore(),
            fault_plan=FaultPlan(faults),
            qps=SlidingWindowLimit(qps_limit, foreign_qps=foreign_qps),
            download_fails=self._download_fails,
            seed=seed,
        )
        self._public_key_pem = public_key_pem(key.public_key())

    # -- keys ---------------------------------------------------------------------------

    @property
    def public_key_pem(self) -> bytes:
        """The PEM public key that verifies this server's responses (``tupu_public_key=``)."""
        return self._public_key_pem

    @property
    def signing_key(self) -> RSAPrivateKey:
        return self._app.signing_key

    def add_credentials(
        self, secret_id: str = "test-secret", key_size: int = 1024
    ) -> tuple[str, bytes]:
        """Register a fresh key pair for ``secret_id``; return it with the private key PEM.

        The PEM is PKCS#1 (``BEGIN RSA PRIVATE KEY``), ready for ``private_key=``.
        """
        key = generate_private_key(key_size)
        self._app.authenticator.register(secret_id, key.public_key())
        return secret_id, private_key_pem(key)

    def register_public_key(self, secret_id: str, public_key: KeySource | RSAPublicKey) -> None:
        """Accept requests of ``secret_id`` signed by the private half of ``public_key``."""
        self._app.authenticator.register(secret_id, load_public_key(public_key))

    def add_secret_id(self, secret_id: str) -> None:
        """Know ``secret_id`` without any public key: its requests get code 9."""
        self._app.authenticator.register(secret_id, None)

    def remove_secret_id(self, secret_id: str) -> None:
        """Forget ``secret_id``: its requests get code 6."""
        self._app.authenticator.forget(secret_id)

    @property
    def secret_ids(self) -> tuple[str, ...]:
        return self._app.authenticator.secret_ids

    # -- knobs --------------------------------------------------------------------------

    @property
    def json_style(self) -> JsonStyle:
        """How the signed response text is spelt: one of :data:`JSON_STYLES`."""
        return self._app.settings.json_style.style

    @json_style.setter
    def json_style(self, value: JsonStyle) -> None:
        self._app.settings.json_style = StyleCycle(value)

    latency = _Knob[float]("settings", _seconds)
    """Seconds added to every answer."""
    latency_jitter = _Knob[float]("settings", _seconds)
    """Up to this many seconds more or less latency, at random."""
    qps_limit = _Knob[float | None]("qps", _qps_limit, attribute="limit")
    """Requests per second per secret id (HTTP 429 above it); None: no limit."""
    arrival_jitter = _Knob[float]("settings", _finite)
    """Each request reaches the QPS gate uniform(0, this) s after it arrived."""
    connection_setup = _Knob[float]("settings", _finite)
    """The first request on a new connection reaches the QPS gate this much later."""
    foreign_qps = _Knob[float]("qps", _finite)
    """Another client's evenly paced requests per second on every secret id."""
    qps_retry_after = _Knob[float | None]("settings", _retry_after)
    """The Retry-After (seconds) of the QPS gate's 429s; None sends no header."""
    summary = _Knob[bool]("settings")
    """Whether answers carry the per-image summary."""

    @property
    def tasks(self) -> tuple[str, ...]:
        return self._app.settings.tasks

    @property
    def faults(self) -> FaultConfig:
        return self._app.fault_plan.config

    @faults.setter
    def faults(self, config: FaultConfig | None) -> None:
        pending = self._app.fault_plan.pending
        self._app.fault_plan = FaultPlan(config)
        self._app.fault_plan.inject(pending)

    def inject(self, *kinds: str) -> None:
        """Give the next ``len(kinds)`` recognition requests these faults, in order."""
        self._app.fault_plan.inject(kinds)

    @property
    def pending_faults(self) -> tuple[str, ...]:
        return self._app.fault_plan.pending

    def fail_download(self, predicate: Callable[[str], bool]) -> None:
        """Also treat URLs for which ``predicate(url)`` is true as failed downloads (code 14)."""
        self._download_predicates.append(predicate)

    def _download_fails(self, url: str) -> bool:
        return any(predicate(url) for predicate in self._download_predicates)

    # -- image libraries ---------------------------------------------------------------

    def create_library(
        self,
        name: str,
        *,
        type: int = 0,
        threshold: float = 0.95,
        status: int = 0,
        secret_id: str | None = None,
    ) -> str:
        """Create an image library (visible to ``secret_id``, or to all when None); its id."""
        store = self._app.libraries
        return store.add(FakeLibrary(store.new_id(name), name, type, threshold, status, secret_id))

    def library(self, library_id: str) -> FakeLibrary:
        found = self._app.libraries.get(library_id)
        if found is None:
            raise KeyError(f"no image library {library_id!r}")
        return found

    def library_images(self, library_id: str) -> dict[str, StoredImage]:
        """The images stored in a library, by name, in insertion order."""
        return dict(self.library(library_id).images)

    # -- observation -------------------------------------------------------------------

    @property
    def stats(self) -> FakeServerStats:
        return self._app.stats

    @property
    def requests(self) -> list[RecordedRequest]:
        """The last 1000 authenticated recognition requests, as the server understood them."""
        return list(self._app.recorded)

    def reset_stats(self) -> None:
        """Start the statistics afresh (everything else stays)."""
        self._app.stats.clear()
        self._app.recorded.clear()

    async def warm_up(self) -> None:
        """Run every code path once (~0.3 s) so later requests pay no first-use cost.

        Builds the result pools and sends one signed request to each recognition endpoint
        in process; statistics are cleared afterwards.
        """
        import httpx

        from .._images import PreparedImage
        from .._requests import build_base64_request, build_json_request, build_multipart_request
        from .._signing import Signer

        self._app.recognizer.warm(self.tasks)
        secret_id, key = self.add_credentials("warm-up")
        signer = Signer(secret_id, key)
        png = bytes.fromhex("89504e470d0a1a0a") + b"warm-up"
        urls = [PreparedImage(0, "http://warm.up/a.jpg", url="http://warm.up/a.jpg", tag="t")]
        files = [PreparedImage(0, "a.png", content=png, format="png", tag="t")]
        requests = [
            build_json_request(secret_id, urls),
            build_multipart_request(secret_id, files),
            build_base64_request(secret_id, files),
        ]
        latency, self.latency = self.latency, 0.0
        try:
            async with httpx.AsyncClient(transport=self.transport(), base_url="http://warm") as c:
                for request in requests:
                    body = request.body(signer.sign())
                    headers = {"Content-Type": request.content_type}
                    await c.post(request.path, content=body, headers=headers)
        finally:
            self.latency = latency
            self.remove_secret_id(secret_id)
            self.reset()
            self.reset_stats()

    def reset(self) -> None:
        """Fresh statistics, QPS windows, fault queue and replay cache (``POST /_fake/reset``)."""
        self._app.reset()

    # -- serving --------------------------------------------------------------------------

    @property
    def app(self) -> FakeTupuApp:
        """The ASGI application (mount it in any ASGI server)."""
        return self._app

    def transport(self) -> FakeServerTransport:
        """An httpx transport serving this server in-process (asyncio or trio)."""
        return FakeServerTransport(self._app)

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve over real HTTP with uvicorn while the block runs; yield the base URL.

        Under asyncio uvicorn runs in the current loop; under trio, in a thread.
        """
        async with serve_in_loop(self._app, host, port) as base_url:
            yield base_url

    @contextlib.contextmanager
    def serve_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve over real HTTP with uvicorn in a thread (its own loop); yield the base URL."""
        with serve_in_thread(self._app, host, port) as base_url:
            yield base_url

    def __repr__(self) -> str:
        return (
            f"FakeTupuServer(qps_limit={self.qps_limit}, latency={self.latency}, "
            f"secret_ids={list(self.secret_ids)!r})"
        )
