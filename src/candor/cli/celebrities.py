"""``candor celebrities import|list|show|remove``: the operator's celebrity gallery.

candor ships no gallery. ``import`` reads a folder per person and a CSV of what each person
publishes about themselves (name, URLs, optionally KnownGender as they state it), embeds every
photo, and stores one entry per person; every change to the gallery is recorded in the audit
ledger with the gallery's new version. See docs/celebrities.md (consent and legal notes).
"""

from __future__ import annotations

from pathlib import Path
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
    print_json,
    settings,
)

celebrities_app = typer.Typer(help="The celebrity gallery RecognizeCelebrities names people "
                              "from: import, list, show, remove (candor ships none).",
                              no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``celebrities`` to the ``candor`` command."""
    app.add_typer(celebrities_app, name="celebrities")


def _store_and_ledger(data_dir: Path | None):
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    s = settings(data_dir)
    store = open_store(s.ensure_data_dir(), s.database_url, s.index_kind)
    return store, Ledger.for_store(store), s


def _decide(store, s, operation: str, params: dict) -> None:
    """The policy decides a change of the gallery before any work, like every other of
    candor's own operations (a refusal is recorded and raises AccessDenied); the allow
    record, with the gallery's new version, is :func:`_record`'s."""
    from candor.governance.gate import Gate, local_principal

    Gate.for_store(store, s).run_candor(local_principal(s), operation, params, lambda: None,
                                        records_itself=True)


def _record(ledger, s, operation: str, version: int, **details) -> None:
    """One audit record per change of the gallery, naming its new version."""
    ledger.append(operation=operation, decision="allow", principal=f"local:{s.org}", org=s.org,
                  category=s.category, details={"gallery_version": version, **details})


@celebrities_app.command("import")
def import_(
    folder: Annotated[Path, typer.Argument(help="A folder with one folder of photos per person.")],
    info: Annotated[Path | None, typer.Option(
        "--info", help="CSV: name, folder, urls, known_gender (as the person publicly states "
        "it; never inferred). Folders without a row get their folder name, no URLs.")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Replace people already in the gallery (same name, same id).")] = False,
    json_output: JsonOption = False, backend: BackendOption = None,
    detector: DetectorOption = None, data_dir: DataDirOption = None,
) -> None:
    """Add a folder per person to the gallery (the largest face of each photo).

    \b
    Example (people.csv, UTF-8: name,folder,urls,known_gender):
      candor celebrities import gallery/ --info people.csv"""
    from candor.errors import CandorError
    from candor.face.engine import FACE_MODEL_VERSION, Engine
    from candor.scoring.similarity import Scoring
    from candor.service.celebrities import (
        FORMULA_STARTS,
        PersonInfo,
        embed_people,
        gallery_photos,
        read_info,
    )

    with cli_errors():
        store, ledger, s = _store_and_ledger(data_dir)
        _decide(store, s, "ImportCelebrities", {"Folder": str(folder)})
        people = gallery_photos(folder)
        rows = read_info(info) if info is not None else {}
        if not people:
            fail(f"{folder} has no folders of photos")
        engine = Engine(backend=s.backend, detector=s.detector, scoring=Scoring.from_settings(s))
        embedded = embed_people(engine, people)
    added, skipped, version = [], [], store.gallery_version()
    for name, (vectors, shas) in embedded.items():
        person = rows.get(name) or PersonInfo(name, name.replace("_", " "))
        if person.name.startswith(FORMULA_STARTS):
            skipped.append({"Folder": name, "Reason": "the name starts with "
                            f"{person.name[0]!r}, a spreadsheet formula: name the person "
                            "in --info"})
            continue
        if not vectors:
            skipped.append({"Folder": name, "Reason": "no face found in any photo"})
            continue
        try:
            row, version = store.add_celebrity(person.name, person.urls, person.known_gender,
                                               vectors, shas, FACE_MODEL_VERSION, replace)
        except CandorError as exc:
            skipped.append({"Folder": name, "Reason": exc.message})
            continue
        added.append({"Id": row.celebrity_id, "Name": row.name, "Faces": len(vectors),
                      "Photos": len(people[name])})
    if added:
        _record(ledger, s, "ImportCelebrities", version, people=len(added),
                faces=sum(a["Faces"] for a in added), ids=[a["Id"] for a in added])
    result = {"GalleryVersion": version, "Added": added, "Skipped": skipped}
    if json_output:
        print_json(result)
        return
    console.print(f"added {len(added)} people ({sum(a['Faces'] for a in added)} faces); "
                  f"gallery version {version}")
    for sk in skipped:
        console.print(f"  skipped {escape(sk['Folder'])}: {escape(sk['Reason'])}")


def _entry(row) -> dict:
    from candor.service.celebrities import celebrity_info

    return {"Id": row.celebrity_id, **celebrity_info(row), "Faces": row.face_count,
            "FaceModelVersion": row.face_model_version, "Added": row.created_at.isoformat()}


@celebrities_app.command("list")
def list_(json_output: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Every person in the gallery."""
    with cli_errors():
        store, _, _ = _store_and_ledger(data_dir)
        rows = store.celebrities()
        version = store.gallery_version()
    if json_output:
        print_json({"GalleryVersion": version, "Celebrities": [_entry(r) for r in rows]})
        return
    table = Table(title=f"{len(rows)} people, gallery version {version}")
    for col in ("Id", "Name", "faces", "KnownGender", "Urls"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.celebrity_id, escape(r.name), str(r.face_count), r.known_gender or "",
                      escape(" ".join(r.urls or [])))
    console.print(table)


@celebrities_app.command("show")
def show(celebrity_id: Annotated[str, typer.Argument(help="The person's Id.")],
         json_output: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """One person: name, URLs, KnownGender, how many faces."""
    with cli_errors():
        store, _, _ = _store_and_ledger(data_dir)
        entry = _entry(store.celebrity(celebrity_id))
    if json_output:
        print_json(entry)
        return
    for key, value in entry.items():
        console.print(f"{key}: {escape(str(value))}")


@celebrities_app.command("remove")
def remove(celebrity_ids: Annotated[list[str], typer.Argument(help="Ids to remove.")],
           data_dir: DataDirOption = None) -> None:
    """Remove people and their faces from the gallery (recorded in the audit ledger)."""
    with cli_errors():
        store, ledger, s = _store_and_ledger(data_dir)
        _decide(store, s, "RemoveCelebrity", {"Ids": list(celebrity_ids)})
        for celebrity_id in celebrity_ids:
            version = store.remove_celebrity(celebrity_id)
            _record(ledger, s, "RemoveCelebrity", version, ids=[celebrity_id])
            console.print(f"removed {celebrity_id}; gallery version {version}")


@celebrities_app.command("evaluate")
def evaluate(
    folder: Annotated[Path, typer.Argument(help="A folder with one folder of photos per person.")],
    outsiders: Annotated[Path, typer.Option(
        "--outsiders", help="A folder of photos of people who are NOT in the gallery "
        "(subfolders included).")],
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="MatchConfidence threshold [default: the gallery's, by size].")]
    = None,
    json_output: JsonOption = False, data_dir: DataDirOption = None,
) -> None:
    """Measure recognition on your own photos: each person's last photo is held out and the
    gallery built from the rest (in a temporary store); reports how often the held-out photos
    are named right and how often outsiders are named as someone."""
    from candor.eval.celebrities import embeddings, gallery_embeddings, measure
    from candor.service.celebrities import gallery_photos

    with cli_errors():
        people = {n: p for n, p in gallery_photos(folder).items() if p}
        held = {n: p[-1] for n, p in people.items() if len(p) >= 2}
        strangers = sorted(p for p in outsiders.rglob("*")
                           if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not held:
            fail("no person has two photos: nothing to hold out")
        s = settings(data_dir)
        vectors = embeddings([p for ps in people.values() for p in ps] + strangers,
                             data_dir=s.ensure_data_dir(), face="largest")
        stored = gallery_embeddings([p for ps in people.values() for p in ps],
                                    data_dir=s.ensure_data_dir(), face="largest")
        result = measure(people, held, strangers, vectors, threshold=threshold,
                         gallery_vectors=stored)
    if json_output:
        print_json(result)
        return
    console.print(f"gallery of {result['people']} people, threshold {result['threshold']:.2f}: "
                  f"right person named for {result['right']:.1%} of {result['held_out']} "
                  f"held-out photos; {result['outsiders_named']:.1%} of {result['outsiders']} "
                  "outsiders named as someone")
