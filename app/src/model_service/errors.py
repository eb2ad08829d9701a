"""The one error shape of the service: ``{"error": code, "detail": what to fix}``."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered to the client with an HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.missing: list[str] = []  # features a refused instance lacked (counted by the drift signals)

    def body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


def internal_error(error: Exception) -> ApiError:
    return ApiError(500, "internal_error", f"unexpected {type(error).__name__}; see the service log")


def not_ready() -> ApiError:
    return ApiError(503, "not_ready", "no model is loaded yet")


class ArtifactError(Exception):
    """A model artifact that cannot be served; the message says what is wrong with it."""
