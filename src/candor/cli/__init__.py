"""The ``candor`` command: the root (global options) here; each family of commands lives in its
own module of this package and is added by its ``register(app)``."""

from __future__ import annotations

from typing import Annotated

import typer

from candor import __version__
from candor.cli import audit, collections, faces, governance, serve
from candor.cli import eval as eval_commands
from candor.cli.common import console

app = typer.Typer(
    name="candor",
    help="Self-hosted face recognition with accountability built in.\n\n"
         "Detect and compare faces in photos, index them into collections and search them, "
         "or serve Amazon Rekognition's API to any AWS SDK.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
        "--as", envvar="CANDOR_ORG", help="Act as this organisation: every call is decided "
        "by the policy and recorded in the audit ledger under it [default: local].")] = None,
    category: Annotated[str | None, typer.Option(
        "--category", envvar="CANDOR_CATEGORY",
        help="The use-case category you act under [default: general].")] = None,
    policy: Annotated[str | None, typer.Option(
        "--policy", envvar="CANDOR_POLICY",
        help="Policy file or shipped policy name for these calls [default: open].")] = None,
    no_normalisation: Annotated[bool, typer.Option(
        "--no-normalisation", help="Score with the raw cosine, without score normalisation "
        "(also CANDOR_NORMALISATION=off): for comparison; the audit ledger records which "
        "scoring was used. See docs/fairness.md.")] = False,
) -> None:
    """Self-hosted face recognition with accountability built in."""
    import os

    # read by candor.governance.gate.governed() when a command builds its service
    for name, value in (("CANDOR_ORG", as_org), ("CANDOR_CATEGORY", category),
                        ("CANDOR_POLICY", policy)):
        if value is not None:
            os.environ[name] = value
    if no_normalisation:  # read by candor.scoring.similarity, here and in any process started from here
        os.environ["CANDOR_NORMALISATION"] = "off"


faces.register(app)  # detect, compare
collections.register(app)  # collection, faces, user, index, search
serve.register(app)  # serve, keys: the HTTP API
governance.register(app)  # audit, report, erase, retention, policy
audit.register(app)  # audit: verify, tail, search, keygen, checkpoint
eval_commands.register(app)  # eval: accuracy, calibration, fairness


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
