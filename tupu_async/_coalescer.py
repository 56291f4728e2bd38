"""Coalescing concurrent single-image calls into shared requests (``recognize_one``).

Callers with the same :class:`CallOptions` (and images of the same kind) join one pending
group; the group is sent when it holds ``max_images`` images or when its oldest caller has
waited ``linger`` seconds, whichever comes first. A caller cancelled before its group is
sent leaves it; one cancelled after stops waiting (the request still serves the others).
At most ``max_in_flight`` requests are sent at once, and at most ``(max_in_flight + 1) *
max_images`` callers are admitted at once (the rest wait, FIFO).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from ._batching import Batch, pack
from ._call_options import CallOptions
from ._images import PreparedImage
from ._types import ImageResult

__all__ = ["Coalescer"]

BatchFn = Callable[[Batch, CallOptions], Awaitable[list[ImageResult]]]
SpawnFn = Callable[..., None]
_Key = tuple[CallOptions, bool]
"""A group's options, and whether its images are URLs (a request never mixes kinds)."""


@dataclass(slots=True, eq=False)
class _Waiter:
    image: PreparedImage
    arrived: float = field(default_factory=time.monotonic)
    done: anyio.Event = field(default_factory=anyio.Event)
    result: ImageResult | None = None
    error: BaseException | None = None
    sent: bool = False


@dataclass(slots=True, eq=False)
class _Group:
    waiters: list[_Waiter] = field(default_factory=list)
    full: anyio.Event = field(default_factory=anyio.Event)


@dataclass(slots=True, eq=False, kw_only=True, repr=False)
class Coalescer:
    """Shares requests between concurrent single-image callers (see the module docstring).

    ``send_batch(batch, options)`` performs one request and returns one result per image,
    raising only fatal errors; ``spawn(fn, *args)`` starts a background task.
    """

    send_batch: BatchFn
    spawn: SpawnFn
    max_images: int
    linger: float
    max_in_flight: int
    max_admitted: int = field(init=False)
    _groups: dict[_Key, _Group] = field(init=False, default_factory=dict)
    _slots: anyio.Semaphore = field(init=False)
    _admission: anyio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = anyio.Semaphore(self.max_in_flight)
        self.max_admitted = (self.max_in_flight + 1) * self.max_images
        self._admission = anyio.Semaphore(self.max_admitted)

    @property
    def admitted(self) -> int:
        """Callers admitted now (preparing, pending in a group or in a request in flight)."""
        return self.max_admitted - self._admission.value

    @property
    def admission(self) -> anyio.Semaphore:
        """Hold it from before the caller prepares its image until its result is back."""
        return self._admission

    async def submit(self, options: CallOptions, image: PreparedImage) -> ImageResult:
        """The result for ``image``; call it holding :attr:`admission`."""
        waiter = _Waiter(image)
        key = (options, image.is_url)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
            self.spawn(self._flush_loop, key, group)
        group.waiters.append(waiter)
        if len(group.waiters) >= self.max_images:
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

    async def _flush_loop(self, key: _Key, group: _Group) -> None:
        try:
            while group.waiters:
                if len(group.waiters) < self.max_images:
                    deadline = group.waiters[0].arrived + self.linger
                    with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                        await group.full.wait()
                group.full = anyio.Event()
                await self._slots.acquire()
                taken = group.waiters[: self.max_images]
                del group.waiters[: self.max_images]
                if len(group.waiters) >= self.max_images:
                    group.full.set()
                for w in taken:
                    w.sent = True
                if taken:
                    try:
                        self.spawn(self._run, key, taken)
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

    async def _run(self, key: _Key, waiters: list[_Waiter]) -> None:
        try:
            await self._send(key, waiters)
        finally:
            self._slots.release()

    async def _send(self, key: _Key, waiters: list[_Waiter]) -> None:
        for position, w in enumerate(waiters):
            w.image.index = position
        try:
            options = key[0]
            images = (w.image for w in waiters)
            for batch in pack(images, max_images=self.max_images, transport=options.transport):
                results = await self.send_batch(batch, options)
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
