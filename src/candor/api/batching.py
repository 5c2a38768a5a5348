"""The HTTP door's batching: concurrent requests' face chips embedded together, and their
writes committed together.

``candor serve`` runs requests on a pool of worker threads, one image each; the engine's
:class:`~candor.face.batcher.EmbedBatcher` gathers their chips into batches, as the bulk
pipeline does for the CLI, and :class:`~candor.store.group_commit.GroupCommit` lets their
database writes (replay table, faces, audit records) share commits. This module turns both on,
shows their counts on /metrics and says which requests an idle embedder should wait for.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from prometheus_client import CollectorRegistry, Gauge

from candor.service import operations


def attach_batcher(service, registry: CollectorRegistry):
    """Give the service's engine an EmbedBatcher (waiting at most the settings'
    ``batch_wait_ms``), with its counts on /metrics. None for a service without settings
    (tests' stand-ins)."""
    settings = getattr(service, "settings", None)
    if settings is None:
        return None
    from candor.face.batcher import EmbedBatcher

    engine = service.engine

    def embed_chips(chips):
        # While other requests are still detecting (announced, not yet handed in chips) the
        # other cores have work, and ONNX Runtime on one intra-op thread spends ~15% less CPU
        # per chip than on all of them (same numbers: see Engine.embed_chips); a lone request
        # keeps every core for its latency. (Also one thread while requests that have embedded
        # are still storing and answering: no gain measured, see docs/engine.md.)
        if batcher.announced > 0:
            one_thread[0] += 1
            return engine.embed_chips(chips, threads=1)
        return engine.embed_chips(chips)

    one_thread = [0]
    batcher = EmbedBatcher(embed_chips, wait=settings.batch_wait_ms / 1000.0)
    engine.batcher = batcher
    Gauge("candor_embed_batches", "Embedding calls made for HTTP requests",
          registry=registry).set_function(lambda: batcher.batches)
    Gauge("candor_embed_faces", "Faces embedded for HTTP requests",
          registry=registry).set_function(lambda: batcher.faces)
    Gauge("candor_embed_batches_one_thread", "Embedding calls run on one thread because "
          "other requests were still detecting", registry=registry).set_function(
        lambda: one_thread[0])
    return batcher


def announced(batcher, operation: str) -> AbstractContextManager:
    """The request announced to ``batcher`` while it runs when its operation may embed (it
    carries an image and is not a detection), so that an idle embedder waits for its chips
    for at most the wait bound; otherwise nothing."""
    descriptor = operations.spec(operation)
    if batcher is None or descriptor is None or not descriptor.images \
            or descriptor.kind == "detect":
        return nullcontext()
    return batcher.caller()


def share_commits(service, keys, gate, registry: CollectorRegistry) -> None:
    """Group commits on every database the requests write (SQLite only; each write still
    returns after its own work is durable), waiting at most ``batch_wait_ms`` for company."""
    settings = getattr(service, "settings", None)
    if settings is None:
        return
    from candor.service.common import store_of

    databases = {id(db): db for db in (getattr(keys.store, "db", None),
                                       getattr(gate.ledger, "database", None),
                                       getattr(store_of(service), "db", None)) if db is not None}
    for db in databases.values():
        db.group_commits(settings.batch_wait_ms / 1000.0)
    groups = [db.group for db in databases.values() if db.group is not None]
    if groups:
        Gauge("candor_db_commits", "Database commits made by grouped writers",
              registry=registry).set_function(lambda: sum(g.commits for g in groups))
        Gauge("candor_db_writes", "Writes those commits held",
              registry=registry).set_function(lambda: sum(g.writes for g in groups))
