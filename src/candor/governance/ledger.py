"""The tamper-evident audit ledger: one hash-chained record per call, in ``audit_records``.

Each record's ``hash`` is SHA-256 over the canonical encoding of its fields
(:mod:`candor.governance.canonical`), which include its ``seq`` and the previous record's hash
(``prev_hash``). Editing a record breaks its own hash; deleting, inserting or reordering breaks
the next link (or the sequence); :meth:`Ledger.verify` reports every such break. Deleting the
newest records leaves a shorter chain that is still consistent; an *anchor* (the head's seq and
hash, kept outside the database and updated on every append) catches that too. Rewriting the
chain and the anchor together is caught only by signed checkpoints
(:mod:`candor.governance.checkpoints`).

The module is long (about 450 lines) on purpose: appending (alone, in a group commit, or inside
``candor index``'s transactions), verifying and reading share one record encoding and one anchor,
and keeping them together keeps that one invariant in one place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import String, Table, and_, cast, func, insert, or_, select, true
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from candor.errors import (
    AuditServiceUnavailable,
    AuditUnavailable,
    ServiceUnavailable,
    UnrecordableValue,
)
from candor.governance.canonical import canonical, hash_matches, record_hash
from candor.governance.canonical import value as canonical_value
from candor.store.schema import audit_records

log = logging.getLogger(__name__)

GENESIS = "0" * 64

# Fields a caller may give; seq, prev_hash and hash are the ledger's own.
RECORD_FIELDS = ("ts", "request_id", "principal", "org", "category", "operation", "collection",
                 "image_sha256", "faces_found", "matches", "threshold", "decision", "rule",
                 "scoring")
DECISIONS = ("allow", "deny", "failed", "erasure", "purge", "checkpoint")
ANCHOR_FILE = "ledger.head"

__all__ = ["GENESIS", "DECISIONS", "AuditUnavailable", "UnrecordableValue", "Ledger",
           "VerifyResult", "Break", "canonical", "record_hash", "iso"]


def iso(at: datetime | None = None) -> str:
    """Fixed-width UTC timestamp (``2020-06-10T12:00:00.000000Z``): sorts as text."""
    at = at or datetime.now(timezone.utc)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).replace(tzinfo=None).isoformat(
        timespec="microseconds") + "Z"


def _no_nul(value: Any) -> Any:
    """A string as the ledger stores and searches it: NUL as U+FFFD (see :func:`_normalise`)."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def _normalise(record: dict[str, Any]) -> dict[str, Any]:
    """The values exactly as the database will give them back: canonical numbers (no -0.0, no
    NaN), a float threshold, an int faces_found, JSON-shaped lists and objects. A NUL character
    in a text column becomes U+FFFD on every store: PostgreSQL's text cannot hold NUL (the append
    failed there, refusing the call), and a chain must read the same on either store."""
    out = {k: _no_nul(canonical_value(v)) for k, v in record.items()}
    try:
        if out.get("threshold") is not None:
            out["threshold"] = float(out["threshold"])
        if out.get("faces_found") is not None:
            out["faces_found"] = int(out["faces_found"])
            if not -2 ** 63 <= out["faces_found"] < 2 ** 63:  # an INTEGER column's range
                raise OverflowError("faces_found out of range")
    except (TypeError, ValueError, OverflowError) as exc:
        raise UnrecordableValue(f"audit record not recordable: {exc}") from exc
    return out


@dataclass(frozen=True)
class Break:
    """One problem :meth:`Ledger.verify` found, at record ``seq`` (None: not at one record)."""

    seq: int | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "problem": self.problem}


@dataclass(frozen=True)
class VerifyResult:
    """What :meth:`Ledger.verify` found: ``ok``, or every problem (``problems``); ``broken_seq``
    and ``problem`` are the first one, for callers that only want to know where it starts."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str = ""
    problems: list[Break] = field(default_factory=list)
    #: things that are not breaks but limit what was proved (e.g. records after the last
    #: signed checkpoint are covered only by the chain and the anchor)
    notes: list[str] = field(default_factory=list)
    #: the last checkpoint verified against a public key, when one was given
    checkpoint: dict[str, Any] | None = None

    @classmethod
    def of(cls, checked: int, head_seq: int, head_hash: str, problems: list[Break],
           notes: list[str] | None = None,
           checkpoint: dict[str, Any] | None = None) -> VerifyResult:
        problems = sorted(problems, key=lambda b: (b.seq is None, b.seq or 0))  # stable
        first = problems[0] if problems else None
        return cls(not problems, checked, head_seq, head_hash,
                   first.seq if first else None, first.problem if first else "",
                   list(problems), list(notes or []), checkpoint)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "broken_seq": self.broken_seq,
                "problem": self.problem or None,
                "problems": [p.to_dict() for p in self.problems], "notes": list(self.notes),
                "checkpoint": self.checkpoint}

    def __str__(self) -> str:
        if self.ok:
            return (f"ok: {self.checked} records, chain intact, "
                    f"head {self.head_seq} {self.head_hash}")
        return (f"BROKEN at record {self.broken_seq}: {self.problem} ({self.checked} checked, "
                f"{len(self.problems)} problem(s))")


class Ledger:
    """Append, verify and read the audit chain stored in ``table`` through ``engine``."""

    def __init__(self, engine: Engine, table: Table = audit_records,
                 anchor_path: str | os.PathLike | None = None, retries: int = 20,
                 writer: Engine | None = None):
        self.engine = engine
        self.writer = writer or engine  # appends go here (the store's BEGIN IMMEDIATE engine)
        self.table = table
        self.anchor_path = Path(anchor_path) if anchor_path else None
        self.retries = retries
        self._lock = threading.Lock()
        self._columns = set(table.c.keys())
        self._memo_key = f"ledger-head:{table.fullname}"  # in a group commit's memo
        # built once: every audited call appends (a statement built per call costs Python
        # time under the GIL on every request)
        self._insert = insert(table)
        self._head = select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)
        self._anchor_fd: int | None = None
        self._anchor_lock = threading.Lock()
        self._anchored = 0
        #: the store's Database, whose group commit appends share when it is on
        self.database = None

    @classmethod
    def for_store(cls, store: Any, anchor: bool = True) -> Ledger:
        """The ledger of a :class:`candor.store.Store`, anchored in its data dir."""
        anchor_path = Path(store.data_dir) / ANCHOR_FILE if anchor else None
        ledger = cls(store.engine, writer=getattr(store, "writer", None), anchor_path=anchor_path)
        ledger.database = getattr(store, "db", None)
        return ledger

    # -- writing -------------------------------------------------------------------------------

    def append(self, **fields: Any) -> dict[str, Any]:
        """Write one record and return it with seq and hashes; raise AuditUnavailable on failure.

        The next seq is last+1, inserted explicitly: two writers that read the same head collide
        on the primary key, and the loser retries on the new head, so the chain never forks.
        """
        body = self.prepare(**fields)
        last_exc: Exception | None = None
        # shared commits (candor serve): appends take turns in the group's transaction, which
        # reads the head each time, so they need no lock of their own across the commit wait
        with self._lock if self._group() is None else nullcontext():
            for attempt in range(self.retries):
                try:
                    row = self._append_once(body)
                # lost a race, locked, or (PostgreSQL) the server restarting
                except (IntegrityError, OperationalError, ServiceUnavailable) as exc:
                    last_exc = exc
                    time.sleep(min(0.005 * (2 ** attempt), 0.25))
                    continue
                except SQLAlchemyError as exc:
                    last_exc = exc
                    break
                group = self._group()
                if group is None or not group.after_this_commit(partial(self.anchor, row)):
                    self.anchor(row)  # committed already (inside a larger write: once it is)
                return row
        log.error("audit ledger write failed: %s", last_exc)
        if isinstance(last_exc, ServiceUnavailable):  # retryable: 503, still undone
            raise AuditServiceUnavailable("the audit ledger's database is unavailable, so the "
                                          "operation was refused; retry") from last_exc
        raise AuditUnavailable("the audit ledger cannot be written, so the operation was "
                               "refused (no unaudited biometric work)") from last_exc

    def prepare(self, **fields: Any) -> dict[str, Any]:
        """A record's fields checked and normalised, ready for :meth:`append_within`."""
        unknown = set(fields) - set(RECORD_FIELDS) - self._columns
        if unknown:
            raise ValueError(f"unknown audit fields: {sorted(unknown)}")
        if not fields.get("operation") or fields.get("decision") not in DECISIONS:
            raise ValueError("an audit record needs an operation and a decision in "
                             f"{DECISIONS}, got {fields.get('decision')!r}")
        ts = fields.get("ts")
        fields["ts"] = iso(ts) if isinstance(ts, datetime) or ts is None else ts
        fields.setdefault("request_id", None)
        fields["request_id"] = fields["request_id"] or str(uuid.uuid4())
        body = _normalise({k: v for k, v in fields.items() if k in self._columns})
        canonical(body)  # refuses (UnrecordableValue) what cannot be encoded one way
        return body

    def _group(self):
        """The store's group commit when it is on (:mod:`candor.store.group_commit`)."""
        return getattr(self.database, "group", None)

    def _append_once(self, body: dict[str, Any]) -> dict[str, Any]:
        group = self._group()
        if group is None:
            with self.writer.begin() as conn:
                return self.append_within(conn, [body])[0]
        # shared commits: the head the previous append of the same group wrote is still the
        # head (the group holds the database's write lock until it commits), so it is not
        # read again; the memo is emptied on any rollback. Another writer's record in the same
        # transaction would collide on seq: the retry rolls back and reads the head afresh.
        memo = group.memo
        with group.write() as conn:
            row = self.append_within(conn, [body], head=memo.get(self._memo_key))[0]
            memo[self._memo_key] = (row["seq"], row["hash"])
            return row

    def append_within(self, conn: Any, bodies: list[dict[str, Any]],
                      head: tuple[int, str] | None = None) -> list[dict[str, Any]]:
        """Chain ``bodies`` (from :meth:`prepare`) onto the head inside ``conn``'s write
        transaction, which the caller commits: a group of calls (``candor index``) is recorded
        in the same transaction as its faces, so both are durable or neither. The caller
        retries the transaction on IntegrityError (another writer took the seq) and passes
        the last row to :meth:`anchor` once committed."""
        if head is None:  # ``head``: (seq, hash) already known in this transaction
            head = conn.execute(self._head).first()
        seq, prev = (head[0], head[1]) if head else (0, GENESIS)
        rows = []
        for body in bodies:
            seq += 1
            row = {**{k: None for k in self._columns}, **body, "seq": seq, "prev_hash": prev}
            row["hash"] = prev = record_hash(row)
            rows.append(row)
        if rows:
            conn.execute(self._insert, rows)
        return rows

    def anchor(self, row: dict[str, Any]) -> None:
        """Move the anchor to ``row``, a committed record (the newest one written here)."""
        self._write_anchor(row["seq"], row["hash"])

    def _write_anchor(self, seq: int, digest: str) -> None:
        """Overwrite the anchor in place: one fixed-width pwrite, no rename, no fsync, so it
        costs microseconds per call. If several processes race, the anchor may name a slightly
        older head, which is still a record the chain must contain."""
        if self.anchor_path is None:
            return
        line = f"{seq:020d} {digest}\n".encode("ascii")
        with self._anchor_lock:  # appends of one group finish in any order: keep the newest
            if seq < self._anchored and self._group() is not None:
                return
            self._anchored = seq
            self._pwrite_anchor(line)

    def _pwrite_anchor(self, line: bytes) -> None:
        try:
            if self._anchor_fd is None:
                self._anchor_fd = os.open(self.anchor_path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.pwrite(self._anchor_fd, line, 0)
        except OSError as exc:  # the record itself is written; the anchor is a second witness
            log.warning("could not update the ledger anchor %s: %s", self.anchor_path, exc)

    def read_anchor(self) -> tuple[int, str] | None:
        """The anchored head (seq, hash), or None when there is no anchor file yet."""
        if self.anchor_path is None or not self.anchor_path.exists():
            return None
        parts = self.anchor_path.read_text(encoding="ascii").split()
        if len(parts) != 2 or not parts[0].isdigit() or len(parts[1]) != 64:
            raise ValueError(f"the ledger anchor {self.anchor_path} is unreadable: {parts!r}")
        return int(parts[0]), parts[1]

    def close(self) -> None:
        if self._anchor_fd is not None:
            os.close(self._anchor_fd)
            self._anchor_fd = None

    # -- checking ------------------------------------------------------------------------------

    def verify(self, anchor: tuple[int, str] | None = None, batch: int = 1000,
               require_anchor: bool = True) -> VerifyResult:
        """Walk the whole chain and report every problem, each at its record.

        After a broken record the walk re-syncs on the record's stored hash, so an edit further
        on is still found (one edit is reported once, not at every record after it).
        ``anchor`` (seq, hash) is a head recorded earlier (by default the anchor file): the
        chain must still contain that record unchanged, which catches deletion of the newest
        records and a rewrite. A ledger with an anchor path, records and no anchor file is
        broken unless ``require_anchor`` is False (``candor audit verify --no-anchor``).
        """
        t = self.table
        problems: list[Break] = []
        unreadable = False
        if anchor is None:
            try:
                anchor = self.read_anchor()
            except ValueError as exc:  # an edited anchor is a finding, not a reason to stop
                problems.append(Break(None, f"{exc}: edited?"))
                unreadable = True
        prev_hash, expect_seq, checked, last_seq = GENESIS, 1, 0, 0
        anchor_seen = anchor is None
        with self.engine.connect() as conn:
            while True:
                rows = conn.execute(select(t).where(t.c.seq >= expect_seq)
                                    .order_by(t.c.seq).limit(batch)).mappings().all()
                if not rows:
                    break
                for r in rows:
                    rec = dict(r)
                    seq = rec["seq"]
                    if seq != expect_seq:
                        gone = (f"record {expect_seq}" if seq == expect_seq + 1
                                else f"records {expect_seq}-{seq - 1}")
                        problems.append(Break(seq, f"{gone} {'is' if seq == expect_seq + 1 else 'are'}"
                                              f" missing (the sequence jumps from "
                                              f"{expect_seq - 1} to {seq}): deleted"))
                    elif rec["prev_hash"] != prev_hash:
                        problems.append(Break(seq, f"its prev_hash does not match record "
                                                   f"{seq - 1}'s hash: a record was edited, "
                                                   "inserted, deleted or moved here"))
                    if not hash_matches(rec):
                        problems.append(Break(seq, "its contents do not match its hash: edited"))
                    if anchor is not None and seq == anchor[0]:
                        anchor_seen = True
                        if rec["hash"] != anchor[1]:
                            problems.append(Break(seq, "it differs from the anchored head: the "
                                                       "chain was rewritten"))
                    # re-sync on what is stored, so later problems are found where they are
                    prev_hash, expect_seq, last_seq = rec["hash"], seq + 1, seq
                    checked += 1
        if not anchor_seen:
            problems.append(Break(anchor[0], f"the chain ends at {last_seq} but the anchor "
                                             f"records record {anchor[0]}: newest records "
                                             "deleted"))
        if (anchor is None and not unreadable and require_anchor
                and self.anchor_path is not None and checked > 0):
            problems.append(Break(None, f"the anchor file {self.anchor_path} is missing (it is "
                                        "written with every record): deleted? (--no-anchor to "
                                        "check the chain alone)"))
        return VerifyResult.of(checked, last_seq, prev_hash, problems)

    def head(self) -> tuple[int, str] | None:
        """The newest record's (seq, hash): publish it to let others check the chain later."""
        t = self.table
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).first()
        return (row[0], row[1]) if row else None

    # -- reading -------------------------------------------------------------------------------

    def tail(self, n: int = 20) -> list[dict[str, Any]]:
        """The newest ``n`` records, oldest first."""
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.seq.desc()).limit(n)).mappings().all()
        return [dict(r) for r in reversed(rows)]

    def _where(self, since: datetime | str | None = None, until: datetime | str | None = None,
               image_sha256: str | None = None, face_id: str | None = None, **eq: Any):
        t = self.table
        conds = []
        # searched as stored (a NUL would be a database error on PostgreSQL: a 500)
        since, until, image_sha256, face_id = map(_no_nul, (since, until, image_sha256, face_id))
        eq = {k: _no_nul(v) for k, v in eq.items()}
        for key, value in eq.items():
            if value is None:
                continue
            if key not in self._columns:
                raise ValueError(f"cannot search audit records by {key!r}")
            conds.append(t.c[key] == value)
        if since is not None:
            conds.append(t.c.ts >= (iso(since) if isinstance(since, datetime) else since))
        if until is not None:
            conds.append(t.c.ts < (iso(until) if isinstance(until, datetime) else until))
        if image_sha256:
            conds.append(cast(t.c.image_sha256, String).like(f'%"{image_sha256.lower()}"%'))
        if face_id:  # a FaceId as recorded, or a UserId by its SHA-256 (operations.user_digest)
            digest = hashlib.sha256(face_id.encode("utf-8")).hexdigest()
            conds.append(or_(cast(t.c.matches, String).like(f'%"{face_id}"%'),
                             cast(t.c.matches, String).like(f'%"{digest}"%')))
        return and_(true(), *conds)

    def search(self, limit: int | None = 100, **filters: Any) -> list[dict[str, Any]]:
        """Records matching every filter given (column equality; ``since``/``until`` on ts;
        ``image_sha256`` and ``face_id`` within their JSON lists), oldest first."""
        t = self.table
        q = select(t).where(self._where(**filters)).order_by(t.c.seq)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def iter_records(self, batch: int = 1000, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every matching record, oldest first, read in batches (for reports over long periods)."""
        t = self.table
        after = 0
        while True:
            q = (select(t).where(self._where(**filters), t.c.seq > after)
                 .order_by(t.c.seq).limit(batch))
            with self.engine.connect() as conn:
                rows = conn.execute(q).mappings().all()
            if not rows:
                return
            for r in rows:
                yield dict(r)
            after = rows[-1]["seq"]

    def count(self, **filters: Any) -> int:
        t = self.table
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(t)
                                .where(self._where(**filters))).scalar_one()

    def usage(self, rule: str, org: str, since: datetime) -> int:
        """Calls ``org`` made under ``rule`` since ``since`` (the policy's daily caps). A cap
        that cannot be counted refuses the call (AuditUnavailable), rather than waving it on."""
        t = self.table
        try:
            with self.engine.connect() as conn:
                return conn.execute(
                    select(func.count()).select_from(t).where(
                        t.c.rule == rule, t.c.org == org, t.c.ts >= iso(since),
                        t.c.decision.in_(("allow", "failed")))).scalar_one()
        except SQLAlchemyError as exc:
            raise AuditUnavailable("the audit ledger cannot be read to check a daily cap, so "
                                   "the operation was refused") from exc
