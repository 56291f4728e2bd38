"""The state of one fake server: its knobs and the components every route reads."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ._auth import Authenticator
from ._faults import FaultPlan
from ._jsontext import StyleCycle
from ._library import LibraryStore
from ._qps import SlidingWindowLimit
from ._results import Recognizer
from ._stats import FakeServerStats, RecordedRequest

__all__ = ["RECORDED_REQUESTS", "AppSettings", "ServerState"]

RECORDED_REQUESTS: Final = 1000


@dataclasses.dataclass(slots=True, kw_only=True)
class AppSettings:
    """The knobs of a running fake server (``FakeTupuServer`` exposes them).

    ``arrival_jitter``: each request reaches the QPS gate uniform(0, it) s after it
    arrived; ``connection_setup``: a new connection's first request reaches it this much
    later; ``qps_retry_after``: the Retry-After of the gate's 429s (None: no header).
    """

    latency: float
    latency_jitter: float
    summary: bool
    tasks: tuple[str, ...]
    sign_management_responses: bool
    json_style: StyleCycle = dataclasses.field(default_factory=lambda: StyleCycle("go"))
    arrival_jitter: float = 0.0
    connection_setup: float = 0.0
    qps_retry_after: float | None = 1.0


def _recorded() -> collections.deque[RecordedRequest]:
    return collections.deque(maxlen=RECORDED_REQUESTS)


@dataclasses.dataclass(kw_only=True, eq=False)
class ServerState:
    """Everything one fake server knows; ``recorded`` keeps the last authenticated
    recognition requests. Replacing a component (``stats``, ``fault_plan``) takes effect
    on the next request."""

    settings: AppSettings
    signing_key: RSAPrivateKey
    authenticator: Authenticator
    recognizer: Recognizer
    libraries: LibraryStore
    fault_plan: FaultPlan
    qps: SlidingWindowLimit
    download_fails: Callable[[str], bool]
    seed: int = 0
    stats: FakeServerStats = dataclasses.field(default_factory=FakeServerStats)
    recorded: collections.deque[RecordedRequest] = dataclasses.field(default_factory=_recorded)
