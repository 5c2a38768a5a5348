"""The CLI as a hostile or careless user drives it: paths that are not photos, a data dir that
is a file, a --database URL that is not one, CSVs that are broken or carry spreadsheet
formulas, videos that are not videos, ports out of range, Ctrl-C in the middle of an index.
Each refusal is one line on stderr and a non-zero exit, never a traceback, and the stored data
and the audit ledger stay intact. Real CLI (typer's runner, or a subprocess where the process
itself matters), real photos, real models, a data dir per test."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from candor.cli import main


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(*args) -> Ran:
    """``candor ARGS`` through the console script's entry point (:func:`candor.cli.main`, its
    last-resort handler included), in this process: an exception that escapes it is a
    traceback the user would see, and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["candor", *map(str, args)]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return Ran(code, out.getvalue(), err.getvalue())


def candor(*args, home: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real ``candor`` entry point in a subprocess (what a user's shell runs)."""
    env = {**os.environ, "COLUMNS": "200"}
    if home is not None:
        env["CANDOR_DATA_DIR"] = str(home)
    return subprocess.run([sys.executable, "-m", "candor.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)


def refused(result, *words: str) -> str:
    """Assert a refusal: exit 2, one ``error:`` line, no traceback, naming ``words``."""
    output = result.stderr
    code = result.exit_code if isinstance(result, Ran) else result.returncode
    assert code == 2, f"exit {code}: {output}"
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def ledger_ok(home: Path) -> int:
    """``candor audit verify`` passes on ``home``; the number of records."""
    out = run("audit", "verify", "--data-dir", home)
    assert out.exit_code == 0 and "chain intact" in out.output, out.output
    return int(out.output.split("ok: ")[1].split()[0])


def face_count(home: Path, collection: str) -> int:
    out = run("collection", "describe", collection, "--json", "--data-dir", home)
    assert out.exit_code == 0, out.output
    return json.loads(out.output)["FaceCount"]


# ------------------------------------------------------------------ data dir and --database


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data dir should be")
    refused(run("collection", "list", "--data-dir", blocker), "data dir", "a file is in the way")
    refused(run("collection", "list", "--data-dir", blocker / "below"), "data dir",
            "Not a directory")
    assert blocker.read_text() == "a file where the data dir should be"


@pytest.mark.parametrize("url, words", [
    ("not a url at all", ["cannot use the database URL", "postgresql://"]),
    ("nosuchdialect://host/db", ["cannot use the database URL", "nosuchdialect"]),
    ("mysql://me:s3cret-pw@localhost/db", ["cannot use the database URL", "***"]),
    ("sqlite:////no/such/folder/candor.db", ["cannot open the database", "unable to open"]),
])
def test_a_database_url_that_cannot_work_is_one_line(url, words):
    line = refused(run("--database", url, "collection", "list"), *words)
    assert "s3cret-pw" not in line  # never the password


# ------------------------------------------------------------------ candor index


def unblock(fifo: Path, seconds: float = 30) -> None:
    """Open ``fifo`` for writing once something reads it (and close it at once: end of file),
    so that a CLI that blocks reading it fails the test instead of hanging it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return
        except OSError:  # no reader yet
            time.sleep(0.2)


def test_index_refuses_each_bad_path_and_indexes_the_rest(tmp_path, samples, candor_home):
    """An empty photo, a FIFO (which would block a read forever), /dev/zero (which never
    ends), an oversized file and a missing one: each that photo's error; the good photos
    are indexed all the same."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a-empty.jpg").write_bytes(b"")
    for photo in (samples / "identities" / "biden").iterdir():
        (folder / photo.name).write_bytes(photo.read_bytes())
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    threading.Thread(target=unblock, args=(fifo,), daemon=True).start()
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff\xd8\xff" + b"\x00" * (6 * 1024 * 1024))
    result = run("index", "main", folder, fifo, "/dev/zero", huge, tmp_path / "nope.jpg",
                 "--create", "--json", "--data-dir", candor_home)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    errors = {Path(d["Image"]).name: d["Error"]["Message"] for d in lines if "Error" in d}
    assert "empty (0 bytes)" in errors["a-empty.jpg"]
    assert "not a file" in errors["pipe.jpg"] and "not a file" in errors["zero"]
    assert "over the 5.0 MB limit" in errors["huge.jpg"]
    assert "no such file" in errors["nope.jpg"]
    indexed = [d for d in lines if d.get("FaceRecords")]
    assert len(indexed) == 2 and face_count(candor_home, "main") == 2
    assert ledger_ok(candor_home) >= 3
