"""The gateway's own error tree, and the OpenAI-shaped body each error becomes.

    GatewayError                      anything the gateway answers with an error body
    ├── InvalidRequest        400     the caller's body or headers are wrong
    ├── AuthenticationFailed  401     missing or wrong client key
    ├── PolicyDenied          403     a policy rule refuses the request (code "policy_denied")
    ├── RouteNotFound         404     `model` names no route (code "model_not_found")
    ├── PayloadTooLarge       413
    ├── NoEligibleDeployment  503     every candidate was removed by a rule or is unavailable
    ├── LedgerUnavailable     503     the request's ledger row could not be written: the answer is withheld
    ├── UpstreamError         ...     one provider call failed; `kind` says how (see ErrorKind)
    └── AllAttemptsFailed     ...     fallback ran out of candidates; status follows the last failure

Providers raise only `UpstreamError`, built from their SDK's exception with `raise ... from exc`.
Fallback decides on `ErrorKind`, never on SDK types.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorKind(enum.StrEnum):
    """How an upstream call failed; fallback's behaviour per kind is in gateway/fallback.py."""

    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    RETIRED = "retired"
    CONTEXT_TOO_LONG = "context_too_long"
    CONTENT_POLICY = "content_policy"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"


# What the client sees when the last attempt failed with this kind.
_CLIENT_STATUS: dict[ErrorKind, tuple[int, str, str]] = {
    ErrorKind.RATE_LIMITED: (429, "rate_limit_error", "rate_limit_exceeded"),
    ErrorKind.TRANSIENT: (502, "upstream_error", "upstream_unavailable"),
    ErrorKind.TIMEOUT: (504, "upstream_error", "upstream_timeout"),
    ErrorKind.RETIRED: (503, "upstream_error", "model_retired"),
    ErrorKind.CONTEXT_TOO_LONG: (400, "invalid_request_error", "context_length_exceeded"),
    ErrorKind.CONTENT_POLICY: (400, "invalid_request_error", "content_policy_violation"),
    ErrorKind.BAD_REQUEST: (400, "invalid_request_error", "invalid_request"),
    ErrorKind.AUTH: (502, "upstream_error", "upstream_auth_failed"),
}


class GatewayError(Exception):
    """Base of every error the gateway answers with; renders OpenAI's error shape."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PolicyDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "policy_denied"


class RouteNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class NoEligibleDeployment(GatewayError):
    status = 503
    type = "server_error"
    code = "no_eligible_deployment"


class LedgerUnavailable(GatewayError):
    """The request's ledger row could not be spooled (a full or failing disk). The answer is withheld, so no
    request is ever answered without its row; what the call cost is still counted in budgets and metrics."""

    status = 503
    type = "server_error"
    code = "ledger_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "the gateway could not record this request in its ledger (its disk is full or failing), "
            "so it does not answer it; retry later",
            headers={"retry-after": "5"},
        )


class UpstreamError(GatewayError):
    """One provider call failed. `retry_after` is in seconds when the upstream said so."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        client_status, error_type, code = _CLIENT_STATUS[kind]
        super().__init__(message, code=code)
        self.kind = kind
        self.upstream_status = status
        self.retry_after = retry_after
        self.status = client_status
        self.type = error_type


class AllAttemptsFailed(GatewayError):
    """Fallback ran out of candidates. The client status follows the most telling failure."""

    def __init__(self, last: UpstreamError, attempts: int, tried: list[str]) -> None:
        super().__init__(
            f"all {attempts} attempt(s) failed across {', '.join(tried) or 'no deployment'}; "
            f"last error ({last.kind}): {last.message}",
            code=last.code,
        )
        self.last = last
        self.attempts = attempts
        self.status = last.status
        self.type = last.type
        if last.kind is ErrorKind.RATE_LIMITED and last.retry_after is not None:
            self.headers["retry-after"] = str(max(1, round(last.retry_after)))
