"""The ``tupu-async`` command line, end to end against the fake server over loopback HTTP.

Most tests run the commands in-process (typer's CliRunner: stdout and stderr are pipes,
not terminals); the subprocess tests check what a pipe really receives, and that an
interrupted crawl resumes without duplicates.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tupu_async import ConfigurationError, Image, KeyLoadError
from tupu_async._signing import sign_message
from tupu_async.cli import _libraries_cmd, main
from tupu_async.cli._app import app
from tupu_async.cli._config import SettingError, resolve_settings
from tupu_async.cli._demo import demo_inputs
from tupu_async.cli._inputs import expand_inputs, names_in_output
from tupu_async.testing import FakeTupuServer

VECTORS = pathlib.Path(__file__).parent / "vectors"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
ANSI_ESCAPE = "\x1b["


class Fake:
    """A fake server on loopback and the environment that points the CLI at it."""

    def __init__(self, server: FakeTupuServer, base_url: str, directory: pathlib.Path) -> None:
        self.server = server
        self.base_url = base_url
        secret_id, private_pem = server.add_credentials("cli-test")
        self.key_file = directory / "client.pem"
        self.key_file.write_bytes(private_pem)
        self.public_key_file = directory / "tupu.pub.pem"
        self.public_key_file.write_bytes(server.public_key_pem)
        self.env = {
            "TUPU_SECRET_ID": secret_id,
            "TUPU_PRIVATE_KEY": str(self.key_file),
            "TUPU_BASE_URL": base_url,
            "TUPU_PUBLIC_KEY": str(self.public_key_file),
            "TUPU_REGION": "",
        }


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fake]:
    server = FakeTupuServer(qps_limit=None)
    with server.serve_in_thread() as base_url:
        yield Fake(server, base_url, tmp_path_factory.mktemp("keys"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def urls(count: int, prefix: str = "img") -> list[str]:
    return [f"http://images.test/{prefix}/{i:04d}.jpg" for i in range(count)]


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _cli_env(fake: Fake) -> dict[str, str]:
    env = dict(os.environ)
    env.update(fake.env)
    env["COLUMNS"] = "100"
    env.pop("TUPU_LOG", None)
    return env


# ------------------------------------------------------------------------ recognize


def test_recognize_prints_one_json_line_per_image_and_exits_0(
    fake: Fake, runner: CliRunner
) -> None:
    inputs = urls(23)

    result = runner.invoke(app, ["recognize", *inputs], env=fake.env)

    assert result.exit_code == 0, result.stderr
    lines = json_lines(result.stdout)
    assert sorted(str(line["name"]) for line in lines) == inputs
    assert all(line["ok"] is True and line["code"] == 0 for line in lines)
    assert all(line["tasks"] for line in lines)
    assert "Summary" in result.stderr
    assert "23 images in" in result.stderr
    assert ANSI_ESCAPE not in result.stdout + result.stderr


def test_some_failed_images_exit_1_with_a_line_each(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(PNG)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    args = [
        *urls(3),
        "http://images.test/download-fail/x.jpg",
        str(good),
        str(bad),
    ]
    listing = tmp_path / "list.txt"  # a list file's missing path is that image's failure
    listing.write_text(str(tmp_path / "missing.jpg") + "\n")

    result = runner.invoke(app, ["recognize", *args, "--from-file", str(listing)], env=fake.env)

    assert result.exit_code == 1
    by_name = {str(line["name"]): line for line in json_lines(result.stdout)}
    assert set(by_name) == {*args, str(tmp_path / "missing.jpg")}
    assert by_name[str(good)]["ok"] is True
    assert by_name["http://images.test/download-fail/x.jpg"]["code"] == 14
    assert by_name[str(bad)]["error"]["type"] == "InvalidImageError"  # type: ignore[index]
    missing = by_name[str(tmp_path / "missing.jpg")]
    assert missing["ok"] is False
    assert "no such file" in missing["error"]["message"]  # type: ignore[index]
    assert "pathlib" not in missing["error"]["message"]  # type: ignore[index]
    assert "failures" in result.stderr
    assert "ImageError (code 14)" in result.stderr


def test_summary_counts_by_suggestion_and_risk_type(fake: Fake, runner: CliRunner) -> None:
    args = [
        "http://images.test/porn/1.jpg",
        "http://images.test/porn/2.jpg",
        "http://images.test/sexy/3.jpg",
        "http://images.test/plain/4.jpg",
    ]

    result = runner.invoke(app, ["recognize", *args], env=fake.env)

    assert result.exit_code == 0
    lines = {str(line["name"]): line for line in json_lines(result.stdout)}
    assert lines[args[0]]["suggestion"] == 1
    assert lines[args[2]]["suggestion"] == 2
    summary = result.stderr
    assert "suggestion" in summary
    assert "block" in summary
    assert "review" in summary
    assert "porn" in summary


@pytest.mark.parametrize(
    ("unset", "named"),
    [("TUPU_SECRET_ID", "TUPU_SECRET_ID"), ("TUPU_PRIVATE_KEY", "TUPU_PRIVATE_KEY")],
)
def test_a_missing_setting_exits_2_naming_the_variable(
    fake: Fake, runner: CliRunner, unset: str, named: str
) -> None:
    env = dict(fake.env)
    env[unset] = ""

    result = runner.invoke(app, ["recognize", *urls(1)], env=env)

    assert result.exit_code == 2
    assert named in result.stderr
    assert result.stdout == ""


def test_bad_settings_exit_2(fake: Fake, runner: CliRunner, tmp_path: pathlib.Path) -> None:
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    cases = [
        {"TUPU_PRIVATE_KEY": str(tmp_path / "nowhere.pem")},
        {"TUPU_PRIVATE_KEY": str(not_a_key)},
        {"TUPU_REGION": "mars"},
        {"TUPU_BASE_URL": "ftp://example"},
    ]
    for change in cases:
        result = runner.invoke(app, ["recognize", *urls(1)], env={**fake.env, **change})
        assert result.exit_code == 2, (change, result.stderr)
        assert "error" in result.stderr


def test_rejected_credentials_exit_2(fake: Fake, runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["recognize", *urls(5), "--secret-id", "nobody-knows-me"], env=fake.env
    )

    assert result.exit_code == 2
    assert "AuthenticationError" in result.stderr


def test_a_wrong_tupu_public_key_exits_2(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    official = VECTORS / "tupu-official-public-key.pem"

    result = runner.invoke(
        app, ["recognize", *urls(2), "--public-key", str(official)], env=fake.env
    )

    assert result.exit_code == 2
    assert "SignatureVerificationError" in result.stderr


def test_out_file_and_resume_skip_images_already_done(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    everything = urls(40, "resume")
    listing = tmp_path / "list.txt"
    listing.write_text("# first part\n\n" + "\n".join(everything[:15]) + "\n")
    out = tmp_path / "results.jsonl"

    first = runner.invoke(
        app, ["recognize", "--from-file", str(listing), "--out", str(out)], env=fake.env
    )
    assert first.exit_code == 0
    assert first.stdout == ""
    assert len(json_lines(out.read_text())) == 15

    listing.write_text("\n".join(everything) + "\n")
    second = runner.invoke(
        app,
        ["recognize", "--from-file", str(listing), "--out", str(out), "--resume"],
        env=fake.env,
    )

    assert second.exit_code == 0
    assert "15 images already in" in second.stderr
    names = [str(line["name"]) for line in json_lines(out.read_text())]
    assert len(names) == len(set(names)) == 40
    assert set(names) == set(everything)


def test_resume_tolerates_a_torn_last_line(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    inputs = urls(4, "torn")
    out = tmp_path / "results.jsonl"
    out.write_text(json.dumps({"name": inputs[0], "ok": True}) + "\n" + '{"name": "http://ima')

    result = runner.invoke(app, ["recognize", *inputs, "--out", str(out), "--resume"], env=fake.env)

    assert result.exit_code == 0
    assert names_in_output(out) == set(inputs)
    assert sum(1 for line in out.read_text().splitlines() if line.startswith('{"index"')) == 3


def test_resume_needs_out(fake: Fake, runner: CliRunner) -> None:
    result = runner.invoke(app, ["recognize", *urls(1), "--resume"], env=fake.env)

    assert result.exit_code == 2
    assert "--out" in result.stderr


def test_a_mistyped_folder_or_file_exits_2_before_any_request(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(PNG)
    before = fake.server.stats.total_requests

    for typo in (str(tmp_path / "phtos"), str(tmp_path / "photos" / "b.png")):
        result = runner.invoke(app, ["recognize", *urls(2), str(photos), typo], env=fake.env)

        assert result.exit_code == 2
        said = " ".join(result.stderr.split())  # rich wraps long lines
        assert f"no such file or folder: {typo!r}" in said
        assert "arguments are http(s) URLs, image files or folders" in said
        assert "pathlib" not in said
        assert result.stdout == ""
    assert fake.server.stats.total_requests == before


def test_a_missing_list_file_exits_2(fake: Fake, runner: CliRunner, tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "urls.txt")
    result = runner.invoke(app, ["recognize", "--from-file", missing], env=fake.env)

    assert result.exit_code == 2
    assert f"--from-file {missing!r}: no such file" in " ".join(result.stderr.split())


def test_a_base_url_with_the_api_path_is_normalised(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    env = dict(fake.env)
    for suffix in ("/v3/recognition/", "/v3/recognition/cli-test", "/v3/recognition"):
        env["TUPU_BASE_URL"] = fake.base_url + suffix  # as the official SDKs take it

        result = runner.invoke(app, ["recognize", *urls(3, "sdk-url")], env=env)

        assert result.exit_code == 0, result.stderr
        assert all(line["ok"] for line in json_lines(result.stdout))


@pytest.mark.parametrize(
    "base_url", ["ftp://api.open.tuputech.com", "http://", "http://host/v3/recognition/?x=1"]
)
def test_an_unusable_base_url_exits_2_before_any_request(
    fake: Fake, runner: CliRunner, base_url: str
) -> None:
    before = fake.server.stats.total_requests
    result = runner.invoke(app, ["recognize", *urls(1), "--base-url", base_url], env=fake.env)

    assert result.exit_code == 2
    assert "TUPU_BASE_URL" in result.stderr
    assert fake.server.stats.total_requests == before


@pytest.mark.parametrize(
    "command",
    [[], ["recognize"], ["verify"], ["demo"], ["libraries"], ["libraries", "sync"]],
)
def test_help_shows_no_bool_placeholders(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})

    assert result.exit_code == 0
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout


def test_nothing_to_recognise_exits_2(fake: Fake, runner: CliRunner) -> None:
    result = runner.invoke(app, ["recognize"], env=fake.env)

    assert result.exit_code == 2


def test_folders_expand_to_image_files(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "B.PNG").write_bytes(PNG)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(PNG)

    flat = runner.invoke(app, ["recognize", str(tmp_path)], env=fake.env)
    deep = runner.invoke(app, ["recognize", str(tmp_path), "--recursive"], env=fake.env)

    assert flat.exit_code == deep.exit_code == 0
    assert sorted(pathlib.Path(str(x["name"])).name for x in json_lines(flat.stdout)) == [
        "B.PNG",
        "a.png",
    ]
    assert len(json_lines(deep.stdout)) == 3


@pytest.mark.skipif(os.name != "posix", reason="FIFOs and byte file names are POSIX")
def test_special_files_and_odd_names_never_stop_a_run(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "sub" / "pipe.jpg")  # skipped by the walk: never opened
    odd = os.path.join(os.fsencode(tmp_path / "sub"), b"caf\xe9.png")  # Latin-1 name
    with open(odd, "wb") as handle:
        handle.write(PNG)
    os.mkfifo(tmp_path / "named.jpg")  # named explicitly: refused as a FIFO
    args = [str(tmp_path / "sub"), str(tmp_path / "named.jpg"), "/dev/zero"]

    started = time.monotonic()
    result = runner.invoke(app, ["recognize", *args, "--recursive"], env=fake.env)

    assert time.monotonic() - started < 10
    by_name = {str(line["name"]): line for line in json_lines(result.stdout)}
    assert result.exit_code == 1
    assert len(by_name) == 3
    assert by_name[str(tmp_path / "sub" / "caf") + "\\xe9.png"]["ok"] is True
    assert "FIFO" in str(by_name[str(tmp_path / "named.jpg")]["error"])
    assert "device" in str(by_name["/dev/zero"]["error"])


def test_from_file_dash_reads_stdin(fake: Fake, runner: CliRunner) -> None:
    inputs = urls(3, "stdin")

    result = runner.invoke(
        app, ["recognize", "--from-file", "-"], input="\n".join(inputs) + "\n", env=fake.env
    )

    assert result.exit_code == 0
    assert sorted(str(x["name"]) for x in json_lines(result.stdout)) == inputs


def test_base64_transport_and_tasks(fake: Fake, runner: CliRunner, tmp_path: pathlib.Path) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(PNG)
    porn = "54bcfc6c329af61034f7c2fc"

    result = runner.invoke(
        app,
        ["recognize", str(image), "--transport", "base64", "--tasks", porn],
        env=fake.env,
    )

    assert result.exit_code == 0, result.stderr
    (line,) = json_lines(result.stdout)
    assert list(line["tasks"]) == [porn]  # type: ignore[call-overload]


# ------------------------------------------------------------ real pipes, real signals


def test_piped_output_is_clean_json_lines_and_a_readable_summary(
    fake: Fake, tmp_path: pathlib.Path
) -> None:
    inputs = urls(30, "pipe")
    proc = subprocess.run(
        [sys.executable, "-m", "tupu_async.cli", "recognize", *inputs],
        env=_cli_env(fake),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 30
    assert all(json.loads(line)["ok"] for line in lines)  # nothing but JSON on stdout
    assert ANSI_ESCAPE not in proc.stdout
    assert ANSI_ESCAPE not in proc.stderr
    assert "\r" not in proc.stderr  # no live-redraw carriage returns in a log
    assert "30/30" in proc.stderr  # the bar is drawn once, finished
    assert "Summary" in proc.stderr


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C interrupts, whatever the parent inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_run_resumes_without_duplicates(fake: Fake, tmp_path: pathlib.Path) -> None:
    everything = urls(120, "interrupted")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(everything) + "\n")
    out = tmp_path / "results.jsonl"
    command = [
        sys.executable,
        "-m",
        "tupu_async.cli",
        "recognize",
        "--from-file",
        str(listing),
        "--out",
        str(out),
        "--qps",
        "4",
    ]
    proc = subprocess.Popen(
        command,
        env=_cli_env(fake),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,  # pytest may run with SIGINT ignored (nohup, `&`)
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= 10:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    done = names_in_output(out)
    assert 10 <= len(done) < 120

    resumed = subprocess.run(
        [*command[:-2], "--resume"],
        env=_cli_env(fake),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(done)} images already in" in resumed.stderr
    names = [str(line["name"]) for line in json_lines(out.read_text())]
    assert len(names) == len(set(names)) == 120


# --------------------------------------------------------------------------- verify


def test_verify_a_real_tupu_envelope_with_the_bundled_key(runner: CliRunner) -> None:
    result = runner.invoke(app, ["verify", str(VECTORS / "real-callback-2023.json")], env={})

    assert result.exit_code == 0, result.stderr
    assert "signature valid" in result.stdout
    assert "review" in result.stdout


def test_verify_a_tampered_envelope_exits_1(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    envelope = json.loads((VECTORS / "real-response-2018.json").read_text())
    envelope["json"] = envelope["json"].replace('"label":3', '"label":0', 1)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(envelope))

    result = runner.invoke(app, ["verify", str(tampered)], env={})

    assert result.exit_code == 1
    assert "INVALID" in result.stderr


def test_verify_with_a_given_public_key(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    text = json.dumps({"code": 0, "message": "success", "timestamp": 1, "nonce": "n"})
    envelope = tmp_path / "callback.json"
    envelope.write_text(
        json.dumps(
            {"json": text, "signature": sign_message(fake.server.signing_key, text.encode())}
        )
    )

    with_key = runner.invoke(
        app, ["verify", str(envelope), "--public-key", str(fake.public_key_file)], env={}
    )
    from_env = runner.invoke(app, ["verify", str(envelope)], env=fake.env)
    official = runner.invoke(app, ["verify", str(envelope)], env={"TUPU_PUBLIC_KEY": ""})

    assert with_key.exit_code == 0
    assert from_env.exit_code == 0
    assert official.exit_code == 1


@pytest.mark.parametrize(
    "body", [b"", b"<html>502 Bad Gateway</html>", b'{"json": 5}', b'{"code": 0}']
)
def test_verify_something_that_is_not_an_envelope_exits_1(
    runner: CliRunner, tmp_path: pathlib.Path, body: bytes
) -> None:
    path = tmp_path / "body.json"
    path.write_bytes(body)

    result = runner.invoke(app, ["verify", str(path)], env={})

    assert result.exit_code == 1
    assert "error" in result.stderr


def test_verify_a_missing_file_exits_2(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    result = runner.invoke(app, ["verify", str(tmp_path / "nope.json")], env={})

    assert result.exit_code == 2


# ----------------------------------------------------------------------------- demo


def test_demo_runs_and_reports_throughput(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["demo", "--images", "150", "--latency", "0", "--jitter", "0", "--in-thread"]
    )

    assert result.exit_code == 0, result.stdout + result.stderr
    out = result.stdout
    assert "150/150" in out
    assert "images/s" in out
    assert "500 images/s = 50 requests/s x 10 images" in out
    assert "mean images per request" in out
    assert "max requests in any 1 s" in out
    assert "deliberately bad inputs" in out


def test_demo_in_a_server_process_writes_json_lines(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "demo.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tupu_async.cli",
            "demo",
            "-n",
            "200",
            "--latency",
            "0.05",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "100"},
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(json_lines(out.read_text())) == 200
    assert "requests (server)" in proc.stdout


def test_demo_inputs_mix_urls_content_and_bad_inputs() -> None:
    inputs, bad = demo_inputs(3000)
    items = list(inputs)

    assert len(items) == 3000
    assert bad == 4
    assert sum(1 for x in items if not isinstance(x, str)) == 12 + 2
    assert any("download-fail" in x for x in items if isinstance(x, str))


# ------------------------------------------------------------------------ libraries


def test_libraries_search_add_list_delete(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    library_id = fake.server.create_library("cli-blacklist")
    (tmp_path / "logo.png").write_bytes(PNG)

    search = runner.invoke(app, ["libraries", "search", "--json"], env=fake.env)
    assert search.exit_code == 0, search.stderr
    assert library_id in {lib["id"] for lib in json.loads(search.stdout)}

    add = runner.invoke(
        app,
        [
            "libraries",
            "add",
            library_id,
            "http://images.test/lib/cat.jpg",
            "dog=http://images.test/lib/d.jpg",
            str(tmp_path / "logo.png"),
        ],
        env=fake.env,
    )
    assert add.exit_code == 0, add.stdout + add.stderr
    assert set(fake.server.library_images(library_id)) == {"cat.jpg", "dog", "logo.png"}

    listing = runner.invoke(app, ["libraries", "list", library_id], env=fake.env)
    assert listing.exit_code == 0
    assert "cat.jpg" in listing.stdout
    assert "logo.png" in listing.stdout

    delete = runner.invoke(
        app, ["libraries", "delete", library_id, "dog", "not-there", "--json"], env=fake.env
    )
    assert delete.exit_code == 1  # one name was not in the library
    outcomes = {o["name"]: o["code"] for o in json.loads(delete.stdout)}
    assert outcomes["dog"] == 0
    assert outcomes["not-there"] != 0
    assert set(fake.server.library_images(library_id)) == {"cat.jpg", "logo.png"}


def test_libraries_sync_a_folder(fake: Fake, runner: CliRunner, tmp_path: pathlib.Path) -> None:
    library_id = fake.server.create_library("cli-sync")
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(PNG)

    dry = runner.invoke(
        app, ["libraries", "sync", library_id, str(tmp_path), "--dry-run"], env=fake.env
    )
    assert dry.exit_code == 0, dry.stdout + dry.stderr
    summary = f"library {library_id}: would add 2, would delete 0, unchanged 0, failed 0, "
    assert dry.stdout.splitlines()[0] == summary + "skipped 0"  # one line, not wrapped
    assert fake.server.library_images(library_id) == {}

    real = runner.invoke(app, ["libraries", "sync", library_id, str(tmp_path)], env=fake.env)
    assert real.exit_code == 0
    assert set(fake.server.library_images(library_id)) == {"a.png", "b.png"}

    (tmp_path / "a.png").unlink()
    again = runner.invoke(
        app, ["libraries", "sync", library_id, str(tmp_path), "--json"], env=fake.env
    )
    assert again.exit_code == 0
    assert json.loads(again.stdout)["deleted"] == ["a.png"]
    assert set(fake.server.library_images(library_id)) == {"b.png"}


def test_libraries_commands_need_settings(runner: CliRunner) -> None:
    result = runner.invoke(app, ["libraries", "search"], env={"TUPU_SECRET_ID": ""})

    assert result.exit_code == 2
    assert "TUPU_SECRET_ID" in result.stderr


# ------------------------------------------------------------------- config, inputs


def test_settings_flags_win_over_environment(tmp_path: pathlib.Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\n...")
    env = {"TUPU_SECRET_ID": "from-env", "TUPU_PRIVATE_KEY": str(key), "TUPU_REGION": "US"}

    settings = resolve_settings(secret_id="from-flag", env=env)

    assert settings.secret_id == "from-flag"
    assert settings.private_key == key
    assert settings.region.value == "us"
    assert settings.public_key is None


def test_private_key_may_be_pem_text_with_escaped_newlines() -> None:
    env = {"TUPU_SECRET_ID": "s", "TUPU_PRIVATE_KEY": "-----BEGIN KEY-----\\nabc\\n-----END"}

    settings = resolve_settings(env=env)

    assert settings.private_key == "-----BEGIN KEY-----\nabc\n-----END"


def test_missing_secret_id_names_the_variable() -> None:
    with pytest.raises(SettingError, match="TUPU_SECRET_ID"):
        resolve_settings(env={})


def test_expand_inputs_makes_every_non_url_argument_a_path(tmp_path: pathlib.Path) -> None:
    url, item = expand_inputs(["http://x.test/a.jpg", str(tmp_path / "nope.jpg")])

    assert url == "http://x.test/a.jpg"
    assert isinstance(item, Image)
    assert item.kind == "path"
    assert item.path == tmp_path / "nope.jpg"
    assert item.name == str(tmp_path / "nope.jpg")


def test_main_without_the_cli_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "typer", None)
    monkeypatch.delitem(sys.modules, "tupu_async.cli._app")

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    assert exit_info.value.code == 2
    assert "pip install 'tupu-async[cli]'" in capsys.readouterr().err


def test_a_closed_pipe_stops_the_run_quietly(fake: Fake) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tupu_async.cli", "recognize", *urls(400, "pipe-closed")],
        env=_cli_env(fake),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    _, stderr = proc.communicate(timeout=60)

    assert json.loads(first)["ok"] is True
    assert proc.returncode == 1
    assert "Traceback" not in stderr
    assert "Broken pipe" not in stderr


def test_resize_without_pillow_exits_2_saying_what_to_install(
    fake: Fake, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)

    result = runner.invoke(app, ["recognize", *urls(1), "--resize"], env=fake.env)

    assert result.exit_code == 2
    assert "pip install 'tupu-async[images]'" in result.stderr


def test_names_with_brackets_are_printed_literally(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    odd = tmp_path / "[bold]odd[red].png"
    odd.write_bytes(b"not an image")

    result = runner.invoke(app, ["recognize", str(odd)], env={**fake.env, "COLUMNS": "300"})

    assert result.exit_code == 1
    assert "[bold]odd[red].png" in result.stderr


def test_resize_option_shrinks_a_large_file(
    fake: Fake, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    from PIL import Image as PILImage

    big = tmp_path / "big.png"
    PILImage.frombytes("RGB", (1100, 1000), os.urandom(1100 * 1000 * 3)).save(big)

    without = runner.invoke(app, ["recognize", str(big)], env=fake.env)
    with_resize = runner.invoke(app, ["recognize", str(big), "--resize"], env=fake.env)

    assert without.exit_code == 1
    assert "resize=True" in json_lines(without.stdout)[0]["message"]  # type: ignore[operator]
    assert with_resize.exit_code == 0


def test_libraries_search_prints_a_table(fake: Fake, runner: CliRunner) -> None:
    library_id = fake.server.create_library("[red]cli-table", type=1, threshold=0.9, status=1)

    result = runner.invoke(app, ["libraries", "search"], env={**fake.env, "COLUMNS": "200"})

    assert result.exit_code == 0, result.stderr
    assert "image libraries" in result.stdout
    row = next(line for line in result.stdout.splitlines() if library_id in line)
    cells = [cell.strip() for cell in row.strip("│┃| ").split("│")]
    assert cells == [library_id, "[red]cli-table", "white", "0.9", "1", "0"]  # markup stays text


@pytest.mark.parametrize(
    ("raised", "exit_code", "words"),
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (ConfigurationError("Tupu code 13: enable tasks", code=13), 2, "ConfigurationError"),
        (KeyLoadError("unusable key: supply a PEM file"), 2, "unusable key"),
        (ImportError("pip install 'tupu-async[redis]'"), 2, "tupu-async[redis]"),
        (ValueError("a bad value"), 2, "a bad value"),
        (OSError("disk gone"), 2, "disk gone"),
    ],
)
def test_what_a_command_raises_becomes_an_exit_code_and_one_line(
    fake: Fake,
    runner: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
    exit_code: int,
    words: str,
) -> None:
    async def failing(*args: object) -> int:
        raise raised

    monkeypatch.setattr(_libraries_cmd, "run_search", failing)

    result = runner.invoke(app, ["libraries", "search"], env={**fake.env, "COLUMNS": "200"})

    assert result.exit_code == exit_code
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
