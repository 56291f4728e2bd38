"""``python -m tupu_async.testing serve ...``: run the fake Tupu server as a process."""

from __future__ import annotations

import sys

from ._command import main

if __name__ == "__main__":
    sys.exit(main())
