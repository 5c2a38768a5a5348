"""``candor operators add|list|remove|unlock``: accounts of the console at ``/console``.

Roles: ``admin`` (everything), ``reviewer`` (decides reviews; reads the rest, but not access
keys), ``auditor`` (reads everything, changes nothing). Passwords are prompted for (twice) or
read from standard input with ``--password-stdin``, and stored as argon2id hashes.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from candor.cli.common import DataDirOption, console, fail, print_table, settings

operators_app = typer.Typer(help="Console accounts (admin, reviewer, auditor).",
                            no_args_is_help=True)
MIN_PASSWORD = 12


def _store(data_dir):
    from candor.store import open_store

    s = settings(data_dir)
    return open_store(s.ensure_data_dir(), s.database_url, s.index_kind)


@operators_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Account name: lower-case letters, digits, . _ -")],
    role: Annotated[str, typer.Option(help="admin, reviewer or auditor.")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input (one line).")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create a console account, or set an existing one's password and role (its sessions
    end)."""
    from candor.api.console.auth import ROLES, hash_password, valid_name
    from candor.clock import utcnow

    if not valid_name(name):
        fail("an account name is lower-case letters, digits, '.', '_' or '-' (up to 64), "
             "starting with a letter")
    if role not in ROLES:
        fail(f"--role must be one of {', '.join(ROLES)}")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        fail(f"a password needs at least {MIN_PASSWORD} characters")
    new = _store(data_dir).put_operator(name, hash_password(password), role, utcnow())
    console.print(f"{'added' if new else 'updated'} {name} ({role})", highlight=False)


@operators_app.command("list")
def list_operators(data_dir: DataDirOption = None) -> None:
    """The console accounts, their roles and whether they are locked."""
    from candor.clock import utcnow

    table = Table("name", "role", "created", "locked until")
    now = utcnow()
    for op in _store(data_dir).operators():
        locked = op["locked_until"]
        table.add_row(escape(op["name"]), op["role"], f"{op['created_at']:%Y-%m-%d}",
                      f"{locked:%Y-%m-%d %H:%M}" if locked and locked > now else "-")
    print_table(table)


@operators_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Account name.")],
           data_dir: DataDirOption = None) -> None:
    """Delete a console account and end its sessions."""
    if not _store(data_dir).remove_operator(name):
        fail(f"no account {escape(name)!r}")
    console.print(f"removed {name}", highlight=False)


@operators_app.command("unlock")
def unlock(name: Annotated[str, typer.Argument(help="Account name.")],
           data_dir: DataDirOption = None) -> None:
    """Lift a lockout after repeated failed sign-ins."""
    store = _store(data_dir)
    if store.operator(name) is None:
        fail(f"no account {escape(name)!r}")
    store.unlock_operator(name)
    console.print(f"unlocked {name}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``candor operators`` to the main command."""
    app.add_typer(operators_app, name="operators")
