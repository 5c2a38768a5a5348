"""Settings: flags, then the environment, then defaults, resolved once per door into one frozen
object that is passed down to the service, gate, store, engine and scoring.

This is the only module that reads the environment (a test enforces it), so that what a
process does is decided in one place and can be printed, logged and tested; nothing travels
through ``os.environ`` between modules. Every ``CANDOR_*`` variable is listed in :data:`ENV`
with what it sets, and documented in docs/configuration.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from candor.errors import InvalidParameter

#: the organisation the CLI and the Python API act as unless told otherwise, and the one the
#: first admin key of ``candor serve`` is issued to: the operator of this installation
OPERATOR_ORG = "operator"
DEFAULT_CATEGORY = "general"
DEFAULT_BACKEND = "onnx"
#: HOG, then the CNN where HOG finds nothing: on FairFace, HOG alone finds 67.8% of Black faces
#: and 80.1% of Southeast Asian ones (a 12.4-point spread); with the CNN where HOG finds nothing
#: every group is within 96.4-97.9% (docs/fairness.md)
DEFAULT_DETECTOR = "hog+cnn"
DEFAULT_INDEX = "flat"
INDEX_KINDS = ("flat", "hnsw")
OFF_VALUES = frozenset({"0", "off", "false", "no", "none", "raw"})


def default_data_dir() -> Path:
    """``~/.local/share/candor`` of the user running candor."""
    return Path.home() / ".local" / "share" / "candor"


#: environment variable -> Settings field it sets
ENV: dict[str, str] = {
    "CANDOR_DATA_DIR": "data_dir",
    "CANDOR_DATABASE_URL": "database_url",
    "CANDOR_READ_REPLICA_URL": "read_replica_url",
    "CANDOR_BACKEND": "backend",
    "CANDOR_DETECTOR": "detector",
    "CANDOR_INDEX": "index_kind",
    "CANDOR_NORMALISATION": "normalisation",
    "CANDOR_SIMILARITY_TABLE": "similarity_table",
    "CANDOR_ORG": "org",
    "CANDOR_CATEGORY": "category",
    "CANDOR_POLICY": "policy",
    "CANDOR_AUTHORIZATION_REF": "authorization_reference",
    "CANDOR_S3_ENDPOINT_URL": "s3_endpoint_url",
    "CANDOR_SIGNING_KEY": "signing_key",
    "CANDOR_LEDGER_PUBLIC_KEY": "ledger_public_key",
    "CANDOR_BUCKETS": "buckets",
    "CANDOR_NOTIFY_URL": "notify_url",
    "CANDOR_VIDEO_FPS": "video_fps",
    "CANDOR_JOB_RETENTION_DAYS": "job_retention_days",
    "CANDOR_VIDEO_WORKERS": "video_workers",
    "CANDOR_JOB_LEASE_SECONDS": "job_lease_seconds",
    "CANDOR_VIDEO_MIN_FACE": "video_min_face",
    "CANDOR_VIDEO_DETECTOR": "video_detector",
    "CANDOR_BATCH_WAIT_MS": "batch_wait_ms",
    "AWS_REGION": "aws_region",
    "AWS_DEFAULT_REGION": "aws_region",
}


@dataclass(frozen=True)
class Settings:
    """Everything a candor process is configured with (see :data:`ENV` for the variables)."""

    data_dir: Path = field(default_factory=default_data_dir)
    #: SQLAlchemy URL of the database; None: SQLite at <data_dir>/candor.db
    database_url: str | None = None
    #: a PostgreSQL streaming replica that searches and listings may read (docs/postgres.md)
    read_replica_url: str | None = None
    backend: str = DEFAULT_BACKEND
    detector: str = DEFAULT_DETECTOR
    #: vector index per collection: flat (exact) or hnsw (approximate)
    index_kind: str = DEFAULT_INDEX
    #: score normalisation (docs/fairness.md); off scores with the raw cosine
    normalisation: bool = True
    #: a Similarity tables file other than the shipped one (for evaluation)
    similarity_table: Path | None = None
    #: who the CLI and Python API act as
    org: str = OPERATOR_ORG
    category: str = DEFAULT_CATEGORY
    #: policy file or shipped policy name; None: the shipped open policy
    policy: str | None = None
    #: reference of an authorisation (warrant, court order) given with every call
    authorization_reference: str | None = None
    s3_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    #: Ed25519 private key that signs ledger checkpoints (kept outside the data dir)
    signing_key: Path | None = None
    #: the public key ``candor audit verify`` checks signed checkpoints with
    ledger_public_key: Path | None = None
    #: local folders served read-only as S3 buckets, each ``NAME=DIR`` (``--bucket``)
    buckets: tuple[str, ...] = ()
    #: where a video job's completion message is POSTed when its request had a
    #: NotificationChannel (``--notify-url``); None: not sent
    notify_url: str | None = None
    #: sampled frames per second of video (docs/video.md)
    video_fps: float = 5.0
    #: days a finished video job's results are kept (Rekognition keeps them 7 days)
    job_retention_days: float = 7.0
    #: video jobs run at once, beside the request handlers
    video_workers: int = 1
    #: how long a node holds a video job without renewing its lease before another node on the
    #: same database may take the job over (renewed every third of it; docs/video.md)
    job_lease_seconds: float = 30.0
    #: smallest face (px) a video's full-frame scans look for; 0: 40 px. YuNet scans at a
    #: working resolution where it is 20 px; HOG, at 80 or more, without upsampling, about 4x
    #: faster (docs/video.md)
    video_min_face: int = 0
    #: the detector of video jobs: auto (YuNet where candor[yunet] is installed, else HOG),
    #: hog or yunet (docs/video.md)
    video_detector: str = "auto"
    #: the longest an idle embedder of ``candor serve`` waits for concurrent requests' face
    #: chips to join a batch, in milliseconds (docs/engine.md, "Batching across requests")
    batch_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        for name in ("similarity_table", "signing_key", "ledger_public_key"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser())
        if not self.job_lease_seconds > 0:
            raise InvalidParameter("the video job lease must be a positive number of seconds "
                                   f"(CANDOR_JOB_LEASE_SECONDS), not {self.job_lease_seconds!r}")
        if self.index_kind not in INDEX_KINDS:
            raise InvalidParameter(f"the vector index must be {' or '.join(INDEX_KINDS)}, "
                                   f"not {self.index_kind!r} (CANDOR_INDEX)")

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``overrides`` (flags; None means not given), then the environment
        (``environ``, default the process's), then the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, attr in ENV.items():
            raw = env.get(name)
            if raw is None or raw.strip() == "" or attr in values:
                continue
            values[attr] = _parse(attr, raw.strip())
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (None values ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def ensure_data_dir(self) -> Path:
        """The data directory, created (private to its owner) if missing; one that cannot be
        (a file, under a file, no permission) is a typed error, not an OSError."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            reason = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
            raise InvalidParameter(f"cannot use {self.data_dir} as the data dir: "
                                   f"{reason or exc}; give a writable folder with "
                                   "--data-dir or CANDOR_DATA_DIR") from None
        return self.data_dir


def _parse(attr: str, raw: str) -> Any:
    if attr == "normalisation":
        return raw.lower() not in OFF_VALUES
    if attr == "buckets":
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    try:
        if attr in ("video_fps", "job_retention_days", "batch_wait_ms", "job_lease_seconds"):
            return float(raw)
        if attr in ("video_workers", "video_min_face"):
            return int(raw)
    except ValueError:
        raise InvalidParameter(f"{attr} must be a number, got {raw!r}") from None
    return raw


def single_threaded_children() -> None:
    """Let worker processes started from here run one BLAS/OpenMP thread each (a pool of them
    already uses every core); an explicit setting by the user is kept."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory (created): ``explicit``, else ``CANDOR_DATA_DIR``, else the default.
    Prefer passing a :class:`Settings` down; this is for code handed only a path."""
    if explicit:
        path = Path(explicit).expanduser()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path
    return Settings.load().ensure_data_dir()
