"""The ``candor`` command as a user runs it: a real subprocess, real photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def candor(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "candor.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def test_help_teaches():
    out = candor("--help", check=True).stdout
    assert "detect" in out and "compare" in out
    out = candor("detect", "--help", check=True).stdout
    assert "--json" in out and "--attributes" in out


def test_detect_json_is_the_rekognition_shape(samples):
    proc = candor("detect", str(samples / "groups" / "couple.jpg"), "--json", "--attributes", "ALL",
                  check=True)
    response = json.loads(proc.stdout)
    assert list(response) == ["FaceDetails"]
    assert len(response["FaceDetails"]) == 2
    assert {"EyesOpen", "MouthOpen", "Pose", "Landmarks"} <= set(response["FaceDetails"][0])
    import botocore.session

    model = botocore.session.get_session().get_service_model("rekognition")
    shape = model.operation_model("DetectFaces").output_shape
    for face in response["FaceDetails"]:  # every key is a member of botocore's FaceDetail
        assert set(face) <= set(shape.members["FaceDetails"].member.members)
    assert set(response) <= set(shape.members)


def test_detect_table_and_folder_progress(samples):
    proc = candor("detect", str(samples / "groups" / "two_people.jpg"), check=True)
    assert "2 face(s)" in proc.stdout
    proc = candor("detect", str(samples / "edge"), "--json", check=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == len(list((samples / "edge").glob("*.*")))
    assert all("Image" in line and len(line["FaceDetails"]) == 1 for line in lines)


def test_compare_json(samples):
    proc = candor("compare", str(samples / "identities" / "biden" / "biden.jpg"),
                  str(samples / "groups" / "obama_and_biden.jpg"), "--json", check=True)
    response = json.loads(proc.stdout)
    assert set(response) == {"SourceImageFace", "FaceMatches", "UnmatchedFaces"}
    assert len(response["FaceMatches"]) == 1
    table = candor("compare", str(samples / "identities" / "biden" / "biden.jpg"),
                   str(samples / "groups" / "obama_and_biden.jpg"), "--threshold", "99.9999")
    assert table.returncode == 0 and "0 of 3" in table.stdout


@pytest.mark.parametrize("content, words", [
    (b"", "InvalidParameterException"),
    (b"just some text\n", "InvalidImageFormatException"),
    (b"GIF89a" + b"\x00" * 100, "InvalidImageFormatException"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "InvalidImageFormatException"),
    (b"\xff\xd8\xff" + b"\x00" * (6 * 1024 * 1024), "ImageTooLargeException"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path: Path, content: bytes, words: str):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    proc = candor("detect", str(bad))
    assert proc.returncode == 2
    assert words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file_and_bad_threshold(tmp_path: Path, samples):
    proc = candor("detect", str(tmp_path / "nope.jpg"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = candor("compare", str(samples / "groups" / "couple.jpg"),
                  str(samples / "groups" / "couple.jpg"), "--threshold", "150")
    # the command exists and refuses the value itself (not "No such command")
    assert proc.returncode == 2 and "Invalid value for '--threshold'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_folder_with_a_bad_file_reports_it_and_fails(tmp_path: Path, samples):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "good.jpg").write_bytes((samples / "edge" / "obama_small.jpg").read_bytes())
    proc = candor("detect", str(tmp_path), "--json")
    assert proc.returncode == 2
    lines = {Path(d["Image"]).name: d for d in map(json.loads, proc.stdout.splitlines())}
    assert lines["bad.png"]["Error"].startswith("InvalidImageFormatException")
    assert len(lines["good.jpg"]["FaceDetails"]) == 1
