"""The batch engine behind ``recognize_many`` and ``iter_recognize``: inputs pulled
lazily, validated, packed and sent with at most ``max_in_flight`` requests in flight.
Every input index yields exactly one result; memory is bounded by the window."""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from ._batching import Batch, Packer
from ._exceptions import InvalidImageError, TupuError
from ._images import PreparedImage, display_path
from ._types import ImageResult

__all__ = ["BatchEngine", "failed_batch", "failed_result"]

PrepareFn = Callable[[object, int], Awaitable[PreparedImage]]
BatchFn = Callable[[Batch], Awaitable[list[ImageResult]]]


def failed_result(
    index: int,
    name: str,
    error: TupuError,
    *,
    tag: str | None = None,
    sequence_id: str | None = None,
) -> ImageResult:
    """The result of an image that got no answer: ``ok`` False, ``error`` set."""
    code = getattr(error, "code", None)
    return ImageResult(
        index=index,
        name=name,
        tag=tag,
        code=code if isinstance(code, int) and code else -1,
        message=str(error),
        error=error,
        sequence_id=sequence_id,
    )


def failed_batch(batch: Batch, error: TupuError) -> list[ImageResult]:
    """One :func:`failed_result` per image of ``batch``, all with ``error``."""
    return [
        failed_result(im.index, im.name, error, tag=im.tag, sequence_id=im.sequence_id)
        for im in batch
    ]


def _input_name(item: object, index: int) -> str:
    """The name a failed input's result reports; never raises, whatever ``item`` is."""
    try:
        name = getattr(item, "name", None)
        if isinstance(name, str):
            return display_path(name[:500])
        if isinstance(item, str):
            return display_path(item[:500])
    except Exception:
        pass
    return f"image #{index}"


def _input_tag(item: object) -> str | None:
    """The tag of a failed input when it is a usable str; never raises."""
    try:
        tag = getattr(item, "tag", None)
    except Exception:
        return None
    return tag if isinstance(tag, str) and tag == display_path(tag) else None


@dataclass(slots=True, eq=False, kw_only=True, repr=False)
class BatchEngine:
    """Runs one ``recognize_many``/``iter_recognize`` call.

    ``prepare(item, index)`` validates one input; ``send_batch(batch)`` performs one
    request (retries included) and returns one result per image, raising only fatal
    errors. ``linger`` bounds how long a partial batch waits for an async source that
    has stalled.
    """

    prepare: PrepareFn
    send_batch: BatchFn
    packer: Packer
    max_in_flight: int
    linger: float
    _window: anyio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._window = anyio.Semaphore(self.max_in_flight)

    async def run(
        self,
        images: Iterable[Any] | AsyncIterable[Any],
        out: MemoryObjectSendStream[ImageResult],
    ) -> None:
        """Push exactly one result per input into ``out``; close it when done."""
        async with out, anyio.create_task_group() as tg:
            if isinstance(images, AsyncIterable):
                await self._run_async(images, out, tg)
            else:
                for index, item in enumerate(images):
                    await self._take(item, index, out, tg)
            for batch in self.packer.flush():
                await self._dispatch(batch, out, tg)

    async def _run_async(
        self,
        images: AsyncIterable[Any],
        out: MemoryObjectSendStream[ImageResult],
        tg: TaskGroup,
    ) -> None:
        # A reader task feeds a stream so a stalled source can be waited on with a timeout
        # (cancelling a receive is safe; cancelling the source's __anext__ is not).
        send, receive = anyio.create_memory_object_stream[Any](1)

        async def reader() -> None:
            async with send:
                async for item in images:
                    await send.send(item)

        tg.start_soon(reader)
        index = 0
        async with receive:
            while True:
                timeout = self.linger if self.packer.pending else math.inf
                with anyio.move_on_after(timeout) as scope:
                    try:
                        item = await receive.receive()
                    except anyio.EndOfStream:
                        return
                if scope.cancelled_caught:
                    for batch in self.packer.flush():
                        await self._dispatch(batch, out, tg)
                    continue
                await self._take(item, index, out, tg)
                index += 1

    async def _take(
        self,
        item: object,
        index: int,
        out: MemoryObjectSendStream[ImageResult],
        tg: TaskGroup,
    ) -> None:
        try:
            prepared = await self.prepare(item, index)
        except InvalidImageError as exc:
            await out.send(
                failed_result(index, _input_name(item, index), exc, tag=_input_tag(item))
            )
            return
        for batch in self.packer.add(prepared):
            await self._dispatch(batch, out, tg)

    async def _dispatch(
        self, batch: Batch, out: MemoryObjectSendStream[ImageResult], tg: TaskGroup
    ) -> None:
        await self._window.acquire()
        tg.start_soon(self._run_batch, batch, out.clone())

    async def _run_batch(self, batch: Batch, out: MemoryObjectSendStream[ImageResult]) -> None:
        # The slot is held until the results are handed over: a slow consumer slows us.
        try:
            async with out:
                results = await self.send_batch(batch)
                for result in results:
                    await out.send(result)
        finally:
            self._window.release()
