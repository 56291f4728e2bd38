"""``python -m tupu_async.cli``: the same as the ``tupu-async`` script."""

from . import main

main()
