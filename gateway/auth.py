"""Who is calling: an API key (mapped to its tenant), or, with no keys configured, a loopback client.

With keys configured every /v1 endpoint needs one, and the tenant comes from the key (an `x-tenant`
header cannot change it). With none configured the gateway is open but answers loopback clients only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request as HttpRequest

from gateway.errors import AuthenticationFailed, InvalidRequest
from gateway.keys import ApiKey, KeyStore

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_TENANT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    key: ApiKey | None


def header_dict(http: HttpRequest) -> dict[str, str]:
    """The request's headers as a plain dict (lowercase names; the first of repeated ones), built once per
    request: Starlette's `Headers.get` scans and decodes the raw list on every lookup, and the request path
    looks up about ten headers."""
    found = http.scope.get("gateway.headers")
    if found is None:
        raw = http.scope["headers"]
        found = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw)}
        http.scope["gateway.headers"] = found
    return found


def bearer(http: HttpRequest) -> str | None:
    headers = header_dict(http)
    raw = headers.get("authorization")
    if raw is None:
        return headers.get("api-key")  # Azure-style clients
    scheme, _, token = raw.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def is_loopback(http: HttpRequest) -> bool:
    return http.client is not None and http.client.host in LOOPBACK


def authenticate(http: HttpRequest, keys: KeyStore) -> Caller:
    if keys.configured():
        token = bearer(http)
        key = keys.verify(token) if token else None
        if key is None:
            raise AuthenticationFailed(
                "a valid API key is required: send it as 'Authorization: Bearer <key>'"
            )
        return Caller(key.tenant, key)
    if not is_loopback(http):
        raise AuthenticationFailed(
            "this gateway has no API keys configured and answers loopback clients only",
            code="no_keys_configured",
        )
    return Caller(tenant_from_header(http), None)


def tenant_from_header(http: HttpRequest) -> str:
    raw = header_dict(http).get("x-tenant")
    if raw is None:
        return DEFAULT_TENANT
    tenant = raw.strip().lower()
    if not _TENANT.match(tenant):
        raise InvalidRequest(
            "x-tenant must be 1-64 characters of a-z, 0-9, '.', '_' or '-'", param="x-tenant"
        )
    return tenant
