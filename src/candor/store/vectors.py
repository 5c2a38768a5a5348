"""The vector index: one FAISS index per collection, a cache of the database, never the truth.

Embeddings are unit float32 vectors, so inner product = cosine. The default index is exact
(``IndexFlatIP``) wrapped in an id map keyed by the faces table's integer key, which is never
reused; so an index is valid for any subset of faces it holds, and bringing it up to date is
"add the keys the database has that the index lacks, drop the keys it no longer has". That is
how a stale index (another process wrote, or a file saved long ago) is repaired, and how a
missing one is built. Indexes are saved to ``<data_dir>/index/`` so that a new process does not
re-read every embedding from the database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np

DIM = 128


def new_index(kind: str = "flat") -> faiss.Index:
    """An empty id-mapped index: ``flat`` (exact) or ``hnsw`` (approximate, no removals)."""
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        # the settings docs/benchmarks.md measured: recall@10 0.997 at 1M faces, 1.5 ms median
        inner.hnsw.efConstruction = 64
        inner.hnsw.efSearch = 512
        return faiss.IndexIDMap2(inner)
    raise ValueError(f"unknown index kind {kind!r}")


class VectorIndex:
    """One collection's vectors, with the database generation it was last brought up to."""

    def __init__(self, kind: str = "flat") -> None:
        self.kind = kind
        self.index = new_index(kind)
        self.generation: int | None = None  # unknown until synced
        self.dirty = False  # changed since it was last saved

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def keys(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                    np.ascontiguousarray(keys, dtype=np.int64))
            self.dirty = True

    def remove(self, keys: np.ndarray | list[int]) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        if len(keys):
            self.index.remove_ids(keys)
            self.dirty = True

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` (cosines, keys), best first."""
        k = min(k, self.ntotal)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, DIM)
        cosines, keys = self.index.search(query, k)
        found = keys[0] >= 0
        return cosines[0][found], keys[0][found]

    def save(self, path: Path, meta: dict) -> None:
        """Write atomically (temp file + rename), so a crash leaves the old file or the new one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps({**meta, "generation": self.generation}))
        self.dirty = False

    @classmethod
    def load(cls, path: Path, meta: dict, kind: str = "flat") -> VectorIndex | None:
        """The saved index at ``path`` if it exists, is readable and belongs to ``meta``."""
        try:
            saved = json.loads(path.with_suffix(".json").read_text())
            if any(saved.get(k) != v for k, v in meta.items()):
                return None
            index = faiss.read_index(str(path))
        except (OSError, ValueError, RuntimeError):
            return None
        out = cls(kind)
        out.index = index
        out.generation = None  # its contents are re-checked against the database before use
        return out
