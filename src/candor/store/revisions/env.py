"""Alembic's environment for candor's schema, run by :func:`candor.store.upgrade.upgrade`.

It migrates the connection that function hands over (``config.attributes["connection"]``),
inside the transaction that function holds and commits: the lock, SQLite's foreign-key
handling and the ``schema_migrations`` mirror are done there, so this file is only the bridge.
There is no offline (``--sql``) mode: the first revisions inspect the live database.
"""

from __future__ import annotations

from alembic import context

from candor.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("candor's schema is upgraded by candor itself (candor.store.upgrade), "
                       "on a live connection; not by the alembic command line")

context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
