"""Fault injection for the fake server: which faults exist, the random plan and the queue.

A fault is decided once per recognition HTTP request, after the request passed the QPS
limiter: first from the deterministic queue filled by ``inject()``, else at random with
probability ``FaultConfig.rate`` from a seeded generator (so a run is reproducible when
requests arrive in the same order).
"""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Sequence
from typing import Final

__all__ = ["ALL_FAULT_KINDS", "Fault", "FaultConfig", "FaultPlan"]


class Fault:
    """The fault kinds, by name (plain ``str`` constants)."""

    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_429 = "http_429"
    DROP_CONNECTION = "drop_connection"
    CODE_100 = "code_100"
    CODE_101 = "code_101"
    BAD_SIGNATURE = "bad_signature"
    TRUNCATED_BODY = "truncated_body"
    TIMEOUT = "timeout"


ALL_FAULT_KINDS: Final[tuple[str, ...]] = tuple(
    value for name, value in vars(Fault).items() if name.isupper()
)
"""Every fault kind the fake server can inject, in a fixed order."""


def check_fault_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """Return ``kinds`` as a tuple, or raise ``ValueError`` naming the unknown ones."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    unknown = [k for k in kinds if k not in ALL_FAULT_KINDS]
    if unknown:
        raise ValueError(
            f"unknown fault kind(s) {unknown!r}: use some of {', '.join(ALL_FAULT_KINDS)}"
        )
    return tuple(kinds)


@dataclasses.dataclass(frozen=True)
class FaultConfig:
    """Random faults for a fake server.

    Each recognition request gets a fault with probability ``rate``, its kind drawn
    uniformly from ``kinds`` by a generator seeded with ``seed``. ``timeout_delay`` is how
    long a ``"timeout"`` fault holds the answer; ``retry_after`` the ``Retry-After``
    header (seconds) of an injected ``"http_429"`` (``None``: no header).
    """

    rate: float = 0.0
    kinds: Sequence[str] = ALL_FAULT_KINDS
    seed: int = 0
    timeout_delay: float = 5.0
    retry_after: float | None = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"FaultConfig.rate must be within [0, 1], not {self.rate!r}")
        kinds = check_fault_kinds(self.kinds)
        if self.rate > 0 and not kinds:
            raise ValueError("FaultConfig.kinds is empty: name at least one fault kind")
        if self.timeout_delay < 0:
            raise ValueError("FaultConfig.timeout_delay must be >= 0 seconds")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("FaultConfig.retry_after must be >= 0 seconds or None")
        object.__setattr__(self, "kinds", kinds)


class FaultPlan:
    """Decides the fault (or none) for each recognition request, queue first."""

    __slots__ = ("_queue", "_rng", "config")

    def __init__(self, config: FaultConfig | None) -> None:
        self.config = config if config is not None else FaultConfig()
        self._rng = random.Random(self.config.seed)
        self._queue: collections.deque[str] = collections.deque()

    def inject(self, kinds: Sequence[str]) -> None:
        self._queue.extend(check_fault_kinds(kinds))

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(self._queue)

    def next_fault(self) -> str | None:
        if self._queue:
            return self._queue.popleft()
        config = self.config
        if config.rate <= 0.0:
            return None
        if self._rng.random() < config.rate:
            return self._rng.choice(config.kinds)
        return None

    def reset(self) -> None:
        """Empty the queue and restart the random sequence from the seed."""
        self._queue.clear()
        self._rng = random.Random(self.config.seed)
