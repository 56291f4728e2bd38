"""Every number and name the Tupu API fixes, in one place.

Sizes follow the contract's clarifications: 1 MB means 1 MiB per image and 30 MB
means 30 MiB per base64 JSON body.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["Region", "Task"]


class Region(str, enum.Enum):
    """The three Tupu API regions. Values are the lower-case names accepted everywhere."""

    CN = "cn"
    US = "us"
    OVERSEA = "oversea"

    @property
    def base_url(self) -> str:
        return REGION_HOSTS[self]


REGION_HOSTS: Final[dict[Region, str]] = {
    Region.CN: "http://api.open.tuputech.com",
    Region.US: "http://api-us.open.tuputech.com",
    Region.OVERSEA: "http://api-oversea.open.tuputech.com",
}

# Paths (the secret id is appended to the two recognition paths).
RECOGNITION_PATH: Final = "/v3/recognition/"
BASE64_RECOGNITION_PATH: Final = "/v3/recognition/image/sync/base64/"
LIBRARY_SEARCH_PATH: Final = "/v3/management/image-library/search"
LIBRARY_IMAGES_PATH: Final = "/v3/management/image/search"
LIBRARY_ADD_URLS_PATH: Final = "/v3/management/image/create/url"
LIBRARY_ADD_BASE64_PATH: Final = "/v3/management/image/create/base64"
LIBRARY_DELETE_PATH: Final = "/v3/management/image/delete"

# Limits from the API reference.
MAX_QPS: Final = 50.0
MAX_IMAGES_PER_REQUEST: Final = 10
MAX_IMAGE_BYTES: Final = 1024 * 1024
MAX_BASE64_BODY_BYTES: Final = 30 * 1024 * 1024
LIBRARY_MAX_URLS_PER_REQUEST: Final = 1000
LIBRARY_MAX_IMAGES_PER_REQUEST: Final = 100
LIBRARY_MAX_DELETES_PER_REQUEST: Final = 100
# The docs suggest keeping one base64 upload body under 100 MB ("过大将导致413").
LIBRARY_MAX_BODY_BYTES: Final = 100 * 1024 * 1024
LIBRARY_NAME_MAX_CHARS: Final = 512

# Client defaults.
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_RETRIES: Final = 3
DEFAULT_BATCH_LINGER: Final = 0.005
DEFAULT_BACKOFF_BASE: Final = 0.25
DEFAULT_BACKOFF_MAX: Final = 8.0
# Requests in flight at once.
DEFAULT_MAX_IN_FLIGHT: Final = 128
# A signed response older (or newer) than this, by the local clock, is refused.
DEFAULT_RESPONSE_MAX_AGE: Final = 600.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
USER_AGENT: Final = "tupu-async"


class Task:
    """The ids of the tasks the docs describe, for ``tasks=`` and ``ImageResult.tasks``.

    Plain ``str`` constants: ``client.recognize_many(urls, tasks=[Task.PORN])``,
    ``result.tasks[Task.PORN].label == PornLabel.NORMAL``.
    """

    PORN: Final = "54bcfc6c329af61034f7c2fc"
    POLITICAL: Final = "5b7be1f59b0c77a8c2afb351"
    VIOLENCE: Final = "5e1d70adeec2874f7318dc52"
    OCR_TEXT: Final = "5e1d634d2809c24f6d909bd3"
    AD: Final = "56a8645b0c800bff40990cf1"
    VULGAR: Final = "5ad37309616505867eeac264"
    VIOLATION: Final = "5eddb86afaf52c4ca704ea41"


# The same ids as module constants, for code written before ``Task``.
TASK_PORN: Final = Task.PORN
TASK_VIOLENCE: Final = Task.VIOLENCE
TASK_AD: Final = Task.AD
TASK_OCR_TEXT: Final = Task.OCR_TEXT
TASK_POLITICAL: Final = Task.POLITICAL
TASK_VULGAR: Final = Task.VULGAR
TASK_VIOLATION: Final = Task.VIOLATION

# Image formats the API accepts (docs: png, jpg, jpeg, tif, webp, bmp, gif (static), heif).
ACCEPTED_FORMATS: Final = frozenset({"jpeg", "png", "bmp", "tiff", "webp", "gif", "heif"})
