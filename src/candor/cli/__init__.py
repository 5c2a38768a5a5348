"""The ``candor`` command: the root (global options) here; each family of commands lives in its
own module of this package and is added by its ``register(app)``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup

from candor import __version__
from candor.cli import (
    audit,
    celebrities,
    collections,
    db,
    faces,
    governance,
    identify,
    index,
    operators,
    review,
    serve,
    users,
    video,
)
from candor.cli import eval as eval_commands
from candor.cli.common import console, err_console, remember_globals
from candor.config import DEFAULT_CATEGORY, OPERATOR_ORG
from candor.errors import CandorError


class _Root(TyperGroup):
    """The root group, which takes ``--database URL`` and ``--read-replica URL`` anywhere on
    the line: they are root options (every command's store opens them) that users also write
    after the subcommand (``candor audit verify --database URL``), so they are moved in front
    before parsing."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_database(args))


#: root options accepted after any subcommand
HOISTED = ("--database", "--read-replica")


def hoist_database(args: list[str]) -> list[str]:
    """``args`` with every ``--database URL`` / ``--database=URL`` (and ``--read-replica``)
    moved to the front."""
    front, rest, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in HOISTED and i + 1 < len(args):
            front += args[i:i + 2]
            i += 2
            continue
        if arg.startswith(tuple(f"{o}=" for o in HOISTED)):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


app = typer.Typer(
    name="candor",
    cls=_Root,
    help="Self-hosted face recognition with accountability built in.\n\n"
         "Detect and compare faces in photos, index them into collections and search them, "
         "or serve Amazon Rekognition's API to any AWS SDK.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"candor {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    as_org: Annotated[str | None, typer.Option(
        "--as", help="Act as this organisation: every call is decided by the policy and "
        f"recorded in the audit ledger under it (also CANDOR_ORG) [default: {OPERATOR_ORG}].")]
    = None,
    category: Annotated[str | None, typer.Option(
        "--category", help="The use-case category you act under (also CANDOR_CATEGORY) "
        f"[default: {DEFAULT_CATEGORY}].")] = None,
    policy: Annotated[str | None, typer.Option(
        "--policy", help="Policy file or shipped policy name for these calls (also "
        "CANDOR_POLICY) [default: open].")] = None,
    authorization_ref: Annotated[str | None, typer.Option(
        "--authorization-ref", help="Reference of the authorisation (warrant, court order) "
        "these calls are made under, for policies that require one; recorded in the audit "
        "ledger (also CANDOR_AUTHORIZATION_REF).")] = None,
    database: Annotated[str | None, typer.Option(
        "--database", help="SQLAlchemy URL of the database, e.g. postgresql+psycopg://... "
        "(also CANDOR_DATABASE_URL); accepted after any command too [default: SQLite in the "
        "data dir]. See docs/postgres.md.")] = None,
    read_replica: Annotated[str | None, typer.Option(
        "--read-replica", help="URL of a PostgreSQL streaming replica of --database: searches "
        "and listings read it once it has caught up (also CANDOR_READ_REPLICA_URL).")] = None,
    no_normalisation: Annotated[bool, typer.Option(
        "--no-normalisation", help="Score with the raw cosine, without score normalisation "
        "(also CANDOR_NORMALISATION=off): for comparison; the audit ledger records which "
        "scoring was used. See docs/fairness.md.")] = False,
) -> None:
    """Self-hosted face recognition with accountability built in."""
    remember_globals(org=as_org, category=category, policy=policy,
                     authorization_reference=authorization_ref, database_url=database,
                     read_replica_url=read_replica,
                     normalisation=False if no_normalisation else None)


faces.register(app)  # detect, compare
index.register(app)  # index
collections.register(app)  # collection, faces, search
users.register(app)  # user
serve.register(app)  # serve, keys: the HTTP API
governance.register(app)  # report, erase, retention, policy
audit.register(app)  # audit: verify, tail, search, keygen, checkpoint
review.register(app)  # review: list, show, decide, result (human review)
operators.register(app)  # operators: console accounts
eval_commands.register(app)  # eval: accuracy, calibration, fairness
identify.register(app)  # identify (every face of a photo), sdk-path
celebrities.register(app)  # celebrities: import, list, show, remove
video.register(app)  # video detect|search|redact, redact (photos)
db.register(app)  # db: start|stop|url, a local PostgreSQL server


def _plain_help(typer_app: typer.Typer) -> None:
    """Help shows exactly what the help strings say: Rich markup is off on this app and every
    sub-app (each Typer has its own setting), so ``[default: 85]`` and Rekognition's patterns
    such as ``[a-zA-Z0-9_.\\-]+`` are not swallowed as markup tags."""
    typer_app.rich_markup_mode = None
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _plain_help(group.typer_instance)


_plain_help(app)


def main() -> None:
    """Console-script entry point. Commands turn candor's errors into one line themselves
    (:func:`candor.cli.common.cli_errors`); this is the last resort for one that escapes a
    command, such as a database written by a newer candor, so that no error candor raises
    on purpose reaches the user as a traceback. Anything else is a bug and keeps its
    traceback."""
    from candor.store.migrations import SchemaTooNew

    try:
        app()
    except (CandorError, SchemaTooNew) as exc:
        code = getattr(exc, "code", type(exc).__name__)
        message = getattr(exc, "message", str(exc))
        err_console.print(f"[red]error:[/red] {escape(f'{code}: {message}')}", highlight=False,
                          soft_wrap=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
