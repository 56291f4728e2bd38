"""tupu-async: the asyncio client for the Tupu (图普) content-moderation API."""

from ._constants import Region
from ._envelope import verify_envelope
from ._exceptions import (
    APIError,
    AuthenticationError,
    ClockSkewError,
    ConfigurationError,
    ImageError,
    InvalidImageError,
    KeyLoadError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
    SignatureVerificationError,
    TransportError,
    TupuError,
)
from ._images import Image
from ._types import ImageResult, RecognitionResponse, SummaryItem, TaskResult

__version__ = "0.1.0"
