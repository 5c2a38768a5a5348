"""``candor serve`` (Rekognition's HTTP API for any AWS SDK) and ``candor keys create|list|revoke``.

Added to ``candor`` by :func:`register`.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from candor.cli.common import (
    BackendOption,
    DataDirOption,
    DetectorOption,
    JsonOption,
    cli_errors,
    console,
    fail,
    id_column,
    print_json,
    print_table,
    settings,
)


def _key_lines(key_id: str, secret: str) -> str:
    return f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n"


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).", min=0, max=65535)] = 8080,
    data_dir: DataDirOption = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, max=1024,
        help="Operations run in parallel (worker threads) [default: 4 per core, at most 32: "
             "enough that images are detected while others' faces are embedded].")] = None,
    s3_endpoint_url: Annotated[str | None, typer.Option(
        "--s3-endpoint-url",
        help="S3-compatible endpoint for Image.S3Object (also CANDOR_S3_ENDPOINT_URL; "
             "credentials from the usual AWS environment variables).")] = None,
    policy: Annotated[str | None, typer.Option(
        "--policy",
        help="Policy file, or a shipped policy's name (moratorium-2020, eu-ai-act, open) "
             "(also CANDOR_POLICY) [default: open: allow all, audit all]. Re-read when the "
             "file changes.")] = None,
    retention_interval: Annotated[float, typer.Option(
        "--retention-interval", min=0,
        help="Seconds between retention purges (faces past their collection's retention "
             "period are deleted, with a receipt in the ledger); 0 turns the timer off.")]
    = 3600,
    signing_key: Annotated[str | None, typer.Option(
        "--signing-key",
        help="Ed25519 private key (PEM, from `candor audit keygen`, kept outside the data "
             "dir; also CANDOR_SIGNING_KEY): sign the audit chain's head every "
             "--checkpoint-interval seconds and on stop, so `candor audit verify "
             "--public-key` can prove it was not rewritten.")]
    = None,
    checkpoint_interval: Annotated[float, typer.Option(
        "--checkpoint-interval", min=0,
        help="Seconds between signed checkpoints with --signing-key (0: only on stop).")]
    = 300,
    bucket: Annotated[list[str] | None, typer.Option(
        "--bucket",
        help="Serve a local folder, read-only, as S3 bucket NAME for every S3Object (images "
             "and videos): NAME=DIR; repeatable (also CANDOR_BUCKETS).")] = None,
    notify_url: Annotated[str | None, typer.Option(
        "--notify-url",
        help="POST Rekognition's completion message of a video job whose request had a "
             "NotificationChannel to this URL (also CANDOR_NOTIFY_URL).")] = None,
    backend: BackendOption = None,
    detector: DetectorOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Serve Amazon Rekognition's API (AWS JSON 1.1, SigV4) so any AWS SDK can use candor.

    Point the SDK at it with endpoint_url (boto3) or --endpoint-url (aws CLI). On first start,
    when no access key exists, one admin key is created and printed.
    """
    import uvicorn

    from candor.api.app import Gateway, create_app
    from candor.api.keys import KeyStore
    from candor.governance.gate import Gate
    from candor.service import Service

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with cli_errors():
        config = settings(data_dir, backend, detector, policy=policy,
                          s3_endpoint_url=s3_endpoint_url, signing_key=signing_key,
                          buckets=tuple(bucket) if bucket else None, notify_url=notify_url)
        from candor.face.video import parse_buckets

        parse_buckets(config.buckets)  # a bad --bucket is refused before the server starts
        # the bare service: the gate goes in front per request, with the key's principal
        service = Service(settings=config)
        keys = KeyStore.open(service.data_dir, config.database_url)
        gate = Gate.for_service(service, config.policy)
        gate.record_policy_in_force()
        checkpointer = None
        if config.signing_key:
            from candor.governance.checkpoints import CheckpointTimer, load_private_key

            checkpointer = CheckpointTimer(
                gate.ledger, load_private_key(config.signing_key, service.data_dir),
                checkpoint_interval)
        first = keys.ensure_admin_key()
    if first is not None:
        key, secret = first
        # shown once, on stdout, for the operator; never written to the log
        sys.stdout.write("candor: no access keys yet; created an admin key. Use it with any "
                         "AWS SDK:\n" + _key_lines(key.access_key_id, secret))
        sys.stdout.flush()
    if host not in ("127.0.0.1", "::1", "localhost"):
        logging.getLogger("candor.api").warning(
            "serving plain HTTP on %s: SigV4 protects integrity, not confidentiality; put a "
            "TLS-terminating proxy in front before images travel over a network", host)
    gateway = Gateway(service, keys, workers, gate=gate, s3_endpoint_url=config.s3_endpoint_url,
                      retention_interval=retention_interval)
    gateway.checkpointer = checkpointer
    app = create_app(gateway)
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False,
                server_header=False)


keys_app = typer.Typer(help="Access keys for the HTTP API: one per organisation and use case.",
                       no_args_is_help=True)

OrgOption = Annotated[str, typer.Option("--org", help="The organisation the key is issued to.")]
CategoryOption = Annotated[str, typer.Option(
    "--category", help="Declared use-case category: general, identity_verification, media, "
                       "research, child_safety, law_enforcement, or one the policy declares.")]


def _keys(data_dir):
    from candor.api.keys import KeyStore

    s = settings(data_dir)
    return KeyStore.open(s.ensure_data_dir(), s.database_url)


def _known_category(category: str, policy: str | None, data_dir) -> None:
    """Refuse a category the policy in force does not know: the policy denies every call of
    such a key, so issuing it only postpones the error to the key's first use."""
    from candor.governance.policy import load_policy, resolve_policy_path, shipped_policy_path

    spec = policy or settings(data_dir).policy
    with cli_errors():
        p = load_policy(resolve_policy_path(spec) if spec else shipped_policy_path("open"))
    if category not in p.categories:
        fail(escape(f"category {category!r} is not known to policy {p.name!r}; known: "
                    f"{', '.join(p.categories)} (a policy can declare more under "
                    "'categories:')"))


def _governed_keys(data_dir):
    """The key store, and the gate that decides and records key creation and revocation
    (acting as the CLI's principal: ``--as``/CANDOR_ORG, CANDOR_CATEGORY)."""
    from candor.governance.gate import Gate, local_principal

    s = settings(data_dir)
    keys = _keys(data_dir)
    return keys, Gate.for_store(keys.store, s), local_principal(s)


@keys_app.command("create")
def keys_create(org: OrgOption, category: CategoryOption = "general",
                policy: Annotated[str | None, typer.Option(
                    "--policy", help="The policy the key will be used under, whose categories "
                    "are accepted (also candor --policy, CANDOR_POLICY) [default: open].")]
                = None,
                data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """Issue a key; the secret is printed once and cannot be shown again. The category must
    be one the policy in force knows."""
    _known_category(category, policy, data_dir)
    with cli_errors():
        keys, gate, principal = _governed_keys(data_dir)
        key, secret = gate.run_candor(principal, "CreateAccessKey",
                                      {"Org": org, "Category": category},
                                      lambda: keys.create(org, category))
    if json_output:
        print_json({"AccessKeyId": key.access_key_id, "SecretAccessKey": secret,
                    "Org": key.org, "Category": key.category})
    else:
        sys.stdout.write(_key_lines(key.access_key_id, secret))


@keys_app.command("list")
def keys_list(data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """List issued keys (never their secrets)."""
    with cli_errors():
        rows = _keys(data_dir).list()
    if json_output:
        print_json([{"AccessKeyId": k.access_key_id, "Org": k.org, "Category": k.category,
                     "CreatedAt": k.created_at, "RevokedAt": k.revoked_at} for k in rows])
        return
    table = Table(title=f"{len(rows)} access key(s)")
    id_column(table, "access key id")
    for column in ("org", "category"):
        table.add_column(column)
    id_column(table, "created")
    table.add_column("status")
    for k in rows:
        table.add_row(k.access_key_id, k.org, k.category, f"{k.created_at:%Y-%m-%d %H:%M}",
                      "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}")
    print_table(table)


@keys_app.command("revoke")
def keys_revoke(access_key_id: Annotated[str, typer.Argument(help="The key to revoke.")],
                data_dir: DataDirOption = None) -> None:
    """Revoke a key; requests signed with it are refused from the next one on."""
    with cli_errors():
        keys, gate, principal = _governed_keys(data_dir)
        key = gate.run_candor(principal, "RevokeAccessKey", {"AccessKeyId": access_key_id},
                              lambda: keys.revoke(access_key_id))
    console.print(f"revoked {key.access_key_id} ({key.org}, {key.category})")


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``keys`` to the main ``candor`` command."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
