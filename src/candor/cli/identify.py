"""``candor identify``: every face of each photo named against a collection (SearchFacesInImage),
and ``candor sdk-path``: the folder that teaches the AWS SDKs candor's own operations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

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
)

UNKNOWN = "unknown"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def register(app: typer.Typer) -> None:
    """Add ``identify`` and ``sdk-path`` to the ``candor`` command."""
    app.command("identify")(identify)
    app.command("sdk-path")(sdk_path)


def sdk_path() -> None:
    """Print the folder to put on botocore's data path: AWS_DATA_PATH=$(candor sdk-path) lets
    boto3 and the aws CLI call candor's own operations (SearchFacesInImage)."""
    from candor.service.model import sdk_path as path

    print(path())


def label(face: dict[str, Any]) -> tuple[str, float | None]:
    """Who a searched face is: its best match's ExternalImageId (else UserId, else FaceId),
    or the best user's UserId, with the Similarity; ``unknown`` when nothing matched."""
    if face.get("UserMatches"):
        best = face["UserMatches"][0]
        return best["User"]["UserId"], best["Similarity"]
    if face.get("FaceMatches"):
        best = face["FaceMatches"][0]
        f = best["Face"]
        return f.get("ExternalImageId") or f.get("UserId") or f["FaceId"], best["Similarity"]
    return UNKNOWN, None


def identify(
    collection_id: Annotated[str, typer.Argument(help="Collection to search.")],
    images: Annotated[list[Path], typer.Argument(help="Photos (JPEG/PNG) or folders of photos.")],
    users: Annotated[bool, typer.Option(
        "--users", help="Match the collection's users instead of its faces.")] = False,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="FaceMatchThreshold: minimum similarity 0-100 [default: size-aware, the "
        "lowest at which a stranger's FPIR stays <= 1% for this collection's size, never below "
        "85; see docs/fairness.md].")] = None,
    max_faces: Annotated[int | None, typer.Option(
        "--max-faces", help="Search at most this many faces per photo, largest first "
        "(1-100).")] = None,
    quality_filter: Annotated[str | None, typer.Option(
        "--quality-filter", help="NONE (default), AUTO, LOW, MEDIUM or HIGH.")] = None,
    annotate: Annotated[Path | None, typer.Option(
        "--annotate", help="Write a copy of the photo with boxes and names drawn: a file for "
        "one photo (.jpg/.png), else a folder.")] = None,
    json_output: JsonOption = False, backend: BackendOption = None,
    detector: DetectorOption = None, data_dir: DataDirOption = None,
) -> None:
    """Name every face in each photo: the best match's ExternalImageId (or UserId), or
    "unknown".

    With --json and one photo, prints exactly the SearchFacesInImage response; with several,
    one JSON object per line with an "Image" key.
    """
    from candor.errors import CandorError
    from candor.face.imaging import load_image

    paths = expand_images(images)
    if not paths:
        fail("no photos given")
    service = make_service(data_dir, backend, detector)
    base: dict[str, Any] = {"CollectionId": collection_id}
    if threshold is not None:
        base["FaceMatchThreshold"] = threshold
    if max_faces is not None:
        base["MaxFaces"] = max_faces
    if quality_filter is not None:
        base["QualityFilter"] = quality_filter.upper()
    if users:
        base["Match"] = "USERS"
    failed = False
    for path in paths:
        try:
            image = load_image(path)
            response = service.call("SearchFacesInImage", {**base, "Image": {"Bytes": image}})
        except CandorError as exc:
            if len(paths) == 1:
                with cli_errors():
                    raise
            failed = True
            console.print(f"[red]{escape(str(path))}: {escape(exc.message)}[/red]")
            continue
        if annotate is not None:
            from candor.cli.annotate import draw

            draw(image, response, _annotated_path(annotate, path, len(paths)))
        if json_output:
            if len(paths) == 1:
                print_json(response)
            else:
                print_json_line({"Image": str(path), **response})
            continue
        _print(path, response)
    from candor.store import save_open_indexes

    save_open_indexes()
    if failed:
        raise typer.Exit(1)


def _annotated_path(out: Path, photo: Path, count: int) -> Path:
    if count == 1 and out.suffix.lower() in _IMAGE_SUFFIXES:
        out.parent.mkdir(parents=True, exist_ok=True)
        return out
    out.mkdir(parents=True, exist_ok=True)
    return out / photo.name


def _print(path: Path, response: dict) -> None:
    faces = response["SearchedFaces"]
    console.print(f"[bold]{escape(str(path))}[/bold]: {len(faces)} face(s) searched"
                  + (f", {len(response['UnsearchedFaces'])} not searched"
                     if response["UnsearchedFaces"] else ""))
    for i, face in enumerate(faces, 1):
        name, sim = label(face)
        box = face["FaceDetail"]["BoundingBox"]
        where = f"left {box['Left']:.2f} top {box['Top']:.2f}"
        shown = f"{escape(name)} ({sim:.1f})" if sim is not None else UNKNOWN
        console.print(f"  {i}. {shown}  [dim]{where}[/dim]")
    for face in response["UnsearchedFaces"]:
        console.print(f"  -  not searched: {', '.join(face['Reasons'])}")
