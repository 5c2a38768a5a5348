"""1:N search at 10k / 100k / 1M stored faces: exact (the default) against HNSW.

    python bench/search.py --embeddings /tmp/lfw_dlib.npz [--sizes 10000,100000,1000000]
                           [--queries 300] [--store-max 100000] [--out bench/search.json]

Faces are real dlib embeddings of the shared photos (an ``.npz`` with ``emb`` and ``found``, as
``bench/lfw_accuracy.py --cache`` writes; without one, ``samples/identities`` is embedded now),
perturbed into many synthetic people: each real embedding seeds identities (unit vector + noise,
about 0.5 away, like a look-alike) and each identity gets faces (+ smaller noise, about 0.35
apart, like two photos of one person under dlib's model). Queries are fresh faces of stored
identities, one at a time, on one thread.

Measured per size: median and p99 latency for the exact index (``IndexFlatIP``, what the store
uses) and for HNSW (``IndexHNSWFlat``, M=32) at several ``efSearch`` values with recall@10
against exact; build time and memory of each index. Up to ``--store-max`` faces the store path
is measured too: bulk insert into SQLite, the index rebuilt from the database, and reloaded
from its saved file, with the search latency through the store.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM = 128


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def real_embeddings(path: Path | None, data: Path) -> np.ndarray:
    if path is not None and path.exists():
        z = np.load(path, allow_pickle=False)
        emb = z["emb"][z["found"]] if "found" in z.files else z["emb"]
        return unit(emb)
    sys.path.insert(0, str(ROOT / "src"))
    from candor.face.engine import Engine

    engine, out = Engine(), []
    for p in sorted((data / "samples" / "identities").glob("*/*")):
        img, faces = engine.analyse(p, landmarks=False, max_faces=1, embed=True)
        out += [f.embedding for f in faces]
    return unit(np.stack(out))


def synthetic(seeds: np.ndarray, n: int, rng: np.random.Generator,
              faces_per_identity: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` faces of ``ceil(n / faces_per_identity)`` identities; returns (faces, centres)."""
    n_ids = -(-n // faces_per_identity)
    centres = unit(seeds[rng.integers(0, len(seeds), n_ids)]
                   + rng.standard_normal((n_ids, DIM), dtype=np.float32) * 0.045)
    faces = np.empty((n, DIM), np.float32)
    for start in range(0, n, 200_000):
        stop = min(n, start + 200_000)
        owner = np.arange(start, stop) // faces_per_identity
        faces[start:stop] = unit(centres[owner]
                                 + rng.standard_normal((stop - start, DIM), np.float32) * 0.022)
    return faces, centres


def timed_queries(search, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    ids, times = [], []
    for q in queries:
        t = time.perf_counter()
        _, i = search(q.reshape(1, DIM), k)
        times.append((time.perf_counter() - t) * 1000)
        ids.append(i[0])
    return np.stack(ids), times


def stats(times: list[float]) -> dict:
    return {"median_ms": round(float(np.median(times)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3)}


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def bench_size(n: int, faces: np.ndarray, queries: np.ndarray, ef_values: list[int],
               store_max: int) -> dict:
    out: dict = {"faces": n}
    base = faces[:n]

    mem0 = rss_mb()
    t = time.perf_counter()
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    flat.add_with_ids(base, np.arange(n, dtype=np.int64))
    out["exact"] = {"build_s": round(time.perf_counter() - t, 3),
                    "memory_mb": round(rss_mb() - mem0, 1)}
    truth, times = timed_queries(flat.search, queries, 10)
    out["exact"].update(stats(times))

    if not ef_values:  # --ef "" : exact only
        return out
    mem0 = rss_mb()
    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 64
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # build with every core
    hnsw.add(base)
    faiss.omp_set_num_threads(1)
    out["hnsw"] = {"M": 32, "efConstruction": 64, "build_s": round(time.perf_counter() - t, 2),
                   "memory_mb": round(rss_mb() - mem0, 1), "by_efSearch": []}
    for ef in ef_values:
        hnsw.hnsw.efSearch = ef
        found, times = timed_queries(hnsw.search, queries, 10)
        out["hnsw"]["by_efSearch"].append({"efSearch": ef, "recall@10": round(
            recall_at(found, truth), 4), **stats(times)})
    del hnsw, flat

    if n <= store_max:
        out["store"] = bench_store(base, queries)
    return out


def bench_store(base: np.ndarray, queries: np.ndarray) -> dict:
    """The service's real path: SQLite rows -> FAISS index, saved file reload, search."""
    sys.path.insert(0, str(ROOT / "src"))
    from candor.store import Store

    box = {"Width": 0.3, "Height": 0.3, "Left": 0.3, "Top": 0.3}
    with tempfile.TemporaryDirectory(prefix="candor-bench-") as tmp:
        store = Store(tmp)
        store.create_collection("bench", "1.0")
        t = time.perf_counter()
        for start in range(0, len(base), 10_000):
            store.add_faces("bench", [{"embedding": v, "bbox": box, "confidence": 99.0,
                                       "image_id": "00000000-0000-0000-0000-000000000000",
                                       "model_version": "1.0"}
                                      for v in base[start:start + 10_000]])
        insert_s = time.perf_counter() - t
        pk = store.collection("bench").id
        store.engine.dispose()

        fresh = Store(tmp)
        t = time.perf_counter()
        index = fresh.face_index(pk)  # nothing saved: rebuilt from the database
        rebuild_s = time.perf_counter() - t
        fresh.save_indexes()
        fresh.engine.dispose()
        db_mb = (Path(tmp) / "candor.db").stat().st_size / 2**20

        again = Store(tmp)
        t = time.perf_counter()
        index = again.face_index(pk)  # from the saved file, checked against the database
        reload_s = time.perf_counter() - t
        _, times = timed_queries(lambda q, k: ([0], [index.search(q[0], k)[1]]), queries, 10)
        again.engine.dispose()
    return {"insert_s": round(insert_s, 2), "db_mb": round(db_mb, 1),
            "rebuild_from_db_s": round(rebuild_s, 2), "reload_saved_s": round(reload_s, 2),
            **stats(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embeddings", type=Path, help=".npz of real embeddings (emb, found)")
    ap.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "faces")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--ef", default="16,32,64,128,256,512",
                    help="HNSW efSearch values to try; empty: exact only")
    ap.add_argument("--store-max", type=int, default=100_000,
                    help="measure the SQLite store path up to this many faces")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    seeds = real_embeddings(args.embeddings, args.data)
    sizes = [int(s) for s in args.sizes.split(",")]
    faces, centres = synthetic(seeds, max(sizes), rng)
    # queries: new photos of stored people (identities present at every size)
    owners = rng.integers(0, min(sizes) // 5, args.queries)
    queries = unit(centres[owners] + rng.standard_normal((args.queries, DIM), np.float32) * 0.022)
    results = {"real_seed_embeddings": int(len(seeds)), "queries": args.queries,
               "threads": 1, "cpu_count": os.cpu_count(), "sizes": []}
    for n in sizes:
        t = time.perf_counter()
        ef_values = [int(e) for e in args.ef.split(",") if e.strip()]
        r = bench_size(n, faces, queries, ef_values, args.store_max)
        r["wall_s"] = round(time.perf_counter() - t, 1)
        results["sizes"].append(r)
        print(json.dumps(r), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
