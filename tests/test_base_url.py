"""base_url: the official SDKs' full recognition URL is accepted; unusable ones are refused."""

from __future__ import annotations

import pytest

from tupu_async import AsyncTupuClient
from tupu_async._base_url import normalise_base_url
from tupu_async.testing import FakeTupuServer


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("http://api.open.tuputech.com", "http://api.open.tuputech.com"),
        ("http://api.open.tuputech.com/", "http://api.open.tuputech.com"),
        ("http://api.open.tuputech.com/v3/recognition/", "http://api.open.tuputech.com"),
        ("https://api.open.tuputech.com/v3/recognition/abc123", "https://api.open.tuputech.com"),
        ("  http://127.0.0.1:8080/v3 ", "http://127.0.0.1:8080"),
        ("https://proxy.internal/tupu/", "https://proxy.internal/tupu"),
        ("https://proxy.internal/tupu/v3/recognition/", "https://proxy.internal/tupu"),
    ],
)
def test_normalised(given: str, used: str) -> None:
    assert normalise_base_url(given) == used


@pytest.mark.parametrize(
    "given", ["api.open.tuputech.com", "ftp://host", "http://", "http://h/?q=1", "http://h/#x"]
)
def test_refused_with_what_to_pass(given: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. http://api\.open\.tuputech\.com"):
        normalise_base_url(given)


def test_the_client_uses_the_normalised_url() -> None:
    _, key = FakeTupuServer().add_credentials("s")
    client = AsyncTupuClient("s", key, base_url="http://api.open.tuputech.com/v3/recognition/")
    assert client.base_url == "http://api.open.tuputech.com"
