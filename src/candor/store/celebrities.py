"""The celebrity gallery: people the operator chose to make recognisable, their published
details and their photos' embeddings.

:class:`CelebritiesPart` is one part of :class:`candor.store.Store`. candor ships no gallery;
``candor celebrities import`` fills it. Every change bumps the gallery version (the setting
``celebrity_gallery_version``) in the same transaction, so the in-memory :class:`Gallery` that
recognition reads is rebuilt exactly when the gallery changed. Removing a person deletes their
embeddings from every file (as DeleteFaces does) and their sightings from stored
StartCelebrityRecognition results.
"""

from __future__ import annotations

import secrets
import string
import threading
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.engine import Row

from candor.errors import ResourceAlreadyExists, ResourceNotFound
from candor.store.database import Database, utcnow
from candor.store.faces import from_blob, to_blob
from candor.store.schema import celebrities as T_celeb
from candor.store.schema import celebrity_faces as T_cfaces
from candor.store.schema import settings as T_settings
from candor.store.users import unit_mean

VERSION_KEY = "celebrity_gallery_version"
_ID_CHARS = string.ascii_letters + string.digits


def new_celebrity_id() -> str:
    """An id in Rekognition's form (``RekognitionUniqueId``: letters and digits)."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(8))


@dataclass(frozen=True)
class Gallery:
    """The gallery as recognition reads it: per person a key, their unit-mean template and
    all their faces (``faces[i]`` belongs to person ``owners[i]``)."""

    version: int
    keys: np.ndarray        # (P,) row keys
    templates: np.ndarray   # (P, 128) unit
    faces: np.ndarray       # (F, 128) unit
    owners: np.ndarray      # (F,) index into keys
    #: values computed from this gallery's content (its recognition threshold), kept with it:
    #: the store rebuilds a Gallery only when the gallery's version changes
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.keys)


class CelebritiesPart:
    """Celebrity rows, their faces, and the gallery version."""

    _gallery_lock = threading.Lock()

    def gallery_version(self, conn: Connection | None = None) -> int:
        if conn is None:
            with self.read() as c:
                return self.gallery_version(c)
        value = conn.execute(select(T_settings.c.value)
                             .where(T_settings.c.key == VERSION_KEY)).scalar()
        return int(value) if value is not None else 0

    def _bump_gallery(self, conn: Connection) -> int:
        version = self.gallery_version(conn) + 1
        if version == 1:
            conn.execute(T_settings.insert().values(key=VERSION_KEY, value="1"))
        else:
            conn.execute(update(T_settings).where(T_settings.c.key == VERSION_KEY)
                         .values(value=str(version)))
        return version

    def add_celebrity(self, name: str, urls: list[str], known_gender: str | None,
                      embeddings: list[np.ndarray], shas: list[str | None],
                      face_model_version: str, replace: bool = False) -> tuple[Row, int]:
        """Add a person with their photos' embeddings (``replace``: an existing person of that
        name is replaced, keeping their id). Returns (row, new gallery version)."""
        template = unit_mean(embeddings)
        if template is None:
            raise ValueError(f"{name}: no face to add")
        with self.write() as conn:
            old = conn.execute(select(T_celeb).where(T_celeb.c.name == name)).first()
            if old is not None and not replace:
                raise ResourceAlreadyExists(f"The celebrity {name!r} is already in the gallery")
            celebrity_id = old.celebrity_id if old is not None else new_celebrity_id()
            if old is not None:
                conn.execute(delete(T_cfaces).where(T_cfaces.c.celebrity_pk == old.id))
                conn.execute(delete(T_celeb).where(T_celeb.c.id == old.id))
                Database.mark_erasing(conn)
            pk = conn.execute(T_celeb.insert().values(
                celebrity_id=celebrity_id, name=name, urls=list(urls), known_gender=known_gender,
                face_model_version=face_model_version, face_count=len(embeddings),
                template=to_blob(template), created_at=utcnow())).inserted_primary_key[0]
            conn.execute(T_cfaces.insert(), [
                {"celebrity_pk": pk, "image_sha256": sha, "embedding": to_blob(v)}
                for v, sha in zip(embeddings, shas)])
            version = self._bump_gallery(conn)
            row = conn.execute(select(T_celeb).where(T_celeb.c.id == pk)).first()
        return row, version

    def celebrity(self, celebrity_id: str, conn: Connection | None = None) -> Row:
        """The person with this id, or ResourceNotFound."""
        if conn is None:
            with self.read() as c:
                return self.celebrity(celebrity_id, c)
        row = conn.execute(select(T_celeb)
                           .where(T_celeb.c.celebrity_id == celebrity_id)).first()
        if row is None:
            raise ResourceNotFound(f"The celebrity id: {celebrity_id} does not exist")
        return row

    def celebrity_by_name(self, name: str) -> Row | None:
        with self.read() as conn:
            return conn.execute(select(T_celeb).where(T_celeb.c.name == name)).first()

    def celebrities(self) -> list[Row]:
        """Every person in the gallery, by name."""
        with self.read() as conn:
            return list(conn.execute(select(T_celeb).order_by(T_celeb.c.name)).all())

    def celebrities_by_key(self, keys) -> dict[int, Row]:
        keys = [int(k) for k in keys]
        if not keys:
            return {}
        with self.read() as conn:
            rows = conn.execute(select(T_celeb).where(T_celeb.c.id.in_(keys))).all()
        return {row.id: row for row in rows}

    def remove_celebrity(self, celebrity_id: str) -> int:
        """Remove the person, their embeddings and their sightings in stored video results.
        Returns the new gallery version."""
        with self.write() as conn:
            row = self.celebrity(celebrity_id, conn)
            self.erase_job_celebrity(conn, celebrity_id)  # their sightings in stored video results
            conn.execute(delete(T_cfaces).where(T_cfaces.c.celebrity_pk == row.id))
            conn.execute(delete(T_celeb).where(T_celeb.c.id == row.id))
            Database.mark_erasing(conn)
            return self._bump_gallery(conn)

    def gallery(self) -> Gallery:
        """The current gallery in memory (rebuilt only when its version changed)."""
        version = self.gallery_version()
        cached = self.__dict__.get("_gallery")
        if cached is not None and cached.version == version:
            return cached
        with self._gallery_lock, self.read() as conn:
            version = self.gallery_version(conn)
            people = conn.execute(select(T_celeb.c.id, T_celeb.c.template)
                                  .order_by(T_celeb.c.id)).all()
            faces = conn.execute(select(T_cfaces.c.celebrity_pk, T_cfaces.c.embedding)
                                 .order_by(T_cfaces.c.id)).all()
        keys = np.array([p.id for p in people], np.int64)
        position = {int(k): i for i, k in enumerate(keys)}
        faces = [f for f in faces if f.celebrity_pk in position]
        gallery = Gallery(
            version, keys,
            np.stack([from_blob(p.template) for p in people]) if people else np.zeros((0, 128), np.float32),
            np.stack([from_blob(f.embedding) for f in faces]) if faces else np.zeros((0, 128), np.float32),
            np.array([position[f.celebrity_pk] for f in faces], np.int64))
        self.__dict__["_gallery"] = gallery
        return gallery
