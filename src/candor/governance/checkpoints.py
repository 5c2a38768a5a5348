"""Signed checkpoints of the audit chain: Ed25519 signatures over (seq, hash, time) of its head.

The hash chain proves that records were not edited *unless the editor re-chained everything
after the edit*; the anchor file proves it unless the editor rewrote the anchor too. Someone
with the database and the data dir can do both. A checkpoint is a signature, by a key kept
outside the data dir, over the head's seq and hash: a rewritten chain cannot carry a valid
signature for a different hash at a seq that was already signed, so :func:`verify_signed`
with the public key proves that no record up to the last checkpoint was changed, removed or
re-chained.

Checkpoints are kept twice: as JSON lines appended to ``ledger.checkpoints`` in the data dir
(and to any copy the operator ships elsewhere), and as a record in the chain itself
(operation ``Checkpoint``, decision ``checkpoint``, the signed statement in ``details``), which
signs the head before it. Neither place needs to be trusted: only signatures that verify
against the public key count.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select

from candor.errors import CandorError
from candor.governance.ledger import Break, Ledger, VerifyResult, iso

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "ledger.checkpoints"
OPERATION = "Checkpoint"
DOMAIN = b"candor-ledger-checkpoint-v1\n"  # signatures over anything else never verify here
PRIVATE_NAME, PUBLIC_NAME = "ledger-signing.key", "ledger-signing.pub"


class SigningKeyError(CandorError):
    """A signing or public key that cannot be made, read or used."""

    code = "InvalidParameterException"


# -- keys ---------------------------------------------------------------------------------------

def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def keygen(out: Path, data_dir: Path, force: bool = False) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: the private key (PEM, mode 0600) at ``out`` (or
    ``out/ledger-signing.key`` when ``out`` is a directory) and the public key beside it
    (``.pub``). Refused inside ``data_dir``: whoever can rewrite the ledger must not also hold
    the key that vouches for it."""
    out = Path(out).expanduser()
    private = out / PRIVATE_NAME if out.is_dir() else out
    public = private.with_name(PUBLIC_NAME) if out.is_dir() else Path(f"{private}.pub")
    if _inside(private, data_dir) or _inside(public, data_dir):
        raise SigningKeyError(f"refusing to write the signing key inside the data dir {data_dir}: "
                        "keep it where the operator of the database cannot read it")
    for p in (private, public):
        if p.exists() and not force:
            raise SigningKeyError(f"{p} exists (--force to overwrite)")
    private.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if force and private.exists():
        private.unlink()
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def load_private_key(path: str | os.PathLike,
                     data_dir: str | os.PathLike | None = None) -> Ed25519PrivateKey:
    """The signing key at ``path``; refused when it lies inside ``data_dir`` (see keygen)."""
    if data_dir is not None and _inside(Path(path).expanduser(), Path(data_dir)):
        raise SigningKeyError(f"the signing key {path} is inside the data dir {data_dir}: "
                              "move it out (whoever can rewrite the ledger must not hold it)")
    try:
        key = serialization.load_pem_private_key(Path(path).expanduser().read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: str | os.PathLike) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).expanduser().read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot read the public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


# -- statements ---------------------------------------------------------------------------------

def _message(seq: int, digest: str, ts: str, kid: str) -> bytes:
    body = {"seq": seq, "hash": digest, "ts": ts, "key_id": kid}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the chain's record ``seq`` had hash ``hash`` at time ``ts``."""

    seq: int
    hash: str
    ts: str
    key_id: str
    sig: str  # base64 Ed25519 signature over DOMAIN + the canonical JSON of the other fields

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "ts": self.ts, "key_id": self.key_id,
                "sig": self.sig}

    @classmethod
    def from_dict(cls, d: Any) -> Checkpoint | None:
        """The checkpoint in ``d``, or None when it is not shaped like one."""
        if not isinstance(d, dict):
            return None
        try:
            cp = cls(d["seq"], d["hash"], d["ts"], d["key_id"], d["sig"])
        except KeyError:
            return None
        ok = (isinstance(cp.seq, int) and not isinstance(cp.seq, bool)
              and all(isinstance(x, str) for x in (cp.hash, cp.ts, cp.key_id, cp.sig)))
        return cp if ok else None

    def valid_for(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(base64.b64decode(self.sig, validate=True),
                          _message(self.seq, self.hash, self.ts, self.key_id))
        except (InvalidSignature, ValueError):
            return False
        return self.key_id == key_id(public)


def sign(key: Ed25519PrivateKey, seq: int, digest: str, ts: str | None = None) -> Checkpoint:
    ts = ts or iso()
    kid = key_id(key.public_key())
    sig = key.sign(_message(seq, digest, ts, kid))
    return Checkpoint(seq, digest, ts, kid, base64.b64encode(sig).decode("ascii"))


def checkpoint_path(ledger: Ledger) -> Path | None:
    """``ledger.checkpoints`` beside the ledger's anchor file (in the data dir)."""
    return ledger.anchor_path.with_name(CHECKPOINT_FILE) if ledger.anchor_path else None


def sign_head(ledger: Ledger, key: Ed25519PrivateKey, path: Path | None = None,
              force: bool = False) -> Checkpoint | None:
    """Sign the chain's head, append the checkpoint to the file and to the chain. Nothing is
    signed (None) for an empty chain, or when nothing but the last checkpoint was written since
    it was made (unless ``force``), so an idle server does not grow the ledger."""
    head = ledger.head()
    if head is None:
        return None
    if not force:
        last = ledger.tail(1)[0]
        d = last.get("details") or {}
        if (last["operation"] == OPERATION and isinstance(d, dict)
                and d.get("seq") == head[0] - 1):
            return None
    cp = sign(key, *head)
    path = path or checkpoint_path(ledger)
    if path is not None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with os.fdopen(fd, "a", encoding="ascii") as f:
            f.write(json.dumps(cp.to_dict(), sort_keys=True) + "\n")
    ledger.append(operation=OPERATION, decision="checkpoint", principal="ledger-signer",
                  details=cp.to_dict() if "details" in ledger.table.c else None)
    return cp


def read_file(path: Path) -> tuple[list[Checkpoint], list[Break]]:
    """The checkpoints in a JSON-lines file, and a problem per line that is not one."""
    found: list[Checkpoint] = []
    bad: list[Break] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return found, bad
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cp = Checkpoint.from_dict(json.loads(line))
        except (ValueError, RecursionError):
            cp = None
        if cp is None:
            bad.append(Break(None, f"{path} line {n} is not a checkpoint"))
        else:
            found.append(cp)
    return found, bad


def in_chain(ledger: Ledger) -> list[Checkpoint]:
    """The checkpoints recorded in the chain itself."""
    out = []
    for rec in ledger.iter_records(operation=OPERATION, decision="checkpoint"):
        cp = Checkpoint.from_dict(rec.get("details"))
        if cp is not None:
            out.append(cp)
    return out


def verify_signed(ledger: Ledger, result: VerifyResult, public: Ed25519PublicKey,
                  files: list[Path] | None = None) -> VerifyResult:
    """``result`` (of :meth:`Ledger.verify`) with what the signed checkpoints prove added.

    Every checkpoint found (files and chain) must be signed by ``public``; every signed one must
    name a record that is still there with that hash. With the chain walk, that proves records
    1..seq unchanged for the last signed seq. Records after it are noted as covered only by the
    chain and the anchor; a chain with records and no signed checkpoint at all is a failure.
    """
    files = files if files is not None else [p for p in [checkpoint_path(ledger)] if p]
    problems = list(result.problems)
    notes = list(result.notes)
    found: dict[tuple[int, str, str], Checkpoint] = {}
    for f in files:
        cps, bad = read_file(f)
        problems += bad
        found.update({(c.seq, c.hash, c.sig): c for c in cps})
    found.update({(c.seq, c.hash, c.sig): c for c in in_chain(ledger)})
    kid = key_id(public)
    signed: list[Checkpoint] = []
    for cp in sorted(found.values(), key=lambda c: c.seq):
        if cp.valid_for(public):
            signed.append(cp)
        else:
            problems.append(Break(cp.seq, f"a checkpoint for record {cp.seq} (key {cp.key_id}) "
                                          f"is not signed by this key ({kid}): forged, or "
                                          "signed by another key"))
    stored = _hashes(ledger, sorted({c.seq for c in signed}))
    for cp in signed:
        have = stored.get(cp.seq)
        if have is None:
            problems.append(Break(cp.seq, f"record {cp.seq}, signed at {cp.ts}, is missing: "
                                          "records were removed"))
        elif have != cp.hash:
            problems.append(Break(cp.seq, f"record {cp.seq} differs from the one signed at "
                                          f"{cp.ts}: the chain was rewritten"))
    last = signed[-1] if signed else None
    if last is None and result.checked:
        problems.append(Break(None, f"no checkpoint signed by key {kid} was found: nothing "
                                    "proves the chain was not rewritten"))
    elif last is not None and result.head_seq > last.seq:
        span = (f"record {result.head_seq} comes" if result.head_seq == last.seq + 1
                else f"records {last.seq + 1}-{result.head_seq} come")
        notes.append(f"{span} after the last signed checkpoint ({last.seq}, {last.ts}): "
                     "covered only by the chain and the anchor, not by a signature")
    return VerifyResult.of(result.checked, result.head_seq, result.head_hash, problems, notes,
                           last.to_dict() if last else None)


def _hashes(ledger: Ledger, seqs: list[int]) -> dict[int, str]:
    t = ledger.table
    out: dict[int, str] = {}
    with ledger.engine.connect() as conn:
        for i in range(0, len(seqs), 500):
            rows = conn.execute(select(t.c.seq, t.c.hash).where(t.c.seq.in_(seqs[i:i + 500])))
            out.update({r[0]: r[1] for r in rows})
    return out


class CheckpointTimer:
    """Signs the head every ``interval`` seconds in a daemon thread, and once more on
    :meth:`stop` (``candor serve --signing-key``)."""

    def __init__(self, ledger: Ledger, key: Ed25519PrivateKey, interval: float = 300.0,
                 path: Path | None = None):
        self.ledger, self.key, self.interval, self.path = ledger, key, interval, path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="candor-checkpoint", daemon=True)

    def start(self) -> CheckpointTimer:
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the timer and sign the final head (call after the last request is recorded)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sign()

    def _sign(self) -> None:
        try:
            cp = sign_head(self.ledger, self.key, self.path)
            if cp is not None:
                log.info("signed ledger checkpoint at record %d", cp.seq)
        except Exception:  # keep serving; the next round (or stop) signs again
            log.exception("could not sign a ledger checkpoint")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sign()
