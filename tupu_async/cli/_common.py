"""What every command shares: exit codes, error output, and running a job on asyncio.

Exit codes: 0 success; 1 some images or items failed (each result says why), or an
envelope did not verify; 2 fatal: a missing or bad setting, authentication or
configuration refused by the service, a bad response signature; 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from .._exceptions import KeyLoadError, TupuError
from ._config import SettingError
from ._output import OutputFileError

__all__ = [
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_SOME_FAILED",
    "Command",
    "Group",
    "fail",
    "run",
    "stderr",
    "stdout",
    "warn",
]

EXIT_SOME_FAILED = 1
EXIT_FATAL = 2
EXIT_INTERRUPTED = 130


def _help_without_placeholder(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
    return option


class Command(TyperCommand):
    """A command whose ``--help`` option shows no ``<bool>`` placeholder."""

    def get_help_option(self, ctx: Any) -> Any:
        return _help_without_placeholder(super().get_help_option(ctx))


class Group(TyperGroup):
    """A command group whose ``--help`` option shows no ``<bool>`` placeholder."""

    def get_help_option(self, ctx: Any) -> Any:
        return _help_without_placeholder(super().get_help_option(ctx))


def stderr() -> Console:
    return Console(stderr=True)


def stdout() -> Console:
    return Console()


def fail(console: Console, message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on ``console``; the ``typer.Exit`` to raise."""
    console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def warn(message: str) -> None:
    stderr().print(f"[bold yellow]warning:[/bold yellow] {escape(message)}", highlight=False)


def run(
    job: Callable[[], Awaitable[int]], errors: Console | None = None, *, hint: str = ""
) -> None:
    """Run ``job`` on asyncio and exit with its code, or the code of what it raises.

    Error messages go to ``errors``, standard error by default.
    """
    if errors is None:
        errors = stderr()
    try:
        code = anyio.run(job)
    except KeyboardInterrupt:
        errors.print(f"[yellow]interrupted[/yellow]{hint}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(EXIT_SOME_FAILED) from None
    except (SettingError, KeyLoadError, OutputFileError) as exc:
        raise fail(errors, str(exc), EXIT_FATAL) from None
    except TupuError as exc:  # only fatal errors escape the calls
        raise fail(errors, f"{type(exc).__name__}: {exc}", EXIT_FATAL) from None
    except ImportError as exc:
        raise fail(errors, str(exc), EXIT_FATAL) from None
    except (ValueError, OSError) as exc:
        raise fail(errors, str(exc), EXIT_FATAL) from None
    raise typer.Exit(code)
