"""The public surface: ``tupu_async.__all__`` and the names the API contract fixes."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect
import types
from typing import Any

import pytest

import tupu_async

CONTRACT_NAMES = {
    "AsyncTupuClient",
    "Region",
    "Image",
    "ImageResult",
    "RecognitionResponse",
    "verify_envelope",
    "TupuError",
    "InvalidImageError",
    "SignatureVerificationError",
    "AuthenticationError",
    "RateLimitError",
    "APIError",
    "TransportError",
}


def public_attributes() -> set[str]:
    return {
        name
        for name, value in vars(tupu_async).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


# --- __all__ -----------------------------------------------------------------------------


def test_all_exists_and_is_a_sorted_list_without_duplicates() -> None:
    names = tupu_async.__all__
    assert isinstance(names, list)
    assert all(isinstance(n, str) for n in names)
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_name_in_all_is_importable() -> None:
    for name in tupu_async.__all__:
        assert hasattr(tupu_async, name), name
        exec(f"from tupu_async import {name}", {})


def test_all_has_nothing_private() -> None:
    for name in tupu_async.__all__:
        assert not name.startswith("_") or (name.startswith("__") and name.endswith("__")), name
        value = getattr(tupu_async, name)
        assert not isinstance(value, types.ModuleType), name


def test_all_is_complete() -> None:
    assert public_attributes() <= set(tupu_async.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from tupu_async import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(tupu_async.__all__)


def test_contract_names_are_exported() -> None:
    assert set(tupu_async.__all__) >= CONTRACT_NAMES


def test_public_names_come_from_their_modules() -> None:
    for name in tupu_async.__all__:
        value = getattr(tupu_async, name)
        module = getattr(value, "__module__", None)
        if isinstance(value, type) or inspect.isfunction(value):
            assert module is not None
            assert module.startswith("tupu_async"), (name, module)


def test_public_classes_and_functions_have_docstrings() -> None:
    missing = [
        name
        for name in tupu_async.__all__
        if (
            isinstance(getattr(tupu_async, name), type)
            or inspect.isfunction(getattr(tupu_async, name))
        )
        and not (getattr(tupu_async, name).__doc__ or "").strip()
    ]
    assert missing == []


# --- the contract's fixed names and defaults ----------------------------------------------


def test_client_constructor_matches_the_contract() -> None:
    params = inspect.signature(tupu_async.AsyncTupuClient).parameters
    assert list(params)[:2] == ["secret_id", "private_key"]
    defaults = {
        "region": tupu_async.Region.CN,
        "base_url": None,
        "tupu_public_key": None,
        "verify_signature": True,
        "qps": 50.0,
        "max_images_per_request": 10,
        "max_retries": 3,
        "timeout": 30.0,
        "http_client": None,
    }
    for name, default in defaults.items():
        assert name in params, name
        assert params[name].default == default, name
    assert "batch_linger" in params
    assert params["response_max_age"].default == 600.0
    assert params["retry_ambiguous"].default is True
    assert params["max_response_bytes"].default == 16 * 1024 * 1024


@pytest.mark.parametrize("method", ["recognize", "recognize_many", "iter_recognize"])
def test_recognition_methods_match_the_contract(method: str) -> None:
    function = getattr(tupu_async.AsyncTupuClient, method)
    params = inspect.signature(function).parameters
    assert list(params)[:2] == ["self", "images"]
    for name in ("tasks", "tags", "referer"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is None
    assert params["transport"].default == "multipart"
    if method == "iter_recognize":
        assert inspect.isasyncgenfunction(function)
    else:
        assert inspect.iscoroutinefunction(function)


def test_recognize_one_is_a_coroutine() -> None:
    function = tupu_async.AsyncTupuClient.recognize_one
    assert inspect.iscoroutinefunction(function)
    assert list(inspect.signature(function).parameters)[:2] == ["self", "image"]


def test_client_is_an_async_context_manager_with_libraries() -> None:
    cls = tupu_async.AsyncTupuClient
    assert hasattr(cls, "__aenter__")
    assert hasattr(cls, "__aexit__")
    assert hasattr(cls, "libraries")
    for method in ("search", "list_images", "add_urls", "add_images", "delete"):
        assert inspect.iscoroutinefunction(getattr(tupu_async.Libraries, method)), method


def test_verify_envelope_signature() -> None:
    params = inspect.signature(tupu_async.verify_envelope).parameters
    assert list(params) == ["body", "public_key", "max_age"]
    assert params["public_key"].default is None
    assert params["max_age"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["max_age"].default is None  # off: callbacks arrive late and are retried


def test_image_factories() -> None:
    for factory in ("from_url", "from_path", "from_bytes"):
        params = inspect.signature(getattr(tupu_async.Image, factory)).parameters
        assert params["tag"].default is None
        assert params["sequence_id"].default is None
    assert "name" in inspect.signature(tupu_async.Image.from_bytes).parameters


def test_regions_and_hosts() -> None:
    region = tupu_async.Region
    assert [r.value for r in region] == ["cn", "us", "oversea"]
    assert region("cn") is region.CN
    assert region.CN.base_url == "http://api.open.tuputech.com"
    assert region.US.base_url == "http://api-us.open.tuputech.com"
    assert region.OVERSEA.base_url == "http://api-oversea.open.tuputech.com"


def test_image_result_fields() -> None:
    fields = set(tupu_async.ImageResult.__struct_fields__)
    assert fields >= {
        "index", "name", "tag", "code", "message", "suggestion", "risk_type", "risk_task",
        "tasks", "error",
    }  # fmt: skip
    assert isinstance(inspect.getattr_static(tupu_async.ImageResult, "ok"), property)


def test_recognition_response_fields() -> None:
    fields = set(tupu_async.RecognitionResponse.__struct_fields__)
    assert fields >= {"code", "message", "timestamp", "nonce", "summary", "tasks", "images"}


def test_version_matches_the_distribution() -> None:
    assert tupu_async.__version__ == importlib.metadata.version("tupu-async")


def test_package_is_typed_and_ships_the_official_key() -> None:
    files = importlib.resources.files("tupu_async")
    assert files.joinpath("py.typed").is_file()
    assert b"BEGIN PUBLIC KEY" in files.joinpath("tupu_public_key.pem").read_bytes()


def test_fake_server_is_importable_from_testing() -> None:
    from tupu_async.testing import FakeTupuServer

    assert inspect.isclass(FakeTupuServer)
