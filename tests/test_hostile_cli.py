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


def listed(home: Path, collection: str) -> list[dict]:
    out = run("faces", "list", collection, "--json", "--data-dir", home)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["Faces"]


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


# ------------------------------------------------------------------ celebrities import --info


@pytest.mark.parametrize("content, words", [
    (b"name,folder\nBar\xe9,obama\n", ["not UTF-8"]),
    (b"nom,dossier\nX,obama\n", ["needs a 'name' column"]),
    (b"name,folder\n\"unterminated,obama\n", ["not a well-formed CSV"]),
    (b"name,folder\n" + b"A" * 200_000 + b",obama\n", ["not a well-formed CSV", "field limit"]),
    (b"name,folder\nA,obama,extra\n", ["line 2", "more cells"]),
    (b"name,folder,urls\n\"=cmd|' /C calc'!A0\",obama,\n", ["line 2", "spreadsheet formula"]),
    (b"name,folder,urls\nB,obama,=HYPERLINK(\"http://evil\")\n", ["spreadsheet formula"]),
    (b"name,folder,urls\nB,obama,javascript:alert(1)\n", ["not an http(s) URL"]),
])
def test_celebrities_import_refuses_a_bad_info_csv_before_any_work(tmp_path, samples,
                                                                   candor_home, content, words):
    gallery = tmp_path / "gallery"
    (gallery / "obama").mkdir(parents=True)
    (gallery / "obama" / "1.jpg").write_bytes((samples / "edge" / "obama_small.jpg").read_bytes())
    info = tmp_path / "info.csv"
    info.write_bytes(content)
    refused(run("celebrities", "import", gallery, "--info", info, "--data-dir", candor_home),
            "info.csv", *words)
    listed = json.loads(run("celebrities", "list", "--json", "--data-dir", candor_home).stdout)
    assert listed["Celebrities"] == []


def test_celebrities_import_reads_a_csv_with_a_bom_and_refuses_paths_that_are_not_csvs(
        tmp_path, samples, candor_home):
    gallery = tmp_path / "gallery"
    (gallery / "obama").mkdir(parents=True)
    (gallery / "obama" / "1.jpg").write_bytes((samples / "edge" / "obama_small.jpg").read_bytes())
    refused(run("celebrities", "import", gallery, "--info", tmp_path / "none.csv",
                "--data-dir", candor_home), "none.csv", "no such file")
    refused(run("celebrities", "import", gallery, "--info", gallery, "--data-dir", candor_home),
            "not a file")
    info = tmp_path / "excel.csv"  # what a spreadsheet's "CSV UTF-8" writes: a BOM first
    info.write_bytes("name,folder,urls\r\nBarack Obama,obama,www.example.org/obama\r\n"
                     .encode("utf-8-sig"))
    out = run("celebrities", "import", gallery, "--info", info, "--json", "--data-dir",
              candor_home)
    assert out.exit_code == 0, out.output
    assert [a["Name"] for a in json.loads(out.stdout)["Added"]] == ["Barack Obama"]
    ledger_ok(candor_home)


# ------------------------------------------------------------------ video and redaction


def test_a_video_that_is_not_a_video_fails_with_json_too(tmp_path, candor_home):
    """--json prints the FAILED job and exits non-zero (it exited 0, and at times 134: the
    process left while the models loaded on their thread)."""
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video\n")
    proc = candor("video", "detect", fake, "--json", home=candor_home)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert json.loads(proc.stdout)["JobStatus"] == "FAILED"
    assert "the job failed: NOT_A_VIDEO" in proc.stderr and "terminate" not in proc.stderr
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    refused(run("video", "detect", fifo, "--data-dir", candor_home), "not a regular file")


def test_redaction_refuses_outputs_that_would_lose_the_original_or_cannot_be_written(
        tmp_path, samples, data_dir, candor_home):
    photo = tmp_path / "p.jpg"
    original = (samples / "edge" / "obama_small.jpg").read_bytes()
    photo.write_bytes(original)
    video = data_dir / "video" / "short_hamilton_clip.mp4"
    cases = [(("redact", photo, photo), "the source itself"),
             (("redact", photo, tmp_path), "is a folder"),
             (("redact", photo, tmp_path / "no" / "o.jpg"), "no such folder"),
             (("redact", photo, tmp_path / "o.xyz"), "suffix picks its format"),
             (("video", "redact", video, tmp_path / "o.xyz"), ".mp4"),
             (("video", "redact", video, tmp_path), "is a folder")]
    for args, words in cases:
        refused(run(*args, "--data-dir", candor_home), words)
    assert photo.read_bytes() == original


def test_serve_refuses_a_port_out_of_range_before_it_starts(candor_home):
    for port in ("-1", "65536", "99999999999999999999"):
        result = run("serve", "--port", port, "--data-dir", candor_home)
        assert result.exit_code == 2 and "--port" in result.stderr, result.output
    assert not (candor_home / "candor.db").exists()  # no key created, nothing started


# ------------------------------------------------------------------ Ctrl-C in candor index


def _ctrl_c_as_at_a_terminal() -> None:
    """In the child, SIGINT as a terminal user's command gets it (default, not blocked): a
    runner that ignores or blocks it (a background job, some CI shells) passes that on, and
    the command would never see the Ctrl-C this test sends."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_in_the_middle_of_index_keeps_the_data_consistent(tmp_path, data_dir,
                                                                 candor_home):
    """SIGINT once the first photo is stored: exit 130 with one line saying what is kept and
    how to go on, the ledger verifies, every face printed is stored, and running the same
    command again indexes each photo exactly once."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted((data_dir / "fairface-val").glob("*.jpg"))[:120]:
        (folder / photo.name).symlink_to(photo)
    args = [sys.executable, "-m", "candor.cli", "index", "ff", str(folder), "--create",
            "--json", "--external-id-from", "file", "--data-dir", str(candor_home)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_at_a_terminal)
    first = proc.stdout.readline()  # the first photo's group is committed
    proc.send_signal(signal.SIGINT)
    rest, err = proc.stdout.read(), proc.stderr.read()  # (communicate() would skip the
    proc.wait(timeout=120)                                # rest of stdout's buffer)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: the photos indexed so far are kept" in err
    assert first.startswith("{"), (first, err)
    printed = [json.loads(line) for line in (first + rest).splitlines()]
    assert printed and len(printed) < 120  # it was stopped in the middle
    ledger_ok(candor_home)
    ids = {f["FaceId"] for f in listed(candor_home, "ff")}
    assert {r["Face"]["FaceId"] for d in printed for r in d.get("FaceRecords", [])} <= ids

    again = run("index", "ff", folder, "--external-id-from", "file", "--data-dir", candor_home)
    assert again.exit_code == 0, again.output
    records = ledger_ok(candor_home)
    images: dict[str, set[str]] = {}
    for face in listed(candor_home, "ff"):
        images.setdefault(face["ExternalImageId"], set()).add(face["ImageId"])
    assert len(images) > 100 and all(len(i) == 1 for i in images.values())  # each photo once
    assert records > len(images)


# ------------------------------------------------------------------ numbers out of range


def test_huge_counts_are_refused_as_options_not_as_database_overflows(tmp_path, candor_home):
    huge = "99999999999999999999"
    for args in (("audit", "tail", "-n", huge), ("audit", "search", "--limit", huge),
                 ("serve", "--workers", huge), ("db", "start", "--data-dir", tmp_path,
                                                "--port", huge)):
        result = run(*args, "--data-dir", candor_home) if args[0] != "db" else run(*args)
        assert result.exit_code == 2 and "Invalid value" in result.stderr, (args, result.output)
        assert "Traceback" not in result.output


def test_eval_verification_with_only_same_person_pairs_prints_no_auc(tmp_path, samples):
    """One class of pairs has no AUC (None): the table said so by crashing."""
    photos = sorted((samples / "identities" / "obama").iterdir())[:3]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("image_a,image_b,same\n" + "".join(
        f"{photos[0].name},{p.name},1\n" for p in photos[1:]))
    result = run("eval", "verification", "--pairs", pairs, "--images", photos[0].parent,
                 "--listed-only")
    assert result.exit_code == 0, result.output
    assert "AUC n/a" in result.stdout


# ------------------------------------------------------------------ help that teaches


@pytest.mark.parametrize("command", [("index",), ("search",), ("celebrities", "import"),
                                     ("video", "detect"), ("video", "redact")])
def test_help_of_the_commands_users_start_with_shows_examples_that_parse(command):
    """Each example line in --help is a real command line: its options exist on it."""
    import typer

    shown = run(*command, "--help")
    assert shown.exit_code == 0
    examples = [line.split("(")[0].split(">")[0].split()
                for line in shown.stdout.splitlines() if line.strip().startswith("candor ")]
    assert examples, shown.stdout
    group = typer.main.get_command(__import__("candor.cli", fromlist=["app"]).app)
    cmd = group
    for name in command:
        cmd = cmd.commands[name]
    options = {o for p in cmd.params if p.param_type_name == "option" for o in p.opts}
    for words in examples:
        assert words[1:1 + len(command)] == list(command), words
        assert {w for w in words if w.startswith("--")} <= options, words


def test_retention_and_erase_refuse_values_that_mean_nothing(candor_home):
    """A retention of 10^20 days overflowed the store (a traceback), '²' passed isdigit();
    an erase of the empty ExternalImageId wrote a receipt for erasing nothing."""
    assert run("collection", "create", "kept", "--data-dir", candor_home).exit_code == 0
    before = ledger_ok(candor_home)
    for days in ("99999999999999999999", "²", "1e3"):
        refused(run("retention", "set", "kept", days, "--data-dir", candor_home), "36500")
    for flag in ("--external-image-id", "--user-id"):
        refused(run("erase", flag, " ", "--data-dir", candor_home), "empty")
    assert ledger_ok(candor_home) == before
    assert run("retention", "set", "kept", "30", "--data-dir", candor_home).exit_code == 0
