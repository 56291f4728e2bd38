"""The per-task verdicts of the fake server: one image's fileList entry for each task.

Each verdict function draws from a seeded :class:`Draws` and the magic words found in the
image (``MAGIC_OUTCOMES``), and returns the entry, the suggestion it implies and its
riskType. Entries mirror the real responses (see ``docs/design-fake.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._constants import Task

__all__ = [
    "MAGIC_OUTCOMES",
    "SEVERITY_RANK",
    "SUGGESTION_BLOCK",
    "SUGGESTION_PASS",
    "SUGGESTION_REVIEW",
    "VERDICTS",
    "Draws",
    "Verdict",
    "judge",
]

SUGGESTION_PASS: Final = 0
SUGGESTION_BLOCK: Final = 1
SUGGESTION_REVIEW: Final = 2
SEVERITY_RANK: Final = {SUGGESTION_PASS: 0, SUGGESTION_REVIEW: 1, SUGGESTION_BLOCK: 2}

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


_REVIEW_FRACTION: Final = 1 / 32

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


class Draws:
    """Deterministic pseudo-random draws from BLAKE2b blocks of ``seed``."""

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


def _rate(rng: Draws, low: float, high: float) -> float:
    return low + (high - low) * rng.random()


def _labelled(rng: Draws, label: int, low: float, high: float, *, review: bool = False) -> Entry:
    """The common entry shape: ``label``, a ``rate`` drawn in [low, high) and ``review``."""
    return {"label": label, "rate": _rate(rng, low, high), "review": review}


def _face_position(rng: Draws) -> list[list[float]]:
    left = _rate(rng, 0.05, 0.55)
    top = _rate(rng, 0.05, 0.55)
    size = _rate(rng, 0.1, 0.4)
    right, bottom = min(left + size, 0.99), min(top + size, 0.99)
    return [[left, top], [right, top], [right, bottom], [left, bottom]]


def _porn(rng: Draws, magic: frozenset[bytes]) -> Verdict:
    if b"porn" in magic:
        entry: Entry = _labelled(rng, 0, 0.95, 0.999)
        entry["subLabel"] = _labelled(rng, 10, 0.8, 0.99)
        entry["subLabels"] = [{"label": "隐晦性行为", "rate": _rate(rng, 0.8, 0.99)}]
        return entry, SUGGESTION_BLOCK, _RISK_PORN
    if b"sexy" in magic:
        entry = _labelled(rng, 1, 0.85, 0.99)
        entry["subLabel"] = _labelled(rng, 18, 0.2, 0.9)
        return entry, SUGGESTION_REVIEW, _RISK_PORN
    if b"needs-review" in magic or rng.random() < _REVIEW_FRACTION:
        return _labelled(rng, 2, 0.5, 0.65, review=True), SUGGESTION_REVIEW, _RISK_PORN
    return _labelled(rng, 2, 0.9, 0.9999), SUGGESTION_PASS, 0


def _political(rng: Draws, magic: frozenset[bytes]) -> Verdict:
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


def _top5(rng: Draws, first: int, first_rate: float) -> tuple[list[int], list[float]]:
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


def _violence(rng: Draws, magic: frozenset[bytes]) -> Verdict:
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


def _ad(rng: Draws, magic: frozenset[bytes]) -> Verdict:
    if b"advert" in magic:
        return _labelled(rng, 1, 0.9, 0.99), SUGGESTION_BLOCK, _RISK_AD
    if rng.random() < _REVIEW_FRACTION:
        return _labelled(rng, 2, 0.5, 0.75, review=True), SUGGESTION_REVIEW, _RISK_AD
    return _labelled(rng, 2, 0.85, 0.999), SUGGESTION_PASS, 0


def _ocr_text(rng: Draws, magic: frozenset[bytes]) -> Verdict:
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


def _vulgar(rng: Draws, magic: frozenset[bytes]) -> Verdict:
    if b"vulgar" in magic:
        return _labelled(rng, 1, 0.85, 0.99), SUGGESTION_BLOCK, _RISK_VIOLATION
    return _labelled(rng, 0, 0.85, 0.999), SUGGESTION_PASS, 0


_VIOLATION_WORDS: Final = (
    (b"smoking", 1),
    (b"drugs", 2),
    (b"tattoo", 3),
    (b"gambling", 4),
    (b"drinking", 5),
)


def _violation(rng: Draws, magic: frozenset[bytes]) -> Verdict:
    for word, label in _VIOLATION_WORDS:
        if word in magic:
            return _labelled(rng, label, 0.8, 0.99), SUGGESTION_REVIEW, _RISK_VIOLATION
    return _labelled(rng, 0, 0.85, 0.999), SUGGESTION_PASS, 0


def _generic(rng: Draws, magic: frozenset[bytes]) -> Verdict:
    return _labelled(rng, 0, 0.85, 0.999), SUGGESTION_PASS, 0


VERDICTS: Final[dict[str, Callable[[Draws, frozenset[bytes]], Verdict]]] = {
    Task.PORN: _porn,
    Task.POLITICAL: _political,
    Task.VIOLENCE: _violence,
    Task.AD: _ad,
    Task.OCR_TEXT: _ocr_text,
    Task.VULGAR: _vulgar,
    Task.VIOLATION: _violation,
}


def judge(task: str) -> Callable[[Draws, frozenset[bytes]], Verdict]:
    """The verdict function of ``task`` (a generic pass for a task it does not know)."""
    return VERDICTS.get(task, _generic)
