"""Results that read well: IntEnums equal to the wire ints, a readable repr, to_dict as before."""

from __future__ import annotations

import json

import pytest
from clients import in_process_client

from tupu_async import (
    ImageError,
    ImageResult,
    PoliticalLabel,
    PornLabel,
    RiskType,
    Suggestion,
    TaskId,
    ViolationLabel,
)
from tupu_async._labels import as_risk_type, as_suggestion, label_name
from tupu_async._types import GenericFile, PoliticalFile, PornFile
from tupu_async.testing import FakeTupuServer

pytestmark = pytest.mark.anyio


def test_enums_equal_the_documented_wire_integers() -> None:
    assert [int(s) for s in (Suggestion.PASS, Suggestion.BLOCK, Suggestion.REVIEW)] == [0, 1, 2]
    assert [m.value for m in RiskType] == list(range(8))
    assert (RiskType.POLITICS, RiskType.PORN, RiskType.AD, RiskType.ABUSE) == (1, 2, 5, 7)
    assert (PornLabel.PORN, PornLabel.SEXY, PornLabel.NORMAL) == (0, 1, 2)
    assert int(PoliticalLabel.FAILED) == -1
    assert int(PoliticalLabel.NO_FACE) == 3
    assert int(ViolationLabel.RELIGIOUS) == 8
    assert int(ViolationLabel.RUDE_GESTURE) == 6
    assert TaskId.PORN == "54bcfc6c329af61034f7c2fc"
    assert TaskId.POLITICAL == "5b7be1f59b0c77a8c2afb351"


def test_conversion_keeps_unknown_values_as_plain_ints() -> None:
    assert as_suggestion(1) is Suggestion.BLOCK
    assert as_suggestion(None) is None
    unknown = as_suggestion(9)
    assert unknown == 9
    assert type(unknown) is int
    assert as_risk_type(6) is RiskType.SENSITIVE
    assert type(as_risk_type(42)) is int


def test_label_names_per_task() -> None:
    assert label_name(TaskId.PORN, 2) == "NORMAL"
    assert label_name(TaskId.POLITICAL, -1) == "FAILED"
    assert label_name(TaskId.PORN, 99) == "99"  # undocumented: shown as is
    assert label_name(TaskId.VIOLENCE, 0) == "0"  # no names in the docs
    assert label_name("unknown-task", "x") == "'x'"
    assert label_name(TaskId.PORN, True) == "True"  # a bool is not a label number


def _result(**changes: object) -> ImageResult:
    fields: dict[str, object] = {
        "index": 3,
        "name": "cat.jpg",
        "suggestion": Suggestion.REVIEW,
        "risk_type": RiskType.PORN,
        "tasks": {
            TaskId.PORN: PornFile(name="cat.jpg", label=1, rate=0.734, review=True),
            TaskId.POLITICAL: PoliticalFile(name="cat.jpg", label=3),
            "5f00000000000000000000aa": GenericFile(label="odd", rate=0.5),
        },
    }
    fields.update(changes)
    return ImageResult(**fields)  # type: ignore[arg-type]


def test_repr_is_one_readable_line() -> None:
    text = repr(_result(tag="user-7"))
    assert text == (
        "ImageResult(#3 'cat.jpg' tag='user-7': REVIEW, risk PORN; porn SEXY 0.73 review, "
        "political NO_FACE, 5f00000000000000000000aa 'odd' 0.50)"
    )
    assert "\n" not in text


def test_repr_of_a_failure_says_why() -> None:
    error = ImageError("cat.jpg: could not be downloaded", code=14)
    text = repr(_result(code=14, message="download fail", tasks={}, error=error))
    assert text == "ImageResult(#3 'cat.jpg': FAILED ImageError: cat.jpg: could not be downloaded)"
    no_error = repr(_result(code=14, message="download fail", tasks={}))
    assert no_error == "ImageResult(#3 'cat.jpg': FAILED code 14 'download fail')"


def test_repr_without_summary() -> None:
    text = repr(_result(suggestion=None, risk_type=None, tasks={}, fallback=True))
    assert text == "ImageResult(#3 'cat.jpg': ok, via URL fallback)"


def test_to_dict_has_plain_ints_and_encodes_as_before() -> None:
    out = _result().to_dict()
    assert type(out["suggestion"]) is int
    assert out["suggestion"] == 2
    assert type(out["risk_type"]) is int
    assert out["risk_type"] == 2
    assert json.loads(json.dumps(out))["tasks"][TaskId.PORN]["label"] == 1
    unknown = _result(suggestion=7, risk_type=None).to_dict()
    assert unknown["suggestion"] == 7
    assert unknown["risk_type"] is None


async def test_decoded_results_carry_the_enums() -> None:
    server = FakeTupuServer()
    urls = ["https://example.com/photo.jpg", "https://example.com/porn-1.jpg"]
    async with in_process_client(server) as client:
        normal, blocked = await client.recognize_many(urls)
    assert normal.suggestion is Suggestion.PASS
    assert normal.risk_type is RiskType.NORMAL
    assert blocked.suggestion is Suggestion.BLOCK
    assert blocked.risk_type is RiskType.PORN
    porn = blocked.tasks[TaskId.PORN]
    assert porn.label == PornLabel.PORN
    assert repr(blocked).startswith(
        "ImageResult(#1 'https://example.com/porn-1.jpg': BLOCK, risk PORN; porn PORN "
    )
