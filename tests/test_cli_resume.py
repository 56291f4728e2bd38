"""``recognize --out``: resume retries failures, compares full names, locks, never clobbers."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tupu_async.cli._app import app
from tupu_async.cli._output import OutputFileError, done_names, open_output
from tupu_async.testing import FakeTupuServer


class Fake:
    def __init__(self, server: FakeTupuServer, base_url: str, directory: pathlib.Path) -> None:
        self.server = server
        secret_id, pem = server.add_credentials("resume-test")
        key_file = directory / "client.pem"
        key_file.write_bytes(pem)
        public = directory / "tupu.pub.pem"
        public.write_bytes(server.public_key_pem)
        self.env = {
            "TUPU_SECRET_ID": secret_id,
            "TUPU_PRIVATE_KEY": str(key_file),
            "TUPU_BASE_URL": base_url,
            "TUPU_PUBLIC_KEY": str(public),
            "TUPU_REGION": "",
        }

    def images_sent(self) -> int:
        return sum(self.server.stats.images_per_request)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fake]:
    server = FakeTupuServer(qps_limit=None)
    with server.serve_in_thread() as base_url:
        yield Fake(server, base_url, tmp_path_factory.mktemp("keys"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def said(text: str) -> str:
    """Standard error with rich's line wrapping undone."""
    return " ".join(text.split())


def lines(path: pathlib.Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_resume_retries_failed_lines_and_skips_ok_ones(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    a, b, c = (f"http://images.test/resume-fail/{n}.jpg" for n in "abc")
    out = tmp_path / "out.jsonl"
    out.write_text(
        json.dumps({"name": a, "ok": False, "code": -1, "message": "network down"})
        + "\n"
        + json.dumps({"name": b, "ok": True, "code": 0})
        + "\n"
    )
    before = fake.images_sent()

    result = runner.invoke(app, ["recognize", a, b, c, "--out", str(out), "--resume"], env=fake.env)

    assert result.exit_code == 0, result.stderr
    assert "1 images already in" in said(result.stderr)
    assert fake.images_sent() - before == 2  # a (failed before) and c; not b
    records = lines(out)
    names = [str(r["name"]) for r in records]
    assert names[:2] == [a, b]  # the old lines stay; the new ones follow
    assert sorted(names[2:]) == sorted([a, c])
    assert done_names(out.read_text().splitlines()) == {a, b, c}


def test_resume_compares_full_names_of_long_urls(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    long_url = "http://images.test/signed/x.jpg?sig=" + "A" * 2000
    sibling = long_url[:-1] + "B"  # same first 500 characters, another image
    out = tmp_path / "out.jsonl"
    first = runner.invoke(app, ["recognize", long_url, "--out", str(out)], env=fake.env)
    assert first.exit_code == 0, first.stderr
    before = fake.images_sent()

    again = runner.invoke(
        app, ["recognize", long_url, sibling, "--out", str(out), "--resume"], env=fake.env
    )

    assert again.exit_code == 0, again.stderr
    assert fake.images_sent() - before == 1  # only the sibling; the long URL was done
    assert done_names(out.read_text().splitlines()) == {long_url, sibling}


def test_an_existing_output_is_never_clobbered_without_a_flag(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "precious.jsonl"
    out.write_text("precious results\n")
    url = "http://images.test/clobber/1.jpg"

    refused = runner.invoke(app, ["recognize", url, "--out", str(out)], env=fake.env)

    assert refused.exit_code == 2
    assert "--resume" in said(refused.stderr)
    assert "--overwrite" in said(refused.stderr)
    assert out.read_text() == "precious results\n"

    replaced = runner.invoke(
        app, ["recognize", url, "--out", str(out), "--overwrite"], env=fake.env
    )
    assert replaced.exit_code == 0, replaced.stderr
    assert [r["name"] for r in lines(out)] == [url]


def test_an_empty_existing_output_is_simply_used(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "empty.jsonl"
    out.write_text("")
    result = runner.invoke(
        app, ["recognize", "http://images.test/e/1.jpg", "--out", str(out)], env=fake.env
    )
    assert result.exit_code == 0, result.stderr
    assert len(lines(out)) == 1


def test_resume_and_overwrite_together_exit_2(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    result = runner.invoke(
        app,
        [
            "recognize",
            "http://images.test/x.jpg",
            "--out",
            str(tmp_path / "o"),
            "--resume",
            "--overwrite",
        ],
        env=fake.env,
    )
    assert result.exit_code == 2
    assert "contradict" in said(result.stderr)


HOLDER = """
import fcntl, sys
handle = open(sys.argv[1], "a")
fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_a_second_process_on_a_locked_output_exits_2(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path, flag: str
) -> None:
    out = tmp_path / "shared.jsonl"
    out.write_text(json.dumps({"name": "x", "ok": True}) + "\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        before = out.read_bytes()

        result = runner.invoke(
            app, ["recognize", "http://images.test/l/1.jpg", "--out", str(out), flag], env=fake.env
        )

        assert result.exit_code == 2
        assert "in use by another tupu-async process" in said(result.stderr)
        assert out.read_bytes() == before  # --overwrite did not truncate under the lock
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


def test_the_lock_lasts_until_the_writer_closes(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "o.jsonl")
    first = open_output(path, "new")
    with pytest.raises(OutputFileError, match="in use"):
        open_output(path, "resume")
    first.close()
    open_output(path, "resume").close()


def test_resume_ends_a_torn_line_before_appending(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "torn.jsonl"
    path.write_text('{"name": "a", "ok": true}\n{"name": "b", "o')
    handle = open_output(str(path), "resume")
    handle.write('{"name": "c", "ok": true}\n')
    handle.close()
    assert done_names(path.read_text().splitlines()) == {"a", "c"}


def test_a_pipe_output_is_used_without_a_lock(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        handle = open_output(str(fifo), "new")
        handle.write("x\n")
        handle.close()
        assert os.read(reader, 10) == b"x\n"
    finally:
        os.close(reader)


def test_demo_refuses_to_clobber_its_out_file(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "demo.jsonl"
    out.write_text("keep me\n")
    result = runner.invoke(app, ["demo", "-n", "5", "--in-thread", "--out", str(out)])
    assert result.exit_code == 2
    assert out.read_text() == "keep me\n"
