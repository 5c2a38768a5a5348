"""Replay protection: a signed request that changes state is accepted once.

SigV4 lets a captured request be sent again for as long as its timestamp is inside the
15-minute clock window; Rekognition accepts such a replay, so a signed DeleteCollection seen
on the wire could delete the collection again after it was re-created. candor goes beyond AWS
here: the signature of every request whose operation mutates (its descriptor in
:mod:`candor.service.operations` says so) is written to the ``seen_signatures`` table with the
moment its window closes, and a second request with the same signature is refused with
InvalidSignatureException. The table lives in the database, so the rule holds across a
restart and across several ``candor serve`` nodes on one database; the primary key makes two
concurrent replays safe (one insert wins). Expired signatures are purged as new ones arrive.
Reads (Describe*, List*, Search*, DetectFaces...) may be repeated, as with AWS.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from candor.api.sigv4 import MAX_SKEW, Verified
from candor.clock import utcnow
from candor.errors import InvalidSignature
from candor.store.schema import seen_signatures

#: expired signatures are purged at most this often per process
PURGE_EVERY = dt.timedelta(minutes=1)

#: built once: every mutating request runs it (building it anew cost ~0.1 ms of Python)
_RECORD = insert(seen_signatures)


class SeenSignatures:
    """The signatures of accepted mutating requests, in the store's database."""

    def __init__(self, store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._purged_at: dt.datetime | None = None

    def accept_once(self, verified: Verified, now: dt.datetime | None = None) -> None:
        """Record ``verified``'s signature, or raise InvalidSignature when it was seen."""
        now = now or utcnow()
        digest = hashlib.sha256(
            f"{verified.access_key_id}\n{verified.signature}".encode()).hexdigest()
        self._purge(now)
        try:
            with self.store.write() as conn:
                conn.execute(_RECORD, {"digest": digest,
                                       "expires_at": verified.signed_at + MAX_SKEW})
        except IntegrityError:
            raise InvalidSignature(
                "Signature already used: candor accepts a signed request that changes state "
                "only once (replay protection); sign each request anew") from None

    def _purge(self, now: dt.datetime) -> None:
        with self._lock:
            if self._purged_at is not None and now - self._purged_at < PURGE_EVERY:
                return
            self._purged_at = now
        with self.store.write() as conn:
            conn.execute(delete(seen_signatures).where(seen_signatures.c.expires_at < now))
