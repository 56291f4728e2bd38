"""Deterministic recognition results for the fake server, shaped like the real service's.

Every image's outcome derives from the SHA-256 of its content (or of its URL) and the
server seed, so the same image always gets the same labels. Magic substrings in the
content or URL force outcomes (see ``MAGIC_OUTCOMES``); everything else is mostly normal
(pass) with a small deterministic fraction sent to review.

The task results mirror the real responses (../vectors): ``fileList`` entries with
``label``/``rate``/``review`` (plus ``subLabel`` for pornography, ``objects``/``faceId``/
``facePosition`` for political figures, ``labels``/``rates`` for violence, ``objects`` for
OCR text), and the task-level ``statistic``/``reviewCount``/``topNStatistic``. The summary
is derived from the same entries, so both always agree.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec

from .._constants import (
    MAX_IMAGE_BYTES,
    TASK_AD,
    TASK_OCR_TEXT,
    TASK_POLITICAL,
    TASK_PORN,
    TASK_VIOLATION,
    TASK_VIOLENCE,
    TASK_VULGAR,
)
from ._formats import sniff_image_format

__all__ = [
    "MAGIC_OUTCOMES",
    "SUGGESTION_BLOCK",
    "SUGGESTION_PASS",
    "SUGGESTION_REVIEW",
    "ImageInput",
    "Recognizer",
    "complete_tail",
]

SUGGESTION_PASS: Final = 0
SUGGESTION_BLOCK: Final = 1
SUGGESTION_REVIEW: Final = 2
_SEVERITY_RANK: Final = {SUGGESTION_PASS: 0, SUGGESTION_REVIEW: 1, SUGGESTION_BLOCK: 2}

MAGIC_OUTCOMES: Final[Mapping[str, str]] = {
    "porn": "pornography label 0 (porn): suggestion block",
    "sexy": "pornography label 1 (sexy): suggestion review",
    "needs-review": "pornography label 2 with review=true: suggestion review",
    "politic": "political figures label 0 (political figure): suggestion block",
    "violence": "violence label 1: suggestion block",
    "advert": "advertisement label 1: suggestion block",
    "badtext": "OCR text label 1 with one text object: suggestion block",
    "vulgar": "vulgar label 1: suggestion block",
    "smoking": "violation label 1: suggestion review",
    "drugs": "violation label 2: suggestion review",
    "tattoo": "violation label 3: suggestion review",
    "gambling": "violation label 4: suggestion review",
    "drinking": "violation label 5: suggestion review",
}
"""Substrings that force an outcome, and what they force.

Looked for anywhere in a URL (case-insensitive), or in the first or last 64 KiB of an
image's content (case-sensitive bytes).
"""

_MAGIC_PATTERN: Final = re.compile(b"|".join(re.escape(word.encode()) for word in MAGIC_OUTCOMES))
_NO_MAGIC: Final[frozenset[bytes]] = frozenset()
_REVIEW_FRACTION: Final = 1 / 32
# Magic words are looked for in a URL, or in the first and last 64 KiB of content.
_MAGIC_SCAN_BYTES: Final = 64 * 1024
_CACHE_LIMIT: Final = 8192
POOL_SIZE: Final = 256  # one variant per value of a digest byte

# riskType values from the summary documentation.
_RISK_POLITICS: Final = 1
_RISK_PORN: Final = 2
_RISK_VIOLENCE: Final = 3
_RISK_VIOLATION: Final = 4
_RISK_AD: Final = 5
_RISK_SENSITIVE_TEXT: Final = 6

Entry = dict[str, Any]
# One task's verdict on one image: the fileList entry (without name/tag), the
# suggestion it implies and the riskType it would report.
Verdict = tuple[Entry, int, int]


class ImageInput:
    """One image of a request: a URL, or content (named, or unnamed on base64)."""

    __slots__ = ("content", "error", "name", "url")

    def __init__(
        self,
        *,
        name: str | None,
        url: str | None = None,
        content: bytes | None = None,
        error: str | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.content = content
        self.error = error

    @property
    def is_url(self) -> bool:
        return self.url is not None

    def __repr__(self) -> str:
        what = f"url={self.url!r}" if self.url is not None else f"{len(self.content or b'')} bytes"
        return f"ImageInput(name={self.name!r}, {what})"


def complete_tail(values: Sequence[str], count: int) -> list[str] | None:
    """Tail completion from the docs: align ``values`` to ``count`` images.

    Fewer values than images: the last one repeats; more: the extra ones are ignored;
    none: None (the results then carry no such key).
    """
    if not values:
        return None
    if len(values) >= count:
        return list(values[:count])
    return [*values, *([values[-1]] * (count - len(values)))]


class _Draws:
    """Deterministic pseudo-random draws from BLAKE2b blocks of a seed (cheap to start,
    unlike ``random.Random``, which matters when every image of every request needs one)."""

    __slots__ = ("_block", "_blocks", "_position", "_seed")

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._blocks = 0
        self._block = hashlib.blake2b(seed).digest()
        self._position = 0

    def _take(self, size: int) -> bytes:
        if self._position + size > len(self._block):
            self._blocks += 1
            self._block = hashlib.blake2b(self._seed + b"%d" % self._blocks).digest()
            self._position = 0
        chunk = self._block[self._position : self._position + size]
        self._position += size
        return chunk

    def random(self) -> float:
        """A float in [0, 1)."""
        return int.from_bytes(self._take(7), "big") / 72057594037927936  # 2**56

    def randrange(self, stop: int) -> int:
        """An int in [0, stop)."""
        return int(self.random() * stop)

    def hex(self, digits: int) -> str:
        return "".join(self._take(1).hex() for _ in range((digits + 1) // 2))[:digits]


def _rate(rng: _Draws, low: float, high: float) -> float:
    return low + (high - low) * rng.random()


def _face_position(rng: _Draws) -> list[list[float]]:
    left = _rate(rng, 0.05, 0.55)
    top = _rate(rng, 0.05, 0.55)
    size = _rate(rng, 0.1, 0.4)
    right, bottom = min(left + size, 0.99), min(top + size, 0.99)
    return [[left, top], [right, top], [right, bottom], [left, bottom]]


def _porn(rng: _Draws, magic: frozenset[bytes]) -> Verdict:
    if b"porn" in magic:
        entry: Entry = {"label": 0, "rate": _rate(rng, 0.95, 0.999), "review": False}
        entry["subLabel"] = {"label": 10, "rate": _rate(rng, 0.8, 0.99), "review": False}
        entry["subLabels"] = [{"label": "隐晦性行为", "rate": _rate(rng, 0.8, 0.99)}]
        return entry, SUGGESTION_BLOCK, _RISK_PORN
    if b"sexy" in magic:
        entry = {"label": 1, "rate": _rate(rng, 0.85, 0.99), "review": False}
        entry["subLabel"] = {"label": 18, "rate": _rate(rng, 0.2, 0.9), "review": False}
        return entry, SUGGESTION_REVIEW, _RISK_PORN
    if b"needs-review" in magic or rng.random() < _REVIEW_FRACTION:
        return (
            {"label": 2, "rate": _rate(rng, 0.5, 0.65), "review": True},
            SUGGESTION_REVIEW,
            _RISK_PORN,
        )
    return {"label": 2, "rate": _rate(rng, 0.9, 0.9999), "review": False}, SUGGESTION_PASS, 0


def _political(rng: _Draws, magic: frozenset[bytes]) -> Verdict:
    if b"politic" in magic:
        number = rng.randrange(1000)
        position = _face_position(rng)
        similarity = _rate(rng, 0.9, 0.99)
        face = {
            "facePosition": position,
            "similarity": similarity,
            "typeName": "politician",
            "faceId": f"fake-politician-{number}",
            "review": False,
            "label": 0,
            "faceUrl": f"http://faces.fake-tupu.invalid/{number}.jpg",
            "featureId": rng.hex(24),
        }
        entry: Entry = {"objects": [face], **face}
        return entry, SUGGESTION_BLOCK, _RISK_POLITICS
    if rng.random() < 0.7:
        return (
            {"objects": [], "similarity": 0, "label": 3, "review": False, "faceId": ""},
            SUGGESTION_PASS,
            0,
        )
    position = _face_position(rng)
    face = {
        "faceId": "非政治人物",
        "facePosition": position,
        "faceUrl": "",
        "label": 2,
        "review": False,
        "similarity": 0,
        "typeName": "非政治人物",
    }
    entry = {
        "faceId": "非政治人物",
        "facePosition": position,
        "label": 2,
        "objects": [face],
        "review": False,
        "similarity": 0,
        "typeName": "非政治人物",
    }
    return entry, SUGGESTION_PASS, 0


def _top5(rng: _Draws, first: int, first_rate: float) -> tuple[list[int], list[float]]:
    labels = [first]
    while len(labels) < 5:
        candidate = rng.randrange(30)
        if candidate not in labels:
            labels.append(candidate)
    rates = [first_rate]
    remaining = 1.0 - first_rate
    for _ in range(4):
        share = remaining * _rate(rng, 0.1, 0.5)
        rates.append(share)
        remaining -= share
    return labels, rates


def _violence(rng: _Draws, magic: frozenset[bytes]) -> Verdict:
    if b"violence" in magic:
        rate = _rate(rng, 0.9, 0.999)
        labels, rates = _top5(rng, 1, rate)
        entry: Entry = {"label": 1, "labels": labels, "rate": rate, "rates": rates}
        entry["review"] = False
        return entry, SUGGESTION_BLOCK, _RISK_VIOLENCE
    rate = _rate(rng, 0.95, 0.9999)
    labels, rates = _top5(rng, 0, rate)
    entry = {"label": 0, "labels": labels, "rate": rate, "rates": rates, "review": False}
    return entry, SUGGESTION_PASS, 0


def _ad(rng: _Draws, magic: frozenset[bytes]) -> Verdict:
    if b"advert" in magic:
        return (
            {"label": 1, "rate": _rate(rng, 0.9, 0.99), "review": False},
            SUGGESTION_BLOCK,
            _RISK_AD,
        )
    if rng.random() < _REVIEW_FRACTION:
        return (
            {"label": 2, "rate": _rate(rng, 0.5, 0.75), "review": True},
            SUGGESTION_REVIEW,
            _RISK_AD,
        )
    return {"label": 2, "rate": _rate(rng, 0.85, 0.999), "review": False}, SUGGESTION_PASS, 0


def _ocr_text(rng: _Draws, magic: frozenset[bytes]) -> Verdict:
    if b"badtext" in magic:
        rate = _rate(rng, 0.9, 0.99)
        text_object = {
            "label": 1,
            "rate": rate,
            "text": "违规文本 forbidden text",
            "location": {"left": 12, "top": 34, "width": 200, "height": 40},
        }
        entry: Entry = {"label": 1, "objects": [text_object], "rate": rate, "review": False}
        return entry, SUGGESTION_BLOCK, _RISK_SENSITIVE_TEXT
    return {"label": 0, "objects": [], "rate": 1, "review": False}, SUGGESTION_PASS, 0


def _vulgar(rng: _Draws, magic: frozenset[bytes]) -> Verdict:
    if b"vulgar" in magic:
        return (
            {"label": 1, "rate": _rate(rng, 0.85, 0.99), "review": False},
            SUGGESTION_BLOCK,
            _RISK_VIOLATION,
        )
    return {"label": 0, "rate": _rate(rng, 0.85, 0.999), "review": False}, SUGGESTION_PASS, 0


_VIOLATION_WORDS: Final = (
    (b"smoking", 1),
    (b"drugs", 2),
    (b"tattoo", 3),
    (b"gambling", 4),
    (b"drinking", 5),
)


def _violation(rng: _Draws, magic: frozenset[bytes]) -> Verdict:
    for word, label in _VIOLATION_WORDS:
        if word in magic:
            return (
                {"label": label, "rate": _rate(rng, 0.8, 0.99), "review": False},
                SUGGESTION_REVIEW,
                _RISK_VIOLATION,
            )
    return {"label": 0, "rate": _rate(rng, 0.85, 0.999), "review": False}, SUGGESTION_PASS, 0


def _generic(rng: _Draws, magic: frozenset[bytes]) -> Verdict:
    return {"label": 0, "rate": _rate(rng, 0.85, 0.999), "review": False}, SUGGESTION_PASS, 0


_VERDICTS: Final[dict[str, Callable[[_Draws, frozenset[bytes]], Verdict]]] = {
    TASK_PORN: _porn,
    TASK_POLITICAL: _political,
    TASK_VIOLENCE: _violence,
    TASK_AD: _ad,
    TASK_OCR_TEXT: _ocr_text,
    TASK_VULGAR: _vulgar,
    TASK_VIOLATION: _violation,
}
# Task-level label statistics: how many labels each counts.
_STATISTIC_SIZES: Final = {TASK_PORN: 3, TASK_AD: 4, TASK_VIOLATION: 9}
_REVIEW_COUNT_TASKS: Final = frozenset(
    {TASK_PORN, TASK_AD, TASK_VIOLENCE, TASK_VULGAR, TASK_VIOLATION}
)


_encode = msgspec.json.Encoder().encode


class _TaskVerdict:
    """One task's cached verdict on one image, with its fileList entry pre-encoded."""

    __slots__ = ("entry", "fragment", "label", "rank", "review", "risk_type", "suggestion")

    def __init__(self, verdict: Verdict) -> None:
        entry, self.suggestion, self.risk_type = verdict
        self.rank = _SEVERITY_RANK[self.suggestion]
        self.entry = entry
        self.label: int = entry["label"]
        self.review: bool = entry["review"]
        # The entry's JSON without its closing brace: name and tag are appended per request.
        self.fragment = _encode(entry)[:-1]


def _task_members(task: str, verdicts: list[_TaskVerdict]) -> bytes:
    """The JSON members after ``"fileList": [...]`` of one task's result."""
    members = b""
    if task in _REVIEW_COUNT_TASKS or task not in _VERDICTS:
        members += b',"reviewCount":%d' % sum(1 for v in verdicts if v.review)
    size = _STATISTIC_SIZES.get(task)
    if size is not None:
        statistic = [0] * size
        for verdict in verdicts:
            if 0 <= verdict.label < size:
                statistic[verdict.label] += 1
        members += b',"statistic":' + _encode(statistic)
    if task == TASK_VIOLENCE:
        counts: dict[int, int] = {}
        for verdict in verdicts:
            counts[verdict.label] = counts.get(verdict.label, 0) + 1
        top = [{"count": c, "label": label} for label, c in sorted(counts.items())]
        members += b',"topNStatistic":' + _encode(top)
    return members


class _Row:
    """One image's whole contribution to a response, for one name, tag and task list."""

    __slots__ = ("fragments", "summary", "verdicts")

    def __init__(
        self,
        fragments: tuple[bytes, ...],
        verdicts: tuple[_TaskVerdict, ...],
        summary: dict[str, Any],
    ) -> None:
        self.fragments = fragments  # each task's complete fileList entry, as JSON
        self.verdicts = verdicts
        self.summary = summary


class _Outcome:
    """What decides one image's results: its SHA-256 and the magic words it contains."""

    __slots__ = ("digest", "magic")

    def __init__(self, digest: bytes, magic: frozenset[bytes]) -> None:
        self.digest = digest
        self.magic = magic


class Recognizer:
    """Turns the images of one request into task results and a summary.

    Guarantees: deterministic for a given seed; one summary entry per input image, in
    input order; images with per-image errors (code 14) appear only in the summary.

    For speed, each task's verdict on an image is one of ``POOL_SIZE`` variants computed
    once per (task, magic words) from the seed, picked by a byte of the image's SHA-256;
    entries are kept as pre-encoded JSON, so a 10-image request costs well under 1 ms.
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

    def image_error(self, image: ImageInput) -> str | None:
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

    def _outcome(self, image: ImageInput) -> _Outcome:
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
        """Build the verdict pools for ``tasks`` with no magic word and with each one now,
        instead of on first use (about 17 ms of CPU per magic word, a stall that a long-
        running server should not take in the middle of traffic)."""
        for magic in (_NO_MAGIC, *(frozenset([w.encode()]) for w in MAGIC_OUTCOMES)):
            for task in tasks:
                self._pool(task, magic)

    def _pool(self, task: str, magic: frozenset[bytes]) -> list[_TaskVerdict]:
        pool = self._pools.get((task, magic))
        if pool is None:
            judge = _VERDICTS.get(task, _generic)
            prefix = b"|".join([self._seed_bytes, task.encode(), *sorted(magic)]) + b"|"
            pool = [
                _TaskVerdict(judge(_Draws(prefix + b"%d" % i), magic)) for i in range(POOL_SIZE)
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

    def _row(self, image: ImageInput, tag: str | None, tasks: tuple[str, ...]) -> _Row:
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
        images: Sequence[ImageInput],
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
