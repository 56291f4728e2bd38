"""The fake as strict as the service: JavaScript number spelling and varied JSON escapes."""

from __future__ import annotations

import json

import httpx
import pytest
from clients import in_process_client, png

from tupu_async import Image
from tupu_async._keys import load_public_key
from tupu_async._signing import verify_signature
from tupu_async.testing import JSON_STYLES, FakeTupuServer, JsonStyle, js_number_text

TRICKY_NAME = "猫 <b>&amp; a/b.png"


@pytest.mark.parametrize(
    ("literal", "text"),
    [
        ("1.2e-05", "0.000012"),
        ("1.2E-4", "0.00012"),
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("123e-20", "1.23e-18"),
        ("1.5e-7", "1.5e-7"),
        ("0.000001", "0.000001"),
        ("1700000000", "1700000000"),
        ("1700000000123", "1700000000123"),
        ("1700000000.0", "1700000000"),
        ("-0", "0"),
        ("-2.50", "-2.5"),
        ("0.010413094889372587", "0.010413094889372587"),
    ],
)
def test_js_number_text_follows_number_prototype_tostring(literal: str, text: str) -> None:
    assert js_number_text(literal) == text


def test_js_number_text_refuses_what_is_not_a_finite_number() -> None:
    assert js_number_text("1e400") is None
    assert js_number_text("abc") is None


async def _raw_inner(server: FakeTupuServer, style: JsonStyle) -> tuple[str, str]:
    """One upload named TRICKY_NAME; the inner JSON text and signature as received."""
    if server.json_style != style:
        server.json_style = style
    client = in_process_client(server)
    captured: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        captured.append(response)

    client._http.event_hooks["response"].append(keep)
    async with client:
        result = await client.recognize_one(Image.from_bytes(png(1), name=TRICKY_NAME))
    assert result.ok
    assert result.name == TRICKY_NAME
    envelope = captured[-1].json()
    return envelope["json"], envelope["signature"]


@pytest.mark.anyio
@pytest.mark.parametrize("style", JSON_STYLES)
async def test_our_client_verifies_every_json_style(style: JsonStyle) -> None:
    server = FakeTupuServer()
    text, signature = await _raw_inner(server, style)
    key = load_public_key(server.public_key_pem)
    assert verify_signature(key, text.encode(), signature)
    if style == "go":
        assert "\\u003cb\\u003e\\u0026amp;" in text
        assert "猫" in text
    if style == "php":
        assert "a\\/b.png" in text
        assert "\\u732b" in text
    if style == "ascii":
        assert "\\u732b" in text
        assert "<b>&amp;" in text
    if style == "compact":
        assert "猫 <b>&amp; a/b.png" in text


@pytest.mark.anyio
@pytest.mark.parametrize("style", ["go", "php", "ascii"])
async def test_a_client_that_reserialises_before_verifying_fails(style: JsonStyle) -> None:
    server = FakeTupuServer()
    text, signature = await _raw_inner(server, style)
    key = load_public_key(server.public_key_pem)
    for reserialised in (
        json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False),
        json.dumps(json.loads(text), separators=(",", ":")),
    ):
        if reserialised != text:
            assert not verify_signature(key, reserialised.encode(), signature)
    assert json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False) != text or (
        json.dumps(json.loads(text), separators=(",", ":")) != text
    )


@pytest.mark.anyio
async def test_vary_spells_consecutive_responses_differently() -> None:
    server = FakeTupuServer(json_style="vary")
    texts = [(await _raw_inner(server, "vary"))[0] for _ in range(4)]
    assert any("\\u0026" in t for t in texts)
    assert any("\\/" in t for t in texts)
    assert any("猫" in t for t in texts)


def test_an_unknown_style_is_refused() -> None:
    with pytest.raises(ValueError, match="json_style must be one of"):
        FakeTupuServer(json_style="pretty")  # type: ignore[arg-type]
