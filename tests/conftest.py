"""Shared pytest fixtures: run every anyio test on both backends."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print pytest-randomly's seed even under ``-q`` (its header line is hidden there)."""
    if not config.pluginmanager.hasplugin("randomly"):
        return
    seed = config.getoption("randomly_seed", None)
    if isinstance(seed, int):
        terminalreporter.write_line(
            f"test order: random, seed {seed}; replay it with --randomly-seed={seed}"
        )
