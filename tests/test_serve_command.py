"""``python -m tupu_async.testing serve``: a fake a person points the CLI at with one line."""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import sys

import pytest

from tupu_async.testing import DOWNLOAD_FAIL_WORD
from tupu_async.testing._command import _tell_people, build_parser, export_line


def test_export_line_quotes_and_resolves_paths(tmp_path: pathlib.Path) -> None:
    line = export_line(
        "http://127.0.0.1:9", ["my id"], client_key="c.pem", public_key=str(tmp_path / "p.pem")
    )
    words = shlex.split(line)
    assert words[0] == "export"
    settings = dict(word.split("=", 1) for word in words[1:])
    assert settings["TUPU_BASE_URL"] == "http://127.0.0.1:9"
    assert settings["TUPU_SECRET_ID"] == "my id"
    assert pathlib.Path(settings["TUPU_PRIVATE_KEY"]).is_absolute()
    assert settings["TUPU_PUBLIC_KEY"] == str(tmp_path / "p.pem")


def test_serve_writes_its_keys_and_prints_a_line_the_cli_runs_with(tmp_path: pathlib.Path) -> None:
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "tupu_async.testing", "serve", "--secret-id", "demo"),
            *("--client-key-out", "client.pem", "--public-key-out", "tupu.pub.pem"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        said = [server.stderr.readline() for _ in range(2)]  # blocks until it is ready
        assert said[0].startswith("fake Tupu API on http://127.0.0.1:")
        settings = dict(word.split("=", 1) for word in shlex.split(said[1])[1:])
        assert (tmp_path / "tupu.pub.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
        assert settings["TUPU_PUBLIC_KEY"] == str(tmp_path / "tupu.pub.pem")

        env = {**os.environ, **settings, "COLUMNS": "100"}
        urls = ["http://example.test/a.jpg", f"http://example.test/{DOWNLOAD_FAIL_WORD}.jpg"]
        cli = subprocess.run(
            [sys.executable, "-m", "tupu_async.cli", "recognize", *urls],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert cli.returncode == 1, cli.stderr  # one image failed on purpose
    assert cli.stdout.count('"ok": true') == 1
    assert '"code": 14' in cli.stdout


def test_with_your_own_public_key_it_asks_for_its_private_half(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's credentials flow registers an openssl key: no --client-key-out hint."""
    args = build_parser().parse_args(
        ["serve", "--secret-id", "me", "--public-key-file", "rsa_public_key.pem"]
    )
    _tell_people({"base_url": "http://127.0.0.1:9", "secret_ids": ["me"]}, args)
    told = capsys.readouterr().err
    assert "--client-key-out" not in told
    assert "TUPU_PRIVATE_KEY=<the private half of your --public-key-file>" in told
