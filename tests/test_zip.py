"""ZIP input: Image.from_zip, its zip-bomb limits, the CLI's expansion and the fake's uploads."""

from __future__ import annotations

import io
import json
import os
import pathlib
import stat
import zipfile

import httpx
import pytest
from clients import in_process_client, png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tupu_async import Image, InvalidImageError
from tupu_async._signing import Signer
from tupu_async._zip import ZipLimits, is_zip, read_zip_members
from tupu_async.cli._inputs import expand_inputs
from tupu_async.testing import FakeTupuServer


def make_zip(
    members: list[tuple[str, bytes]],
    *,
    method: int = zipfile.ZIP_DEFLATED,
    extra: list[zipfile.ZipInfo] | None = None,
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as zf:
        for name, data in members:
            zf.writestr(name, data)
        for info in extra or []:
            zf.writestr(info, b"target.png")
    return buffer.getvalue()


# -- Image.from_zip ------------------------------------------------------------------------


def test_one_image_per_member_named_after_the_archive(tmp_path: pathlib.Path) -> None:
    data = make_zip([("a.png", png(1)), ("sub/b.png", png(2)), ("sub/", b"")])
    path = tmp_path / "photos.zip"
    path.write_bytes(data)

    images = Image.from_zip(path, tag="batch-7")

    assert [im.name for im in images] == ["photos.zip/a.png", "photos.zip/sub/b.png"]
    assert [im.data for im in images] == [png(1), png(2)]
    assert {im.tag for im in images} == {"batch-7"}
    from_bytes = Image.from_zip(data)
    assert [im.name for im in from_bytes] == ["archive.zip/a.png", "archive.zip/sub/b.png"]


def test_directories_and_macos_metadata_are_skipped() -> None:
    data = make_zip([("d/", b""), ("__MACOSX/._a.png", b"junk"), ("a.png", png(1))])
    assert [im.name for im in Image.from_zip(data, name="x.zip")] == ["x.zip/a.png"]


def test_stored_members_work_too() -> None:
    data = make_zip([("a.png", png(1))], method=zipfile.ZIP_STORED)
    assert [im.data for im in Image.from_zip(data)] == [png(1)]


def test_symlinks_are_refused() -> None:
    link = zipfile.ZipInfo("link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = make_zip([("a.png", png(1))], extra=[link])
    with pytest.raises(InvalidImageError, match="symlink"):
        Image.from_zip(data)


def test_encrypted_members_are_refused() -> None:
    data = bytearray(make_zip([("a.png", png(1))], method=zipfile.ZIP_STORED))
    # Set the "encrypted" flag bit in the local and the central directory headers.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 0x01
    with pytest.raises(InvalidImageError, match="encrypted"):
        Image.from_zip(bytes(data))


@pytest.mark.parametrize(
    "source", [b"PK\x03\x04 not really", b"plain bytes", b""], ids=["torn", "plain", "empty"]
)
def test_what_is_not_a_zip_is_refused_clearly(source: bytes) -> None:
    with pytest.raises(InvalidImageError, match="not a readable ZIP archive"):
        Image.from_zip(source)


def test_a_missing_file_and_a_wrong_type_are_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidImageError, match="no such file"):
        Image.from_zip(tmp_path / "gone.zip")
    with pytest.raises(InvalidImageError, match="needs a path or bytes"):
        Image.from_zip(123)  # type: ignore[arg-type]


def test_a_header_that_lies_about_sizes_is_not_trusted() -> None:
    payload = b"\0" * 300_000
    data = bytearray(make_zip([("bomb.bmp", payload)]))
    # Claim 10 uncompressed bytes in both headers; inflating must still be counted.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + offset
        data[at : at + 4] = (10).to_bytes(4, "little")
    limits = ZipLimits(max_member_bytes=100_000)
    with pytest.raises(InvalidImageError):
        read_zip_members(bytes(data), limits=limits)


# -- the bomb limits, over archive shapes ----------------------------------------------------

shapes = st.lists(
    st.tuples(st.integers(0, 40_000), st.sampled_from([b"\0", b"ab", b"\x89PNG"])),
    min_size=0,
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=shapes,
    max_members=st.integers(1, 12),
    max_member=st.integers(1, 50_000),
    max_total=st.integers(1, 200_000),
    max_ratio=st.sampled_from([2.0, 10.0, 1000.0]),
)
def test_limits_hold_for_any_archive_shape(
    shape: list[tuple[int, bytes]],
    max_members: int,
    max_member: int,
    max_total: int,
    max_ratio: float,
) -> None:
    members = [(f"m{i}.bin", (fill * size)[:size]) for i, (size, fill) in enumerate(shape)]
    data = make_zip(members)
    limits = ZipLimits(
        max_members=max_members,
        max_member_bytes=max_member,
        max_total_bytes=max_total,
        max_ratio=max_ratio,
        ratio_floor=1024,
    )
    refusal: InvalidImageError | None = None
    try:
        got = read_zip_members(data, limits=limits)
    except InvalidImageError as exc:
        refusal = exc
    if refusal is not None:
        assert "refused" in str(refusal)
        sizes = [len(d) for _, d in members]
        info = {i.filename: i for i in zipfile.ZipFile(io.BytesIO(data)).infolist()}
        ratios = [len(d) / max(info[n].compress_size, 1) for n, d in members if len(d) > 1024]
        total_ratio = sum(sizes) / len(data) if sum(sizes) > 1024 else 0
        assert (
            len(members) > max_members
            or any(s > max_member for s in sizes)
            or sum(sizes) > max_total
            or any(r > max_ratio for r in ratios)
            or total_ratio > max_ratio
        ), "refused an archive within every limit"
        return
    # Accepted: within every limit, and nothing lost or changed.
    assert [(m.name, m.data) for m in got] == members
    assert len(got) <= max_members
    assert all(len(m.data) <= max_member for m in got)
    assert sum(len(m.data) for m in got) <= max_total


def test_a_classic_bomb_is_refused_by_ratio_before_it_is_inflated() -> None:
    data = make_zip([("bomb.bmp", b"\0" * (64 * 1024 * 1024))])
    assert len(data) < 100_000
    with pytest.raises(InvalidImageError, match="inflates more than"):
        read_zip_members(data)


def test_too_many_members_is_refused_before_any_is_inflated() -> None:
    data = make_zip([(f"{i}.png", png(i)) for i in range(30)])
    with pytest.raises(InvalidImageError, match="max_members"):
        read_zip_members(data, limits=ZipLimits(max_members=29))


@pytest.mark.parametrize("entries", [300, 70_000], ids=["zip", "zip64"])
def test_a_huge_central_directory_is_refused_unparsed(
    entries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing 200,000 entries took 2.6 s and 116 MiB before max_members was checked."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(entries):
            zf.writestr(f"{i}", b"")
    data = bytearray(buffer.getvalue())
    end = data.rindex(b"PK\x05\x06")
    data[end + 8 : end + 12] = (1).to_bytes(2, "little") * 2  # the entry counts lie: 1

    def parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the central directory was parsed")

    monkeypatch.setattr(zipfile, "ZipFile", parse)
    with pytest.raises(InvalidImageError, match=f"lists {entries:,} entries"):
        read_zip_members(bytes(data), limits=ZipLimits(max_members=10))


def test_a_directory_within_the_entry_bound_still_counts_file_members_exactly() -> None:
    folders = [(f"d{i}/", b"") for i in range(30)]
    data = make_zip([*folders, *[(f"d{i}/{i}.png", png(i)) for i in range(10)]])
    assert len(read_zip_members(data, limits=ZipLimits(max_members=10))) == 10


def test_member_names_are_printable_labels() -> None:
    """Names reach terminals and logs: escapes, NULs and bidi overrides are shown, not obeyed."""
    raw = ["a\x00b.png", "red\x1b[31m.png", "line\nbreak.png", "cat\u202egnp.exe", "ok/é.png"]
    # zipfile cuts names at a NUL when writing: write same-length stand-ins, then patch
    # the bytes (a non-ASCII stand-in makes zipfile set the UTF-8 name flag).
    stand_ins = ["é" + chr(ord("A") + i) * (len(n.encode()) - 2) for i, n in enumerate(raw)]
    data = make_zip([(stand_in, png(i)) for i, stand_in in enumerate(stand_ins)])
    for name, stand_in in zip(raw, stand_ins, strict=True):
        data = data.replace(stand_in.encode(), name.encode())

    names = [member.name for member in read_zip_members(data)]

    assert names == [
        "a\\x00b.png",
        "red\\x1b[31m.png",
        "line\\nbreak.png",
        "cat\\u202egnp.exe",
        "ok/é.png",
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_a_fifo_or_a_device_is_refused_without_reading_it(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "upload.zip"
    os.mkfifo(fifo)  # no writer: opening it for reading would block forever
    for path in (fifo, pathlib.Path("/dev/zero")):
        with pytest.raises(InvalidImageError, match="not a regular file"):
            Image.from_zip(path)


def test_a_file_over_the_archive_limit_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "big.zip"
    path.write_bytes(make_zip([("a.png", png(1))]))
    with pytest.raises(InvalidImageError, match="max_archive_bytes"):
        Image.from_zip(path, limits=ZipLimits(max_archive_bytes=100))
    with pytest.raises(InvalidImageError, match="is a directory"):
        Image.from_zip(tmp_path)


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_round_trip_one_result_per_member_and_bad_members_fail_alone() -> None:
    server = FakeTupuServer()
    members = [(f"dir/{i}.png", png(i)) for i in range(23)] + [("readme.txt", b"hello")]
    images = Image.from_zip(make_zip(members), name="set.zip", tag="z")
    async with in_process_client(server) as client:
        results = await client.recognize_many(images)

    assert [r.name for r in results] == [f"set.zip/{name}" for name, _ in members]
    assert [r.ok for r in results] == [True] * 23 + [False]
    assert isinstance(results[-1].error, InvalidImageError)
    assert {r.tag for r in results} == {"z"}
    assert server.stats.images_per_request == [10, 10, 3]


@pytest.mark.anyio
async def test_the_fake_expands_a_zip_upload_into_its_member_images() -> None:
    server = FakeTupuServer()
    secret_id, pem = server.add_credentials("zip-user")
    fields = Signer(secret_id, pem).sign()
    archive = make_zip([("a.png", png(1)), ("b.png", png(2)), ("porn.png", png(3) + b"porn")])
    async with httpx.AsyncClient(
        transport=server.transport(), base_url="http://fake.tupu.test"
    ) as http:
        response = await http.post(
            f"/v3/recognition/{secret_id}",
            files=[
                ("image", ("pics.zip", archive, "application/zip")),
                ("image", ("single.png", png(9), "image/png")),
            ],
            data={
                "tag": ["from-zip", "single"],
                "timestamp": fields.timestamp,
                "nonce": fields.nonce,
                "signature": fields.signature,
            },
        )

    inner = json.loads(response.json()["json"])
    assert inner["code"] == 0
    summary = {item["name"]: item for item in inner["summary"]}
    assert list(summary) == ["a.png", "b.png", "porn.png", "single.png"]
    assert [item["tag"] for item in summary.values()] == ["from-zip"] * 3 + ["single"]
    assert summary["porn.png"]["suggestion"] == 1
    assert server.stats.images_per_request == [4]


@pytest.mark.anyio
async def test_the_fake_answers_a_refused_zip_as_one_failed_image() -> None:
    server = FakeTupuServer()
    secret_id, pem = server.add_credentials("zip-user")
    fields = Signer(secret_id, pem).sign()
    bomb = make_zip([("bomb.bmp", b"\0" * (8 * 1024 * 1024))])
    async with httpx.AsyncClient(
        transport=server.transport(), base_url="http://fake.tupu.test"
    ) as http:
        response = await http.post(
            f"/v3/recognition/{secret_id}",
            files=[("image", ("bomb.zip", bomb, "application/zip"))],
            data={
                "timestamp": fields.timestamp,
                "nonce": fields.nonce,
                "signature": fields.signature,
            },
        )

    inner = json.loads(response.json()["json"])
    assert inner["code"] == 0
    assert [(s["name"], s["code"]) for s in inner["summary"]] == [("bomb.zip", 14)]


def test_is_zip_knows_the_magic() -> None:
    assert is_zip(make_zip([("a.png", png(1))]))
    assert is_zip(make_zip([]))
    assert not is_zip(png(1))


# -- the CLI -----------------------------------------------------------------------------------


def test_the_cli_expands_zip_files_given_or_found(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.png").write_bytes(png(1))
    (tmp_path / "pics.zip").write_bytes(make_zip([("x.png", png(2)), ("y.png", png(3))]))
    (tmp_path / "bomb.zip").write_bytes(make_zip([("b.bmp", b"\0" * (8 * 1024 * 1024))]))

    names = [im.name for im in expand_inputs([str(tmp_path)]) if isinstance(im, Image)]
    given_names = [
        im.name for im in expand_inputs([str(tmp_path / "pics.zip")]) if isinstance(im, Image)
    ]

    assert names == [
        str(tmp_path / "a.png"),
        str(tmp_path / "bomb.zip"),  # refused: passed on as one input, which fails alone
        f"{tmp_path / 'pics.zip'}/x.png",
        f"{tmp_path / 'pics.zip'}/y.png",
    ]
    assert given_names == [f"{tmp_path / 'pics.zip'}/x.png", f"{tmp_path / 'pics.zip'}/y.png"]
