"""README.md as a newcomer reads it: the opening commands, and a Quick start that runs as pasted."""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(heading: str) -> str:
    """The text of a ``## heading`` section, up to the next ``## ``."""
    start = README.index(f"\n## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else len(README)]


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    commands = [line.strip() for line in README.splitlines()[:12] if line.startswith("    ")]
    assert commands == [
        "python3 -m pip install nox && python3 -m nox -s demo",
        "python3 -m pip install nox && python3 -m nox -s tests",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert '"$PY" -m nox -s tests\n' in ci  # CI runs the README's test command
    assert '"$PY" -m nox -s docs\n' in ci
    assert '"$PY" -m nox -s examples\n' in ci


def test_quick_start_runs_as_pasted_and_prints_what_the_readme_shows(
    tmp_path: pathlib.Path,
) -> None:
    quick_start = section("Quick start")
    code = fenced(quick_start, "python")[0]
    shown = fenced(quick_start, "text")[0]
    assert len(code.splitlines()) < 30
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUPU_")}
    # Anything but loopback would go through a proxy that does not exist, and fail.
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    env.update(ALL_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost")
    script = tmp_path / "quickstart.py"
    script.write_text(code, encoding="utf-8")

    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == shown


def test_every_python_block_in_the_readme_is_valid_python() -> None:
    blocks = fenced(README, "python")
    assert len(blocks) >= 4
    for block in blocks:
        # Snippets may use `async with`/`await` at top level, as in an async function.
        source = textwrap.dedent(block)  # blocks inside list items are indented
        compile(source, "<README.md>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
