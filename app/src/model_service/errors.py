"""The one error shape of the service: ``{"error": code, "detail": what to fix}``."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered to the client with an HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


def payload_too_large(limit: int) -> ApiError:
    """The answer to a body over the limit, whether waitress or Flask notices it first."""
    return ApiError(413, "payload_too_large", f"the body is larger than the limit of {limit} bytes")


class ArtifactError(Exception):
    """A model artifact that cannot be served; the message says what is wrong with it."""
