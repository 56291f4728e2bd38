"""Packing images into requests: the API's per-request rules hold for any input.

Every image lands in exactly one batch; batches keep each kind's order, never mix URL
and content images, never exceed ``max_images``, never repeat a ``sequence_id`` and, for
base64, never build a body over the limit (measured on the real request body).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tupu_async._batching import Batch, Packer, pack
from tupu_async._constants import (
    MAX_BASE64_BODY_BYTES,
    MAX_IMAGES_PER_REQUEST,
    TASK_AD,
    TASK_OCR_TEXT,
    TASK_POLITICAL,
    TASK_PORN,
    TASK_VIOLATION,
    TASK_VIOLENCE,
    TASK_VULGAR,
)
from tupu_async._images import PreparedImage
from tupu_async._requests import BASE64_BODY_OVERHEAD, base64_image_cost, build_base64_request
from tupu_async._signing import SignedFields

ALL_TASKS = [
    TASK_PORN, TASK_VIOLENCE, TASK_AD, TASK_OCR_TEXT, TASK_POLITICAL, TASK_VULGAR, TASK_VIOLATION
]  # fmt: skip
# The widest auth fields in practice (a 4096-bit signature is 684 base64 characters).
WIDE_SIGNED = SignedFields("99999999999", "0.9999999999999999", "A" * 682 + "==")


@dataclass(frozen=True)
class Spec:
    is_url: bool
    size: int
    sequence_id: str | None
    tag: str | None


specs = st.builds(
    Spec,
    is_url=st.booleans(),
    size=st.integers(min_value=0, max_value=3000),
    sequence_id=st.none() | st.sampled_from(["s1", "s2", "s3", "s4"]),
    tag=st.none() | st.text(max_size=6),
)


def make_images(items: list[Spec]) -> list[PreparedImage]:
    images = []
    for i, spec in enumerate(items):
        if spec.is_url:
            url = f"http://example.com/{i}.jpg"
            images.append(
                PreparedImage(i, url, url=url, tag=spec.tag, sequence_id=spec.sequence_id)
            )
        else:
            images.append(
                PreparedImage(
                    i,
                    f"{i}.jpg",
                    content=bytes([i % 256]) * spec.size,
                    format="jpeg",
                    tag=spec.tag,
                    sequence_id=spec.sequence_id,
                )
            )
    return images


def check_batches(
    images: list[PreparedImage],
    batches: list[Batch],
    *,
    max_images: int,
    transport: str,
    max_body_bytes: int,
) -> None:
    # every image exactly once
    seen = Counter(im.index for batch in batches for im in batch)
    assert seen == Counter(im.index for im in images)
    for batch in batches:
        assert 1 <= len(batch) <= max_images
        kinds = {im.is_url for im in batch}
        assert len(kinds) == 1, "URL and content images in one request"
        seq = [im.sequence_id for im in batch if im.sequence_id is not None]
        assert len(seq) == len(set(seq)), "a sequence_id twice in one request"
        if transport == "base64" and not batch[0].is_url:
            body = build_base64_request("secret-id", batch, tasks=ALL_TASKS).body(WIDE_SIGNED)
            if len(batch) > 1:
                assert len(body) <= max_body_bytes
            else:  # alone only because it cannot share: its own cost is over the budget
                assert (
                    len(body) <= max_body_bytes
                    or BASE64_BODY_OVERHEAD + base64_image_cost(batch[0]) > max_body_bytes
                )
    # relative order kept within each kind
    for kind in (True, False):
        flat = [im.index for batch in batches for im in batch if im.is_url is kind]
        assert flat == [im.index for im in images if im.is_url is kind]


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(specs, max_size=40),
    max_images=st.integers(min_value=1, max_value=12),
    transport=st.sampled_from(["multipart", "base64"]),
    budget=st.integers(min_value=1, max_value=25_000),
)
def test_pack_obeys_every_request_rule(
    items: list[Spec], max_images: int, transport: str, budget: int
) -> None:
    images = make_images(items)
    max_body_bytes = BASE64_BODY_OVERHEAD + budget
    batches = pack(
        images,
        max_images=max_images,
        transport="base64" if transport == "base64" else "multipart",
        max_body_bytes=max_body_bytes,
    )
    check_batches(
        images, batches, max_images=max_images, transport=transport, max_body_bytes=max_body_bytes
    )


@settings(max_examples=200, deadline=None)
@given(
    kinds=st.lists(st.booleans(), max_size=60),
    max_images=st.integers(min_value=1, max_value=12),
    transport=st.sampled_from(["multipart", "base64"]),
)
def test_batch_count_is_minimal_without_sequence_ids_or_byte_limit(
    kinds: list[bool], max_images: int, transport: str
) -> None:
    images = make_images([Spec(is_url=k, size=10, sequence_id=None, tag=None) for k in kinds])
    batches = pack(
        images,
        max_images=max_images,
        transport="base64" if transport == "base64" else "multipart",
    )
    n_url = sum(kinds)
    n_content = len(kinds) - n_url
    assert len(batches) == math.ceil(n_url / max_images) + math.ceil(n_content / max_images)
    check_batches(
        images,
        batches,
        max_images=max_images,
        transport=transport,
        max_body_bytes=MAX_BASE64_BODY_BYTES,
    )


@settings(max_examples=150, deadline=None)
@given(items=st.lists(specs, max_size=40), max_images=st.integers(min_value=1, max_value=12))
def test_packer_hands_out_full_batches_as_they_fill(items: list[Spec], max_images: int) -> None:
    images = make_images(items)
    packer = Packer(max_images=max_images, transport="base64", max_body_bytes=12_000)
    emitted: list[Batch] = []
    for count, im in enumerate(images, start=1):
        done = packer.add(im)
        assert len(done) <= 1
        emitted.extend(done)
        assert packer.pending == count - sum(len(b) for b in emitted)
        assert packer.pending <= 2 * max_images  # at most one open batch per kind
    tail = packer.flush()
    assert packer.pending == 0
    assert packer.flush() == []
    assert emitted + tail == pack(
        images, max_images=max_images, transport="base64", max_body_bytes=12_000
    )


def test_default_limits_are_the_api_ones() -> None:
    packer = Packer()
    assert packer.max_images == MAX_IMAGES_PER_REQUEST == 10
    assert packer.max_body_bytes == MAX_BASE64_BODY_BYTES == 30 * 1024 * 1024
    assert packer.transport == "multipart"


def test_twenty_five_urls_make_three_requests() -> None:
    images = make_images([Spec(True, 0, None, None)] * 25)
    assert [len(b) for b in pack(images)] == [10, 10, 5]


def test_urls_and_content_are_split_and_each_kind_fills_on_its_own() -> None:
    items = [Spec(i % 2 == 0, 10, None, None) for i in range(30)]
    batches = pack(make_images(items))
    assert [(len(b), b[0].is_url) for b in batches] == [
        (10, True),
        (10, False),
        (5, True),
        (5, False),
    ]


def test_repeated_sequence_id_starts_a_new_request() -> None:
    seq = ["a", "b", "a", "c", "b", None, "a"]
    items = [Spec(True, 0, s, None) for s in seq]
    batches = pack(make_images(items))
    assert [[im.sequence_id for im in b] for b in batches] == [
        ["a", "b"],
        ["a", "c", "b", None],
        ["a"],
    ]


def test_base64_body_limit_splits_requests() -> None:
    size = 3000  # base64: 4000 characters each
    items = [Spec(False, size, None, None)] * 6
    limit = BASE64_BODY_OVERHEAD + 3 * base64_image_cost(make_images(items)[0])
    batches = pack(make_images(items), transport="base64", max_body_bytes=limit)
    assert [len(b) for b in batches] == [3, 3]
    multipart = pack(make_images(items), transport="multipart", max_body_bytes=limit)
    assert [len(b) for b in multipart] == [6]


def test_an_image_too_large_for_the_budget_goes_alone() -> None:
    items = [Spec(False, 10, None, None), Spec(False, 9000, None, None),
             Spec(False, 10, None, None)]  # fmt: skip
    batches = pack(
        make_images(items), transport="base64", max_body_bytes=BASE64_BODY_OVERHEAD + 1000
    )
    assert [[im.index for im in b] for b in batches] == [[0], [1], [2]]


def test_url_images_ignore_the_base64_budget() -> None:
    items = [Spec(True, 0, None, "t" * 500)] * 10
    batches = pack(make_images(items), transport="base64", max_body_bytes=BASE64_BODY_OVERHEAD)
    assert [len(b) for b in batches] == [10]


def test_full_size_images_fit_the_real_thirty_mib_limit() -> None:
    one_mib = 1024 * 1024
    items = [Spec(False, one_mib, None, None)] * 25
    batches = pack(make_images(items), transport="base64")
    # 4/3 MiB of base64 per image: 22 fit under 30 MiB, so the 10-image cap decides.
    assert [len(b) for b in batches] == [10, 10, 5]
    for batch in batches:
        body = build_base64_request("sid", batch, tasks=ALL_TASKS).body(WIDE_SIGNED)
        assert len(body) <= MAX_BASE64_BODY_BYTES


def test_raised_image_cap_is_bounded_by_the_body_limit() -> None:
    one_mib = 1024 * 1024
    items = [Spec(False, one_mib, None, None)] * 30
    batches = pack(make_images(items), transport="base64", max_images=100)
    assert all(len(b) <= 22 for b in batches)
    assert sum(len(b) for b in batches) == 30
    for batch in batches:
        body = build_base64_request("sid", batch, tasks=ALL_TASKS).body(WIDE_SIGNED)
        assert len(body) <= MAX_BASE64_BODY_BYTES


def test_empty_input() -> None:
    assert pack([]) == []


@pytest.mark.parametrize("bad", [0, -1])
def test_max_images_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Packer(max_images=bad)


@pytest.mark.parametrize("max_images", [0, -1])
def test_a_packer_needs_room_for_one_image(max_images: int) -> None:
    with pytest.raises(ValueError, match=r"^max_images_per_request must be at least 1$"):
        Packer(max_images=max_images)
