"""The fake server's image-library management endpoints (``/v3/management/...``)."""

from __future__ import annotations

from typing import Any, Final

from .._constants import (
    LIBRARY_ADD_BASE64_PATH,
    LIBRARY_ADD_URLS_PATH,
    LIBRARY_DELETE_PATH,
    LIBRARY_IMAGES_PATH,
    LIBRARY_MAX_BODY_BYTES,
    LIBRARY_MAX_DELETES_PER_REQUEST,
    LIBRARY_MAX_IMAGES_PER_REQUEST,
    LIBRARY_MAX_URLS_PER_REQUEST,
    LIBRARY_SEARCH_PATH,
)
from ._asgi import Call, Reply, error, read_body, too_large
from ._exchange import Route
from ._parsing import Credentials, ManagementRequest, RequestRejected, parse_management
from ._responses import inner_fields, json_body

__all__ = ["MANAGEMENT_PATHS", "ManagementRoute"]

MAX_MANAGEMENT_BODY_BYTES: Final = 16 * 1024 * 1024
# Each write endpoint: the most items one request may carry.
_ITEM_LIMITS: Final = {
    LIBRARY_ADD_URLS_PATH: LIBRARY_MAX_URLS_PER_REQUEST,
    LIBRARY_ADD_BASE64_PATH: LIBRARY_MAX_IMAGES_PER_REQUEST,
    LIBRARY_DELETE_PATH: LIBRARY_MAX_DELETES_PER_REQUEST,
}
MANAGEMENT_PATHS: Final = frozenset({LIBRARY_SEARCH_PATH, LIBRARY_IMAGES_PATH, *_ITEM_LIMITS})


class ManagementRoute(Route):
    """Answers image-library requests from ``state.libraries`` (never faulted)."""

    async def handle(self, call: Call) -> None:
        exchange = self.exchange
        path: str = call.scope["path"]
        if call.scope["method"] != "POST":
            await exchange.answer(call, error(405, 405, "use POST"))
            return
        limit = (
            LIBRARY_MAX_BODY_BYTES if path == LIBRARY_ADD_BASE64_PATH else MAX_MANAGEMENT_BODY_BYTES
        )
        body = await read_body(call, limit)
        if body is None:
            await exchange.answer(call, too_large(limit))
            return
        try:
            request = parse_management(body)
        except RequestRejected as exc:
            await exchange.answer(call, error(exc.status, exc.code, exc.message))
            return
        secret_id = request.secret_id
        self.state.stats.set_secret_id(call.index, secret_id)
        if not await exchange.pass_gate(call, secret_id):
            return
        await exchange.sleep(exchange.delay(), call)
        await exchange.answer(call, self._manage(path, request))

    def _manage(self, path: str, request: ManagementRequest) -> Reply:
        credentials = request.credentials
        auth = self.state.authenticator.check(
            request.secret_id, credentials.timestamp, credentials.nonce, credentials.signature
        )
        if not auth.ok:
            if self.state.settings.sign_management_responses:
                return self.exchange.envelope(auth.code, auth.message, credentials)
            return error(400, auth.code, auth.message)
        store = self.state.libraries
        if path == LIBRARY_SEARCH_PATH:
            found = store.search(request.secret_id, request.name)
            return self._ok({"imageLibraries": found}, credentials)
        library = store.get(request.library_id or "", request.secret_id)
        if library is None:
            return error(
                400, 400, f"image library not found: {request.library_id!r} (imageLibraryId)"
            )
        if path == LIBRARY_IMAGES_PATH:
            images = [image.to_json() for image in library.images.values()]
            return self._ok({"images": images}, credentials)
        items = request.images or []
        most = _ITEM_LIMITS[path]
        if not 1 <= len(items) <= most:
            return error(400, 400, f"images must hold 1 to {most} items, not {len(items)}")
        if path == LIBRARY_ADD_URLS_PATH:
            results = store.add_urls(library, items, self.state.download_fails)
        elif path == LIBRARY_ADD_BASE64_PATH:
            results = store.add_base64(library, items)
        else:
            results = store.delete(library, items)
        return self._ok({"images": results}, credentials)

    def _ok(self, data: dict[str, Any], credentials: Credentials) -> Reply:
        if not self.state.settings.sign_management_responses:
            return Reply(200, json_body(data))
        inner = inner_fields(0, "success", credentials.nonce_echo)
        inner.update(data)
        return self.exchange.signed(inner)
