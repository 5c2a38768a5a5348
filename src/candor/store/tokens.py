"""Tokens: signed pagination tokens (NextToken) and idempotency-token responses.

:class:`TokensPart` is one part of :class:`candor.store.Store`; ``_token_key`` is the
database's own secret (``settings.token_key``), so a token is valid only for the database that
issued it, and a forged or edited one is refused with a typed error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from sqlalchemy import Connection, select

from candor.config import OPERATOR_ORG
from candor.errors import InvalidPaginationToken
from candor.store.database import utcnow
from candor.store.schema import idempotency_tokens as T_tokens


class TokensPart:
    """Pagination tokens (HMAC-signed) and remembered responses for idempotency tokens."""

    _token_key: bytes

    def idempotent_response(self, conn: Connection, collection_id: str, operation: str,
                            token: str, request_hash: str, *,
                            org: str = OPERATOR_ORG) -> dict | None | bool:
        """The stored response for a token of ``org``'s collection (dict), ``None`` if the
        token is new, or ``False`` if the token was used with different parameters."""
        row = conn.execute(select(T_tokens).where(
            T_tokens.c.owner_org == org,
            T_tokens.c.collection_id == collection_id,
            T_tokens.c.operation == operation,
            T_tokens.c.token == token)).first()
        if row is None:
            return None
        return row.response if row.request_hash == request_hash else False

    def remember_response(self, conn: Connection, collection_id: str, operation: str, token: str,
                          request_hash: str, response: dict, *, org: str = OPERATOR_ORG) -> None:
        conn.execute(T_tokens.insert().values(
            owner_org=org, collection_id=collection_id, operation=operation, token=token,
            request_hash=request_hash, response=response, created_at=utcnow()))

    def make_token(self, scope: str, position) -> str:
        """A NextToken that only this database issues: payload + HMAC (forgeries are refused)."""
        payload = base64.urlsafe_b64encode(json.dumps([scope, position]).encode()).decode()
        return f"{payload}.{self._mac(payload)}"

    def read_token(self, token: str, scope: str):
        """The position a NextToken carries, or InvalidPaginationToken."""
        try:
            payload, mac = token.rsplit(".", 1)
            if not hmac.compare_digest(mac, self._mac(payload)):
                raise ValueError("bad signature")
            got_scope, position = json.loads(base64.urlsafe_b64decode(payload.encode()))
            if got_scope != scope:
                raise ValueError("token from another request")
        except (ValueError, TypeError, UnicodeError) as exc:
            raise InvalidPaginationToken("Invalid pagination token: it was not issued for "
                                         "this request") from exc
        return position

    def _mac(self, payload: str) -> str:
        return hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
