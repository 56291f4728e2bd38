"""``tupu-async libraries ...``: the image-library management API from the command line.

Every command prints a table (or JSON with ``--json``) to standard output. Exit codes: 0
all items succeeded, 1 some items failed (each is listed), 2 a fatal error.
"""

from __future__ import annotations

import json
import pathlib
import posixpath
import urllib.parse
from collections.abc import Sequence
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._libraries import LibraryItemOutcome
from ._config import Settings
from ._inputs import image_files

__all__ = ["parse_add_items", "run_add", "run_delete", "run_list", "run_search", "run_sync"]


def _name_of_url(url: str) -> str:
    path = urllib.parse.urlsplit(url).path
    return posixpath.basename(path.rstrip("/")) or url


def parse_add_items(
    items: Sequence[str],
) -> tuple[list[tuple[str, str]], list[tuple[str, pathlib.Path]]]:
    """``NAME=SOURCE`` or ``SOURCE`` arguments -> (URL pairs, file pairs).

    A URL is named by the last segment of its path, a file by its file name and a folder
    expands to its image files; ``NAME=`` overrides the name of a URL or a file.
    """
    urls: list[tuple[str, str]] = []
    files: list[tuple[str, pathlib.Path]] = []
    for item in items:
        name: str | None = None
        source = item
        if "=" in item and not item.startswith(("http://", "https://")):
            name, source = item.split("=", 1)
        if source.startswith(("http://", "https://")):
            urls.append((name or _name_of_url(source), source))
            continue
        path = pathlib.Path(source).expanduser()
        if path.is_dir():
            if name is not None:
                raise ValueError(f"{item!r}: NAME= cannot name a folder; name its files")
            files.extend((file.name, file) for file in image_files(path))
        elif path.is_file():
            files.append((name or path.name, path))
        else:
            raise ValueError(f"{source!r} is neither an http(s) URL nor an existing file")
    return urls, files


def _emit_json(console: Console, value: Any) -> None:
    console.print_json(json.dumps(msgspec.to_builtins(value), ensure_ascii=False, default=str))


def _outcomes(console: Console, outcomes: list[LibraryItemOutcome], as_json: bool) -> int:
    if as_json:
        _emit_json(console, outcomes)
    else:
        table = Table(title=f"{len(outcomes)} items", title_justify="left")
        table.add_column("name", overflow="fold")
        table.add_column("code", justify="right")
        table.add_column("result", overflow="fold")
        for o in outcomes:
            table.add_row(
                escape(o.name),
                str(o.code),
                "[green]ok[/green]" if o.ok else f"[red]{escape(o.error or 'failed')}[/red]",
            )
        console.print(table)
    failed = sum(1 for o in outcomes if not o.ok)
    if failed and not as_json:
        console.print(f"[red]{failed} of {len(outcomes)} failed[/red]")
    return 1 if failed else 0


async def run_search(settings: Settings, name: str | None, as_json: bool, console: Console) -> int:
    async with settings.client() as client:
        libraries = await client.libraries.search(name)
    if as_json:
        _emit_json(console, libraries)
        return 0
    table = Table(title=f"{len(libraries)} image libraries", title_justify="left")
    for column in ("id", "name", "type", "threshold", "status", "images"):
        table.add_column(column, justify="right" if column == "images" else "left")
    for lib in libraries:
        kind = lib.library_type
        table.add_row(
            escape(lib.id),
            escape(lib.name),
            kind.name.lower() if kind is not None else str(lib.type),
            "" if lib.threshold is None else f"{lib.threshold:g}",
            "" if lib.status is None else str(lib.status),
            str(lib.image_count),
        )
    console.print(table)
    return 0


async def run_list(settings: Settings, library_id: str, as_json: bool, console: Console) -> int:
    async with settings.client() as client:
        images = await client.libraries.list_images(library_id)
    if as_json:
        _emit_json(console, images)
        return 0
    table = Table(title=escape(f"{len(images)} images in {library_id}"), title_justify="left")
    table.add_column("name", overflow="fold")
    table.add_column("url", overflow="fold")
    table.add_column("updated")
    for image in images:
        updated = image.updated_at.isoformat() if image.updated_at else (image.updated_at_raw or "")
        table.add_row(escape(image.name), escape(image.url or ""), escape(updated))
    console.print(table)
    return 0


async def run_add(
    settings: Settings, library_id: str, items: Sequence[str], as_json: bool, console: Console
) -> int:
    urls, files = parse_add_items(items)
    outcomes: list[LibraryItemOutcome] = []
    async with settings.client() as client:
        if urls:
            outcomes += await client.libraries.add_urls(library_id, urls)
        if files:
            outcomes += await client.libraries.add_images(library_id, files)
    return _outcomes(console, outcomes, as_json)


async def run_delete(
    settings: Settings, library_id: str, names: Sequence[str], as_json: bool, console: Console
) -> int:
    async with settings.client() as client:
        outcomes = await client.libraries.delete(library_id, list(names))
    return _outcomes(console, outcomes, as_json)


async def run_sync(
    settings: Settings,
    library_id: str,
    folder: pathlib.Path,
    *,
    dry_run: bool,
    delete_missing: bool,
    as_json: bool,
    console: Console,
) -> int:
    async with settings.client() as client:
        report = await client.libraries.sync_library(
            library_id, folder, dry_run=dry_run, delete_missing=delete_missing
        )
    if as_json:
        _emit_json(console, report)
        return 0 if report.ok else 1
    verb = ("would add", "would delete") if dry_run else ("added", "deleted")
    # The summary on its own line: as a table title it wrapped to the table's width.
    console.print(escape(report.summary()), highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("change")
    table.add_column("names", overflow="fold")
    table.add_row(verb[0], _names(report.added))
    table.add_row(verb[1], _names(report.deleted))
    table.add_row("unchanged", _names(report.unchanged))
    if report.skipped:
        table.add_row("skipped (not images)", _names(report.skipped))
    for o in report.failed:
        table.add_row("[red]failed[/red]", escape(f"{o.name}: {o.error or f'code {o.code}'}"))
    console.print(table)
    return 0 if report.ok else 1


def _names(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    more = f" ... (+{len(names) - limit})" if len(names) > limit else ""
    return escape(f"{len(names)}: {shown}{more}") if names else "0"
