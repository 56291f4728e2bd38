"""Deterministic recognition results of the fake server: ``Recognizer``.

The same image (content or URL) always gets the same results for a given seed; the
per-task entries come from :mod:`._verdicts` and the summary is derived from them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from .._constants import MAX_IMAGE_BYTES, Task
from ._formats import sniff_image_format
from ._parsing import ReceivedImage
from ._verdicts import (
    MAGIC_OUTCOMES,
    SEVERITY_RANK,
    SUGGESTION_PASS,
    VERDICTS,
    Draws,
    Verdict,
    judge,
)

__all__ = ["POOL_SIZE", "Recognizer"]

_MAGIC_PATTERN: Final = re.compile(b"|".join(re.escape(word.encode()) for word in MAGIC_OUTCOMES))
_NO_MAGIC: Final[frozenset[bytes]] = frozenset()
_MAGIC_SCAN_BYTES: Final = 64 * 1024  # magic words: the whole URL, or content's two ends
_CACHE_LIMIT: Final = 8192
POOL_SIZE: Final = 256  # one variant per value of a digest byte

# Task-level label statistics: how many labels each counts.
_STATISTIC_SIZES: Final = {Task.PORN: 3, Task.AD: 4, Task.VIOLATION: 9}
_REVIEW_COUNT_TASKS: Final = frozenset(
    {Task.PORN, Task.AD, Task.VIOLENCE, Task.VULGAR, Task.VIOLATION}
)


_encode = msgspec.json.Encoder().encode


class _TaskVerdict:
    """One task's cached verdict on one image, with its fileList entry pre-encoded."""

    __slots__ = ("entry", "fragment", "label", "rank", "review", "risk_type", "suggestion")

    def __init__(self, verdict: Verdict) -> None:
        entry, self.suggestion, self.risk_type = verdict
        self.rank = SEVERITY_RANK[self.suggestion]
        self.entry = entry
        self.label: int = entry["label"]
        self.review: bool = entry["review"]
        # The entry's JSON without its closing brace: name and tag are appended per request.
        self.fragment = _encode(entry)[:-1]


def _task_members(task: str, verdicts: list[_TaskVerdict]) -> bytes:
    """The JSON members after ``"fileList": [...]`` of one task's result."""
    members = b""
    if task in _REVIEW_COUNT_TASKS or task not in VERDICTS:
        members += b',"reviewCount":%d' % sum(1 for v in verdicts if v.review)
    size = _STATISTIC_SIZES.get(task)
    if size is not None:
        statistic = [0] * size
        for verdict in verdicts:
            if 0 <= verdict.label < size:
                statistic[verdict.label] += 1
        members += b',"statistic":' + _encode(statistic)
    if task == Task.VIOLENCE:
        counts: dict[int, int] = {}
        for verdict in verdicts:
            counts[verdict.label] = counts.get(verdict.label, 0) + 1
        top = [{"count": c, "label": label} for label, c in sorted(counts.items())]
        members += b',"topNStatistic":' + _encode(top)
    return members


@dataclasses.dataclass(slots=True)
class _Row:
    """One image's whole contribution to a response, for one name, tag and task list."""

    fragments: tuple[bytes, ...]  # each task's complete fileList entry, as JSON
    verdicts: tuple[_TaskVerdict, ...]
    summary: dict[str, Any]


@dataclasses.dataclass(slots=True)
class _Outcome:
    """What decides one image's results: its SHA-256 and the magic words it contains."""

    digest: bytes
    magic: frozenset[bytes]


class Recognizer:
    """Turns the images of one request into task results and a summary.

    Guarantees: deterministic for a given seed; one summary entry per input image, in
    input order; images with per-image errors (code 14) appear only in the summary. Each
    verdict is one of ``POOL_SIZE`` precomputed variants per (task, magic words), picked
    by a byte of the image's SHA-256.
    """

    def __init__(self, *, seed: int = 0, download_fails: Callable[[str], bool]) -> None:
        self._seed_bytes = str(seed).encode()
        self._download_fails = download_fails
        self._cache: dict[bytes, _Outcome] = {}
        self._pools: dict[tuple[str, frozenset[bytes]], list[_TaskVerdict]] = {}
        self._offsets: dict[str, int] = {}
        self._plans: dict[
            tuple[tuple[str, ...], frozenset[bytes]], tuple[tuple[int, list[_TaskVerdict]], ...]
        ] = {}
        self._rows: dict[tuple[bytes, str | None, str | None, tuple[str, ...]], _Row] = {}

    def image_error(self, image: ReceivedImage) -> str | None:
        """The per-image (code 14) error message for ``image``, or None when it is usable."""
        if image.error is not None:
            return image.error
        if image.url is not None:
            if self._download_fails(image.url):
                return "download failed"
            return None
        content = image.content or b""
        if not content:
            return "image is empty"
        if len(content) > MAX_IMAGE_BYTES:
            return f"image too large: {len(content)} bytes, the limit is {MAX_IMAGE_BYTES}"
        if sniff_image_format(content) is None:
            return "unsupported image format: send png, jpg, bmp, tif, webp, gif or heif"
        return None

    def _outcome(self, image: ReceivedImage) -> _Outcome:
        key = image.url.encode() if image.url is not None else (image.content or b"")
        digest = hashlib.sha256(key).digest()
        outcome = self._cache.get(digest)
        if outcome is None:
            if image.url is not None:
                haystack = key.lower()
            elif len(key) > 2 * _MAGIC_SCAN_BYTES:  # big content: scan its two ends only
                haystack = key[:_MAGIC_SCAN_BYTES] + b"\n" + key[-_MAGIC_SCAN_BYTES:]
            else:
                haystack = key
            found = _MAGIC_PATTERN.findall(haystack)
            magic = frozenset(found) if found else _NO_MAGIC
            outcome = _Outcome(digest, magic)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[digest] = outcome
        return outcome

    def warm(self, tasks: Sequence[str]) -> None:
        """Build the verdict pools of ``tasks`` now (each magic word included), not on first use."""
        for magic in (_NO_MAGIC, *(frozenset([w.encode()]) for w in MAGIC_OUTCOMES)):
            for task in tasks:
                self._pool(task, magic)

    def _pool(self, task: str, magic: frozenset[bytes]) -> list[_TaskVerdict]:
        pool = self._pools.get((task, magic))
        if pool is None:
            verdict_of = judge(task)
            prefix = b"|".join([self._seed_bytes, task.encode(), *sorted(magic)]) + b"|"
            pool = [
                _TaskVerdict(verdict_of(Draws(prefix + b"%d" % i), magic)) for i in range(POOL_SIZE)
            ]
            self._pools[(task, magic)] = pool
        return pool

    def _offset(self, task: str) -> int:
        """Which byte of an image's SHA-256 picks ``task``'s variant."""
        offset = self._offsets.get(task)
        if offset is None:
            offset = self._offsets[task] = zlib.crc32(task.encode()) % 32
        return offset

    def _plan(
        self, tasks: tuple[str, ...], magic: frozenset[bytes]
    ) -> tuple[tuple[int, list[_TaskVerdict]], ...]:
        plan = self._plans.get((tasks, magic))
        if plan is None:
            plan = tuple((self._offset(task), self._pool(task, magic)) for task in tasks)
            self._plans[(tasks, magic)] = plan
        return plan

    def _row(self, image: ReceivedImage, tag: str | None, tasks: tuple[str, ...]) -> _Row:
        outcome = self._outcome(image)
        key = (outcome.digest, image.name, tag, tasks)
        row = self._rows.get(key)
        if row is None:
            suffix = b""
            if image.name is not None:
                suffix += b',"name":' + _encode(image.name)
            if tag is not None:
                suffix += b',"tag":' + _encode(tag)
            suffix += b"}"
            digest = outcome.digest
            verdicts = tuple(
                [pool[digest[offset]] for offset, pool in self._plan(tasks, outcome.magic)]
            )
            suggestion, risk_type, risk_task = SUGGESTION_PASS, 0, ""
            worst = 0
            for position, verdict in enumerate(verdicts):
                if verdict.rank > worst:
                    worst = verdict.rank
                    suggestion, risk_type = verdict.suggestion, verdict.risk_type
                    risk_task = tasks[position]
            entry: dict[str, Any] = {"code": 0, "message": "success"}
            if image.name is not None:
                entry["name"] = image.name
            entry["suggestion"] = suggestion
            entry["riskType"] = risk_type
            if risk_task:
                entry["riskTask"] = risk_task
            if tag is not None:
                entry["tag"] = tag
            row = _Row(tuple(v.fragment + suffix for v in verdicts), verdicts, entry)
            if len(self._rows) >= _CACHE_LIMIT:
                self._rows.clear()
            self._rows[key] = row
        return row

    def recognize(
        self,
        images: Sequence[ReceivedImage],
        *,
        tasks: Sequence[str],
        tags: Sequence[str] | None,
        summary: bool,
    ) -> bytes:
        """The JSON members (no braces) of the task results by task id and the summary."""
        task_ids = tuple(tasks)
        rows: list[_Row] = []
        summary_entries: list[dict[str, Any]] = []
        for index, image in enumerate(images):
            tag = tags[index] if tags is not None else None
            error = self.image_error(image)
            if error is None:
                row = self._row(image, tag, task_ids)
                rows.append(row)
                summary_entries.append(row.summary)
                continue
            failed: dict[str, Any] = {"code": 14, "message": error}
            if image.name is not None:
                failed["name"] = image.name
            if tag is not None:
                failed["tag"] = tag
            summary_entries.append(failed)
        members = [
            _encode(task)
            + b':{"fileList":['
            + b",".join([row.fragments[position] for row in rows])
            + b"]"
            + _task_members(task, [row.verdicts[position] for row in rows])
            + b"}"
            for position, task in enumerate(task_ids)
        ]
        if summary:
            members.append(b'"summary":' + _encode(summary_entries))
        return b",".join(members)
