"""``candor db start|stop|url``: a local PostgreSQL server (with pgvector) for trying candor
on PostgreSQL, from the ``postgres`` extra (:mod:`candor.store.postgres_server`).

Added to ``candor`` by :func:`register`. Any candor command then runs on it with
``--database URL`` (or ``CANDOR_DATABASE_URL``); see docs/postgres.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from candor.cli.common import cli_errors, console, fail

db_app = typer.Typer(help="A local PostgreSQL server (pgvector included) to run candor on "
                          "(pip install 'candor[postgres]').", no_args_is_help=True)

ServerDirOption = Annotated[Path, typer.Option(
    "--data-dir", help="The server's folder (the cluster and its password live there); not "
                       "candor's own data dir.")]


@db_app.command("start")
def start(
    data_dir: ServerDirOption,
    port: Annotated[int | None, typer.Option(
        "--port", min=1, max=65535,
        help="TCP port on 127.0.0.1 [default: a free port, kept for the next start].")]
    = None,
) -> None:
    """Start (creating it on first use) a PostgreSQL server in DATA_DIR, listening on 127.0.0.1
    with a generated password, and print the database URL to give candor as --database."""
    from candor.store import postgres_server

    with cli_errors():
        try:
            info = postgres_server.start(data_dir, port=port)
        except (RuntimeError, OSError) as exc:
            fail(f"the PostgreSQL server did not start: {exc}")
    console.print(info.url(), highlight=False, soft_wrap=True)


@db_app.command("stop")
def stop(data_dir: ServerDirOption) -> None:
    """Stop the PostgreSQL server running in DATA_DIR."""
    from candor.store import postgres_server

    with cli_errors():
        try:
            stopped = postgres_server.stop(data_dir)
        except (RuntimeError, OSError) as exc:
            fail(f"the PostgreSQL server did not stop: {exc}")
    console.print("stopped" if stopped else "not running", highlight=False)


@db_app.command("url")
def url(data_dir: ServerDirOption) -> None:
    """Print the database URL of the server in DATA_DIR (running or not)."""
    from candor.store import postgres_server

    info = postgres_server.read_info(data_dir)
    if info is None:
        fail(f"no PostgreSQL server in {data_dir}: candor db start --data-dir {data_dir}")
    console.print(info.url(), highlight=False, soft_wrap=True)


@db_app.command("migrate")
def migrate(
    source: Annotated[Path, typer.Option(
        "--from", help="The candor data dir whose SQLite database is copied.")],
    target: Annotated[str, typer.Option(
        "--to", help="The new database's URL (postgresql://...); must be empty.")],
) -> None:
    """Copy everything in a data dir's database (collections, faces, users, keys, tokens,
    reviews, jobs, the audit ledger with its chain) to a new database, then verify the
    ledger there. Run it with no candor process writing to the source."""
    from candor.governance.ledger import ANCHOR_FILE, Ledger
    from candor.store.database import DB_NAME, Database, sqlite_url
    from candor.store.transfer import copy_database

    if not (source / DB_NAME).is_file():
        fail(f"no candor database in {source} ({DB_NAME} not found)")
    with cli_errors():
        src, dst = Database(sqlite_url(source)), Database(target)
        try:
            copied = copy_database(src, dst)
            result = Ledger(dst.engine, anchor_path=source / ANCHOR_FILE).verify(
                require_anchor=False)
        finally:
            src.close()
            dst.close()
    for table, n in copied.items():
        console.print(f"{table}: {n}", highlight=False)
    if not result.ok:
        fail(f"the ledger does not verify on the target: {result}")
    console.print(f"ledger on the target: {result}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
