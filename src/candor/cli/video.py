"""``candor video detect|search|celebrities|redact`` and ``candor redact``: stored video from the
command line.

The video commands run the same jobs as the HTTP API's StartFaceDetection / StartFaceSearch /
StartCelebrityRecognition, in this process and through the governance gate (decided by the
policy, recorded in the ledger): the file's folder is served to the job as a local bucket.
``--json`` prints the Get* response.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import TextColumn
from rich.table import Table

from candor.cli.common import (
    BackendOption,
    DataDirOption,
    DetectorOption,
    JsonOption,
    cli_errors,
    console,
    print_json,
    progress_bar,
    settings,
)

LOCAL_BUCKET = "candor-local"

video_app = typer.Typer(help="Faces in stored videos: detect, search a collection, recognise "
                        "the celebrity gallery's people, redact.",
                        no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(help="The video file (MP4, MOV, MKV, WebM, AVI ...).",
                                         exists=True, dir_okay=False)]
FpsOption = Annotated[float | None, typer.Option(
    "--fps", help="Frames sampled per second of video (also CANDOR_VIDEO_FPS) [default: 5].")]


def _service(data_dir, backend, detector, fps, folder: Path):
    from candor.governance.gate import governed
    from candor.service import Service

    service = Service(settings=settings(data_dir, backend, detector, video_fps=fps))
    service.__dict__["local_buckets"] = {LOCAL_BUCKET: folder.resolve()}
    return service, governed(service)


def _warm_in_background(service):
    """Load the job's models on a thread while the job opens the video and decodes its first
    frames (the first embedding would otherwise wait for its ONNX Runtime session). The
    caller joins the thread before the process exits: a process that exits while native code
    is loading a model aborts ("terminate called without an active exception", exit 134)."""
    import threading

    from candor.face import tracking

    thread = threading.Thread(target=tracking.warm, args=(service.engine,), name="candor-warm",
                              daemon=True)
    thread.start()
    return thread


def _regular_file(file: Path) -> None:
    """A video the job can read: a regular file (not a FIFO that would block or a device)."""
    if not file.is_file():
        from candor.errors import InvalidParameter

        raise InvalidParameter(f"{file}: not a regular file")


def run_job(start: str, get: str, params: dict[str, Any], file: Path, data_dir, backend,
            detector, fps, quiet: bool) -> dict:
    """Start a job on ``file``, show its progress, and return the whole Get* response."""
    _regular_file(file)
    service, gate = _service(data_dir, backend, detector, fps, file.parent)
    warming = _warm_in_background(service)
    try:
        return _run(start, get, params, file, service, gate, quiet)
    finally:
        warming.join()


def _run(start: str, get: str, params: dict[str, Any], file: Path, service, gate,
         quiet: bool) -> dict:
    from candor.service.common import store_of
    from candor.service.jobs import runner_of

    params = {**params, "Video": {"S3Object": {"Bucket": LOCAL_BUCKET, "Name": file.name}}}
    job_id = gate.call(start, params)["JobId"]
    runner = runner_of(service)
    store = store_of(service)
    future = runner._futures.get(job_id)
    with progress_bar(quiet, TextColumn("{task.fields[frames]} frames, {task.fields[faces]} "
                                        "faces"), stderr=True) as bar:
        task = bar.add_task(file.name, total=100, frames=0, faces=0)
        while future is not None and not future.done():
            job = store.job(job_id)
            bar.update(task, completed=job.progress, frames=job.frames, faces=job.faces)
            time.sleep(0.2)
    runner.wait(job_id)
    out: dict[str, Any] = {}
    token = None
    while True:
        page = gate.call(get, {"JobId": job_id, **({"NextToken": token} if token else {})})
        key = next((k for k in ("Persons", "Celebrities") if k in page), "Faces")
        items = out.get(key, []) + page.get(key, [])
        out = {**page, **({key: items} if key in page else {})}
        token = page.get("NextToken")
        if not token:
            out.pop("NextToken", None)
            return out


def _wants_table(resp: dict, json_output: bool) -> bool:
    """Print ``--json`` output (and say no table is wanted), or stop on a failed job: with
    ``--json`` too, a failed job exits non-zero (after its JSON), so scripts see it."""
    if json_output:
        print_json(resp)
    if resp.get("JobStatus") != "SUCCEEDED":
        from rich.markup import escape

        from candor.cli.common import fail

        fail(escape(f"the job failed: {resp.get('StatusMessage')}"))
    return not json_output


def _print_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in ("faces", "frames") else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _ms(value: int) -> str:
    return f"{value / 1000:.1f}s"


@video_app.command("detect")
def detect(file: FileArg, fps: FpsOption = None, json_output: JsonOption = False,
           data_dir: DataDirOption = None, backend: BackendOption = None,
           detector: DetectorOption = None) -> None:
    """Find the faces in a video (StartFaceDetection), at the sampled frames.

    \b
    Example:
      candor video detect clip.mp4 --fps 2 --json > faces.json"""
    with cli_errors():
        resp = run_job("StartFaceDetection", "GetFaceDetection", {}, file, data_dir, backend,
                       detector, fps, json_output)
    if not _wants_table(resp, json_output):
        return
    by_time: dict[int, int] = {}
    for face in resp.get("Faces", []):
        by_time[face["Timestamp"]] = by_time.get(face["Timestamp"], 0) + 1
    _print_table(f"{len(resp.get('Faces', []))} face(s) in {len(by_time)} sampled frame(s) with "
                 f"faces of {file.name}", ("time", "faces"),
                 [(_ms(ts), str(n)) for ts, n in sorted(by_time.items())])


def appearances(persons: list[dict]) -> list[dict]:
    """Who appears when: per person Index, the time range and the best match."""
    rows: dict[int, dict] = {}
    for p in persons:
        idx = p["Person"]["Index"]
        row = rows.setdefault(idx, {"index": idx, "start": p["Timestamp"], "end": p["Timestamp"],
                                    "who": None, "similarity": 0.0, "frames": 0})
        row["start"], row["end"] = min(row["start"], p["Timestamp"]), max(row["end"], p["Timestamp"])
        row["frames"] += 1
        for m in p.get("FaceMatches") or []:
            if m["Similarity"] > row["similarity"]:
                face = m["Face"]
                row["who"] = face.get("ExternalImageId") or face.get("UserId") or face["FaceId"]
                row["similarity"] = m["Similarity"]
    return sorted(rows.values(), key=lambda r: (r["start"], r["index"]))


@video_app.command("search")
def search(collection: Annotated[str, typer.Argument(help="The collection to search.")],
           file: FileArg,
           threshold: Annotated[float | None, typer.Option(
               "--threshold", min=0, max=100,
               help="FaceMatchThreshold [default: 85, identification].")] = None,
           fps: FpsOption = None, json_output: JsonOption = False,
           data_dir: DataDirOption = None, backend: BackendOption = None,
           detector: DetectorOption = None) -> None:
    """Search a collection for the faces in a video (StartFaceSearch): who appears when."""
    params: dict[str, Any] = {"CollectionId": collection}
    if threshold is not None:
        params["FaceMatchThreshold"] = threshold
    with cli_errors():
        resp = run_job("StartFaceSearch", "GetFaceSearch", params, file, data_dir, backend,
                       detector, fps, json_output)
    if not _wants_table(resp, json_output):
        return
    rows = appearances(resp.get("Persons", []))
    _print_table(f"{len(rows)} person(s) in {file.name}",
                 ("person", "from", "to", "frames", "match", "similarity"),
                 [(str(r["index"]), _ms(r["start"]), _ms(r["end"]), str(r["frames"]),
                   r["who"] or "-", f"{r['similarity']:.1f}" if r["who"] else "-") for r in rows])


#: two sightings of a person further apart than this are two appearances
APPEARANCE_GAP_MS = 1500


def celebrity_appearances(celebrities: list[dict]) -> list[dict]:
    """Who appears when: per person, each stretch of time they were named (sightings less than
    :data:`APPEARANCE_GAP_MS` apart are one appearance), with the best Confidence."""
    by_id: dict[str, list[dict]] = {}
    for c in sorted(celebrities, key=lambda c: c["Timestamp"]):
        by_id.setdefault(c["Celebrity"]["Id"], []).append(c)
    rows: list[dict] = []
    for sightings in by_id.values():
        for c in sightings:
            row = rows[-1] if rows and rows[-1]["id"] == c["Celebrity"]["Id"] else None
            if row is None or c["Timestamp"] - row["end"] > APPEARANCE_GAP_MS:
                row = {"id": c["Celebrity"]["Id"], "name": c["Celebrity"]["Name"],
                       "start": c["Timestamp"], "end": c["Timestamp"], "frames": 0,
                       "confidence": 0.0}
                rows.append(row)
            row["end"] = c["Timestamp"]
            row["frames"] += 1
            row["confidence"] = max(row["confidence"], c["Celebrity"]["Confidence"])
    return sorted(rows, key=lambda r: (r["start"], r["name"]))


@video_app.command("celebrities")
def celebrities(file: FileArg, fps: FpsOption = None, json_output: JsonOption = False,
                data_dir: DataDirOption = None, backend: BackendOption = None,
                detector: DetectorOption = None) -> None:
    """Recognise the celebrity gallery's people in a video (StartCelebrityRecognition): who
    appears when. The gallery is the operator's own (candor celebrities import)."""
    with cli_errors():
        resp = run_job("StartCelebrityRecognition", "GetCelebrityRecognition", {}, file,
                       data_dir, backend, detector, fps, json_output)
    if not _wants_table(resp, json_output):
        return
    rows = celebrity_appearances(resp.get("Celebrities", []))
    _print_table(f"{len({r['id'] for r in rows})} celebrity(ies) in {file.name}",
                 ("name", "id", "from", "to", "frames", "confidence"),
                 [(r["name"], r["id"], _ms(r["start"]), _ms(r["end"]), str(r["frames"]),
                   f"{r['confidence']:.2f}") for r in rows])


RedactStyle = Annotated[str, typer.Option("--style", help="blur or pixelate.")]
KeepOption = Annotated[str | None, typer.Option(
    "--keep", help="Leave the faces that match this collection visible (identification: "
                   "decided by the policy like StartFaceSearch).")]


@video_app.command("redact")
def redact_video(
        source: FileArg,
        out: Annotated[Path, typer.Argument(help="Where to write the redacted video.")],
        style: RedactStyle = "blur", keep: KeepOption = None, fps: FpsOption = None,
        data_dir: DataDirOption = None, backend: BackendOption = None,
        detector: DetectorOption = None) -> None:
    """Blur or pixelate every face in a video (or every face not in --keep); audio is copied.
    The output's suffix picks its container; it must not be the source.

    \b
    Example:
      candor video redact clip.mp4 clip-redacted.mp4 --style pixelate"""
    from candor.face.redaction import redact_video as run

    with cli_errors():
        _writable_output(source, out, VIDEO_SUFFIXES)
        service, gate = _service(data_dir, backend, detector, fps, source.parent)
        operation = "StartFaceSearch" if keep else "StartFaceDetection"
        decision = gate.gate.decide(gate.principal, operation,
                                    {"CollectionId": keep} if keep else {})
        if not decision.allowed:
            from candor.errors import AccessDenied

            raise AccessDenied(decision.denial_text())
        keep_fn = _keeper(service, gate, keep) if keep else None
        with progress_bar(False, stderr=True) as bar:
            task = bar.add_task(source.name, total=100)
            stats = run(service.engine, source, out, style=style, keep=keep_fn,
                        fps=float(service.settings.video_fps),
                        progress=lambda p: bar.update(task, completed=p))
        _record_redaction(gate, operation, decision, source, keep, stats)
    console.print(f"wrote {out}: {stats['frames']} frames, {stats['faces']} face(s) redacted, "
                  f"{stats['kept']} kept")


#: the containers ``video redact`` writes (the output's suffix picks the container)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


def _writable_output(source: Path, out: Path, suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse, before any work, an output that would overwrite the source (the original is
    what redaction must leave alone), is a folder, lies in a folder that does not exist, or
    has a suffix that names no format candor writes (``suffixes``; photos: Pillow's)."""
    from candor.errors import InvalidParameter

    if out.exists() and out.resolve() == source.resolve():
        raise InvalidParameter(f"{out} is the source itself: write the redacted copy to "
                               "another file")
    if out.is_dir():
        raise InvalidParameter(f"{out} is a folder: give the output file's name")
    if not out.resolve().parent.is_dir():
        raise InvalidParameter(f"{out.parent}: no such folder for the output")
    shown = ", ".join(suffixes or (".jpg", ".png", ".webp"))
    if suffixes is None:
        from PIL import Image as PILImage

        suffixes = tuple(e for e, f in PILImage.registered_extensions().items()
                         if f in PILImage.SAVE)
    if out.suffix.lower() not in suffixes:
        raise InvalidParameter(f"{out}: the output's suffix picks its format; use {shown}")


def _record_redaction(gate, operation: str, decision, source: Path, keep: str | None,
                      stats: dict) -> None:
    """One ledger record of a redaction, like a finished video job's: the video's SHA-256,
    frames, faces covered and kept (``--keep`` is identification)."""
    import uuid

    from candor.face.video import sha256_file

    p = gate.principal
    fields = {"request_id": str(uuid.uuid4()), "principal": p.name, "org": p.org,
              "category": p.category, "operation": operation, "collection": keep,
              "image_sha256": [sha256_file(source)], "faces_found": stats["faces"] + stats["kept"],
              "decision": "allow", "rule": decision.rule,
              "details": {"redaction": True, "frames": stats["frames"], "kept": stats["kept"]}}
    if "details" not in gate.gate.ledger.table.c:
        fields.pop("details")
    gate.gate.ledger.append(**fields)


def _keeper(service, gate, collection: str):
    """A function embedding -> keep? for ``--keep`` (the policy decided it as StartFaceSearch)."""
    from candor.scoring.similarity import IDENTIFICATION_THRESHOLD
    from candor.service.common import store_of
    from candor.service.search import _face_matches

    store = store_of(service)
    coll = store.collection(collection)

    def keep(vector) -> bool:
        return bool(_face_matches(store, coll.id, vector, 1, IDENTIFICATION_THRESHOLD,
                                  scoring=service.scoring))
    return keep


def redact_image(
        source: Annotated[Path, typer.Argument(help="The photo.", exists=True, dir_okay=False)],
        out: Annotated[Path, typer.Argument(help="Where to write the redacted photo.")],
        style: RedactStyle = "blur", data_dir: DataDirOption = None,
        backend: BackendOption = None, detector: DetectorOption = None) -> None:
    """Blur or pixelate every face in a photo."""
    from candor.face.redaction import redact_photo

    def detect(data: bytes) -> list[dict]:
        resp = gate.call("DetectFaces", {"Image": {"Bytes": data}})
        return [f["BoundingBox"] for f in resp["FaceDetails"]]

    with cli_errors():
        _writable_output(source, out)
        _, gate = _service(data_dir, backend, detector, None, source.parent)
        n = redact_photo(detect, source, out, style=style)
    console.print(f"wrote {out}: {n} face(s) redacted")


def register(app: typer.Typer) -> None:
    """Add ``video`` and ``redact`` to the main ``candor`` command."""
    app.add_typer(video_app, name="video")
    app.command("redact")(redact_image)
