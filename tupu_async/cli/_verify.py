"""``tupu-async verify``: check the signature of an envelope saved to a file and show it."""

from __future__ import annotations

import pathlib

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._envelope import verify_envelope
from .._keys import KeySource
from ._report import RISK_TYPES, SUGGESTIONS

__all__ = ["run_verify"]


def run_verify(envelope: pathlib.Path, public_key: KeySource | None, console: Console) -> int:
    """0 when the signature verifies (the decoded summary is printed); errors raise."""
    body = envelope.read_bytes()
    response = verify_envelope(body, public_key)
    key_name = "the bundled official Tupu key" if public_key is None else "the given public key"
    console.print(f"[green]signature valid[/green] (checked with {key_name})")
    console.print(
        escape(
            f"code {response.code} ({response.message or 'no message'}), "
            f"timestamp {response.timestamp}, nonce {response.nonce}"
            + (f", request id {response.request_id}" if response.request_id else "")
        )
    )
    table = Table(title=f"{len(response.images)} images", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("name", overflow="fold")
    table.add_column("code", justify="right")
    table.add_column("suggestion")
    table.add_column("risk type")
    table.add_column("tasks")
    for image in response.images:
        table.add_row(
            str(image.index),
            escape(image.name),
            str(image.code),
            SUGGESTIONS.get(image.suggestion, "-") if image.suggestion is not None else "-",
            RISK_TYPES.get(image.risk_type, "-") if image.risk_type is not None else "-",
            escape(
                "\n".join(
                    f"{task[:8]}: label {getattr(entry, 'label', None)}"
                    for task, entry in image.tasks.items()
                )
            ),
        )
    console.print(table)
    return 0
