"""What every CLI command shares: options, the service they run on, output and error handling.

Commands live in one module per family in this package; they all use the
helpers here so that options are spelled the same and a bad input is always one line on
stderr with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from candor.config import DEFAULT_BACKEND, DEFAULT_DETECTOR, Settings
from candor.errors import CandorError

console = Console()
err_console = Console(stderr=True)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where candor keeps its data (also CANDOR_DATA_DIR) "
                                    "[default: ~/.local/share/candor]."),
]
BackendOption = Annotated[
    str | None,
    typer.Option("--backend", help="Model backend: onnx (fast path) or dlib (reference) "
                                   f"(also CANDOR_BACKEND) [default: {DEFAULT_BACKEND}]."),
]
DetectorOption = Annotated[
    str | None,
    typer.Option("--detector",
                 help="Face detector: hog+cnn (HOG, and the CNN where HOG finds no face), "
                      "hog (fastest), cnn (MMOD, every image) or yunet (libfacedetection's YuNet, "
                      "needs candor[yunet]) (also CANDOR_DETECTOR) "
                      f"[default: {DEFAULT_DETECTOR}]."),
]
#: the COLLECTION argument of every collection command (Rekognition's pattern, verbatim)
Collection = Annotated[str, typer.Argument(help=r"Collection id ([a-zA-Z0-9_.\-]+, 1-255 "
                                                  "chars).")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the Rekognition response JSON instead of a table.")
]


#: the root command's options of this invocation (``--as``, ``--policy`` ...)
_globals: ContextVar[dict[str, Any] | None] = ContextVar("candor_cli_globals", default=None)


def remember_globals(**values: Any) -> None:
    """Keep the root command's options for the subcommand that builds the settings (in this
    invocation's context, never in the environment)."""
    _globals.set({k: v for k, v in values.items() if v is not None})


def settings(data_dir: Path | None = None, backend: str | None = None,
             detector: str | None = None, **more: Any) -> Settings:
    """This command's settings: its own flags, then the root's, then the environment, then
    the defaults (:meth:`candor.config.Settings.load`)."""
    flags = {"data_dir": data_dir, "backend": backend, "detector": detector, **more}
    # a flag not given (None) leaves the root's option in force (``candor --policy P serve``)
    return Settings.load(**{**(_globals.get() or {}),
                            **{k: v for k, v in flags.items() if v is not None}})


def make_service(data_dir: Path | None = None, backend: str | None = None,
                 detector: str | None = None, governed: bool = True):
    """The service the command runs on: behind the governance gate, acting as the local
    principal (``candor --as ORG --category C``), under the policy (``--policy``, default
    open), so CLI calls are decided and audited like HTTP ones. ``governed=False`` is for
    ``serve``, which puts its own gate in front per request."""
    from candor.service import Service

    service = Service(settings=settings(data_dir, backend, detector))
    if not governed:
        return service
    from candor.governance.gate import governed as behind_gate

    return behind_gate(service)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn candor's typed errors into one line on stderr and exit code 2 (the message is
    escaped: Rekognition's patterns such as ``[a-zA-Z0-9_.\\-]+`` are not Rich markup)."""
    try:
        yield
    except CandorError as exc:
        fail(escape(f"{exc.code}: {exc.message}"))


def call(service, name: str, params: dict) -> dict:
    """``service.call`` with candor's errors as one line on stderr (exit 2)."""
    with cli_errors():
        return service.call(name, params)


def image_param(path: Path) -> dict:
    """The ``Image`` request parameter for a photo file (a bad file: one line, exit 2)."""
    from candor.face.imaging import load_image

    with cli_errors():
        return {"Bytes": load_image(path)}


def keep_indexes() -> None:
    """Save the vector indexes this process built, so the next command starts warm."""
    from candor.store import save_open_indexes

    save_open_indexes()


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` (Rich markup: escape what comes from outside) and exit."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else, so scripts can pipe it."""
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def print_json_line(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    import datetime

    if isinstance(value, datetime.datetime):
        return value.timestamp()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders walked (sorted) for .jpg/.jpeg/.png files."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*")
                              if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(path)
    return out


def working(message: str):
    """A spinner on stderr for one long step without countable parts (models loading, a
    search, an erasure): shown only on a terminal, so piped and --json output stays clean."""
    return err_console.status(message, spinner="dots")


def progress_bar(disable: bool = False, *extra: ProgressColumn, elapsed: bool = False,
                 stderr: bool = False) -> Progress:
    """The progress bar every long command shows (transient: gone when the work is done)."""
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), *extra]
    if elapsed:
        columns.append(TimeElapsedColumn())
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=err_console if stderr else console, disable=disable,
                    transient=True)


def id_column(table: Table, header: str, **kwargs: Any) -> None:
    """Add a column of identifiers (FaceIds, UserIds, ImageIds, key ids, timestamps): the
    next command needs them whole, so they are never wrapped, folded or cut with an ellipsis;
    :func:`print_table` makes the column as wide as its longest value."""
    table.add_column(header, no_wrap=True, **kwargs)


def print_table(table: Table) -> None:
    """Print ``table`` with every :func:`id_column` (every ``no_wrap`` column) as wide as its
    longest value; other columns fold long words instead of cutting them. When that does not
    fit the terminal, the table is printed wider than the terminal (which wraps the lines)
    rather than cutting an identifier."""
    from rich.cells import cell_len

    for column in table.columns:
        if column.no_wrap:
            cells = [cell_len(str(c)) for c in column._cells]
            column.min_width = max([cell_len(str(column.header)), *cells])
        elif column.overflow == "ellipsis":
            column.overflow = "fold"
    needed = Measurement.get(console, console.options.update(max_width=10_000), table).minimum
    if needed <= console.width:
        console.print(table)
    else:  # rendered at the width the identifiers need (the terminal wraps the lines)
        Console(width=needed, file=console.file).print(table)
