"""Developer tasks: `python -m nox -s tests lint types demo bench`."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "types", "tests"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter nox itself runs on


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite on asyncio and trio, in random order, under the coverage floor.

    Line+branch coverage of ``tupu_async`` (subprocesses included) must reach
    ``[tool.coverage.report] fail_under`` in pyproject.toml. pytest-randomly prints the
    seed in the header; replay that order with ``nox -s tests -- -q --randomly-seed=N``.
    """
    session.install("-e", ".[dev]")
    session.run(
        "python",
        "-m",
        "pytest",
        "--cov",
        "--cov-branch",
        "--cov-report=term",
        *(session.posargs or ["-q"]),
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    """mypy --strict over the package, tests, benchmarks and examples."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: recognize_many against the embedded fake server, with a progress bar."""
    session.install("-e", ".[cli]")
    session.run("tupu-async", "demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Throughput, decode and multi-process benchmarks over real loopback HTTP."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/decode.py")
    session.run("python", "benchmarks/throughput.py", *session.posargs)
    session.run("python", "benchmarks/multiprocess.py", *session.posargs)
