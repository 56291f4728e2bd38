"""The ``tupu-async`` commands (typer) and the one place errors become exit codes.

Exit codes: 0 success; 1 some images or items failed (each result says why), or an
envelope did not verify; 2 fatal: a missing or bad setting, authentication or
configuration refused by the service, a bad response signature; 130 interrupted.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Annotated, Any

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from .._exceptions import (
    KeyLoadError,
    MalformedResponseError,
    SignatureVerificationError,
    TupuError,
)
from ._config import ENV_PUBLIC_KEY, SettingError, Settings, public_key_source, resolve_settings
from ._output import OutputFileError

__all__ = ["app"]

EXIT_SOME_FAILED = 1
EXIT_FATAL = 2
EXIT_INTERRUPTED = 130


def _help_without_placeholder(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
    return option


class _Command(TyperCommand):
    """A command whose ``--help`` option shows no ``<bool>`` placeholder."""

    def get_help_option(self, ctx: Any) -> Any:
        return _help_without_placeholder(super().get_help_option(ctx))


class _Group(TyperGroup):
    """A command group whose ``--help`` option shows no ``<bool>`` placeholder."""

    def get_help_option(self, ctx: Any) -> Any:
        return _help_without_placeholder(super().get_help_option(ctx))


app = typer.Typer(
    name="tupu-async",
    help="Tupu (图普) content moderation from the command line: recognise images, manage "
    "image libraries, verify signed envelopes, or run the demo against a fake server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    cls=_Group,
)
libraries_app = typer.Typer(
    help="Image libraries (名单): search, list, add, delete, sync.",
    no_args_is_help=True,
    cls=_Group,
)
app.add_typer(libraries_app, name="libraries")


class Region(str, Enum):
    cn = "cn"
    us = "us"
    oversea = "oversea"


class TransportChoice(str, Enum):
    multipart = "multipart"
    base64 = "base64"


def _flag(*names: str, help: str) -> Any:
    """An on/off option; shown in ``--help`` without a ``<bool>`` placeholder."""
    return typer.Option(*names, help=help, metavar="")


def _stderr() -> Console:
    return Console(stderr=True)


def _stdout() -> Console:
    return Console()


def _fail(console: Console, message: str, code: int) -> typer.Exit:
    console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _run(
    job: Callable[[], Awaitable[int]], errors: Console | None = None, *, hint: str = ""
) -> None:
    """Run ``job`` on asyncio and map what it raises to an exit code.

    Error messages go to ``errors``, standard error by default.
    """
    if errors is None:
        errors = _stderr()
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
        raise _fail(errors, str(exc), EXIT_FATAL) from None
    except TupuError as exc:  # only fatal errors escape the calls
        raise _fail(errors, f"{type(exc).__name__}: {exc}", EXIT_FATAL) from None
    except ImportError as exc:
        raise _fail(errors, str(exc), EXIT_FATAL) from None
    except (ValueError, OSError) as exc:
        raise _fail(errors, str(exc), EXIT_FATAL) from None
    raise typer.Exit(code)


# --------------------------------------------------------------------------- options

SecretIdOpt = Annotated[
    str | None,
    typer.Option("--secret-id", help="Your secret id (env TUPU_SECRET_ID).", show_default=False),
]
PrivateKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--private-key",
        help="Your RSA private key file (env TUPU_PRIVATE_KEY, which may also hold the PEM "
        "text or its base64). Key text here is visible in `ps`: a warning says so.",
        show_default=False,
    ),
]
RegionOpt = Annotated[
    Region | None,
    typer.Option("--region", help="cn, us or oversea (env TUPU_REGION; default cn)."),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="Override the region's host, e.g. a fake server (env TUPU_BASE_URL).",
        show_default=False,
    ),
]
PublicKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--public-key",
        help="Tupu's public key to verify responses (PEM path or text; default: the bundled "
        "official key) (env TUPU_PUBLIC_KEY).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, _flag("--json", help="Print JSON instead of a table.")]
LibraryIdArg = Annotated[str, typer.Argument(help="The image library id.")]


def _with_settings(
    secret_id: str | None,
    private_key: str | None,
    region: Region | None,
    base_url: str | None,
    public_key: str | None,
) -> Settings:
    """The settings from these flags and the environment; a bad one exits with code 2."""
    try:
        return resolve_settings(
            secret_id=secret_id,
            private_key=private_key,
            region=region.value if region is not None else None,
            base_url=base_url,
            public_key=public_key,
            warn=_warn,
        )
    except SettingError as exc:
        raise _fail(_stderr(), str(exc), EXIT_FATAL) from None


def _warn(message: str) -> None:
    _stderr().print(f"[bold yellow]warning:[/bold yellow] {escape(message)}", highlight=False)


def _task_list(tasks: list[str] | None) -> list[str] | None:
    if not tasks:
        return None
    return [t.strip() for item in tasks for t in item.split(",") if t.strip()] or None


# ------------------------------------------------------------------------- recognize


def _check_inputs(errors: Console, inputs: list[str], from_file: str | None) -> None:
    """Exit 2 before anything is sent when an argument or the list file does not exist."""
    from ._inputs import missing_arguments

    missing = missing_arguments(inputs)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise _fail(
            errors,
            f"no such file or folder: {shown}; arguments are http(s) URLs, image files or "
            f"folders (check the spelling; a URL needs its http:// or https://)",
            EXIT_FATAL,
        )
    if from_file is not None and from_file != "-" and not os.path.isfile(from_file):
        raise _fail(
            errors,
            f"--from-file {from_file!r}: no such file; give a text file with one URL or "
            f"path per line, or '-' to read standard input",
            EXIT_FATAL,
        )


@app.command(cls=_Command)
def recognize(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Image URLs, files or folders (folders expand to their image files).",
            show_default=False,
        ),
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from-file",
            help="A file with one URL or path per line ('-' reads standard input).",
            show_default=False,
        ),
    ] = None,
    recursive: Annotated[
        bool, _flag("--recursive", "-r", help="Include the subfolders of folders.")
    ] = False,
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            help="Task ids to run (repeat, or separate by commas; default: the account's).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the JSON lines here instead of standard output.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        _flag(
            "--resume",
            help="Continue --out: skip images with an ok line in it, retry the failed ones.",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        _flag("--overwrite", help="Replace an existing non-empty --out file."),
    ] = False,
    transport: Annotated[
        TransportChoice,
        typer.Option("--transport", help="How content images are uploaded."),
    ] = TransportChoice.multipart,
    resize: Annotated[
        bool,
        _flag("--resize", help="Downsize images to 256-512 px and under 1 MiB (needs Pillow)."),
    ] = False,
    url_fallback: Annotated[
        bool,
        _flag(
            "--url-fallback",
            help="Download URLs the service could not fetch and upload them instead.",
        ),
    ] = False,
    qps: Annotated[
        float, typer.Option("--qps", help="Requests per second (the API allows 50).")
    ] = 50.0,
    max_retries: Annotated[int, typer.Option("--max-retries", help="Retries per request.")] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per HTTP request.")] = 30.0,
    secret_id: SecretIdOpt = None,
    private_key: PrivateKeyOpt = None,
    region: RegionOpt = None,
    base_url: BaseUrlOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """Recognise images; one JSON line per image, a summary table at the end.

    Exit code 0 when every image was recognised, 1 when some failed (their lines say why),
    2 on a fatal error (a missing setting, authentication or configuration).
    """
    from ._recognize import RecognizeJob, run_recognize

    errors = _stderr()
    if not inputs and from_file is None:
        raise _fail(errors, "nothing to recognise: give URLs, files or folders, or --from-file", 2)
    if resume and out is None:
        raise _fail(errors, "--resume needs --out FILE (it skips the images already in it)", 2)
    if resume and overwrite:
        raise _fail(errors, "--resume and --overwrite contradict each other: pick one", 2)
    _check_inputs(errors, inputs or [], from_file)
    settings = _with_settings(secret_id, private_key, region, base_url, public_key)
    job = RecognizeJob(
        inputs=list(inputs or []),
        from_file=from_file,
        recursive=recursive,
        tasks=_task_list(tasks),
        transport=transport.value,
        out=out,
        resume=resume,
        overwrite=overwrite,
        resize=resize,
        url_fallback=url_fallback,
        qps=qps,
        max_retries=max_retries,
        timeout=timeout,
    )
    hint = f"; the results so far are in {out}: rerun with --resume to continue" if out else ""
    _run(lambda: run_recognize(job, settings, errors), errors, hint=hint)


# ---------------------------------------------------------------------------- verify


@app.command(cls=_Command)
def verify(
    envelope: Annotated[
        pathlib.Path,
        typer.Argument(help="A signed envelope ({'json': ..., 'signature': ...}) in a file."),
    ],
    public_key: PublicKeyOpt = None,
) -> None:
    """Verify the signature of a response envelope (e.g. a callback body) and show it.

    Exit code 0 when the signature is valid, 1 when it is not or the file is not an
    envelope, 2 when the file or the public key cannot be read.
    """
    from ._verify import run_verify

    out, errors = _stdout(), _stderr()
    try:
        text = public_key or os.environ.get(ENV_PUBLIC_KEY, "").strip() or None
        code = run_verify(envelope, public_key_source(text), out)
    except (SettingError, KeyLoadError, OSError) as exc:
        raise _fail(errors, str(exc), EXIT_FATAL) from None
    except SignatureVerificationError as exc:
        raise _fail(errors, f"signature INVALID: {exc}", 1) from None
    except (MalformedResponseError, TupuError) as exc:
        raise _fail(errors, f"not a valid envelope: {exc}", 1) from None
    raise typer.Exit(code)


# ------------------------------------------------------------------------------ demo


@app.command(cls=_Command)
def demo(
    images: Annotated[int, typer.Option("--images", "-n", help="How many images.")] = 3000,
    latency: Annotated[float, typer.Option("--latency", help="Server latency (s).")] = 0.3,
    jitter: Annotated[float, typer.Option("--jitter", help="Latency jitter (+/- s).")] = 0.1,
    qps: Annotated[float, typer.Option("--qps", help="The server's QPS limit.")] = 50.0,
    in_thread: Annotated[
        bool, _flag("--in-thread", help="Run the fake server in a thread, not a process.")
    ] = False,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Also write the JSON lines here.", show_default=False),
    ] = None,
    overwrite: Annotated[
        bool,
        _flag("--overwrite", help="Replace an existing non-empty --out file."),
    ] = False,
) -> None:
    """Recognise generated images against the embedded fake server (no account needed).

    Shows the progress bar, images/s against the API's ceiling (QPS x 10 images per
    request), what the server counted, and the summary table.
    """
    from ._demo import DemoOptions, run_demo

    console = _stdout()
    if images < 1 or qps <= 0 or latency < 0 or jitter < 0:
        raise _fail(_stderr(), "--images and --qps must be positive, latencies >= 0", 2)
    options = DemoOptions(
        images=images,
        latency=latency,
        jitter=jitter,
        qps=qps,
        in_thread=in_thread,
        out=out,
        overwrite=overwrite,
    )
    _run(lambda: run_demo(options, console))


# ------------------------------------------------------------------------- libraries


@libraries_app.command("search", cls=_Command)
def libraries_search(
    name: Annotated[
        str | None,
        typer.Option("--name", help="Only libraries whose name matches.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
    secret_id: SecretIdOpt = None,
    private_key: PrivateKeyOpt = None,
    region: RegionOpt = None,
    base_url: BaseUrlOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """List the image libraries of your secret id."""
    from ._libraries_cmd import run_search

    settings = _with_settings(secret_id, private_key, region, base_url, public_key)
    _run(lambda: run_search(settings, name, as_json, _stdout()))


@libraries_app.command("list", cls=_Command)
def libraries_list(
    library_id: LibraryIdArg,
    as_json: JsonOpt = False,
    secret_id: SecretIdOpt = None,
    private_key: PrivateKeyOpt = None,
    region: RegionOpt = None,
    base_url: BaseUrlOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """List the images in a library."""
    from ._libraries_cmd import run_list

    settings = _with_settings(secret_id, private_key, region, base_url, public_key)
    _run(lambda: run_list(settings, library_id, as_json, _stdout()))


@libraries_app.command("add", cls=_Command)
def libraries_add(
    library_id: LibraryIdArg,
    items: Annotated[
        list[str],
        typer.Argument(
            help="URLs, files or folders; NAME=URL or NAME=FILE to choose the name "
            "(default: the file name, or the URL's last path segment)."
        ),
    ],
    as_json: JsonOpt = False,
    secret_id: SecretIdOpt = None,
    private_key: PrivateKeyOpt = None,
    region: RegionOpt = None,
    base_url: BaseUrlOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """Add images to a library (URLs are downloaded by the service, files uploaded)."""
    from ._libraries_cmd import run_add

    settings = _with_settings(secret_id, private_key, region, base_url, public_key)
    _run(lambda: run_add(settings, library_id, items, as_json, _stdout()))


@libraries_app.command("delete", cls=_Command)
def libraries_delete(
    library_id: LibraryIdArg,
    names: Annotated[list[str], typer.Argument(help="Names of the images to delete.")],
    as_json: JsonOpt = False,
    secret_id: SecretIdOpt = None,
    private_key: PrivateKeyOpt = None,
    region: RegionOpt = None,
    base_url: BaseUrlOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """Delete images from a library by name."""
    from ._libraries_cmd import run_delete

    settings = _with_settings(secret_id, private_key, region, base_url, public_key)
    _run(lambda: run_delete(settings, library_id, names, as_json, _stdout()))


@libraries_app.command("sync", cls=_Command)
def libraries_sync(
    library_id: LibraryIdArg,
    folder: Annotated[pathlib.Path, typer.Argument(help="A folder of image files.")],
    dry_run: Annotated[bool, _flag("--dry-run", help="Only show what would change.")] = False,
    keep_missing: Annotated[
        bool,
        _flag("--keep-missing", help="Do not delete library images the folder lacks."),
    ] = False,
    as_json: JsonOpt = False,
    secret_id: SecretIdOpt = None,
    private_key: PrivateKeyOpt = None,
    region: RegionOpt = None,
    base_url: BaseUrlOpt = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """Make a library hold exactly the images of a folder (by file name)."""
    from ._libraries_cmd import run_sync

    if not folder.is_dir():
        raise _fail(_stderr(), f"{folder}: not a folder; sync takes a folder of image files", 2)
    settings = _with_settings(secret_id, private_key, region, base_url, public_key)
    _run(
        lambda: run_sync(
            settings,
            library_id,
            folder,
            dry_run=dry_run,
            delete_missing=not keep_missing,
            as_json=as_json,
            console=_stdout(),
        )
    )
