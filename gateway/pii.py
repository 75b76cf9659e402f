"""Deterministic PII detection: regexes backed by checksums (Luhn for cards, mod-97 for IBANs).

The detector is pluggable: the policy's `pii.detector` names any class with `detect(text) -> set[str]`
(e.g. an ML detector); deterministic checks stay the floor because ML confidence on real card numbers and
SSNs has proved too low in other gateways.

Example::

    RegexPiiDetector(["email", "card"]).detect("mail me at a@b.io")   # {"email"}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Protocol


class PiiDetector(Protocol):
    def detect(self, text: str) -> set[str]: ...


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    as_digits = "".join(str(int(c, 36)) for c in moved)
    return int(as_digits) % 97 == 1


def _card(match: str) -> bool:
    digits = re.sub(r"[ -]", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone(match: str) -> bool:
    return 9 <= sum(c.isdigit() for c in match) <= 15


def _ssn(match: str) -> bool:
    area, group, serial = match.split("-")
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


_PATTERNS: dict[str, tuple[re.Pattern[str], Callable[[str], bool] | None]] = {
    "email": (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), None),
    "card": (re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"), _card),
    "iban": (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), iban_ok),
    "us_ssn": (re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"), _ssn),
    "phone": (re.compile(r"(?<![\w+])\+?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,4}\)?){2,5}(?!\w)"), _phone),
}


class RegexPiiDetector:
    """Finds the kinds named in the policy; each regex hit must also pass its checksum or shape check."""

    def __init__(self, kinds: Iterable[str]) -> None:
        unknown = set(kinds) - set(_PATTERNS)
        if unknown:
            raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {sorted(_PATTERNS)}")
        # Cards before phones: a card number must not also count as a phone number.
        self._checks = [(k, *_PATTERNS[k]) for k in _PATTERNS if k in set(kinds)]

    def detect(self, text: str) -> set[str]:
        found: set[str] = set()
        digits = _ascii_digits(text)
        for kind, pattern, check in self._checks:
            if not _may_contain(kind, text, digits):
                continue
            for m in pattern.finditer(text):
                if check is None or check(m.group()):
                    found.add(kind)
                    if kind == "card":
                        text = text.replace(m.group(), " ")
                    break
        return found


# What a text must hold before a kind's regex can match: its required character and its least number of
# digits. Ordinary prompts hold neither, and running five regexes over every message was the gateway's
# largest pure-Python cost per request (py-spy, bench/RESULTS.md).
_PREREQUISITES: dict[str, tuple[str | None, int]] = {
    "email": ("@", 0),
    "card": (None, 13),
    "iban": (None, 2),
    "us_ssn": ("-", 9),
    "phone": (None, 9),
}
_DIGITS = "0123456789"


def _ascii_digits(text: str) -> int | None:
    """ASCII digits in `text`, or None when it has non-ASCII characters (`\\d` also matches other digits)."""
    if not text.isascii():
        return None
    return sum(map(text.count, _DIGITS))


def _may_contain(kind: str, text: str, digits: int | None) -> bool:
    needed_char, min_digits = _PREREQUISITES[kind]
    if needed_char is not None and needed_char not in text:
        return False
    return digits is None or digits >= min_digits
