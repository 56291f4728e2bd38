"""What the fake server counts: requests, images, throttling, faults and arrival times.

Memory is bounded however long a server runs: counters are exact, while the per-request
records (arrival times and their secret ids, images per request) keep only the most
recent ``max_records`` entries, and at most ``MAX_PATHS`` distinct paths are counted by
name (the rest under ``"(other)"``).

Arrival times are ``time.monotonic()`` at the moment a request reached the app, before any
injected latency. On Linux that clock is shared by every process of the machine, so the
arrivals a server subprocess reports can be compared with the client's own clock.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "DEFAULT_MAX_RECORDS",
    "MAX_PATHS",
    "FakeServerStats",
    "RecordedRequest",
    "max_arrivals_in_window",
]

DEFAULT_MAX_RECORDS = 100_000
"""Per-request records kept (the latest): about half an hour at 50 requests/s."""
MAX_PATHS = 1000
_OTHER_PATH = "(other)"


def max_arrivals_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """The largest number of ``times`` inside any half-open window ``(t - window, t]``.

    The maximum is always reached with ``t`` at one of the arrivals, so a sweep over the
    sorted times with two pointers finds it in O(n log n).
    """
    if window <= 0:
        raise ValueError(f"window must be > 0 seconds, not {window!r}")
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        limit = t - window
        while ordered[start] <= limit:
            start += 1
        count = end - start + 1
        if count > best:
            best = count
    return best


class FakeServerStats:
    """Counters of one fake server since it started or was last reset.

    ``accepted`` arrivals are those that passed the QPS limiter (everything but its HTTP
    429 answers); injected faults happen after the limiter, so they count as accepted.
    ``images_per_request`` has one entry per accepted recognition request whose body
    parsed (faulted ones included), the latest ``max_records`` of them, like
    ``arrivals``; ``images_histogram`` and ``mean_images_per_request`` count them all.
    ``status_counts`` counts HTTP statuses answered, with 0 for connections dropped by
    the ``drop_connection`` fault; ``code_counts`` the Tupu codes of the signed envelopes
    sent. Requests to ``/_fake/`` endpoints are not counted.
    """

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        if max_records < 2:
            raise ValueError(f"max_records must be >= 2, got {max_records!r}")
        self.max_records = max_records
        self._offset = 0  # arrivals recorded before the last clear() or dropped as old
        self._histogram: collections.Counter[int] = collections.Counter()
        self.total_requests = 0
        self.requests_by_path: collections.Counter[str] = collections.Counter()
        self.images_per_request: list[int] = []
        self.throttled = 0
        self.status_counts: collections.Counter[int] = collections.Counter()
        self.code_counts: collections.Counter[int] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self.arrivals: list[float] = []
        self.arrival_secret_ids: list[str | None] = []
        self.arrival_accepted: list[bool] = []
        self.gate_times: list[float] = []
        """When each request reached the QPS gate (its arrival unless a network knob
        delayed it), aligned with ``arrivals``."""
        self.foreign_accepted = 0
        self.foreign_throttled = 0

    def clear(self) -> None:
        """Start afresh; requests already in flight only count in the new numbers."""
        self._offset += len(self.arrivals)
        self.total_requests = 0
        self.requests_by_path.clear()
        self.images_per_request.clear()
        self._histogram.clear()
        self.throttled = 0
        self.status_counts.clear()
        self.code_counts.clear()
        self.faults.clear()
        self.arrivals.clear()
        self.arrival_secret_ids.clear()
        self.arrival_accepted.clear()
        self.gate_times.clear()
        self.foreign_accepted = 0
        self.foreign_throttled = 0

    # -- recording (called by the app) -----------------------------------------------

    def record_arrival(self, now: float, path: str) -> int:
        """Count one request; return its sequence number for the calls below."""
        self.total_requests += 1
        if path in self.requests_by_path or len(self.requests_by_path) < MAX_PATHS:
            self.requests_by_path[path] += 1
        else:
            self.requests_by_path[_OTHER_PATH] += 1
        if len(self.arrivals) >= self.max_records:
            drop = self.max_records // 2  # amortised: a big cut now and then, not one per call
            del self.arrivals[:drop]
            del self.arrival_secret_ids[:drop]
            del self.arrival_accepted[:drop]
            del self.gate_times[:drop]
            self._offset += drop
        self.arrivals.append(now)
        self.arrival_secret_ids.append(None)
        self.arrival_accepted.append(True)
        self.gate_times.append(now)
        return self._offset + len(self.arrivals) - 1

    def record_images(self, count: int) -> None:
        """Count one recognition request carrying ``count`` images."""
        self._histogram[count] += 1
        if len(self.images_per_request) >= self.max_records:
            del self.images_per_request[: self.max_records // 2]
        self.images_per_request.append(count)

    def set_gate_time(self, sequence: int, gate: float) -> None:
        position = sequence - self._offset
        if position >= 0:
            self.gate_times[position] = gate

    def set_secret_id(self, sequence: int, secret_id: str) -> None:
        position = sequence - self._offset
        if position >= 0:  # else it arrived before a clear()
            self.arrival_secret_ids[position] = secret_id

    def record_throttled(self, sequence: int) -> None:
        self.throttled += 1
        position = sequence - self._offset
        if position >= 0:
            self.arrival_accepted[position] = False

    # -- derived values --------------------------------------------------------------

    @property
    def http_429(self) -> int:
        """Every HTTP 429 answered: QPS-limiter rejections and injected ``http_429`` faults."""
        return self.status_counts.get(429, 0)

    @property
    def images_histogram(self) -> dict[int, int]:
        """How many recognition requests carried each number of images."""
        return dict(sorted(self._histogram.items()))

    @property
    def mean_images_per_request(self) -> float:
        n = sum(self._histogram.values())
        return sum(k * v for k, v in self._histogram.items()) / n if n else 0.0

    @property
    def accepted_arrivals(self) -> list[float]:
        return [t for t, ok in zip(self.arrivals, self.arrival_accepted, strict=False) if ok]

    def snapshot(self) -> FakeServerStats:
        """An independent copy of the numbers as they are now."""
        return FakeServerStats.from_dict(self.to_dict())

    def arrivals_for(
        self, secret_id: str | None = None, *, accepted_only: bool = False
    ) -> list[float]:
        """Arrival times, optionally only one secret id's and only accepted ones.

        (``strict=False``: a server thread may be appending to the lists meanwhile.)
        """
        return [
            t
            for t, sid, ok in zip(
                self.arrivals, self.arrival_secret_ids, self.arrival_accepted, strict=False
            )
            if (secret_id is None or sid == secret_id) and (ok or not accepted_only)
        ]

    def max_in_window(
        self, window: float = 1.0, secret_id: str | None = None, *, accepted_only: bool = False
    ) -> int:
        """Most arrivals in any trailing window ``(t - window, t]`` (all, or accepted only)."""
        return max_arrivals_in_window(
            self.arrivals_for(secret_id, accepted_only=accepted_only), window
        )

    def max_accepted_in_window(self, window: float = 1.0, secret_id: str | None = None) -> int:
        """Most accepted (non-429) arrivals in any trailing window ``(t - window, t]``."""
        return self.max_in_window(window, secret_id, accepted_only=True)

    def arrivals_between(self, start: float, end: float) -> int:
        """Arrivals with ``start <= t < end`` (monotonic seconds)."""
        ordered = sorted(self.arrivals)
        return bisect.bisect_left(ordered, end) - bisect.bisect_left(ordered, start)

    # -- serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``GET /_fake/stats`` body); ``from_dict`` reverses it."""
        return {
            "total_requests": self.total_requests,
            "requests_by_path": dict(self.requests_by_path),
            "images_per_request": list(self.images_per_request),
            "images_histogram": {str(k): v for k, v in self.images_histogram.items()},
            "mean_images_per_request": self.mean_images_per_request,
            "throttled": self.throttled,
            "http_429": self.http_429,
            "status_counts": {str(k): v for k, v in self.status_counts.items()},
            "code_counts": {str(k): v for k, v in self.code_counts.items()},
            "faults": dict(self.faults),
            "arrivals": list(self.arrivals),
            "arrival_secret_ids": list(self.arrival_secret_ids),
            "arrival_accepted": list(self.arrival_accepted),
            "gate_times": list(self.gate_times),
            "foreign_accepted": self.foreign_accepted,
            "foreign_throttled": self.foreign_throttled,
            "max_in_1s": self.max_in_window(1.0) if self.arrivals else 0,
            "max_accepted_in_1s": self.max_accepted_in_window(1.0) if self.arrivals else 0,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FakeServerStats:
        stats = cls()
        stats.total_requests = int(data["total_requests"])
        histogram = data.get("images_histogram")
        if histogram is None:
            stats._histogram.update(int(n) for n in data["images_per_request"])
        else:
            stats._histogram.update({int(k): int(v) for k, v in histogram.items()})
        stats.requests_by_path.update({str(k): int(v) for k, v in data["requests_by_path"].items()})
        stats.images_per_request = [int(n) for n in data["images_per_request"]]
        stats.throttled = int(data["throttled"])
        stats.status_counts.update({int(k): int(v) for k, v in data["status_counts"].items()})
        stats.code_counts.update({int(k): int(v) for k, v in data["code_counts"].items()})
        stats.faults.update({str(k): int(v) for k, v in data["faults"].items()})
        stats.arrivals = [float(t) for t in data["arrivals"]]
        secret_ids: Sequence[str | None] = data["arrival_secret_ids"]
        stats.arrival_secret_ids = list(secret_ids)
        stats.arrival_accepted = [bool(ok) for ok in data["arrival_accepted"]]
        stats.gate_times = [float(t) for t in data.get("gate_times", stats.arrivals)]
        stats.foreign_accepted = int(data.get("foreign_accepted", 0))
        stats.foreign_throttled = int(data.get("foreign_throttled", 0))
        return stats

    def __repr__(self) -> str:
        return (
            f"FakeServerStats(total_requests={self.total_requests}, throttled={self.throttled}, "
            f"faults={dict(self.faults)}, mean_images_per_request="
            f"{self.mean_images_per_request:.2f})"
        )


@dataclasses.dataclass(slots=True, kw_only=True, eq=False, repr=False)
class RecordedRequest:
    """What the server understood of one recognition request (after tail completion).

    ``kind`` is ``"url"``, ``"file"`` or ``"base64"``; ``names`` holds each image's name
    (None on base64); ``tags`` and ``sequence_ids`` are aligned to the images, or None when
    the request carried none; ``tasks`` are the task ids asked for (empty: all).
    """

    path: str
    secret_id: str
    kind: str
    names: list[str | None]
    tags: list[str] | None
    sequence_ids: list[str] | None
    tasks: list[str]
    referer: str | None

    def __repr__(self) -> str:
        return (
            f"RecordedRequest(kind={self.kind!r}, secret_id={self.secret_id!r}, "
            f"names={self.names!r}, tags={self.tags!r}, tasks={self.tasks!r})"
        )
