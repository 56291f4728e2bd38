"""FastAPI + tupu-async: one shared client for the whole app, one ``recognize_one`` per upload.

The client is created once, in the app's lifespan, so every request handler draws from one
QPS budget and concurrent uploads are coalesced into shared requests of up to 10 images.

Install the examples' dependencies once (from a clone, in a venv)::

    pip install -e '.[examples]'

Against the embedded fake server (no account needed), then upload the shipped sample
image from another terminal::

    python examples/fastapi_app.py --fake --port 8000
    curl -F file=@examples/cat.jpg http://127.0.0.1:8000/moderate

Against the real API::

    export TUPU_SECRET_ID=... TUPU_PRIVATE_KEY=/path/to/rsa_private_key.pem
    uvicorn examples.fastapi_app:app
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, UploadFile

from tupu_async import AsyncTupuClient, Image, InvalidImageError, Suggestion, TupuError


def client_from_env() -> AsyncTupuClient:
    """The client, configured from TUPU_SECRET_ID, TUPU_PRIVATE_KEY (path or PEM text), ..."""
    return AsyncTupuClient(
        secret_id=os.environ["TUPU_SECRET_ID"],
        private_key=os.environ["TUPU_PRIVATE_KEY"],
        region=os.environ.get("TUPU_REGION") or "cn",
        base_url=os.environ.get("TUPU_BASE_URL") or None,
        tupu_public_key=os.environ.get("TUPU_PUBLIC_KEY") or None,
    )


def create_app(make_client: Callable[[], AsyncTupuClient] = client_from_env) -> FastAPI:
    """The app; ``make_client`` is called once, when the app starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with make_client() as client:  # closed (and its work cancelled) at shutdown
            app.state.tupu = client
            yield

    app = FastAPI(title="moderation", lifespan=lifespan)

    @app.post("/moderate")
    async def moderate(file: UploadFile) -> dict[str, Any]:
        client: AsyncTupuClient = app.state.tupu
        data = await file.read()
        try:
            result = await client.recognize_one(
                Image.from_bytes(data, name=file.filename or "upload")
            )
        except InvalidImageError as exc:  # not an image, too large, animated GIF, ...
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except TupuError as exc:  # fatal: credentials or configuration
            raise HTTPException(status_code=503, detail=f"moderation unavailable: {exc}") from None
        if result.error is not None:  # this image failed after retries
            raise HTTPException(status_code=502, detail=result.message)
        verdict = (  # "pass", "block" or "review"
            result.suggestion.name.lower()
            if isinstance(result.suggestion, Suggestion)
            else "unknown"  # no summary on this account
        )
        return {
            "name": result.name,
            "verdict": verdict,
            "risk_type": result.risk_type,
            "risk_task": result.risk_task,
        }

    return app


app = create_app()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="use the embedded fake server")
    parser.add_argument("--port", type=int, default=8000)
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
        uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
