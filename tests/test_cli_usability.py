"""The CLI as a new user meets it (issue 12): help that shows what it says, IDs that are never
cut, no FaceIds to copy by hand, re-runs that do not duplicate, names the policy does not know
refused, and no tracebacks. Real photos, real models, a real data dir per test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import typer
from postgres_helper import store_url
from typer.testing import CliRunner

from candor.cli import app

runner = CliRunner()
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def run(*args, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok and result.exit_code != 0:
        raise AssertionError(f"{args}: exit {result.exit_code}\n{result.output}")
    return result


def candor(*args, columns: int = 200, home: Path | None = None) -> subprocess.CompletedProcess:
    """The real ``candor`` console entry point, in a subprocess."""
    env = {**os.environ, "COLUMNS": str(columns)}
    if home is not None:
        env["CANDOR_DATA_DIR"] = str(home)
    return subprocess.run([sys.executable, "-m", "candor.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def flat(text: str) -> str:
    return " ".join(text.split())


def squeezed(text: str) -> str:
    """Without whitespace: help is re-wrapped, at spaces and after hyphens."""
    return "".join(text.split())


# ------------------------------------------------------------------ 1: help shows what it says


def _commands(command, path: tuple[str, ...] = ()):
    yield path, command
    if hasattr(command, "commands"):  # a group (typer's own click)
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def test_search_help_shows_the_default_threshold_85():
    """The default the help states whole: size-aware, never below 85 (Rekognition's is 80)."""
    out = flat(run("search", "--help").output)
    assert ("[default: size-aware, FPIR <= 1% for the collection's size, at least 85; "
            "docs/fairness.md]") in out


def test_collection_create_help_shows_the_id_pattern():
    out = run("collection", "create", "--help").output
    assert r"[a-zA-Z0-9_.\-]+" in out


def test_every_help_string_of_every_command_is_shown_whole():
    """Each command's and each option's help text, brackets included, appears in its --help
    (none swallowed as markup), for every command and sub-command of the app."""
    root = typer.main.get_command(app)
    walked = 0
    for path, command in _commands(root):
        shown = squeezed(run(*path, "--help").output)
        texts = [p.help for p in command.params
                 if getattr(p, "help", None) and not getattr(p, "hidden", False)]
        for text in texts:
            assert squeezed(text) in shown, f"candor {' '.join(path)} --help lost: {text!r}"
        if command.help:
            for bracketed in re.findall(r"\[[^\[\]]*\]", command.help):
                assert squeezed(bracketed) in shown, \
                    f"candor {' '.join(path)} --help lost {bracketed}"
        walked += 1
    assert walked > 30  # the walk reached the sub-commands


# ------------------------------------------------------------------ photos indexed for the tests


@pytest.fixture()
def indexed(candor_home, samples):
    """Collection ``main`` with the obama and biden folders indexed (ExternalImageId = the
    folder name), in this test's own data dir; returns (data dir, the faces as listed)."""
    people = samples / "identities"
    run("index", "main", people / "obama", people / "biden", "--create",
        "--data-dir", candor_home)
    faces = json.loads(run("faces", "list", "main", "--json", "--data-dir", candor_home).output)
    assert {f["ExternalImageId"] for f in faces["Faces"]} == {"obama", "biden"}
    return candor_home, faces["Faces"]


# ------------------------------------------------------------------ 2: IDs never cut


def test_faces_list_at_80_columns_shows_every_face_id_whole(indexed):
    home, faces = indexed
    proc = candor("faces", "list", "main", columns=80, home=home)
    assert proc.returncode == 0, proc.stderr
    assert {f["FaceId"] for f in faces} <= set(UUID.findall(proc.stdout))
    wide = candor("faces", "list", "main", "--wide", columns=80, home=home)
    assert {f["ImageId"] for f in faces} <= set(UUID.findall(wide.stdout))


def test_search_table_at_80_columns_shows_face_ids_whole(indexed, samples):
    home, faces = indexed
    proc = candor("search", "main", samples / "identities" / "biden" / "biden2.jpg",
                  "--threshold", "0", columns=80, home=home)
    assert proc.returncode == 0, proc.stderr
    shown = set(UUID.findall(proc.stdout))
    assert shown and shown <= {f["FaceId"] for f in faces}
    assert len(shown) == len(faces)  # threshold 0: every face, each ID whole


# ------------------------------------------------------------------ 3: associate by ExternalImageId


def test_user_associate_by_external_image_id(indexed):
    home, faces = indexed
    obama = {f["FaceId"] for f in faces if f["ExternalImageId"] == "obama"}
    run("user", "create", "main", "barack", "--data-dir", home)
    out = run("user", "associate", "main", "barack", "--external-image-id", "obama", "--json",
              "--data-dir", home).output
    assert {f["FaceId"] for f in json.loads(out)["AssociatedFaces"]} == obama
    listed = json.loads(run("faces", "list", "main", "--user-id", "barack", "--json",
                            "--data-dir", home).output)
    assert {f["FaceId"] for f in listed["Faces"]} == obama

    # with an explicit FaceId as well, and an ExternalImageId nobody has is refused
    biden = sorted(f["FaceId"] for f in faces if f["ExternalImageId"] == "biden")
    run("user", "create", "main", "joe", "--data-dir", home)
    both = json.loads(run("user", "associate", "main", "joe", biden[0], "--external-image-id",
                          "biden", "--json", "--data-dir", home).output)
    assert sorted(f["FaceId"] for f in both["AssociatedFaces"]) == biden
    nobody = run("user", "associate", "main", "joe", "--external-image-id", "nobody",
                 "--data-dir", home, ok=False)
    assert nobody.exit_code == 2 and "nobody" in nobody.output
    assert run("user", "associate", "main", "joe", "--data-dir", home, ok=False).exit_code == 2


# ------------------------------------------------------------------ 4: index skips what it has


def test_index_twice_skips_photos_already_indexed(candor_home, samples):
    folder = samples / "identities" / "biden"
    photos = sorted(folder.iterdir())
    first = run("index", "main", folder, "--create", "--data-dir", candor_home).output
    assert "0 photo(s) already indexed" in first

    def face_count() -> int:
        return json.loads(run("collection", "describe", "main", "--json", "--data-dir",
                              candor_home).output)["FaceCount"]

    faces = face_count()
    assert faces >= len(photos)
    again = flat(run("index", "main", folder, "--data-dir", candor_home).output)
    assert f"indexed 0 face(s) from 0 photo(s) into main; {len(photos)} photo(s) already " \
           "indexed, skipped" in again
    assert face_count() == faces
    lines = [json.loads(line) for line in
             run("index", "main", folder, "--json", "--data-dir", candor_home).output.splitlines()]
    assert [(Path(d["Image"]).name, d["Skipped"]) for d in lines] == \
        [(p.name, "AlreadyIndexed") for p in photos]
    assert face_count() == faces
    run("index", "main", folder, "--reindex", "--data-dir", candor_home)
    assert face_count() == 2 * faces


# ------------------------------------------------------------------ 5: --authorization-ref


def test_authorization_ref_meets_the_eu_ai_act_requirement(candor_home, samples):
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    folder = samples / "identities" / "biden"
    run("index", "main", folder, "--create", "--data-dir", candor_home)
    probe = folder / "biden2.jpg"
    police = ("--policy", "eu-ai-act", "--category", "law_enforcement")

    denied = run(*police, "search", "main", probe, "--threshold", "99", "--data-dir",
                 candor_home, ok=False)
    assert denied.exit_code == 2 and "AccessDenied" in denied.output
    assert "requires an authorisation reference" in denied.output
    ledger = Ledger.for_store(open_store(candor_home, store_url()))
    assert ledger.tail(1)[0]["decision"] == "deny"

    # the reference meets the authorisation requirement; the threshold one still applies
    low = run("--authorization-ref", "AG-2026-17", *police, "search", "main", probe,
              "--data-dir", candor_home, ok=False)
    assert low.exit_code == 2 and "FaceMatchThreshold" in low.output
    assert "requires an authorisation reference" not in low.output
    ok = run("--authorization-ref", "AG-2026-17", *police, "search", "main", probe,
             "--threshold", "99", "--json", "--data-dir", candor_home)
    assert "FaceMatches" in json.loads(ok.output)
    record = ledger.tail(1)[0]
    assert record["decision"] == "allow" and record["category"] == "law_enforcement"
    assert record["details"]["authorization_reference"] == "AG-2026-17"


# ------------------------------------------------------------------ 6: names the policy does not know


def test_policy_explain_refuses_an_operation_that_does_not_exist():
    typo = run("policy", "explain", "moratorium-2020", "SearchFace", ok=False)
    assert typo.exit_code == 2 and "not a Rekognition operation" in typo.output
    assert "SearchFaces" in typo.output and "allow" not in typo.output.split(";")[0]
    nonsense = run("policy", "explain", "open", "Frobnicate", ok=False)
    assert nonsense.exit_code == 2 and "IndexFaces" in nonsense.output  # the known ones listed
    real = run("policy", "explain", "moratorium-2020", "SearchFaces", "--category",
               "law_enforcement")
    assert "deny by police-moratorium-2020" in real.output


def test_keys_create_refuses_a_category_the_policy_does_not_know(candor_home, tmp_path):
    police = run("keys", "create", "--org", "metro", "--category", "police", "--data-dir",
                 candor_home, ok=False)
    assert police.exit_code == 2 and "police" in police.output
    assert "law_enforcement" in police.output  # the known ones are listed
    assert json.loads(run("keys", "list", "--json", "--data-dir", candor_home).output) == []

    declared = tmp_path / "declares.yaml"
    declared.write_text("version: 1\nname: declares\ndefault: allow\n"
                        "categories: [police]\nrules: []\n")
    for args in (("keys", "create", "--policy", declared),
                 ("--policy", declared, "keys", "create")):
        out = run(*args, "--org", "metro", "--category", "police", "--json", "--data-dir",
                  candor_home)
        assert json.loads(out.output)["Category"] == "police"
    run("keys", "create", "--org", "acme", "--category", "media", "--data-dir", candor_home)
    assert len(json.loads(run("keys", "list", "--json", "--data-dir", candor_home).output)) == 3


# ------------------------------------------------------------------ 7: no traceback


def test_a_database_from_a_newer_candor_is_one_line_not_a_traceback(candor_home):
    from sqlalchemy import insert

    from candor.store import Store
    from candor.store.schema import schema_migrations

    store = Store(candor_home, url=store_url())
    with store.write() as conn:
        conn.execute(insert(schema_migrations).values(version=999, name="from the future",
                                                      applied_at=datetime.now(timezone.utc)))
    store.engine.dispose()
    proc = candor("collection", "list", home=candor_home)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "999" in proc.stderr and "upgrade candor" in proc.stderr


def test_audit_tail_at_80_columns_shows_timestamps_whole(candor_home):
    """The timestamps `audit tail` prints are what `audit search --since` takes: never cut."""
    run("collection", "create", "audited-collection-with-a-long-name")
    run("collection", "describe", "audited-collection-with-a-long-name")
    proc = candor("audit", "tail", columns=80, home=candor_home)
    assert proc.returncode == 0, proc.stderr
    stamps = re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", proc.stdout)
    assert len(stamps) >= 2
    assert "audited-collection-with-a-long-name" in proc.stdout
    since = candor("audit", "search", "--since", stamps[-1], "--json", home=candor_home)
    assert since.returncode == 0, since.stderr
    assert [json.loads(line)["ts"] for line in since.stdout.splitlines()] == [stamps[-1]]
