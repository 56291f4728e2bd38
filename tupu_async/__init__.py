"""tupu-async: the asyncio client for the Tupu (图普) content-moderation API.

Signed requests, verified responses, typed results, and a throughput engine that keeps
a secret id under its QPS limit while packing images ten to a request::

    from tupu_async import AsyncTupuClient

    async with AsyncTupuClient(secret_id="...", private_key=Path("key.pem")) as client:
        results = await client.recognize_many(urls)

``TupuClient`` is the same client for synchronous code (threads, WSGI apps, scripts).
"""

from ._client import AsyncTupuClient
from ._constants import Region, Task
from ._envelope import verify_envelope
from ._events import ClientStats, Hooks, RequestEvent
from ._exceptions import (
    AmbiguousFailureError,
    APIError,
    AuthenticationError,
    ClientClosedError,
    ClockSkewError,
    ConfigurationError,
    ImageError,
    InvalidImageError,
    InvalidInputError,
    KeyLoadError,
    MalformedResponseError,
    RateLimitError,
    ReplayedResponseError,
    ResponseTooLargeError,
    ServerError,
    SignatureVerificationError,
    StaleResponseError,
    TransportError,
    TupuError,
)
from ._images import Image, ImageInput
from ._keys import KeySource
from ._labels import PoliticalLabel, PornLabel, RiskType, Suggestion, TaskId, ViolationLabel
from ._libraries import (
    ImageLibrary,
    Libraries,
    LibraryImage,
    LibraryItemOutcome,
    LibrarySyncReport,
    LibraryType,
    SyncLibraries,
)
from ._limiter import LocalLimiter, RateLimiter, UnlimitedLimiter
from ._public import rehome as _rehome
from ._redis_limiter import RedisLimiter
from ._requests import Transport
from ._retry import RetryPolicy
from ._sync import BlockingCallError, TupuClient
from ._throttle_policy import LimiterBelief
from ._types import (
    AdFile,
    FaceObject,
    FileResult,
    GenericFile,
    ImageResult,
    OcrFile,
    OcrObject,
    PoliticalFile,
    PornFile,
    RecognitionResponse,
    SubLabel,
    SubLabelScore,
    SummaryItem,
    TaskFile,
    TaskResult,
    TopNCount,
    ViolationFile,
    ViolenceFile,
    VulgarFile,
)
from ._version import __version__
from ._zip import ZipLimits

__all__ = [
    "APIError",
    "AdFile",
    "AmbiguousFailureError",
    "AsyncTupuClient",
    "AuthenticationError",
    "BlockingCallError",
    "ClientClosedError",
    "ClientStats",
    "ClockSkewError",
    "ConfigurationError",
    "FaceObject",
    "FileResult",
    "GenericFile",
    "Hooks",
    "Image",
    "ImageError",
    "ImageInput",
    "ImageLibrary",
    "ImageResult",
    "InvalidImageError",
    "InvalidInputError",
    "KeyLoadError",
    "KeySource",
    "Libraries",
    "LibraryImage",
    "LibraryItemOutcome",
    "LibrarySyncReport",
    "LibraryType",
    "LimiterBelief",
    "LocalLimiter",
    "MalformedResponseError",
    "OcrFile",
    "OcrObject",
    "PoliticalFile",
    "PoliticalLabel",
    "PornFile",
    "PornLabel",
    "RateLimitError",
    "RateLimiter",
    "RecognitionResponse",
    "RedisLimiter",
    "Region",
    "ReplayedResponseError",
    "RequestEvent",
    "ResponseTooLargeError",
    "RetryPolicy",
    "RiskType",
    "ServerError",
    "SignatureVerificationError",
    "StaleResponseError",
    "SubLabel",
    "SubLabelScore",
    "Suggestion",
    "SummaryItem",
    "SyncLibraries",
    "Task",
    "TaskFile",
    "TaskId",
    "TaskResult",
    "TopNCount",
    "Transport",
    "TransportError",
    "TupuClient",
    "TupuError",
    "UnlimitedLimiter",
    "ViolationFile",
    "ViolationLabel",
    "ViolenceFile",
    "VulgarFile",
    "ZipLimits",
    "__version__",
    "verify_envelope",
]

_rehome(globals(), __all__, __name__)  # as httpx does: errors and reprs say tupu_async.X
