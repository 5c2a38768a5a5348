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


class ServiceUnavailable(CandorError):
    """A dependency is down for a moment (the PostgreSQL server restarting, a connection lost):
    retry the call. boto3 retries 503 by itself."""

    code = "ServiceUnavailableException"
    http_status = 503


class InternalServerError(CandorError):
    """A real bug or an unavailable dependency; boto3 retries it (HTTP 500)."""

    code = "InternalServerError"
    http_status = 500


class Throttling(CandorError):
    """Too many requests in progress: refused before the body is read."""

    code = "ThrottlingException"


# ------------------------------------------------------------------ the wire protocol


class SerializationException(CandorError):
    """The body is not JSON, or nested deeper than the protocol allows (AWS's name for it)."""

    code = "SerializationException"


class UnknownOperation(CandorError):
    """An X-Amz-Target, path or method that names no operation candor implements."""

    code = "UnknownOperationException"


class InvalidS3Object(CandorError):
    """An Image.S3Object that cannot be read (no endpoint, missing object, too large)."""

    code = "InvalidS3ObjectException"


# ------------------------------------------------------------------ SigV4 authentication


class AuthError(CandorError):
    """Base of the authentication errors; nothing runs for a request that raises one."""


class MissingAuthenticationToken(AuthError):
    code = "MissingAuthenticationTokenException"
    http_status = 400


class IncompleteSignature(AuthError):
    code = "IncompleteSignatureException"
    http_status = 400


class UnrecognizedClient(AuthError):
    code = "UnrecognizedClientException"
    http_status = 400


class InvalidSignature(AuthError):
    code = "InvalidSignatureException"
    http_status = 403


# ------------------------------------------------------------------ governance and models


class AuditUnavailable(InternalServerError):
    """The record could not be written, so the operation is refused: no unaudited work."""


class AuditServiceUnavailable(AuditUnavailable):
    """The ledger's database is unreachable for a moment (PostgreSQL restarting): the call is
    refused and undone like any unaudited one, but as retryable (503), not as a bug."""

    code = "ServiceUnavailableException"
    http_status = 503


class UnrecordableValue(AuditUnavailable):
    """A value the ledger cannot encode one way (NaN, an infinity, not valid Unicode): the call
    is refused as an invalid parameter (400), and, being an AuditUnavailable, undone like any
    call whose record could not be written."""

    code = "InvalidParameterException"
    http_status = 400


class ModelUnavailable(InternalServerError, RuntimeError):
    """A model file candor needs is not installed (an install problem, not the caller's)."""


class DlibFormatError(InternalServerError, ValueError):
    """A dlib model file that cannot be parsed (corrupt, or a network candor does not know)."""


class PolicyError(InvalidParameter):
    """A policy file that cannot be used; the message names file and line of each problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid policy:\n  " + "\n  ".join(problems))


# ------------------------------------------------------------------ stored video


class VideoTooLarge(CandorError):
    """A video over candor's documented limits (bytes, duration, frame size)."""

    code = "VideoTooLargeException"


class InvalidVideo(InvalidParameter):
    """A file that is not a video candor can decode, or is truncated; ``reason`` is a stable
    word (NOT_A_VIDEO, NO_VIDEO_STREAM, TRUNCATED, TOO_SMALL ...) for a job's StatusMessage."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
