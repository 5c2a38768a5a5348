"""CLI for collections, faces and search: ``candor collection|faces|search`` (indexing
photos: :mod:`candor.cli.index`; users: :mod:`candor.cli.users`).

Every command is a thin door onto :meth:`Service.call` with the Rekognition operation's wire
request, so the CLI and the Python API give the same answers and the same typed errors.
``--json`` prints the operation's exact Rekognition response.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from candor.cli.common import (
    BackendOption,
    Collection,
    DataDirOption,
    DetectorOption,
    JsonOption,
    call,
    cli_errors,
    console,
    id_column,
    image_param,
    keep_indexes,
    make_service,
    print_json,
    print_table,
    settings,
    working,
)
from candor.cli.fpir_table import print_fpir

collection_app = typer.Typer(help="Create, list, describe and delete face collections.",
                             no_args_is_help=True)
faces_app = typer.Typer(help="List and delete the faces stored in a collection.",
                        no_args_is_help=True)

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``candor`` app."""
    app.add_typer(collection_app, name="collection")
    app.add_typer(faces_app, name="faces")
    app.command("search")(search)


# ------------------------------------------------------------------ collection


@collection_app.command("create")
def collection_create(collection_id: Collection, json_output: JsonOption = False,
                      keep_thumbnails: Annotated[bool, typer.Option(
                          "--keep-thumbnails", help="Keep a small face thumbnail per indexed "
                          "face, for human reviewers (docs/console.md).")] = False,
                      data_dir: DataDirOption = None) -> None:
    """Create an empty collection."""
    response = call(make_service(data_dir), "CreateCollection", {"CollectionId": collection_id})
    if keep_thumbnails:
        _keep_thumbnails(collection_id, data_dir)
    if json_output:
        print_json(response)
    else:
        console.print(f"created collection {collection_id} ({response['CollectionArn']})")


def _keep_thumbnails(collection_id: str, data_dir) -> None:
    """Turn thumbnails on: the candor operation KeepThumbnails, decided and recorded."""
    from candor.governance.gate import Gate, local_principal
    from candor.store import open_store

    s = settings(data_dir)
    store = open_store(s.ensure_data_dir(), s.database_url, s.index_kind)
    principal = local_principal(s)
    with cli_errors():
        Gate.for_store(store, s).run_candor(
            principal, "KeepThumbnails", {"CollectionId": collection_id},
            lambda: store.set_keep_thumbnails(collection_id, principal.org))


@collection_app.command("list")
def collection_list(
    max_results: Annotated[int | None, typer.Option("--max-results",
                                                    help="At most this many ids.")] = None,
    next_token: Annotated[str | None, typer.Option("--next-token",
                                                   help="Token from the previous page.")] = None,
    json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """List collection ids."""
    params: dict = {}
    if max_results is not None:
        params["MaxResults"] = max_results
    if next_token:
        params["NextToken"] = next_token
    service = make_service(data_dir)
    response = call(service, "ListCollections", params)
    if json_output:
        print_json(response)
        return
    table = Table(title=f"{len(response['CollectionIds'])} collection(s)")
    id_column(table, "collection")
    for col in ("faces", "users"):
        table.add_column(col, justify="right")
    id_column(table, "created", justify="right")
    import datetime

    for cid in response["CollectionIds"]:
        d = call(service, "DescribeCollection", {"CollectionId": cid})
        created = datetime.datetime.fromtimestamp(d["CreationTimestamp"], datetime.timezone.utc)
        table.add_row(cid, str(d["FaceCount"]), str(d["UserCount"]),
                      created.strftime("%Y-%m-%d %H:%M:%SZ"))
    print_table(table)
    if response.get("NextToken"):
        console.print(f"more: --next-token {response['NextToken']}")


@collection_app.command("describe")
def collection_describe(collection_id: Collection, json_output: JsonOption = False,
                        data_dir: DataDirOption = None) -> None:
    """Face and user counts, model version, ARN and creation time of a collection."""
    response = call(make_service(data_dir), "DescribeCollection", {"CollectionId": collection_id})
    if json_output:
        print_json(response)
        return
    import datetime

    created = datetime.datetime.fromtimestamp(response["CreationTimestamp"], datetime.timezone.utc)
    table = Table(title=collection_id, show_header=False)
    table.add_column()
    id_column(table, "")
    for key, value in (("faces", response["FaceCount"]), ("users", response["UserCount"]),
                       ("face model", response["FaceModelVersion"]),
                       ("ARN", response["CollectionARN"]), ("created", created.isoformat())):
        table.add_row(key, str(value))
    print_table(table)
    print_fpir(response.get("CandorSearchFpir") or {})


@collection_app.command("delete")
def collection_delete(collection_id: Collection, json_output: JsonOption = False,
                      data_dir: DataDirOption = None) -> None:
    """Delete a collection with all its faces and users."""
    response = call(make_service(data_dir), "DeleteCollection", {"CollectionId": collection_id})
    if json_output:
        print_json(response)
    else:
        console.print(f"deleted collection {collection_id}")


# ------------------------------------------------------------------ faces


@faces_app.command("list")
def faces_list(
    collection_id: Collection,
    max_results: Annotated[int | None, typer.Option("--max-results")] = None,
    next_token: Annotated[str | None, typer.Option("--next-token")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="Only this user's faces")] = None,
    face_ids: Annotated[list[str] | None, typer.Option("--face-id", help="Only these")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Also show each face's ImageId and "
                                                      "model version.")] = False,
    json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """List stored faces (one page; --next-token for the next). IDs are never cut: the
    table grows wider than the terminal rather than shortening one."""
    params: dict = {"CollectionId": collection_id}
    for key, value in (("MaxResults", max_results), ("NextToken", next_token),
                       ("UserId", user_id), ("FaceIds", face_ids or None)):
        if value is not None:
            params[key] = value
    response = call(make_service(data_dir), "ListFaces", params)
    if json_output:
        print_json(response)
        return
    table = Table(title=f"{collection_id}: {len(response['Faces'])} face(s)")
    for col in ("FaceId", "ExternalImageId", "UserId", *(("ImageId", "model") if wide else ())):
        id_column(table, col)
    table.add_column("conf", justify="right")
    for f in response["Faces"]:
        table.add_row(f["FaceId"], f.get("ExternalImageId", ""), f.get("UserId", ""),
                      *((f["ImageId"], f.get("IndexFacesModelVersion", "")) if wide else ()),
                      f"{f['Confidence']:.1f}")
    print_table(table)
    if response.get("NextToken"):
        console.print(f"more: --next-token {response['NextToken']}")


@faces_app.command("delete")
def faces_delete(
    collection_id: Collection,
    face_ids: Annotated[list[str], typer.Argument(help="FaceIds to delete.")],
    json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """Delete faces (faces associated with a user must be disassociated first)."""
    response = call(make_service(data_dir), "DeleteFaces",
                     {"CollectionId": collection_id, "FaceIds": face_ids})
    if json_output:
        print_json(response)
        return
    console.print(f"deleted {len(response['DeletedFaces'])} face(s)")
    for f in response["UnsuccessfulFaceDeletions"]:
        console.print(f"not deleted {f['FaceId']}: {', '.join(f['Reasons'])}")


# ------------------------------------------------------------------ search


def _matches_table(title: str, matches: list[dict]) -> Table:
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("similarity", justify="right")
    for col in ("ExternalImageId", "UserId", "FaceId"):
        id_column(table, col)
    for i, m in enumerate(matches, 1):
        f = m["Face"]
        table.add_row(str(i), f"{m['Similarity']:.2f}", f.get("ExternalImageId", ""),
                      f.get("UserId", ""), f["FaceId"])
    return table


def search(
    collection_id: Collection,
    image: Annotated[str, typer.Argument(help="A photo (its largest face is searched) or a "
                                              "FaceId stored in the collection.")],
    threshold: Annotated[float | None, typer.Option(
        "--threshold",
        help="FaceMatchThreshold: minimum similarity 0-100 [default: size-aware, FPIR <= 1% "
             "for the collection's size, at least 85; docs/fairness.md].")] = None,
    max_faces: Annotated[int | None, typer.Option(
        "--max-faces", help="Return at most this many matches (1-4096).")] = None,
    quality_filter: Annotated[str | None, typer.Option(
        "--quality-filter", help="NONE (default), AUTO, LOW, MEDIUM or HIGH.")] = None,
    json_output: JsonOption = False, backend: BackendOption = None,
    detector: DetectorOption = None, data_dir: DataDirOption = None,
) -> None:
    """Search a collection for the faces that match a photo's largest face (or a FaceId).

    \b
    Examples:
      candor search staff visitor.jpg
      candor search staff visitor.jpg --threshold 95 --max-faces 5 --json"""
    service = make_service(data_dir, backend, detector)
    params: dict = {"CollectionId": collection_id}
    if threshold is not None:
        params["FaceMatchThreshold"] = threshold
    if max_faces is not None:
        params["MaxFaces"] = max_faces
    if UUID_RE.fullmatch(image) and not Path(image).exists():
        name = "SearchFaces"
        params["FaceId"] = image
    else:
        name = "SearchFacesByImage"
        if quality_filter is not None:
            params["QualityFilter"] = quality_filter.upper()
        params["Image"] = image_param(Path(image))
    with working(f"searching {collection_id}"):
        response = call(service, name, params)
    keep_indexes()
    if json_output:
        print_json(response)
        return
    matches = response["FaceMatches"]
    print_table(_matches_table(f"{len(matches)} match(es) for {image} in {collection_id}",
                               matches))
