"""``TupuClient.libraries``: the blocking face of :class:`~tupu_async.Libraries`."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from ._resource import Libraries

__all__ = ["SyncLibraries"]

P = ParamSpec("P")
T = TypeVar("T")


class _Caller(Protocol):
    def __call__(self, what: str, fn: Callable[[], Awaitable[T]]) -> T: ...


def _blocking(
    method: Callable[Concatenate[Libraries, P], Awaitable[T]],
) -> Callable[Concatenate[SyncLibraries, P], T]:
    """``method`` of :class:`Libraries`, run to completion on the ``TupuClient``'s loop."""
    what = f"libraries.{method.__name__}"

    @functools.wraps(method)
    def run(self: SyncLibraries, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._call(what, functools.partial(method, self._libraries, *args, **kwargs))

    return run


class SyncLibraries:
    """The image-library (名单) management API, blocking: the calls and results of
    :class:`~tupu_async.Libraries`, run on the ``TupuClient``'s event loop."""

    __slots__ = ("_call", "_libraries")

    def __init__(self, libraries: Libraries, call: _Caller) -> None:
        self._libraries = libraries
        self._call = call

    search = _blocking(Libraries.search)
    """Blocking :meth:`Libraries.search <tupu_async.Libraries.search>`."""
    list_images = _blocking(Libraries.list_images)
    """Blocking :meth:`Libraries.list_images <tupu_async.Libraries.list_images>`."""
    add_urls = _blocking(Libraries.add_urls)
    """Blocking :meth:`Libraries.add_urls <tupu_async.Libraries.add_urls>`."""
    add_images = _blocking(Libraries.add_images)
    """Blocking :meth:`Libraries.add_images <tupu_async.Libraries.add_images>`."""
    delete = _blocking(Libraries.delete)
    """Blocking :meth:`Libraries.delete <tupu_async.Libraries.delete>`."""
    sync_library = _blocking(Libraries.sync_library)
    """Blocking :meth:`Libraries.sync_library <tupu_async.Libraries.sync_library>`."""
