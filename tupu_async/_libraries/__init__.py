"""The image-library (图片名单) management API: ``client.libraries``."""

from ._inputs import ContentSource, SyncSource
from ._resource import Libraries
from ._sync import SyncLibraries
from ._types import (
    NO_ANSWER_CODE,
    ImageLibrary,
    LibraryImage,
    LibraryItemOutcome,
    LibrarySyncReport,
    LibraryType,
)

__all__ = [
    "NO_ANSWER_CODE",
    "ContentSource",
    "ImageLibrary",
    "Libraries",
    "LibraryImage",
    "LibraryItemOutcome",
    "LibrarySyncReport",
    "LibraryType",
    "SyncLibraries",
    "SyncSource",
]
