"""Coalescing concurrent single-image calls into shared requests (``recognize_one``).

Callers with the same request options join one pending group; the group is sent when it
holds ``max_images`` images or when its oldest caller has waited ``linger`` seconds,
whichever comes first. A lone caller is therefore delayed by at most ``linger``. A
caller cancelled before its group is sent is taken out of it; one cancelled after
simply stops waiting (the request still serves the others).

Bounded: at most ``max_in_flight`` requests are sent at once (a full group waits for a
free slot, growing to ``max_images`` meanwhile), and at most ``(max_in_flight + 1) *
max_images`` callers are admitted at once; further callers wait in ``submit`` (FIFO)
until one leaves. Background tasks: one flush loop per pending option set, plus one
per request in flight.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable

import anyio

from ._batching import Batch, pack
from ._images import PreparedImage
from ._requests import Transport
from ._types import ImageResult

__all__ = ["Coalescer"]

BatchFn = Callable[[Batch, Hashable], Awaitable[list[ImageResult]]]
SpawnFn = Callable[..., None]


class _Waiter:
    __slots__ = ("arrived", "done", "error", "image", "result", "sent")

    def __init__(self, image: PreparedImage) -> None:
        self.image = image
        self.arrived = time.monotonic()
        self.done = anyio.Event()
        self.result: ImageResult | None = None
        self.error: BaseException | None = None
        self.sent = False


class _Group:
    __slots__ = ("full", "waiters")

    def __init__(self) -> None:
        self.waiters: list[_Waiter] = []
        self.full = anyio.Event()


class Coalescer:
    """Shares requests between concurrent single-image callers. See the module docstring."""

    def __init__(
        self,
        *,
        send_batch: BatchFn,
        spawn: SpawnFn,
        max_images: int,
        linger: float,
        transport_of: Callable[[Hashable], Transport],
        max_in_flight: int,
    ) -> None:
        self._send_batch = send_batch
        self._spawn = spawn
        self._max = max_images
        self._linger = linger
        self._transport_of = transport_of
        self._groups: dict[Hashable, _Group] = {}
        self._slots = anyio.Semaphore(max_in_flight)
        self.max_admitted = (max_in_flight + 1) * max_images
        self._admission = anyio.Semaphore(self.max_admitted)

    @property
    def admitted(self) -> int:
        """Callers admitted now (preparing, pending in a group or in a request in flight)."""
        return self.max_admitted - self._admission.value

    @property
    def admission(self) -> anyio.Semaphore:
        """Hold it from before the caller prepares its image until its result is back."""
        return self._admission

    async def submit(self, key: Hashable, image: PreparedImage) -> ImageResult:
        """The result for ``image``; call it holding :attr:`admission`."""
        waiter = _Waiter(image)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
            self._spawn(self._flush_loop, key, group)
        group.waiters.append(waiter)
        if len(group.waiters) >= self._max:
            group.full.set()
        try:
            await waiter.done.wait()
        except BaseException:
            if not waiter.sent and waiter in group.waiters:
                group.waiters.remove(waiter)
            raise
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    async def _flush_loop(self, key: Hashable, group: _Group) -> None:
        try:
            while group.waiters:
                if len(group.waiters) < self._max:
                    deadline = group.waiters[0].arrived + self._linger
                    with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                        await group.full.wait()
                group.full = anyio.Event()
                await self._slots.acquire()
                taken = group.waiters[: self._max]
                del group.waiters[: self._max]
                if len(group.waiters) >= self._max:
                    group.full.set()
                for w in taken:
                    w.sent = True
                if taken:
                    try:
                        self._spawn(self._run, key, taken)
                    except BaseException:
                        self._slots.release()
                        for w in taken:
                            w.sent = False
                        group.waiters[:0] = taken  # the finally below fails them
                        raise
                else:  # every waiter left while the group waited for a slot
                    self._slots.release()
        finally:
            if self._groups.get(key) is group:
                del self._groups[key]
            for w in group.waiters:  # only on cancellation of the loop itself
                if not w.done.is_set():
                    w.error = anyio.get_cancelled_exc_class()()
                    w.done.set()

    async def _run(self, key: Hashable, waiters: list[_Waiter]) -> None:
        try:
            await self._send(key, waiters)
        finally:
            self._slots.release()

    async def _send(self, key: Hashable, waiters: list[_Waiter]) -> None:
        for position, w in enumerate(waiters):
            w.image.index = position
        try:
            for batch in pack(
                (w.image for w in waiters), max_images=self._max, transport=self._transport_of(key)
            ):
                results = await self._send_batch(batch, key)
                for result in results:
                    w = waiters[result.index]
                    result.index = 0
                    w.result = result
                    w.done.set()
        except BaseException as exc:
            for w in waiters:
                if not w.done.is_set():
                    w.error = exc
                    w.done.set()
            if not isinstance(exc, Exception):
                raise
