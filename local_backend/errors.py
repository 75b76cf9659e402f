"""Errors that map to OpenAI-shaped JSON bodies: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import math


class APIError(Exception):
    """An error meant for the client; carries its HTTP status and OpenAI ``type``/``code``."""

    status_code = 500
    error_type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> dict[str, object]:
        """The JSON body in OpenAI's error shape."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """Extra response headers (none by default)."""
        return {}


class InvalidRequest(APIError):
    """The request body is malformed or asks for something out of range."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request_error"


class ModelNotFound(APIError):
    """No declared model has the requested name, or it has another modality than the endpoint."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class ModelUnavailable(APIError):
    """The model is declared but cannot be loaded (weights missing offline, bad files, ...)."""

    status_code = 503
    error_type = "server_error"
    code = "model_unavailable"


class Overloaded(APIError):
    """The model's queue is full; the client should retry after ``retry_after_s``."""

    status_code = 503
    error_type = "server_error"
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class ShuttingDown(APIError):
    """The server is stopping and will not start this request."""

    status_code = 503
    error_type = "server_error"
    code = "shutting_down"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class InferenceFailed(APIError):
    """The model raised while running this request; the reason is reported, not a traceback."""

    status_code = 500
    error_type = "server_error"
    code = "inference_failed"
