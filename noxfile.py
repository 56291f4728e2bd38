"""Developer tasks: `python -m nox -s tests lint types docs examples demo bench mutants`."""

from __future__ import annotations

import time

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
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs-material), built offline with warnings as errors."""
    session.install("-e", ".[docs]")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        "site",
        *session.posargs,
        env={"NO_MKDOCS_2_WARNING": "1"},  # material's end-of-life banner
    )


@nox.session(python=PYTHON)
def examples(session: nox.Session) -> None:
    """The examples in a venv that has only the `examples` extra, as a user would install it."""
    session.install("-e", ".[examples]")
    # trio is not in the extra: the examples' tests run on asyncio here (on both in `tests`);
    # pytest-timeout is not either, so pyproject's `timeout` option is unknown here.
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:randomly",
        "tests/test_examples.py",
        "-W",
        "ignore::pytest.PytestConfigWarning",
        "-k",
        "not trio",
        *session.posargs,
    )


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


MUTMUT = "mutmut==3.8.1"


@nox.session(python=PYTHON)
def mutants(session: nox.Session) -> None:
    """Mutation testing of the core modules with mutmut; writes mutation/REPORT.md.

    Not in CI: it takes minutes. What is mutated and which tests run is
    ``[tool.mutmut]`` in pyproject.toml; results are cached in mutants/, so a second run
    only re-tests what changed. One module: ``nox -s mutants -- "tupu_async._retry*"``.
    """
    session.install("-e", ".[dev]", MUTMUT)
    session.env["TUPU_REQUIRE_REDIS"] = "1"  # the Redis limiter's tests must run, not skip
    started = time.monotonic()
    session.run("mutmut", "run", *session.posargs)
    seconds = f"{time.monotonic() - started:.0f}"
    session.run("python", "mutation/report.py", "--seconds", seconds, "--floor", "90")
