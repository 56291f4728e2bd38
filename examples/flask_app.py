"""Flask + tupu-async: one shared ``TupuClient`` for every worker thread of the app.

``TupuClient`` is the synchronous client: it runs the async engine on one background
event loop, so all threads draw from one QPS budget, and uploads arriving together from
different threads are coalesced into shared requests of up to 10 images.

Against the real API (threaded server; the client lives as long as the process)::

    export TUPU_SECRET_ID=... TUPU_PRIVATE_KEY=/path/to/rsa_private_key.pem
    flask --app 'examples.flask_app:create_app()' run --with-threads

Against the embedded fake server (no account needed)::

    python examples/flask_app.py --fake --port 8000
    curl -F file=@examples/cat.jpg http://127.0.0.1:8000/moderate
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
from typing import Any

from flask import Flask, request

from tupu_async import Image, InvalidImageError, TupuClient, TupuError

VERDICTS = {0: "pass", 1: "block", 2: "review"}


def client_from_env() -> TupuClient:
    """The client, configured from TUPU_SECRET_ID, TUPU_PRIVATE_KEY (path or PEM text), ..."""
    return TupuClient(
        secret_id=os.environ["TUPU_SECRET_ID"],
        private_key=os.environ["TUPU_PRIVATE_KEY"],
        region=os.environ.get("TUPU_REGION") or "cn",
        base_url=os.environ.get("TUPU_BASE_URL") or None,
        tupu_public_key=os.environ.get("TUPU_PUBLIC_KEY") or None,
    )


def create_app(client: TupuClient | None = None) -> Flask:
    """The app. Without ``client`` one is made from the environment and closed at exit."""
    if client is None:
        client = client_from_env()
        atexit.register(client.close)
    tupu = client
    app = Flask(__name__)

    @app.post("/moderate")
    def moderate() -> tuple[dict[str, Any], int]:
        upload = request.files.get("file")
        if upload is None:
            return {"error": "send the image as the multipart field 'file'"}, 400
        try:
            result = tupu.recognize_one(
                Image.from_bytes(upload.read(), name=upload.filename or "upload")
            )
        except InvalidImageError as exc:  # not an image, too large, animated GIF, ...
            return {"error": str(exc)}, 400
        except TupuError as exc:  # fatal: credentials or configuration
            return {"error": f"moderation unavailable: {exc}"}, 503
        if result.error is not None:  # this image failed after retries
            return {"error": result.message}, 502
        verdict = "unknown" if result.suggestion is None else VERDICTS.get(result.suggestion)
        return {
            "name": result.name,
            "verdict": verdict or "unknown",
            "risk_type": result.risk_type,
            "risk_task": result.risk_task,
        }, 200

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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
        client = stack.enter_context(client_from_env())
        create_app(client).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
