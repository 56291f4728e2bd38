"""The top-level surface: exactly these names, each at home in ``tupu_async``."""

from __future__ import annotations

import enum
import inspect
import pickle
import typing

import msgspec
import pytest

import tupu_async
import tupu_async.testing

PUBLIC = [
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

RECLASSED = [
    name
    for name in PUBLIC
    if isinstance(getattr(tupu_async, name), type) or inspect.isfunction(getattr(tupu_async, name))
]


def test_all_is_exactly_the_public_surface() -> None:
    assert tupu_async.__all__ == PUBLIC


def test_every_public_name_exists() -> None:
    for name in PUBLIC:
        assert hasattr(tupu_async, name), name


@pytest.mark.parametrize("name", RECLASSED)
def test_public_classes_and_functions_live_in_tupu_async(name: str) -> None:
    assert getattr(tupu_async, name).__module__ == "tupu_async"


def test_the_rehomed_names_cover_classes_enums_and_functions() -> None:
    values = [getattr(tupu_async, name) for name in RECLASSED]
    assert any(isinstance(v, type) and issubclass(v, enum.Enum) for v in values)
    assert any(isinstance(v, type) and issubclass(v, msgspec.Struct) for v in values)
    assert any(isinstance(v, type) and issubclass(v, BaseException) for v in values)
    assert any(inspect.isfunction(v) for v in values)
    assert "Task" in RECLASSED
    assert tupu_async.TaskId is tupu_async.Task


def test_type_aliases_are_exported_as_they_are() -> None:
    assert typing.get_args(tupu_async.Transport) == ("multipart", "base64")
    assert str in typing.get_args(tupu_async.KeySource)


def test_errors_and_enums_still_pickle() -> None:
    error = tupu_async.APIError("boom", code=3, status_code=200, request_id="r1")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is tupu_async.APIError
    assert (str(copy), copy.code, copy.request_id) == ("boom", 3, "r1")
    assert pickle.loads(pickle.dumps(tupu_async.Suggestion.BLOCK)) is tupu_async.Suggestion.BLOCK
    assert pickle.loads(pickle.dumps(tupu_async.Region.US)) is tupu_async.Region.US


def test_structs_still_resolve_their_annotations() -> None:
    msgspec.json.Decoder(list[tupu_async.PornFile])
    msgspec.json.Decoder(tupu_async.TaskResult[tupu_async.OcrFile])
    msgspec.json.Decoder(tupu_async.LibraryImage)
    assert typing.get_type_hints(tupu_async.RetryPolicy)["max_retries"] is int


def test_version_has_one_source() -> None:
    from tupu_async._version import __version__

    assert tupu_async.__version__ is __version__


TESTING_PUBLIC = [
    "ALL_FAULT_KINDS",
    "DEFAULT_TASKS",
    "DOWNLOAD_FAIL_WORD",
    "JSON_STYLES",
    "MAGIC_OUTCOMES",
    "DelayProxy",
    "FakeLibrary",
    "FakeServerProcess",
    "FakeServerStats",
    "FakeServerTransport",
    "FakeTupuServer",
    "FaultConfig",
    "JsonStyle",
    "RecordedRequest",
    "RedisServer",
    "StoredImage",
    "js_number_text",
    "max_arrivals_in_window",
    "spawn_fake_server",
    "split_cores",
]


def test_the_fake_server_surface_lives_in_tupu_async_testing() -> None:
    assert tupu_async.testing.__all__ == TESTING_PUBLIC
    for name in TESTING_PUBLIC:
        value = getattr(tupu_async.testing, name)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__ == "tupu_async.testing", name
    # The fake's classes do not shadow the client's public names.
    assert not set(TESTING_PUBLIC) & set(tupu_async.__all__)
    msgspec.json.Decoder(list[tupu_async.testing.StoredImage])
