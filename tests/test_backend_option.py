"""``--backend dlib|onnx`` on every command that runs models, ``CANDOR_BACKEND`` as the default:
real subprocesses, so the option is seen exactly as a user's shell passes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

MODEL_COMMANDS = [["detect"], ["compare"], ["index"], ["search"], ["user", "search"], ["serve"],
                  ["eval", "verification"], ["eval", "calibrate"], ["eval", "fairness"]]


def candor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "candor.cli", *args], capture_output=True,
                          text=True, env=full, timeout=300)


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=" ".join)
def test_every_model_command_takes_backend(command):
    proc = candor(*command, "--help")
    assert proc.returncode == 0, proc.stderr  # a command that is not registered fails here
    assert "--backend" in proc.stdout and "CANDOR_BACKEND" in proc.stdout


def test_backend_option_and_environment_reach_the_engine(samples, candor_home):
    photo = str(samples / "edge" / "obama_small.jpg")
    assert candor("collection", "create", "c1").returncode == 0
    runs = {
        "detect": ["detect", photo],
        "compare": ["compare", photo, photo],
        "search": ["search", "c1", photo],
        "user search": ["user", "search", "c1", photo],
    }
    for name, argv in runs.items():
        bad = candor(*argv, "--backend", "nosuch")
        assert bad.returncode != 0 and "unknown backend 'nosuch'" in bad.stderr, (name, bad.stderr)
        env_bad = candor(*argv, env={"CANDOR_BACKEND": "nosuch"})
        assert env_bad.returncode != 0 and "unknown backend 'nosuch'" in env_bad.stderr, name
    index = candor("index", "c1", photo, "--backend", "nosuch")
    assert index.returncode != 0 and "unknown backend 'nosuch'" in index.stdout + index.stderr
    # both real backends give the same detection (HOG, landmarks: dlib in both)
    answers = [json.loads(candor("detect", photo, "--json", "--backend", b).stdout)
               for b in ("dlib", "onnx")]
    assert answers[0] == answers[1] and len(answers[0]["FaceDetails"]) == 1
    # ... and the same comparison score (the embedding: dlib's network, or its ONNX twin)
    scores = [json.loads(candor("compare", photo, str(samples / "identities" / "obama" /
                                                       "obama.jpg"), "--json",
                                env={"CANDOR_BACKEND": b}).stdout)["FaceMatches"][0]["Similarity"]
              for b in ("dlib", "onnx")]
    assert abs(scores[0] - scores[1]) < 0.01
