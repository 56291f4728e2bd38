"""Regrouping: the API answers task-major (one ``fileList`` per task, plus ``summary``);
callers want one ``ImageResult`` per input image, in input order.

Entries are matched by position when the list lines up with the request, else by name,
in order, so duplicate names in one request still map one-to-one. The base64 endpoint
returns no names: its entries map by position (skipping images that ``summary`` says
failed when a task's list is shorter than the request).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from ._exceptions import IMAGE_ERROR_CODE, TupuError, error_for_code
from ._labels import as_risk_type, as_suggestion
from ._types import ImageResult, RecognitionResponse, SummaryItem, TaskFile

__all__ = ["SentImage", "align", "regroup", "regroup_unknown_inputs"]

_E = TypeVar("_E")


class SentImage(Protocol):
    """What regrouping needs to know about each image of the request, in request order."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def wire_name(self) -> str: ...
    @property
    def tag(self) -> str | None: ...
    @property
    def sequence_id(self) -> str | None: ...


def align(
    entries: Sequence[_E],
    wire_names: Sequence[str | None],
    *,
    by_position: bool,
    usable: Sequence[bool] | None = None,
) -> list[_E | None]:
    """Map ``entries`` (with a ``name``) onto request positions; None where none matched."""
    n = len(wire_names)
    out: list[_E | None] = [None] * n
    names = [getattr(e, "name", None) for e in entries]
    if by_position or all(x is None for x in names):
        if len(entries) == n:
            return list(entries)
        slots = [i for i in range(n) if usable is None or usable[i]]
        if len(slots) == len(entries):
            for slot, entry in zip(slots, entries, strict=True):
                out[slot] = entry
        return out
    if len(entries) == n and all(
        got is None or got == want for got, want in zip(names, wire_names, strict=True)
    ):
        return list(entries)
    # By name, in order. When ``summary`` marked some images failed, entries go to the
    # usable images of that name, provided their count matches the entries of that name.
    wanted = Counter(names)
    every: dict[str | None, deque[int]] = defaultdict(deque)
    ok_only: dict[str | None, deque[int]] = defaultdict(deque)
    for i, wn in enumerate(wire_names):
        every[wn].append(i)
        if usable is None or usable[i]:
            ok_only[wn].append(i)
    queues = {
        name: ok_only[name] if len(ok_only[name]) == count else every[name]
        for name, count in wanted.items()
    }
    for entry, name in zip(entries, names, strict=True):
        q = queues.get(name)
        if q:
            out[q.popleft()] = entry
    return out


def _image_error(code: int, message: str, name: str) -> TupuError:
    err = error_for_code(code, message)
    err.args = (f"{name}: {err.args[0]}",)
    return err


def regroup(
    response: RecognitionResponse,
    sent: Sequence[SentImage],
    *,
    by_position: bool = False,
) -> list[ImageResult]:
    """One ``ImageResult`` per sent image, in the order they were sent."""
    wire_names: list[str | None] = [s.wire_name for s in sent]
    n = len(sent)
    summary: list[SummaryItem | None] = (
        align(response.summary, wire_names, by_position=by_position)
        if response.summary is not None
        else [None] * n
    )
    usable = [s is None or s.code == 0 for s in summary]
    per_image: list[dict[str, TaskFile]] = [{} for _ in range(n)]
    for task_id, task in response.tasks.items():
        matched: list[Any] = align(
            task.file_list, wire_names, by_position=by_position, usable=usable
        )
        for i, entry in enumerate(matched):
            if entry is not None:
                per_image[i][task_id] = entry
    results: list[ImageResult] = []
    for i, s in enumerate(sent):
        item = summary[i]
        tasks = per_image[i]
        if item is not None:
            code = item.code
            message = item.message or ("success" if code == 0 else "")
        elif tasks or not response.tasks:
            code, message = response.code, response.message
        else:
            code = IMAGE_ERROR_CODE
            message = "the service returned no result for this image"
        error = _image_error(code, message, s.name) if code != 0 else None
        results.append(
            ImageResult(
                index=s.index,
                name=s.name,
                tag=s.tag,
                code=code,
                message=message,
                suggestion=as_suggestion(item.suggestion) if item is not None else None,
                risk_type=as_risk_type(item.risk_type) if item is not None else None,
                risk_task=item.risk_task if item is not None else None,
                tasks=tasks,
                error=error,
                sequence_id=s.sequence_id,
                request_id=response.request_id,
            )
        )
    return results


class _Seen:
    __slots__ = ("index", "name", "sequence_id", "tag", "wire_name")

    def __init__(self, index: int, name: str, tag: str | None) -> None:
        self.index = index
        self.name = name
        self.wire_name = name
        self.tag = tag
        self.sequence_id: str | None = None


def regroup_unknown_inputs(response: RecognitionResponse) -> list[ImageResult]:
    """Regroup a response whose request we did not send (a callback body).

    The images are taken in the order of ``summary``, else of the longest ``fileList``.
    """
    source: Sequence[Any]
    if response.summary is not None:
        source = response.summary
    else:
        lists = [t.file_list for t in response.tasks.values()]
        source = max(lists, key=len) if lists else []
    seen = [
        _Seen(i, getattr(e, "name", None) or f"#{i}", getattr(e, "tag", None))
        for i, e in enumerate(source)
    ]
    by_position = all(getattr(e, "name", None) is None for e in source)
    return regroup(response, seen, by_position=by_position)
