"""Names for the integers the API answers with: suggestions, risk types, task labels.

Every enum here is an ``IntEnum``: a member equals the wire integer
(``Suggestion.BLOCK == 1``) and encodes as that integer. ``as_suggestion`` and
``as_risk_type`` convert a decoded int; a value the docs do not list stays a plain ``int``.
"""

from __future__ import annotations

import enum
from typing import Final

from ._constants import Task

__all__ = [
    "TASK_LABELS",
    "TASK_NAMES",
    "PoliticalLabel",
    "PornLabel",
    "RiskType",
    "Suggestion",
    "TaskId",
    "ViolationLabel",
    "as_risk_type",
    "as_suggestion",
    "label_name",
]


class Suggestion(enum.IntEnum):
    """The service's overall advice for an image (``summary.suggestion``)."""

    PASS = 0
    """Nothing found: publish it."""
    BLOCK = 1
    """Confidently unacceptable: block it."""
    REVIEW = 2
    """Uncertain: have a person look at it."""


class RiskType(enum.IntEnum):
    """Which kind of risk decided the suggestion (``summary.riskType``)."""

    NORMAL = 0
    POLITICS = 1
    """Political figures, or political text (OCR)."""
    PORN = 2
    """Pornography, or pornographic text (OCR)."""
    VIOLENCE = 3
    """Violence and terrorism, or such text (OCR)."""
    VIOLATION = 4
    """Violations (smoking, drugs, gambling...) or vulgar content."""
    AD = 5
    """Advertisement."""
    SENSITIVE = 6
    """Sensitive or offensive text (OCR)."""
    ABUSE = 7
    """Profanity or abuse in text (OCR)."""


class PornLabel(enum.IntEnum):
    """``label`` of the pornography task. Note the order: 0 is porn, 2 is normal."""

    PORN = 0
    SEXY = 1
    NORMAL = 2


class PoliticalLabel(enum.IntEnum):
    """``label`` of the political-figures task."""

    FAILED = -1
    """The service could not recognise the image."""
    POLITICAL = 0
    """A political figure was recognised."""
    NOT_POLITICAL = 2
    NO_FACE = 3


class ViolationLabel(enum.IntEnum):
    """``label`` of the violation task."""

    NORMAL = 0
    SMOKING = 1
    DRUGS = 2
    TATTOO = 3
    GAMBLING = 4
    DRINKING = 5
    RUDE_GESTURE = 6
    MINOR = 7
    RELIGIOUS = 8


TaskId = Task
"""The old name of :class:`Task`, kept for code written against 0.1."""


TASK_NAMES: Final[dict[str, str]] = {
    Task.PORN: "porn",
    Task.POLITICAL: "political",
    Task.VIOLENCE: "violence",
    Task.OCR_TEXT: "ocr_text",
    Task.AD: "ad",
    Task.VULGAR: "vulgar",
    Task.VIOLATION: "violation",
}
"""A short name per known task id, as ``ImageResult``'s repr shows it."""

TASK_LABELS: Final[dict[str, type[enum.IntEnum]]] = {
    Task.PORN: PornLabel,
    Task.POLITICAL: PoliticalLabel,
    Task.VIOLATION: ViolationLabel,
}
"""The label enum of each task whose labels the docs name."""

_SUGGESTIONS: Final[dict[int, Suggestion]] = {m.value: m for m in Suggestion}
_RISK_TYPES: Final[dict[int, RiskType]] = {m.value: m for m in RiskType}


def as_suggestion(value: int | None) -> Suggestion | int | None:
    """``value`` as a ``Suggestion`` when the docs name it; otherwise unchanged."""
    return value if value is None else _SUGGESTIONS.get(value, value)


def as_risk_type(value: int | None) -> RiskType | int | None:
    """``value`` as a ``RiskType`` when the docs name it; otherwise unchanged."""
    return value if value is None else _RISK_TYPES.get(value, value)


def label_name(task_id: str, label: object) -> str:
    """A label as a person reads it: ``NORMAL`` for a named one, else its value."""
    enum_type = TASK_LABELS.get(task_id)
    if enum_type is not None and isinstance(label, int) and not isinstance(label, bool):
        try:
            return enum_type(label).name
        except ValueError:
            pass
    return repr(label)
