"""CLI for collections, faces, users and search: ``candor collection|index|faces|search|user``.

Every command is a thin door onto :meth:`Service.call` with the Rekognition operation's wire
request, so the CLI and the Python API give the same answers and the same typed errors.
``--json`` prints the operation's exact Rekognition response; ``candor index --json`` on several
photos prints one IndexFaces response per line (with an ``Image`` key), flushed as each photo is
stored, so a caller can rely on every line it has read.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import TextColumn
from rich.table import Table

from candor.cli.common import (
    BackendOption,
    DataDirOption,
    DetectorOption,
    JsonOption,
    cli_errors,
    console,
    expand_images,
    fail,
    make_service,
    print_json,
    print_json_line,
    progress_bar,
)
from candor.errors import CandorError

collection_app = typer.Typer(help="Create, list, describe and delete face collections.",
                             no_args_is_help=True)
faces_app = typer.Typer(help="List and delete the faces stored in a collection.",
                        no_args_is_help=True)
user_app = typer.Typer(help="Users: named groups of a person's faces in a collection.",
                       no_args_is_help=True)

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Collection = Annotated[str, typer.Argument(help="Collection id ([a-zA-Z0-9_.-], 1-255 chars).")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``candor`` app."""
    app.add_typer(collection_app, name="collection")
    app.add_typer(faces_app, name="faces")
    app.add_typer(user_app, name="user")
    app.command("index")(index)
    app.command("search")(search)


def _call(service, name: str, params: dict) -> dict:
    with cli_errors():
        return service.call(name, params)


def _warm(service, collection_id: str) -> None:
    """After indexing, bring the collection's vector index up to date and save it, so the
    next ``candor search`` process loads it instead of reading every embedding."""
    from candor.errors import ResourceNotFound
    from candor.store import open_store

    store = open_store(service.data_dir)
    try:
        store.face_index(store.collection(collection_id).id)
    except ResourceNotFound:
        return
    store.save_indexes()


def _done(service) -> None:
    """Keep the vector indexes this process built, so the next command starts warm."""
    from candor.store import save_open_indexes

    save_open_indexes()


# ------------------------------------------------------------------ collection


@collection_app.command("create")
def collection_create(collection_id: Collection, json_output: JsonOption = False,
                      data_dir: DataDirOption = None) -> None:
    """Create an empty collection."""
    response = _call(make_service(data_dir), "CreateCollection", {"CollectionId": collection_id})
    if json_output:
        print_json(response)
    else:
        console.print(f"created collection {collection_id} ({response['CollectionArn']})")


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
    response = _call(service, "ListCollections", params)
    if json_output:
        print_json(response)
        return
    table = Table(title=f"{len(response['CollectionIds'])} collection(s)")
    for col in ("collection", "faces", "users", "created"):
        table.add_column(col, justify="left" if col == "collection" else "right")
    import datetime

    for cid in response["CollectionIds"]:
        d = _call(service, "DescribeCollection", {"CollectionId": cid})
        created = datetime.datetime.fromtimestamp(d["CreationTimestamp"], datetime.timezone.utc)
        table.add_row(cid, str(d["FaceCount"]), str(d["UserCount"]),
                      created.strftime("%Y-%m-%d %H:%M:%SZ"))
    console.print(table)
    if response.get("NextToken"):
        console.print(f"more: --next-token {response['NextToken']}")


@collection_app.command("describe")
def collection_describe(collection_id: Collection, json_output: JsonOption = False,
                        data_dir: DataDirOption = None) -> None:
    """Face and user counts, model version, ARN and creation time of a collection."""
    response = _call(make_service(data_dir), "DescribeCollection", {"CollectionId": collection_id})
    if json_output:
        print_json(response)
        return
    import datetime

    created = datetime.datetime.fromtimestamp(response["CreationTimestamp"], datetime.timezone.utc)
    table = Table(title=collection_id, show_header=False)
    for key, value in (("faces", response["FaceCount"]), ("users", response["UserCount"]),
                       ("face model", response["FaceModelVersion"]),
                       ("ARN", response["CollectionARN"]), ("created", created.isoformat())):
        table.add_row(key, str(value))
    console.print(table)
    from candor.cli.fpir_table import print_fpir

    print_fpir(response.get("CandorSearchFpir") or {})


@collection_app.command("delete")
def collection_delete(collection_id: Collection, json_output: JsonOption = False,
                      data_dir: DataDirOption = None) -> None:
    """Delete a collection with all its faces and users."""
    response = _call(make_service(data_dir), "DeleteCollection", {"CollectionId": collection_id})
    if json_output:
        print_json(response)
    else:
        console.print(f"deleted collection {collection_id}")


# ------------------------------------------------------------------ index


def external_id(path: Path, source: str) -> str:
    """ExternalImageId from a photo's folder (``person/photo.jpg`` -> ``person``) or file stem,
    with characters Rekognition does not allow replaced by ``_``."""
    raw = path.parent.name if source == "folder" else path.stem
    return re.sub(r"[^a-zA-Z0-9_.\-:]", "_", raw)[:255] or "_"


#: IndexFaces calls in flight during ``candor index`` (photos decode ahead on their own pool
#: either way). 2 measured ~35% faster than 1 on 2 cores, but a kill could then leave 2 stored
#: photos unreported instead of 1 (tests/test_collections_crash.py bounds that).
INDEX_WORKERS = 1


def index(
    collection_id: Collection,
    paths: Annotated[list[Path], typer.Argument(help="Photos, or folders of <person>/<photo>.")],
    external_id_from: Annotated[str, typer.Option(
        "--external-id-from", help="ExternalImageId from the photo's folder name, the file "
        "name, or none.")] = "folder",
    max_faces: Annotated[int | None, typer.Option(
        "--max-faces", help="Index at most this many faces per photo (largest first).")] = None,
    quality_filter: Annotated[str, typer.Option(
        "--quality-filter", help="NONE, AUTO, LOW, MEDIUM or HIGH.")] = "AUTO",
    create: Annotated[bool, typer.Option("--create", help="Create the collection if it does "
                                                          "not exist.")] = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="One IndexFaces response per line (with an Image key), as each photo "
        "is stored.")] = False,
    backend: BackendOption = None, detector: DetectorOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Index the faces in photos into a collection; a folder tree <person>/<photo> gets the
    folder name as each face's ExternalImageId."""
    if external_id_from not in ("folder", "file", "none"):
        fail("--external-id-from must be folder, file or none")
    photos = expand_images(paths)
    if not photos:
        fail("no JPEG or PNG files found in the given paths")
    service = make_service(data_dir, backend, detector)
    from candor.errors import ResourceNotFound

    try:
        service.call("DescribeCollection", {"CollectionId": collection_id})
    except ResourceNotFound:
        if not create:
            fail(f"ResourceNotFoundException: The collection id: {collection_id} does not exist "
                 "(use --create)")
        _call(service, "CreateCollection", {"CollectionId": collection_id})
    except CandorError as exc:
        fail(escape(f"{exc.code}: {exc.message}"))

    from candor.face.imaging import load_image
    from candor.face.pipeline import map_ordered

    def index_one(decoded) -> dict:
        """IndexFaces for one decoded photo (on the indexing pool, while others decode)."""
        if decoded.error is not None:
            raise decoded.error
        params: dict = {"CollectionId": collection_id, "QualityFilter": quality_filter.upper()}
        if external_id_from != "none":
            params["ExternalImageId"] = external_id(decoded.item, external_id_from)
        if max_faces is not None:
            params["MaxFaces"] = max_faces
        params["Image"] = {"Bytes": decoded.value}
        return service.call("IndexFaces", params)

    indexed, no_face, errors = 0, 0, []
    reasons: Counter[str] = Counter()
    progress = progress_bar(json_output, TextColumn("{task.fields[faces]} faces"))
    # photos decode on one pool, a few ahead, while IndexFaces runs on another; results come
    # back (and are printed) in the photos' order, each after its faces are committed
    decoded = map_ordered(load_image, photos, workers=1, ahead=2)
    with progress:
        task = progress.add_task("indexing", total=len(photos), faces=0)
        for outcome in map_ordered(index_one, decoded, workers=INDEX_WORKERS,
                                   ahead=INDEX_WORKERS, errors=(CandorError,)):
            photo = outcome.item.item
            try:
                if outcome.error is not None:
                    raise outcome.error
                response = outcome.value
            except CandorError as exc:
                if exc.code == "ResourceNotFoundException" or "validation error" in exc.message:
                    fail(escape(f"{exc.code}: {exc.message}"))  # the request is wrong: stop
                errors.append((photo, f"{exc.code}: {exc.message}"))
                if json_output:
                    print_json_line({"Image": str(photo), "Error": {"Code": exc.code,
                                                                    "Message": exc.message}})
                    sys.stdout.flush()
                progress.advance(task)
                continue
            n = len(response["FaceRecords"])
            indexed += n
            no_face += not (n or response["UnindexedFaces"])
            for face in response["UnindexedFaces"]:
                reasons.update(face["Reasons"])
            if json_output and len(photos) == 1:
                print_json(response)  # one photo: exactly Rekognition's IndexFaces response
            elif json_output:
                print_json_line({"Image": str(photo), **response})
                sys.stdout.flush()
            progress.update(task, advance=1, faces=indexed)
    _warm(service, collection_id)
    if not json_output:
        skipped = sum(reasons.values())
        console.print(f"indexed {indexed} face(s) from {len(photos)} photo(s) into "
                      f"{collection_id}; {skipped} face(s) skipped; {no_face} photo(s) without "
                      f"a face; {len(errors)} photo(s) failed")
        if reasons:
            console.print("skipped: " + ", ".join(f"{r} {c}" for r, c in reasons.most_common()))
        for photo, error in errors[:20]:
            console.print(f"[red]failed[/red] {escape(str(photo))}: {escape(error)}",
                          highlight=False)
    if errors:
        raise typer.Exit(2)


# ------------------------------------------------------------------ faces


@faces_app.command("list")
def faces_list(
    collection_id: Collection,
    max_results: Annotated[int | None, typer.Option("--max-results")] = None,
    next_token: Annotated[str | None, typer.Option("--next-token")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="Only this user's faces")] = None,
    face_ids: Annotated[list[str] | None, typer.Option("--face-id", help="Only these")] = None,
    json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """List stored faces (one page; --next-token for the next)."""
    params: dict = {"CollectionId": collection_id}
    for key, value in (("MaxResults", max_results), ("NextToken", next_token),
                       ("UserId", user_id), ("FaceIds", face_ids or None)):
        if value is not None:
            params[key] = value
    response = _call(make_service(data_dir), "ListFaces", params)
    if json_output:
        print_json(response)
        return
    table = Table(title=f"{collection_id}: {len(response['Faces'])} face(s)")
    for col in ("FaceId", "ExternalImageId", "UserId", "ImageId", "conf"):
        table.add_column(col, no_wrap=True)
    for f in response["Faces"]:
        table.add_row(f["FaceId"], f.get("ExternalImageId", ""), f.get("UserId", ""),
                      f["ImageId"], f"{f['Confidence']:.1f}")
    console.print(table)
    if response.get("NextToken"):
        console.print(f"more: --next-token {response['NextToken']}")


@faces_app.command("delete")
def faces_delete(
    collection_id: Collection,
    face_ids: Annotated[list[str], typer.Argument(help="FaceIds to delete.")],
    json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """Delete faces (faces associated with a user must be disassociated first)."""
    response = _call(make_service(data_dir), "DeleteFaces",
                     {"CollectionId": collection_id, "FaceIds": face_ids})
    if json_output:
        print_json(response)
        return
    console.print(f"deleted {len(response['DeletedFaces'])} face(s)")
    for f in response["UnsuccessfulFaceDeletions"]:
        console.print(f"not deleted {f['FaceId']}: {', '.join(f['Reasons'])}")


# ------------------------------------------------------------------ search


def _image_param(path: Path) -> dict:
    from candor.face.imaging import load_image

    with cli_errors():
        return {"Bytes": load_image(path)}


def _matches_table(title: str, matches: list[dict]) -> Table:
    table = Table(title=title)
    for col in ("#", "similarity", "ExternalImageId", "UserId", "FaceId"):
        table.add_column(col, justify="right" if col in ("#", "similarity") else "left",
                         no_wrap=True)
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
    """Search a collection for the faces that match a photo's largest face (or a FaceId)."""
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
        params["Image"] = _image_param(Path(image))
    response = _call(service, name, params)
    _done(service)
    if json_output:
        print_json(response)
        return
    matches = response["FaceMatches"]
    console.print(_matches_table(f"{len(matches)} match(es) for {image} in {collection_id}",
                                 matches))


# ------------------------------------------------------------------ users

UserIdArg = Annotated[str, typer.Argument(help="UserId ([a-zA-Z0-9_.:-], 1-128 chars).")]
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
    response = _call(make_service(data_dir), "CreateUser", _with_token(
        {"CollectionId": collection_id, "UserId": user_id}, token))
    print_json(response) if json_output else console.print(f"created user {user_id}")


@user_app.command("delete")
def user_delete(collection_id: Collection, user_id: UserIdArg, token: TokenOption = None,
                json_output: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Delete a user (its faces stay in the collection, unassociated)."""
    response = _call(make_service(data_dir), "DeleteUser", _with_token(
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
    response = _call(make_service(data_dir), "ListUsers", params)
    if json_output:
        print_json(response)
        return
    table = Table(title=f"{collection_id}: {len(response['Users'])} user(s)")
    table.add_column("UserId")
    table.add_column("status")
    for u in response["Users"]:
        table.add_row(u["UserId"], u["UserStatus"])
    console.print(table)
    if response.get("NextToken"):
        console.print(f"more: --next-token {response['NextToken']}")


@user_app.command("associate")
def user_associate(
    collection_id: Collection, user_id: UserIdArg,
    face_ids: Annotated[list[str], typer.Argument(help="FaceIds to associate (1-100).")],
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="UserMatchThreshold [default: 75].")] = None,
    token: TokenOption = None, json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """Associate faces with a user."""
    params = _with_token({"CollectionId": collection_id, "UserId": user_id, "FaceIds": face_ids},
                         token)
    if threshold is not None:
        params["UserMatchThreshold"] = threshold
    response = _call(make_service(data_dir), "AssociateFaces", params)
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
    response = _call(make_service(data_dir), "DisassociateFaces", _with_token(
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
    if image is not None:
        params["Image"] = _image_param(Path(image))
        response = _call(service, "SearchUsersByImage", params)
    else:
        params.update({"FaceId": face_id} if face_id else {"UserId": user_id})
        response = _call(service, "SearchUsers", params)
    _done(service)
    if json_output:
        print_json(response)
        return
    table = Table(title=f"{len(response['UserMatches'])} user match(es) in {collection_id}")
    for col in ("#", "similarity", "UserId", "status"):
        table.add_column(col)
    for i, m in enumerate(response["UserMatches"], 1):
        table.add_row(str(i), f"{m['Similarity']:.2f}", m["User"]["UserId"],
                      m["User"]["UserStatus"])
    console.print(table)
