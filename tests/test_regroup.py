"""Regrouping task-major responses into one ImageResult per sent image, in sent order.

The server model used throughout: ``summary`` (when enabled) has one line per sent image
in request order, with code 14 for an image that failed; each task's ``fileList`` holds
the images that did not fail, in request order (any order when names are unique). The
base64 endpoint returns no names.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tupu_async import ConfigurationError, ImageError, InvalidImageError, TupuError
from tupu_async._images import PreparedImage
from tupu_async._regroup import align, regroup, regroup_unknown_inputs
from tupu_async._types import (
    GenericFile,
    ImageResult,
    PornFile,
    RecognitionResponse,
    SummaryItem,
    TaskResult,
)

T1 = "54bcfc6c329af61034f7c2fc"
T2 = "5b7be1f59b0c77a8c2afb351"
T3 = "5f00000000000000000000aa"


def sent_images(
    wire_names: Sequence[str], *, tags: Sequence[str | None] | None = None
) -> list[PreparedImage]:
    return [
        PreparedImage(
            i,
            f"input-{i}",
            content=b"\xff\xd8\xff",
            format="jpeg",
            wire_name=name,
            tag=tags[i] if tags else None,
            sequence_id=f"seq-{i}" if i % 2 else None,
        )
        for i, name in enumerate(wire_names)
    ]


def entry(marker: int, name: str | None) -> GenericFile:
    """A fileList entry whose label says which sent image it belongs to."""
    return GenericFile(name=name, label=marker, rate=0.5, review=False)


def response(
    summary: list[SummaryItem] | None,
    tasks: dict[str, list[GenericFile]],
    *,
    code: int = 0,
    message: str = "success",
) -> RecognitionResponse:
    return RecognitionResponse(
        code=code,
        message=message,
        summary=summary,
        request_id="req-1",
        tasks={t: TaskResult(file_list=list(entries)) for t, entries in tasks.items()},
    )


def ok_line(name: str | None) -> SummaryItem:
    return SummaryItem(code=0, message="success", name=name, suggestion=0, risk_type=0)


def failed_line(name: str | None) -> SummaryItem:
    return SummaryItem(code=14, message="download fail", name=name)


def labels(result: ImageResult) -> dict[str, object]:
    return {t: f.label for t, f in result.tasks.items()}


# --- by position and by name ----------------------------------------------------------------


def test_by_position_when_the_lists_line_up() -> None:
    names = ["a.jpg", "b.jpg", "c.jpg"]
    sent = sent_images(names, tags=["t0", None, "t2"])
    resp = response(
        [ok_line(n) for n in names],
        {
            T1: [entry(i, n) for i, n in enumerate(names)],
            T2: [entry(i, n) for i, n in enumerate(names)],
        },
    )
    results = regroup(resp, sent)
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.name for r in results] == ["input-0", "input-1", "input-2"]
    assert [r.tag for r in results] == ["t0", None, "t2"]
    assert [r.sequence_id for r in results] == [None, "seq-1", None]
    for i, r in enumerate(results):
        assert r.ok
        assert r.code == 0
        assert r.message == "success"
        assert r.suggestion == 0
        assert r.request_id == "req-1"
        assert labels(r) == {T1: i, T2: i}


def test_by_name_when_a_task_list_is_reordered() -> None:
    names = ["a.jpg", "b.jpg", "c.jpg"]
    resp = response(
        [ok_line(n) for n in reversed(names)],
        {T1: [entry(2, "c.jpg"), entry(0, "a.jpg"), entry(1, "b.jpg")]},
    )
    results = regroup(resp, sent_images(names))
    assert [labels(r) for r in results] == [{T1: 0}, {T1: 1}, {T1: 2}]
    assert all(r.ok for r in results)


def test_duplicate_names_map_one_to_one_in_order() -> None:
    names = ["x.jpg", "y.jpg", "x.jpg", "x.jpg"]
    resp = response(
        [ok_line(n) for n in names],
        {
            T1: [entry(i, n) for i, n in enumerate(names)],
            # another task lists y first: the x entries still map to 0, 2, 3 in order
            T2: [entry(1, "y.jpg"), entry(0, "x.jpg"), entry(2, "x.jpg"), entry(3, "x.jpg")],
        },
    )
    results = regroup(resp, sent_images(names))
    assert [labels(r) for r in results] == [{T1: i, T2: i} for i in range(4)]


def test_missing_entry_with_summary_code_14_is_an_image_error() -> None:
    names = ["a.jpg", "b.jpg", "c.jpg"]
    resp = response(
        [ok_line("a.jpg"), failed_line("b.jpg"), ok_line("c.jpg")],
        {T1: [entry(0, "a.jpg"), entry(2, "c.jpg")], T2: [entry(0, "a.jpg"), entry(2, "c.jpg")]},
    )
    results = regroup(resp, sent_images(names))
    assert [r.ok for r in results] == [True, False, True]
    failed = results[1]
    assert failed.code == 14
    assert failed.message == "download fail"
    assert failed.tasks == {}
    assert isinstance(failed.error, ImageError)
    assert failed.error.code == 14
    assert "input-1" in str(failed.error)
    assert labels(results[0]) == {T1: 0, T2: 0}
    assert labels(results[2]) == {T1: 2, T2: 2}


def test_missing_entry_without_summary_is_an_image_error() -> None:
    names = ["a.jpg", "b.jpg", "c.jpg"]
    resp = response(None, {T1: [entry(0, "a.jpg"), entry(2, "c.jpg")]})
    results = regroup(resp, sent_images(names))
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].code == 14
    assert isinstance(results[1].error, ImageError)
    assert results[1].message == "the service returned no result for this image"


def test_no_summary_leaves_suggestion_none_but_keeps_tasks() -> None:
    names = ["a.jpg", "b.jpg"]
    resp = response(None, {T1: [entry(0, "a.jpg"), entry(1, "b.jpg")]})
    results = regroup(resp, sent_images(names))
    for i, r in enumerate(results):
        assert r.ok
        assert r.suggestion is None
        assert r.risk_type is None
        assert r.risk_task is None
        assert labels(r) == {T1: i}
        assert r.message == "success"


def test_failed_image_that_still_has_entries_keeps_them_and_fails() -> None:
    resp = response([failed_line("a.jpg")], {T1: [entry(0, "a.jpg")]})
    [result] = regroup(resp, sent_images(["a.jpg"]))
    assert not result.ok
    assert labels(result) == {T1: 0}


def test_summary_with_another_error_code_maps_to_its_class() -> None:
    resp = response([SummaryItem(code=7, message="task not allowed", name="a.jpg")], {T1: []})
    [result] = regroup(resp, sent_images(["a.jpg"]))
    assert isinstance(result.error, ConfigurationError)
    assert result.code == 7


def test_whole_response_error_without_tasks_applies_to_every_image() -> None:
    resp = response(None, {}, code=7, message="task not allowed")
    results = regroup(resp, sent_images(["a.jpg", "b.jpg"]))
    assert [r.code for r in results] == [7, 7]
    assert all(isinstance(r.error, ConfigurationError) for r in results)


# --- base64: no names ----------------------------------------------------------------------


def test_base64_maps_by_position() -> None:
    resp = response([ok_line(None)] * 3, {T1: [entry(i, None) for i in range(3)]})
    results = regroup(resp, sent_images(["a", "b", "c"]), by_position=True)
    assert [labels(r) for r in results] == [{T1: 0}, {T1: 1}, {T1: 2}]


def test_base64_skips_failed_images_when_a_list_is_shorter() -> None:
    resp = response(
        [ok_line(None), failed_line(None), ok_line(None), failed_line(None), ok_line(None)],
        {
            T1: [entry(0, None), entry(2, None), entry(4, None)],
            T2: [entry(0, None), entry(2, None), entry(4, None)],
        },
    )
    results = regroup(resp, sent_images(["a", "b", "c", "d", "e"]), by_position=True)
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert [labels(r) for r in results] == [{T1: 0, T2: 0}, {}, {T1: 2, T2: 2}, {}, {T1: 4, T2: 4}]
    assert isinstance(results[1].error, ImageError)


def test_entries_without_names_map_by_position_even_if_not_asked() -> None:
    resp = response(None, {T1: [entry(0, None), entry(1, None)]})
    results = regroup(resp, sent_images(["a", "b"]))
    assert [labels(r) for r in results] == [{T1: 0}, {T1: 1}]


# --- hard cases: duplicate names with failures, nothing matched at all ---


def test_duplicate_names_with_a_failed_image_give_the_entry_to_the_survivor() -> None:
    # e.g. /a/photo.jpg and /b/photo.jpg uploaded together: both have wire name photo.jpg
    resp = response([failed_line("photo.jpg"), ok_line("photo.jpg")], {T1: [entry(1, "photo.jpg")]})
    first, second = regroup(resp, sent_images(["photo.jpg", "photo.jpg"]))
    assert not first.ok
    assert first.tasks == {}
    assert second.ok
    assert labels(second) == {T1: 1}


@pytest.mark.parametrize("case", ["base64-short-no-summary", "all-failed-no-summary"])
def test_unmatched_images_are_never_silently_ok(case: str) -> None:
    if case == "base64-short-no-summary":
        resp = response(None, {T1: [entry(0, None), entry(1, None)]})
        results = regroup(resp, sent_images(["a", "b", "c"]), by_position=True)
    else:
        resp = response(None, {T1: [], T2: []})
        results = regroup(resp, sent_images(["a", "b"]))
    for r in results:
        assert r.ok == bool(r.tasks), r


# --- the property -----------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn, *, allow_hard_cases: bool) -> tuple[object, ...]:
    n = draw(st.integers(min_value=1, max_value=10))
    base64 = draw(st.booleans())
    with_summary = draw(st.booleans())
    unique = draw(st.booleans())
    if unique:
        names = [f"img-{i}.jpg" for i in draw(st.permutations(range(n)))]
    else:
        names = draw(st.lists(st.sampled_from(["a.jpg", "b.jpg", "c.jpg"]), min_size=n, max_size=n))
    counts = Counter(names)
    failed = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    for i in range(n):
        if not with_summary and (base64 or counts[names[i]] > 1):
            failed[i] = False  # without a summary, nothing can say which one failed
        if not allow_hard_cases and with_summary and not base64 and counts[names[i]] > 1:
            failed[i] = False  # covered by the hard-cases variant below
    if not allow_hard_cases and not with_summary and all(failed):
        failed[0] = False  # covered by the hard-cases variant below
    task_ids = draw(st.lists(st.sampled_from([T1, T2, T3]), min_size=1, max_size=3, unique=True))
    seed = draw(st.integers(min_value=0, max_value=2**32))
    return names, failed, base64, with_summary, unique, task_ids, seed


def _check_scenario(scenario: tuple[object, ...]) -> None:
    names, failed, base64, with_summary, unique, task_ids, seed = scenario
    assert isinstance(names, list)
    assert isinstance(failed, list)
    assert isinstance(task_ids, list)
    assert isinstance(seed, int)
    rnd = random.Random(seed)
    sent = sent_images(names)
    wire: list[str | None] = [None if base64 else n for n in names]
    summary = (
        [failed_line(w) if failed[i] else ok_line(w) for i, w in enumerate(wire)]
        if with_summary
        else None
    )
    tasks: dict[str, list[GenericFile]] = {}
    for t in task_ids:
        entries = [entry(i, wire[i]) for i in range(len(names)) if not failed[i]]
        if unique and not base64:
            rnd.shuffle(entries)
        tasks[t] = entries
    results = regroup(response(summary, tasks), sent, by_position=bool(base64))

    assert len(results) == len(sent)
    assert [r.index for r in results] == list(range(len(sent)))
    for i, r in enumerate(results):
        if failed[i]:
            assert not r.ok
            assert r.tasks == {}
            assert isinstance(r.error, ImageError)
            assert r.code == 14
        else:
            assert r.ok, r
            assert r.error is None
            assert labels(r) == dict.fromkeys(task_ids, i)
    # every entry was handed out exactly once
    handed = Counter((t, f.label) for r in results for t, f in r.tasks.items())
    assert all(c == 1 for c in handed.values())


@settings(max_examples=300, deadline=None)
@given(scenarios(allow_hard_cases=False))
def test_every_sent_image_gets_exactly_its_own_result(scenario: tuple[object, ...]) -> None:
    _check_scenario(scenario)


@settings(max_examples=300, deadline=None)
@given(scenarios(allow_hard_cases=True))
@example([["p.jpg", "p.jpg"], [True, False], False, True, False, [T1], 0])
def test_every_sent_image_gets_exactly_its_own_result_with_duplicates_and_failures(
    scenario: tuple[object, ...],
) -> None:
    _check_scenario(scenario)


# --- align, regroup_unknown_inputs and ImageResult ----------------------------------------


class _Named:
    def __init__(self, name: str | None, marker: int) -> None:
        self.name = name
        self.marker = marker


def test_align_unmatched_names_give_none() -> None:
    entries = [_Named("zzz", 0), _Named("b", 1)]
    out = align(entries, ["a", "b"], by_position=False)
    assert out[0] is None
    assert out[1] is entries[1]


def test_align_by_position_with_mismatched_count_and_no_usable_gives_nothing() -> None:
    out = align([_Named(None, 0)], ["a", "b"], by_position=True)
    assert out == [None, None]


def test_regroup_unknown_inputs_uses_summary_order() -> None:
    resp = response([ok_line("u1"), failed_line("u2")], {T1: [entry(0, "u1")]})
    results = regroup_unknown_inputs(resp)
    assert [r.name for r in results] == ["u1", "u2"]
    assert [r.ok for r in results] == [True, False]
    assert labels(results[0]) == {T1: 0}


def test_regroup_unknown_inputs_without_summary_uses_the_longest_list() -> None:
    resp = response(None, {T1: [entry(0, "u1")], T2: [entry(0, "u1"), entry(1, "u2")]})
    results = regroup_unknown_inputs(resp)
    assert [r.name for r in results] == ["u1", "u2"]
    assert labels(results[0]) == {T1: 0, T2: 0}
    assert labels(results[1]) == {T2: 1}
    assert T1 not in results[1].tasks  # missing from T1's list: a partial result


def test_regroup_unknown_inputs_without_names_numbers_the_images() -> None:
    resp = response(None, {T1: [entry(0, None), entry(1, None)]})
    results = regroup_unknown_inputs(resp)
    assert [r.name for r in results] == ["#0", "#1"]
    assert [labels(r) for r in results] == [{T1: 0}, {T1: 1}]


def test_regroup_unknown_inputs_of_an_empty_response() -> None:
    assert regroup_unknown_inputs(response(None, {})) == []


def test_image_result_to_dict_is_json_ready() -> None:
    ok = ImageResult(
        index=0,
        name="a.jpg",
        tag="t",
        tasks={T1: PornFile(name="a.jpg", label=2, rate=0.9, review=False)},
        sequence_id="s",
        request_id="r",
        fallback=True,
    )
    failed = ImageResult(index=1, name="b.jpg", code=14, error=ImageError("b.jpg: too large"))
    invalid = ImageResult(index=2, name="c", error=InvalidImageError("c: empty"))
    d_ok, d_failed, d_invalid = (json.loads(json.dumps(r.to_dict())) for r in (ok, failed, invalid))
    assert d_ok["ok"] is True
    assert d_ok["tasks"][T1] == {"name": "a.jpg", "label": 2, "rate": 0.9, "review": False}
    assert d_ok["sequence_id"] == "s"
    assert d_ok["request_id"] == "r"
    assert d_ok["fallback"] is True
    assert "error" not in d_ok
    assert d_failed["ok"] is False
    assert d_failed["error"] == {"type": "ImageError", "message": "b.jpg: too large"}
    assert "sequence_id" not in d_failed
    assert d_invalid["ok"] is False  # code 0 but an error
    assert d_invalid["error"]["type"] == "InvalidImageError"


def test_image_result_ok_needs_code_zero_and_no_error() -> None:
    assert ImageResult(index=0, name="a").ok
    assert not ImageResult(index=0, name="a", code=14).ok
    assert not ImageResult(index=0, name="a", error=TupuError("x")).ok


def test_recognition_response_ok() -> None:
    assert RecognitionResponse(code=0).ok
    assert not RecognitionResponse(code=1).ok


def test_regroup_unknown_inputs_with_an_unnamed_summary_matches_by_position() -> None:
    # The summary names nothing, so its images are "#0", "#1": the task entries, which do
    # carry names, must be matched by position, not by those made-up names.
    resp = response([ok_line(None), ok_line(None)], {T1: [entry(0, "u1"), entry(1, "u2")]})
    results = regroup_unknown_inputs(resp)
    assert [r.name for r in results] == ["#0", "#1"]
    assert [labels(r) for r in results] == [{T1: 0}, {T1: 1}]
    assert [r.sequence_id for r in results] == [None, None]  # a callback carries none


def test_a_failed_image_error_carries_the_service_message() -> None:
    resp = response([ok_line("u1"), failed_line("u2")], {T1: [entry(0, "u1")]})
    failed = regroup_unknown_inputs(resp)[1]
    assert failed.error is not None
    assert str(failed.error).startswith("u2: Tupu code 14 (download fail): ")


def test_a_summary_line_without_message_says_success_only_for_code_0() -> None:
    lines = [SummaryItem(code=0, name="u1"), SummaryItem(code=14, name="u2")]
    results = regroup_unknown_inputs(response(lines, {T1: [entry(0, "u1")]}))
    assert [(r.code, r.message) for r in results] == [(0, "success"), (14, "")]


def test_by_position_aligns_the_summary_by_position_too() -> None:
    # The names the service echoes need not be the ones sent (base64 has none): by position.
    resp = response([ok_line("x"), failed_line("y")], {T1: [entry(0, "x")]})
    results = regroup(resp, sent_images(["a", "b"]), by_position=True)
    assert [(r.ok, r.code) for r in results] == [(True, 0), (False, 14)]
