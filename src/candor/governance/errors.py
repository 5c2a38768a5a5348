"""The audit ledger's errors (a module of their own so the encoding and the ledger share them)."""

from __future__ import annotations

from candor.errors import CandorError


class AuditUnavailable(CandorError):
    """The record could not be written, so the operation is refused: no unaudited work."""

    code = "InternalServerError"
    http_status = 500


class UnrecordableValue(AuditUnavailable):
    """A value the ledger cannot encode one way (NaN, an infinity, not valid Unicode): the call
    is refused as an invalid parameter (400), and, being an AuditUnavailable, undone like any
    call whose record could not be written."""

    code = "InvalidParameterException"
    http_status = 400
