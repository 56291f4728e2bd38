"""aiohttp + tupu-async: one shared client for the whole app, one ``recognize_one`` per upload.

The client lives in the app's ``cleanup_ctx``: created at startup, closed at shutdown.
Concurrent uploads are coalesced into shared requests of up to 10 images.

Install the examples' dependencies once (from a clone, in a venv)::

    pip install -e '.[examples]'

Against the embedded fake server (no account needed), then upload the shipped sample
image from another terminal::

    python examples/aiohttp_app.py --fake --port 8080
    curl -F file=@examples/cat.jpg http://127.0.0.1:8080/moderate

Against the real API::

    export TUPU_SECRET_ID=... TUPU_PRIVATE_KEY=/path/to/rsa_private_key.pem
    python examples/aiohttp_app.py --port 8080
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from tupu_async import AsyncTupuClient, Image, InvalidImageError, Suggestion, TupuError

TUPU = web.AppKey("tupu", AsyncTupuClient)
MAX_UPLOAD_BYTES = 2 * 1024 * 1024


def client_from_env() -> AsyncTupuClient:
    """The client, configured from TUPU_SECRET_ID, TUPU_PRIVATE_KEY (path or PEM text), ..."""
    return AsyncTupuClient(
        secret_id=os.environ["TUPU_SECRET_ID"],
        private_key=os.environ["TUPU_PRIVATE_KEY"],
        region=os.environ.get("TUPU_REGION") or "cn",
        base_url=os.environ.get("TUPU_BASE_URL") or None,
        tupu_public_key=os.environ.get("TUPU_PUBLIC_KEY") or None,
    )


async def moderate(request: web.Request) -> web.Response:
    client = request.app[TUPU]
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        raise web.HTTPBadRequest(text="send the image as the multipart field 'file'")
    data = upload.file.read()
    try:
        result = await client.recognize_one(Image.from_bytes(data, name=upload.filename))
    except InvalidImageError as exc:  # not an image, too large, animated GIF, ...
        raise web.HTTPBadRequest(text=str(exc)) from None
    except TupuError as exc:  # fatal: credentials or configuration
        raise web.HTTPServiceUnavailable(text=f"moderation unavailable: {exc}") from None
    if result.error is not None:  # this image failed after retries
        raise web.HTTPBadGateway(text=result.message)
    verdict = (  # "pass", "block" or "review"
        result.suggestion.name.lower()
        if isinstance(result.suggestion, Suggestion)
        else "unknown"  # no summary on this account
    )
    return web.json_response(
        {
            "name": result.name,
            "verdict": verdict,
            "risk_type": result.risk_type,
            "risk_task": result.risk_task,
        }
    )


def create_app(make_client: Callable[[], AsyncTupuClient] = client_from_env) -> web.Application:
    """The app; ``make_client`` is called once, when the app starts."""

    async def tupu_client(app: web.Application) -> AsyncIterator[None]:
        async with make_client() as client:  # closed (and its work cancelled) at shutdown
            app[TUPU] = client
            yield

    app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
    app.cleanup_ctx.append(tupu_client)
    app.router.add_post("/moderate", moderate)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="use the embedded fake server")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.fake:
            from tupu_async.testing import FakeTupuServer

            fake = FakeTupuServer()
            secret_id, private_key = fake.add_credentials()
            os.environ.update(
                TUPU_SECRET_ID=secret_id,
                TUPU_PRIVATE_KEY=private_key.decode(),
                TUPU_PUBLIC_KEY=fake.public_key_pem.decode(),
                TUPU_BASE_URL=stack.enter_context(fake.serve_in_thread()),
            )
        web.run_app(create_app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
