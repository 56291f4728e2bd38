"""The ``tupu-async`` command line (the ``[cli]`` extra: typer and rich).

``tupu-async recognize``, ``libraries``, ``verify`` and ``demo``; run ``tupu-async --help``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_CLI_DEPENDENCIES = frozenset({"typer", "rich", "click"})


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``tupu-async`` script; exits with the command's exit code."""
    try:
        from ._app import app
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in _CLI_DEPENDENCIES:
            raise
        sys.stderr.write(
            f"tupu-async's command line needs {exc.name}: pip install 'tupu-async[cli]'\n"
        )
        raise SystemExit(2) from None
    app(args=list(argv) if argv is not None else None, prog_name="tupu-async")
