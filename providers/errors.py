"""Map an upstream's HTTP answer to the gateway's `UpstreamError`, most specific first.

Shared by every adapter that sees raw HTTP status codes; SDK adapters map their exception classes to the
same kinds so fallback behaves the same whichever vendor failed.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway.errors import ErrorKind, UpstreamError
from providers.base import Usage

_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_POLICY_CODES = frozenset({"content_policy_violation", "moderation_blocked", "content_filter"})
_RETIRED_CODES = frozenset({"model_not_found", "model_retired", "model_deprecated"})


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        when = email.utils.parsedate_to_datetime(raw) if raw else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def _error_fields(raw: bytes) -> tuple[str | None, str]:
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, raw[:200].decode("utf-8", "replace")
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get("code") or err.get("type")
        return (str(code) if code is not None else None), str(err.get("message", ""))[:500]
    if isinstance(err, str):
        return None, err[:500]
    return None, str(body)[:200]


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def classify_status(
    status: int, raw: bytes, headers: Mapping[str, str], name: str, *, secrets: Sequence[str] = ()
) -> UpstreamError:
    """The UpstreamError for an HTTP error or redirect answer (redirects are never followed); our keys
    (`secrets`) are cut from the upstream's words."""
    lower = {k.lower(): v for k, v in headers.items()}
    if 300 <= status < 400:
        where = redact(lower.get("location", "nowhere"), secrets)
        return UpstreamError(
            ErrorKind.TRANSIENT,
            f"{name}: HTTP {status} redirect to {where}, not followed (a redirect could carry the provider "
            "key to another host): set the provider's base_url to the address that answers",
            status=status,
        )
    code, message = _error_fields(raw)
    message = redact(message, secrets)
    retry_after = parse_retry_after(lower)
    text = f"{name}: HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    msg = message.lower()
    if status == 429:
        if code == "insufficient_quota":
            return UpstreamError(ErrorKind.AUTH, text, status=status)
        return UpstreamError(ErrorKind.RATE_LIMITED, text, status=status, retry_after=retry_after)
    if status == 410 or (status == 404 and (code in _RETIRED_CODES or "does not exist" in msg)):
        return UpstreamError(ErrorKind.RETIRED, text, status=status)
    if status in (401, 403):
        return UpstreamError(ErrorKind.AUTH, text, status=status)
    if status == 408:
        return UpstreamError(ErrorKind.TIMEOUT, text, status=status)
    if status == 503 and retry_after is not None:
        # An overloaded upstream (e.g. the local backend's full queue) says when to come back.
        return UpstreamError(ErrorKind.RATE_LIMITED, text, status=status, retry_after=retry_after)
    if status >= 500 or status == 404:
        return UpstreamError(ErrorKind.TRANSIENT, text, status=status)
    if code in _CONTEXT_CODES or "context length" in msg or "context window" in msg:
        return UpstreamError(ErrorKind.CONTEXT_TOO_LONG, text, status=status)
    if code in _POLICY_CODES or "content policy" in msg or "safety system" in msg:
        return UpstreamError(ErrorKind.CONTENT_POLICY, text, status=status)
    return UpstreamError(ErrorKind.BAD_REQUEST, text, status=status)


def usage_from(usage: Any, headers: Mapping[str, str]) -> Usage:
    """Usage from an OpenAI `usage` object plus the local backend's `device_seconds` extension."""
    u = usage if isinstance(usage, dict) else {}
    device = u.get("device_seconds")
    if device is None:
        device = headers.get("x-device-seconds")
    try:
        device_seconds = float(device) if device is not None else 0.0
    except ValueError:
        device_seconds = 0.0
    return Usage(
        prompt_tokens=_int(u.get("prompt_tokens", u.get("input_tokens"))),
        completion_tokens=_int(u.get("completion_tokens", u.get("output_tokens"))),
        images=_int(u.get("images")),
        device_seconds=device_seconds,
        estimated=not u,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
