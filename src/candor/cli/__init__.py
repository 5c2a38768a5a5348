"""The ``candor`` command: the root (global options) here; each family of commands lives in its
own module of this package and is added by its ``register(app)``."""

from __future__ import annotations

from typing import Annotated

import typer

from candor import __version__
from candor.cli import audit, collections, faces, governance, serve, video
from candor.cli import eval as eval_commands
from candor.cli.common import console, remember_globals
from candor.config import DEFAULT_CATEGORY, OPERATOR_ORG

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
    no_normalisation: Annotated[bool, typer.Option(
        "--no-normalisation", help="Score with the raw cosine, without score normalisation "
        "(also CANDOR_NORMALISATION=off): for comparison; the audit ledger records which "
        "scoring was used. See docs/fairness.md.")] = False,
) -> None:
    """Self-hosted face recognition with accountability built in."""
    remember_globals(org=as_org, category=category, policy=policy,
                     authorization_reference=authorization_ref,
                     normalisation=False if no_normalisation else None)


faces.register(app)  # detect, compare
collections.register(app)  # collection, faces, user, index, search
serve.register(app)  # serve, keys: the HTTP API
governance.register(app)  # audit, report, erase, retention, policy
audit.register(app)  # audit: verify, tail, search, keygen, checkpoint
eval_commands.register(app)  # eval: accuracy, calibration, fairness
video.register(app)  # video: detect, search, redact; redact (photos)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
