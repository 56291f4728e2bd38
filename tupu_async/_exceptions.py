"""The whole error hierarchy, and the map from Tupu status codes to it.

TupuError
├── InvalidImageError (also ValueError)     bad input, raised before anything is sent
├── KeyLoadError (also ValueError)          a private/public key that cannot be used
├── SignatureVerificationError              a response whose signature does not verify
│   ├── StaleResponseError                  signed, but its timestamp is outside max_age
│   └── ReplayedResponseError               signed, but this client accepted it before
├── MalformedResponseError                  a body that is not a well-formed envelope
│   └── ResponseTooLargeError               a body over max_response_bytes (not read)
├── TransportError                          network failures (after retries)
├── AmbiguousFailureError                   may have been processed; not retried
└── APIError                                the service answered with an error
    ├── AuthenticationError                 codes 1, 6, 8, 9 (fatal)
    │   └── ClockSkewError                  code 12: the local clock is off
    ├── ConfigurationError                  codes 2-5, 7, 10, 11, 13 (fatal)
    ├── RateLimitError                      HTTP 429 / throttling
    ├── ServerError                         HTTP 5xx, codes 100 and 101
    └── ImageError                          code 14, per image
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "AmbiguousFailureError",
    "AuthenticationError",
    "ClientClosedError",
    "ClockSkewError",
    "ConfigurationError",
    "ImageError",
    "InvalidImageError",
    "InvalidInputError",
    "KeyLoadError",
    "MalformedResponseError",
    "RateLimitError",
    "ReplayedResponseError",
    "ResponseTooLargeError",
    "ServerError",
    "SignatureVerificationError",
    "StaleResponseError",
    "TransportError",
    "TupuError",
]


class TupuError(Exception):
    """Base class of every error tupu-async raises."""


class InvalidInputError(TupuError, ValueError):
    """An argument that cannot be used (a library id, image names, the shape of a
    mapping): raised before any request is made. The message says what to pass."""


class InvalidImageError(InvalidInputError):
    """An input image that cannot be sent: raised before any request is made."""


class KeyLoadError(TupuError, ValueError):
    """A key that cannot be loaded or used. The message says what to supply instead."""


class SignatureVerificationError(TupuError):
    """A response envelope whose signature does not verify with the Tupu public key."""


class StaleResponseError(SignatureVerificationError):
    """A signed response whose ``timestamp`` is further than ``max_age`` from the local clock.

    Either an old response replayed (the default hosts are plain http) or a local clock
    that is off. Fatal: retrying fixes neither.
    """


class ReplayedResponseError(SignatureVerificationError):
    """A signed response this client already accepted once: a replay. Fatal."""


class MalformedResponseError(TupuError):
    """The service (or something in between) answered with a body that is not an envelope.

    ``status_code`` is the HTTP status and ``body_excerpt`` the start of what came back.
    Usually transient (a proxy error page, a truncated body), so it is retried.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, body_excerpt: str = ""
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body_excerpt = body_excerpt


class ResponseTooLargeError(MalformedResponseError):
    """A response body over the client's ``max_response_bytes``; reading stopped at the cap."""


class TransportError(TupuError):
    """The request never got an answer: connection refused or dropped, or a timeout."""


class AmbiguousFailureError(TupuError):
    """A request that reached the service but got no usable answer, and was not retried.

    Raised instead of retrying when ``retry_ambiguous=False``: the service may have
    processed (and billed) the images. ``cause`` is the failure of the attempt.
    """

    def __init__(self, message: str, *, cause: TupuError) -> None:
        super().__init__(message)
        self.cause = cause


class ClientClosedError(TupuError, RuntimeError):
    """A call on a client (``AsyncTupuClient`` or ``TupuClient``) that was closed, or whose
    ``http_client`` was closed: fatal, create a new client."""


class APIError(TupuError):
    """The service answered with an error status code.

    ``code`` is Tupu's status code (None for a bare HTTP error), ``message`` its text,
    ``status_code`` the HTTP status and ``request_id`` the service's id when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.request_id = request_id
        self.retry_after = retry_after


class AuthenticationError(APIError):
    """The service refused the credentials (codes 1, 6, 8, 9). Fatal: never retried."""


class ClockSkewError(AuthenticationError):
    """Code 12: the request timestamp was rejected, which means the local clock is off."""


class ConfigurationError(APIError):
    """The request cannot be served as configured (codes 2-5, 7, 10, 11, 13). Fatal."""


class RateLimitError(APIError):
    """HTTP 429: the secret id is over its QPS limit. Retried after a shared pause."""


class ServerError(APIError):
    """HTTP 5xx, or codes 100/101: a fault on the service side. Retried with backoff."""


class ImageError(APIError):
    """Code 14 for one image: it could not be downloaded, was missing or was too large."""


_CODE_CLASSES: dict[type[APIError], tuple[int, ...]] = {
    AuthenticationError: (1, 6, 8, 9),
    ClockSkewError: (12,),
    ConfigurationError: (2, 3, 4, 5, 7, 10, 11, 13),
    ImageError: (14,),
    ServerError: (100, 101),
}
_CODE_HINTS: dict[int, str] = {
    1: "authentication failed: check that secret_id matches the private key whose public key "
    "you uploaded to Tupu",
    2: "model id error: the model behind this secret id is unknown; contact Tupu",
    3: "no file: the request carried no image",
    4: "API version error: upgrade tupu-async or check base_url",
    5: "API version deprecated: upgrade tupu-async or check base_url",
    6: "secretId error: check the secret_id you passed",
    7: "task not allowed for this secretId: remove the task id from tasks= or ask Tupu to "
    "enable it",
    8: "secretId status abnormal: the account is suspended or expired; contact Tupu",
    9: "no certificate: upload the public key matching your private key in the Tupu console",
    10: "pipe id error: check secret_id and base_url",
    11: "callback parameter missing: this secret id expects a callback configuration",
    12: "timestamp error: the local clock is off; synchronise it (e.g. with NTP) and retry",
    13: "no task configured or all tasks closed for this secret id: enable tasks in the Tupu "
    "console",
    14: "image error: the image could not be downloaded, was not found or is too large",
    100: "Tupu server error; retried automatically",
    101: "unknown Tupu error; retried automatically",
}
_CODE_CLASS: dict[int, type[APIError]] = {
    code: cls for cls, codes in _CODE_CLASSES.items() for code in codes
}

_FATAL: tuple[type[TupuError], ...] = (
    AuthenticationError,
    ConfigurationError,
    SignatureVerificationError,
    KeyLoadError,
    ClientClosedError,
)
_RETRYABLE: tuple[type[TupuError], ...] = (
    TransportError,
    RateLimitError,
    ServerError,
    MalformedResponseError,
)

FATAL_CODES: frozenset[int] = frozenset(
    c for c, cls in _CODE_CLASS.items() if issubclass(cls, _FATAL)
)
RETRYABLE_CODES: frozenset[int] = frozenset(
    c for c, cls in _CODE_CLASS.items() if issubclass(cls, _RETRYABLE)
)
IMAGE_ERROR_CODE = 14


def error_for_code(
    code: int,
    message: str,
    *,
    status_code: int | None = None,
    request_id: str | None = None,
) -> APIError:
    """Build the error for a non-zero Tupu status code, with a message that says what to do."""
    cls = _CODE_CLASS.get(code, APIError)
    hint = _CODE_HINTS.get(code, "unexpected status code")
    text = f"Tupu code {code} ({message or 'no message'}): {hint}"
    if request_id:
        text += f" [requestId {request_id}]"
    return cls(text, code=code, status_code=status_code, request_id=request_id)


def error_for_http_status(
    status_code: int, excerpt: str, *, retry_after: float | None = None
) -> APIError:
    """Build the error for an HTTP error status that carried no envelope."""
    if status_code == 429:
        return RateLimitError(
            f"HTTP 429: the secret id is over its QPS limit (lower qps= or share one limiter); "
            f"body: {excerpt!r}",
            status_code=status_code,
            retry_after=retry_after,
        )
    if status_code >= 500:
        return ServerError(
            f"HTTP {status_code} from Tupu (retried automatically); body: {excerpt!r}",
            status_code=status_code,
            retry_after=retry_after,
        )
    if status_code in (401, 403):
        return AuthenticationError(
            f"HTTP {status_code}: the service refused the request; check secret_id and the key "
            f"pair; body: {excerpt!r}",
            status_code=status_code,
        )
    if status_code == 413:
        return ConfigurationError(
            f"HTTP 413: the request body is too large for the service; body: {excerpt!r}",
            status_code=status_code,
        )
    return APIError(f"HTTP {status_code} from Tupu; body: {excerpt!r}", status_code=status_code)


def is_fatal(exc: BaseException) -> bool:
    """True for errors that must stop a whole batch run at once (never retried)."""
    return isinstance(exc, _FATAL)


def is_retryable(exc: BaseException) -> bool:
    """True for transient faults worth another attempt."""
    return isinstance(exc, _RETRYABLE)
