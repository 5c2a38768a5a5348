"""``candor detect`` and ``candor compare``: faces in photos, and two photos compared."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
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
    working,
)
from candor.errors import CandorError
from candor.face.imaging import load_image


def register(app: typer.Typer) -> None:
    """Add ``detect`` and ``compare`` to the ``candor`` command."""
    app.command("detect")(detect)
    app.command("compare")(compare)


def detect(
    images: Annotated[list[Path], typer.Argument(help="Photos (JPEG/PNG) or folders of photos.")],
    attributes: Annotated[str, typer.Option(
        "--attributes", help="DEFAULT, or ALL to add EyesOpen and MouthOpen.")] = "DEFAULT",
    json_output: JsonOption = False,
    backend: BackendOption = None,
    detector: DetectorOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Find the faces in photos: box, confidence, landmarks, pose, quality.

    With --json and one photo, prints exactly Rekognition's DetectFaces response
    ({"FaceDetails": [...]}); with several, one JSON object per line with an "Image" key.
    """
    paths = expand_images(images)
    if not paths:
        fail("no JPEG or PNG files found in the given folders")
    service = make_service(data_dir, backend, detector)
    request_attributes = [a.strip().upper() for a in attributes.split(",") if a.strip()]

    def run(path: Path) -> dict:
        return service.call("DetectFaces", {"Image": {"Bytes": load_image(path)},
                                            "Attributes": request_attributes})

    if len(paths) == 1:
        with cli_errors():
            response = run(paths[0])
        if json_output:
            print_json(response)
        else:
            _faces_table(paths[0], response["FaceDetails"])
        return

    failures = 0
    rows: list[tuple[Path, dict | None, str | None]] = []
    with progress_bar(disable=json_output) as progress:
        task = progress.add_task("detecting", total=len(paths))
        for path in paths:
            try:
                response, error = run(path), None
            except CandorError as exc:
                response, error = None, f"{exc.code}: {exc.message}"
                failures += 1
            if json_output:
                print_json_line({"Image": str(path), **response} if response else
                                {"Image": str(path), "Error": error})
            rows.append((path, response, error))
            progress.advance(task)
    if not json_output:
        _summary_table(rows)
    if failures:
        raise typer.Exit(2)


def compare(
    source: Annotated[Path, typer.Argument(help="Photo whose largest face is compared.")],
    target: Annotated[Path, typer.Argument(help="Photo with the faces to compare against.")],
    threshold: Annotated[float, typer.Option(
        "--threshold", min=0, max=100,
        help="Similarity (0-100) at or above which a face counts as a match.")] = 80.0,
    json_output: JsonOption = False,
    backend: BackendOption = None,
    detector: DetectorOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Compare the largest face in SOURCE with every face in TARGET.

    With --json, prints exactly Rekognition's CompareFaces response.
    """
    service = make_service(data_dir, backend, detector)
    with cli_errors(), working(f"comparing {source.name} with {target.name}"):
        response = service.call("CompareFaces", {
            "SourceImage": {"Bytes": load_image(source)},
            "TargetImage": {"Bytes": load_image(target)},
            "SimilarityThreshold": threshold,
        })
    if json_output:
        print_json(response)
        return
    table = Table(title=f"{source.name} vs {target.name} (threshold {threshold:g})")
    for col in ("face", "match", "similarity", "left", "top", "width", "height"):
        table.add_column(col, justify="right" if col != "match" else "center")
    faces = [(m["Face"], m["Similarity"], True) for m in response["FaceMatches"]]
    faces += [(f, None, False) for f in response["UnmatchedFaces"]]
    for i, (face, sim, matched) in enumerate(faces, 1):
        box = face["BoundingBox"]
        table.add_row(str(i), "[green]yes[/green]" if matched else "no",
                      f"{sim:.2f}" if sim is not None else "-",
                      *(f"{box[k]:.3f}" for k in ("Left", "Top", "Width", "Height")))
    console.print(table)
    n = len(response["FaceMatches"])
    console.print(f"{n} of {len(faces)} face(s) in {target.name} match.")


def _faces_table(path: Path, faces: list[dict]) -> None:
    extras = [k for k in ("EyesOpen", "MouthOpen") if any(k in f for f in faces)]
    table = Table(title=f"{path.name}: {len(faces)} face(s)")
    for col in ("#", "conf", "box: left top w h", "roll yaw pitch", "bright", "sharp",
                *(("eyes open",) if "EyesOpen" in extras else ()),
                *(("mouth open",) if "MouthOpen" in extras else ())):
        table.add_column(col, justify="right", no_wrap=col.startswith(("box", "roll")))
    for i, face in enumerate(faces, 1):
        box, pose, q = face["BoundingBox"], face.get("Pose"), face.get("Quality", {})
        table.add_row(
            str(i), f"{face['Confidence']:.1f}",
            " ".join(f"{box[k]:.2f}" for k in ("Left", "Top", "Width", "Height")),
            " ".join(f"{pose[k]:.0f}" for k in ("Roll", "Yaw", "Pitch")) if pose else "-",
            *(f"{q[k]:.0f}" if k in q else "-" for k in ("Brightness", "Sharpness")),
            *(_yes_no(face.get(k)) for k in extras),
        )
    console.print(table)


def _yes_no(attribute: dict | None) -> str:
    if attribute is None:
        return "-"
    return f"{'yes' if attribute['Value'] else 'no'} ({attribute['Confidence']:.0f})"


def _summary_table(rows: list[tuple[Path, dict | None, str | None]]) -> None:
    table = Table(title=f"{len(rows)} image(s)")
    table.add_column("image")
    table.add_column("faces", justify="right")
    table.add_column("note")
    for path, response, error in rows:
        faces = str(len(response["FaceDetails"])) if response else "-"
        table.add_row(str(path), faces, f"[red]{error}[/red]" if error else "")
    console.print(table)
