"""The ``tupu-async`` typer application: ``recognize``, ``verify``, ``demo``, ``libraries``.

Exit codes are in ``_common``; the ``libraries`` commands in ``_libraries_group``.
"""

from __future__ import annotations

import os
import pathlib
from typing import Annotated

import typer
from rich.console import Console

from .._exceptions import (
    KeyLoadError,
    MalformedResponseError,
    SignatureVerificationError,
    TupuError,
)
from ._common import EXIT_FATAL, Command, Group, fail, run, stderr, stdout
from ._config import ENV_PUBLIC_KEY, SettingError, public_key_source
from ._libraries_group import libraries_app
from ._options import (
    Connect,
    OverwriteOpt,
    PublicKeyOpt,
    TransportChoice,
    flag,
    optional,
    with_settings,
)

__all__ = ["app"]

app = typer.Typer(
    name="tupu-async",
    help="Tupu (图普) content moderation from the command line: recognise images, manage "
    "image libraries, verify signed envelopes, or run the demo against a fake server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    cls=Group,
)
app.add_typer(libraries_app, name="libraries")


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
        raise fail(
            errors,
            f"no such file or folder: {shown}; arguments are http(s) URLs, image files or "
            f"folders (check the spelling; a URL needs its http:// or https://)",
            EXIT_FATAL,
        )
    if from_file is not None and from_file != "-" and not os.path.isfile(from_file):
        raise fail(
            errors,
            f"--from-file {from_file!r}: no such file; give a text file with one URL or "
            f"path per line, or '-' to read standard input",
            EXIT_FATAL,
        )


@app.command(cls=Command)
@with_settings
def recognize(
    settings: Connect,
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Image URLs, files or folders (folders expand to their image files).",
            show_default=False,
        ),
    ] = None,
    from_file: Annotated[
        str | None,
        optional(
            "--from-file", help="A file with one URL or path per line ('-' reads standard input)."
        ),
    ] = None,
    recursive: Annotated[
        bool, flag("--recursive", "-r", help="Include the subfolders of folders.")
    ] = False,
    tasks: Annotated[
        list[str] | None,
        optional(
            "--tasks",
            help="Task ids to run (repeat, or separate by commas; default: the account's).",
        ),
    ] = None,
    out: Annotated[
        str | None,
        optional("--out", "-o", help="Write the JSON lines here instead of standard output."),
    ] = None,
    resume: Annotated[
        bool,
        flag(
            "--resume",
            help="Continue --out: skip images with an ok line in it, retry the failed ones.",
        ),
    ] = False,
    overwrite: OverwriteOpt = False,
    transport: Annotated[
        TransportChoice,
        typer.Option("--transport", help="How content images are uploaded."),
    ] = TransportChoice.multipart,
    resize: Annotated[
        bool,
        flag("--resize", help="Downsize images to 256-512 px and under 1 MiB (needs Pillow)."),
    ] = False,
    url_fallback: Annotated[
        bool,
        flag(
            "--url-fallback",
            help="Download URLs the service could not fetch and upload them instead.",
        ),
    ] = False,
    qps: Annotated[
        float, typer.Option("--qps", help="Requests per second (the API allows 50).")
    ] = 50.0,
    max_retries: Annotated[int, typer.Option("--max-retries", help="Retries per request.")] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per HTTP request.")] = 30.0,
) -> None:
    """Recognise images; one JSON line per image, a summary table at the end.

    Exit code 0 when every image was recognised, 1 when some failed (their lines say why),
    2 on a fatal error (a missing setting, authentication or configuration).
    """
    from ._recognize import RecognizeJob, run_recognize

    errors = stderr()
    if not inputs and from_file is None:
        raise fail(errors, "nothing to recognise: give URLs, files or folders, or --from-file", 2)
    if resume and out is None:
        raise fail(errors, "--resume needs --out FILE (it skips the images already in it)", 2)
    if resume and overwrite:
        raise fail(errors, "--resume and --overwrite contradict each other: pick one", 2)
    _check_inputs(errors, inputs or [], from_file)
    connected = settings()
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
    run(lambda: run_recognize(job, connected, errors), errors, hint=hint)


# ---------------------------------------------------------------------------- verify


@app.command(cls=Command)
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

    out, errors = stdout(), stderr()
    try:
        text = public_key or os.environ.get(ENV_PUBLIC_KEY, "").strip() or None
        code = run_verify(envelope, public_key_source(text), out)
    except (SettingError, KeyLoadError, OSError) as exc:
        raise fail(errors, str(exc), EXIT_FATAL) from None
    except SignatureVerificationError as exc:
        raise fail(errors, f"signature INVALID: {exc}", 1) from None
    except (MalformedResponseError, TupuError) as exc:
        raise fail(errors, f"not a valid envelope: {exc}", 1) from None
    raise typer.Exit(code)


# ------------------------------------------------------------------------------ demo


@app.command(cls=Command)
def demo(
    images: Annotated[int, typer.Option("--images", "-n", help="How many images.")] = 3000,
    latency: Annotated[float, typer.Option("--latency", help="Server latency (s).")] = 0.3,
    jitter: Annotated[float, typer.Option("--jitter", help="Latency jitter (+/- s).")] = 0.1,
    qps: Annotated[float, typer.Option("--qps", help="The server's QPS limit.")] = 50.0,
    in_thread: Annotated[
        bool, flag("--in-thread", help="Run the fake server in a thread, not a process.")
    ] = False,
    out: Annotated[
        str | None,
        optional("--out", "-o", help="Also write the JSON lines here."),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Recognise generated images against the embedded fake server (no account needed).

    Shows the progress bar, images/s against the API's ceiling (QPS x 10 images per
    request), what the server counted, and the summary table.
    """
    from ._demo import DemoOptions, run_demo

    console = stdout()
    if images < 1 or qps <= 0 or latency < 0 or jitter < 0:
        raise fail(stderr(), "--images and --qps must be positive, latencies >= 0", 2)
    options = DemoOptions(
        images=images,
        latency=latency,
        jitter=jitter,
        qps=qps,
        in_thread=in_thread,
        out=out,
        overwrite=overwrite,
    )
    run(lambda: run_demo(options, console))
