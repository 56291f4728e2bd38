"""The typed results users see: msgspec Structs that are the schema of the API's JSON.

Field names are snake_case in Python and camelCase on the wire (``rename="camel"``).
Every field the API may omit has a default, so older and newer responses both decode.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from ._exceptions import TupuError
from ._labels import TASK_NAMES, RiskType, Suggestion, label_name

__all__ = [
    "AdFile",
    "FaceObject",
    "FileResult",
    "GenericFile",
    "ImageResult",
    "OcrFile",
    "OcrObject",
    "PoliticalFile",
    "PornFile",
    "RecognitionResponse",
    "SubLabel",
    "SubLabelScore",
    "SummaryItem",
    "TaskFile",
    "TaskResult",
    "TopNCount",
    "ViolationFile",
    "ViolenceFile",
    "VulgarFile",
]


class _Wire(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True, gc=False):
    """Base of every wire struct: camelCase on the wire, defaults omitted when encoding.

    Untracked by the garbage collector (``gc=False``), so a subclass must never hold a
    reference cycle: only scalars, tuples, lists and other wire structs.
    """


class FileResult(_Wire):
    """One image's entry in a task's ``fileList``: the fields every task shares.

    ``label`` is the task's verdict for the image, ``rate`` its confidence and ``review``
    True when the machine is unsure and recommends human review.
    """

    name: str | None = None
    label: int | None = None
    rate: float | None = None
    review: bool | None = None
    tag: str | None = None


class SubLabel(_Wire):
    """The porn task's finer verdict (``subLabel``)."""

    label: int | str | None = None
    rate: float | None = None
    review: bool | None = None


class SubLabelScore(_Wire):
    """One of the porn task's ``subLabels`` (a descriptive label and its score)."""

    label: int | str | None = None
    rate: float | None = None


class PornFile(FileResult):
    """Pornography task ``54bcfc6c329af61034f7c2fc``: label 0 porn, 1 sexy, 2 normal.

    Compare ``label`` with ``PornLabel`` (``PornLabel.NORMAL == 2``).
    """

    sub_label: SubLabel | None = None
    sub_labels: tuple[SubLabelScore, ...] | None = None
    zip: str | None = None


class FaceObject(_Wire):
    """One face found by the political-figures task."""

    label: int | None = None
    similarity: float | None = None
    face_id: str | None = None
    review: bool | None = None
    face_position: tuple[tuple[float, ...], ...] | None = None
    type_name: str | None = None
    face_url: str | None = None
    feature_id: str | None = None


class PoliticalFile(FileResult):
    """Political figures task ``5b7be1f59b0c77a8c2afb351``.

    label 0 political figure, 2 not political, 3 no face, -1 recognition failed
    (``PoliticalLabel``).
    """

    objects: tuple[FaceObject, ...] = ()
    similarity: float | None = None
    face_id: str | None = None
    face_position: tuple[tuple[float, ...], ...] | None = None
    type_name: str | None = None
    face_url: str | None = None
    feature_id: str | None = None


class ViolenceFile(FileResult):
    """Violence/terrorism task ``5e1d70adeec2874f7318dc52``.

    label 0 normal; ``labels``/``rates`` hold the top-5 labels and their scores.
    """

    labels: tuple[int, ...] | None = None
    rates: tuple[float, ...] | None = None


class OcrObject(_Wire):
    """One text region found by the OCR text-moderation task."""

    label: int | None = None
    rate: float | None = None
    review: bool | None = None
    text: str | None = None
    content: str | None = None
    position: tuple[tuple[float, ...], ...] | None = None


class OcrFile(FileResult):
    """Text in image (OCR) task ``5e1d634d2809c24f6d909bd3``."""

    objects: tuple[OcrObject, ...] = ()


class AdFile(FileResult):
    """Advertisement task ``56a8645b0c800bff40990cf1``."""


class VulgarFile(FileResult):
    """Vulgar content task ``5ad37309616505867eeac264`` (label 7: minor)."""


class ViolationFile(FileResult):
    """Violation task ``5eddb86afaf52c4ca704ea41``.

    label 0 normal, 1 smoking, 2 drugs, 3 tattoo, 4 gambling, 5 drinking,
    6 rude gesture, 7 minor, 8 religious (``ViolationLabel``).
    """


class GenericFile(FileResult):
    """An entry of a task this library does not know: the common fields plus ``extra``.

    ``label`` may be any JSON scalar here; ``extra`` keeps every other key as received.
    """

    label: Any = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


TaskFile = (
    PornFile
    | PoliticalFile
    | ViolenceFile
    | OcrFile
    | AdFile
    | VulgarFile
    | ViolationFile
    | GenericFile
)
"""Any task's per-image entry."""

F = TypeVar("F", bound=FileResult)


class TopNCount(_Wire):
    """One line of the violence task's ``topNStatistic``: how many images got ``label``."""

    label: int | None = None
    count: int | None = None


class TaskResult(_Wire, Generic[F]):
    """One task's block of a response: its ``fileList`` and any statistics it carries."""

    file_list: list[F] = msgspec.field(default_factory=list)
    statistic: list[int] | None = None
    review_count: int | None = None
    top_n_statistic: list[TopNCount] | None = None


class SummaryItem(_Wire):
    """One image's line in ``summary``: the service's overall verdict across tasks.

    ``suggestion``: 0 pass, 1 block, 2 review. ``risk_type``: 0 normal, 1 politics,
    2 porn, 3 violence, 4 violation, 5 ad, 6 sensitive, 7 abuse.
    """

    code: int = 0
    message: str | None = None
    name: str | None = None
    suggestion: int | None = None
    risk_type: int | None = None
    risk_task: str | None = None
    tag: str | None = None


class ImageResult(msgspec.Struct, kw_only=True):
    """Everything the service said about one input image, and whether it failed.

    Exactly one per input image: ``index`` is its position in the caller's input.
    ``ok`` is True when the service recognised it (code 0) and nothing failed; otherwise
    ``error`` says why (an ``ImageError`` for per-image code 14, an ``InvalidImageError``
    for input that was never sent, a ``TransportError``/``APIError`` for a request that
    still failed after all retries).

    ``suggestion`` and ``risk_type`` are ``Suggestion``/``RiskType`` members (equal to the
    wire integers; a value the docs do not list stays a plain ``int``). ``repr()`` is a
    one-line summary for people; ``to_dict()`` is the JSON-ready form with plain ints.
    """

    index: int
    name: str
    tag: str | None = None
    code: int = 0
    message: str = ""
    suggestion: Suggestion | int | None = None
    risk_type: RiskType | int | None = None
    risk_task: str | None = None
    tasks: dict[str, TaskFile] = msgspec.field(default_factory=dict)
    error: TupuError | None = None
    sequence_id: str | None = None
    request_id: str | None = None
    fallback: bool = False
    """True when the URL could not be downloaded by the service and the client resubmitted
    the image's content itself (``url_fallback=True``)."""

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.error is None

    def __repr__(self) -> str:
        """One line: position, name, verdict, then each task's label, rate and review flag.

        ``ImageResult(#0 'a.jpg': PASS, risk NORMAL; porn NORMAL 0.97, violence 0 0.99)``
        """
        head = f"#{self.index} {self.name!r}"
        if self.tag is not None:
            head += f" tag={self.tag!r}"
        if not self.ok:
            why = (
                f"{type(self.error).__name__}: {self.error}"
                if self.error is not None
                else f"code {self.code} {self.message!r}"
            )
            return f"ImageResult({head}: FAILED {why})"
        verdict = [_name(self.suggestion) if self.suggestion is not None else "ok"]
        if self.risk_type is not None:
            verdict.append(f"risk {_name(self.risk_type)}")
        if self.fallback:
            verdict.append("via URL fallback")
        tasks = ", ".join(_task_summary(task_id, f) for task_id, f in self.tasks.items())
        return f"ImageResult({head}: {', '.join(verdict)}{'; ' + tasks if tasks else ''})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (task structs as dicts, ``error`` as its type and message)."""
        out: dict[str, Any] = {
            "index": self.index,
            "name": self.name,
            "tag": self.tag,
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
            "suggestion": _plain(self.suggestion),
            "risk_type": _plain(self.risk_type),
            "risk_task": self.risk_task,
            "tasks": {k: msgspec.to_builtins(v) for k, v in self.tasks.items()},
        }
        if self.sequence_id is not None:
            out["sequence_id"] = self.sequence_id
        if self.request_id is not None:
            out["request_id"] = self.request_id
        if self.fallback:
            out["fallback"] = True
        if self.error is not None:
            out["error"] = {"type": type(self.error).__name__, "message": str(self.error)}
        return out


def _plain(value: int | None) -> int | None:
    return None if value is None else int(value)


def _name(value: int) -> str:
    return value.name if isinstance(value, (Suggestion, RiskType)) else str(value)


def _task_summary(task_id: str, entry: FileResult) -> str:
    text = f"{TASK_NAMES.get(task_id, task_id)} {label_name(task_id, entry.label)}"
    if entry.rate is not None:
        text += f" {entry.rate:.2f}"
    if entry.review:
        text += " review"
    return text


class RecognitionResponse(msgspec.Struct, kw_only=True):
    """One verified, decoded recognition response.

    ``tasks`` maps each task id to its ``TaskResult`` exactly as the service grouped it
    (task-major); ``images`` regroups the same data into one ``ImageResult`` per input
    image, in input order. ``json_text`` is the signed text exactly as received.
    """

    code: int
    message: str = ""
    timestamp: int | None = None
    nonce: str | None = None
    request_id: str | None = None
    summary: list[SummaryItem] | None = None
    tasks: dict[str, TaskResult[Any]] = msgspec.field(default_factory=dict)
    images: list[ImageResult] = msgspec.field(default_factory=list)
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    json_text: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0
