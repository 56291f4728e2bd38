"""The CLI never prints a private key, in any form it accepts or refuses.

Every command below runs against the fake server over loopback; all of its output
(stdout and stderr, with and without whitespace) is scanned for any 24-character run
of the key in any of its spellings.
"""

from __future__ import annotations

import base64
import pathlib
import re
import textwrap
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from tupu_async.cli._app import app
from tupu_async.cli._config import KEY_ON_ARGV_WARNING, SettingError, resolve_settings
from tupu_async.testing import FakeTupuServer

RUN = 24


class Keyed:
    """A fake server, a registered secret id and every spelling of its private key."""

    def __init__(self, server: FakeTupuServer, base_url: str, directory: pathlib.Path) -> None:
        self.secret_id, pem = server.add_credentials("keys-test")
        self.pem = pem.decode("ascii")
        self.key_file = directory / "client.pem"
        self.key_file.write_bytes(pem)
        self.public_key_file = directory / "tupu.pub.pem"
        self.public_key_file.write_bytes(server.public_key_pem)
        self.body_lines = [ln for ln in self.pem.splitlines() if ln and not ln.startswith("-")]
        self.body = "\n".join(self.body_lines)
        self.b64_pem = base64.b64encode(pem).decode("ascii")
        self.base_env = {
            "TUPU_SECRET_ID": self.secret_id,
            "TUPU_BASE_URL": base_url,
            "TUPU_PUBLIC_KEY": str(self.public_key_file),
            "TUPU_REGION": "",
            "TUPU_PRIVATE_KEY": "",
            "TUPU_LOG": "debug",
            "COLUMNS": "80",
        }
        spellings = [self.pem, "".join(self.body_lines), self.b64_pem]
        self.runs = {s[i : i + RUN] for s in spellings for i in range(len(s) - RUN + 1)}

    def env(self, key: str | None) -> dict[str, str]:
        env = dict(self.base_env)
        if key is not None:
            env["TUPU_PRIVATE_KEY"] = key
        return env

    def leaks(self, result: Result) -> list[str]:
        text = result.stdout + result.stderr
        squeezed = "".join(text.split())
        return sorted(r for r in self.runs if r in text or r in squeezed)[:3]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    server = FakeTupuServer(qps_limit=None)
    with server.serve_in_thread() as base_url:
        yield Keyed(server, base_url, tmp_path_factory.mktemp("keys"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


URL = "http://images.test/keys/0001.jpg"


def good_spellings(k: Keyed) -> dict[str, str]:
    return {
        "pem": k.pem,
        "pem with \\n escapes": k.pem.replace("\n", "\\n"),
        "base64 of the pem": k.b64_pem,
        "wrapped base64 of the pem": "\n".join(textwrap.wrap(k.b64_pem, 76)),
        "pem body without header": k.body,
        "pem body on one line": "".join(k.body_lines),
    }


def bad_spellings(k: Keyed) -> dict[str, str]:
    half = len(k.body_lines) // 2
    return {
        "truncated body": "\n".join(k.body_lines[:half]),
        "body and footer, no header": k.body + "\n-----END RSA PRIVATE KEY-----",
        "truncated pem": k.pem[: len(k.pem) // 2],
        "truncated base64 pem": k.b64_pem[: len(k.b64_pem) // 2],
        "body with a space inside": k.body_lines[0][:30] + " " + k.body_lines[0][30:],
        "body with a bad character": k.body.replace(k.body_lines[1][5], "!", 1),
        "two keys glued": k.body + k.body,
    }


def test_every_accepted_spelling_works_from_the_environment_without_echo(
    keyed: Keyed, runner: CliRunner
) -> None:
    for name, value in good_spellings(keyed).items():
        result = runner.invoke(app, ["recognize", URL], env=keyed.env(value))
        assert result.exit_code == 0, (name, result.stderr)
        assert '"ok": true' in result.stdout, name
        assert keyed.leaks(result) == [], name
        assert "warning" not in result.stderr, name


def test_key_text_on_argv_works_with_a_warning_and_no_echo(keyed: Keyed, runner: CliRunner) -> None:
    for name, value in good_spellings(keyed).items():
        result = runner.invoke(app, ["recognize", URL, "--private-key", value], env=keyed.env(None))
        assert result.exit_code == 0, (name, result.stderr)
        assert "ps" in result.stderr
        assert "warning" in result.stderr
        assert keyed.leaks(result) == [], name


def test_a_key_file_on_argv_gives_no_warning(keyed: Keyed, runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["recognize", URL, "--private-key", str(keyed.key_file)], env=keyed.env(None)
    )
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr


@pytest.mark.parametrize("where", ["env", "argv"])
def test_every_refused_spelling_exits_2_without_echo(
    keyed: Keyed, runner: CliRunner, where: str
) -> None:
    for name, value in bad_spellings(keyed).items():
        if where == "env":
            result = runner.invoke(app, ["recognize", URL], env=keyed.env(value))
        else:
            result = runner.invoke(
                app, ["recognize", URL, "--private-key", value], env=keyed.env(None)
            )
        assert result.exit_code == 2, (name, result.stdout, result.stderr)
        assert "error" in result.stderr, name
        assert "private key" in result.stderr, name
        assert keyed.leaks(result) == [], (name, result.stderr)


def test_other_commands_and_error_paths_do_not_echo_the_key(
    keyed: Keyed, runner: CliRunner, tmp_path: pathlib.Path
) -> None:
    b64 = keyed.b64_pem
    envelope = tmp_path / "envelope.json"
    envelope.write_text('{"json": "{}", "signature": "AAAA"}')
    runs: list[tuple[list[str], dict[str, str]]] = [
        (["libraries", "search"], keyed.env(b64)),
        (["libraries", "list", "lib-1"], keyed.env(b64)),
        (["libraries", "add", "lib-1", "http://images.test/a.jpg"], keyed.env(b64)),
        (["libraries", "search", "--private-key", keyed.pem], keyed.env(None)),
        (["recognize", URL, "--secret-id", "nobody"], keyed.env(b64)),  # auth refused
        (["recognize", URL, "--region", "mars"], keyed.env(b64)),
        (["recognize", URL, "--base-url", "ftp://x"], keyed.env(b64)),
        (
            ["recognize", URL, "--base-url", "http://127.0.0.1:9", "--max-retries", "0"],
            keyed.env(b64),
        ),
        (["recognize", URL, "--public-key", keyed.pem], keyed.env(b64)),  # wrong half
        (["recognize", URL, "--qps", "-1"], keyed.env(b64)),
        (["recognize", URL, "--resume"], keyed.env(b64)),
        (["recognize"], keyed.env(b64)),
        (["recognize", URL], {**keyed.env(b64), "TUPU_SECRET_ID": ""}),
        (["verify", str(envelope)], keyed.env(b64)),
        (["verify", str(envelope), "--public-key", keyed.pem], keyed.env(b64)),
        # The private key where the public key belongs, in every spelling:
        *(
            (["recognize", URL, "--public-key", value], keyed.env(b64))
            for value in (b64, keyed.body, "".join(keyed.body_lines), keyed.body_lines[3])
        ),
        *(
            (["verify", str(envelope)], {**keyed.env(b64), "TUPU_PUBLIC_KEY": value})
            for value in (b64, keyed.body, keyed.body_lines[3])
        ),
        (["recognize", URL], {**keyed.env(b64), "TUPU_PUBLIC_KEY": b64}),
        (["recognize", URL, "--private-key", keyed.b64_pem[:-8] + "@@@@@@@@"], keyed.env(None)),
    ]
    codes = []
    for args, env in runs:
        result = runner.invoke(app, args, env=env)
        codes.append(result.exit_code)
        assert keyed.leaks(result) == [], (args[:3], result.stderr)
    assert 2 in codes
    assert 1 in codes or 0 in codes


# --- settings ---------------------------------------------------------------------------------


def test_settings_repr_hides_key_text_but_shows_a_path(keyed: Keyed) -> None:
    warnings: list[str] = []
    settings = resolve_settings(private_key=keyed.pem, env=keyed.env(None), warn=warnings.append)
    assert warnings == [KEY_ON_ARGV_WARNING]
    shown = repr(settings)
    assert "hidden" in shown
    assert not any(r in shown for r in keyed.runs)
    from_file = resolve_settings(env=keyed.env(str(keyed.key_file)), warn=warnings.append)
    assert str(keyed.key_file) in repr(from_file)
    assert len(warnings) == 1  # a path is fine, and the environment is not argv


def test_a_mistyped_key_path_is_still_quoted(keyed: Keyed) -> None:
    with pytest.raises(SettingError, match=re.escape("'~/keys/tupu.pub.pem'")):
        resolve_settings(public_key="~/keys/tupu.pub.pem", env=keyed.env(str(keyed.key_file)))


def test_a_huge_non_key_value_says_what_to_do_without_oserror(keyed: Keyed) -> None:
    with pytest.raises(SettingError, match="neither PEM text") as info:
        resolve_settings(env=keyed.env("x" * 5000 + "/not/base64/!"))
    assert "x" * 24 not in str(info.value)
    assert "TUPU_PRIVATE_KEY" in str(info.value)
