"""CLI for users, named groups of a person's faces in a collection: ``candor user
create|delete|list|associate|disassociate|search``; like every collection command, a thin door
onto :meth:`Service.call` with the Rekognition operation's wire request."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from candor.cli.common import (
    BackendOption,
    Collection,
    DataDirOption,
    DetectorOption,
    JsonOption,
    call,
    console,
    fail,
    id_column,
    image_param,
    keep_indexes,
    make_service,
    print_json,
    print_table,
    working,
)

user_app = typer.Typer(help="Users: named groups of a person's faces in a collection.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``candor user`` to the ``candor`` app."""
    app.add_typer(user_app, name="user")


UserIdArg = Annotated[str, typer.Argument(help=r"UserId ([a-zA-Z0-9_.\-:]+, 1-128 chars).")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", help="ClientRequestToken: a retry with the same token is done once.")]


def _with_token(params: dict, token: str | None) -> dict:
    if token:
        params["ClientRequestToken"] = token
    return params


@user_app.command("create")
def user_create(collection_id: Collection, user_id: UserIdArg, token: TokenOption = None,
                json_output: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Create a user in a collection."""
    response = call(make_service(data_dir), "CreateUser", _with_token(
        {"CollectionId": collection_id, "UserId": user_id}, token))
    print_json(response) if json_output else console.print(f"created user {user_id}")


@user_app.command("delete")
def user_delete(collection_id: Collection, user_id: UserIdArg, token: TokenOption = None,
                json_output: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Delete a user (its faces stay in the collection, unassociated)."""
    response = call(make_service(data_dir), "DeleteUser", _with_token(
        {"CollectionId": collection_id, "UserId": user_id}, token))
    print_json(response) if json_output else console.print(f"deleted user {user_id}")


@user_app.command("list")
def user_list(
    collection_id: Collection,
    max_results: Annotated[int | None, typer.Option("--max-results")] = None,
    next_token: Annotated[str | None, typer.Option("--next-token")] = None,
    json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """List the users of a collection."""
    params: dict = {"CollectionId": collection_id}
    if max_results is not None:
        params["MaxResults"] = max_results
    if next_token:
        params["NextToken"] = next_token
    response = call(make_service(data_dir), "ListUsers", params)
    if json_output:
        print_json(response)
        return
    table = Table(title=f"{collection_id}: {len(response['Users'])} user(s)")
    id_column(table, "UserId")
    table.add_column("status")
    for u in response["Users"]:
        table.add_row(u["UserId"], u["UserStatus"])
    print_table(table)
    if response.get("NextToken"):
        console.print(f"more: --next-token {response['NextToken']}")


def _faces_of(service, collection_id: str, external_image_ids: list[str]) -> list[str]:
    """FaceIds of every face indexed with one of ``external_image_ids`` in the collection, in
    index order (ListFaces, page by page, through the service: decided and audited)."""
    wanted, found = set(external_image_ids), []
    params: dict = {"CollectionId": collection_id, "MaxResults": 4096}
    while True:
        page = call(service, "ListFaces", params)
        found += [f["FaceId"] for f in page["Faces"] if f.get("ExternalImageId") in wanted]
        if not page.get("NextToken"):
            return found
        params["NextToken"] = page["NextToken"]


#: FaceIds per AssociateFaces request (Rekognition's limit)
ASSOCIATE_BATCH = 100


@user_app.command("associate")
def user_associate(
    collection_id: Collection, user_id: UserIdArg,
    face_ids: Annotated[list[str] | None, typer.Argument(
        help="FaceIds to associate (or use --external-image-id).")] = None,
    external_image_ids: Annotated[list[str] | None, typer.Option(
        "--external-image-id", help="Also associate every face indexed with this "
        "ExternalImageId in the collection (repeatable), e.g. the folder name given by "
        "candor index.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="UserMatchThreshold [default: 75].")] = None,
    token: TokenOption = None, json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """Associate faces with a user: FaceIds, or every face of an ExternalImageId (more than
    100 faces are sent in several AssociateFaces requests)."""
    service = make_service(data_dir)
    ids = list(face_ids or [])
    if external_image_ids:
        by_external = _faces_of(service, collection_id, external_image_ids)
        if not by_external:
            fail(escape(f"no face in {collection_id} has ExternalImageId "
                        f"{', '.join(external_image_ids)}"))
        ids += [f for f in by_external if f not in ids]
    if not ids:
        fail("give FaceIds or --external-image-id")
    if token and len(ids) > ASSOCIATE_BATCH:
        fail(f"--token needs at most {ASSOCIATE_BATCH} faces (one request)")
    responses = []
    for i in range(0, len(ids), ASSOCIATE_BATCH):
        params = _with_token({"CollectionId": collection_id, "UserId": user_id,
                              "FaceIds": ids[i:i + ASSOCIATE_BATCH]}, token)
        if threshold is not None:
            params["UserMatchThreshold"] = threshold
        responses.append(call(service, "AssociateFaces", params))
    response = responses[-1] if len(responses) == 1 else {
        "AssociatedFaces": [f for r in responses for f in r["AssociatedFaces"]],
        "UnsuccessfulFaceAssociations": [f for r in responses
                                         for f in r["UnsuccessfulFaceAssociations"]],
        "UserStatus": responses[-1]["UserStatus"]}
    if json_output:
        print_json(response)
        return
    console.print(f"associated {len(response['AssociatedFaces'])} face(s) with {user_id} "
                  f"(status {response['UserStatus']})")
    for f in response["UnsuccessfulFaceAssociations"]:
        console.print(f"not associated {f['FaceId']}: {', '.join(f['Reasons'])}")


@user_app.command("disassociate")
def user_disassociate(
    collection_id: Collection, user_id: UserIdArg,
    face_ids: Annotated[list[str], typer.Argument(help="FaceIds to disassociate (1-100).")],
    token: TokenOption = None, json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """Remove faces from a user."""
    response = call(make_service(data_dir), "DisassociateFaces", _with_token(
        {"CollectionId": collection_id, "UserId": user_id, "FaceIds": face_ids}, token))
    if json_output:
        print_json(response)
        return
    console.print(f"disassociated {len(response['DisassociatedFaces'])} face(s) from {user_id}")
    for f in response["UnsuccessfulFaceDisassociations"]:
        console.print(f"not disassociated {f['FaceId']}: {', '.join(f['Reasons'])}")


@user_app.command("search")
def user_search(
    collection_id: Collection,
    image: Annotated[str | None, typer.Argument(help="Photo: its largest face is searched")] = None,
    face_id: Annotated[str | None, typer.Option("--face-id", help="Search by a FaceId")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="Search by a user.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="UserMatchThreshold [default: size-aware, FPIR <= 1% for the "
                                  "collection's users, at least 85; docs/fairness.md].")] = None,
    max_users: Annotated[int | None, typer.Option("--max-users", help="1-500.")] = None,
    json_output: JsonOption = False, backend: BackendOption = None,
    detector: DetectorOption = None, data_dir: DataDirOption = None,
) -> None:
    """Find the users that match a photo's largest face, a FaceId or another user."""
    if sum(x is not None for x in (image, face_id, user_id)) != 1:
        fail("give exactly one of IMAGE, --face-id or --user-id")
    service = make_service(data_dir, backend, detector)
    params: dict = {"CollectionId": collection_id}
    if threshold is not None:
        params["UserMatchThreshold"] = threshold
    if max_users is not None:
        params["MaxUsers"] = max_users
    with working(f"searching the users of {collection_id}"):
        if image is not None:
            params["Image"] = image_param(Path(image))
            response = call(service, "SearchUsersByImage", params)
        else:
            params.update({"FaceId": face_id} if face_id else {"UserId": user_id})
            response = call(service, "SearchUsers", params)
    keep_indexes()
    if json_output:
        print_json(response)
        return
    table = Table(title=f"{len(response['UserMatches'])} user match(es) in {collection_id}")
    table.add_column("#", justify="right")
    table.add_column("similarity", justify="right")
    id_column(table, "UserId")
    table.add_column("status")
    for i, m in enumerate(response["UserMatches"], 1):
        table.add_row(str(i), f"{m['Similarity']:.2f}", m["User"]["UserId"],
                      m["User"]["UserStatus"])
    print_table(table)
