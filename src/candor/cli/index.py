"""``candor index``: photos (or a <person>/<photo> tree) indexed into a collection, skipping
photos whose faces the collection already has.

``candor index --json`` on several photos prints one IndexFaces response per line (with an
``Image`` key), flushed as each photo is stored, so a caller can rely on every line it has
read; a photo skipped as already indexed is a line with a ``Skipped`` key.
"""

from __future__ import annotations

import gc
import hashlib
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import TextColumn

from candor.cli.common import (
    BackendOption,
    Collection,
    DataDirOption,
    DetectorOption,
    call,
    cli_errors,
    console,
    err_console,
    expand_images,
    fail,
    make_service,
    print_json,
    print_json_line,
    progress_bar,
    settings,
)
from candor.errors import CandorError
from candor.service.caller import Caller


def register(app: typer.Typer) -> None:
    """Add ``candor index`` to the ``candor`` app."""
    app.command("index")(index)


def external_id(path: Path, source: str) -> str:
    """ExternalImageId from a photo's folder (``person/photo.jpg`` -> ``person``) or file stem,
    with characters Rekognition does not allow replaced by ``_``."""
    raw = path.parent.name if source == "folder" else path.stem
    return re.sub(r"[^a-zA-Z0-9_.\-:]", "_", raw)[:255] or "_"


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
    reindex: Annotated[bool, typer.Option(
        "--reindex", help="Index photos again even if the collection already has faces from "
        "the same image (same SHA-256 of the file).")] = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="One IndexFaces response per line (with an Image key), as each photo "
        "is stored; a photo skipped as already indexed is a line with a Skipped key.")]
    = False,
    backend: BackendOption = None, detector: DetectorOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Index the faces in photos into a collection; a folder tree <person>/<photo> gets the
    folder name as each face's ExternalImageId.

    Photos whose faces are already in the collection (same file content) are skipped, so
    re-running on a folder indexes only the new photos (also after Ctrl-C); --reindex indexes
    them again.

    \b
    Examples:
      candor index staff photos/ --create          (photos/<person>/<photo>.jpg)
      candor index staff new.jpg --external-id-from file --max-faces 1
      candor index staff photos/ --json > indexed.jsonl"""
    if external_id_from not in ("folder", "file", "none"):
        fail("--external-id-from must be folder, file or none")
    photos = expand_images(paths)
    if not photos:
        fail("no JPEG or PNG files found in the given paths")
    # the models load on their own thread while the store, the gate and the collection come up
    threading.Thread(target=_warm_models, args=(settings(data_dir, backend, detector).backend,),
                     name="candor-warm", daemon=True).start()
    service = make_service(data_dir, backend, detector)
    from candor.errors import ResourceNotFound

    try:
        service.call("DescribeCollection", {"CollectionId": collection_id})
    except ResourceNotFound:
        if not create:
            fail(f"ResourceNotFoundException: The collection id: {collection_id} does not exist "
                 "(use --create)")
        call(service, "CreateCollection", {"CollectionId": collection_id})
    except CandorError as exc:
        fail(escape(f"{exc.code}: {exc.message}"))
    photos, skipped_photos = _not_yet_indexed(service, collection_id, photos, reindex)
    for photo, digest in skipped_photos:
        if json_output:
            print_json_line({"Image": str(photo), "Skipped": "AlreadyIndexed",
                             "ImageSha256": digest})
    sys.stdout.flush()

    from candor.face.imaging import read_photo

    def requests():
        """One IndexFaces request per photo, read as the batch reaches it."""
        for photo in photos:
            params: dict = {"CollectionId": collection_id,
                            "QualityFilter": quality_filter.upper()}
            if external_id_from != "none":
                params["ExternalImageId"] = external_id(photo, external_id_from)
            if max_faces is not None:
                params["MaxFaces"] = max_faces
            try:  # a folder, FIFO, device, empty or oversized file: that photo's error
                params["Image"] = {"Bytes": read_photo(photo)}
            except CandorError as exc:
                yield photo, exc
                continue
            yield photo, params

    # the start-up's objects (modules, the schema, the policy) will live as long as the
    # command: out of the collector's way, so its collections scan only the photos' objects
    gc.freeze()
    indexed, no_face, errors = 0, 0, []
    reasons: Counter[str] = Counter()
    progress = progress_bar(json_output, TextColumn("{task.fields[faces]} faces"))
    # the photos go through the pipeline (decoded and detected ahead, embedded in batches) and
    # are stored in groups, each group's faces and audit records in one transaction; a photo
    # comes back (and is printed) in order, only after its group is committed
    with progress, cli_errors(), _interrupted():
        task = progress.add_task("indexing", total=len(photos), faces=0)
        for one in service.index_faces_many(requests()):
            photo, exc, response = one.item, one.error, one.response
            if exc is not None:
                if not isinstance(exc, CandorError):
                    raise exc
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
            if json_output and len(photos) == 1 and not skipped_photos:
                print_json(response)  # one photo: exactly Rekognition's IndexFaces response
            elif json_output:
                print_json_line({"Image": str(photo), **response})
                sys.stdout.flush()
            progress.update(task, advance=1, faces=indexed)
    service.warm_index(collection_id, Caller(service.principal.org))
    if not json_output:
        skipped = sum(reasons.values())
        console.print(f"indexed {indexed} face(s) from {len(photos)} photo(s) into "
                      f"{collection_id}; {len(skipped_photos)} photo(s) already indexed, "
                      f"skipped; {skipped} face(s) skipped; {no_face} photo(s) without "
                      f"a face; {len(errors)} photo(s) failed", highlight=False)
        if skipped_photos:
            console.print("(photos already indexed are skipped: --reindex to index them "
                          "again)", highlight=False)
        if reasons:
            console.print("skipped: " + ", ".join(f"{r} {c}" for r, c in reasons.most_common()))
        for photo, error in errors[:20]:
            console.print(f"[red]failed[/red] {escape(str(photo))}: {escape(error)}",
                          highlight=False)
    if errors:
        raise typer.Exit(2)


@contextmanager
def _interrupted() -> Iterator[None]:
    """Ctrl-C: one line saying what is kept (each group of photos is committed whole, with its
    audit records, or not at all) and how to go on, and exit 130 like any interrupted
    command."""
    try:
        yield
    except KeyboardInterrupt:
        err_console.print("[red]interrupted:[/red] the photos indexed so far are kept, with "
                          "their audit records; run the same command again to index the rest "
                          "(photos already indexed are skipped)", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(130) from None


def _warm_models(backend: str) -> None:
    """Load the backend's models now (the first photo would wait for them otherwise)."""
    from candor.face.pipeline import EMBED_THREADS
    from candor.models import get_backend

    try:
        warm = getattr(get_backend(backend), "warm", None)
        if warm is not None:  # the session the pipeline's embedder will use
            warm(**({"embed_threads": EMBED_THREADS} if backend == "onnx" else {}))
    except CandorError:
        pass  # an unknown backend or a missing model: the command reports it where it is used


def _not_yet_indexed(service, collection_id: str, photos: list[Path], reindex: bool
                     ) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The photos to index, and those skipped (with their SHA-256): already in the collection,
    or the same content as an earlier photo of this run. A file that cannot be read is kept,
    so that indexing reports its error."""
    from candor.face.imaging import read_photo

    if reindex:
        return photos, []
    digests: dict[Path, str] = {}
    for photo in photos:
        try:
            digests[photo] = hashlib.sha256(read_photo(photo)).hexdigest()
        except CandorError:
            pass  # indexing reports it
    with cli_errors():
        seen = service.indexed_image_hashes(collection_id, digests.values(),
                                            Caller(service.principal.org))
    keep, skipped = [], []
    for photo in photos:
        digest = digests.get(photo)
        if digest is not None and digest in seen:
            skipped.append((photo, digest))
        else:
            keep.append(photo)
            if digest is not None:
                seen.add(digest)
    return keep, skipped
