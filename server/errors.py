"""The few errors handlers raise, each with a status, rendered in one place.

    AppError            400 and the JSON shape {"error": {"code", "message", "fields"}}
    ├── BadRequest      400 invalid input; fields names each bad field
    ├── Unauthorized    401 not signed in, or a revoked device
    ├── Forbidden       403 refused, e.g. a cross-site request
    ├── NotFound        404 unknown, or somebody else's (never tell the two apart)
    ├── Conflict        409
    ├── PayloadTooLarge 413
    └── TooManyRequests 429 with Retry-After
"""

from __future__ import annotations


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, fields: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "fields": self.fields}}


class BadRequest(AppError):
    status = 400
    code = "invalid"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"

    def __init__(self, message: str = "Not found.", **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "too_large"


class TooManyRequests(AppError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after
