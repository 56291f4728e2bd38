"""How the service spells JSON: numbers as JavaScript prints them, and its escape styles.

``js_number_text`` gives ``Number.prototype.toString``'s spelling of a JSON number
(``1.2e-05`` -> ``0.000012``); ``restyle`` re-escapes a response text in one of
``JSON_STYLES``.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Final, Literal

__all__ = ["JSON_STYLES", "JsonStyle", "StyleCycle", "js_number_text", "restyle"]

JsonStyle = Literal["compact", "go", "php", "ascii", "vary"]
JSON_STYLES: Final[tuple[JsonStyle, ...]] = ("compact", "go", "php", "ascii", "vary")
"""``compact``: raw UTF-8, nothing escaped; ``go``: ``<>&`` as ``\\u003c``-style escapes,
raw non-ASCII (what real responses show); ``php``: escaped slashes ``\\/`` and ``\\uXXXX``
non-ASCII; ``ascii``: ``\\uXXXX`` non-ASCII only; ``vary``: each response the next of
those four in turn."""

_FIXED: Final[tuple[JsonStyle, ...]] = ("go", "php", "ascii", "compact")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def js_number_text(literal: str) -> str | None:
    """The text JavaScript's ``String(Number(literal))`` gives, or None when not finite.

    ``1.2e-05`` -> ``0.000012``; ``1e21`` -> ``1e+21``; ``1700000000.0`` -> ``1700000000``.
    """
    try:
        value = float(literal)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")  # repr: the shortest round trip
    whole, _, frac = mantissa.partition(".")
    every = whole + (frac if frac != "0" else "")
    point = len(whole) + int(exp or 0)
    digits = every.lstrip("0")
    point -= len(every) - len(digits)
    digits = digits.rstrip("0")
    k, n = len(digits), point  # value = 0.<digits> x 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        head = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _u_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def restyle(text: bytes, style: JsonStyle) -> bytes:
    """``text`` (compact JSON as msgspec writes it) respelt in ``style``; same value.

    Every character rewritten can only occur inside JSON strings, so the rewrite never
    changes structure.
    """
    if style in ("compact", "vary"):
        return text
    out = text.decode("utf-8")
    if style == "go":
        out = re.sub(r"[<>&]", lambda m: _HTML[m.group()], out)
    if style == "php":
        out = out.replace("/", "\\/")
    if style in ("php", "ascii"):
        out = _NON_ASCII.sub(_u_escape, out)
    return out.encode("utf-8")


class StyleCycle:
    """The style of each next response: fixed, or the variants in turn for ``vary``."""

    def __init__(self, style: JsonStyle) -> None:
        if style not in JSON_STYLES:
            raise ValueError(f"json_style must be one of {', '.join(JSON_STYLES)}, not {style!r}")
        self.style = style
        self._cycle = itertools.cycle(_FIXED)

    def next(self) -> JsonStyle:
        return next(self._cycle) if self.style == "vary" else self.style
