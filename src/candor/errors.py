"""Typed errors, one per Rekognition exception, so every door (Python, CLI, HTTP) reports the same."""

from __future__ import annotations


class CandorError(Exception):
    """Base of every error candor raises on purpose; ``code`` is Rekognition's exception name."""

    code = "InternalServerError"
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict:
        return {"__type": self.code, "Message": self.message}


class InvalidParameter(CandorError):
    code = "InvalidParameterException"


class InvalidImageFormat(CandorError):
    code = "InvalidImageFormatException"


class ImageTooLarge(CandorError):
    code = "ImageTooLargeException"


class ResourceNotFound(CandorError):
    code = "ResourceNotFoundException"


class ResourceAlreadyExists(CandorError):
    code = "ResourceAlreadyExistsException"


class ResourceInUse(CandorError):
    code = "ResourceInUseException"


class InvalidPaginationToken(CandorError):
    code = "InvalidPaginationTokenException"


class ServiceQuotaExceeded(CandorError):
    code = "ServiceQuotaExceededException"


class LimitExceeded(CandorError):
    code = "LimitExceededException"


class AccessDenied(CandorError):
    code = "AccessDeniedException"


class IdempotentParameterMismatch(CandorError):
    code = "IdempotentParameterMismatchException"


class ConflictError(CandorError):
    code = "ConflictException"


class SchemaTooNew(CandorError):
    """The database was written by a newer candor: refused rather than guessed at."""

    code = "ServiceUnavailableException"
    http_status = 503
