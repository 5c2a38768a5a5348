"""The database schema: every table candor keeps, in one SQLAlchemy metadata.

Portable SQL only (SQLite today, PostgreSQL later): integer surrogate keys, UUID strings for
the ids users see, embeddings as raw float32 bytes, JSON columns for small structured values.
The tables here describe the *current* schema; :mod:`candor.store.migrations` brings any older
database to it, and a test checks that a freshly migrated database matches these definitions.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

#: dimensions of a face embedding
DIM = 128


class Embedding(TypeDecorator):
    """A face embedding: 128 float32 as raw little-endian bytes on SQLite (searched by the
    FAISS cache), a pgvector ``vector(128)`` on PostgreSQL (searched in the database with an
    HNSW index). Either way the code above sees bytes, so nothing else depends on the engine."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            from pgvector.sqlalchemy import VECTOR

            return dialect.type_descriptor(VECTOR(DIM))
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "postgresql":
            return value
        return np.frombuffer(value, dtype="<f4").astype(np.float32)

    def process_result_value(self, value, dialect):
        if value is None or dialect.name != "postgresql":
            return value
        return np.asarray(value, dtype="<f4").tobytes()


#: a 64-bit key that is SQLite's rowid alias there (so AUTOINCREMENT applies) and BIGINT elsewhere
Key = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

#: the schema versions applied, one row each: a mirror of Alembic's ``alembic_version`` kept for
#: candors from before Alembic, which read only this table (see upgrade.py)
schema_migrations = Table(
    "schema_migrations", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

#: instance-wide settings: the pagination-token key, this database's instance id
settings = Table(
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(1024), nullable=False),
)

collections = Table(
    "collections", metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    # the organisation whose principal created it: collection ids are per organisation, as on
    # AWS they are per account (docs/collections.md, "Tenancy")
    Column("owner_org", String(255), nullable=False),
    Column("collection_id", String(255), nullable=False),
    Column("face_model_version", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("tags", JSON, nullable=False, default=dict),
    # bumped in the same transaction as every change to the collection's faces / users, so an
    # in-memory vector index can tell in one cheap query whether it is stale
    Column("face_generation", BigInteger, nullable=False, default=0),
    Column("user_generation", BigInteger, nullable=False, default=0),
    # for the governance layer's retention purge; NULL = keep until deleted
    Column("retention_days", Integer, nullable=True),
    # keep a small JPEG of each indexed face (face_thumbnails) for human reviewers
    Column("keep_thumbnails", Boolean, nullable=False, default=False, server_default="0"),
    UniqueConstraint("owner_org", "collection_id"),
    sqlite_autoincrement=True,
)

users = Table(
    "users", metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("collection_pk", Key, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # CREATED (no faces) or ACTIVE
    Column("face_count", Integer, nullable=False, default=0),
    # unit mean of the associated faces' embeddings (float32 bytes); NULL while it has none
    Column("embedding", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("collection_pk", "user_id"),
    sqlite_autoincrement=True,
)

faces = Table(
    "faces", metadata,
    # never reused (AUTOINCREMENT): the vector index and pagination tokens refer to it
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("collection_pk", Key, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("face_id", String(36), nullable=False, unique=True),
    Column("image_id", String(36), nullable=False),
    Column("external_image_id", String(255), nullable=True),
    Column("image_sha256", String(64), nullable=True),
    Column("bbox_width", Float, nullable=False),
    Column("bbox_height", Float, nullable=False),
    Column("bbox_left", Float, nullable=False),
    Column("bbox_top", Float, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("embedding", Embedding, nullable=False),  # 128 float32, unit length
    Column("user_pk", Key, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index(None, "collection_pk", "id"),
    Index(None, "collection_pk", "external_image_id"),
    Index(None, "user_pk"),
    # PostgreSQL only: the approximate nearest-neighbour index over inner product (embeddings
    # are unit vectors, so inner product = cosine), searched with ``<#>``
    Index("ix_faces_embedding_hnsw", "embedding", postgresql_using="hnsw",
          postgresql_with={"m": 16, "ef_construction": 64},
          postgresql_ops={"embedding": "vector_ip_ops"}).ddl_if(dialect="postgresql"),
    sqlite_autoincrement=True,
)

#: the operator's celebrity gallery (RecognizeCelebrities): one row per person, with the
#: details the operator published for them (KnownGender only as publicly stated, never inferred)
#: and the unit mean of their photos' embeddings; the gallery's version is the setting
#: ``celebrity_gallery_version``, bumped by every change
celebrities = Table(
    "celebrities", metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("celebrity_id", String(32), nullable=False, unique=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("urls", JSON, nullable=False, default=list),
    Column("known_gender", String(16), nullable=True),
    Column("face_model_version", String(32), nullable=False),
    Column("face_count", Integer, nullable=False),
    Column("template", LargeBinary, nullable=False),  # unit mean of the faces' embeddings
    Column("created_at", DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)

#: each gallery photo's embedding (the photo itself is not kept)
celebrity_faces = Table(
    "celebrity_faces", metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("celebrity_pk", Key, ForeignKey("celebrities.id", ondelete="CASCADE"),
           nullable=False),
    Column("image_sha256", String(64), nullable=True),
    Column("embedding", LargeBinary, nullable=False),
    Index(None, "celebrity_pk"),
    sqlite_autoincrement=True,
)

#: ClientRequestToken idempotency for CreateUser, DeleteUser, AssociateFaces, DisassociateFaces
idempotency_tokens = Table(
    "idempotency_tokens", metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("owner_org", String(255), nullable=False),
    Column("collection_id", String(255), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("token", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("owner_org", "collection_id", "operation", "token"),
)

#: signatures of mutating HTTP requests already accepted, until their SigV4 window closes
#: (logic: candor.api.replay); the primary key makes two concurrent replays safe
seen_signatures = Table(
    "seen_signatures", metadata,
    Column("digest", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

#: access keys issued to organisations (logic: the api/governance layers)
access_keys = Table(
    "access_keys", metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("secret", String(256), nullable=False),
    Column("org", String(255), nullable=False),
    Column("category", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

#: the hash-chained audit ledger (logic: governance). ``ts`` is text (ISO 8601, UTC) so that the
#: hashed form of a record is byte-for-byte what is stored, on every database.
audit_records = Table(
    "audit_records", metadata,
    Column("seq", Key, primary_key=True, autoincrement=True),
    Column("ts", String(64), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("principal", String(128), nullable=True),
    Column("org", String(255), nullable=True),
    Column("category", String(64), nullable=True),
    Column("operation", String(64), nullable=False),
    Column("collection", String(255), nullable=True),
    Column("image_sha256", JSON, nullable=True),
    Column("faces_found", Integer, nullable=True),
    Column("matches", JSON, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("decision", String(16), nullable=False),
    Column("rule", String(255), nullable=True),
    Column("scoring", String(255), nullable=True),
    # anything else the record must carry (authorisation reference, policy constraints such as
    # human review, error code of a failed call, erasure receipts); NULL is left out of the hash
    Column("details", JSON, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Index(None, "ts"),
    Index(None, "org", "operation"),
    sqlite_autoincrement=True,
)

#: stored-video jobs (StartFaceDetection, StartFaceSearch): durable, so a restart resumes or
#: fails them and never loses one; results kept until ``expires_at`` (logic: service.jobs)
video_jobs = Table(
    "video_jobs", metadata,
    Column("job_id", String(64), primary_key=True),
    Column("operation", String(64), nullable=False),  # StartFaceDetection | StartFaceSearch
    Column("org", String(255), nullable=True),
    Column("principal", String(128), nullable=True),
    Column("category", String(64), nullable=True),
    Column("status", String(16), nullable=False),  # IN_PROGRESS | SUCCEEDED | FAILED
    Column("status_message", String(1024), nullable=True),
    Column("params", JSON, nullable=False),  # the Start request (Video, CollectionId, ...)
    Column("client_token", String(64), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("job_tag", String(1024), nullable=True),
    Column("video_path", String(4096), nullable=True),  # where the runner reads the video
    Column("video_sha256", String(64), nullable=True),
    Column("video_metadata", JSON, nullable=True),
    Column("progress", Float, nullable=False, default=0.0),  # 0-100
    Column("frames", Integer, nullable=False, default=0),
    Column("faces", Integer, nullable=False, default=0),
    Column("matches", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("results", JSON, nullable=True),  # Faces or Persons, in Rekognition's shapes
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    # revision 0008: the node running the job and until when it holds it (renewed by the
    # node's heartbeat; an expired lease lets another node take the job over)
    Column("owner", String(128), nullable=True),
    Column("lease_expires", DateTime(timezone=True), nullable=True),
    Index(None, "status"),
    Index(None, "org", "operation", "client_token"),
)


# -- human review and the console (migration 7) ------------------------------------------------

#: a call whose candidate matches a policy held for human review (candor.governance.review)
reviews = Table(
    "reviews", metadata,
    Column("review_id", String(64), primary_key=True),
    Column("org", String(255), nullable=False, index=True),
    Column("principal", String(128), nullable=False),
    Column("category", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("collection_id", String(255), nullable=True),
    Column("request_id", String(64), nullable=False),
    Column("rule", String(255), nullable=True),
    Column("authorization_reference", String(1024), nullable=True),
    Column("threshold", Float, nullable=True),
    # the response member the matches came in: FaceMatches, UserMatches or CompareMatches
    Column("member", String(32), nullable=False),
    Column("status", String(16), nullable=False, index=True),  # PENDING, DECIDED, EXPIRED
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("decided_by", String(128), nullable=True),
    # the probe's face crop (small JPEG), kept until the review is decided or expires
    Column("probe_jpeg", LargeBinary, nullable=True),
)

#: one candidate match of a review, with the reviewer's verdict
review_candidates = Table(
    "review_candidates", metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("review_id", String(64), ForeignKey("reviews.review_id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("candidate", String(255), nullable=False),  # FaceId, UserId or match-N
    Column("similarity", Float, nullable=True),
    Column("match", JSON, nullable=False),  # the match as the operation returned it
    Column("verdict", String(16), nullable=True),  # CONFIRMED, REJECTED or NULL (undecided)
    Column("reason", String(2000), nullable=True),
    sqlite_autoincrement=True,
)

#: console accounts (candor operators add); passwords as argon2 hashes
operators = Table(
    "operators", metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # admin, reviewer, auditor
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True), nullable=True),
)

#: console sessions: the SHA-256 of the cookie's token (the token itself is never stored)
console_sessions = Table(
    "console_sessions", metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("operator", String(64), ForeignKey("operators.name", ondelete="CASCADE"),
           nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

#: a small JPEG per indexed face of a collection with keep_thumbnails (gone with the face)
face_thumbnails = Table(
    "face_thumbnails", metadata,
    Column("face_pk", Key, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
    Column("jpeg", LargeBinary, nullable=False),
)
