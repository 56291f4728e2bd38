"""``tupu-async libraries``: the typer commands; ``_libraries_cmd`` does the work."""

from __future__ import annotations

import pathlib
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from ._common import Command, Group, fail, run, stderr, stdout
from ._config import Settings
from ._options import Connect, JsonOpt, LibraryIdArg, flag, optional, with_settings

__all__ = ["libraries_app"]


def _start(settings: Connect, job: Callable[[Settings], Awaitable[int]]) -> None:
    """Resolve the settings (exit code 2 when one is bad), then run ``job`` with them."""
    connected = settings()
    run(lambda: job(connected))


libraries_app = typer.Typer(
    help="Image libraries (名单): search, list, add, delete, sync.",
    no_args_is_help=True,
    cls=Group,
)


@libraries_app.command("search", cls=Command)
@with_settings
def libraries_search(
    settings: Connect,
    name: Annotated[
        str | None,
        optional("--name", help="Only libraries whose name matches."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the image libraries of your secret id."""
    from ._libraries_cmd import run_search

    _start(settings, lambda s: run_search(s, name, as_json, stdout()))


@libraries_app.command("list", cls=Command)
@with_settings
def libraries_list(
    settings: Connect,
    library_id: LibraryIdArg,
    as_json: JsonOpt = False,
) -> None:
    """List the images in a library."""
    from ._libraries_cmd import run_list

    _start(settings, lambda s: run_list(s, library_id, as_json, stdout()))


@libraries_app.command("add", cls=Command)
@with_settings
def libraries_add(
    settings: Connect,
    library_id: LibraryIdArg,
    items: Annotated[
        list[str],
        typer.Argument(
            help="URLs, files or folders; NAME=URL or NAME=FILE to choose the name "
            "(default: the file name, or the URL's last path segment)."
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Add images to a library (URLs are downloaded by the service, files uploaded)."""
    from ._libraries_cmd import run_add

    _start(settings, lambda s: run_add(s, library_id, items, as_json, stdout()))


@libraries_app.command("delete", cls=Command)
@with_settings
def libraries_delete(
    settings: Connect,
    library_id: LibraryIdArg,
    names: Annotated[list[str], typer.Argument(help="Names of the images to delete.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete images from a library by name."""
    from ._libraries_cmd import run_delete

    _start(settings, lambda s: run_delete(s, library_id, names, as_json, stdout()))


@libraries_app.command("sync", cls=Command)
@with_settings
def libraries_sync(
    settings: Connect,
    library_id: LibraryIdArg,
    folder: Annotated[pathlib.Path, typer.Argument(help="A folder of image files.")],
    dry_run: Annotated[bool, flag("--dry-run", help="Only show what would change.")] = False,
    keep_missing: Annotated[
        bool,
        flag("--keep-missing", help="Do not delete library images the folder lacks."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make a library hold exactly the images of a folder (by file name)."""
    from ._libraries_cmd import run_sync

    if not folder.is_dir():
        raise fail(stderr(), f"{folder}: not a folder; sync takes a folder of image files", 2)
    _start(
        settings,
        lambda s: run_sync(
            s,
            library_id,
            folder,
            dry_run=dry_run,
            delete_missing=not keep_missing,
            as_json=as_json,
            console=stdout(),
        ),
    )
